"""`iamgate demo` brings up the whole estate and its printed commands work as printed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from harness import BIN, clean_env, free_port

pytestmark = pytest.mark.e2e


def test_demo_smoke(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            str(BIN / "iamgate"),
            "demo",
            "--smoke",
            "--port",
            str(free_port()),
            "--dir",
            str(tmp_path / "demo"),
        ],
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "demo: 18 of 18 commands behaved as designed" in done.stdout
    # progress on the long steps
    assert "demo: sandbox ready at http://127.0.0.1:" in done.stdout
    assert "demo: gateway ready in" in done.stdout
    # story 1 and 2
    assert "role data-scientist denies rds:DeleteDBInstance" in out
    assert "MaxCount=1000 is above the limit of 10" in out
    # story 2 is a CI job's with no key: its token exchanged for the bot's credentials, its
    # calls found in the audit trail by the run's id
    assert "demo: OIDC issuer (standing in for GitHub Actions) at http://127.0.0.1:" in out
    assert "arn:aws:sts::222222222222:assumed-role/CIRunner/bot=ci-deploy" in done.stdout
    assert "binding infra-main" in done.stdout
    assert "TOTP secret" in done.stdout
    assert "arn:aws:sts::111111111111:assumed-role/ReadOnly/dana" in done.stdout
    # story 4, deliberate: dana's role does not reach the customer's account, carl's does
    assert "no role of yours allows ReadOnly in account customer-globex" in out
    assert "customer-globex-data" in done.stdout
    # story 3: carl's next call after the revocation is refused
    assert "revoked 1 session of carl" in done.stdout
    assert "iamgate revoked it" in out
    directory = tmp_path / "demo"
    config = directory / "aws-config"
    assert config.stat().st_mode & 0o777 == 0o600
    assert "credential_process" in config.read_text()
    assert "[profile iamgate-customer-globex-ReadOnly]" in config.read_text()  # carl's sync
    people = directory / "people.json"
    assert people.stat().st_mode & 0o777 == 0o600
    assert set(json.loads(people.read_text())) == {"admin", "dana", "carl"}
    assert "pid" in (directory / "demo.lock").read_text()  # which process holds the demo
    # the job's token and the issuer's request token are the demo's alone
    for private in (directory / "ci" / "token", directory / "ci" / "issuer.json"):
        assert private.stat().st_mode & 0o777 == 0o600, private
    job = (directory / "bin" / "ci-job").read_text()
    assert "env -i" in job and "AWS_ACCESS_KEY_ID" not in job  # nothing of the machine's
    assert (directory / "ci" / "home" / ".aws").is_dir()  # the job's own, not the person's
