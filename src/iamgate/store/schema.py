"""The store's schema, kept at this version's revision by Alembic on every start.

A gateway that starts on an older store migrates it before serving; replicas starting
together migrate it once (they serialize on a lock). A store created before migrations
existed has the first revision's tables and no version: it is recorded as that revision.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect

from iamgate.store import migrations

FIRST_REVISION = "0001"


def _alembic(conn: Connection | None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.attributes["connection"] = conn
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic(None)).get_current_head()
    assert head is not None
    return head


def current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def migrate(conn: Connection) -> None:
    """Upgrade the store on `conn` to the head revision, inside the caller's transaction."""
    config = _alembic(conn)
    tables = set(inspect(conn).get_table_names())
    if "alembic_version" not in tables and "audit_events" in tables:
        command.stamp(config, FIRST_REVISION)
    command.upgrade(config, "head")
