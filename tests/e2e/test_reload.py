"""Reloading a running gateway's configuration with SIGHUP, as `systemctl reload` does."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from typing import Any

import pytest
import yaml
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError
from harness import GatewayProcess, audited_calls

pytestmark = pytest.mark.e2e
PROD = "111111111111"


def whoami(gw: GatewayProcess, user: str) -> str:
    config = BotoConfig(retries={"total_max_attempts": 1})
    client = gw.client("sts", gw.issue(user, PROD, "ReadOnly"), config)
    return str(client.get_caller_identity()["Account"])


def reload(gw: GatewayProcess, change: Any) -> list[dict[str, Any]]:
    """Edit the gateway's file with `change`, send SIGHUP, and return the events it caused."""
    deadline = time.monotonic() + 20
    while not _config_events(gw) and time.monotonic() < deadline:  # the start's own record
        time.sleep(0.05)
    settings = yaml.safe_load(gw.config_path.read_text())
    text = change(settings)
    gw.config_path.write_text(text if isinstance(text, str) else yaml.safe_dump(settings))
    seen = {e["id"] for e in _config_events(gw)}
    assert gw.process is not None
    os.kill(gw.process.pid, signal.SIGHUP)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        new = [e for e in _config_events(gw) if e["id"] not in seen]
        if new:
            return new
        time.sleep(0.1)
    raise AssertionError("the gateway recorded no reload")


def _config_events(gw: GatewayProcess) -> list[dict[str, Any]]:
    return [
        e
        for kind in ("config.loaded", "config.rejected")
        for e in audited_calls(gw.state_url, type=kind, wait=0)
    ]


def test_a_reload_applies_roles_users_and_accounts_at_once(own_gateway: GatewayProcess) -> None:
    gw = own_gateway
    assert whoami(gw, "dana") == PROD

    def deny_identity(settings: dict[str, Any]) -> None:
        role = next(r for r in settings["roles"] if r["name"] == "data-scientist")
        role["deny"] = {"actions": ["rds:Delete*", "sts:GetCallerIdentity"]}
        settings["roles"].append(
            {"name": "auditor", "allow": {"accounts": {"env": ["prod"]}, "aws_roles": ["ReadOnly"]}}
        )
        settings["users"].append({"name": "erin", "roles": ["auditor"]})

    (loaded,) = reload(gw, deny_identity)
    assert loaded["type"] == "config.loaded" and loaded["fields"]["reloaded"] is True
    assert loaded["fields"]["sha256"] == hashlib.sha256(gw.config_path.read_bytes()).hexdigest()
    assert "auditor" in loaded["fields"]["roles"]
    with pytest.raises(ClientError) as denied:
        whoami(gw, "dana")  # the next call meets the new role
    assert "denies sts:GetCallerIdentity" in denied.value.response["Error"]["Message"]
    assert whoami(gw, "erin") == PROD  # a user and role that did not exist before the reload


def test_a_bad_reload_keeps_the_configuration_in_force(own_gateway: GatewayProcess) -> None:
    gw = own_gateway

    def break_it(settings: dict[str, Any]) -> str:
        text = yaml.safe_dump(settings)
        return text.replace("max_session_ttl: 1h", "max_session_ttl: forever", 1)

    (rejected,) = reload(gw, break_it)
    assert rejected["type"] == "config.rejected"
    lines = gw.config_path.read_text().splitlines()
    line = next(n for n, text in enumerate(lines, start=1) if "forever" in text)
    assert rejected["fields"]["error"].startswith(f"{gw.config_path}:{line}: ")  # file, line
    assert "max_session_ttl" in rejected["fields"]["error"]  # and key
    assert whoami(gw, "dana") == PROD  # still serving, on the configuration it had
    assert gw.process is not None and gw.process.poll() is None

    def move_it(settings: dict[str, Any]) -> None:
        settings["roles"][0]["max_session_ttl"] = "1h"  # valid again, but moved elsewhere
        settings["server"]["listen"] = "127.0.0.1:1"

    (refused,) = reload(gw, move_it)
    assert refused["type"] == "config.rejected"
    assert "server cannot change while the gateway runs" in refused["fields"]["error"]
    assert whoami(gw, "dana") == PROD
    assert "configuration not reloaded" in (gw.directory / "gateway.log").read_text()
