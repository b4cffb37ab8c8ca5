"""One way in, for the JSON API (the CLI) and the login page (the browser); no HTTP here.

Login is the one unauthenticated action, so both doors share its defenses (the decisions
are in `iamgate.identity.login`): one answer for every failed login whoever the name is,
constant-work password checks, single-use TOTP codes, failures throttled per (user name,
address) and per address instead of a lock anyone could set off, and an audit event for
every outcome that names the real reason.

The throttles live in each replica's memory, so behind a load balancer of N replicas a
guesser gets up to N times the budget; they start empty when a replica starts.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from iamgate.audit.events import AuditEvent, EventType
from iamgate.audit.writer import AuditSink
from iamgate.control.hashing import HashingBusy, HashingPool
from iamgate.identity.login import (
    Backoff,
    LoginError,
    LoginOutcome,
    Refusal,
    address_key,
    decide_login,
    wait_after,
)
from iamgate.store.login_sessions import create_login_session
from iamgate.store.revocations import revoke
from iamgate.store.users import claim_login, get_user, note_login_failure

log = logging.getLogger(__name__)

LOGIN_SESSION_TTL = timedelta(hours=12)
RATE_WINDOW_SECONDS = 300
RATE_MAX_FAILURES = 20
MAX_TRACKED = 100_000  # addresses, and (name, address) pairs, kept in memory at most

Clock = Callable[[], float]


class RateLimiter:
    """At most `limit` failed logins per address in a sliding window (per replica).

    Only failures count: a whole office behind one NAT address logs in every morning, while
    guessing (one user's password, or one password across many users) is nothing but
    failures. `Backoffs` slows the first; this stops the second.
    """

    def __init__(
        self,
        limit: int = RATE_MAX_FAILURES,
        window: float = RATE_WINDOW_SECONDS,
        clock: Clock = time.monotonic,
    ):
        self.limit, self.window, self.clock = limit, window, clock
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, address: str) -> float:
        """Seconds until this address may try again; 0: now."""
        failures = self._failures.get(address)
        if not failures:
            return 0.0
        now = self.clock()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return 0.0
        if len(failures) < self.limit:
            return 0.0
        return failures[len(failures) - self.limit] + self.window - now

    def allows(self, address: str) -> bool:
        return self.retry_after(address) <= 0

    def failed(self, address: str) -> float:
        """Count a failure (or an attempt in progress); returns its time, for `forgive`."""
        if len(self._failures) >= MAX_TRACKED and address not in self._failures:
            for other in list(self._failures):
                self.retry_after(other)  # drops the addresses whose failures have expired
            for other in list(self._failures)[: len(self._failures) - MAX_TRACKED * 9 // 10]:
                del self._failures[other]  # then, if need be, the first seen
        stamp = self.clock()
        self._failures.setdefault(address, deque()).append(stamp)
        return stamp

    def forgive(self, address: str, stamp: float) -> None:
        """Take back a count made by `failed`: the attempt succeeded."""
        failures = self._failures.get(address)
        if failures is not None and stamp in failures:
            failures.remove(stamp)


class Backoffs:
    """The failures of each (user name, address), names that exist or not alike (per replica).

    At most `max_tracked` pairs are kept: past that, the ones that failed least recently are
    forgotten first.
    """

    def __init__(self, clock: Clock = time.monotonic, max_tracked: int = MAX_TRACKED):
        self.clock, self.max_tracked = clock, max_tracked
        self._pairs: OrderedDict[tuple[str, str], Backoff] = OrderedDict()

    def retry_after(self, name: str, address: str) -> float:
        backoff = self._pairs.get((name, address))
        return backoff.retry_after(self.clock()) if backoff is not None else 0.0

    def failed(self, name: str, address: str) -> Backoff:
        key = (name, address)
        backoff = self._pairs.pop(key, Backoff()).failed(self.clock())
        self._pairs[key] = backoff  # the most recent failure last
        while len(self._pairs) > self.max_tracked:
            self._pairs.popitem(last=False)
        return backoff

    def succeeded(self, name: str, address: str) -> None:
        self._pairs.pop((name, address), None)


class Throttle:
    """Both limits on failed logins. An attempt counts as a failure from the moment it is
    let through until it succeeds, so that attempts sent all at once cannot all slip in
    while the first are still being checked."""

    def __init__(self, rate: RateLimiter | None = None, backoffs: Backoffs | None = None):
        self.rate = rate or RateLimiter()
        self.backoffs = backoffs or Backoffs()

    def refusal(self, name: str, address: str) -> tuple[Refusal, float] | None:
        """Why an attempt may not be made now and for how many seconds, or None."""
        pair = self.backoffs.retry_after(name, address)
        shared = self.rate.retry_after(address)
        if pair <= 0 and shared <= 0:
            return None
        if pair >= shared:
            return Refusal.THROTTLED, pair
        return Refusal.ADDRESS_THROTTLED, shared

    def begin(self, name: str, address: str) -> tuple[float, Backoff]:
        return self.rate.failed(address), self.backoffs.failed(name, address)

    def succeeded(self, name: str, address: str, stamp: float) -> None:
        self.rate.forgive(address, stamp)
        self.backoffs.succeeded(name, address)


@dataclass(frozen=True, slots=True)
class Client:
    """Where a request comes from, as the audit log records it."""

    source_ip: str | None
    user_agent: str | None


@dataclass(frozen=True, slots=True)
class LoginResult:
    user: str
    error: LoginError | None = None
    token: str | None = None
    session_id: str | None = None
    expires_at: datetime | None = None
    retry_after: int | None = None  # seconds, with RATE_LIMITED: the Retry-After header

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def status(self) -> int:
        return self.error.status if self.error is not None else 200


class Logins:
    def __init__(
        self,
        engine: Engine,
        audit: AuditSink,
        throttle: Throttle | None = None,
        hashing: HashingPool | None = None,
    ):
        self.engine = engine
        self.audit = audit
        self.throttle = throttle or Throttle()
        self.hashing = hashing or HashingPool()
        self._background: set[asyncio.Task[None]] = set()

    def record(
        self, kind: EventType, principal: str | None, client: Client, **fields: object
    ) -> None:
        self.audit.append(
            AuditEvent(
                kind,
                principal=principal,
                source_ip=client.source_ip,
                user_agent=client.user_agent,
                fields=fields,
            )
        )

    async def log_in(
        self, name: str, password: str, code: str, client: Client, *, kind: str = "cli"
    ) -> LoginResult:
        """Every failure answers alike for names that exist and names that do not; only
        the audit event says what really happened."""
        address = address_key(client.source_ip)
        throttled = self.throttle.refusal(name, address)
        try:
            self.hashing.check_room()
        except HashingBusy as busy:
            throttled = throttled or (Refusal.BUSY, busy.retry_after)
        if throttled is not None:
            reason, seconds = throttled
            wait = max(1, math.ceil(seconds))
            self.record(
                EventType.LOGIN_FAILED,
                name,
                client,
                reason=reason.value,
                answer=reason.answer.name,
                retry_after=wait,
                via=kind,
            )
            return LoginResult(name, reason.answer, retry_after=wait)
        stamp, backoff = self.throttle.begin(name, address)
        # A name no user can have (too long for the column, NUL, a lone surrogate) is not
        # looked up: the store would fail on it; it is refused like any unknown name.
        row = await asyncio.to_thread(get_user, self.engine, name) if _storable(name) else None
        record = row.record if row is not None else None
        outcome = await self.hashing.run(decide_login, record, password, code, datetime.now(UTC))
        if outcome.ok:
            assert outcome.totp_step is not None
            if not await asyncio.to_thread(claim_login, self.engine, name, outcome.totp_step):
                outcome = LoginOutcome(False, Refusal.REUSED_CODE)  # a racing login had it
        if not outcome.ok:
            assert outcome.refusal is not None and outcome.error is not None
            if record is not None:
                # After the answer, so that a name that exists costs no more time.
                self._later(note_login_failure, name)
            fields: dict[str, object] = {
                "reason": outcome.refusal.value,
                "answer": outcome.error.name,
                "failures": backoff.failures,  # of this name from this address
                "via": kind,
            }
            if outcome.locked:
                fields["locked"] = True
            if wait := math.ceil(wait_after(backoff.failures)):
                fields["throttled_for"] = wait  # seconds before this name from here is heard
            self.record(EventType.LOGIN_FAILED, name, client, **fields)
            return LoginResult(name, outcome.error)
        self.throttle.succeeded(name, address, stamp)
        token, session_id, expires = await asyncio.to_thread(
            create_login_session,
            self.engine,
            name,
            ttl=LOGIN_SESSION_TTL,
            source_ip=client.source_ip,
            user_agent=client.user_agent,
            kind=kind,
        )
        self.record(EventType.LOGIN_SUCCEEDED, name, client, login_session=session_id, via=kind)
        return LoginResult(name, None, token, session_id, expires)

    def _later(self, work: Callable[[Engine, str], None], name: str) -> None:
        async def run() -> None:
            try:
                await asyncio.to_thread(work, self.engine, name)
            except Exception:
                log.exception("could not note a failed login of %s", name)

        task = asyncio.get_running_loop().create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def log_out(self, user: str, session_id: str, client: Client) -> None:
        await asyncio.to_thread(revoke, self.engine, "login", session_id, by=user)
        self.record(EventType.LOGOUT, user, client, login_session=session_id)


MAX_USER_NAME = 64  # as `users.name`


def _storable(name: str) -> bool:
    """Whether `name` could be a user's name in any store (SQLite and PostgreSQL alike)."""
    if len(name) > MAX_USER_NAME or "\x00" in name:
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True
