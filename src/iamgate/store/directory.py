"""Users, login sessions, issued credentials and revocations in the state store.

The gateway must answer "which roles does this person hold now, and is this credential
revoked?" on every request without a database read, yet see a change made on any replica
at once. So each replica keeps a `Directory` in memory and refreshes it by short polling:
the users table is small, and revocations are an append-only log followed by id.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update

from iamgate.config import UserConfig
from iamgate.identity.credentials import Claims
from iamgate.identity.login import UserRecord
from iamgate.store.bots import bots_with_roles
from iamgate.store.database import serialized
from iamgate.store.tables import (
    issued_credentials,
    login_sessions,
    revocations,
    user_roles,
    users,
)

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


def _aware(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything here is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class UserRow:
    record: UserRecord
    roles: tuple[str, ...]
    has_password: bool
    created_at: datetime | None = None


def _row_to_user(row: Any, roles: tuple[str, ...]) -> UserRow:
    return UserRow(
        UserRecord(
            name=row.name,
            password_hash=row.password_hash,
            totp_secret=row.totp_secret,
            failed_logins=row.failed_logins,
            locked_until=_aware(row.locked_until),
            last_totp_step=row.last_totp_step,
        ),
        roles,
        bool(row.password_hash),
        _aware(row.created_at),
    )


# -- users ----------------------------------------------------------------------------------


def _users_with_roles(conn: Connection, name: str | None = None) -> list[UserRow]:
    """The users (or the one named), by name, each with their roles, sorted. One statement,
    so that a user and their roles are read as of the same moment."""
    query = (
        select(users, user_roles.c.role)
        .select_from(users.outerjoin(user_roles, user_roles.c.user == users.c.name))
        .order_by(users.c.name)
    )
    if name is not None:
        query = query.where(users.c.name == name)
    rows: dict[str, tuple[Any, list[str]]] = {}
    for row in conn.execute(query):
        _, held = rows.setdefault(row.name, (row, []))
        if row.role is not None:
            held.append(row.role)
    return [_row_to_user(row, tuple(sorted(held))) for row, held in rows.values()]


def _set_roles(conn: Connection, name: str, roles: Iterable[str]) -> None:
    conn.execute(delete(user_roles).where(user_roles.c.user == name))
    rows = [{"user": name, "role": role} for role in sorted(set(roles))]
    if rows:
        conn.execute(insert(user_roles), rows)


def sync_bootstrap_users(engine: Engine, bootstrap: Iterable[UserConfig]) -> None:
    """Users listed in the configuration exist, with the configuration's roles."""
    with engine.begin() as conn:
        serialized(conn, "users")
        existing = {r.name for r in conn.execute(select(users.c.name))}
        for user in bootstrap:
            if user.name not in existing:
                conn.execute(
                    insert(users).values(
                        name=user.name,
                        password_hash="",
                        totp_secret="",
                        failed_logins=0,
                        created_at=_now(),
                    )
                )
            _set_roles(conn, user.name, user.roles)


def get_user(engine: Engine, name: str) -> UserRow | None:
    with engine.connect() as conn:
        found = _users_with_roles(conn, name)
    return found[0] if found else None


def list_users(engine: Engine) -> list[UserRow]:
    with engine.connect() as conn:
        return _users_with_roles(conn)


def put_user(
    engine: Engine,
    name: str,
    *,
    roles: Iterable[str] | None = None,
    password_hash: str | None = None,
    totp_secret: str | None = None,
) -> None:
    """Create the user, or change what is given."""
    values: dict[str, Any] = {}
    if password_hash is not None:
        values["password_hash"] = password_hash
    if totp_secret is not None:
        values["totp_secret"] = totp_secret
        values["last_totp_step"] = None
    with engine.begin() as conn:
        exists = conn.execute(select(users.c.name).where(users.c.name == name)).first()
        if exists:
            if values:
                conn.execute(update(users).where(users.c.name == name).values(**values))
        else:
            conn.execute(
                insert(users).values(
                    name=name,
                    password_hash=values.get("password_hash", ""),
                    totp_secret=values.get("totp_secret", ""),
                    failed_logins=0,
                    created_at=_now(),
                )
            )
        if roles is not None:
            _set_roles(conn, name, roles)


def delete_user(engine: Engine, name: str, *, by: str | None = None) -> bool:
    """Delete the user (their roles go with them) and revoke all they hold."""
    with engine.begin() as conn:
        deleted = conn.execute(users.delete().where(users.c.name == name)).rowcount
    if deleted:
        revoke(engine, "user", name, by=by)
    return bool(deleted)


def set_lock(engine: Engine, name: str, until: datetime | None) -> bool:
    with engine.begin() as conn:
        changed = conn.execute(
            update(users).where(users.c.name == name).values(locked_until=until, failed_logins=0)
        ).rowcount
    return bool(changed)


def note_login_failure(engine: Engine, name: str) -> None:
    """One more failed login for the user (shown to administrators); never a lock."""
    with engine.begin() as conn:
        conn.execute(
            update(users)
            .where(users.c.name == name)
            .values(failed_logins=users.c.failed_logins + 1)
        )


def claim_login(engine: Engine, name: str, totp_step: int) -> bool:
    """Record a successful login's code as used, unless a login with this code or a later
    one got there first: a code is accepted once, even by logins racing each other."""
    with engine.begin() as conn:
        claimed = conn.execute(
            update(users)
            .where(
                users.c.name == name,
                (users.c.last_totp_step.is_(None)) | (users.c.last_totp_step < totp_step),
            )
            .values(last_totp_step=totp_step, failed_logins=0)
        ).rowcount
    return bool(claimed)


# -- login sessions -------------------------------------------------------------------------


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
        _aware(row.created_at) or _now(),
        _aware(row.expires_at) or _now(),
        _aware(row.revoked_at),
        row.kind or "cli",
        _aware(row.last_seen_at),
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
    if (_aware(row.expires_at) or now) <= now:
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


def record_issued(engine: Engine, claims: Claims) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(issued_credentials).values(
                session_id=claims.session_id,
                principal=claims.principal,
                login_session=claims.login_session,
                account_id=claims.account_id,
                aws_role=claims.aws_role,
                issued_at=claims.issued_at,
                expires_at=claims.expires_at,
            )
        )


# -- revocation -----------------------------------------------------------------------------


def revoke(engine: Engine, kind: str, subject: str, *, by: str | None = None) -> int:
    """kind: `credential` (an access key's session id), `login` (a login session and every
    credential issued under it) or `user` (everything the user holds, as of now).

    Returns the revocation's id: a replica has applied it once its `Directory`'s
    `applied_revocation` is at least that id."""
    if kind not in ("credential", "login", "user"):
        raise ValueError(f"unknown revocation kind {kind}")
    now = _now()
    with engine.begin() as conn:
        # One at a time, so that ids are committed in order: replicas follow them by id.
        serialized(conn, "revocations")
        revocation_id: int = conn.execute(
            insert(revocations)
            .values(kind=kind, subject=subject, at=now, by=by)
            .returning(revocations.c.id)
        ).scalar_one()
        if kind == "login":
            conn.execute(
                update(login_sessions)
                .where(login_sessions.c.id == subject, login_sessions.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
        elif kind == "user":
            conn.execute(
                update(login_sessions)
                .where(login_sessions.c.user == subject, login_sessions.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
    return revocation_id


class Directory:
    """What a replica knows of users, stored bots and revocations, refreshed from the store."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._roles: dict[str, tuple[str, ...]] = {}
        self._bots: dict[str, tuple[str, ...]] = {}
        self._revoked_credentials: set[str] = set()
        self._revoked_logins: set[str] = set()
        self._user_revoked_at: dict[str, datetime] = {}
        self._last_revocation = 0

    def refresh(self) -> None:
        with self._engine.connect() as conn:
            roles = {u.record.name: u.roles for u in _users_with_roles(conn)}
            stored_bots = {b.name: b.roles for b in bots_with_roles(conn)}
            new = list(
                conn.execute(
                    select(revocations)
                    .where(revocations.c.id > self._last_revocation)
                    .order_by(revocations.c.id)
                )
            )
        with self._lock:
            self._roles = roles
            self._bots = stored_bots
            for row in new:
                at = _aware(row.at) or _now()
                if row.kind == "credential":
                    self._revoked_credentials.add(row.subject)
                elif row.kind == "login":
                    self._revoked_logins.add(row.subject)
                elif row.kind == "user":
                    previous = self._user_revoked_at.get(row.subject)
                    self._user_revoked_at[row.subject] = max(at, previous) if previous else at
                self._last_revocation = row.id

    @property
    def applied_revocation(self) -> int:
        """The id of the last revocation `refresh` applied (0 before any): every revocation
        up to it takes effect here."""
        return self._last_revocation

    def roles_of(self, user: str) -> tuple[str, ...]:
        return self._roles.get(user, ())

    def exists(self, user: str) -> bool:
        return user in self._roles

    def bot_roles(self, name: str) -> tuple[str, ...] | None:
        """The gateway roles of the stored bot `name`, or None when none is stored (the
        configuration's `bots:` are not: the gateway asks its configuration first)."""
        return self._bots.get(name)

    def revoked(self, claims: Claims) -> bool:
        if claims.session_id in self._revoked_credentials:
            return True
        if claims.login_session is not None and claims.login_session in self._revoked_logins:
            return True
        cutoff = self._user_revoked_at.get(claims.principal)
        return cutoff is not None and claims.issued_at <= cutoff
