"""No caller starves another: shares per caller, deadlines on heads and bodies, a bounded
upstream pool, bounded unverified bodies.

Each test runs its own in-process gateway with small limits, and speaks raw HTTP to it the
way a stalled, slow or greedy client would. What is asserted is what a user notices: an
answer (or a closed connection) and its error code, never how fast it came.
"""

from __future__ import annotations

import http.client
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pipeline import CI, PROD, Answer, Pipeline, run_pipeline

from iamgate.aws.operations import OperationIndex
from iamgate.identity.credentials import GatewayCredentials

MiB = 1024 * 1024
STS_BODY = b"Action=GetCallerIdentity&Version=2011-06-15"
FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}


@contextmanager
def gateway_with(tmp_path: Path, index: OperationIndex, **server: Any) -> Iterator[Pipeline]:
    running = run_pipeline(tmp_path, index, server=server)
    gw = next(running)
    try:
        yield gw
    finally:
        gw.release_stalled()
        next(running, None)  # the pipeline stops


def eventually(check: Callable[[], bool], what: str, wait: float = 20.0) -> None:
    deadline = time.monotonic() + wait
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        time.sleep(0.02)


def open_request(
    gw: Pipeline,
    creds: GatewayCredentials,
    service: str,
    method: str,
    target: str,
    body: bytes,
    *,
    send: int,
    headers: dict[str, str] | None = None,
) -> socket.socket:
    """A signed request whose head and first `send` bytes of body are sent; the rest is
    left for the test to send, or not."""
    signed = gw.signed(creds, service, method, target, body=body, headers=headers)
    head = f"{method} {target} HTTP/1.1\r\nHost: localhost:{gw.port}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in signed)
    head += f"Content-Length: {len(body)}\r\n\r\n"
    sock = socket.create_connection((gw.host, gw.port), timeout=30)
    sock.sendall(head.encode() + body[:send])
    return sock


def answer_on(sock: socket.socket) -> Answer:
    response = http.client.HTTPResponse(sock)
    response.begin()
    return Answer(response.status, dict(response.getheaders()), response.read())


def call(gw: Pipeline, creds: GatewayCredentials, service: str, method: str, target: str) -> Answer:
    body = STS_BODY if service == "sts" else b""
    headers = FORM if service == "sts" else None
    signed = gw.signed(creds, service, method, target, body=body, headers=headers)
    return gw.send(method, target, signed, body)


def reasons(gw: Pipeline) -> list[str]:
    return [str(record.get("reason")) for record in gw.calls(wait=0)]


def test_a_principal_with_stalled_uploads_hits_its_cap_and_others_are_answered(
    index: OperationIndex, tmp_path: Path
) -> None:
    with gateway_with(tmp_path, index, max_calls_per_principal=3, upstream_connections=8) as gw:
        ci_bot = gw.issue("ci-bot", CI, "CIRunner")
        body = b"u" * (2 * MiB)  # streamed: larger than what is buffered
        stalled = [
            open_request(gw, ci_bot, "s3", "PUT", f"/builds/part-{n}", body, send=64 * 1024)
            for n in range(3)
        ]
        eventually(
            lambda: gw.gateway.limits.principals.held("ci-bot") == 3, "three uploads in flight"
        )

        fourth = call(gw, ci_bot, "s3", "GET", "/")
        assert fourth.status == 503, fourth
        assert b"<Code>SlowDown</Code>" in fourth.body
        assert fourth.headers.get("Retry-After") == "1"

        # An upload that asks first is told so instead of `100 Continue`.
        asking = open_request(
            gw,
            ci_bot,
            "s3",
            "PUT",
            "/builds/next",
            body,
            send=0,
            headers={"Expect": "100-continue"},
        )
        try:
            reader = asking.makefile("rb")
            status_line = reader.readline()  # the first answer, not a `100 Continue`
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            error = reader.read(length)
        finally:
            asking.close()
        assert status_line.startswith(b"HTTP/1.1 503 "), status_line
        assert b"<Code>SlowDown</Code>" in error

        dana = call(gw, gw.issue("dana", PROD, "ReadOnly"), "s3", "GET", "/")
        assert dana.status == 200, dana
        assert any(r.startswith("throttled: iamgate: ci-bot already has 3") for r in reasons(gw))

        for sock in stalled:  # the uploader gives up: its calls end, and its share with them
            sock.close()
        eventually(lambda: gw.gateway.limits.principals.held() == 0, "every share given back")
        assert call(gw, ci_bot, "s3", "GET", "/").status == 200
        cut_short = [r for r in reasons(gw) if r.startswith("incomplete-body")]
        assert len(cut_short) == 3, reasons(gw)


def test_a_client_dribbling_its_request_head_is_disconnected(
    index: OperationIndex, tmp_path: Path
) -> None:
    with gateway_with(tmp_path, index, request_head_timeout=1) as gw:
        head = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 1000
        sock = socket.create_connection((gw.host, gw.port), timeout=30)
        heard = b""
        try:
            for byte in head:  # a byte every 50 ms: 50 s for the whole head
                readable, _, _ = select.select([sock], [], [], 0.05)
                if readable:
                    heard = sock.recv(4096)
                    break
                sock.sendall(bytes([byte]))
            else:
                pytest.fail("the gateway kept a dribbled head open for 50 s")
            while chunk := sock.recv(4096):
                heard += chunk
        except (ConnectionResetError, BrokenPipeError):
            pass  # closed while the client was still sending: disconnected all the same
        finally:
            sock.close()
        assert heard == b"" or heard.startswith(b"HTTP/1.1 408 "), heard

        # Others are served, and a kept-alive connection may idle longer than the head's
        # deadline between requests: only a head that has begun is timed.
        connection = http.client.HTTPConnection(gw.host, gw.port, timeout=30)
        try:
            for pause in (1.5, 0):
                connection.request("GET", "/", headers={"Host": f"localhost:{gw.port}"})
                response = connection.getresponse()
                response.read()
                assert response.status == 403  # no credentials: an AWS-shaped refusal
                time.sleep(pause)
        finally:
            connection.close()


def test_a_stalled_upload_gets_request_timeout_and_frees_its_slot(
    index: OperationIndex, tmp_path: Path
) -> None:
    with gateway_with(
        tmp_path,
        index,
        max_calls_per_principal=1,
        upstream_connections=2,
        body_timeout=1,
        request_head_timeout=1,
    ) as gw:
        ci_bot = gw.issue("ci-bot", CI, "CIRunner")
        body = b"u" * (2 * MiB)
        sock = open_request(gw, ci_bot, "s3", "PUT", "/builds/slow", body, send=64 * 1024)
        try:
            for n in range(5):  # slow but moving: neither the body's nor the head's deadline
                time.sleep(0.3)
                sock.sendall(body[64 * 1024 + n : 64 * 1024 + n + 1])
            answer = answer_on(sock)  # then nothing more
        finally:
            sock.close()
        assert answer.status == 400, answer
        assert b"<Code>RequestTimeout</Code>" in answer.body
        assert gw.received == [], "the upstream completes nothing"
        assert call(gw, ci_bot, "s3", "GET", "/").status == 200  # its one slot is free again


def test_a_stalled_body_before_its_signature_is_checked_gets_request_timeout(
    index: OperationIndex, tmp_path: Path
) -> None:
    with gateway_with(tmp_path, index, max_unauthenticated_per_address=1, body_timeout=1) as gw:
        ci_bot = gw.issue("ci-bot", CI, "CIRunner")
        sock = open_request(gw, ci_bot, "sts", "POST", "/", STS_BODY, send=10, headers=FORM)
        try:
            answer = answer_on(sock)
        finally:
            sock.close()
        assert answer.status == 400, answer
        assert b"<Code>RequestTimeout</Code>" in answer.body
        assert reasons(gw)[-1].startswith("request-timeout: ")
        # The address's one unauthenticated slot is free again.
        assert call(gw, ci_bot, "sts", "POST", "/").status == 200


def test_a_client_that_stops_reading_its_answer_is_disconnected_and_frees_its_slot(
    index: OperationIndex, tmp_path: Path
) -> None:
    with gateway_with(
        tmp_path, index, max_calls_per_principal=1, upstream_connections=2, body_timeout=1
    ) as gw:
        ci_bot = gw.issue("ci-bot", CI, "CIRunner")
        sock = open_request(gw, ci_bot, "s3", "GET", "/builds/large", b"", send=0)
        try:
            eventually(lambda: len(gw.received) == 1, "the download under way")
            eventually(lambda: gw.gateway.limits.principals.held() == 0, "the reader disconnected")
            received = 0
            try:
                while chunk := sock.recv(1024 * 1024):
                    received += len(chunk)
            except ConnectionResetError:
                pass
            assert 0 < received < 64 * MiB
        finally:
            sock.close()
        assert call(gw, ci_bot, "s3", "GET", "/").status == 200
        assert any("read nothing of the answer for 1 seconds" in r for r in reasons(gw))


def test_a_full_upstream_pool_answers_503_instead_of_hanging(
    index: OperationIndex, tmp_path: Path
) -> None:
    with gateway_with(
        tmp_path,
        index,
        upstream_connections=2,
        max_calls_per_principal=1,
        upstream_connect_timeout=1,
    ) as gw:
        held: list[Answer] = []
        callers = [
            threading.Thread(
                target=lambda who=who: held.append(
                    call(gw, gw.issue(who, CI, "CIRunner"), "s3", "GET", f"/stall/{who}")
                )
            )
            for who in ("ci-bot", "erin")
        ]
        for caller in callers:
            caller.start()
        eventually(lambda: len(gw.received) == 2, "both connections held by the upstream")

        dana = gw.issue("dana", PROD, "ReadOnly")
        answer = call(gw, dana, "s3", "GET", "/")
        assert answer.status == 503, answer
        assert b"<Code>ServiceUnavailable</Code>" in answer.body
        assert answer.headers.get("Retry-After") == "1"
        assert any("no connection to the AWS endpoint came free" in r for r in reasons(gw))

        gw.release_stalled()
        for caller in callers:
            caller.join(30)
        assert [a.status for a in held] == [200, 200]
        assert call(gw, dana, "s3", "GET", "/").status == 200


def test_unverified_bodies_are_bounded(index: OperationIndex, tmp_path: Path) -> None:
    with gateway_with(tmp_path, index, max_unverified_body_bytes=64 * MiB, body_timeout=30) as gw:
        ci_bot = gw.issue("ci-bot", CI, "CIRunner")
        big = STS_BODY + b"&Padding=" + b"p" * (48 * MiB)
        first = open_request(gw, ci_bot, "sts", "POST", "/", big, send=40 * MiB, headers=FORM)
        try:
            eventually(
                lambda: gw.gateway.limits.unverified.held() >= 40 * MiB, "40 MiB read unverified"
            )
            second = STS_BODY + b"&Padding=" + b"p" * (30 * MiB)
            signed = gw.signed(ci_bot, "sts", "POST", "/", body=second, headers=FORM)
            answer = gw.send("POST", "/", signed, second)
            assert answer.status == 400, answer
            assert b"<Code>Throttling</Code>" in answer.body
            assert answer.headers.get("Retry-After") == "1"
        finally:
            first.close()
        eventually(lambda: gw.gateway.limits.unverified.held() == 0, "the bytes given back")
        eventually(
            lambda: gw.gateway.limits.addresses.held() == 0, "the address's share given back"
        )
        assert call(gw, ci_bot, "sts", "POST", "/").status == 200
