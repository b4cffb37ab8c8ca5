"""What a replica knows of users and revocations, in memory, refreshed from the store.

The gateway must answer "which roles does this person hold now, and is this credential
revoked?" on every request without a database read, yet see a change made on any replica
at once. So each replica keeps a `Directory` in memory and refreshes it by short polling:
the users table is small, and revocations are an append-only log followed by id.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from sqlalchemy import Engine, select

from iamgate.identity.credentials import Claims
from iamgate.store.bots import bots_with_roles
from iamgate.store.database import aware
from iamgate.store.tables import revocations
from iamgate.store.users import read_users


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
            roles = {u.record.name: u.roles for u in read_users(conn)}
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
                at = aware(row.at) or datetime.now(UTC)
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
