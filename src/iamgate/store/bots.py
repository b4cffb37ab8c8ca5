"""Bots an administrator added, and what their jobs were issued, in the state store.

A stored bot is as a user added by `iamgate users add`: a row, and its gateway roles one
row each in `bot_roles`, gone with it. Every replica reads them into its `Directory` with
the users, so a bot added, changed or removed on one replica is in force on all within a
poll. The configuration's `bots:` are never stored: they stay the configuration's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, or_, select
from sqlalchemy.exc import IntegrityError

from iamgate.store.tables import bot_roles, bots, issued_credentials, revocations


def _aware(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything here is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class BotRow:
    name: str
    roles: tuple[str, ...]
    description: str
    created_at: datetime | None
    created_by: str | None


def bots_with_roles(conn: Connection, name: str | None = None) -> list[BotRow]:
    """The stored bots (or the one named), by name, each with their roles: one statement,
    so that a bot and its roles are read as of the same moment."""
    query = (
        select(bots, bot_roles.c.role)
        .select_from(bots.outerjoin(bot_roles, bot_roles.c.bot == bots.c.name))
        .order_by(bots.c.name)
    )
    if name is not None:
        query = query.where(bots.c.name == name)
    found: dict[str, tuple[Any, list[str]]] = {}
    for row in conn.execute(query):
        _, held = found.setdefault(row.name, (row, []))
        if row.role is not None:
            held.append(row.role)
    return [
        BotRow(
            row.name,
            tuple(sorted(held)),
            row.description or "",
            _aware(row.created_at),
            row.created_by,
        )
        for row, held in found.values()
    ]


def list_bots(engine: Engine) -> list[BotRow]:
    with engine.connect() as conn:
        return bots_with_roles(conn)


def get_bot(engine: Engine, name: str) -> BotRow | None:
    with engine.connect() as conn:
        found = bots_with_roles(conn, name)
    return found[0] if found else None


def _set_roles(conn: Connection, name: str, roles: Iterable[str]) -> None:
    conn.execute(delete(bot_roles).where(bot_roles.c.bot == name))
    rows = [{"bot": name, "role": role} for role in sorted(set(roles))]
    if rows:
        conn.execute(insert(bot_roles), rows)


def add_bot(
    engine: Engine, name: str, roles: Iterable[str], *, description: str = "", by: str | None
) -> bool:
    """A new bot with its roles; False if one of that name is stored already (two replicas
    adding it at once: the primary key lets one of them)."""
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(bots).values(
                    name=name,
                    description=description,
                    created_at=datetime.now(UTC),
                    created_by=by,
                )
            )
            _set_roles(conn, name, roles)
    except IntegrityError:
        return False
    return True


def set_bot_roles(engine: Engine, name: str, roles: Iterable[str]) -> bool:
    with engine.begin() as conn:
        if conn.execute(select(bots.c.name).where(bots.c.name == name)).first() is None:
            return False
        _set_roles(conn, name, roles)
    return True


def delete_bot(engine: Engine, name: str) -> bool:
    with engine.begin() as conn:
        deleted = conn.execute(bots.delete().where(bots.c.name == name)).rowcount
    return bool(deleted)


@dataclass(frozen=True, slots=True)
class Issued:
    """A gateway credential issued to a principal (`issued_credentials`)."""

    access_key_id: str
    account_id: str
    aws_role: str
    issued_at: datetime
    expires_at: datetime
    revoked: bool


def issued_to(engine: Engine, principal: str, *, since: datetime | None = None) -> list[Issued]:
    """The credentials issued to `principal` (those still unexpired at `since`, if given),
    newest first, each with whether a revocation ended it."""
    query = (
        select(issued_credentials)
        .where(issued_credentials.c.principal == principal)
        .order_by(issued_credentials.c.issued_at.desc())
    )
    if since is not None:
        query = query.where(issued_credentials.c.expires_at > since)
    with engine.connect() as conn:
        rows = list(conn.execute(query))
        ids = [r.session_id for r in rows]
        ended = list(
            conn.execute(
                select(revocations.c.kind, revocations.c.subject, revocations.c.at).where(
                    or_(
                        (revocations.c.kind == "user") & (revocations.c.subject == principal),
                        (revocations.c.kind == "credential") & revocations.c.subject.in_(ids),
                    )
                )
            )
        )
    revoked_keys = {r.subject for r in ended if r.kind == "credential"}
    cutoff = max((_aware(r.at) for r in ended if r.kind == "user"), default=None, key=_key)
    out = []
    for row in rows:
        issued_at = _aware(row.issued_at) or datetime.now(UTC)
        revoked = row.session_id in revoked_keys or (cutoff is not None and issued_at <= cutoff)
        out.append(
            Issued(
                "ASIA" + row.session_id,
                row.account_id,
                row.aws_role,
                issued_at,
                _aware(row.expires_at) or issued_at,
                revoked,
            )
        )
    return out


def last_issued(engine: Engine, principal: str) -> Issued | None:
    """The newest credential issued to `principal`, expired or not."""
    query = (
        select(issued_credentials)
        .where(issued_credentials.c.principal == principal)
        .order_by(issued_credentials.c.issued_at.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        return None
    issued_at = _aware(row.issued_at) or datetime.now(UTC)
    return Issued(
        "ASIA" + row.session_id,
        row.account_id,
        row.aws_role,
        issued_at,
        _aware(row.expires_at) or issued_at,
        False,
    )


def _key(value: datetime | None) -> datetime:
    return value or datetime.min.replace(tzinfo=UTC)
