"""Credentials an administrator issues on the gateway host (`iamgate credentials --issue-for`)
are issued like every other: recorded, so that a search by their access key starts from
their issue, and audited as `credentials.issued`, naming who issued them."""

from __future__ import annotations

import getpass
import json
import subprocess
from pathlib import Path

import pytest
from harness import BIN, GatewayProcess, clean_env, creds_env, run_aws
from sqlalchemy import create_engine

from iamgate.audit.search import key_issues

pytestmark = pytest.mark.e2e
CI = "222222222222"


def iamgate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "iamgate"), *args],
        env=clean_env(cwd),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_issue_for_a_bot_is_recorded_and_audited(gateway: GatewayProcess, home: Path) -> None:
    config = str(gateway.config_path)
    issued = iamgate(
        "credentials",
        "--config",
        config,
        "--issue-for",
        "ci-bot",
        "--bot",
        "--account",
        "acme-ci",
        "--role",
        "CIRunner",
        "--ttl",
        "30m",
        cwd=home,
    )
    assert issued.returncode == 0, issued.stderr
    creds = json.loads(issued.stdout)
    key = creds["AccessKeyId"]
    env = creds_env(
        clean_env(home),
        {
            "aws_access_key_id": key,
            "aws_secret_access_key": creds["SecretAccessKey"],
            "aws_session_token": creds["SessionToken"],
        },
    )
    who = run_aws(["sts", "get-caller-identity"], env=env, endpoint_url=gateway.url)
    assert who.returncode == 0, who.stderr
    assert who.json()["Account"] == CI

    found = iamgate(
        "audit",
        "search",
        "--config",
        config,
        "--type",
        "credentials.issued",
        "--principal",
        "ci-bot",
        "--json",
        cwd=home,
    )
    assert found.returncode == 0, found.stderr
    events = [json.loads(line) for line in found.stdout.splitlines()]
    mine = [e for e in events if e["fields"].get("access_key_id") == key]
    assert len(mine) == 1, events
    fields = mine[0]["fields"]
    assert (fields["account_id"], fields["aws_role"]) == (CI, "CIRunner")
    assert fields["gateway_roles"] == ["ci-runner"]
    assert fields["issued_by"] == getpass.getuser()
    assert fields["expires_at"] == creds["Expiration"]

    issue = key_issues(create_engine(gateway.state_url), {key})[key]
    assert (issue.principal, issue.account_id, issue.aws_role) == ("ci-bot", CI, "CIRunner")


def test_issue_for_refusals_keep_their_words_and_exit_statuses(
    gateway: GatewayProcess, home: Path
) -> None:
    refused = iamgate(
        "credentials",
        "--config",
        str(gateway.config_path),
        "--issue-for",
        "ci-bot",
        "--account",
        "nowhere",
        "--role",
        "CIRunner",
        cwd=home,
    )
    assert refused.returncode == 1
    assert "unknown account 'nowhere' (configured: " in refused.stderr
    too_long = iamgate(
        "credentials",
        "--config",
        str(gateway.config_path),
        "--issue-for",
        "ci-bot",
        "--account",
        "acme-ci",
        "--role",
        "CIRunner",
        "--ttl",
        "13h",
        cwd=home,
    )
    assert too_long.returncode == 2
    assert "must be between 1m and 12h" in too_long.stderr
