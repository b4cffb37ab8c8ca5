"""`iamgate demo` brings up the whole estate and its printed commands work as printed."""

from __future__ import annotations

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
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "demo: 7 of 7 commands behaved as designed" in done.stdout
    assert "role data-scientist denies rds:DeleteDBInstance" in done.stderr + done.stdout
    assert "MaxCount=1000 is above the limit of 10" in done.stderr + done.stdout
    assert "TOTP secret" in done.stdout
    assert "arn:aws:sts::111111111111:assumed-role/ReadOnly/dana" in done.stdout
    assert "customer-globex-data" in done.stdout
    assert "console: signed in as dana in acme-prod, read-only" in done.stdout
    config = tmp_path / "demo" / "aws-config"
    assert config.stat().st_mode & 0o777 == 0o600
    assert "credential_process" in config.read_text()
