"""A real `iamgate serve` does not let one caller starve another: one principal's stalled
uploads hit its cap while another user is answered, stalled bodies end in RequestTimeout,
and a client that dribbles its request head is disconnected."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config as BotoConfig
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from harness import GatewayProcess, audited_calls

from iamgate.identity.credentials import GatewayCredentials
from iamgate.sandbox import Sandbox

pytestmark = pytest.mark.e2e

PROD = "111111111111"
CI = "222222222222"
ONCE = BotoConfig(retries={"total_max_attempts": 1})


@pytest.fixture
def limited(sandbox: Sandbox, tmp_path: Path) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(
        sandbox,
        tmp_path / "gw",
        server={
            "max_calls_per_principal": 2,
            "upstream_connections": 16,
            "request_head_timeout": "1s",
            "body_timeout": "2s",
        },
    )
    gw.start()
    yield gw
    gw.stop()


class Upload:
    """A signed S3 upload that sends a byte every half second until told to stop."""

    def __init__(self, gw: GatewayProcess, creds: GatewayCredentials, key: str) -> None:
        body = b"b" * (4 * 1024 * 1024)
        request = AWSRequest(method="PUT", url=f"{gw.url}/ci-artifacts/{key}", data=body)
        S3SigV4Auth(
            Credentials(creds.access_key_id, creds.secret_access_key, creds.session_token),
            "s3",
            "us-east-1",
        ).add_auth(request)
        head = f"PUT /ci-artifacts/{key} HTTP/1.1\r\nHost: 127.0.0.1:{gw.port}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in request.headers.items())
        head += f"Content-Length: {len(body)}\r\n\r\n"
        self.sock = socket.create_connection(("127.0.0.1", gw.port), timeout=60)
        self.sock.sendall(head.encode() + body[:1024])
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._dribble, daemon=True)
        self.thread.start()

    def _dribble(self) -> None:
        try:
            while not self.stop.wait(0.5):
                self.sock.sendall(b"b")
        except OSError:
            pass  # the gateway answered and closed: `answer` reads why

    def answer(self) -> bytes:
        """Stop sending, and read what the gateway answers."""
        self.stop.set()
        self.thread.join()
        heard = b""
        try:
            while b"</Error>" not in heard and (chunk := self.sock.recv(65536)):
                heard += chunk
        finally:
            self.sock.close()
        return heard


def test_stalled_uploads_hit_their_cap_and_end_in_request_timeout(
    limited: GatewayProcess,
) -> None:
    ci_bot = limited.issue("ci-bot", CI, "CIRunner")
    # With retries, as a client would: a gateway that has just started may still be
    # starting its audit writer, and answers 503 until then.
    limited.client("s3", ci_bot).create_bucket(Bucket="ci-artifacts")
    s3 = limited.client("s3", ci_bot, ONCE)
    uploads = [Upload(limited, ci_bot, f"builds/slow-{n}") for n in range(2)]
    try:
        deadline = time.monotonic() + 20
        while True:  # until both uploads are under way
            try:
                s3.list_buckets()
            except ClientError as error:
                if error.response["Error"]["Code"] == "SlowDown":
                    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 503
                    break
            assert time.monotonic() < deadline, "ci-bot was never throttled"
            time.sleep(0.1)
        dana = limited.client("sts", limited.issue("dana", PROD, "ReadOnly"))
        assert dana.get_caller_identity()["Account"] == PROD  # another user is answered
    finally:
        answers = [upload.answer() for upload in uploads]
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 400 "), answer
        assert b"<Code>RequestTimeout</Code>" in answer
    assert "Buckets" in limited.client("s3", ci_bot).list_buckets()  # its slots are free
    reasons = [
        str(e["fields"].get("reason")) for e in audited_calls(limited.state_url, principal="ci-bot")
    ]
    assert any(r.startswith("throttled: ") for r in reasons), reasons
    assert sum(r.startswith("request-timeout: ") for r in reasons) == 2, reasons


def test_a_dribbled_request_head_is_disconnected(limited: GatewayProcess) -> None:
    sock = socket.create_connection(("127.0.0.1", limited.port), timeout=30)
    heard = b""
    try:
        for byte in b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 400:
            if select.select([sock], [], [], 0.05)[0]:
                break
            sock.sendall(bytes([byte]))
        else:
            pytest.fail("the gateway kept a dribbled head open for 20 s")
        while chunk := sock.recv(4096):
            heard += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass  # closed while a byte was on its way: disconnected all the same
    finally:
        sock.close()
    assert heard == b"" or heard.startswith(b"HTTP/1.1 408 "), heard
