"""One-time enrolment links: a new user sets their own password and TOTP.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if "enrolment_links" in sa.inspect(op.get_bind()).get_table_names():
        return  # a store made whole by `metadata.create_all`, then adopted as 0001
    op.create_table(
        "enrolment_links",
        sa.Column("id", sa.String(length=16), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("user", sa.String(length=64), nullable=False),
        sa.Column("totp_secret", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_enrolment_links_user", "enrolment_links", ["user"])


def downgrade() -> None:
    op.drop_index("ix_enrolment_links_user", table_name="enrolment_links")
    op.drop_table("enrolment_links")
