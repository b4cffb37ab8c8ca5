"""Access requests, their reviews and grants in the state store.

Any replica may change a request, so every change is a conditional UPDATE on the state and
`version` the change was decided on: of two replicas approving the same request at the same
instant, one UPDATE matches a row and the other none, and the loser decides again on what
the winner wrote (`iamgate.control.requests` does that). The gateway never reads these
tables per call: `Grants` keeps the open grants in memory, refreshed by short polling as
`Directory` is.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from iamgate.access.requests import EndedBy, Grant, Request, Review, State
from iamgate.store.database import aware
from iamgate.store.notifications import Outbound, enqueue
from iamgate.store.tables import access_grants, access_requests, request_reviews


def new_request_id() -> str:
    return f"rq-{secrets.token_hex(5)}"


def _now() -> datetime:
    return datetime.now(UTC)


def _when(value: datetime | None) -> datetime:
    when = aware(value)
    assert when is not None
    return when


def _text(values: Iterable[str]) -> str:
    return ",".join(values)


def _items(text: str | None) -> tuple[str, ...]:
    return tuple(v for v in (text or "").split(",") if v)


def _row_to_request(row: Any) -> Request:
    return Request(
        id=row.id,
        requester=row.requester,
        role=row.role,
        accounts=_items(row.accounts),
        duration=timedelta(seconds=row.duration_seconds),
        reason=row.reason,
        created_at=_when(row.created_at),
        pending_until=_when(row.pending_until),
        start=aware(row.start_at),
        actions=_items(row.actions),
        ticket=row.ticket,
        state=State(row.state),
        ended_by=EndedBy(row.ended_by) if row.ended_by else None,
        approved_accounts=_items(row.approved_accounts),
        starts_at=aware(row.starts_at),
        ends_at=aware(row.ends_at),
        version=row.version,
    )


def _row_to_review(row: Any) -> Review:
    scope = {a: frozenset(stages) for a, stages in json.loads(row.scope).items()}
    return Review(
        row.reviewer, bool(row.approve), frozenset(_items(row.accounts)), scope, row.reason
    )


def create_request(engine: Engine, request: Request, outbound: Sequence[Outbound] = ()) -> None:
    """Store a new request, and the notifications of it in the same transaction."""
    with engine.begin() as conn:
        enqueue(conn, outbound, request.created_at)
        conn.execute(
            insert(access_requests).values(
                id=request.id,
                requester=request.requester,
                role=request.role,
                accounts=_text(request.accounts),
                actions=_text(request.actions),
                duration_seconds=int(request.duration.total_seconds()),
                reason=request.reason,
                ticket=request.ticket,
                start_at=request.start,
                created_at=request.created_at,
                pending_until=request.pending_until,
                state=request.state.value,
                ended_by=None,
                approved_accounts="",
                version=0,
                updated_at=request.created_at,
            )
        )


@dataclass(frozen=True, slots=True)
class Stored:
    """A request as stored, with its reviews in the order they were given."""

    request: Request
    reviews: tuple[Review, ...]
    reviewed_at: tuple[datetime, ...] = ()


def _reviews(conn: Connection, ids: Sequence[str]) -> dict[str, list[tuple[Review, datetime]]]:
    found: dict[str, list[tuple[Review, datetime]]] = {i: [] for i in ids}
    if not ids:
        return found
    rows = conn.execute(
        select(request_reviews)
        .where(request_reviews.c.request_id.in_(ids))
        .order_by(request_reviews.c.at)
    )
    for row in rows:
        found[row.request_id].append((_row_to_review(row), _when(row.at)))
    return found


def _stored(request: Request, reviews: list[tuple[Review, datetime]]) -> Stored:
    return Stored(request, tuple(r for r, _ in reviews), tuple(at for _, at in reviews))


def load_request(engine: Engine, request_id: str) -> Stored | None:
    with engine.connect() as conn:
        row = conn.execute(
            select(access_requests).where(access_requests.c.id == request_id)
        ).first()
        if row is None:
            return None
        return _stored(_row_to_request(row), _reviews(conn, [request_id])[request_id])


def list_requests(
    engine: Engine,
    *,
    requester: str | None = None,
    states: Iterable[State] | None = None,
    limit: int = 200,
) -> list[Stored]:
    """Newest first."""
    query = select(access_requests).order_by(access_requests.c.created_at.desc()).limit(limit)
    if requester is not None:
        query = query.where(access_requests.c.requester == requester)
    if states is not None:
        query = query.where(access_requests.c.state.in_([s.value for s in states]))
    with engine.connect() as conn:
        requests = [_row_to_request(r) for r in conn.execute(query)]
        reviews = _reviews(conn, [r.id for r in requests])
    return [_stored(r, reviews[r.id]) for r in requests]


def _move(conn: Connection, request: Request, values: dict[str, Any], now: datetime) -> bool:
    """The conditional UPDATE: true if this change won."""
    changed = conn.execute(
        update(access_requests)
        .where(
            access_requests.c.id == request.id,
            access_requests.c.state == request.state.value,
            access_requests.c.version == request.version,
        )
        .values(version=request.version + 1, updated_at=now, **values)
    ).rowcount
    return changed == 1


def record_review(
    engine: Engine,
    request: Request,
    review: Review,
    *,
    state: State,
    approved: Sequence[str] = (),
    window: tuple[datetime, datetime] | None = None,
    now: datetime,
    outbound: Sequence[Outbound] = (),
) -> bool:
    """Store a review and what it did to the request (and the notifications of it), if the
    request is still as `request` says (state and version); false if another change got
    there first."""
    values: dict[str, Any] = {"state": state.value}
    if state is State.APPROVED:
        assert window is not None
        values |= {
            "approved_accounts": _text(approved),
            "starts_at": window[0],
            "ends_at": window[1],
        }
    try:
        with engine.begin() as conn:
            if not _move(conn, request, values, now):
                return False
            conn.execute(
                insert(request_reviews).values(
                    request_id=request.id,
                    reviewer=review.reviewer,
                    approve=int(review.approve),
                    accounts=_text(sorted(review.accounts)),
                    scope=json.dumps({a: sorted(s) for a, s in review.scope.items()}),
                    reason=review.reason,
                    at=now,
                )
            )
            if state is State.APPROVED and window is not None:
                conn.execute(
                    insert(access_grants).values(
                        request_id=request.id,
                        user=request.requester,
                        role=request.role,
                        accounts=_text(approved),
                        actions=_text(request.actions),
                        starts_at=window[0],
                        ends_at=window[1],
                        ended_at=None,
                    )
                )
            enqueue(conn, outbound, now)
    except (IntegrityError, OperationalError):
        # The same reviewer on another replica, or SQLite's stale snapshot: decide again.
        return False
    return True


def move_request(
    engine: Engine,
    request: Request,
    state: State,
    *,
    ended_by: EndedBy | None = None,
    now: datetime,
    outbound: Sequence[Outbound] = (),
) -> bool:
    """Change a request's state (cancel, expire, activate, end) if it is still as `request`
    says; ending it ends its grant in the same transaction."""
    values: dict[str, Any] = {"state": state.value}
    if ended_by is not None:
        values["ended_by"] = ended_by.value
    try:
        with engine.begin() as conn:
            if not _move(conn, request, values, now):
                return False
            if state is State.ENDED:
                conn.execute(
                    update(access_grants)
                    .where(
                        access_grants.c.request_id == request.id, access_grants.c.ended_at.is_(None)
                    )
                    .values(ended_at=now)
                )
            enqueue(conn, outbound, now)
    except OperationalError:
        return False
    return True


def due_requests(engine: Engine, now: datetime) -> list[Request]:
    """Requests whose state the clock has changed (pending too long, started, run out)."""
    r = access_requests.c
    query = select(access_requests).where(
        ((r.state == State.PENDING.value) & (r.pending_until <= now))
        | ((r.state == State.APPROVED.value) & (r.starts_at <= now))
        | (r.state.in_([State.APPROVED.value, State.ACTIVE.value]) & (r.ends_at <= now))
    )
    with engine.connect() as conn:
        return [_row_to_request(row) for row in conn.execute(query)]


def _row_to_grant(row: Any) -> Grant:
    return Grant(
        request_id=row.request_id,
        user=row.user,
        role=row.role,
        accounts=frozenset(_items(row.accounts)),
        starts_at=_when(row.starts_at),
        ends_at=_when(row.ends_at),
        actions=_items(row.actions),
    )


def open_grants(engine: Engine, now: datetime) -> list[Grant]:
    """Grants not ended and not run out: started, or still to start."""
    g = access_grants.c
    query = select(access_grants).where(g.ended_at.is_(None), g.ends_at > now)
    with engine.connect() as conn:
        return [_row_to_grant(row) for row in conn.execute(query)]


class Grants:
    """What a replica knows of open grants, by user, refreshed from the store. A grant's
    window is checked against the clock on each call, so expiry needs no refresh; an early
    end (drop, revoke) reaches this replica at the next refresh."""

    def __init__(self, engine: Engine, clock: Any = None) -> None:
        self._engine = engine
        self._clock = clock or _now
        self._lock = threading.Lock()
        self._by_user: dict[str, tuple[Grant, ...]] = {}

    def refresh(self) -> None:
        by_user: dict[str, list[Grant]] = {}
        for grant in open_grants(self._engine, self._clock()):
            by_user.setdefault(grant.user, []).append(grant)
        with self._lock:
            self._by_user = {user: tuple(grants) for user, grants in by_user.items()}

    def of(self, user: str) -> tuple[Grant, ...]:
        return self._by_user.get(user, ())
