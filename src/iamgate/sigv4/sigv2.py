"""S3 presigned URLs signed with Signature Version 2 (query-string authentication).

boto3 and the AWS CLI v1 still presign S3 URLs this way by default in the regions that
accept it (`AWSAccessKeyId`, `Signature`, `Expires` in the query), so most scripts that hand
out a download or upload link make one. The gateway verifies them as S3 did, with the secret
it derives for its own credentials, then treats the call like any SigV4 call.

SigV2 signs less than SigV4: the method, Content-MD5, Content-Type, the expiry, every
`x-amz-*` header (a session token in the query counts as one) and the resource, which is
the bucket, the key as sent, and only the sub-resources S3 lists (`acl`, `versionId`,
`response-content-type`, ...). Any other query parameter would cross unsigned and could
change the operation (`?attributes`, `?list-type=2&prefix=`), so it is refused here rather
than left for the upstream to read. Only GET, PUT and HEAD are accepted, and only in the
query: a SigV2 `Authorization: AWS ...` header stays refused.

Pure code: the gateway gives the request as received and the secret; signatures are compared
in constant time; the clock is checked after the signature, as for SigV4.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import unquote_plus

from iamgate.refusals import Reason, Refused
from iamgate.sigv4.authorization import BAD_SIGNATURE_MESSAGE, Authorization, Scope
from iamgate.sigv4.chunked import is_streaming
from iamgate.sigv4.verify import Verified, presign_expired

# The query parameters of SigV2 authentication, as botocore's HmacV1QueryAuth writes them.
ACCESS_KEY, SIGNATURE, EXPIRES, TOKEN = (
    "AWSAccessKeyId",
    "Signature",
    "Expires",
    "x-amz-security-token",
)
# Copies of signed headers botocore adds to the query for whoever follows the URL; S3 signs
# the headers themselves, so these never cross.
_HEADER_COPIES = frozenset({"content-type", "content-md5"})
# Lower-case names of everything SigV2 authentication adds to a query: none of it crosses.
SIGV2_QUERY_PARAMS = frozenset({ACCESS_KEY.lower(), SIGNATURE.lower(), EXPIRES.lower(), TOKEN})
NOT_FORWARDED = SIGV2_QUERY_PARAMS | _HEADER_COPIES
# The sub-resources SigV2 signs (botocore's HmacV1Auth.QSAOfInterest, S3's own list).
SUB_RESOURCES = frozenset(
    {
        "accelerate",
        "acl",
        "cors",
        "defaultObjectAcl",
        "location",
        "logging",
        "partNumber",
        "policy",
        "requestPayment",
        "torrent",
        "versioning",
        "versionId",
        "versions",
        "website",
        "uploads",
        "uploadId",
        "response-content-type",
        "response-content-language",
        "response-expires",
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
        "delete",
        "lifecycle",
        "tagging",
        "restore",
        "storageClass",
        "notification",
        "replication",
        "analytics",
        "metrics",
        "inventory",
        "select",
        "select-type",
        "object-lock",
    }
)
METHODS = frozenset({"GET", "PUT", "HEAD"})
# The region a SigV2 URL is sent to upstream: the URL names none, and SDKs presign with
# SigV2 by default in us-east-1 (S3's global endpoint).
REGION = "us-east-1"
_SIGV4_MARKERS = frozenset({"x-amz-algorithm", "x-amz-credential", "x-amz-signature"})
_MAX_EXPIRES_DIGITS = 12
_SIGNATURE_BYTES = 20  # HMAC-SHA1


@dataclass(frozen=True, slots=True)
class QueryV2:
    """What a SigV2 presigned URL claims, read without any secret."""

    access_key_id: str
    signature: bytes  # the HMAC-SHA1 as sent, base64-decoded
    expires: int  # seconds since the epoch
    session_token: str | None
    amz_headers: tuple[tuple[str, str], ...]  # sorted; from the headers and the query
    sub_resources: tuple[tuple[str, str | None], ...]  # sorted by name
    content_md5: str
    content_type: str
    content_sha256: str | None

    def authorization(self) -> Authorization:
        """The claim in the shape the rest of the pipeline reads: S3, in `REGION`, with
        the x-amz-* and content headers it signs as its signed headers."""
        expires_at = datetime.fromtimestamp(min(self.expires, 253402300799), UTC)
        signed = tuple(name for name, _ in self.amz_headers)
        return Authorization(
            scope=Scope(self.access_key_id, expires_at.strftime("%Y%m%d"), REGION, "s3"),
            signed_headers=("content-md5", "content-type", *signed),
            signature=base64.b64encode(self.signature).decode(),
            amz_date=expires_at.strftime("%Y%m%dT%H%M%SZ"),
            timestamp=expires_at,
            presigned=True,
            expires=None,
            session_token=self.session_token,
            content_sha256=self.content_sha256,
        )


def _malformed(message: str) -> Refused:
    return Refused(Reason.MALFORMED_AUTH, message)


def _pairs(raw_query: str) -> list[tuple[str, str | None]]:
    """Decoded pairs as `query_params` decodes them ('+' is a space, as the gateway forwards
    it), keeping whether a value was given at all (`?uploads` is not `?uploads=`)."""
    out: list[tuple[str, str | None]] = []
    for part in raw_query.split("&"):
        if part:
            key, eq, value = part.partition("=")
            out.append((unquote_plus(key), unquote_plus(value) if eq else None))
    return out


def is_presigned_v2(raw_query: str, headers: Sequence[tuple[str, str]]) -> bool:
    """SigV2 query authentication: `AWSAccessKeyId` in the query, no Authorization header
    and no SigV4 presigning (which wins, and is verified as SigV4)."""
    if any(name.lower() == "authorization" for name, _ in headers):
        return False
    keys = {key for key, _ in _pairs(raw_query)}
    return (
        ACCESS_KEY in keys
        and "SignatureVersion" not in keys  # the query APIs' SigV2 (EC2, SQS...): refused
        and not any(key.lower() in _SIGV4_MARKERS for key in keys)
    )


def _header_values(headers: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    index: dict[str, list[str]] = {}
    for name, value in headers:
        index.setdefault(name.lower(), []).append(value.strip(" \t"))
    return index


def _one_header(index: dict[str, list[str]], name: str) -> str:
    values = index.get(name, [])
    if len(values) > 1:
        raise Refused(Reason.AMBIGUOUS_REQUEST, f"iamgate: the header {name} is given twice")
    return values[0] if values else ""


def decode_signature(text: str) -> bytes:
    """A base64 HMAC-SHA1, or the bad-signature refusal: never any other exception."""
    # Base64 never holds a space: a '+' left unencoded in the URL arrives as one.
    try:
        raw = base64.b64decode(text.replace(" ", "+"), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != _SIGNATURE_BYTES:
        raise Refused(Reason.BAD_SIGNATURE, BAD_SIGNATURE_MESSAGE)
    return raw


def parse_query_v2(method: str, raw_query: str, headers: Sequence[tuple[str, str]]) -> QueryV2:
    """Read a SigV2 presigned request strictly: each auth parameter once, every other
    query parameter covered by the signature, only GET, PUT and HEAD."""
    if method not in METHODS:
        raise Refused(
            Reason.ACCESS_DENIED,
            "iamgate accepts Signature Version 2 only for presigned S3 GET, PUT and HEAD; "
            f"presign {method} with Signature Version 4 (signature_version = s3v4)",
        )
    auth: dict[str, str] = {}
    amz: dict[str, str] = {}
    subs: dict[str, str | None] = {}
    for key, value in _pairs(raw_query):
        lower = key.lower()
        if lower in SIGV2_QUERY_PARAMS and lower != TOKEN:
            if key not in (ACCESS_KEY, SIGNATURE, EXPIRES) or key in auth or value is None:
                raise _malformed(f"Query parameter '{key}' must be given once, spelled {key!r}")
            auth[key] = value
        elif lower.startswith("x-amz-"):
            if lower in amz or value is None:
                raise _malformed(f"Query parameter '{key}' must be given once, with a value")
            amz[lower] = value.strip(" \t")  # as a header's value is read
        elif key in SUB_RESOURCES:
            if key in subs:
                raise Refused(Reason.AMBIGUOUS_REQUEST, f"iamgate: '{key}' is given twice")
            subs[key] = value
        elif lower not in _HEADER_COPIES:
            raise Refused(
                Reason.UNSIGNED_HEADER,
                f"iamgate: the query parameter '{key[:64]}' is not covered by a Signature "
                "Version 2 signature; presign this request with Signature Version 4",
            )
    for key in (ACCESS_KEY, SIGNATURE, EXPIRES):
        if key not in auth:
            raise _malformed(f"Query-string authentication requires the {key} parameter")
    expires = auth[EXPIRES]
    if not expires.isascii() or not expires.isdigit() or len(expires) > _MAX_EXPIRES_DIGITS:
        raise _malformed(f"Expires must be a number of seconds since the epoch, not {expires!r}")
    index = _header_values(headers)
    for name, values in index.items():
        if name.startswith("x-amz-"):
            if name in amz:
                raise Refused(
                    Reason.AMBIGUOUS_REQUEST,
                    f"iamgate: {name} is given both in the query and as a header",
                )
            amz[name] = ",".join(values)
    content_sha256 = _one_header(index, "x-amz-content-sha256") or None
    if content_sha256 is not None and is_streaming(content_sha256):
        raise _malformed("aws-chunked bodies need Signature Version 4")
    return QueryV2(
        access_key_id=auth[ACCESS_KEY],
        signature=decode_signature(auth[SIGNATURE]),
        expires=int(expires),
        session_token=amz.get(TOKEN),
        amz_headers=tuple(sorted(amz.items())),
        sub_resources=tuple(sorted(subs.items())),
        content_md5=_one_header(index, "content-md5"),
        content_type=_one_header(index, "content-type"),
        content_sha256=content_sha256,
    )


def canonical_resource(query: QueryV2, raw_path: str, virtual_bucket: str | None) -> str:
    """The bucket and the key as sent (the path is signed as it was encoded), then the
    signed sub-resources, sorted."""
    resource = f"/{virtual_bucket}{raw_path}" if virtual_bucket else raw_path
    if query.sub_resources:
        resource += "?" + "&".join(
            name if value is None else f"{name}={value}" for name, value in query.sub_resources
        )
    return resource


def string_to_sign(query: QueryV2, method: str, raw_path: str, virtual_bucket: str | None) -> str:
    lines = [method, query.content_md5, query.content_type, str(query.expires)]
    lines += [f"{name}:{value}" for name, value in query.amz_headers]
    lines.append(canonical_resource(query, raw_path, virtual_bucket))
    return "\n".join(lines)


def signature_of(secret_access_key: str, to_sign: str) -> bytes:
    key = secret_access_key.encode("utf-8", "surrogateescape")
    return hmac.new(key, to_sign.encode("utf-8", "surrogateescape"), hashlib.sha1).digest()


def verify_query_v2(
    query: QueryV2,
    method: str,
    raw_path: str,
    secret_access_key: str,
    *,
    virtual_bucket: str | None,
    now: datetime,
) -> Verified:
    """The signature in constant time, then the expiry against the gateway's clock."""
    to_sign = string_to_sign(query, method, raw_path, virtual_bucket)
    expected = signature_of(secret_access_key, to_sign)
    if not hmac.compare_digest(expected, query.signature):
        raise Refused(Reason.BAD_SIGNATURE, BAD_SIGNATURE_MESSAGE)
    if now.timestamp() > query.expires:
        expired_at = datetime.fromtimestamp(min(query.expires, 253402300799), UTC)
        raise presign_expired(expired_at, now, None)
    return Verified(b"", base64.b64encode(query.signature).decode(), query.authorization())
