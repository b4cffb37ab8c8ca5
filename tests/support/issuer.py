"""A local OIDC issuer as its own process (`python -m iamgate.sandbox.oidc_issuer`), as a CI
system's issuer is to the gateway: discovery and keys over HTTP on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunningIssuer:
    url: str
    request_token: str

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer: dict[str, Any] = json.load(response)
            return answer

    def token(self, audience: str, **claims: Any) -> str:
        """A job token for `audience`, GitHub's claims overridden by `claims` (None drops)."""
        return str(self._post("/sandbox/token", {"aud": audience, **claims})["value"])

    def jwks_fetches(self) -> int:
        """How many times the issuer's keys were fetched, by anyone."""
        with urllib.request.urlopen(self.url + "/sandbox/stats", timeout=30) as response:
            return int(json.load(response)["jwks_fetches"])

    def keys(self) -> dict[str, Any]:
        """The issuer's published keys (JWKS)."""
        with urllib.request.urlopen(self.url + "/.well-known/jwks", timeout=30) as response:
            answer: dict[str, Any] = json.load(response)
            return answer

    def rotate(self) -> str:
        """A new signing key replaces the old one; returns its key id."""
        return str(self._post("/sandbox/rotate", {})["kid"])


@contextmanager
def running_issuer(tmp: Path) -> Iterator[RunningIssuer]:
    ready = tmp / "issuer.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "iamgate.sandbox.oidc_issuer", "--ready-file", str(ready)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() or not ready.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the OIDC issuer did not start: {process.stderr!r}")
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        yield RunningIssuer(info["url"], info["request_token"])
    finally:
        process.terminate()
        process.wait(10)
