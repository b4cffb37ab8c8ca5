"""A user's gateway roles are rows of `user_roles`, not comma-joined text in `users.roles`.

One row per (user, role), gone with its user (a foreign key that cascades), so a role is
found, added or dropped by the database rather than by splitting text. The roles stored
before are moved into the table and the column is dropped (SQLite: by copying `users`).
The copy is made before `user_roles` exists: with SQLite's foreign keys on, dropping the
old `users` would otherwise cascade to the rows just moved.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

USERS = sa.table("users", sa.column("name", sa.String), sa.column("roles", sa.Text))
USER_ROLES = sa.table("user_roles", sa.column("user", sa.String), sa.column("role", sa.String))


def _split(text: str | None) -> list[str]:
    """As `iamgate.store.directory._roles_of` at revision 0003."""
    return sorted({r for r in (text or "").split(",") if r})


def upgrade() -> None:
    conn = op.get_bind()
    inspector = sa.inspect(conn)
    has_table = "user_roles" in inspector.get_table_names()
    has_column = "roles" in {c["name"] for c in inspector.get_columns("users")}
    held: list[dict[str, str]] = []
    if has_column:
        rows = conn.execute(sa.select(USERS.c.name, USERS.c.roles)).all()
        held = [{"user": r.name, "role": role} for r in rows for role in _split(r.roles)]
        with op.batch_alter_table("users") as batch:
            batch.drop_column("roles")
    if not has_table:  # else a store made whole by `metadata.create_all`
        op.create_table(
            "user_roles",
            sa.Column("user", sa.String(length=64), nullable=False),
            sa.Column("role", sa.String(length=64), nullable=False),
            sa.ForeignKeyConstraint(["user"], ["users.name"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("user", "role"),
        )
    if held:
        conn.execute(sa.insert(USER_ROLES), held)


def downgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.select(USER_ROLES.c.user, USER_ROLES.c.role)).all()
    joined: dict[str, list[str]] = {}
    for row in rows:
        joined.setdefault(row.user, []).append(row.role)
    op.drop_table("user_roles")
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("roles", sa.Text(), nullable=False, server_default=""))
    for user, roles in joined.items():
        conn.execute(
            sa.update(USERS).where(USERS.c.name == user).values(roles=",".join(sorted(roles)))
        )
