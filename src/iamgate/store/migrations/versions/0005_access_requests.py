"""Just-in-time access requests: the requests, their reviews and the grants they make.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _when(name: str, *, nullable: bool = True) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    if "access_requests" in sa.inspect(op.get_bind()).get_table_names():
        return  # a store made whole by `metadata.create_all`, then adopted as 0001
    op.create_table(
        "access_requests",
        sa.Column("id", sa.String(length=16), nullable=False),
        sa.Column("requester", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=64), nullable=False),
        sa.Column("accounts", sa.Text(), nullable=False),
        sa.Column("actions", sa.Text(), nullable=False),
        sa.Column("duration_seconds", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("ticket", sa.String(length=128), nullable=True),
        _when("start_at"),
        _when("created_at", nullable=False),
        _when("pending_until", nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("ended_by", sa.String(length=16), nullable=True),
        sa.Column("approved_accounts", sa.Text(), nullable=False),
        _when("starts_at"),
        _when("ends_at"),
        sa.Column("version", sa.Integer(), nullable=False),
        _when("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_access_requests_requester", "access_requests", ["requester"])
    op.create_index("ix_access_requests_state", "access_requests", ["state"])
    op.create_table(
        "request_reviews",
        sa.Column("request_id", sa.String(length=16), nullable=False),
        sa.Column("reviewer", sa.String(length=64), nullable=False),
        sa.Column("approve", sa.Integer(), nullable=False),
        sa.Column("accounts", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        _when("at", nullable=False),
        sa.PrimaryKeyConstraint("request_id", "reviewer"),
    )
    op.create_table(
        "access_grants",
        sa.Column("request_id", sa.String(length=16), nullable=False),
        sa.Column("user", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=64), nullable=False),
        sa.Column("accounts", sa.Text(), nullable=False),
        sa.Column("actions", sa.Text(), nullable=False),
        _when("starts_at", nullable=False),
        _when("ends_at", nullable=False),
        _when("ended_at"),
        sa.PrimaryKeyConstraint("request_id"),
    )
    op.create_index("ix_access_grants_user", "access_grants", ["user"])
    op.create_index("ix_access_grants_ends_at", "access_grants", ["ends_at"])


def downgrade() -> None:
    op.drop_index("ix_access_grants_ends_at", table_name="access_grants")
    op.drop_index("ix_access_grants_user", table_name="access_grants")
    op.drop_table("access_grants")
    op.drop_table("request_reviews")
    op.drop_index("ix_access_requests_state", table_name="access_requests")
    op.drop_index("ix_access_requests_requester", table_name="access_requests")
    op.drop_table("access_requests")
