"""Fresh databases on the machine's PostgreSQL server (127.0.0.1:5432), one per test.

The server is the real one the machine runs; each database is created for its test and
dropped after it, so tests never see each other's rows. `IAMGATE_TEST_POSTGRES` names
another server (a libpq URL without a database).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

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
