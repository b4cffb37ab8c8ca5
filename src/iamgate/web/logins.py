"""One way in, for the JSON API (the CLI) and the login page (the browser).

Login is the one unauthenticated action, so both doors share its defenses: a per-address
limit on failed logins, constant-work password checks, single-use TOTP codes, lockout after repeated
failures, and an audit event for every outcome.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from iamgate.audit.events import AuditEvent, EventType
from iamgate.audit.writer import AuditSink
from iamgate.identity.login import LoginError, decide_login
from iamgate.store.directory import (
    LoginSession,
    apply_login_outcome,
    create_login_session,
    get_user,
    open_login_session,
    revoke,
    touch_login_session,
)
from iamgate.web import browser

LOGIN_SESSION_TTL = timedelta(hours=12)
RATE_WINDOW_SECONDS = 300
RATE_MAX_FAILURES = 20


class RateLimiter:
    """At most `limit` failed logins per address in a sliding window (per replica).

    Only failures count: a whole office behind one NAT address logs in every morning, while
    guessing (one user's password, or one password across many users) is nothing but
    failures. Per-user lockout stops the first; this stops the second.
    """

    def __init__(self, limit: int = RATE_MAX_FAILURES, window: float = RATE_WINDOW_SECONDS):
        self.limit, self.window = limit, window
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def allows(self, address: str) -> bool:
        failures = self._failures.get(address)
        if not failures:
            return True
        horizon = time.monotonic() - self.window
        while failures and failures[0] < horizon:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return True
        return len(failures) < self.limit

    def failed(self, address: str) -> None:
        self._failures[address].append(time.monotonic())


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

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def status(self) -> int:
        return {None: 200, LoginError.LOCKED: 423, LoginError.RATE_LIMITED: 429}.get(
            self.error, 401
        )


class Logins:
    def __init__(self, engine: Engine, audit: AuditSink) -> None:
        self.engine = engine
        self.audit = audit
        self.rate = RateLimiter()

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
        address = client.source_ip or "?"
        if not self.rate.allows(address):
            self.record(EventType.LOGIN_FAILED, name, client, error=LoginError.RATE_LIMITED.name)
            return LoginResult(name, LoginError.RATE_LIMITED)
        row = await asyncio.to_thread(get_user, self.engine, name)
        record = row.record if row is not None and row.has_password else None
        outcome = await asyncio.to_thread(decide_login, record, password, code, datetime.now(UTC))
        if record is not None and (outcome.ok or outcome.error is not LoginError.LOCKED):
            await asyncio.to_thread(apply_login_outcome, self.engine, name, outcome)
        if not outcome.ok:
            assert outcome.error is not None
            self.rate.failed(address)
            locked_now = outcome.locked_until is not None
            self.record(
                EventType.LOGIN_LOCKED if locked_now else EventType.LOGIN_FAILED,
                name,
                client,
                error=outcome.error.name,
                failed_logins=outcome.failed_logins,
                via=kind,
            )
            return LoginResult(name, outcome.error)
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

    async def log_out(self, user: str, session_id: str, client: Client) -> None:
        await asyncio.to_thread(revoke, self.engine, "login", session_id, by=user)
        self.record(EventType.LOGOUT, user, client, login_session=session_id)


class BrowserSessions:
    """Login sessions held by browsers in a cookie, with their idle and absolute timeouts."""

    def __init__(self, engine: Engine, *, tls: bool, csrf_key: bytes) -> None:
        self.engine = engine
        self.cookie = browser.session_cookie(tls)
        self.csrf_key = csrf_key

    def csrf(self, session: LoginSession) -> str:
        return browser.csrf_token(self.csrf_key, session.id)

    async def open(self, cookies: Mapping[str, str]) -> tuple[LoginSession | None, str | None]:
        """The live session behind a request's cookie, or why there is none."""
        token = cookies.get(self.cookie.name)
        if not token:
            return None, None
        now = datetime.now(UTC)
        session = await asyncio.to_thread(open_login_session, self.engine, token, now)
        if session is None or session.kind != "web":
            return None, "expired"
        state = browser.session_state(
            created_at=session.created_at,
            expires_at=session.expires_at,
            last_seen_at=session.last_seen_at,
            now=now,
        )
        if state is not browser.SessionState.ACTIVE:
            await asyncio.to_thread(revoke, self.engine, "login", session.id, by="timeout")
            return None, "idle" if state is browser.SessionState.IDLE else "expired"
        row = await asyncio.to_thread(get_user, self.engine, session.user)
        locked_until = row.record.locked_until if row is not None else None
        if row is None or (locked_until is not None and locked_until > now):
            return None, "expired"
        if browser.needs_touch(session.last_seen_at, now):
            await asyncio.to_thread(touch_login_session, self.engine, session.id, now)
        return session, None
