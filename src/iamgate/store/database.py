"""Opening the state store and the few reads and writes the gateway makes at start-up."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, insert, select
from sqlalchemy.engine import make_url

from iamgate.identity.credentials import KeyRing, ServerKey
from iamgate.store.tables import metadata, server_keys


def open_engine(url: str) -> Engine:
    """An engine with the schema in place; SQLite gets WAL so readers never block the writer."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 5})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.close()
    else:
        engine = create_engine(url, pool_pre_ping=True)
    metadata.create_all(engine)
    return engine


def load_keyring(engine: Engine) -> KeyRing:
    """The server keys, generating the first one on first start."""
    with engine.begin() as conn:
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
