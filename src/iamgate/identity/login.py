"""Deciding a login: password, second factor, lockout. Pure: the store is read and written
by the caller, which applies the returned outcome.

An unknown user and a wrong password give the same answer after the same work (the password
is always checked, against a dummy hash if need be), so names cannot be probed. A locked
account says so: the lock is what the owner must know to act.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from iamgate.identity.passwords import verify_password
from iamgate.identity.totp import matching_step

MAX_FAILURES = 5
LOCKOUT = timedelta(minutes=30)


class LoginError(Enum):
    BAD_CREDENTIALS = "invalid user name or password"
    BAD_CODE = "invalid one-time code"
    REUSED_CODE = "this one-time code was already used; wait for the next one"
    LOCKED = "this account is locked"
    RATE_LIMITED = "too many login attempts from this address; try again later"


@dataclass(frozen=True, slots=True)
class UserRecord:
    name: str
    password_hash: str
    totp_secret: str
    failed_logins: int
    locked_until: datetime | None
    last_totp_step: int | None


@dataclass(frozen=True, slots=True)
class LoginOutcome:
    ok: bool
    error: LoginError | None = None
    # What the caller writes back to the user record:
    failed_logins: int = 0
    locked_until: datetime | None = None
    totp_step: int | None = None

    def message(self) -> str:
        assert self.error is not None
        return self.error.value


def decide_login(user: UserRecord | None, password: str, code: str, now: datetime) -> LoginOutcome:
    password_ok = verify_password(user.password_hash if user else None, password)
    if user is None:
        return LoginOutcome(False, LoginError.BAD_CREDENTIALS)
    locked = user.locked_until is not None and user.locked_until > now
    if locked:
        return LoginOutcome(False, LoginError.LOCKED, user.failed_logins, user.locked_until, None)
    if not password_ok:
        return _failure(user, LoginError.BAD_CREDENTIALS, now)
    step = matching_step(user.totp_secret, code, now)
    if step is None:
        return _failure(user, LoginError.BAD_CODE, now)
    if user.last_totp_step is not None and step <= user.last_totp_step:
        return _failure(user, LoginError.REUSED_CODE, now)
    return LoginOutcome(True, None, 0, None, step)


def _failure(user: UserRecord, error: LoginError, now: datetime) -> LoginOutcome:
    failures = user.failed_logins + 1
    if failures >= MAX_FAILURES:
        return LoginOutcome(False, error, failures, now + LOCKOUT, user.last_totp_step)
    return LoginOutcome(False, error, failures, None, user.last_totp_step)
