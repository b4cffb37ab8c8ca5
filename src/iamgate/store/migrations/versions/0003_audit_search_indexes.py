"""Audit search by index: one per filter, each in the trail's order, and the columns they need.

Every index leads with the event type and the filtered value, then (time, chain, seq), the
order search pages in; so a page is a backward read of one index range. Outcome rows get
the place of their call in that order (`call_time`, `call_chain`, `call_seq`), so that a
status filter reads outcomes in their calls' order; and every row gets the access key its
body names (`access_key_id`), so that "what did this key do?" is a range too. Rows stored
before are filled in here, in batches.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ORDER = ("time", "chain", "seq")
INDEXES: dict[str, tuple[str, ...]] = {
    "ix_audit_events_by_type": ("type", *ORDER),
    "ix_audit_events_by_principal": ("type", "principal", *ORDER),
    "ix_audit_events_by_account": ("type", "account_id", *ORDER),
    "ix_audit_events_by_role": ("type", "aws_role", *ORDER),
    "ix_audit_events_by_service": ("type", "service", *ORDER),
    "ix_audit_events_by_action": ("type", "action", *ORDER),
    "ix_audit_events_by_decision": ("type", "decision", *ORDER),
    "ix_audit_events_by_status": ("type", "status", *ORDER),
    "ix_audit_events_by_key": ("type", "access_key_id", *ORDER),
    "ix_audit_events_outcome_status": ("type", "status", "call_time", "call_chain", "call_seq"),
}
# Subsumed by the indexes above, which lead with the type.
REPLACED = {
    "ix_audit_events_type": ("type",),
    "ix_audit_events_principal": ("principal",),
    # PostgreSQL would read newest-first along it and sort the equal times: a worse plan.
    "ix_audit_events_time": ("time",),
}
COLUMNS = (
    sa.Column("access_key_id", sa.String(length=128), nullable=True),
    sa.Column("call_time", sa.String(length=32), nullable=True),
    sa.Column("call_chain", sa.String(length=32), nullable=True),
    sa.Column("call_seq", sa.BigInteger(), nullable=True),
)
BATCH = 5000
MAX_KEY = 128


def _key_in(body: str) -> str | None:
    """As `iamgate.audit.appender.search_columns_of` at this revision."""
    fields = orjson.loads(body).get("fields")
    key = fields.get("access_key_id") if isinstance(fields, dict) else None
    return key if isinstance(key, str) and 0 < len(key) <= MAX_KEY else None


def _fill_access_keys(conn: sa.Connection) -> None:
    t = sa.table("audit_events", *map(sa.column, ("chain", "seq", "body", "access_key_id")))
    update = sa.text(
        "UPDATE audit_events SET access_key_id = :key WHERE chain = :chain AND seq = :seq"
    )
    last: tuple[Any, Any] | None = None
    while True:
        query = (
            sa.select(t.c.chain, t.c.seq, t.c.body)
            .where(t.c.body.like('%"access_key_id"%'), t.c.access_key_id.is_(None))
            .order_by(t.c.chain, t.c.seq)
            .limit(BATCH)
        )
        if last is not None:
            query = query.where(sa.tuple_(t.c.chain, t.c.seq) > sa.tuple_(*last))
        rows = conn.execute(query).all()
        if not rows:
            return
        found = [
            {"key": k, "chain": r.chain, "seq": r.seq}
            for r in rows
            if (k := _key_in(r.body)) is not None
        ]
        if found:
            conn.execute(update, found)
        last = (rows[-1].chain, rows[-1].seq)


def upgrade() -> None:
    conn = op.get_bind()
    inspector = sa.inspect(conn)
    present = {c["name"] for c in inspector.get_columns("audit_events")}
    indexes = {i["name"] for i in inspector.get_indexes("audit_events")}
    for column in COLUMNS:
        if column.name not in present:  # a store made whole by `metadata.create_all`
            op.add_column("audit_events", column)
    for name in REPLACED:
        if name in indexes:
            op.drop_index(name, table_name="audit_events")
    # Each outcome takes its call's place; the same SQL on SQLite (3.33+) and PostgreSQL.
    op.execute(
        "UPDATE audit_events AS o SET call_time = c.time, call_chain = c.chain, "
        "call_seq = c.seq FROM audit_events AS c "
        "WHERE o.type = 'aws.call.outcome' AND o.call_time IS NULL "
        "AND c.type = 'aws.call' AND c.request_id = o.request_id"
    )
    _fill_access_keys(conn)
    for name, columns in INDEXES.items():
        if name not in indexes:
            op.create_index(name, "audit_events", list(columns))


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="audit_events")
    for name, columns in REPLACED.items():
        op.create_index(name, "audit_events", list(columns))
    with op.batch_alter_table("audit_events") as batch:
        for column in COLUMNS:
            batch.drop_column(column.name)
