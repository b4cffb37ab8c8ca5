"""One-time enrolment links: the pure rules and the rows, on a SQLite store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from iamgate.identity import enrolment as rules
from iamgate.identity.totp import code_at, new_totp_secret
from iamgate.store import enrolments as store
from iamgate.store.database import open_engine
from iamgate.store.tables import enrolment_links
from iamgate.store.users import get_user, put_user


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return open_engine(f"sqlite:///{tmp_path / 'state.db'}")


def test_a_link_token_reads_back_and_a_changed_one_does_not() -> None:
    token = rules.new_link_token()
    assert rules.parse_link_token(token.text) == token
    assert rules.link_url("https://gw:8080/", token) == f"https://gw:8080/enrol/{token.text}"
    for bad in ("", token.text + "x", token.text.replace("igenrol1", "iglogin1"), "a.b.c"):
        assert rules.parse_link_token(bad) is None


def test_passwords_the_form_refuses() -> None:
    assert rules.password_problem("long enough pw", "long enough pw", "nina") is None
    assert "differ" in (rules.password_problem("long enough pw", "long enough px", "n") or "")
    assert "12" in (rules.password_problem("short", "short", "nina") or "")
    assert rules.password_problem("nina.example", "nina.example", "nina.example")


def test_the_qr_code_is_plain_svg() -> None:
    svg = rules.qr_svg(rules.authenticator_uri(new_totp_secret(), "nina"))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "<script" not in svg and "style=" not in svg and "href" not in svg


def test_a_link_works_once(engine: Engine) -> None:
    put_user(engine, "nina", roles=["contractor"], password_hash="h", totp_secret="S")
    secret = new_totp_secret()
    token, expires = store.create_link(engine, "nina", secret, ttl=timedelta(hours=24), by="loader")
    assert timedelta(hours=23) < expires - datetime.now(UTC) <= timedelta(hours=24)
    row = get_user(engine, "nina")
    assert row is not None and not row.has_password and row.record.totp_secret == ""
    with engine.connect() as conn:
        stored = conn.execute(select(enrolment_links)).one()
    assert stored.secret_hash != token.secret and token.secret not in str(tuple(stored))
    state = store.link_state(engine, token)
    assert state is not None and state.user == "nina" and state.totp_secret == secret
    now = datetime.now(UTC)
    assert rules.link_usable(state, now)
    step = rules.code_step(secret, code_at(secret, now), now)
    assert step is not None
    forged = rules.LinkToken(token.id, rules.new_link_token().secret)
    assert store.link_state(engine, forged) is None
    kwargs = {"password_hash": "new", "totp_secret": secret, "totp_step": step, "now": now}
    assert not store.redeem_link(engine, forged, **kwargs)  # type: ignore[arg-type]
    assert store.redeem_link(engine, token, **kwargs)  # type: ignore[arg-type]
    assert not store.redeem_link(engine, token, **kwargs)  # type: ignore[arg-type]
    row = get_user(engine, "nina")
    assert row is not None and row.record.password_hash == "new"
    assert row.record.totp_secret == secret and row.record.last_totp_step == step
    state = store.link_state(engine, token)
    assert state is not None and state.used_at is not None and not rules.link_usable(state, now)


def test_a_new_link_ends_the_old_and_an_expired_link_is_dead(engine: Engine) -> None:
    put_user(engine, "nina")
    first, _ = store.create_link(engine, "nina", "A" * 32, ttl=timedelta(hours=24), by=None)
    second, _ = store.create_link(engine, "nina", "B" * 32, ttl=timedelta(hours=24), by=None)
    old = store.link_state(engine, first)
    assert old is not None and old.used_at is not None
    now = datetime.now(UTC)
    kwargs = {"password_hash": "x", "totp_secret": "B" * 32, "totp_step": 1}
    assert not store.redeem_link(engine, first, now=now, **kwargs)  # type: ignore[arg-type]
    later = now + timedelta(hours=25)
    state = store.link_state(engine, second)
    assert state is not None and not rules.link_usable(state, later)
    assert not store.redeem_link(engine, second, now=later, **kwargs)  # type: ignore[arg-type]
    assert store.redeem_link(engine, second, now=now, **kwargs)  # type: ignore[arg-type]
