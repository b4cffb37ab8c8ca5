"""Verifying a signature, and the request's time, as AWS does."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from iamgate.refusals import Reason, Refused
from iamgate.sigv4.authorization import Authorization
from iamgate.sigv4.canonical import (
    canonical_request,
    derive_signing_key,
    is_s3_style,
    string_to_sign,
)

SKEW = timedelta(minutes=5)
S3_SKEW = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class Verified:
    signing_key: bytes
    seed_signature: str
    auth: Authorization


def signature_of(signing_key: bytes, to_sign: str) -> str:
    return hmac.new(
        signing_key, to_sign.encode("utf-8", "surrogateescape"), hashlib.sha256
    ).hexdigest()


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
    canonical = canonical_request(
        auth, method, raw_path, raw_query, headers, payload_hash, s3_style=s3_style
    )
    good = hmac.compare_digest(signature_of(key, string_to_sign(auth, canonical)), auth.signature)
    if not good and auth.presigned and auth.session_token is not None:
        # Some signers append the session token to a presigned URL after signing.
        canonical = canonical_request(
            auth,
            method,
            raw_path,
            raw_query,
            headers,
            payload_hash,
            s3_style=s3_style,
            token_signed=False,
        )
        good = hmac.compare_digest(
            signature_of(key, string_to_sign(auth, canonical)), auth.signature
        )
    if not good:
        raise Refused(
            Reason.BAD_SIGNATURE,
            "The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method.",
        )
    skew = S3_SKEW if is_s3_style(scope.service) else SKEW
    if auth.presigned:
        if auth.timestamp - now > S3_SKEW:
            raise Refused(Reason.SKEWED_CLOCK, "Request is not yet valid")
        if auth.expires is not None and now > auth.timestamp + timedelta(seconds=auth.expires):
            raise Refused(Reason.PRESIGN_EXPIRED, "Request has expired")
    elif abs(now - auth.timestamp) > skew:
        raise Refused(Reason.SKEWED_CLOCK, _skew_message(auth.amz_date, now, skew))
    return Verified(key, auth.signature, auth)


def is_sha256_hex(value: str | None) -> bool:
    return value is not None and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def check_payload_sha256(actual_hex: str, declared_hex: str) -> None:
    """The body must be the one whose hash the client signed in x-amz-content-sha256."""
    if not hmac.compare_digest(actual_hex, declared_hex):
        raise Refused(
            Reason.BODY_HASH_MISMATCH,
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        )


def _skew_message(amz_date: str, now: datetime, skew: timedelta) -> str:
    """The wording AWS uses, which botocore recognises to correct its clock and retry."""
    stamp = "%Y%m%dT%H%M%SZ"
    minutes = int(skew.total_seconds() // 60)
    if datetime.strptime(amz_date, stamp).replace(tzinfo=now.tzinfo) < now:
        return (
            f"Signature expired: {amz_date} is now earlier than "
            f"{(now - skew).strftime(stamp)} ({now.strftime(stamp)} - {minutes} min.)"
        )
    return (
        f"Signature not yet current: {amz_date} is still later than "
        f"{(now + skew).strftime(stamp)} ({now.strftime(stamp)} + {minutes} min.)"
    )
