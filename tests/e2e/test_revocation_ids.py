"""Each revocation's id, as `revoke` returns it, is what a replica's `Directory` reports having
applied once it has: the id an administrator's command can wait for (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from postgres import fresh_database
from sqlalchemy import Engine

from iamgate.identity.credentials import Claims
from iamgate.store.database import open_engine
from iamgate.store.directory import Directory
from iamgate.store.revocations import revoke
from iamgate.store.users import delete_user, put_user

NOW = datetime.now(UTC)


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


def claims(session_id: str, principal: str, login: str | None = None) -> Claims:
    return Claims(
        session_id=session_id,
        principal=principal,
        kind="user",
        account_id="123456789012",
        aws_role="reader",
        gateway_roles=("developer",),
        issued_at=NOW - timedelta(minutes=1),
        expires_at=NOW + timedelta(hours=1),
        login_session=login,
    )


def test_a_revocations_id_is_the_one_a_replica_reports_applied(engine: Engine) -> None:
    directory = Directory(engine)
    directory.refresh()
    assert directory.applied_revocation == 0
    first = revoke(engine, "credential", "AAAA")
    second = revoke(engine, "login", "l1", by="root")
    assert isinstance(first, int) and 0 < first < second
    assert directory.applied_revocation == 0  # not until it refreshes
    assert not directory.revoked(claims("AAAA", "ada"))
    directory.refresh()
    assert directory.applied_revocation == second
    assert directory.revoked(claims("AAAA", "ada"))
    assert directory.revoked(claims("BBBB", "ada", login="l1"))
    assert not directory.revoked(claims("BBBB", "ada", login="l2"))

    put_user(engine, "bo", roles=["developer"])
    assert delete_user(engine, "bo")  # revokes all bo holds, with the next id
    directory.refresh()
    deleted = directory.applied_revocation
    assert deleted > second
    assert directory.revoked(claims("CCCC", "bo"))
    assert not directory.exists("bo")
    third = revoke(engine, "user", "ada")
    assert third > deleted
    directory.refresh()
    assert directory.applied_revocation == third
    assert directory.revoked(claims("DDDD", "ada"))
