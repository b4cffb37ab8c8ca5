"""Verifying a signature, and the request's time, as AWS does.

The signature is checked before the clock, as AWS reports a bad signature first; both are
always checked. Signatures are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from iamgate.refusals import Reason, Refused
from iamgate.sigv4.authorization import (  # re-exported: S3's words, defined with the parsing
    BAD_SIGNATURE_MESSAGE as BAD_SIGNATURE_MESSAGE,
)
from iamgate.sigv4.authorization import Authorization
from iamgate.sigv4.canonical import (
    canonical_request,
    derive_signing_key,
    is_s3_style,
    string_to_sign,
)

SKEW = timedelta(minutes=5)
S3_SKEW = timedelta(minutes=15)
_STAMP = "%Y%m%dT%H%M%SZ"
_ISO = "%Y-%m-%dT%H:%M:%SZ"
# 64 lower-case hex digits, nothing else (ASCII only: no \d, no re.IGNORECASE)
_SHA256_HEX = re.compile("[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Verified:
    """What a verified request hands on: aws-chunked bodies chain from its signature."""

    signing_key: bytes
    seed_signature: str
    auth: Authorization


def signature_of(signing_key: bytes, to_sign: str) -> str:
    return hmac.new(
        signing_key, to_sign.encode("utf-8", "surrogateescape"), hashlib.sha256
    ).hexdigest()


def _signature_matches(
    auth: Authorization,
    key: bytes,
    request: tuple[str, str, str, Sequence[tuple[str, str]], str],
    s3_style: bool | None,
    *,
    token_signed: bool,
) -> bool:
    method, raw_path, raw_query, headers, payload_hash = request
    canonical = canonical_request(
        auth,
        method,
        raw_path,
        raw_query,
        headers,
        payload_hash,
        s3_style=s3_style,
        token_signed=token_signed,
    )
    expected = signature_of(key, string_to_sign(auth, canonical))
    return hmac.compare_digest(expected.encode(), auth.signature.encode())


def verify_signature(
    auth: Authorization,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Sequence[tuple[str, str]],
    secret_access_key: str,
    payload_hash: str,
    *,
    now: datetime,
    s3_style: bool | None = None,
) -> Verified:
    scope = auth.scope
    key = derive_signing_key(secret_access_key, scope.date, scope.region, scope.service)
    request = (method, raw_path, raw_query, headers, payload_hash)
    good = _signature_matches(auth, key, request, s3_style, token_signed=True)
    if not good and auth.presigned and auth.session_token is not None:
        # Some signers append the session token to a presigned URL after signing. Only a
        # URL signed without the token can pass here; the token is bound to the key later.
        good = _signature_matches(auth, key, request, s3_style, token_signed=False)
    if not good:
        raise Refused(Reason.BAD_SIGNATURE, BAD_SIGNATURE_MESSAGE)
    check_time(auth, now)
    return Verified(key, auth.signature, auth)


def check_time(auth: Authorization, now: datetime) -> None:
    """Header auth: within 5 minutes of now (15 for S3). Presigned: not past X-Amz-Expires,
    and not more than 15 minutes in the future."""
    if auth.presigned:
        if auth.timestamp - now > S3_SKEW:
            raise Refused(Reason.SKEWED_CLOCK, _skew_message(auth, now, S3_SKEW))
        if auth.expires is not None and now > auth.timestamp + timedelta(seconds=auth.expires):
            raise presign_expired(
                auth.timestamp + timedelta(seconds=auth.expires), now, auth.expires
            )
        return
    skew = S3_SKEW if is_s3_style(auth.scope.service) else SKEW
    if abs(now - auth.timestamp) > skew:
        raise Refused(Reason.SKEWED_CLOCK, _skew_message(auth, now, skew))


def presign_expired(expired_at: datetime, now: datetime, x_amz_expires: int | None) -> Refused:
    """S3's own answer to an expired presigned URL: AccessDenied, "Request has expired",
    with X-Amz-Expires (SigV4 only), Expires and ServerTime, as AWS words them."""
    details = {} if x_amz_expires is None else {"X-Amz-Expires": str(x_amz_expires)}
    details["Expires"] = expired_at.strftime(_ISO)
    details["ServerTime"] = now.strftime(_ISO)
    return Refused(Reason.PRESIGN_EXPIRED, "Request has expired", details)


def is_sha256_hex(value: str | None) -> bool:
    return value is not None and _SHA256_HEX.fullmatch(value) is not None


def check_payload_sha256(actual_hex: str, declared_hex: str) -> None:
    """The body must be the one whose hash the client signed in x-amz-content-sha256."""
    if not hmac.compare_digest(actual_hex.encode(), declared_hex.encode("utf-8", "replace")):
        raise Refused(
            Reason.BODY_HASH_MISMATCH,
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        )


def _skew_message(auth: Authorization, now: datetime, skew: timedelta) -> str:
    """The wording AWS uses, which botocore recognises to correct its clock and retry."""
    minutes = int(skew.total_seconds() // 60)
    if auth.timestamp < now:
        return (
            f"Signature expired: {auth.amz_date} is now earlier than "
            f"{(now - skew).strftime(_STAMP)} ({now.strftime(_STAMP)} - {minutes} min.)"
        )
    return (
        f"Signature not yet current: {auth.amz_date} is still later than "
        f"{(now + skew).strftime(_STAMP)} ({now.strftime(_STAMP)} + {minutes} min.)"
    )
