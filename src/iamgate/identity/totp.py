"""TOTP (RFC 6238) second factors: ±1 step of clock drift, each code usable once."""

from __future__ import annotations

from datetime import datetime

import pyotp

STEP_SECONDS = 30


def new_totp_secret() -> str:
    return pyotp.random_base32()


def enrolment_uri(secret: str, user: str, issuer: str = "iamgate") -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=user, issuer_name=issuer)


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step whose code this is (now, one before or one after), or None. The caller
    records used steps so that a code, once accepted, is never accepted again."""
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    step = int(now.timestamp()) // STEP_SECONDS
    for candidate in (step, step - 1, step + 1):
        if totp.verify(code, for_time=candidate * STEP_SECONDS, valid_window=0):
            return candidate
    return None


def code_at(secret: str, when: datetime) -> str:
    return pyotp.TOTP(secret).at(when)
