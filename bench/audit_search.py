"""Audit search at a million events, on SQLite and PostgreSQL, before and after its indexes.

    .venv/bin/python bench/audit_search.py [--events 1000000] [--stores sqlite,postgresql]
        [--postgres postgresql://postgres@127.0.0.1:5432] [--before-cap 10] [--after-only]

Generates a trail of `--events` events as eight gateways would record them over 30 days:
API calls (9 in 10 allowed and answered, each with its outcome; the others refused with
their own status) by 2,000 principals (a few busy, most rare) in 300 accounts, with 60 IAM
roles and the actions of 25 AWS services (botocore's), plus logins and issued credentials;
each chain hashed as the appender links it. Rows are bulk-loaded (executemany in one
transaction on SQLite, COPY on PostgreSQL) with the indexes built afterwards.

Then, for newest 50, each single filter and page 10, it reports milliseconds (median of
runs after a warm-up, and the slowest) with:
  before  the search of revision 0002 (ORDER BY time, filters and outcomes joined in
          Python) on that revision's indexes; a query still running after `--before-cap`
          seconds is stopped and shown as "> cap";
  after   `iamgate.audit.search` on revision 0003's indexes;
and each as a ratio to a reference measured in the same run on the same store: reading one
event by its primary key (chain, seq), a connection checked out for it as search does.
Goal (issue 16): every "after" under 50 ms. It also EXPLAINs every statement each "after"
search sends, as the store plans it unforced, and names any that reads the whole table or
sorts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import botocore.session
import orjson
import psycopg
from sqlalchemy import Engine, select, text
from sqlalchemy import event as sa_event

from iamgate.access.patterns import matches
from iamgate.audit.chain import CANONICAL, GENESIS
from iamgate.audit.events import EventType, format_time
from iamgate.audit.search import Filters, search_page
from iamgate.store.database import open_engine
from iamgate.store.tables import audit_events

SERVICES = [
    "s3",
    "ec2",
    "iam",
    "rds",
    "dynamodb",
    "lambda",
    "sqs",
    "sns",
    "kms",
    "sts",
    "logs",
    "cloudwatch",
    "secretsmanager",
    "ssm",
    "ecs",
    "ecr",
    "eks",
    "cloudformation",
    "elbv2",
    "autoscaling",
    "route53",
    "kinesis",
    "glue",
    "athena",
    "stepfunctions",
]
STATUSES = {200: 80, 204: 3, 206: 1, 304: 1, 400: 3, 403: 2, 404: 5, 409: 1, 429: 1, 500: 1, 503: 2}
OTHER = (EventType.LOGIN_SUCCEEDED, EventType.CREDENTIALS_ISSUED, EventType.LOGIN_FAILED)
COLUMN_NAMES = [
    "chain",
    "seq",
    "prev_hash",
    "hash",
    "body",
    "id",
    "time",
    "type",
    "principal",
    "account_id",
    "aws_role",
    "service",
    "action",
    "decision",
    "status",
    "request_id",
    "access_key_id",
    "call_time",
    "call_chain",
    "call_seq",
]
OLD_INDEXES = {
    "ix_audit_events_time": ("time",),
    "ix_audit_events_type": ("type",),
    "ix_audit_events_principal": ("principal",),
}
START = datetime(2026, 10, 1, tzinfo=UTC)


@dataclass
class Chain:
    name: str
    seq: int = 0
    head: str = GENESIS


def zipf(n: int, s: float = 1.0) -> list[float]:
    """Cumulative weights: the first few values are common, most are rare."""
    total, cum = 0.0, []
    for i in range(n):
        total += 1 / (i + 1) ** s
        cum.append(total)
    return cum


def actions() -> list[str]:
    session = botocore.session.get_session()
    found = []
    for name in SERVICES:
        model = session.get_service_model(name)
        found += [f"{model.signing_name}:{op}" for op in model.operation_names]
    random.shuffle(found)
    # Reads dominate a real trail: Describe/Get/List first in the Zipf order.
    found.sort(key=lambda a: not a.split(":")[1].startswith(("Describe", "Get", "List")))
    return found


def generate(events: int, seed: int) -> Iterator[tuple[Any, ...]]:
    """Rows of `audit_events`, each chain linked in order."""
    rng = random.Random(seed)
    random.seed(seed)
    chains = [Chain(secrets.token_hex(8)) for _ in range(8)]
    principals = [f"user{i:04}" for i in range(2000)]
    keys = {p: [f"ASIA{rng.getrandbits(64):016X}" for _ in range(3)] for p in principals}
    accounts = [f"{100000000000 + i * 7919}" for i in range(300)]
    roles = [f"Role{i:02}" for i in range(60)]
    all_actions = actions()
    weights = {
        "p": zipf(len(principals), 0.9),
        "a": zipf(len(accounts)),
        "r": zipf(len(roles)),
        "x": zipf(len(all_actions), 1.1),
    }
    statuses, status_weights = list(STATUSES), list(STATUSES.values())
    step = 30 * 86400 / events  # seconds between events on average
    moment = START
    made = 0
    n = 0
    while made < events:
        n += 1
        moment += timedelta(seconds=rng.expovariate(1 / (2 * step)))
        chain = chains[rng.randrange(len(chains))]
        principal = rng.choices(principals, cum_weights=weights["p"])[0]
        if rng.random() < 0.02:
            kind = OTHER[rng.randrange(len(OTHER))]
            body = _body(kind, moment, principal, {"access_key_id": rng.choice(keys[principal])})
            yield _row(chain, body)
            made += 1
            continue
        action = rng.choices(all_actions, cum_weights=weights["x"])[0]
        fields: dict[str, Any] = {
            "request_id": f"{rng.getrandbits(64):016X}",
            "account_id": rng.choices(accounts, cum_weights=weights["a"])[0],
            "aws_role": rng.choices(roles, cum_weights=weights["r"])[0],
            "service": action.split(":")[0],
            "action": action,
            "access_key_id": rng.choice(keys[principal]),
            "region": "eu-west-1",
            "gateway_role": "developers",
            "rule": None,
            "params": {"Bucket": f"bucket-{n % 500}"} if action.startswith("s3:") else {},
        }
        draw = rng.random()
        if draw < 0.09:
            fields |= {"decision": "denied", "status": 403, "reason": "no role allows it"}
            yield _row(chain, _body(EventType.AWS_CALL, moment, principal, fields))
            made += 1
            continue
        if draw < 0.10:
            fields |= {"decision": "error", "status": rng.choice([500, 502, 504])}
            yield _row(chain, _body(EventType.AWS_CALL, moment, principal, fields))
            made += 1
            continue
        fields["decision"] = "allowed"
        call = _row(chain, _body(EventType.AWS_CALL, moment, principal, fields))
        yield call
        status = rng.choices(statuses, weights=status_weights)[0]
        answered = moment + timedelta(milliseconds=rng.expovariate(1 / 80))
        outcome = {
            "request_id": fields["request_id"],
            "status": status,
            "latency_ms": 12.5,
            "bytes_in": 0,
            "bytes_out": 512,
        }
        yield _row(
            chain,
            _body(EventType.AWS_CALL_OUTCOME, answered, principal, outcome),
            (call[6], call[0], call[1]),
        )
        made += 2


def _body(kind: EventType, moment: datetime, principal: str, fields: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {
            "id": secrets.token_hex(12),
            "time": format_time(moment),
            "type": str(kind),
            "principal": principal,
            "source_ip": "10.0.3.7",
            "user_agent": "aws-cli/1.36.0 Python/3.11 Linux botocore/1.35.0",
            "fields": fields,
        },
        option=CANONICAL,
    )


def _row(chain: Chain, body: bytes, call: tuple[Any, ...] = (None, None, None)) -> tuple[Any, ...]:
    text_ = body.decode()
    chain.seq += 1
    digest = hashlib.sha256(f"{chain.head}\n{chain.seq}\n{text_}".encode()).hexdigest()
    prev, chain.head = chain.head, digest
    b = orjson.loads(body)
    f = b["fields"]
    status = f.get("status")
    return (
        chain.name,
        chain.seq,
        prev,
        digest,
        text_,
        b["id"],
        b["time"],
        b["type"],
        b["principal"],
        f.get("account_id"),
        f.get("aws_role"),
        f.get("service"),
        f.get("action"),
        f.get("decision"),
        status,
        f.get("request_id"),
        f.get("access_key_id"),
        *call,
    )


def load(engine: Engine, events: int) -> float:
    """Bulk-load the trail without indexes; seconds taken (generation included)."""
    drop_indexes(engine)
    started = time.perf_counter()
    rows = generate(events, seed=16)
    raw: Any = engine.raw_connection()
    try:
        if engine.dialect.name == "sqlite":
            raw.execute("PRAGMA synchronous=OFF")
            marks = ", ".join("?" for _ in COLUMN_NAMES)
            sql = f"INSERT INTO audit_events ({', '.join(COLUMN_NAMES)}) VALUES ({marks})"  # noqa: S608
            while batch := [r for _, r in zip(range(50_000), rows, strict=False)]:
                raw.executemany(sql, batch)
        else:
            cursor = raw.cursor()
            with cursor.copy(f"COPY audit_events ({', '.join(COLUMN_NAMES)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        raw.commit()
    finally:
        raw.close()
    return time.perf_counter() - started


def drop_indexes(engine: Engine) -> None:
    with engine.begin() as conn:
        names = {i.name for i in audit_events.indexes} | set(OLD_INDEXES)
        for name in sorted(n for n in names if n and n != "ix_audit_events_request_id"):
            conn.execute(text(f"DROP INDEX IF EXISTS {name}"))


def build_indexes(engine: Engine, which: str) -> float:
    """The indexes of revision 0002 ("before") or 0003 ("after"); seconds taken."""
    drop_indexes(engine)
    started = time.perf_counter()
    with engine.begin() as conn:
        if which == "before":
            for name, columns in OLD_INDEXES.items():
                conn.execute(text(f"CREATE INDEX {name} ON audit_events ({', '.join(columns)})"))
        else:
            for index in audit_events.indexes:
                if index.name != "ix_audit_events_request_id":
                    index.create(conn)
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(
            text("ANALYZE" if engine.dialect.name == "sqlite" else "VACUUM ANALYZE audit_events")
        )
    return time.perf_counter() - started


class Stopped(Exception):
    pass


def legacy_search(engine: Engine, filters: Filters, deadline: float) -> list[dict[str, Any]]:
    """`iamgate.audit.search.search` as revision 0002 had it (without the access key
    search), stopped at `deadline`."""
    c = audit_events.c
    query = select(audit_events).where(c.type == filters.type)
    for column, value in (
        (c.principal, filters.principal),
        (c.account_id, filters.account_id),
        (c.aws_role, filters.aws_role),
        (c.service, filters.service),
        (c.decision, filters.decision),
    ):
        if value is not None:
            query = query.where(column == value)
    if filters.before:
        query = query.where(c.time < filters.before)
    query = query.order_by(c.time.desc())
    found: list[dict[str, Any]] = []
    with engine.connect() as conn:
        for row in conn.execution_options(stream_results=True).execute(query):
            if time.perf_counter() > deadline:
                raise Stopped
            if filters.action and not matches(filters.action, row.action or ""):
                continue
            found.append(json.loads(row.body))
            if len(found) >= filters.limit * 4 and not filters.status:
                break
        ids = [e["fields"].get("request_id") for e in found if e["fields"].get("request_id")]
        outcomes: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), 500):
            if time.perf_counter() > deadline:
                raise Stopped
            rows = conn.execute(
                select(c.body).where(
                    c.type == str(EventType.AWS_CALL_OUTCOME),
                    c.request_id.in_(ids[start : start + 500]),
                )
            )
            for (body,) in rows:
                outcome = json.loads(body)["fields"]
                outcomes[outcome["request_id"]] = outcome
    merged = []
    for event in found:
        outcome = outcomes.get(event["fields"].get("request_id", ""))
        if outcome is not None:
            event["fields"] = {**event["fields"], **outcome}
        if filters.status is None or event["fields"].get("status") == filters.status:
            merged.append(event)
        if len(merged) >= filters.limit:
            break
    return merged


def measure(fn: Callable[[], object], runs: int) -> tuple[float, float] | None:
    """Median and slowest milliseconds over `runs` runs after a warm-up (a run over a second
    is measured once: its warm-up is the measure); None if stopped at its deadline."""
    samples: list[float] = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        try:
            fn()
        except Stopped:
            return None
        samples.append((time.perf_counter() - started) * 1000)
        if samples[0] > 1000:
            break
    measured = samples[1:] or samples
    return statistics.median(measured), max(measured)


def popular(engine: Engine, column: str, rank: int) -> Any:
    """The value of `column` that is the rank-th most common among API calls."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                f"SELECT {column} AS v, count(*) AS n FROM audit_events WHERE type = 'aws.call' "  # noqa: S608
                f"AND {column} IS NOT NULL GROUP BY {column} ORDER BY n DESC LIMIT {rank + 1}"
            )
        ).all()
    return rows[min(rank, len(rows) - 1)].v


def cases(engine: Engine) -> dict[str, Filters]:
    key = popular(engine, "access_key_id", 40)
    return {
        "newest 50": Filters(limit=50),
        "principal (busiest)": Filters(principal=popular(engine, "principal", 0), limit=50),
        "principal (rank 500)": Filters(principal=popular(engine, "principal", 500), limit=50),
        "account": Filters(account_id=popular(engine, "account_id", 20), limit=50),
        "role": Filters(aws_role=popular(engine, "aws_role", 10), limit=50),
        "service": Filters(service="kms", limit=50),
        "action rds:Delete*": Filters(action="rds:Delete*", limit=50),
        "action s3:*Object": Filters(action="s3:*Object", limit=50),
        "decision denied": Filters(decision="denied", limit=50),
        "decision error": Filters(decision="error", limit=50),
        "status 500": Filters(status=500, limit=50),
        "status 429": Filters(status=429, limit=50),
        "status 403": Filters(status=403, limit=50),
        "access key": Filters(access_key_id=key, limit=50),
        "type login.failed": Filters(type=str(EventType.LOGIN_FAILED), limit=50),
        # The Audit page's "Every event": one index range per type, merged.
        "every type": Filters(
            types=tuple(t for t in EventType if t is not EventType.AWS_CALL_OUTCOME), limit=50
        ),
    }


def query(engine: Engine, filters: Filters, legacy: bool, cap: float) -> object:
    if legacy:
        return legacy_search(engine, filters, time.perf_counter() + cap)
    return search_page(engine, filters)


def plan_problems(engine: Engine, filters: Filters) -> list[str]:
    """What the store's own plans (not forced) for the statements of this search read the
    whole table for or sort: none, when every statement is an index range."""
    sent: list[tuple[str, Any]] = []

    def record(_c: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            sent.append((statement, parameters))

    sa_event.listen(engine, "before_cursor_execute", record)
    try:
        search_page(engine, filters)
    finally:
        sa_event.remove(engine, "before_cursor_execute", record)
    found = []
    with engine.connect() as conn:
        for statement, parameters in sent:
            if engine.dialect.name == "sqlite":
                plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
                found += [
                    row[3]
                    for row in plan
                    if "TEMP B-TREE" in row[3]
                    or row[3].startswith(("SCAN audit_events", "SCAN outcome"))
                ]
            else:
                plan = conn.exec_driver_sql(f"EXPLAIN {statement}", parameters)
                found += [
                    row[0].strip()
                    for row in plan
                    if any(n in row[0] for n in ("Seq Scan", "Sort  ", "Incremental Sort"))
                ]
    return found


def page_before(engine: Engine, filters: Filters, number: int, legacy: bool) -> str | None:
    """The `before` of page `number`, as each version's callers make it."""
    before = None
    for _ in range(number - 1):
        f = replace(filters, before=before)
        if legacy:
            events = legacy_search(engine, f, time.perf_counter() + 600)
            before = events[-1]["time"]
        else:
            before = search_page(engine, f).next
    return before


def run_store(
    name: str, engine: Engine, events: int, runs: int, cap: float, stages: tuple[str, ...]
) -> list[str]:
    lines = [f"== {name}: {events:,} events"]
    loaded = load(engine, events)
    with engine.connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM audit_events")).scalar_one()
        some = conn.execute(
            text(f"SELECT chain, seq FROM audit_events LIMIT 1 OFFSET {count // 2}")  # noqa: S608
        ).one()
    lines.append(f"generated and loaded {count:,} rows in {loaded:.1f} s (no indexes)")

    def reference() -> None:
        with engine.connect() as conn:
            c = audit_events.c
            conn.execute(select(c.body).where(c.chain == some.chain, c.seq == some.seq)).one()

    results: dict[str, dict[str, tuple[float, float] | None]] = {}
    planned: list[str] = []  # searches whose statements read the table or sort
    refs = {}
    for which in stages:
        built = build_indexes(engine, which)
        lines.append(f"{which}: indexes built and analysed in {built:.1f} s")
        ref = measure(reference, runs * 5)
        assert ref is not None
        refs[which] = ref[0]
        todo = cases(engine)
        tenth = page_before(engine, Filters(limit=50), 10, which == "before")
        todo["newest, page 10"] = Filters(limit=50, before=tenth)
        for label, filters in todo.items():
            if which == "before" and (filters.access_key_id or filters.types):
                continue  # 0002 had these in Python or through `types`: not this copy
            run = partial(query, engine, filters, which == "before", cap)
            results.setdefault(label, {})[which] = measure(run, runs)
            if which == "after" and (bad := plan_problems(engine, filters)):
                planned.append(f"{label}: {bad}")
    lines.append(
        "reference, one event by primary key: "
        + ", ".join(f"{which} {ms:.3f} ms" for which, ms in refs.items())
    )
    lines.append(f"{'query':24} {'before ms (x ref)':>26} {'after ms (x ref)':>24} {'slowest':>9}")
    for label, got in results.items():
        before = got.get("before")
        after = got.get("after")
        if "before" not in got:
            b = "not measured"
        elif before is None:
            b = f"> {cap * 1000:.0f} (stopped)"
        else:
            b = f"{before[0]:.1f} ({before[0] / refs['before']:.0f}x)"
        assert after is not None
        a = f"{after[0]:.2f} ({after[0] / refs['after']:.0f}x)"
        lines.append(f"{label:24} {b:>26} {a:>24} {after[1]:>9.2f}")
    worst = max(after[0] for got in results.values() if (after := got.get("after")))
    lines.append(f"slowest median after: {worst:.2f} ms (goal: under 50 ms)")
    lines.append(
        "plans after, as the store chose them: "
        + ("; ".join(planned) if planned else "every statement an index range, no sort")
    )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--before-cap", type=float, default=10.0)
    parser.add_argument("--after-only", action="store_true", help="skip revision 0002's search")
    args = parser.parse_args()
    out: list[str] = []
    stages = ("after",) if args.after_only else ("before", "after")
    for store in args.stores.split(","):
        if store == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                engine = open_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
                out += run_store("SQLite", engine, args.events, args.runs, args.before_cap, stages)
                engine.dispose()
        else:
            name = f"iamgate_bench_{os.getpid()}"
            with psycopg.connect(f"{args.postgres}/postgres", autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{name}"')
            try:
                engine = open_engine(f"{args.postgres}/{name}")
                out += run_store(
                    "PostgreSQL", engine, args.events, args.runs, args.before_cap, stages
                )
                engine.dispose()
            finally:
                with psycopg.connect(f"{args.postgres}/postgres", autocommit=True) as admin:
                    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        print("\n".join(out), flush=True)
        out = []
    return 0


if __name__ == "__main__":
    sys.exit(main())
