"""Deciding a login: the two factors, single-use codes, and how long failures must wait.
Pure: the caller keeps the state (the user record in the store, failure counts in memory)
and applies what these functions return.

One answer for every failure. A refused login must not tell who exists nor which factor was
wrong, so an unknown name, a user not enrolled yet, a wrong password, a wrong or reused code
and an account an administrator locked all get `LoginError.BAD_CREDENTIALS` (HTTP 401),
after the same work: the password is always checked, against a dummy hash if need be. The
real reason (`Refusal`) is for the audit log only.

The one exception is a locked account given its correct password *and* a fresh code: that
answer says the account is locked (423), because only someone holding both factors can get
it, and the owner must know to ask an administrator rather than retry. Such a code is not
spent, and the attempt counts as a failure like any other refusal.

Throttling, not lockout. A lock after N failures lets anyone lock anyone out and tells
which names are real. Instead, failures are counted per (user name, source address), for
names that exist and names that do not alike, plus per address by the caller. After
`FREE_FAILURES` failures of one name from one address, each further one doubles the wait
before that name may be tried again from there: 30 s, 1 min, 2 min… up to 15 min. An
attempt made during the wait is refused (429 with Retry-After) without checking anything.
A guesser elsewhere does not slow the owner down; a success from an address clears its
count for that name. IPv6 addresses count per /64, the block one host is usually given.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from iamgate.identity.passwords import verify_password
from iamgate.identity.totp import matching_step

FREE_FAILURES = 5  # per (user name, address) before waits begin
FIRST_WAIT = 30.0  # seconds, after the FREE_FAILURES-th failure
MAX_WAIT = 15 * 60.0  # seconds
FORGET_AFTER = 24 * 3600.0  # seconds without a failure, after which a count starts again


class LoginError(Enum):
    """What the client is told: the code is its `name`, the message its `value`."""

    BAD_CREDENTIALS = "invalid user name, password or one-time code; a code works only once"
    LOCKED = "this account is locked; ask an administrator"
    RATE_LIMITED = "too many failed logins; try again later"
    BUSY = "too many logins at once; try again in a moment"

    @property
    def status(self) -> int:
        return {LoginError.LOCKED: 423, LoginError.RATE_LIMITED: 429, LoginError.BUSY: 429}.get(
            self, 401
        )


class Refusal(Enum):
    """Why a login was really refused, as the audit log names it."""

    UNKNOWN_USER = "unknown_user"
    NOT_ENROLLED = "not_enrolled"
    BAD_PASSWORD = "bad_password"
    BAD_CODE = "bad_code"
    REUSED_CODE = "reused_code"
    LOCKED = "locked"  # both factors right, but an administrator locked the account
    THROTTLED = "throttled"  # too many failures of this name from this address
    ADDRESS_THROTTLED = "address_throttled"  # too many failures from this address
    BUSY = "busy"  # too many password checks queued on this replica, whoever sent them

    @property
    def answer(self) -> LoginError:
        if self is Refusal.LOCKED:
            return LoginError.LOCKED
        if self is Refusal.BUSY:
            return LoginError.BUSY
        if self in (Refusal.THROTTLED, Refusal.ADDRESS_THROTTLED):
            return LoginError.RATE_LIMITED
        return LoginError.BAD_CREDENTIALS


@dataclass(frozen=True, slots=True)
class UserRecord:
    name: str
    password_hash: str
    totp_secret: str
    failed_logins: int
    locked_until: datetime | None
    last_totp_step: int | None

    def locked(self, now: datetime) -> bool:
        return self.locked_until is not None and self.locked_until > now


@dataclass(frozen=True, slots=True)
class LoginOutcome:
    ok: bool
    refusal: Refusal | None = None
    totp_step: int | None = None  # on success: the code's step, to be recorded as used
    locked: bool = False  # the account is locked (for the audit log, whatever the refusal)

    @property
    def error(self) -> LoginError | None:
        return self.refusal.answer if self.refusal is not None else None


def decide_login(user: UserRecord | None, password: str, code: str, now: datetime) -> LoginOutcome:
    enrolled = user is not None and bool(user.password_hash)
    password_ok = verify_password(user.password_hash if user and enrolled else None, password)
    if user is None or not enrolled:
        return LoginOutcome(False, Refusal.UNKNOWN_USER if user is None else Refusal.NOT_ENROLLED)
    locked = user.locked(now)
    if not password_ok:
        return LoginOutcome(False, Refusal.BAD_PASSWORD, locked=locked)
    step = matching_step(user.totp_secret, code, now)
    if step is None:
        return LoginOutcome(False, Refusal.BAD_CODE, locked=locked)
    if user.last_totp_step is not None and step <= user.last_totp_step:
        return LoginOutcome(False, Refusal.REUSED_CODE, locked=locked)
    if locked:
        return LoginOutcome(False, Refusal.LOCKED, locked=True)
    return LoginOutcome(True, None, step)


# -- throttling -----------------------------------------------------------------------------


def wait_after(failures: int) -> float:
    """Seconds to wait, after the last of `failures` failures, before the next attempt."""
    if failures < FREE_FAILURES:
        return 0.0
    return min(FIRST_WAIT * 2.0 ** min(failures - FREE_FAILURES, 32), MAX_WAIT)


@dataclass(frozen=True, slots=True)
class Backoff:
    """The failures of one user name from one address. Times are seconds on any clock that
    only moves forward (the caller's monotonic clock)."""

    failures: int = 0
    last_failure: float = 0.0

    def retry_after(self, now: float) -> float:
        """Seconds before this name may be tried again from this address; 0: now."""
        if self.forgotten(now):
            return 0.0
        return max(0.0, self.last_failure + wait_after(self.failures) - now)

    def failed(self, now: float) -> Backoff:
        return Backoff((0 if self.forgotten(now) else self.failures) + 1, now)

    def forgotten(self, now: float) -> bool:
        return now - self.last_failure >= FORGET_AFTER


def address_key(address: str | None) -> str:
    """The unit an address is throttled by: an IPv4 address, or an IPv6 /64."""
    if not address:
        return "?"
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
