"""Opening the state store and the few reads and writes the gateway makes at start-up."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, insert, select, text
from sqlalchemy.engine import make_url

from iamgate.identity.credentials import KeyRing, ServerKey
from iamgate.store.schema import current_revision, head_revision, migrate
from iamgate.store.tables import server_keys

LOCK_TIMEOUT_MS = 5000
HEAD = head_revision()


def open_engine(url: str) -> Engine:
    """An engine on a store migrated to this version's schema. SQLite gets WAL, so readers
    never block the writer; `postgresql://` means psycopg 3 (not SQLAlchemy's psycopg2)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            parsed,
            connect_args={"check_same_thread": False, "timeout": LOCK_TIMEOUT_MS / 1000},
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")  # a user's roles go with the user
            cursor.close()
    else:
        # Like SQLite's busy timeout: a write that waits on a lock this long fails, so the
        # audit writer reports the store unavailable rather than hang.
        engine = create_engine(
            parsed,
            pool_pre_ping=True,
            connect_args={"options": f"-c lock_timeout={LOCK_TIMEOUT_MS}"},
        )
    with engine.begin() as conn:
        serialized(conn, "schema")  # replicas starting together migrate the schema once
        if current_revision(conn) != HEAD:
            migrate(conn)
    return engine


def aware(value: datetime | None) -> datetime | None:
    """The stored time as UTC: SQLite returns naive datetimes, and the store holds UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def serialized(conn: Connection, what: str) -> None:
    """Hold, until this transaction ends, the lock that replicas take to change `what` one
    at a time (first start, revocations); SQLite allows one writer anyway."""
    if conn.dialect.name == "postgresql":
        key = int.from_bytes(
            hashlib.sha256(f"iamgate:{what}".encode()).digest()[:8], "big", signed=True
        )
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def load_keyring(engine: Engine) -> KeyRing:
    """The server keys, generating the first one on first start."""
    with engine.begin() as conn:
        serialized(conn, "server_keys")  # two replicas on first start make one key, not two
        rows = conn.execute(select(server_keys).order_by(server_keys.c.created_at)).all()
        if not rows:
            key = ServerKey.generate()
            conn.execute(
                insert(server_keys).values(
                    kid=key.kid, secret=key.secret, created_at=datetime.now(UTC)
                )
            )
            return KeyRing({key.kid: key}, key.kid)
    keys = {row.kid: ServerKey(row.kid, bytes(row.secret)) for row in rows}
    return KeyRing(keys, rows[-1].kid)
