"""Fresh databases on the machine's PostgreSQL server (127.0.0.1:5432), one per test.

The server is the real one the machine runs; each database is created for its test and
dropped after it, so tests never see each other's rows. `IAMGATE_TEST_POSTGRES` names
another server (a libpq URL without a database).
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy import Engine, text

SERVER = os.environ.get("IAMGATE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")


@contextmanager
def fresh_database() -> Iterator[str]:
    """The SQLAlchemy URL of a new, empty database, dropped afterwards."""
    name = f"iamgate_test_{secrets.token_hex(6)}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{SERVER}/{name}"
    finally:
        with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def write_lock(engine: Engine) -> Iterator[None]:
    """Another client holding the store so that no audit event can be written."""
    if engine.dialect.name == "sqlite":
        lock = sqlite3.connect(str(engine.url.database), isolation_level=None, timeout=0)
        lock.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        return
    with engine.connect() as conn, conn.begin():
        conn.execute(text("LOCK TABLE audit_events IN ACCESS EXCLUSIVE MODE"))
        yield
        conn.rollback()
