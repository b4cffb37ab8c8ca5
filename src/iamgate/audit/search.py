"""Reading the audit log back: search, export for a SIEM, and verification of the chains.

Search pages newest first on (time, chain, seq): every event of every chain has one such
key, and the trail is read backwards from the key where the last page ended (`Page.next`,
passed back as `before`), never sorted: each filter is an index that leads with the event
type and that value, then that order (`iamgate.store.tables`). So a page costs the same at
a thousand events as at millions, and paging yields each event once, even among events of
several chains stamped with the same microsecond.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    FromClause,
    Select,
    and_,
    bindparam,
    func,
    or_,
    select,
    text,
    tuple_,
)

from iamgate.access.patterns import matches
from iamgate.audit.appender import COLUMNS, access_key_of, columns_of
from iamgate.audit.chain import Problem, StoredEvent, verify_ordered
from iamgate.audit.events import EventType
from iamgate.store.tables import audit_events, issued_credentials

Key = tuple[str, str, int]  # (time, chain, seq): where an event is in the search order
CURSOR_MARK = "~"  # in no time and no chain name (hex)
MAX_BATCH = 2000  # keys read from one index range at a time
MAX_ACTION_STREAMS = 32  # an action glob matching more actions is one filtered range
VERIFY_BATCH = 1000  # rows `verify` holds at a time


@dataclass(frozen=True, slots=True)
class Filters:
    principal: str | None = None
    account_id: str | None = None
    aws_role: str | None = None
    service: str | None = None
    action: str | None = None  # IAM glob, e.g. rds:Delete*
    decision: str | None = None
    status: int | None = None
    since: str | None = None  # ISO 8601, UTC
    until: str | None = None
    type: str = str(EventType.AWS_CALL)
    limit: int = 100
    # Exclusive: `Page.next` of the page before (each event exactly once), or a time (the
    # events strictly before it; events of other chains at the last time shown are skipped).
    before: str | None = None
    types: tuple[str, ...] = ()  # several event types at once; when given, instead of `type`
    access_key_id: str | None = None  # what one access key did (see `key_matches`)
    # Calls of CI jobs whose token said so, e.g. (("repository", "acme/infra"),): the
    # claims of `fields.job` (see `job_matches`), each equal to its value.
    job: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Page:
    events: list[dict[str, Any]]
    next: str | None  # pass as `Filters.before` for the page after; None after the last


@dataclass(frozen=True, slots=True)
class KeyIssue:
    """What the store knows of a gateway access key: to whom, for what, and when."""

    access_key_id: str
    principal: str
    account_id: str
    aws_role: str
    issued_at: str
    expires_at: str
    login_session: str | None


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def key_issues(engine: Engine, access_key_ids: Iterable[str]) -> dict[str, KeyIssue]:
    """The gateway access keys among these that this gateway issued, by access key id."""
    wanted = {k[4:]: k for k in access_key_ids if k.startswith("ASIA") and len(k) == 20}
    if not wanted:
        return {}
    c = issued_credentials.c
    with engine.connect() as conn:
        rows = conn.execute(select(issued_credentials).where(c.session_id.in_(list(wanted))))
        return {
            wanted[row.session_id]: KeyIssue(
                wanted[row.session_id],
                row.principal,
                row.account_id,
                row.aws_role,
                _iso(row.issued_at),
                _iso(row.expires_at),
                row.login_session,
            )
            for row in rows
        }


def key_matches(event: dict[str, Any], key: str, issue: KeyIssue | None) -> bool | None:
    """Whether an event is about this access key: True when the event names the key; None
    when it is an API call that names no key but was made by the key's holder, for the
    key's account and IAM role, within its lifetime (the key's, as far as the log tells);
    False otherwise."""
    fields = event.get("fields", {})
    named = fields.get("access_key_id")
    if named:
        return bool(named == key)
    if issue is None or event.get("type") != EventType.AWS_CALL:
        return False
    time = str(event.get("time", ""))
    if (
        event.get("principal") == issue.principal
        and fields.get("account_id") == issue.account_id
        and fields.get("aws_role") == issue.aws_role
        and issue.issued_at <= time <= issue.expires_at
    ):
        return None
    return False


def job_matches(event: dict[str, Any], job: tuple[tuple[str, str], ...]) -> bool:
    """Whether the event's job (a bot's call, or a web identity exchange) has these claims."""
    claims = event.get("fields", {}).get("job")
    return isinstance(claims, dict) and all(claims.get(k) == v for k, v in job)


def _job_needles(job: tuple[tuple[str, str], ...]) -> list[ColumnElement[bool]]:
    """Each claim as its stored body spells it (`"run_id":"42"`, canonical JSON): a LIKE no
    index serves, read along the other filters' range; `job_matches` then makes it exact."""
    body = audit_events.c.body
    return [
        body.like(
            "%" + _like_escaped(orjson.dumps(k).decode() + ":" + orjson.dumps(v).decode()) + "%",
            escape="\\",
        )
        for k, v in job
    ]


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search(engine: Engine, filters: Filters) -> list[dict[str, Any]]:
    """Matching events, newest first; an API call carries its outcome when it has one."""
    return search_page(engine, filters).events


def search_page(engine: Engine, filters: Filters) -> Page:
    """Matching events, newest first, and the cursor of the page after them.

    Each way an event can match is a stream of keys read backwards from one index range
    (`_streams`); the streams are merged by key, and only the page's bodies are read."""
    key = filters.access_key_id
    issue = key_issues(engine, [key]).get(key) if key else None
    bound = parse_before(filters.before) if filters.before else None
    found: list[tuple[Key, dict[str, Any]]] = []
    with engine.connect() as conn:
        ways = _streams(conn, filters, issue)
        # Together the streams' first batches hold a page, or little more; a stream that
        # runs out before the page is full reads on in growing batches.
        batch = min(max(filters.limit // max(len(ways), 1) + 1, 16), MAX_BATCH)
        streams = [_keys(conn, way, filters, bound, batch) for way in ways]
        merged = _distinct(heapq.merge(*streams, reverse=True))
        while len(found) < filters.limit:
            keys = list(itertools.islice(merged, filters.limit - len(found)))
            if not keys:
                break
            for place, event in zip(keys, _with_outcomes(conn, _bodies(conn, keys)), strict=True):
                if filters.job and not job_matches(event, filters.job):
                    continue
                if key:
                    matched = key_matches(event, key, issue)
                    if matched is False:
                        continue
                    if matched is None:
                        event["fields"] = {**event["fields"], "access_key_inferred": key}
                if filters.status is None or event["fields"].get("status") == filters.status:
                    found.append((place, event))
    after = cursor_of(found[-1][0]) if len(found) == filters.limit and found else None
    return Page([event for _, event in found], after)


def cursor_of(key: Key) -> str:
    """The `before` that continues after the event at `key`: its time, chain and number."""
    time, chain, seq = key
    return f"{time}{CURSOR_MARK}{chain}{CURSOR_MARK}{seq}"


def parse_before(before: str) -> Key | str:
    """A cursor made by `cursor_of` as its key; anything else is a time (the events strictly
    before it, as `before` always meant)."""
    time, mark, rest = before.partition(CURSOR_MARK)
    chain, _, seq = rest.rpartition(CURSOR_MARK)
    if mark and chain and seq.isdigit():
        return (time, chain, int(seq))
    return before


def is_cursor(before: str) -> bool:
    """Whether `before` is a cursor from `Page.next` rather than a time."""
    return not isinstance(parse_before(before), str)


@dataclass(frozen=True, slots=True)
class _Stream:
    """Keys of one kind of match: `where` on `source`, ordered by `order` (time, chain,
    seq), which an index serves after the equalities of `where`."""

    source: FromClause
    where: tuple[ColumnElement[bool], ...]
    order: tuple[ColumnElement[Any], ColumnElement[Any], ColumnElement[Any]]


def _streams(conn: Connection, filters: Filters, issue: KeyIssue | None) -> list[_Stream]:
    t = audit_events.c
    common = [
        column == value
        for column, value in (
            (t.principal, filters.principal),
            (t.account_id, filters.account_id),
            (t.aws_role, filters.aws_role),
            (t.service, filters.service),
            (t.decision, filters.decision),
        )
        if value is not None
    ] + _job_needles(filters.job)
    streams: list[_Stream] = []
    for kind in filters.types or (filters.type,):
        for action, by_key, who in itertools.product(
            _action_choices(conn, kind, filters.action),
            _key_choices(kind, filters.access_key_id, issue),
            _job_holders(conn, kind, filters),
        ):
            where = (t.type == kind, *common, *action, *by_key, *who)
            if filters.status is None:
                streams.append(_Stream(audit_events, where, (t.time, t.chain, t.seq)))
                continue
            # A refused call holds its own status; a forwarded one's is its outcome's.
            streams.append(_Stream(audit_events, (*where, t.status == filters.status), ORDER))
            if kind == EventType.AWS_CALL:
                streams.append(_outcomes_of_status(filters.status, where))
    return streams


ORDER = (audit_events.c.time, audit_events.c.chain, audit_events.c.seq)


def _outcomes_of_status(status: int, call: tuple[ColumnElement[bool], ...]) -> _Stream:
    """Calls whose outcome has `status`, in the calls' order: the outcomes carry their
    call's place. The call's own row is read only when other filters ask about it."""
    o = _OUTCOMES.c
    where = (
        o.type == str(EventType.AWS_CALL_OUTCOME),
        o.status == status,
        o.call_time.is_not(None),
    )
    order = (o.call_time, o.call_chain, o.call_seq)
    if len(call) == 1:  # the type alone: every outcome is of a call
        return _Stream(_OUTCOMES, where, order)
    t = audit_events.c
    joined = _OUTCOMES.join(audit_events, (t.chain == o.call_chain) & (t.seq == o.call_seq))
    return _Stream(joined, (*where, *call), order)


_OUTCOMES = audit_events.alias("outcome")


def _action_choices(
    conn: Connection, kind: str, pattern: str | None
) -> list[tuple[ColumnElement[bool], ...]]:
    """An action glob as equalities, one per action in the trail it matches (each an index
    range in time order), found by a skip scan of the range of its literal prefix."""
    t = audit_events.c
    if pattern is None or set(pattern) <= {"*"}:
        return [()]  # no filter; "*" matches any action, and none
    actions = [a for a in _actions_from(conn, kind, _prefix_range(pattern)) if matches(pattern, a)]
    if len(actions) > MAX_ACTION_STREAMS:
        return [(t.action.in_(actions),)]
    return [(t.action == action,) for action in actions]


def _prefix_range(pattern: str) -> tuple[str, str] | None:
    """The range of actions that can match: IAM service prefixes are lower case (as
    `iamgate.aws.operations` records them), the rest of an action is matched in any case,
    so the range is the service part of the literal prefix, or the whole prefix while it
    has no letter after the colon."""
    literal = re.split(r"[*?]", pattern, maxsplit=1)[0]
    service, colon, _ = literal.partition(":")
    prefix = (service + colon).lower()
    if not prefix or not prefix.isascii():
        return None
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _actions_from(conn: Connection, kind: str, bounds: tuple[str, str] | None) -> list[str]:
    """The distinct actions of this type of event within `bounds`, one index probe each."""
    return _distinct_from(conn, "action", kind, bounds)


def _distinct_from(
    conn: Connection, column: str, kind: str, bounds: tuple[str, str] | None
) -> list[str]:
    """The distinct values of `column` (action or principal, each led by the type in an
    index) among events of this type within `bounds`, one index probe each."""
    assert column in ("action", "principal")
    within = f"AND {column} >= :low AND {column} < :high" if bounds else ""
    after = f"AND {column} < :high" if bounds else ""
    query = text(
        "WITH RECURSIVE a(v) AS ("  # noqa: S608 (constant fragments only)
        f"SELECT (SELECT {column} FROM audit_events WHERE type = :kind "
        f"AND {column} IS NOT NULL {within} ORDER BY {column} LIMIT 1) "
        f"UNION ALL SELECT (SELECT {column} FROM audit_events WHERE type = :kind "
        f"AND {column} > a.v {after} ORDER BY {column} LIMIT 1) "
        "FROM a WHERE a.v IS NOT NULL) "
        "SELECT v FROM a WHERE v IS NOT NULL"
    )
    values: dict[str, str] = {"kind": kind}
    if bounds:
        values |= {"low": bounds[0], "high": bounds[1]}
    return [row.v for row in conn.execute(query, values)]


BOTS = ("bot:", "bot;")  # the range of bot principals: `bot:` and what follows it
EXCHANGE = "sts:AssumeRoleWithWebIdentity"


def _job_holders(
    conn: Connection, kind: str, filters: Filters
) -> list[tuple[ColumnElement[bool], ...]]:
    """Who can hold a job's claims: each bot of the trail (one index range each, found by a
    skip scan), and a web identity exchange refused before it had a bot. A claim is read
    from the body, which no index serves: so only these events are read for it."""
    t = audit_events.c
    if not filters.job or filters.principal is not None:
        return [()]
    bots = _distinct_from(conn, "principal", kind, BOTS)
    return [(t.principal == bot,) for bot in bots] + [(t.principal.is_(None), t.action == EXCHANGE)]


def _key_choices(
    kind: str, key: str | None, issue: KeyIssue | None
) -> list[tuple[ColumnElement[bool], ...]]:
    """What one access key did: the events that name it; and, for a key this gateway
    issued, the calls of its holder for its account and role within its lifetime that name
    no key (recorded before calls named theirs; see `key_matches`)."""
    t = audit_events.c
    if key is None:
        return [()]
    choices: list[tuple[ColumnElement[bool], ...]] = [(t.access_key_id == key,)]
    if issue is not None and kind == EventType.AWS_CALL:
        choices.append(
            (
                t.principal == issue.principal,
                t.account_id == issue.account_id,
                t.aws_role == issue.aws_role,
                t.access_key_id.is_(None),
                t.time >= issue.issued_at,
                t.time <= issue.expires_at,
            )
        )
    return choices


def _keys(
    conn: Connection, stream: _Stream, filters: Filters, bound: Key | str | None, batch: int
) -> Iterator[Key]:
    """The stream's keys, newest first, read a batch at a time from where the last ended."""
    time, chain, seq = stream.order
    where = list(stream.where)
    if filters.since:
        where.append(time >= filters.since)
    if filters.until:
        where.append(time <= filters.until)
    while True:
        query = select(time, chain, seq).select_from(stream.source).where(*where)
        if isinstance(bound, str):
            query = query.where(time < bound)
        elif bound is not None:
            # The range is on time; equal times are told apart by chain and number.
            query = query.where(time <= bound[0], tuple_(time, chain, seq) < tuple_(*bound))
        rows = conn.execute(
            query.order_by(time.desc(), chain.desc(), seq.desc()).limit(batch)
        ).all()
        for row in rows:
            yield (row[0], row[1], int(row[2]))
        if len(rows) < batch:
            return
        bound = (rows[-1][0], rows[-1][1], int(rows[-1][2]))
        batch = min(batch * 4, MAX_BATCH)


def _distinct(keys: Iterable[Key]) -> Iterator[Key]:
    """One of each key: two streams may both hold an event (a refused call with a status
    and, oddly, an outcome of the same status)."""
    last: Key | None = None
    for key in keys:
        if key != last:
            yield key
        last = key


def _bodies(conn: Connection, keys: list[Key]) -> list[dict[str, Any]]:
    """The events at `keys`, in that order: by primary key, a chain at a time."""
    by_chain: dict[str, list[int]] = {}
    for _, chain, seq in keys:
        by_chain.setdefault(chain, []).append(seq)
    values: dict[str, Any] = {}
    for i, (chain, seqs) in enumerate(by_chain.items()):
        values |= {f"chain{i}": chain, f"seqs{i}": seqs}
    rows = conn.execute(_by_keys(len(by_chain)), values)
    bodies = {(row.chain, int(row.seq)): row.body for row in rows}
    return [orjson.loads(bodies[(chain, seq)]) for _, chain, seq in keys]


@functools.lru_cache(maxsize=64)
def _by_keys(chains: int) -> Select[Any]:
    """Rows by (chain, seq) for this many chains: built once, values bound on execution."""
    t = audit_events.c
    return select(t.chain, t.seq, t.body).where(
        or_(
            *(
                and_(
                    t.chain == bindparam(f"chain{i}"),
                    t.seq.in_(bindparam(f"seqs{i}", expanding=True)),
                )
                for i in range(chains)
            )
        )
    )


_OUTCOMES_OF = select(audit_events.c.body).where(
    audit_events.c.type == str(EventType.AWS_CALL_OUTCOME),
    audit_events.c.request_id.in_(bindparam("ids", expanding=True)),
)


def _with_outcomes(conn: Connection, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each API call with what its outcome says, or marked as having none yet."""
    ids = [e["fields"]["request_id"] for e in events if e.get("fields", {}).get("request_id")]
    outcomes: dict[str, dict[str, Any]] = {}
    if ids:
        for (body,) in conn.execute(_OUTCOMES_OF, {"ids": ids}):
            outcome = orjson.loads(body)["fields"]
            outcomes[outcome["request_id"]] = outcome
    for event in events:
        outcome = outcomes.get(event["fields"].get("request_id", ""))
        if outcome is not None:
            event["fields"] = {**event["fields"], **outcome, "outcome_recorded": True}
        elif event["fields"].get("decision") == "allowed":
            event["fields"] = {**event["fields"], "outcome_recorded": False}
    return events


def export(engine: Engine, since: str | None = None) -> Iterator[dict[str, Any]]:
    """Every event with its place in its chain, in chain order: for a SIEM, as JSON lines."""
    query = select(audit_events).order_by(audit_events.c.chain, audit_events.c.seq)
    if since:
        query = query.where(audit_events.c.time >= since)
    with engine.connect() as conn:
        for row in conn.execution_options(stream_results=True).execute(query):
            yield {
                "chain": row.chain,
                "seq": row.seq,
                "prev_hash": row.prev_hash,
                "hash": row.hash,
                **json.loads(row.body),
            }


def heads(engine: Engine) -> dict[str, dict[str, Any]]:
    """The last event of each chain: anchor it off-host to catch removal from the end."""
    c = audit_events.c
    last = select(c.chain, func.max(c.seq).label("seq")).group_by(c.chain).subquery()
    query = select(c.chain, c.seq, c.hash).join(
        last, (c.chain == last.c.chain) & (c.seq == last.c.seq)
    )
    with engine.connect() as conn:
        return {row.chain: {"seq": row.seq, "hash": row.hash} for row in conn.execute(query)}


def verify(engine: Engine, anchored: dict[str, dict[str, Any]] | None = None) -> list[Problem]:
    """Problems in the stored chains, read a batch at a time in chain order (so a trail of
    any size is verified in constant memory), and in the anchored heads."""
    c = audit_events.c
    query = select(c.chain, c.seq, c.prev_hash, c.hash, c.body, *(c[n] for n in _CHECKED)).order_by(
        c.chain, c.seq
    )
    with engine.connect() as conn:
        rows = conn.execution_options(stream_results=True, yield_per=VERIFY_BATCH).execute(query)
        stored = (
            StoredEvent(
                row.chain,
                row.seq,
                row.prev_hash,
                row.hash,
                row.body,
                {name: getattr(row, name) for name in _CHECKED},
            )
            for row in rows
        )
        problems = list(verify_ordered(stored, columns_of=_checked_columns_of))
        for chain, head in (anchored or {}).items():
            seq = int(head["seq"])
            present = conn.execute(
                select(c.hash).where(c.chain == chain, c.seq == seq)
            ).scalar_one_or_none()
            if present is None:
                problems.append(Problem(chain, seq, "deleted", "the anchored chain head is gone"))
            elif present != head["hash"]:
                problems.append(Problem(chain, seq, "edited", "it differs from the anchored head"))
    return problems


_CHECKED = (*COLUMNS, "access_key_id")  # every column derived from the body alone


def _checked_columns_of(body: str) -> dict[str, Any]:
    return {**columns_of(body), "access_key_id": access_key_of(body)}
