"""The canonical request and string to sign, exactly as AWS builds them.

S3 and the other services disagree on paths: S3 signs the object key encoded once, never
normalized (keys may contain `//` and `.`); every other service removes dot segments and
empty segments and encodes the path again as it was received ("double encoding").

Decoding goes to bytes, never to text: decoding %FF to text would substitute U+FFFD and
let two different paths share one canonical form.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from functools import lru_cache
from urllib.parse import quote, unquote_to_bytes

from iamgate.refusals import Reason, Refused
from iamgate.sigv4.authorization import Authorization

S3_FAMILY = frozenset({"s3", "s3-object-lambda", "s3-outposts", "s3express"})
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
PRESIGN_UNSIGNED = frozenset({"X-Amz-Signature"})
_PRESIGN_UNSIGNED_TOKEN = PRESIGN_UNSIGNED | {"X-Amz-Security-Token"}
_PATH_SAFE = "/~"  # with quote's own A-Za-z0-9_.- : the unreserved characters and '/'
_QUERY_SAFE = "-_.~"


def is_s3_style(service: str) -> bool:
    return service in S3_FAMILY


def _wire_bytes(text: str) -> bytes:
    """The bytes as received: servers hand undecodable bytes over as surrogate escapes."""
    return text.encode("utf-8", "surrogateescape")


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4 plus the removal of empty segments, as AWS (and botocore) do."""
    kept: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if kept:
                kept.pop()
        elif segment and segment != ".":
            kept.append(segment)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and kept else ""
    return first + "/".join(kept) + last


def canonical_path(raw_path: str, *, s3_style: bool) -> str:
    if s3_style:
        return quote(unquote_to_bytes(_wire_bytes(raw_path)), safe=_PATH_SAFE) or "/"
    return quote(_wire_bytes(_remove_dot_segments(raw_path) or "/"), safe=_PATH_SAFE)


def _query_component(text: str) -> str:
    return quote(unquote_to_bytes(_wire_bytes(text.replace("+", " "))), safe=_QUERY_SAFE)


def canonical_query(raw_query: str, *, drop: frozenset[str] = frozenset()) -> str:
    """Decoded as `query_params` decodes ('+' is a space), re-encoded with AWS rules, sorted
    by encoded key then value. `drop` names keys (decoded) left out of the signature."""
    pairs = []
    for part in raw_query.split("&"):
        if part:
            key, _, value = part.partition("=")
            encoded_key = _query_component(key)
            if drop and encoded_key in drop:
                continue
            pairs.append((encoded_key, _query_component(value)))
    pairs.sort()
    return "&".join(f"{k}={v}" for k, v in pairs)


def canonical_headers(headers: Sequence[tuple[str, str]], signed: Sequence[str]) -> str:
    """Values trimmed, runs of whitespace (folded lines too) made one space, duplicates
    joined with ',' in received order."""
    values: dict[str, list[str]] = {name: [] for name in signed}
    for name, value in headers:
        bucket = values.get(name.lower())
        if bucket is not None:
            bucket.append(" ".join(value.split()))
    return "".join(f"{name}:{','.join(values[name])}\n" for name in signed)


def canonical_request(
    auth: Authorization,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Sequence[tuple[str, str]],
    payload_hash: str,
    *,
    s3_style: bool | None = None,
    token_signed: bool = True,
) -> str:
    """`s3_style` overrides the choice made from the scope's service (the test suite signs
    for a service named "service" in both styles); `token_signed=False`: a presigned URL
    whose session token was added after signing."""
    s3 = is_s3_style(auth.scope.service) if s3_style is None else s3_style
    drop: frozenset[str] = frozenset()
    if auth.presigned:
        drop = PRESIGN_UNSIGNED if token_signed else _PRESIGN_UNSIGNED_TOKEN
    return "\n".join(
        (
            method.upper(),
            canonical_path(raw_path, s3_style=s3),
            canonical_query(raw_query, drop=drop),
            canonical_headers(headers, auth.signed_headers),
            ";".join(auth.signed_headers),
            payload_hash,
        )
    )


def string_to_sign(auth: Authorization, canonical_request: str) -> str:
    digest = hashlib.sha256(_wire_bytes(canonical_request)).hexdigest()
    return f"AWS4-HMAC-SHA256\n{auth.amz_date}\n{auth.scope.as_string()}\n{digest}"


@lru_cache(maxsize=4096)
def derive_signing_key(secret_access_key: str, date: str, region: str, service: str) -> bytes:
    """Cached: a credential signs many requests a day, and this saves four HMACs each."""
    key = hmac.new(_wire_bytes(f"AWS4{secret_access_key}"), _wire_bytes(date), hashlib.sha256)
    digest = key.digest()
    for part in (region, service, "aws4_request"):
        digest = hmac.new(digest, _wire_bytes(part), hashlib.sha256).digest()
    return digest


def payload_hash_for(auth: Authorization, body: bytes | None) -> str:
    """S3 signs whatever x-amz-content-sha256 declares (the body is checked against it
    separately, or it is a streaming/unsigned mode); other services sign the body's hash."""
    declared = auth.content_sha256
    if declared is not None:
        return declared
    if is_s3_style(auth.scope.service):
        if auth.presigned:
            return UNSIGNED_PAYLOAD
        raise Refused(
            Reason.MISSING_CONTENT_SHA256,
            "Missing required header for this request: x-amz-content-sha256",
        )
    if body is None:
        raise ValueError("the body is needed to hash the payload of this request")
    return hashlib.sha256(body).hexdigest()
