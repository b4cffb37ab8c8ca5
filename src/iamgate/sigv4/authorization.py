"""Reading a request's SigV4 authorization: the Authorization header or a presigned query.

Parsing is strict, because anything ambiguous here becomes a way around verification:
one algorithm, one authentication mechanism, a five-part credential scope whose date agrees
with X-Amz-Date, `host` always signed, and no x-amz-* header left unsigned in header auth.
Every failure is a `Refused`; nothing a client sends may surface as another exception.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import unquote_plus

from iamgate.refusals import Reason, Refused

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
MAX_PRESIGN_EXPIRES = 604800
_DIGITS = frozenset("0123456789")
# 64 lower-case hex digits, nothing else (ASCII only: no \d, no re.IGNORECASE)
_SHA256_HEX = re.compile("[0-9a-f]{64}")
# STS-style signers add the session token after signing (the suite's post-sts-header-after),
# so it alone may be unsigned; the gateway binds the token to the access key separately.
_MAY_BE_UNSIGNED = frozenset({"x-amz-security-token"})
_PRESIGN_MARKERS = ("X-Amz-Algorithm", "X-Amz-Signature", "X-Amz-Credential")

BAD_SIGNATURE_MESSAGE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your key and signing method."
)
# Signature Version 2 is accepted only in S3 presigned URLs (`sigv2.py`), never in a header.
SIGV2_ONLY = (
    "iamgate accepts AWS Signature Version 2 only in presigned S3 GET, PUT and HEAD URLs; "
    "sign requests with Signature Version 4 (for S3 in the AWS CLI v1: `s3 =\n    "
    "signature_version = s3v4` in the profile)"
)


@dataclass(frozen=True, slots=True)
class Scope:
    access_key_id: str
    date: str
    region: str
    service: str

    def as_string(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{TERMINATOR}"


@dataclass(frozen=True, slots=True)
class Authorization:
    scope: Scope
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: str
    timestamp: datetime
    presigned: bool
    expires: int | None
    session_token: str | None
    content_sha256: str | None


def _malformed(message: str) -> Refused:
    return Refused(Reason.MALFORMED_AUTH, message)


def query_params(raw_query: str) -> list[tuple[str, str]]:
    """Decoded (key, value) pairs in order. '+' is a space, as in a form: botocore sends
    spaces in query values as '+' (urlencode) and signs them as %20, and a literal plus
    always arrives as %2B; AWS decodes them the same way."""
    pairs = []
    for part in raw_query.split("&"):
        if part:
            key, _, value = part.partition("=")
            pairs.append((unquote_plus(key), unquote_plus(value)))
    return pairs


def _is_digits(text: str) -> bool:
    """ASCII digits only: `str.isdigit` and `int` also accept '²', '٣', '+1' and '1_0'."""
    return bool(text) and all(c in _DIGITS for c in text)


def _parse_scope(credential: str, amz_date: str) -> Scope:
    parts = credential.split("/")
    if len(parts) != 5 or not all(parts):
        raise Refused(
            Reason.MALFORMED_SCOPE,
            "Credential should be scoped to a valid region, service and date: "
            f"'{credential.partition('/')[2]}'",
        )
    access_key_id, date, region, service, terminator = parts
    if terminator != TERMINATOR:
        raise Refused(
            Reason.MALFORMED_SCOPE,
            f"Credential should be scoped with a valid terminator: '{TERMINATOR}', not "
            f"'{terminator}'.",
        )
    if date != amz_date[:8]:
        raise Refused(
            Reason.MALFORMED_SCOPE,
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{date}' != '{amz_date[:8]}', from '{amz_date}'.",
        )
    return Scope(access_key_id, date, region, service)


def _parse_time(amz_date: str) -> datetime:
    """ISO 8601 basic (20150830T123600Z), parsed by hand: this runs on every request."""
    date, time = amz_date[:8], amz_date[9:15]
    if (
        len(amz_date) != 16
        or amz_date[8] != "T"
        or amz_date[15] != "Z"
        or not _is_digits(date)
        or not _is_digits(time)
    ):
        raise _malformed(f"X-Amz-Date must be in ISO 8601 basic format, not '{amz_date}'")
    try:
        return datetime(
            int(date[0:4]),
            int(date[4:6]),
            int(date[6:8]),
            int(time[0:2]),
            int(time[2:4]),
            int(time[4:6]),
            tzinfo=UTC,
        )
    except ValueError:
        raise _malformed(f"X-Amz-Date is not a valid date and time: '{amz_date}'") from None


def _signed_headers(text: str) -> tuple[str, ...]:
    names = tuple(text.split(";"))
    if not text or any(not n or n != n.lower().strip() for n in names):
        raise _malformed("SignedHeaders must be lower-case header names separated by ';'")
    if len(set(names)) != len(names):
        raise _malformed("SignedHeaders must name each header once")
    if "host" not in names:
        raise Refused(Reason.UNSIGNED_HEADER, "'Host' must be a signed header")
    return names


def _header_auth_fields(value: str) -> dict[str, str]:
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm == "AWS":
        raise _malformed(SIGV2_ONLY)
    if algorithm != ALGORITHM:
        raise _malformed(f"Unsupported Authorization Type (only {ALGORITHM})")
    fields: dict[str, str] = {}
    for component in rest.split(","):
        key, eq, item = component.strip().partition("=")
        if not eq or key in fields:
            raise _malformed(
                f"Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' "
                f"parameters, each once, in KEY=VALUE form; got '{component.strip()}'."
            )
        fields[key] = item
    for key in ("Credential", "SignedHeaders", "Signature"):
        if key not in fields:
            raise _malformed(f"Authorization header requires '{key}' parameter.")
    return fields


def _check_signature_text(signature: str) -> str:
    if _SHA256_HEX.fullmatch(signature) is None:
        raise _malformed("Signature must be 64 lower-case hexadecimal characters")
    return signature


def _parse_expires(text: str | None) -> int:
    if text is None:
        raise _malformed("Query-string authentication requires the X-Amz-Expires parameter")
    # 0 is a URL that has expired already: S3 answers it "Request has expired", as botocore's
    # ExpiresIn=0 expects; that is decided after the signature, with the clock.
    if not _is_digits(text) or len(text) > 6 or not 0 <= int(text) <= MAX_PRESIGN_EXPIRES:
        raise _malformed(f"X-Amz-Expires must be between 0 and {MAX_PRESIGN_EXPIRES} seconds")
    return int(text)


def _index_headers(headers: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """One pass over the headers, names lower-cased, values in received order."""
    index: dict[str, list[str]] = {}
    for name, value in headers:
        index.setdefault(name.lower(), []).append(value)
    return index


def _single(index: dict[str, list[str]], name: str) -> str | None:
    """The header's value without the optional white space around it (RFC 9110 5.5)."""
    values = index.get(name)
    if values is None:
        return None
    if len(values) > 1:
        raise _malformed(f"The {name} header may be given only once")
    return values[0].strip(" \t")


def _require_present(
    signed: tuple[str, ...], index: dict[str, list[str]], *, presigned: bool = False
) -> None:
    """A presigned URL that signs a header its follower did not send (a HEAD presigned with
    ChecksumMode, then fetched without `x-amz-checksum-mode`) fails as S3 fails it: the
    signature does not match (403), not as a malformed request."""
    for name in signed:
        if name not in index:
            if presigned:
                raise Refused(
                    Reason.BAD_SIGNATURE,
                    f"{BAD_SIGNATURE_MESSAGE} The URL signs the header '{name}', which the "
                    "request does not carry.",
                )
            raise _malformed(f"Signed header '{name}' is not in the request")


def parse_authorization(
    method: str, raw_path: str, raw_query: str, headers: Sequence[tuple[str, str]]
) -> Authorization:
    """Read and check the authorization without any secret: what the signature claims."""
    index = _index_headers(headers)
    header = _single(index, "authorization")
    content_sha256 = _single(index, "x-amz-content-sha256")
    if header is not None:
        return _from_header(header, index, raw_query, content_sha256)
    return _from_query(raw_query, index, content_sha256)


def _from_header(
    header: str, index: dict[str, list[str]], raw_query: str, content_sha256: str | None
) -> Authorization:
    fields = _header_auth_fields(header)
    if any(key in _PRESIGN_MARKERS for key, _ in query_params(raw_query)):
        raise _malformed(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter or "
            "the Authorization header should be specified"
        )
    amz_date = _single(index, "x-amz-date")
    if amz_date is None:
        raise _malformed("Authorization requires an X-Amz-Date header")
    signed = _signed_headers(fields["SignedHeaders"])
    signature = _check_signature_text(fields["Signature"])
    timestamp = _parse_time(amz_date)
    scope = _parse_scope(fields["Credential"], amz_date)
    unsigned = sorted(
        n for n in index if n.startswith("x-amz-") and n not in signed and n not in _MAY_BE_UNSIGNED
    )
    if unsigned:
        raise Refused(
            Reason.UNSIGNED_HEADER,
            f"There were headers present in the request which were not signed: "
            f"{', '.join(unsigned)}",
        )
    _require_present(signed, index)
    return Authorization(
        scope=scope,
        signed_headers=signed,
        signature=signature,
        amz_date=amz_date,
        timestamp=timestamp,
        presigned=False,
        expires=None,
        session_token=_single(index, "x-amz-security-token"),
        content_sha256=content_sha256,
    )


def _from_query(
    raw_query: str, index: dict[str, list[str]], content_sha256: str | None
) -> Authorization:
    pairs = query_params(raw_query)
    params: dict[str, str] = {}
    for key, value in pairs:
        if key.startswith("X-Amz-"):
            if key in params:
                raise _malformed(f"Query parameter '{key}' given more than once")
            params[key] = value
    if not any(key in params for key in _PRESIGN_MARKERS):
        if any(key == "AWSAccessKeyId" for key, _ in pairs):
            raise _malformed(SIGV2_ONLY)
        raise Refused(Reason.MISSING_AUTH, "Request is missing Authentication Token")
    if params.get("X-Amz-Algorithm") != ALGORITHM:
        raise _malformed(f"X-Amz-Algorithm only supports '{ALGORITHM}'")
    for key in ("X-Amz-Credential", "X-Amz-Date", "X-Amz-SignedHeaders", "X-Amz-Signature"):
        if key not in params:
            raise _malformed(f"Query-string authentication requires the {key} parameter")
    expires = _parse_expires(params.get("X-Amz-Expires"))
    amz_date = params["X-Amz-Date"]
    signed = _signed_headers(params["X-Amz-SignedHeaders"])
    signature = _check_signature_text(params["X-Amz-Signature"])
    timestamp = _parse_time(amz_date)
    scope = _parse_scope(params["X-Amz-Credential"], amz_date)
    _require_present(signed, index, presigned=True)
    token = params.get("X-Amz-Security-Token")
    return Authorization(
        scope=scope,
        signed_headers=signed,
        signature=signature,
        amz_date=amz_date,
        timestamp=timestamp,
        presigned=True,
        expires=expires,
        session_token=token if token is not None else _single(index, "x-amz-security-token"),
        content_sha256=content_sha256,
    )
