"""The store's schema as Alembic builds it, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from postgres import fresh_database
from sqlalchemy import create_engine, insert, inspect, select, text

from iamgate.store.bots import add_bot, delete_bot
from iamgate.store.database import open_engine
from iamgate.store.directory import Directory
from iamgate.store.schema import _alembic, current_revision, head_revision
from iamgate.store.tables import bot_roles, metadata, user_roles, users
from iamgate.store.users import delete_user, get_user, list_users, put_user


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


def _plain(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def test_roles_kept_as_comma_joined_text_become_rows_of_user_roles(url: str) -> None:
    old = create_engine(_plain(url))
    with old.begin() as conn:
        command.upgrade(_alembic(conn), "0003")
        conn.execute(
            text(
                "INSERT INTO users (name, password_hash, totp_secret, roles, failed_logins, "
                "created_at) VALUES (:name, '', '', :roles, 0, :at)"
            ),
            [
                {"name": "ada", "roles": "developer,admin", "at": datetime.now(UTC)},
                {"name": "bo", "roles": "", "at": datetime.now(UTC)},
                {"name": "cy", "roles": "ops,,ops,auditor,", "at": datetime.now(UTC)},
            ],
        )
    old.dispose()
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            assert current_revision(conn) == head_revision()
            assert "roles" not in {c["name"] for c in inspect(conn).get_columns("users")}
            rows = conn.execute(select(user_roles).order_by(user_roles.c.user, user_roles.c.role))
            assert [tuple(r) for r in rows] == [
                ("ada", "admin"),
                ("ada", "developer"),
                ("cy", "auditor"),
                ("cy", "ops"),
            ]
        assert [(u.record.name, u.roles) for u in list_users(engine)] == [
            ("ada", ("admin", "developer")),
            ("bo", ()),
            ("cy", ("auditor", "ops")),
        ]
        directory = Directory(engine)
        directory.refresh()
        assert directory.roles_of("cy") == ("auditor", "ops")
        assert directory.exists("bo") and directory.roles_of("bo") == ()
    finally:
        engine.dispose()


def test_the_roles_go_back_to_text_on_downgrade(url: str) -> None:
    engine = open_engine(url)
    put_user(engine, "ada", roles=["developer", "admin"])
    put_user(engine, "bo")
    engine.dispose()
    plain = create_engine(_plain(url))
    with plain.begin() as conn:
        command.downgrade(_alembic(conn), "0003")
        rows = conn.execute(text("SELECT name, roles FROM users ORDER BY name"))
        assert [tuple(r) for r in rows] == [("ada", "admin,developer"), ("bo", "")]
    plain.dispose()


def test_a_users_roles_go_with_the_user(url: str) -> None:
    engine = open_engine(url)
    try:
        put_user(engine, "ada", roles=["admin", "developer"])
        put_user(engine, "bo", roles=["developer"])
        put_user(engine, "ada", roles=["developer", "developer"])
        assert get_user(engine, "ada").roles == ("developer",)  # type: ignore[union-attr]
        assert delete_user(engine, "ada")
        with engine.connect() as conn:
            assert [tuple(r) for r in conn.execute(select(user_roles))] == [("bo", "developer")]
    finally:
        engine.dispose()


def test_a_bots_roles_go_with_the_bot_and_0006_downgrades(url: str) -> None:
    engine = open_engine(url)
    try:
        assert add_bot(engine, "deployer", ["ci-runner", "reader"], by="root")
        assert add_bot(engine, "other", ["reader"], by="root")
        assert not add_bot(engine, "deployer", [], by="root")  # one of a name
        assert delete_bot(engine, "deployer")
        with engine.connect() as conn:
            assert [tuple(r) for r in conn.execute(select(bot_roles))] == [("other", "reader")]
    finally:
        engine.dispose()
    plain = create_engine(_plain(url))
    with plain.begin() as conn:
        command.downgrade(_alembic(conn), "0005")
        assert not {"bots", "bot_roles"} & set(inspect(conn).get_table_names())
        command.upgrade(_alembic(conn), "head")
        assert current_revision(conn) == head_revision()
    plain.dispose()
