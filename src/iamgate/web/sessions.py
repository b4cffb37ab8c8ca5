"""Login sessions held by browsers: the cookie's session, with its idle and absolute timeouts.

The rules are in `iamgate.web.browser`; logging in is `iamgate.control.logins`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime

from sqlalchemy import Engine

from iamgate.store.login_sessions import LoginSession, open_login_session, touch_login_session
from iamgate.store.revocations import revoke
from iamgate.store.users import get_user
from iamgate.web import browser


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
