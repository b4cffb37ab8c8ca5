"""One-time join tokens in the store, through the control plane's use case, on SQLite and on
the machine's PostgreSQL server: a token is redeemed once for its bot's session, every
refusal names its reason in the trail, the token is never in it, and 20 redemptions at the
same instant on two replicas make exactly one session."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from postgres import fresh_database
from sqlalchemy import Engine, func, select

from iamgate.audit.events import AuditEvent, EventType
from iamgate.config import parse_config
from iamgate.control.errors import ControlError
from iamgate.control.joins import Joins
from iamgate.control.logins import Client, RateLimiter
from iamgate.control.users import Actor
from iamgate.store.database import open_engine
from iamgate.store.login_sessions import (
    LOGIN_TOKEN_PREFIX,
    create_join_token,
    create_login_session,
    open_login_session,
)
from iamgate.store.revocations import revoke
from iamgate.store.tables import login_sessions

ESTATE = """\
aws:
  accounts: [{name: acme-ci, id: "222222222222"}]
roles:
  - {name: ci-runner, allow: {accounts: {name: [acme-ci]}, aws_roles: [CIRunner]}}
bots:
  - {name: backup, roles: [ci-runner]}
"""
CONFIG = parse_config(ESTATE + "  - {name: other, roles: []}\n")
WITHOUT_OTHER = parse_config(ESTATE)
MACHINE = Client("127.0.0.1", "join-test")


class Trail:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self._lock = threading.Lock()

    def append(self, event: AuditEvent) -> None:
        with self._lock:
            self.events.append(event)

    def of(self, kind: EventType) -> list[AuditEvent]:
        return [e for e in self.events if e.type is kind]


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
    yield engine
    engine.dispose()


def refusal(joins: Joins, token: str) -> str:
    with pytest.raises(ControlError) as refused:
        joins.redeem(token, MACHINE)
    return refused.value.code


def test_a_token_is_redeemed_once_for_its_bots_session(engine: Engine) -> None:
    trail = Trail()
    joins = Joins(CONFIG, engine, trail)
    made = joins.make_token("backup", timedelta(minutes=30), by=Actor("root"))
    assert made.token.startswith("igjoin1.")
    joined = joins.redeem(made.token, MACHINE)
    assert joined.principal == "bot:backup"
    session = open_login_session(engine, joined.token, datetime.now(UTC))
    assert session is not None and session.user == "bot:backup" and session.kind == "join"
    assert refusal(joins, made.token) == "InvalidToken"  # once only
    # the token is not a session, whatever prefix it is shown with
    _, token_id, secret = made.token.split(".")
    as_login = f"{LOGIN_TOKEN_PREFIX}.{token_id}.{secret}"
    assert open_login_session(engine, as_login, datetime.now(UTC)) is None
    [created] = trail.of(EventType.JOIN_TOKEN_CREATED)
    assert created.principal == "root" and created.fields["bot"] == "backup"
    [succeeded] = trail.of(EventType.JOIN_SUCCEEDED)
    assert succeeded.principal == "bot:backup"
    assert succeeded.fields["login_session"] == joined.session_id
    [refused] = trail.of(EventType.JOIN_REFUSED)
    assert refused.fields == {"reason": "used", "join_token": token_id}
    for event in trail.events:  # neither secret is ever in the trail
        assert secret not in repr(event) and joined.token.split(".")[2] not in repr(event)


def test_every_refusal_names_its_reason(engine: Engine) -> None:
    trail = Trail()
    joins = Joins(CONFIG, engine, trail)
    expired, _, _ = create_join_token(engine, "bot:backup", ttl=timedelta(0), created_by="root")
    assert refusal(joins, expired) == "ExpiredToken"
    revoked = joins.make_token("backup", timedelta(minutes=5), by=Actor("root")).token
    revoke(engine, "user", "bot:backup", by="root")  # the bot's revocation ends its tokens
    assert refusal(joins, revoked) == "InvalidToken"
    gone = joins.make_token("other", timedelta(minutes=5), by=Actor("root")).token
    assert refusal(Joins(WITHOUT_OTHER, engine, trail), gone) == "InvalidToken"
    made = joins.make_token("backup", timedelta(minutes=5), by=Actor("root")).token
    assert refusal(joins, made[:-2] + "xx") == "InvalidToken"  # a wrong secret
    assert refusal(joins, "igjoin1.nope.nope") == "InvalidToken"
    assert refusal(joins, "anything") == "InvalidToken"
    reasons = [e.fields["reason"] for e in trail.of(EventType.JOIN_REFUSED)]
    assert reasons == ["expired", "revoked", "no-such-bot", "unknown", "unknown", "unknown"]
    assert trail.of(EventType.JOIN_SUCCEEDED) == []
    with pytest.raises(ControlError) as unknown_bot:
        joins.make_token("nobody", timedelta(minutes=5), by=Actor("root"))
    assert unknown_bot.value.code == "NoSuchBot"
    with pytest.raises(ControlError) as too_long:
        joins.make_token("backup", timedelta(days=8), by=Actor("root"))
    assert too_long.value.code == "InvalidTtl"


def test_twenty_redemptions_at_once_on_two_replicas_make_one_session(url: str) -> None:
    engines = [open_engine(url) for _ in range(2)]  # two replicas, each with its own pool
    try:
        trail = Trail()
        replicas = [Joins(CONFIG, e, trail) for e in engines]
        token = replicas[0].make_token("backup", timedelta(minutes=5), by=Actor("root")).token
        start = threading.Barrier(20)
        outcomes: list[str] = []
        lock = threading.Lock()

        def redeem(joins: Joins) -> None:
            start.wait()
            try:
                joins.redeem(token, MACHINE)
                outcome = "joined"
            except ControlError as exc:
                outcome = exc.code
            with lock:
                outcomes.append(outcome)

        threads = [threading.Thread(target=redeem, args=(replicas[i % 2],)) for i in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sorted(outcomes) == ["InvalidToken"] * 19 + ["joined"]
        assert len(trail.of(EventType.JOIN_SUCCEEDED)) == 1
        assert [e.fields["reason"] for e in trail.of(EventType.JOIN_REFUSED)] == ["used"] * 19
        with engines[1].connect() as conn:
            sessions = conn.execute(
                select(func.count())
                .select_from(login_sessions)
                .where(login_sessions.c.kind == "join")
            ).scalar()
        assert sessions == 1
    finally:
        for engine in engines:
            engine.dispose()


def test_a_joined_session_is_renewed_once_and_a_persons_never(engine: Engine) -> None:
    trail = Trail()
    joins = Joins(CONFIG, engine, trail)
    made = joins.make_token("backup", timedelta(minutes=30), by=Actor("root"))
    joined = joins.redeem(made.token, MACHINE)
    now = datetime.now(UTC)
    session = open_login_session(engine, joined.token, now)
    assert session is not None
    renewed = joins.renew(session, MACHINE)
    assert renewed.principal == "bot:backup" and renewed.session_id != joined.session_id
    assert renewed.expires_at > joined.expires_at
    assert open_login_session(engine, joined.token, datetime.now(UTC)) is None  # the old one
    fresh = open_login_session(engine, renewed.token, datetime.now(UTC))
    assert fresh is not None and fresh.kind == "join"
    with pytest.raises(ControlError) as again:
        joins.renew(session, MACHINE)  # the old session, a second time
    assert again.value.code == "Unauthorized"
    person, _, _ = create_login_session(
        engine, "dana", ttl=timedelta(hours=1), source_ip=None, user_agent=None
    )
    held = open_login_session(engine, person, datetime.now(UTC))
    assert held is not None
    with pytest.raises(ControlError) as not_a_machine:
        joins.renew(held, MACHINE)
    assert not_a_machine.value.code == "NotAJoinedSession"
    revoke(engine, "user", "bot:backup", by="root")
    with pytest.raises(ControlError):
        joins.renew(fresh, MACHINE)  # a revoked bot's session is not renewed
    [renewal] = [e for e in trail.of(EventType.JOIN_SUCCEEDED) if e.fields["via"] == "renewal"]
    assert renewal.fields == {
        "login_session": renewed.session_id,
        "via": "renewal",
        "renewed": joined.session_id,
    }


def test_a_guesser_is_told_to_wait_and_another_address_is_not(engine: Engine) -> None:
    """Joining is unauthenticated: past its failures an address gets 429 with the seconds
    to wait, before any lookup (an AWS join: before any call to STS), audited as throttled;
    a machine on another address joins meanwhile."""
    trail = Trail()
    joins = Joins(CONFIG, engine, trail, failures=RateLimiter(limit=3))
    guesser = Client("192.0.2.66", "guesser")
    for guess in ("igjoin1.a.b", "igjoin1.c.d", "igjoin1.e.f"):
        with pytest.raises(ControlError) as refused:
            joins.redeem(guess, guesser)
        assert refused.value.code == "InvalidToken"
    made = joins.make_token("backup", timedelta(minutes=5), by=Actor("root")).token
    with pytest.raises(ControlError) as waiting:
        joins.redeem(made, guesser)  # even a good token: the address must wait
    assert (waiting.value.code, waiting.value.kind.value) == ("Throttled", "throttled")
    assert waiting.value.retry_after is not None and waiting.value.retry_after >= 1
    with pytest.raises(ControlError) as aws:
        joins.join_aws("backup", {}, "", guesser)
    assert aws.value.code == "Throttled"
    assert joins.redeem(made, MACHINE).principal == "bot:backup"  # the token was not spent
    reasons = [e.fields["reason"] for e in trail.of(EventType.JOIN_REFUSED)]
    assert reasons == ["unknown"] * 3 + ["throttled"] * 2
