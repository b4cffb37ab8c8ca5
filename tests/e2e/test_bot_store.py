"""Bots an administrator adds are stored, with their roles, as users are: every replica's
`Directory` reads them; removing one ends what its jobs hold; what a bot's jobs were issued
is shown as its last exchange and its live credentials (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from postgres import fresh_database
from sqlalchemy import Engine

from iamgate.audit.appender import DirectAuditLog
from iamgate.config import parse_config
from iamgate.control.bots import Bots
from iamgate.control.errors import ControlError
from iamgate.control.users import Actor
from iamgate.identity.credentials import Claims
from iamgate.store.database import open_engine
from iamgate.store.directory import Directory
from iamgate.store.issued_credentials import record_issued
from iamgate.store.login_sessions import JOIN_SESSION_KIND, create_login_session
from iamgate.store.revocations import revoke

CONFIG = parse_config(
    """
aws:
  accounts:
    - {name: ci, id: "222222222222"}
roles:
  - name: ci-runner
    allow: {accounts: {name: [ci]}, aws_roles: [CIRunner]}
  - name: reader
    allow: {accounts: {name: [ci]}, aws_roles: [ReadOnly]}
bots:
  - {name: from-config, roles: [reader]}
oidc:
  issuers:
    - {url: "https://token.actions.githubusercontent.com", audience: https://iamgate.example}
  bindings:
    - {name: deploys, bot: deployer, claims: {repository: acme/infra}}
"""
)
ADMIN = Actor("root")


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


@pytest.fixture
def bots(engine: Engine) -> Iterator[Bots]:
    log = DirectAuditLog(engine)
    yield Bots(CONFIG, engine, log)
    log.close()


def issued(session_id: str, bot: str, *, ago: timedelta, ttl: timedelta) -> Claims:
    now = datetime.now(UTC)
    return Claims(
        session_id=session_id,
        principal=f"bot:{bot}",
        kind="bot",
        account_id="222222222222",
        aws_role="CIRunner",
        gateway_roles=("ci-runner",),
        issued_at=now - ago,
        expires_at=now - ago + ttl,
        binding="deploys",
    )


def test_a_stored_bot_is_in_every_directory_with_its_roles(bots: Bots, engine: Engine) -> None:
    directory = Directory(engine)
    directory.refresh()
    assert directory.bot_roles("deployer") is None
    added = bots.add("deployer", ["ci-runner"], by=ADMIN, description="infra deploys")
    assert added.source == "store" and added.roles == ("ci-runner",)
    assert [b.name for b in added.bindings] == ["deploys"]  # the configuration's binding
    directory.refresh()
    assert directory.bot_roles("deployer") == ("ci-runner",)
    bots.set_roles("deployer", ["ci-runner", "reader"], by=ADMIN)
    directory.refresh()
    assert directory.bot_roles("deployer") == ("ci-runner", "reader")
    listed = {b.name: b for b in bots.bots()}
    assert listed["from-config"].source == "config" and listed["from-config"].roles == ("reader",)
    assert listed["deployer"].description == "infra deploys"
    bots.remove("deployer", by=ADMIN)
    directory.refresh()
    assert directory.bot_roles("deployer") is None
    gone = issued("A" * 16, "deployer", ago=timedelta(minutes=1), ttl=timedelta(hours=1))
    assert directory.revoked(gone)  # what it held before it went, too


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda b: b.add("deployer", ["ci-runner"], by=ADMIN), "BotExists"),
        (lambda b: b.add("from-config", [], by=ADMIN), "BootstrapBot"),
        (lambda b: b.add("Bad Name", [], by=ADMIN), "InvalidName"),
        (lambda b: b.add("other", ["nobody"], by=ADMIN), "UnknownRole"),
        (lambda b: b.set_roles("from-config", [], by=ADMIN), "BootstrapBot"),
        (lambda b: b.set_roles("nobody", [], by=ADMIN), "NoSuchBot"),
        (lambda b: b.remove("from-config", by=ADMIN), "BootstrapBot"),
        (lambda b: b.remove("nobody", by=ADMIN), "NoSuchBot"),
        (lambda b: b.revoke("nobody", by=ADMIN), "NoSuchBot"),
    ],
)
def test_what_may_not_be_done_to_a_bot_is_refused_naming_why(
    bots: Bots, change: object, code: str
) -> None:
    bots.add("deployer", ["ci-runner"], by=ADMIN)
    with pytest.raises(ControlError) as refused:
        change(bots)  # type: ignore[operator]
    assert refused.value.code == code


def test_last_exchange_and_live_credentials_follow_expiry_and_revocation(
    bots: Bots, engine: Engine
) -> None:
    bots.add("deployer", ["ci-runner"], by=ADMIN)
    assert bots.bot("deployer").last_exchange is None and bots.bot("deployer").live == ()
    hour = timedelta(hours=1)
    record_issued(engine, issued("0" * 16, "deployer", ago=2 * hour, ttl=hour))  # expired
    record_issued(engine, issued("1" * 16, "deployer", ago=timedelta(minutes=2), ttl=hour))
    record_issued(engine, issued("2" * 16, "deployer", ago=timedelta(minutes=1), ttl=hour))
    seen = bots.bot("deployer")
    assert seen.last_exchange is not None and seen.last_exchange.access_key_id == "ASIA" + "2" * 16
    assert [c.access_key_id for c in seen.live] == ["ASIA" + "2" * 16, "ASIA" + "1" * 16]
    revoke(engine, "credential", "1" * 16)
    assert [c.access_key_id for c in bots.bot("deployer").live] == ["ASIA" + "2" * 16]
    # A machine joined as the bot holds a renewable session (`control.joins`).
    create_login_session(
        engine, "bot:deployer", ttl=hour, source_ip=None, user_agent=None, kind=JOIN_SESSION_KIND
    )
    assert [x.kind for x in bots.bot("deployer").sessions] == [JOIN_SESSION_KIND]
    assert bots.revoke("deployer", by=ADMIN) == 1
    after = bots.bot("deployer")
    assert after.live == () and after.last_exchange is not None  # the exchange stays shown
    assert after.sessions == ()  # and the joined machine's session ended with them
