"""Login sessions in the state store: a bearer token (CLI), a browser cookie (web), or a
bot's session begun by redeeming a one-time join token (also a row here, until redeemed).

Only a hash of a session's secret is stored, so the table grants nothing to its reader.
A session ends at its expiry or when revoked (`iamgate.store.revocations`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert, select, update

from iamgate.store.database import aware
from iamgate.store.tables import login_sessions

LOGIN_TOKEN_PREFIX = "iglogin1"
JOIN_TOKEN_PREFIX = "igjoin1"
# A join token waiting for its machine is a row of login_sessions of this kind: its secret
# hashed like a session's, ended by the same revocations (`sessions revoke --bot`), and
# never a session itself (`open_login_session` refuses it). Redeemed, it is ended and a
# session of kind JOIN_SESSION_KIND, the bot's, begins.
JOIN_TOKEN_KIND = "token"
JOIN_SESSION_KIND = "join"


def _now() -> datetime:
    return datetime.now(UTC)


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_login_session(
    engine: Engine,
    user: str,
    *,
    ttl: timedelta,
    source_ip: str | None,
    user_agent: str | None,
    kind: str = "cli",
) -> tuple[str, str, datetime]:
    """(bearer token, session id, expiry). Only a hash of the token's secret is stored."""
    session_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    now = _now()
    with engine.begin() as conn:
        conn.execute(
            insert(login_sessions).values(
                id=session_id,
                secret_hash=_secret_hash(secret),
                user=user,
                created_at=now,
                expires_at=now + ttl,
                source_ip=source_ip,
                user_agent=(user_agent or "")[:512],
                kind=kind,
                last_seen_at=now,
            )
        )
    return f"{LOGIN_TOKEN_PREFIX}.{session_id}.{secret}", session_id, now + ttl


@dataclass(frozen=True, slots=True)
class LoginSession:
    id: str
    user: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    kind: str = "cli"
    last_seen_at: datetime | None = None


def _row_to_session(row: Any) -> LoginSession:
    return LoginSession(
        row.id,
        row.user,
        aware(row.created_at) or _now(),
        aware(row.expires_at) or _now(),
        aware(row.revoked_at),
        row.kind or "cli",
        aware(row.last_seen_at),
    )


def open_login_session(engine: Engine, token: str, now: datetime) -> LoginSession | None:
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != LOGIN_TOKEN_PREFIX:
        return None
    with engine.connect() as conn:
        row = conn.execute(select(login_sessions).where(login_sessions.c.id == parts[1])).first()
    if row is None or not hmac.compare_digest(row.secret_hash, _secret_hash(parts[2])):
        return None
    session = _row_to_session(row)
    if session.kind == JOIN_TOKEN_KIND:  # a join token is redeemed, never presented
        return None
    if session.revoked_at is not None or session.expires_at <= now:
        return None
    return session


def create_join_token(
    engine: Engine, principal: str, *, ttl: timedelta, created_by: str
) -> tuple[str, str, datetime]:
    """(token, its id, expiry) for `principal` (a bot): redeemable once, before expiry.
    Only a hash of its secret is stored."""
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    now = _now()
    with engine.begin() as conn:
        conn.execute(
            insert(login_sessions).values(
                id=token_id,
                secret_hash=_secret_hash(secret),
                user=principal,
                created_at=now,
                expires_at=now + ttl,
                user_agent=f"join token made by {created_by}"[:512],
                kind=JOIN_TOKEN_KIND,
            )
        )
    return f"{JOIN_TOKEN_PREFIX}.{token_id}.{secret}", token_id, now + ttl


@dataclass(frozen=True, slots=True)
class Redemption:
    """A join token's redemption: the session it began, or why none (`refusal`)."""

    token_id: str | None
    principal: str | None
    refusal: str | None = None  # unknown, used, revoked, expired, no-such-bot
    login_token: str | None = None
    session_id: str | None = None
    expires_at: datetime | None = None


def redeem_join_token(
    engine: Engine,
    token: str,
    *,
    ttl: timedelta,
    source_ip: str | None,
    user_agent: str | None,
    may_join: Callable[[str], bool] = lambda _: True,
) -> Redemption:
    """Ends the token and begins its bot's session, in one transaction. Ending it is a
    conditional UPDATE (not yet ended, not expired), so of any number of redemptions at
    once, on any replicas, exactly one changes the row and begins a session; the others
    find it used. `may_join(principal)`: whether the bot may still join (it is configured)."""
    parts = token.strip().split(".")
    if len(parts) != 3 or parts[0] != JOIN_TOKEN_PREFIX or len(parts[1]) > 32:
        return Redemption(None, None, "unknown")
    token_id, secret = parts[1], parts[2]
    with engine.connect() as conn:
        row = conn.execute(select(login_sessions).where(login_sessions.c.id == token_id)).first()
    if (
        row is None
        or row.kind != JOIN_TOKEN_KIND
        or not hmac.compare_digest(row.secret_hash, _secret_hash(secret))
    ):
        return Redemption(None, None, "unknown")
    principal = str(row.user)
    now = _now()
    if row.revoked_at is not None:  # a redemption notes when it was used; a revocation not
        return Redemption(token_id, principal, "used" if row.last_seen_at else "revoked")
    if (aware(row.expires_at) or now) <= now:
        return Redemption(token_id, principal, "expired")
    if not may_join(principal):
        return Redemption(token_id, principal, "no-such-bot")
    session_id = secrets.token_hex(8)
    session_secret = secrets.token_urlsafe(32)
    with engine.begin() as conn:
        ended = conn.execute(
            update(login_sessions)
            .where(
                login_sessions.c.id == token_id,
                login_sessions.c.kind == JOIN_TOKEN_KIND,
                login_sessions.c.revoked_at.is_(None),
                login_sessions.c.expires_at > now,
            )
            .values(revoked_at=now, last_seen_at=now)
        ).rowcount
        if ended != 1:
            return Redemption(token_id, principal, "used")  # another redemption won
        conn.execute(
            insert(login_sessions).values(
                id=session_id,
                secret_hash=_secret_hash(session_secret),
                user=principal,
                created_at=now,
                expires_at=now + ttl,
                source_ip=source_ip,
                user_agent=(user_agent or "")[:512],
                kind=JOIN_SESSION_KIND,
                last_seen_at=now,
            )
        )
    return Redemption(
        token_id,
        principal,
        None,
        f"{LOGIN_TOKEN_PREFIX}.{session_id}.{session_secret}",
        session_id,
        now + ttl,
    )


def renew_join_session(
    engine: Engine,
    session_id: str,
    *,
    ttl: timedelta,
    source_ip: str | None,
    user_agent: str | None,
) -> tuple[str, str, datetime] | None:
    """A joined machine's session for another `ttl`: a new session (new secret) begins as
    the old one ends, in one transaction, with a conditional UPDATE (the old one of kind
    join, not ended, not expired), so a session is renewed once and a revoked one never.
    The old session's end is no revocation: credentials issued under it stay good until
    their own expiry. None: nothing to renew."""
    new_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    now = _now()
    with engine.begin() as conn:
        row = conn.execute(
            select(login_sessions.c.user).where(login_sessions.c.id == session_id)
        ).first()
        if row is None:
            return None
        ended = conn.execute(
            update(login_sessions)
            .where(
                login_sessions.c.id == session_id,
                login_sessions.c.kind == JOIN_SESSION_KIND,
                login_sessions.c.revoked_at.is_(None),
                login_sessions.c.expires_at > now,
            )
            .values(revoked_at=now, last_seen_at=now)
        ).rowcount
        if ended != 1:
            return None
        conn.execute(
            insert(login_sessions).values(
                id=new_id,
                secret_hash=_secret_hash(secret),
                user=row.user,
                created_at=now,
                expires_at=now + ttl,
                source_ip=source_ip,
                user_agent=(user_agent or "")[:512],
                kind=JOIN_SESSION_KIND,
                last_seen_at=now,
            )
        )
    return f"{LOGIN_TOKEN_PREFIX}.{new_id}.{secret}", new_id, now + ttl


def list_login_sessions(engine: Engine, user: str | None = None) -> list[LoginSession]:
    query = select(login_sessions).order_by(login_sessions.c.created_at.desc())
    if user:
        query = query.where(login_sessions.c.user == user)
    with engine.connect() as conn:
        return [_row_to_session(r) for r in conn.execute(query)]


def touch_login_session(engine: Engine, session_id: str, now: datetime) -> None:
    """Note that a browser session is in use, for its idle timeout."""
    with engine.begin() as conn:
        conn.execute(
            update(login_sessions).where(login_sessions.c.id == session_id).values(last_seen_at=now)
        )
