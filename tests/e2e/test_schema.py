"""The store's schema as Alembic builds it, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from postgres import fresh_database
from sqlalchemy import create_engine, insert, select

from iamgate.store.database import open_engine
from iamgate.store.schema import current_revision, head_revision
from iamgate.store.tables import metadata, users


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
    else:
        with fresh_database() as fresh:
            yield fresh


def test_the_migrations_build_exactly_the_tables_the_code_uses(url: str) -> None:
    engine = open_engine(url)
    with engine.connect() as conn:
        assert current_revision(conn) == head_revision()
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    engine.dispose()


def test_a_store_made_before_migrations_is_adopted_with_its_rows(url: str) -> None:
    plain = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    metadata.create_all(plain)  # how stores were made before there were migrations
    with plain.begin() as conn:
        conn.execute(
            insert(users).values(
                name="dana",
                password_hash="",
                totp_secret="",
                roles="",
                failed_logins=0,
                created_at=datetime.now(UTC),
            )
        )
    plain.dispose()
    engine = open_engine(url)
    with engine.connect() as conn:
        assert current_revision(conn) == head_revision()
        assert [r.name for r in conn.execute(select(users))] == ["dana"]
    engine.dispose()
