"""Alembic's entry point: migrate the connection `open_engine` hands over."""

from __future__ import annotations

from alembic import context

from iamgate.store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters by copying a table
)
with context.begin_transaction():
    context.run_migrations()
