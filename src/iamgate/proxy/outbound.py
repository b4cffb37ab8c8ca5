"""The upstream request: which headers cross the gateway, and its new signature.

Only what the client signed crosses (plus a few standard headers that cannot change who
acts or on what): an unsigned header could otherwise be slipped into someone else's
request. The gateway's own framing (length, chunking, the client's auth) never crosses.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from urllib.parse import quote, unquote, unquote_plus

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.utils import normalize_url_path

from iamgate.aws.upstream_credentials import AwsCredentials

PRESIGN_PARAMS = frozenset(
    {
        "x-amz-algorithm",
        "x-amz-credential",
        "x-amz-date",
        "x-amz-expires",
        "x-amz-signedheaders",
        "x-amz-signature",
        "x-amz-security-token",
    }
)

# Never forwarded: the client's auth and framing, hop-by-hop headers, and sandbox controls.
_DROP = frozenset(
    {
        "authorization",
        "host",
        "x-amz-date",
        "x-amz-security-token",
        "x-amz-content-sha256",
        "x-amz-decoded-content-length",
        "x-amz-trailer",
        "content-length",
        "transfer-encoding",
        "expect",
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    }
)

# Unsigned but harmless: they shape the representation, not the action or its target.
_SAFE_UNSIGNED = frozenset(
    {
        "user-agent",
        "accept",
        "accept-encoding",
        "range",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
        "content-type",
        "content-md5",
        "content-encoding",
    }
)

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


def forwarded_headers(
    headers: Iterable[tuple[str, str]], signed: Sequence[str]
) -> list[tuple[str, str]]:
    signed_set = set(signed)
    out: list[tuple[str, str]] = []
    for name, value in headers:
        lower = name.lower()
        if lower in _DROP or lower.startswith("x-moto-"):
            continue
        if lower not in signed_set and lower not in _SAFE_UNSIGNED:
            continue
        if lower == "content-encoding":
            codings = [c.strip() for c in value.split(",") if c.strip().lower() != "aws-chunked"]
            if not codings:
                continue
            value = ",".join(codings)
        out.append((name, value))
    return out


def canonical_path(raw_path: str) -> str:
    """The path re-encoded the way AWS canonicalizes it, so botocore's signature matches."""
    return quote(unquote(raw_path), safe="/~") or "/"


def canonical_query(raw_query: str) -> str:
    """The query minus any presigning, each part re-encoded as AWS expects."""
    parts = []
    for pair in raw_query.split("&"):
        if not pair:
            continue
        key, eq, value = pair.partition("=")
        key = unquote_plus(key)
        if key.lower() in PRESIGN_PARAMS:
            continue
        encoded = quote(key, safe="-_.~")
        parts.append(f"{encoded}={quote(unquote_plus(value), safe='-_.~')}" if eq else encoded)
    return "&".join(parts)


class _Resigner(SigV4Auth):
    """botocore's signer, taking the payload hash we give it and, for S3, the path as is."""

    def __init__(self, creds: Credentials, service: str, region: str, keep_path: bool) -> None:
        super().__init__(creds, service, region)
        self._keep_path = keep_path

    def _normalize_url_path(self, path: str) -> str:
        return path if self._keep_path else quote(normalize_url_path(path), safe="/~")


def sign_upstream(
    *,
    method: str,
    url: str,
    headers: list[tuple[str, str]],
    body: bytes | None,
    payload_hash: str | None,
    credentials: AwsCredentials,
    signing_name: str,
    region: str,
    s3: bool,
) -> list[tuple[str, str]]:
    """The headers of the upstream request, signed for the target account."""
    request = AWSRequest(method=method, url=url, data=body if body is not None else b"")
    for name, value in headers:
        request.headers[name] = value  # HTTPHeaders appends: duplicates stay duplicates
    if payload_hash is not None:
        request.headers["X-Amz-Content-SHA256"] = payload_hash
    creds = Credentials(
        credentials.access_key_id, credentials.secret_access_key, credentials.session_token
    )
    _Resigner(creds, signing_name, region, keep_path=s3).add_auth(request)
    return list(request.headers.items())
