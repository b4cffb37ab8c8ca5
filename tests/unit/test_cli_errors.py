"""What the CLI says when the gateway cannot be reached or is not a gateway: people's words."""

from __future__ import annotations

import http.server
import socket
import ssl
import threading
from collections.abc import Iterator

import click
import pytest

from iamgate.cli.people import _call, _unreachable


class _NotAGateway(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 500 if self.path.endswith("/boom") else 404
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<html>nope</html>")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def not_a_gateway() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotAGateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _said(url: str, path: str) -> str:
    with pytest.raises(click.ClickException) as caught:
        _call(url, path, None, None)
    return caught.value.message


def test_a_server_that_is_not_a_gateway(not_a_gateway: str) -> None:
    said = _said(not_a_gateway, "/api/v1/access")
    assert said == (
        f"{not_a_gateway} does not look like an iamgate gateway (nothing at /api/v1/access): "
        "is it the right address?"
    )
    failed = _said(not_a_gateway, "/boom")
    assert "failed" in failed and "HTTP" not in failed and "500" not in failed


def test_nothing_listening_and_other_reasons() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    assert _said(url, "/api/v1/me") == (
        f"nothing answers at {url}: is the gateway running, and is this its address?"
    )
    wrong = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1000)")
    assert _unreachable("https://127.0.0.1:8080", wrong) == (
        "cannot talk to the gateway at https://127.0.0.1:8080: it does not answer https: "
        "this gateway speaks http; use http://127.0.0.1:8080"
    )
    assert "did not answer within 30 seconds" in _unreachable(url, TimeoutError())
    assert "it may speak https; try https://" in _unreachable(url, ConnectionResetError())
    with pytest.raises(click.ClickException, match="must start with http:// or https://"):
        _call("127.0.0.1:8080", "/", None, None)
