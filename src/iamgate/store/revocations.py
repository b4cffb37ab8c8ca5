"""Revocations in the state store: an append-only log that every replica follows by id.

A revocation is written once and never changed; each replica applies the rows past the
last id it applied (`iamgate.store.directory.Directory`), so one written on any replica
reaches all of them, and its id says whether a given replica has applied it yet.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, insert, update

from iamgate.store.database import serialized
from iamgate.store.tables import login_sessions, revocations


def revoke(engine: Engine, kind: str, subject: str, *, by: str | None = None) -> int:
    """kind: `credential` (an access key's session id), `login` (a login session and every
    credential issued under it) or `user` (everything the user holds, as of now).

    Returns the revocation's id: a replica has applied it once its `Directory`'s
    `applied_revocation` is at least that id."""
    if kind not in ("credential", "login", "user"):
        raise ValueError(f"unknown revocation kind {kind}")
    now = datetime.now(UTC)
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
