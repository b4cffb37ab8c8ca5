"""The canonical request and string to sign, exactly as AWS builds them.

S3 and the other services disagree on paths: S3 signs the path as the object key is
encoded once, never normalized (keys may contain `//` and `.`); every other service
normalizes the path and encodes it again as it was received ("double encoding").
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from functools import lru_cache
from urllib.parse import quote, unquote

from botocore.utils import normalize_url_path

from iamgate.refusals import Reason, Refused
from iamgate.sigv4.authorization import Authorization, query_params

S3_FAMILY = frozenset({"s3", "s3-object-lambda", "s3-outposts", "s3express"})
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
PRESIGN_UNSIGNED = frozenset({"X-Amz-Signature"})


def is_s3_style(service: str) -> bool:
    return service in S3_FAMILY


def canonical_path(raw_path: str, *, s3_style: bool) -> str:
    if s3_style:
        return quote(unquote(raw_path), safe="/~") or "/"
    return quote(normalize_url_path(raw_path), safe="/~")


def canonical_query(raw_query: str, *, drop: frozenset[str] = frozenset()) -> str:
    pairs = sorted(
        (quote(k, safe="-_.~"), quote(v, safe="-_.~"))
        for k, v in query_params(raw_query)
        if k not in drop
    )
    return "&".join(f"{k}={v}" for k, v in pairs)


def canonical_headers(headers: Sequence[tuple[str, str]], signed: Sequence[str]) -> str:
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
    """`token_signed=False`: a presigned URL whose session token was added after signing."""
    s3 = is_s3_style(auth.scope.service) if s3_style is None else s3_style
    drop = PRESIGN_UNSIGNED if token_signed else PRESIGN_UNSIGNED | {"X-Amz-Security-Token"}
    return "\n".join(
        (
            method.upper(),
            canonical_path(raw_path, s3_style=s3),
            canonical_query(raw_query, drop=drop if auth.presigned else frozenset()),
            canonical_headers(headers, auth.signed_headers),
            ";".join(auth.signed_headers),
            payload_hash,
        )
    )


def string_to_sign(auth: Authorization, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()
    return f"AWS4-HMAC-SHA256\n{auth.amz_date}\n{auth.scope.as_string()}\n{digest}"


@lru_cache(maxsize=4096)
def derive_signing_key(secret_access_key: str, date: str, region: str, service: str) -> bytes:
    """Cached: a credential signs many requests a day, and this saves four HMACs each."""
    key = hmac.new(f"AWS4{secret_access_key}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def payload_hash_for(auth: Authorization, body: bytes | None) -> str:
    declared = auth.content_sha256
    if is_s3_style(auth.scope.service):
        if declared is not None:
            return declared
        if auth.presigned:
            return UNSIGNED_PAYLOAD
        raise Refused(
            Reason.MISSING_CONTENT_SHA256,
            "Missing required header for this request: x-amz-content-sha256",
        )
    if declared is not None:
        return declared
    if body is None:
        raise ValueError("the body is needed to hash the payload of this request")
    return hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
