"""Failed logins are throttled per (user name, address) and per address, never by a lock that
anyone could set off, and every failure answers alike, as an attacker would probe it.

A real `iamgate serve`. The attacker's requests come from other loopback addresses
(127.0.0.2 and up: the client socket is bound there, no X-Forwarded-For), the owner's from
127.0.0.1 through the real `iamgate login`. Each test uses addresses of its own, so the
per-address budget of one is not spent by another.
"""

from __future__ import annotations

import http.client
import json
import re
import statistics
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from harness import GatewayProcess
from people import PASSWORD, enrol, iamgate, login
from sqlalchemy import create_engine

from iamgate.audit.search import Filters, search
from iamgate.control.logins import RATE_MAX_FAILURES, RATE_WINDOW_SECONDS
from iamgate.sandbox import Sandbox

pytestmark = pytest.mark.e2e

FIRST_WAIT = 30  # seconds, after the fifth failure of one name from one address


@pytest.fixture(scope="module")
def gw(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(sandbox, tmp_path_factory.mktemp("throttle-gateway"))
    gateway.start()
    yield gateway
    gateway.stop()


@dataclass(frozen=True)
class Answer:
    status: int
    retry_after: str | None
    body: str
    seconds: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def seen(self) -> tuple[int, str, str]:
        """What a client of the JSON API is told: status, error code, message."""
        return self.status, self.json["error"], self.json["message"]


def request(
    gw: GatewayProcess, source: str, path: str, body: str, headers: dict[str, str]
) -> Answer:
    """A POST from `source`, a loopback address the client socket is bound to."""
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=60, source_address=(source, 0))
    try:
        start = time.perf_counter()
        conn.request("POST", path, body=body.encode(), headers=headers)
        response = conn.getresponse()
        text = response.read().decode()
        seconds = time.perf_counter() - start
        return Answer(response.status, response.getheader("Retry-After"), text, seconds)
    finally:
        conn.close()


def api_login(gw: GatewayProcess, source: str, user: str, password: str, otp: str) -> Answer:
    body = json.dumps({"user": user, "password": password, "otp": otp})
    return request(gw, source, "/api/v1/login", body, {"Content-Type": "application/json"})


def page_login(gw: GatewayProcess, source: str, user: str, password: str, otp: str) -> Answer:
    """The login form as a browser posts it (the form's CSRF token and its cookie)."""
    form = {"csrf": "t" * 32, "next": "/access", "user": user, "password": password, "otp": otp}
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Cookie": "iamgate-login-csrf=" + "t" * 32,
        "Origin": gw.url,
    }
    return request(gw, source, "/login", urllib.parse.urlencode(form), headers)


def login_events(gw: GatewayProcess, principal: str, count: int) -> list[dict[str, Any]]:
    """The audit log's login events of `principal`, oldest first, once there are `count`."""
    engine = create_engine(gw.state_url)
    deadline = time.monotonic() + 15
    while True:
        events = [
            e
            for kind in ("login.failed", "login.succeeded")
            for e in search(engine, Filters(principal=principal, type=kind, limit=1000))
        ]
        if len(events) >= count or time.monotonic() > deadline:
            engine.dispose()
            return sorted(events, key=lambda e: str(e["time"]))
        time.sleep(0.1)


def guess(gw: GatewayProcess, source: str, user: str, n: int) -> list[Answer]:
    return [api_login(gw, source, user, "a guess!", "000000") for _ in range(n)]


def test_real_locked_and_unknown_names_get_the_same_answers(
    gw: GatewayProcess, tmp_path: Path
) -> None:
    erin = enrol(gw, tmp_path, "erin")
    gina = enrol(gw, tmp_path, "gina")
    locked = iamgate(gina.env, "users", "lock", "gina", "--config", str(gw.config_path))
    assert locked.returncode == 0, locked.stderr
    attacker = "127.0.0.2"
    probes = {name: guess(gw, attacker, name, 7) for name in ("erin", "gina", "nobody")}

    seen = {name: [a.seen for a in answers] for name, answers in probes.items()}
    assert seen["erin"] == seen["gina"] == seen["nobody"]
    invalid = (
        401,
        "BAD_CREDENTIALS",
        "invalid user name, password or one-time code; a code works only once",
    )
    throttled = (429, "RATE_LIMITED", "too many failed logins; try again later")
    assert seen["erin"] == [invalid] * 5 + [throttled] * 2  # no 423 "locked" for anyone
    for answers in probes.values():
        assert [a.retry_after for a in answers[:5]] == [None] * 5
        assert all(FIRST_WAIT - 2 <= int(a.retry_after or 0) <= FIRST_WAIT for a in answers[5:])
    # A throttled attempt checks nothing: it answers at once.
    checked = statistics.median(a.seconds for a in probes["erin"][:5])
    assert max(a.seconds for a in probes["nobody"][5:]) < checked

    # The administrators see what really happened.
    reasons = {
        name: [(e["fields"]["reason"], e["source_ip"]) for e in login_events(gw, name, 7)]
        for name in probes
    }
    assert reasons["erin"] == [("bad_password", attacker)] * 5 + [("throttled", attacker)] * 2
    assert reasons["gina"] == [("bad_password", attacker)] * 5 + [("throttled", attacker)] * 2
    assert reasons["nobody"] == [("unknown_user", attacker)] * 5 + [("throttled", attacker)] * 2
    gina_failures = login_events(gw, "gina", 7)
    assert all(e["fields"]["locked"] is True for e in gina_failures[:5])
    assert gina_failures[4]["fields"]["throttled_for"] == FIRST_WAIT

    # The owner is not locked out by any of it.
    assert login(gw, erin).returncode == 0


def test_an_unknown_name_takes_as_long_to_refuse_as_a_real_one(
    gw: GatewayProcess, tmp_path: Path
) -> None:
    """Its password is checked against a dummy hash. Attempts alternate between the two
    names, so that the load of this shared machine weighs on both alike."""
    enrol(gw, tmp_path, "jo")
    times: dict[str, list[float]] = {"jo": [], "no-one": []}
    for source in ("127.0.0.20", "127.0.0.21", "127.0.0.22", "127.0.0.23"):
        for _ in range(5):  # five failures per name and address go unthrottled
            for name, seconds in times.items():
                answer = api_login(gw, source, name, "a guess!", "000000")
                assert answer.status == 401
                seconds.append(answer.seconds)
    known, unknown = (statistics.median(seconds) for seconds in times.values())
    assert 0.5 < unknown / known < 2, (known, unknown)


def test_an_attacker_elsewhere_cannot_lock_the_owner_out(
    gw: GatewayProcess, tmp_path: Path
) -> None:
    fay = enrol(gw, tmp_path, "fay")
    attacker = "127.0.0.3"
    assert [a.status for a in guess(gw, attacker, "fay", 5)] == [401] * 5
    # Now even the right password and code are not heard from the attacker's address...
    code = fay.code()
    refused = api_login(gw, attacker, "fay", PASSWORD, code)
    assert refused.status == 429 and refused.json["error"] == "RATE_LIMITED"
    assert refused.retry_after is not None and 0 < int(refused.retry_after) <= FIRST_WAIT
    # ...nor checked: that very code is still unused, and fay logs in with it from her own.
    assert login(gw, fay, code=code).returncode == 0
    # Her success from 127.0.0.1 does not lift the attacker's wait.
    assert api_login(gw, attacker, "fay", "another guess", "000000").status == 429

    events = login_events(gw, "fay", 8)
    assert [(e["type"], e["fields"].get("reason"), e["source_ip"]) for e in events] == [
        *[("login.failed", "bad_password", attacker)] * 5,
        ("login.failed", "throttled", attacker),
        ("login.succeeded", None, "127.0.0.1"),
        ("login.failed", "throttled", attacker),
    ]


def test_many_names_from_one_address_meet_the_address_limit(
    gw: GatewayProcess, tmp_path: Path
) -> None:
    hal = enrol(gw, tmp_path, "hal")
    sprayer = "127.0.0.4"
    for n in range(RATE_MAX_FAILURES):  # one password tried on many names: no name repeats
        assert api_login(gw, sprayer, f"user-{n}", "Summer2026!", "000000").status == 401
    for name in ("hal", "user-0", "never-tried"):
        answer = api_login(gw, sprayer, name, PASSWORD, hal.peek())
        assert answer.seen == (429, "RATE_LIMITED", "too many failed logins; try again later")
        assert answer.retry_after is not None
        assert 0 < int(answer.retry_after) <= RATE_WINDOW_SECONDS
    assert login(gw, hal).returncode == 0  # from another address: its own budget
    refused = login_events(gw, "never-tried", 1)
    assert refused[0]["fields"]["reason"] == "address_throttled"
    assert refused[0]["source_ip"] == sprayer


def test_the_login_page_answers_alike_and_says_how_long_to_wait(
    gw: GatewayProcess, tmp_path: Path
) -> None:
    enrol(gw, tmp_path, "ivy")
    source = "127.0.0.5"
    pages = {
        name: [page_login(gw, source, name, "a guess!", "000000") for _ in range(6)]
        for name in ("ivy", "nobody-here")
    }
    for answers in pages.values():
        assert [a.status for a in answers] == [401] * 5 + [429]
        assert "Invalid user name, password or one-time code; a code works only once." in (
            answers[0].body
        )
        assert answers[5].retry_after is not None
        wait = int(answers[5].retry_after)
        assert f"Too many failed logins; try again in {wait} seconds." in answers[5].body
    mine, unknown = ([_comparable(a.body, name) for a in pages[name]] for name in pages)
    # The same pages, but for each one's fresh CSRF token and the name each one typed, which
    # the form keeps (it tells nothing the visitor did not type).
    assert mine == unknown
    assert all('value="ivy"' in a.body for a in pages["ivy"])


def _comparable(page: str, typed: str) -> str:
    """A login page without its fresh CSRF token, the name typed into it, and the wait's
    seconds."""
    page = re.sub(r'name="csrf" value="[^"]*"', 'name="csrf"', page)
    page = page.replace(f'value="{typed}"', 'value="NAME"')
    return re.sub(r"try again in \d+ seconds", "try again in N seconds", page)
