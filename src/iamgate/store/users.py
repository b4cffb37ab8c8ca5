"""Users and the gateway roles they hold, in the state store.

A user's roles are rows of `user_roles`, one per role, which go with the user; they are
always read with the user, in one statement, so no reader sees one without the other.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update

from iamgate.config import UserConfig
from iamgate.identity.login import UserRecord
from iamgate.store.database import aware, serialized
from iamgate.store.revocations import revoke
from iamgate.store.tables import user_roles, users


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class UserRow:
    """A user as the store holds them; `record` is what a login is checked against."""

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
            locked_until=aware(row.locked_until),
            last_totp_step=row.last_totp_step,
        ),
        roles,
        bool(row.password_hash),
        aware(row.created_at),
    )


def read_users(conn: Connection, name: str | None = None) -> list[UserRow]:
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
        found = read_users(conn, name)
    return found[0] if found else None


def list_users(engine: Engine) -> list[UserRow]:
    with engine.connect() as conn:
        return read_users(conn)


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
