"""The long waits of a first hour say what they are: `iamgate serve` tells when it is ready."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from harness import BIN, clean_env, free_port

pytestmark = pytest.mark.e2e


def _health(url: str) -> int:
    try:
        with urllib.request.urlopen(f"{url}/api/v1/health", timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def test_serve_says_when_it_is_ready(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "server": {"listen": f"127.0.0.1:{port}"},
                "storage": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
                "aws": {"accounts": [{"name": "acme-prod", "id": "111111111111"}]},
                "roles": [],
            }
        )
    )
    server = subprocess.Popen(
        [str(BIN / "iamgate"), "serve", "--config", str(config)],
        env=clean_env(tmp_path),
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        assert server.stderr is not None
        assert server.stderr.readline().strip() == f"iamgate listening on {url}"
        compiling = server.stderr.readline()
        assert "compiling AWS service models" in compiling
        assert "/api/v1/health answers 503 until they are ready" in compiling
        ready = server.stderr.readline()
        said_at = time.monotonic()
        assert ready.startswith("iamgate ready in ") and ready.rstrip().endswith(
            "/api/v1/health answers 200"
        ), ready
        assert _health(url) == 200
        assert time.monotonic() - said_at < 5
        with urllib.request.urlopen(f"{url}/api/v1/health", timeout=5) as answer:
            assert json.loads(answer.read())["status"] == "ready"
    finally:
        server.terminate()
        server.wait(timeout=30)
