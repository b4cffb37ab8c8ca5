"""The notifications outbox: rows written with the change they tell of, claimed and
delivered later by one replica at a time, and kept as the delivery log.

A row is claimed by a conditional UPDATE (still pending, due, and not claimed by a live
claim): of two replicas claiming the same row, one UPDATE matches and the other none. A
claim lapses after `CLAIM` so a replica that dies mid-delivery does not lose the row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, insert, or_, select, update

from iamgate.store.database import aware
from iamgate.store.tables import notifications

CLAIM = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Outbound:
    """A notification to write into the outbox."""

    request_id: str
    event: str
    channel: str
    target: str
    recipients: tuple[str, ...]
    body: str
    due_at: datetime


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    request_id: str
    event: str
    channel: str
    target: str
    recipients: tuple[str, ...]
    body: str
    state: str
    attempts: int
    due_at: datetime
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


def _row(row: Any) -> Delivery:
    return Delivery(
        id=row.id,
        request_id=row.request_id,
        event=row.event,
        channel=row.channel,
        target=row.target,
        recipients=tuple(r for r in row.recipients.split(",") if r),
        body=row.body,
        state=row.state,
        attempts=row.attempts,
        due_at=aware(row.due_at) or row.due_at,
        last_error=row.last_error,
        created_at=aware(row.created_at) or row.created_at,
        delivered_at=aware(row.delivered_at),
    )


def enqueue(conn: Connection, outbound: Sequence[Outbound], now: datetime) -> None:
    """Write notifications in the caller's transaction: they exist if, and only if, the
    change they tell of was committed."""
    if not outbound:
        return
    conn.execute(
        insert(notifications),
        [
            {
                "request_id": o.request_id,
                "event": o.event,
                "channel": o.channel,
                "target": o.target,
                "recipients": ",".join(o.recipients),
                "body": o.body,
                "state": "pending",
                "attempts": 0,
                "due_at": o.due_at,
                "created_at": now,
            }
            for o in outbound
        ],
    )


def claim_due(engine: Engine, replica: str, now: datetime, limit: int = 20) -> list[Delivery]:
    """The due rows this replica now holds, each claimed by its own conditional UPDATE."""
    n = notifications.c
    free = or_(n.claimed_until.is_(None), n.claimed_until < now)
    with engine.connect() as conn:
        ids = [
            r.id
            for r in conn.execute(
                select(n.id)
                .where(n.state == "pending", n.due_at <= now, free)
                .order_by(n.due_at)
                .limit(limit)
            )
        ]
    claimed = []
    for row_id in ids:
        with engine.begin() as conn:
            won = conn.execute(
                update(notifications)
                .where(n.id == row_id, n.state == "pending", n.due_at <= now, free)
                .values(claimed_by=replica, claimed_until=now + CLAIM)
            ).rowcount
            if won == 1:
                row = conn.execute(select(notifications).where(n.id == row_id)).one()
                claimed.append(_row(row))
    return claimed


def finish(
    engine: Engine,
    delivery: Delivery,
    *,
    state: str,
    now: datetime,
    error: str | None = None,
    retry_at: datetime | None = None,
) -> None:
    """Record an attempt: delivered, skipped, failed for good, or due again at `retry_at`."""
    values: dict[str, Any] = {
        "attempts": delivery.attempts + (0 if state == "skipped" else 1),
        "claimed_by": None,
        "claimed_until": None,
        "last_error": error,
        "state": state,
    }
    if state == "delivered":
        values["delivered_at"] = now
    if retry_at is not None:
        values["due_at"] = retry_at
    with engine.begin() as conn:
        conn.execute(update(notifications).where(notifications.c.id == delivery.id).values(values))


def delivery_log(
    engine: Engine, *, request_id: str | None = None, limit: int = 100
) -> list[Delivery]:
    """Newest first."""
    query = select(notifications).order_by(notifications.c.id.desc()).limit(limit)
    if request_id is not None:
        query = query.where(notifications.c.request_id == request_id)
    with engine.connect() as conn:
        return [_row(r) for r in conn.execute(query)]
