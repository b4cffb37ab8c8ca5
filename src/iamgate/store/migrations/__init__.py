"""Alembic migrations of the state store: `open_engine` applies them on every start."""
