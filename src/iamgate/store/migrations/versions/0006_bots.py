"""Bots in the state store: `bots` and their gateway roles, one row each in `bot_roles`.

Bots added by administrators (`iamgate bots add`, the JSON API, the Bots page) live here,
as users added by `iamgate users add` do; the configuration's `bots:` are not copied in.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if "bots" in sa.inspect(op.get_bind()).get_table_names():
        return  # a store made whole by `metadata.create_all`, then adopted as 0001
    op.create_table(
        "bots",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "bot_roles",
        sa.Column("bot", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["bot"], ["bots.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("bot", "role"),
    )


def downgrade() -> None:
    op.drop_table("bot_roles")
    op.drop_table("bots")
