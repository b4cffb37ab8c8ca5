"""The notifications outbox in the store, on SQLite and on the machine's PostgreSQL
server: rows exist if and only if the change they tell of was committed, two replicas
claiming at the same instant deliver each row once, and a lapsed claim is taken over."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from postgres import fresh_database
from sqlalchemy import Engine

from iamgate.access.requests import Ask, State
from iamgate.audit.events import AuditEvent
from iamgate.config import parse_config
from iamgate.control.notifications import backoff, sign
from iamgate.control.requests import Requests
from iamgate.control.users import Actor
from iamgate.store.database import open_engine
from iamgate.store.notifications import CLAIM, Outbound, claim_due, delivery_log, finish
from iamgate.store.requests import move_request
from iamgate.store.users import put_user

NOTIFYING = parse_config(
    """\
aws:
  accounts:
    - {name: prod-eu, id: "111111111111", labels: {env: prod}}
roles:
  - name: data-scientist
  - name: team-lead
  - name: security
  - name: prod-admin
    allow: {accounts: {env: [prod]}, aws_roles: [Admin]}
    requestable:
      requesters: [data-scientist]
      stages: [{approve: 1, from: team-lead}, {approve: 1, from: security}]
notifications:
  webhooks: [{url: "http://127.0.0.1:9/hook", secret_env: NO_SUCH_SECRET}]
  smtp: {host: 127.0.0.1, from: iamgate@example.test, to: "{user}@x.test"}
"""
)
PEOPLE = {"dana": ["data-scientist"], "lee": ["team-lead"], "lou": ["team-lead"],
          "sec": ["security"], "eve": []}  # fmt: skip


class Trail:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def append(self, event: AuditEvent) -> None:
        self.events.append(event)


def ask() -> Ask:
    return Ask(role="prod-admin", accounts=("prod-eu",), reason="INC-1")


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = open_engine(f"sqlite:///{tmp_path / 'state.db'}")
        yield from _with_people(engine)
    else:
        with fresh_database() as fresh:
            yield from _with_people(open_engine(fresh))


def _with_people(engine: Engine) -> Iterator[Engine]:
    for name, roles in PEOPLE.items():
        put_user(engine, name, roles=roles)
    yield engine
    engine.dispose()


def test_rows_are_written_with_the_change_and_not_for_a_lost_one(engine: Engine) -> None:
    requests = Requests(NOTIFYING, engine, Trail())
    request = requests.create(ask(), by=Actor("dana"))
    rows = delivery_log(engine, request_id=request.id)
    assert sorted((r.event, r.channel, r.target) for r in rows) == [
        ("request.created", "smtp", "lee@x.test"),
        ("request.created", "smtp", "lou@x.test"),
        ("request.created", "smtp", "sec@x.test"),
        ("request.created", "webhook", "http://127.0.0.1:9/hook"),
        ("request.reminder", "smtp", "lee@x.test"),
        ("request.reminder", "smtp", "lou@x.test"),
        ("request.reminder", "smtp", "sec@x.test"),
        ("request.reminder", "webhook", "http://127.0.0.1:9/hook"),
    ]
    reminder = next(r for r in rows if r.event == "request.reminder")
    assert reminder.due_at - request.created_at == timedelta(hours=12)  # half of 24h

    requests.drop(request.id, by=Actor("dana"))  # the request moves on: `request` is stale
    before = len(delivery_log(engine))
    now = datetime.now(UTC)
    told = Outbound(request.id, "request.expired", "smtp", "dana@x.test", ("dana",), "{}", now)
    lost = move_request(engine, request, State.CANCELLED, now=now, outbound=[told])
    assert lost is False
    assert len(delivery_log(engine)) == before


def test_two_replicas_claim_each_row_once_and_a_lapsed_claim_is_taken_over(
    engine: Engine,
) -> None:
    requests = Requests(NOTIFYING, engine, Trail())
    for _ in range(3):
        requests.create(ask(), by=Actor("dana"))
    now = datetime.now(UTC)
    claimed: dict[str, list[int]] = {}
    start = threading.Barrier(2)

    def replica(name: str) -> None:
        start.wait()
        claimed[name] = [d.id for d in claim_due(engine, name, now, limit=100)]

    threads = [threading.Thread(target=replica, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    due_now = [d.id for d in delivery_log(engine) if d.event == "request.created"]
    assert sorted(claimed["a"] + claimed["b"]) == sorted(due_now)  # each once, none lost
    assert claim_due(engine, "c", now) == []  # held by live claims
    later = claim_due(engine, "c", now + CLAIM + timedelta(seconds=1))
    assert sorted(d.id for d in later) == sorted(due_now)  # a claim lapses
    finish(
        engine, later[0], state="pending", now=now, error="down", retry_at=now + backoff(0, CLAIM)
    )
    (again,) = [d for d in delivery_log(engine) if d.id == later[0].id]
    assert (again.attempts, again.last_error, again.state) == (1, "down", "pending")


def test_signature_and_backoff() -> None:
    # the value `openssl dgst -sha256 -hmac k` gives for the body {}
    expected = "sha256=add853b103fbcc936a194f9eb15e29c4ff08af6e47d5d1bca4f20218e31e4fff"
    assert sign(b"k", b"{}") == expected
    assert [backoff(n, timedelta(seconds=10)).total_seconds() for n in range(6)] == [
        1, 2, 4, 8, 10, 10,
    ]  # fmt: skip
