"""Audit search reads index ranges, never the whole table, on SQLite and on PostgreSQL; paging
with its cursor yields every matching event once, newest first; `audit verify` streams.

The plans are those of the very statements `search` sends (recorded from the engine), on a
trail written by the real appender and analysed, so what is checked is what the store does
with the queries it is really given: each is an index range (SQLite: SEARCH, never SCAN of
the table, no temporary B-tree for ORDER BY; PostgreSQL: an index scan read backwards for
the order, no Seq Scan and no Sort, even with those priced out), whose cost follows the rows
it returns, not the table.
"""

from __future__ import annotations

import json
import secrets
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from postgres import fresh_database
from sqlalchemy import Engine, create_engine, event, text

from iamgate.access.patterns import matches
from iamgate.audit.appender import Appender, DirectAuditLog, columns_of
from iamgate.audit.chain import GENESIS, link
from iamgate.audit.events import AuditEvent, EventType, encode
from iamgate.audit.search import Filters, search, search_page, verify
from iamgate.store.database import open_engine
from iamgate.store.schema import _alembic

T0 = datetime(2026, 11, 1, tzinfo=UTC)
ACTIONS = ("rds:DeleteDBInstance", "rds:DescribeDBInstances", "s3:GetObject", "s3:PutObject")
KEY = "ASIA" + "7" * 16


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        made = open_engine(f"sqlite:///{tmp_path / 'state.db'}")
        yield made
        made.dispose()
        return
    with fresh_database() as url:
        made = open_engine(url)
        yield made
        made.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def indexed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """A trail of 4,000 API calls from two gateways, analysed: enough rows that PostgreSQL
    prefers an index where one serves (on a few rows it rightly reads the table)."""
    if request.param == "sqlite":
        made = open_engine(f"sqlite:///{tmp_path_factory.mktemp('plans') / 'state.db'}")
        trail(made, 4000)
        yield made
        made.dispose()
        return
    with fresh_database() as url:
        made = open_engine(url)
        trail(made, 4000)
        yield made
        made.dispose()


def call(n: int, time: datetime, **fields: Any) -> AuditEvent:
    return AuditEvent(
        EventType.AWS_CALL,
        principal=fields.pop("principal", f"user{n % 40}"),
        time=time,
        fields={
            "request_id": f"R{n:08}",
            "decision": "allowed",
            "account_id": f"{n % 12:012}",
            "aws_role": f"role{n % 9}",
            "service": ACTIONS[n % 4].split(":")[0],
            "action": ACTIONS[n % 4],
            "access_key_id": KEY if n % 20 == 0 else f"ASIA{n % 97:016}",
            **fields,
        },
    )


def outcome(n: int, time: datetime, status: int) -> AuditEvent:
    return AuditEvent(
        EventType.AWS_CALL_OUTCOME,
        principal=f"user{n % 40}",
        time=time,
        fields={"request_id": f"R{n:08}", "status": status},
    )


def analyse(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("ANALYZE" if engine.dialect.name == "sqlite" else "ANALYZE audit_events"))


def trail(engine: Engine, calls: int) -> None:
    """`calls` API calls and their outcomes from two gateways, with other events between."""
    writers = [Appender(engine, secrets.token_hex(8)) for _ in range(2)]
    batches: list[list[bytes]] = [[], []]
    for n in range(calls):
        at = T0 + timedelta(milliseconds=10 * (n // 2))  # the two chains share each instant
        batch = batches[n % 2]
        if n % 10 == 3:
            batch.append(encode(call(n, at, decision="denied", status=403)))
        else:
            batch.append(encode(call(n, at)))
            status = 500 if n % 23 == 5 else 200
            batch.append(encode(outcome(n, at + timedelta(milliseconds=3), status)))
        if n % 20 == 0:
            batch.append(encode(AuditEvent(EventType.LOGIN_FAILED, principal="x", time=at)))
    for writer, bodies in zip(writers, batches, strict=True):
        for start in range(0, len(bodies), 1000):
            chunk = bodies[start : start + 1000]
            writer.write([(writer.seq + 1 + i, body) for i, body in enumerate(chunk)])
        writer.close()
    analyse(engine)


def statements(engine: Engine, filters: Filters) -> tuple[list[dict[str, Any]], list[Any]]:
    """What `search` finds, and each statement it sent with its parameters."""
    sent: list[Any] = []

    def record(_c: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        found = search(engine, filters)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return found, sent


def sqlite_problems(engine: Engine, sent: list[Any]) -> list[str]:
    problems = []
    with engine.connect() as conn:
        for statement, parameters in sent:
            plan = [
                row[3]
                for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            ]
            for line in plan:
                if "TEMP B-TREE" in line or line.startswith(("SCAN audit_events", "SCAN outcome")):
                    problems.append(f"{line}  <-  {statement}")
    return problems


def postgres_problems(engine: Engine, sent: list[Any]) -> list[str]:
    """With sorting and whole-table reads priced out, a Sort or Seq Scan left in a plan
    means no index serves that statement. (On a table this small PostgreSQL may rightly
    prefer to sort the 30 rows a bitmap scan finds; at a million events it reads the index
    backwards, as `bench/audit_search.py` shows.)"""
    problems = []
    with engine.connect() as conn:
        for setting in ("enable_sort", "enable_seqscan", "enable_bitmapscan"):
            conn.exec_driver_sql(f"SET LOCAL {setting} = off")
        for statement, parameters in sent:
            (plan,) = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters).one()
            plan = plan if isinstance(plan, list) else json.loads(plan)
            nodes = list(_nodes(plan[0]["Plan"]))
            for node in nodes:
                if node["Node Type"] in ("Seq Scan", "Sort", "Incremental Sort"):
                    problems.append(f"{node['Node Type']}  <-  {statement}")
            ordered = (
                "ORDER BY" in statement and "LIMIT" in statement and "RECURSIVE" not in statement
            )
            if ordered and not any(n.get("Scan Direction") == "Backward" for n in nodes):
                problems.append(f"the order is not an index read backwards  <-  {statement}")
    return problems


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


FILTERS = {
    "newest 50": Filters(limit=50),
    "principal": Filters(principal="user7", limit=30),
    "account": Filters(account_id="000000000005", limit=30),
    "role": Filters(aws_role="role4", limit=30),
    "service": Filters(service="rds", limit=30),
    "decision": Filters(decision="denied", limit=30),
    "status from outcomes": Filters(status=500, limit=30),
    "status of refusals": Filters(status=403, limit=30),
    "action glob": Filters(action="rds:Delete*", limit=30),
    "action, any case": Filters(action="RDS:delete*", limit=30),
    "access key": Filters(access_key_id=KEY, limit=30),
    "another type": Filters(type=str(EventType.LOGIN_FAILED), limit=30),
    "several types": Filters(
        types=(str(EventType.LOGIN_FAILED), str(EventType.AWS_CALL)), limit=30
    ),
    "time range": Filters(since="2026-11-01T00:00:05Z", until="2026-11-01T00:00:09Z", limit=30),
    "status and principal": Filters(status=200, principal="user8", limit=30),
}


@pytest.mark.parametrize("name", FILTERS)
def test_each_filter_and_the_pages_after_it_read_an_index_range(indexed: Engine, name: str) -> None:
    engine = indexed
    filters = FILTERS[name]
    check = sqlite_problems if engine.dialect.name == "sqlite" else postgres_problems
    first = search_page(engine, filters)
    assert first.events, name  # the check is about queries that find something
    found, sent = statements(engine, filters)
    assert found == first.events
    assert check(engine, sent) == []
    assert first.next is not None
    # Page 3, from a cursor in the middle of the trail.
    second = search_page(engine, replace(filters, before=first.next))
    assert second.next is not None
    _, sent = statements(engine, replace(filters, before=second.next))
    assert check(engine, sent) == []


@dataclass(frozen=True)
class Planned:
    chain: int  # which of three gateways records it
    instant: int  # few instants, so that chains share them
    principal: str
    action: str
    kind: str  # refused (own status) | answered (an outcome) | pending (no outcome yet)
    status: int
    restarted: bool  # the outcome is stored by a writer started after the call


planned = st.builds(
    Planned,
    chain=st.integers(0, 2),
    instant=st.integers(0, 4),
    principal=st.sampled_from(["ana", "bo"]),
    action=st.sampled_from(ACTIONS),
    kind=st.sampled_from(["refused", "answered", "pending"]),
    status=st.sampled_from([200, 403, 500]),
    restarted=st.booleans(),
)
search_filters = st.sampled_from(
    [
        Filters(),
        Filters(principal="bo"),
        Filters(status=200),
        Filters(status=403),
        Filters(action="rds:*"),
        Filters(action="*Object"),
        Filters(decision="denied"),
        Filters(status=500, principal="ana"),
        Filters(until="2026-11-01T00:00:03.000000Z"),
    ]
)


def store_planned(
    engine: Engine, events: list[Planned]
) -> list[tuple[tuple[str, str, int], dict[str, Any]]]:
    """Write the planned events; what search should say of each call, with its key."""
    chains = sorted(secrets.token_hex(4) for _ in range(3))
    writers = [Appender(engine, name) for name in chains]
    expected = []
    for n, p in enumerate(events):
        writer = writers[p.chain]
        at = T0 + timedelta(seconds=p.instant)
        extra = {"decision": "denied", "status": p.status} if p.kind == "refused" else {}
        body = call(n, at, principal=p.principal, action=p.action, **extra)
        writer.write([(writer.seq + 1, encode(body))])
        fields = dict(body.as_dict()["fields"])
        key = (body.as_dict()["time"], chains[p.chain], writer.seq)
        if p.kind == "answered":
            if p.restarted:
                writer.close()
                writer = writers[p.chain] = Appender(engine, chains[p.chain])
            writer.write(
                [(writer.seq + 1, encode(outcome(n, at + timedelta(seconds=1), p.status)))]
            )
            fields |= {"status": p.status}
        expected.append((key, {"principal": p.principal, **fields}))
    for writer in writers:
        writer.close()
    return expected


def wanted(f: Filters, e: dict[str, Any]) -> bool:
    return (
        (f.principal is None or e["principal"] == f.principal)
        and (f.status is None or e.get("status") == f.status)
        and (f.decision is None or e["decision"] == f.decision)
        and (f.action is None or matches(f.action, e["action"]))
    )


@given(events=st.lists(planned, max_size=40), filters=search_filters, size=st.integers(1, 4))
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_paging_yields_every_match_once_newest_first(
    engine: Engine, events: list[Planned], filters: Filters, size: int
) -> None:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events"))
    expected = store_planned(engine, events)
    cut = filters.until
    matching = sorted(
        (key for key, e in expected if wanted(filters, e) and (cut is None or key[0] <= cut)),
        reverse=True,
    )
    seen: list[tuple[str, str]] = []
    before = None
    for _ in range(len(events) + 2):
        page = search_page(engine, replace(filters, limit=size, before=before))
        assert len(page.events) <= size
        seen += [(e["time"], e["fields"]["request_id"]) for e in page.events]
        if page.next is None:
            break
        before = page.next
    ids = {key: e["request_id"] for key, e in expected}
    assert seen == [(key[0], ids[key]) for key in matching]


def test_a_time_as_before_still_means_strictly_earlier(engine: Engine) -> None:
    trail(engine, 200)
    newest = search(engine, Filters(limit=5))
    older = search(engine, Filters(limit=500, before=newest[-1]["time"]))
    assert older and all(e["time"] < newest[-1]["time"] for e in older)
    everything = search(engine, Filters(limit=500))
    assert [e for e in everything if e["time"] < newest[-1]["time"]] == older


def test_verify_reads_the_trail_in_constant_memory(engine: Engine) -> None:
    writer = Appender(engine, secrets.token_hex(8))
    size = 0
    for start in range(0, 20_000, 2000):
        bodies = [encode(call(n, T0 + timedelta(seconds=n))) for n in range(start, start + 2000)]
        size += sum(len(b) for b in bodies)
        writer.write([(writer.seq + 1 + i, body) for i, body in enumerate(bodies)])
    writer.close()
    tracemalloc.start()
    try:
        problems = verify(engine)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert problems == []
    assert peak < size / 4, (peak, size)  # holding the rows would take several times `size`
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE audit_events SET body = replace(body, 'user7', 'mallory') WHERE seq = 12008"
            )
        )
    assert [(p.seq, p.what) for p in verify(engine)] == [(12008, "edited")]


def test_a_trail_stored_before_the_indexes_is_searchable_after_the_upgrade(tmp_path: Path) -> None:
    for url in (f"sqlite:///{tmp_path / 'old.db'}", None):
        if url is None:
            with fresh_database() as fresh:
                _upgrade_an_old_trail(fresh.replace("postgresql://", "postgresql+psycopg://", 1))
        else:
            _upgrade_an_old_trail(url)


def _upgrade_an_old_trail(url: str) -> None:
    old = create_engine(url)
    with old.begin() as conn:
        command.upgrade(_alembic(conn), "0002")
        head, rows = GENESIS, []
        events = [
            call(1, T0),
            outcome(1, T0 + timedelta(seconds=2), 503),
            call(2, T0 + timedelta(seconds=1)),
        ]
        for seq, body in enumerate((encode(e).decode() for e in events), start=1):
            digest = link(head, seq, body)
            rows.append(
                {
                    "chain": "c0",
                    "seq": seq,
                    "prev_hash": head,
                    "hash": digest,
                    "body": body,
                    **columns_of(body),
                }
            )
            head = digest
        names = ", ".join(rows[0])
        marks = ", ".join(f":{k}" for k in rows[0])
        conn.execute(text(f"INSERT INTO audit_events ({names}) VALUES ({marks})"), rows)  # noqa: S608
    old.dispose()
    engine = open_engine(url)
    try:
        assert [e["fields"]["request_id"] for e in search(engine, Filters(status=503))] == [
            "R00000001"
        ]
        assert [
            e["fields"]["request_id"]
            for e in search(engine, Filters(access_key_id="ASIA" + "0" * 15 + "1"))
        ] == ["R00000001"]
        assert verify(engine) == []
    finally:
        engine.dispose()


def test_a_jobs_calls_are_found_by_claim(engine: Engine) -> None:
    """Exactly: a claim with LIKE's own characters, or of another name, does not match."""
    log = DirectAuditLog(engine)
    for run, ref in (("4_2", "refs/heads/main"), ("412", "refs/heads/main"), ("4%2", "x")):
        log.append(
            AuditEvent(
                EventType.AWS_CALL,
                principal="bot:infra-deploy",
                fields={
                    "request_id": run,
                    "decision": "denied",
                    "job": {"run_id": run, "ref": ref},
                },
            )
        )
    log.append(
        AuditEvent(
            EventType.AWS_CALL, principal="dana", fields={"request_id": "r", "run_id": "4_2"}
        )
    )
    refused = {"request_id": "refused", "action": "sts:AssumeRoleWithWebIdentity"}
    log.append(  # a genuine token that no binding took: no bot, the job all the same
        AuditEvent(EventType.AWS_CALL, fields={**refused, "job": {"run_id": "7", "ref": "x"}})
    )
    log.close()

    def found(*job: tuple[str, str]) -> list[str]:
        return [e["fields"]["request_id"] for e in search(engine, Filters(job=job))]

    assert found(("run_id", "4_2")) == ["4_2"]
    assert found(("run_id", "4%2")) == ["4%2"]
    assert found(("ref", "refs/heads/main")) == ["412", "4_2"]
    assert found(("ref", "refs/heads/main"), ("run_id", "412")) == ["412"]
    assert found(("ref", "refs/heads/mai")) == []
    assert found(("ref", "x")) == ["refused", "4%2"]
