"""No input stops the audit log, and so none stops the gateway (the audit log is fail-closed).

Against the real writer process on SQLite and on PostgreSQL: events of fuzzed sizes and
contents are all stored and the chain verifies; records the store refuses are stored in
quarantined form and the chain goes on; a store that is down still fails closed. Against a
real `iamgate serve`: a 17 MiB user name on the login API is refused with 413, and the
gateway, its AWS calls and its audit chain carry on.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from fuzzed_events import events as any_event
from harness import BIN, GatewayProcess, clean_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from postgres import fresh_database, write_lock
from sqlalchemy import Engine, text

from iamgate.audit.appender import Appender
from iamgate.audit.chain import canonical_bytes
from iamgate.audit.events import COLUMN_WIDTHS, AuditEvent, EventType, encode
from iamgate.audit.search import verify
from iamgate.audit.wire import STORED, AckReader, frame
from iamgate.audit.writer import AuditLog
from iamgate.sandbox import Sandbox
from iamgate.store.database import open_engine

pytestmark = pytest.mark.e2e
T = TypeVar("T")
MIB = 1 << 20
PROD = "111111111111"


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        yield open_engine(f"sqlite:///{tmp_path / 'state.db'}")
        return
    with fresh_database() as url:
        engine = open_engine(url)
        yield engine
        engine.dispose()


def stored(engine: Engine, chain: str | None = None) -> list[dict[str, Any]]:
    query = "SELECT seq, body FROM audit_events"
    query += " WHERE chain = :chain ORDER BY seq" if chain else " ORDER BY chain, seq"
    with engine.connect() as conn:
        rows = conn.execute(text(query), {"chain": chain} if chain else {})
        return [{"seq": seq, **json.loads(body)} for seq, body in rows]


class RunningLog:
    """The gateway's AuditLog and its writer process, on a loop in a thread of its own, so
    that hypothesis can feed it example after example."""

    def __init__(self, engine: Engine) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.log = AuditLog(engine)
        self.run(self.log.start())

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout=60)

    def close(self) -> None:
        try:
            self.run(self.log.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


def test_the_writer_stores_any_event_the_gateway_can_make(engine: Engine) -> None:
    """Fuzzed sizes (up to megabytes) and contents (NUL, lone surrogates, huge integers,
    deep nesting, odd types): each is durable, none is refused or quarantined, in order."""
    running = RunningLog(engine)
    sent: list[AuditEvent] = []
    try:

        @settings(
            max_examples=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(st.lists(any_event, min_size=1, max_size=4))
        def feed(events: list[AuditEvent]) -> None:
            for event in events:
                seq = running.run(running.log.durably(event))  # a refusal would raise
                sent.append(event)
                assert seq == len(sent)

        feed()
    finally:
        running.close()
    records = stored(engine, running.log.chain)
    assert [r["seq"] for r in records] == list(range(1, len(sent) + 1))
    assert [r["type"] for r in records] == [str(e.type) for e in sent]  # none quarantined
    assert [r["id"] for r in records] == [orjson.loads(encode(e))["id"] for e in sent]
    assert verify(engine) == []


# -- records the store refuses ------------------------------------------------------------------


def body(n: int, **changes: Any) -> bytes:
    """An event's body as the writer receives it, with `changes` the event model would never
    let through (to reach the store's own refusals)."""
    event = orjson.loads(encode(AuditEvent(EventType.AWS_CALL, principal=f"p{n}", id=f"e{n}")))
    fields = changes.pop("fields", {})
    event.update(changes)
    event["fields"].update(fields)
    return canonical_bytes(event)


def poison(engine: Engine) -> dict[str, bytes]:
    """Bodies that `engine`'s store refuses, by what is wrong with them."""
    refused = {
        "not UTF-8": b"\xff\xfe",
        "not JSON": b"not json",
        "not an object": b"[1, 2]",
        "no id": canonical_bytes({"type": "aws.call", "time": "2026-01-01", "fields": {}}),
        "a list for a column": body(0, fields={"account_id": ["111111111111"]}),
        "an integer beyond 64 bits": body(0, fields={"status": 2**64 - 1}),
    }
    if engine.dialect.name == "postgresql":
        refused |= {
            "a principal of 200 characters": body(0, principal="x" * 200),
            "NUL in a column": body(0, principal="da\x00na"),
            "a status beyond 32 bits": body(0, fields={"status": 2**40}),
        }
    return refused


def test_records_the_store_refuses_are_quarantined_and_the_chain_goes_on(
    engine: Engine,
) -> None:
    refused = poison(engine)
    batch: list[tuple[int, bytes]] = []
    for what, bad in refused.items():
        batch.append((len(batch) + 1, body(len(batch) + 1)))
        batch.append((len(batch) + 1, bad))
        assert what
    batch.append((len(batch) + 1, body(len(batch) + 1)))
    appender = Appender(engine, "c0ffee")
    assert appender.write(batch) == len(batch)  # one call, as the writer process makes it
    assert appender.quarantined == len(refused)
    assert appender.write([(len(batch) + 1, body(99))]) == len(batch) + 1  # and on it goes
    records = stored(engine, "c0ffee")
    assert [r["seq"] for r in records] == list(range(1, len(batch) + 2))
    for record, (seq, sent) in zip(records, batch, strict=False):
        if seq % 2:
            assert record["id"] == f"e{seq}" and record["type"] == "aws.call"
        else:
            assert record["type"] == "audit.quarantined"
            assert record["fields"]["seq"] == seq
            assert record["fields"]["bytes"] == len(sent)
            assert record["fields"]["error"]
    assert verify(engine) == []


def test_a_store_that_cannot_be_written_still_fails_closed(engine: Engine) -> None:
    """A locked (or down) store is not a bad record: nothing is quarantined, nothing is
    stored, the error propagates (the gateway answers 503), and a retry stores it all."""
    appender = Appender(engine, "c0ffee")
    batch = [(1, body(1)), (2, b"\xff"), (3, body(3))]
    with write_lock(engine), pytest.raises(Exception, match=r"(?i)lock"):
        appender.write(batch)
    assert appender.quarantined == 0
    assert stored(engine, "c0ffee") == []
    assert appender.write(batch) == 3
    assert [r["type"] for r in stored(engine, "c0ffee")] == [
        "aws.call",
        "audit.quarantined",
        "aws.call",
    ]
    assert verify(engine) == []


def test_the_writer_process_survives_what_no_gateway_sends(engine: Engine) -> None:
    """The real writer process, sent frames straight down its socket: bodies the store
    refuses are quarantined, each batch is acknowledged, and it exits cleanly at the end."""
    ours, theirs = socket.socketpair()
    writer = subprocess.Popen(
        [sys.executable, "-m", "iamgate.audit.process", str(theirs.fileno())],
        pass_fds=(theirs.fileno(),),
    )
    theirs.close()
    settings_frame = json.dumps(
        {"url": engine.url.render_as_string(hide_password=False), "chain": "feed"}
    ).encode()
    bodies = [body(1), *poison(engine).values(), encode(AuditEvent(EventType.LOGOUT))]
    try:
        ours.sendall(frame(0, settings_frame))
        for seq, sent in enumerate(bodies, start=1):
            ours.sendall(frame(seq, sent))
        acks: list[tuple[int, int]] = []
        reader = AckReader()
        deadline = time.monotonic() + 60
        while not acks or acks[-1] != (STORED, len(bodies)):
            assert time.monotonic() < deadline, f"acknowledged: {acks}"
            ours.settimeout(max(deadline - time.monotonic(), 0.1))
            acks += reader.feed(ours.recv(4096))
        assert all(status == STORED for status, _ in acks)
        ours.shutdown(socket.SHUT_WR)
        assert writer.wait(timeout=30) == 0
    finally:
        ours.close()
        if writer.poll() is None:
            writer.kill()
    records = stored(engine, "feed")
    assert [r["seq"] for r in records] == list(range(1, len(bodies) + 1))
    assert records[-1]["type"] == "logout"
    assert verify(engine) == []


# -- a real gateway -----------------------------------------------------------------------------


def post(gw: GatewayProcess, path: str, data: bytes, content_type: str) -> tuple[int, str, str]:
    request = urllib.request.Request(
        gw.url + path, data=data, method="POST", headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def post_chunked(gw: GatewayProcess, path: str, size: int) -> tuple[int, Any]:
    """A body of no declared length: the limit holds as it is read."""
    connection = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=60)
    piece = b"x" * 65536

    def chunks() -> Iterator[bytes]:
        yield b'{"user": "'
        for _ in range(size // len(piece)):
            yield piece
        yield b'", "password": "p", "otp": "1"}'

    try:
        connection.request(
            "POST",
            path,
            body=chunks(),
            headers={"Content-Type": "application/json"},
            encode_chunked=True,
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    except (BrokenPipeError, ConnectionResetError):
        return 413, {"error": "closed while sending"}  # refused before the body was all read
    finally:
        connection.close()


def login_body(user: str) -> bytes:
    return json.dumps({"user": user, "password": "wrong", "otp": "000000"}).encode()


def health(gw: GatewayProcess) -> int:
    try:
        with urllib.request.urlopen(gw.url + "/api/v1/health", timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def wait_ready(gw: GatewayProcess) -> None:
    deadline = time.monotonic() + 60
    while health(gw) != 200:
        assert time.monotonic() < deadline, "the gateway never became ready"
        time.sleep(0.2)


# Names the login API reads but no store keeps as they are (a lone surrogate, NUL): whatever
# the login answers, nothing after it may be refused.
ODD_NAMES = ["\udc80" * 10 + "m" * 60_000, "a\x00b" * 1000]


def check_survives(gw: GatewayProcess, long_names: list[str], tmp_path: Path) -> None:
    wait_ready(gw)
    status, kind, answer = post(
        gw, "/api/v1/login", login_body("x" * (17 * MIB)), "application/json"
    )
    assert status == 413, answer
    assert kind.startswith("application/json")
    assert json.loads(answer)["error"] == "RequestTooLarge"
    status, refusal = post_chunked(gw, "/api/v1/login", 17 * MIB)
    assert status == 413, refusal
    status, kind, answer = post(
        gw,
        "/login",
        b"user=" + b"x" * (17 * MIB) + b"&password=p&otp=1",
        "application/x-www-form-urlencoded",
    )
    assert status == 413 and kind.startswith("text/html") and "too large" in answer
    for name in long_names:  # small enough to be read: refused as a failed login, recorded
        status, _, answer = post(gw, "/api/v1/login", login_body(name), "application/json")
        assert status == 401, answer
    for name in ODD_NAMES:
        post(gw, "/api/v1/login", login_body(name), "application/json")

    assert health(gw) == 200
    client = gw.client("sts", gw.issue("dana", PROD, "ReadOnly"))
    for _ in range(3):  # AWS calls still go through: the audit log is not wedged
        assert client.get_caller_identity()["Account"] == PROD

    gw.stop()
    assert gw.process is not None and gw.process.returncode == 0
    verified = subprocess.run(
        [str(BIN / "iamgate"), "audit", "verify", "--config", str(gw.config_path)],
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr
    assert "audit log intact" in verified.stdout

    engine = open_engine(gw.state_url)
    records = stored(engine)
    failed = [r for r in records if r["type"] == "login.failed"]
    width = COLUMN_WIDTHS["principal"]
    assert len(failed) >= len(long_names)
    for record, name in zip(failed, long_names, strict=False):
        assert record["principal"] == name[: width - 1] + "…"
        assert "principal" in record["truncated"]
    assert [r["type"] for r in records if r["type"] == "audit.quarantined"] == []
    assert sum(r["type"] == "aws.call" for r in records) == 3
    engine.dispose()


def test_a_17_mib_user_name_stops_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    gw = GatewayProcess(sandbox, tmp_path / "gw")
    gw.start()
    try:
        check_survives(gw, ["n" * 200, "é" * 10_000, "🔑" * 4000], tmp_path)
    finally:
        gw.stop()


def test_a_long_user_name_on_postgresql_stops_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    with fresh_database() as url:
        gw = GatewayProcess(sandbox, tmp_path / "gw", storage_url=url)
        gw.start()
        try:
            check_survives(gw, ["n" * 200, "é" * 10_000, "🔑" * 4000], tmp_path)
        finally:
            gw.stop()
