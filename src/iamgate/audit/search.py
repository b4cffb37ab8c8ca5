"""Reading the audit log back: search, export for a SIEM, and verification of the chains."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select

from iamgate.access.patterns import matches
from iamgate.audit.appender import COLUMNS, columns_of
from iamgate.audit.chain import Problem, StoredEvent, verify_chain
from iamgate.audit.events import EventType
from iamgate.store.tables import audit_events, issued_credentials


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
    before: str | None = None  # exclusive: the next page starts before the last time seen
    types: tuple[str, ...] = ()  # several event types at once; when given, instead of `type`
    access_key_id: str | None = None  # what one access key did (see `key_matches`)


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


def search(engine: Engine, filters: Filters) -> list[dict[str, Any]]:
    """Matching events, newest first; an API call carries its outcome when it has one."""
    c = audit_events.c
    query = select(audit_events)
    if filters.types:
        query = query.where(c.type.in_(filters.types))
    else:
        query = query.where(c.type == filters.type)
    key = filters.access_key_id
    issue = key_issues(engine, [key]).get(key) if key else None
    for column, value in (
        (c.principal, filters.principal),
        (c.account_id, filters.account_id),
        (c.aws_role, filters.aws_role),
        (c.service, filters.service),
        (c.decision, filters.decision),
    ):
        if value is not None:
            query = query.where(column == value)
    if filters.since:
        query = query.where(c.time >= filters.since)
    if filters.until:
        query = query.where(c.time <= filters.until)
    if filters.before:
        query = query.where(c.time < filters.before)
    query = query.order_by(c.time.desc())
    found: list[dict[str, Any]] = []
    with engine.connect() as conn:
        for row in conn.execute(query):
            if filters.action and not matches(filters.action, row.action or ""):
                continue
            event = json.loads(row.body)
            if key:
                matched = key_matches(event, key, issue)
                if matched is False:
                    continue
                if matched is None:
                    event["fields"] = {**event["fields"], "access_key_inferred": key}
            found.append(event)
            if len(found) >= filters.limit * 4 and not filters.status:
                break
        ids = [e["fields"].get("request_id") for e in found if e["fields"].get("request_id")]
        outcomes: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), 500):
            rows = conn.execute(
                select(audit_events.c.body).where(
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
            event["fields"] = {**event["fields"], **outcome, "outcome_recorded": True}
        elif event["fields"].get("decision") == "allowed":
            event["fields"] = {**event["fields"], "outcome_recorded": False}
        if filters.status is None or event["fields"].get("status") == filters.status:
            merged.append(event)
        if len(merged) >= filters.limit:
            break
    return merged


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
    with engine.connect() as conn:
        stored = [
            StoredEvent(
                row.chain,
                row.seq,
                row.prev_hash,
                row.hash,
                row.body,
                {name: getattr(row, name) for name in COLUMNS},
            )
            for row in conn.execute(select(audit_events))
        ]
    problems = verify_chain(stored, columns_of=columns_of)
    by_chain: dict[str, list[StoredEvent]] = {}
    for event in stored:
        by_chain.setdefault(event.chain, []).append(event)
    for chain, head in (anchored or {}).items():
        events = {e.seq: e for e in by_chain.get(chain, [])}
        present = events.get(int(head["seq"]))
        if present is None:
            problems.append(
                Problem(chain, int(head["seq"]), "deleted", "the anchored chain head is gone")
            )
        elif present.hash != head["hash"]:
            problems.append(
                Problem(chain, int(head["seq"]), "edited", "it differs from the anchored head")
            )
    return problems
