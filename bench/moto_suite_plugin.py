"""pytest plugin that `bench/moto_suite.py` loads into moto's own test run (`-p`).

It records every test's outcome as a JSON line as soon as it is known, so a run cut short
by the harness's timeout still counts what finished. When the run goes through a gateway
(`MOTO_SUITE_MOTO_URL` set), it also sends moto's control calls (`/moto-api/...`: reset,
state dumps, seeding) to moto itself, since a gateway refuses that path by design, and it
stops moto's `mock_aws` from replacing the credentials in the environment (the gateway's)
with its own fake ones. Nothing else about the tests changes.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

RESULTS = os.environ.get("MOTO_SUITE_RESULTS", "")
MOTO_URL = os.environ.get("MOTO_SUITE_MOTO_URL", "")
GATEWAY_URL = os.environ.get("TEST_SERVER_MODE_ENDPOINT", "")


def _to_moto(url: str) -> str:
    """A moto control URL aimed at the gateway, aimed at moto instead."""
    prefix = f"{GATEWAY_URL.rstrip('/')}/moto-api"
    if MOTO_URL and GATEWAY_URL and url.startswith(prefix):
        return MOTO_URL.rstrip("/") + url[len(GATEWAY_URL.rstrip("/")) :]
    return url


def _divert_control_calls() -> None:
    import requests
    from moto.core.config import default_user_config

    # moto's reset (`ServerModeMockAWS.reset`) and the tests' own control calls use
    # `requests`, so every one of them passes here.
    default_user_config.setdefault("core", {})["mock_credentials"] = False
    original = requests.Session.request

    def request(self: requests.Session, method: str, url: str, *args: Any, **kw: Any) -> Any:
        return original(self, method, _to_moto(str(url)), *args, **kw)

    requests.Session.request = request  # type: ignore[method-assign,assignment]


def pytest_configure(config: pytest.Config) -> None:
    if MOTO_URL:
        _divert_control_calls()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """One line per test phase that decides the outcome (xdist replays workers' reports
    on the controller; workers themselves write nothing)."""
    if not RESULTS or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    failed_phase = report.failed
    if report.when != "call" and not failed_phase and not report.skipped:
        return
    crash = getattr(report.longrepr, "reprcrash", None)
    message = crash.message if crash is not None else ""
    if report.skipped and isinstance(report.longrepr, tuple):
        message = str(report.longrepr[2])
    record = {
        "nodeid": report.nodeid,
        "when": report.when,
        "outcome": report.outcome,
        "duration": round(report.duration, 3),
        "message": message[:2000],
    }
    with open(RESULTS, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
