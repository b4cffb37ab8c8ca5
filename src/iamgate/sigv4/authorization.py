"""Reading a request's SigV4 authorization: the Authorization header or a presigned query.

Parsing is strict, because anything ambiguous here becomes a way around verification:
one algorithm, a five-part credential scope whose date agrees with X-Amz-Date, `host`
always signed, and no x-amz-* header left unsigned in header auth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import unquote_plus

from iamgate.refusals import Reason, Refused

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_PRESIGN_EXPIRES = 604800
# An unsigned session token is legitimate (STS-style signing adds it after signing).
_MAY_BE_UNSIGNED = frozenset({"x-amz-security-token"})


@dataclass(frozen=True, slots=True)
class Scope:
    access_key_id: str
    date: str
    region: str
    service: str

    def as_string(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


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
    """Decoded (key, value) pairs in order. '+' is a space, as in a form: botocore itself
    sends spaces in query values as '+' and signs them as %20, and a literal plus always
    arrives as %2B."""
    pairs = []
    for part in raw_query.split("&"):
        if part:
            key, _, value = part.partition("=")
            pairs.append((unquote_plus(key), unquote_plus(value)))
    return pairs


def _parse_scope(credential: str, amz_date: str) -> Scope:
    parts = credential.split("/")
    if len(parts) != 5 or not all(parts):
        raise Refused(
            Reason.MALFORMED_SCOPE,
            "Credential should be scoped to a valid region, service and date: "
            f"'{credential.partition('/')[2]}'",
        )
    access_key_id, date, region, service, terminator = parts
    if terminator != "aws4_request":
        raise Refused(
            Reason.MALFORMED_SCOPE,
            f"Credential should be scoped with a valid terminator: 'aws4_request', not "
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
    try:
        if len(amz_date) != 16 or amz_date[8] != "T" or amz_date[15] != "Z":
            raise ValueError(amz_date)
        return datetime(
            int(amz_date[0:4]),
            int(amz_date[4:6]),
            int(amz_date[6:8]),
            int(amz_date[9:11]),
            int(amz_date[11:13]),
            int(amz_date[13:15]),
            tzinfo=UTC,
        )
    except ValueError:
        raise _malformed(f"X-Amz-Date must be in ISO 8601 basic format, not '{amz_date}'") from None


def _signed_headers(text: str) -> tuple[str, ...]:
    names = tuple(text.split(";"))
    if not text or any(not n or n != n.lower().strip() for n in names):
        raise _malformed("SignedHeaders must be lower-case header names separated by ';'")
    if "host" not in names:
        raise Refused(Reason.UNSIGNED_HEADER, "'Host' must be a signed header")
    return names


SIGV2_ONLY = (
    "iamgate accepts only AWS Signature Version 4; for S3 presigned URLs from the AWS CLI v1, "
    "set `s3 =\n    signature_version = s3v4` in the profile"
)


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
            raise Refused(
                Reason.MALFORMED_AUTH,
                f"Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' "
                f"parameters, each once, in KEY=VALUE form; got '{component.strip()}'.",
            )
        fields[key] = item
    missing = [k for k in ("Credential", "SignedHeaders", "Signature") if k not in fields]
    if missing:
        raise Refused(
            Reason.MALFORMED_AUTH,
            f"Authorization header requires '{missing[0]}' parameter.",
        )
    return fields


def _first(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _check_signature_text(signature: str) -> str:
    if len(signature) != 64 or any(c not in "0123456789abcdef" for c in signature):
        raise _malformed("Signature must be 64 lower-case hexadecimal characters")
    return signature


def parse_authorization(
    method: str, raw_path: str, raw_query: str, headers: Sequence[tuple[str, str]]
) -> Authorization:
    header = _first(headers, "authorization")
    content_sha256 = _first(headers, "x-amz-content-sha256")
    if header is not None:
        fields = _header_auth_fields(header)
        amz_date = _first(headers, "x-amz-date")
        if amz_date is None:
            raise _malformed("Authorization requires an X-Amz-Date header")
        signed = _signed_headers(fields["SignedHeaders"])
        present = {k.lower() for k, _ in headers}
        unsigned = sorted(
            n
            for n in present
            if n.startswith("x-amz-") and n not in signed and n not in _MAY_BE_UNSIGNED
        )
        if unsigned:
            raise Refused(
                Reason.UNSIGNED_HEADER,
                f"There were headers present in the request which were not signed: "
                f"{', '.join(unsigned)}",
            )
        missing = [n for n in signed if n not in present]
        if missing:
            raise _malformed(f"Signed header '{missing[0]}' is not in the request")
        return Authorization(
            scope=_parse_scope(fields["Credential"], amz_date),
            signed_headers=signed,
            signature=_check_signature_text(fields["Signature"]),
            amz_date=amz_date,
            timestamp=_parse_time(amz_date),
            presigned=False,
            expires=None,
            session_token=_first(headers, "x-amz-security-token"),
            content_sha256=content_sha256,
        )

    params: dict[str, str] = {}
    for key, value in query_params(raw_query):
        if key.startswith("X-Amz-"):
            if key in params:
                raise _malformed(f"Query parameter '{key}' given more than once")
            params[key] = value
    if "X-Amz-Algorithm" not in params and "X-Amz-Signature" not in params:
        if any(key == "AWSAccessKeyId" for key, _ in query_params(raw_query)):
            raise _malformed(SIGV2_ONLY)
        raise Refused(
            Reason.MISSING_AUTH,
            "Request is missing Authentication Token",
        )
    if params.get("X-Amz-Algorithm") != ALGORITHM:
        raise _malformed(f"X-Amz-Algorithm only supports '{ALGORITHM}'")
    required = ("X-Amz-Credential", "X-Amz-Date", "X-Amz-SignedHeaders", "X-Amz-Signature")
    for key in required:
        if key not in params:
            raise _malformed(f"Query-string authentication requires the {key} parameter")
    expires_text = params.get("X-Amz-Expires")
    expires: int | None = None
    if expires_text is not None:
        if not expires_text.isdigit() or not 1 <= int(expires_text) <= MAX_PRESIGN_EXPIRES:
            raise _malformed(f"X-Amz-Expires must be between 1 and {MAX_PRESIGN_EXPIRES} seconds")
        expires = int(expires_text)
    amz_date = params["X-Amz-Date"]
    signed = _signed_headers(params["X-Amz-SignedHeaders"])
    present = {k.lower() for k, _ in headers}
    missing = [n for n in signed if n not in present]
    if missing:
        raise _malformed(f"Signed header '{missing[0]}' is not in the request")
    return Authorization(
        scope=_parse_scope(params["X-Amz-Credential"], amz_date),
        signed_headers=signed,
        signature=_check_signature_text(params["X-Amz-Signature"]),
        amz_date=amz_date,
        timestamp=_parse_time(amz_date),
        presigned=True,
        expires=expires,
        session_token=params.get("X-Amz-Security-Token") or _first(headers, "x-amz-security-token"),
        content_sha256=content_sha256,
    )
