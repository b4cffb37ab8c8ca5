"""Access requests in the store, through the control plane's use cases, on SQLite and on the
machine's PostgreSQL server: the whole life of a request, its audit trail, the grants a
replica sees, and two replicas reviewing at the same instant (one transition, never two)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from postgres import fresh_database
from sqlalchemy import Engine, func, select

from iamgate.access.requests import Ask, EndedBy, State
from iamgate.audit.events import AuditEvent, EventType
from iamgate.config import Config, parse_config
from iamgate.control.errors import ControlError, Kind
from iamgate.control.requests import Requests
from iamgate.control.users import Actor
from iamgate.store.database import open_engine
from iamgate.store.requests import Grants
from iamgate.store.tables import access_grants
from iamgate.store.users import put_user

CONFIG = parse_config(
    """\
aws:
  accounts:
    - {name: prod-eu, id: "111111111111", labels: {env: prod, region: eu}}
    - {name: prod-us, id: "222222222222", labels: {env: prod, region: us}}
roles:
  - name: data-scientist
    allow: {accounts: {env: [prod]}, aws_roles: [ReadOnly], access_levels: [read, list]}
  - name: team-lead
  - name: security
  - {name: admin, administer: true}
  - name: prod-admin
    allow: {accounts: {env: [prod]}, aws_roles: [ReadOnly, Admin]}
    requestable:
      requesters: [data-scientist]
      stages: [{approve: 1, from: team-lead}, {approve: 1, from: security}]
      max_duration: 4h
  - name: pair-admin
    allow: {accounts: {env: [prod]}, aws_roles: [Admin]}
    requestable: {reviewers: [team-lead], stages: [{approve: 2, from: team-lead}]}
  - name: quick-admin
    allow: {accounts: {env: [prod]}, aws_roles: [Admin]}
    requestable: {reviewers: [team-lead], pending_lifetime: 1s, reason: optional}
"""
)
PEOPLE = {
    "dana": ["data-scientist"],
    "lee": ["team-lead"],
    "lou": ["team-lead"],
    "sec": ["security"],
    "root": ["admin"],
    "eve": [],
}


class Trail:
    """The audit sink: every event, in order."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self._lock = threading.Lock()

    def append(self, event: AuditEvent) -> None:
        with self._lock:
            self.events.append(event)

    def of(self, request_id: str) -> list[tuple[str, str | None, str]]:
        return [
            (str(e.type), e.principal, str(e.fields.get("state")))
            for e in self.events
            if e.fields.get("request_id") == request_id
        ]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
    else:
        with fresh_database() as fresh:
            yield fresh


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    engine = open_engine(url)
    for name, roles in PEOPLE.items():
        put_user(engine, name, roles=roles)
    yield engine
    engine.dispose()


def requests_on(
    engine: Engine,
    trail: Trail,
    config: Config = CONFIG,
    clock: Callable[[], datetime] | None = None,
) -> Requests:
    return Requests(config, engine, trail, clock=clock)


def ask(role: str = "prod-admin", **fields: object) -> Ask:
    return Ask(**({"role": role, "selector": {"env": ["prod"]}, "reason": "INC-1"} | fields))  # type: ignore[arg-type]


def test_a_request_lives_from_asking_to_dropping(engine: Engine) -> None:
    trail = Trail()
    requests = requests_on(engine, trail)
    grants = Grants(engine)
    request = requests.create(ask(), by=Actor("dana"))
    assert request.state is State.PENDING
    assert [v.request.id for v in requests.list(by=Actor("lee"), to_review=True)] == [request.id]
    assert requests.list(by=Actor("eve")) == []
    with pytest.raises(ControlError) as info:
        requests.show(request.id, by=Actor("eve"))
    assert info.value.kind is Kind.NOT_FOUND  # a request is not shown to outsiders

    after_lead = requests.review(request.id, approve=True, reason="ok", by=Actor("lee"))
    assert after_lead.state is State.PENDING
    grants.refresh()
    assert grants.of("dana") == ()
    approved = requests.review(request.id, approve=True, reason="fine", by=Actor("sec"))
    assert approved.state is State.APPROVED
    assert approved.approved_accounts == ("111111111111", "222222222222")
    grants.refresh()
    (grant,) = grants.of("dana")
    assert grant.role == "prod-admin" and grant.accounts == {"111111111111", "222222222222"}
    assert grant.ends_at - grant.starts_at == timedelta(hours=1)

    requests.sweep()
    assert requests.show(request.id, by=Actor("dana")).request.state is State.ACTIVE
    dropped = requests.drop(request.id, by=Actor("dana"), reason="done")
    assert (dropped.state, dropped.ended_by) == (State.ENDED, EndedBy.DROPPED)
    grants.refresh()
    assert grants.of("dana") == ()
    assert trail.of(request.id) == [
        ("request.created", "dana", "pending"),
        ("request.reviewed", "lee", "pending"),
        ("request.reviewed", "sec", "approved"),
        ("request.approved", "sec", "approved"),
        ("request.activated", "iamgate", "active"),
        ("request.ended", "dana", "ended"),
    ]
    approval = next(e for e in trail.events if e.type is EventType.REQUEST_APPROVED)
    assert approval.fields["reason"] == "fine"
    assert "every stage approved (1 of team-lead and 1 of security)" in approval.fields["rule"]


def test_self_review_and_reviewers_out_of_scope_are_refused_and_audited(engine: Engine) -> None:
    trail = Trail()
    requests = requests_on(engine, trail)
    put_user(engine, "dana", roles=["data-scientist", "team-lead"])
    request = requests.create(ask(), by=Actor("dana"))
    with pytest.raises(ControlError) as info:
        requests.review(request.id, approve=True, reason="me", by=Actor("dana"))
    assert info.value.kind is Kind.FORBIDDEN
    with pytest.raises(ControlError) as info:
        requests.review(request.id, approve=True, reason="me", by=Actor("eve"))
    assert info.value.kind is Kind.FORBIDDEN  # 403; the request stays hidden from eve
    refused = [e for e in trail.events if e.type is EventType.REQUEST_REFUSED]
    assert [(e.principal, e.fields["rule"]) for e in refused] == [
        ("dana", "the requester cannot review their own request"),
        ("eve", "not a reviewer of this request"),
    ]
    assert requests.show(request.id, by=Actor("dana")).request.state is State.PENDING


def test_any_deny_ends_it_and_an_administrator_revokes(engine: Engine) -> None:
    trail = Trail()
    requests = requests_on(engine, trail)
    denied = requests.create(ask(), by=Actor("dana"))
    requests.review(denied.id, approve=True, reason="ok", by=Actor("lee"))
    assert requests.review(denied.id, approve=False, reason="no", by=Actor("sec")).state is (
        State.DENIED
    )
    granted = requests.create(ask(accounts=("prod-us",), selector=None), by=Actor("dana"))
    requests.review(granted.id, approve=True, reason="ok", by=Actor("lee"))
    requests.review(granted.id, approve=True, reason="ok", by=Actor("sec"))
    with pytest.raises(ControlError) as info:
        requests.drop(granted.id, by=Actor("root"))
    assert info.value.kind is Kind.FORBIDDEN
    revoked = requests.revoke(granted.id, by=Actor("root"), reason="incident over")
    assert (revoked.state, revoked.ended_by) == (State.ENDED, EndedBy.REVOKED)
    with pytest.raises(ControlError) as info:
        requests.revoke(granted.id, by=Actor("root"))
    assert info.value.kind is Kind.CONFLICT
    ended = [e for e in trail.events if e.type is EventType.REQUEST_ENDED]
    assert ended[-1].fields["rule"] == "an administrator may revoke any grant"


def test_a_pending_request_expires_on_its_own_lifetime(engine: Engine) -> None:
    trail = Trail()
    now = [datetime.now(UTC)]
    requests = requests_on(engine, trail, clock=lambda: now[0])
    request = requests.create(ask("quick-admin", reason=""), by=Actor("dana"))
    now[0] += timedelta(seconds=2)
    assert requests.sweep() == 1
    assert requests.show(request.id, by=Actor("dana")).request.state is State.EXPIRED
    assert requests.sweep() == 0
    with pytest.raises(ControlError) as info:
        requests.review(request.id, approve=True, reason="late", by=Actor("lee"))
    assert info.value.kind is Kind.CONFLICT
    assert trail.of(request.id)[-1] == ("request.expired", "iamgate", "expired")


def _at_once(parties: int) -> Callable[[], Callable[[], datetime]]:
    """Clocks whose first reading waits for every party's: reviews read the same request,
    then decide and write together."""
    barrier = threading.Barrier(parties, timeout=20)

    def clock() -> Callable[[], datetime]:
        first = [True]

        def now() -> datetime:
            if first[0]:
                first[0] = False
                barrier.wait()
            return datetime.now(UTC)

        return now

    return clock


@pytest.mark.parametrize("role", ["quick-admin", "pair-admin"])
def test_two_replicas_reviewing_at_once_make_one_transition(url: str, role: str) -> None:
    """quick-admin: either approval approves it, so one wins and the other is told it is
    approved; pair-admin: both are needed, so the loser decides again and approves."""
    engines = [open_engine(url) for _ in range(2)]  # two replicas, each with its own pool
    try:
        for name, roles in PEOPLE.items():
            put_user(engines[0], name, roles=roles)
        trail = Trail()
        request = requests_on(engines[0], trail).create(ask(role, reason="now"), by=Actor("dana"))
        clock = _at_once(2)
        outcomes: dict[str, object] = {}

        def review(engine: Engine, who: str) -> None:
            try:
                outcomes[who] = (
                    requests_on(engine, trail, clock=clock())
                    .review(request.id, approve=True, reason="ok", by=Actor(who))
                    .state
                )
            except ControlError as exc:
                outcomes[who] = exc.code

        threads = [
            threading.Thread(target=review, args=(e, who))
            for e, who in zip(engines, ("lee", "lou"), strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        approvals = [e for e in trail.events if e.type is EventType.REQUEST_APPROVED]
        assert len(approvals) == 1
        with engines[1].connect() as conn:
            assert conn.execute(select(func.count()).select_from(access_grants)).scalar() == 1
        if role == "quick-admin":
            assert sorted(map(str, outcomes.values())) == ["RequestConflict", "approved"]
        else:
            assert sorted(map(str, outcomes.values())) == ["approved", "pending"]
    finally:
        for engine in engines:
            engine.dispose()
