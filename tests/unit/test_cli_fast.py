"""The fast path of `iamgate credentials`: a cached credential, the standard library only."""

from __future__ import annotations

import calendar
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iamgate.cli.fast import _account_and_role, cached_credentials, epoch_seconds

FAR = "2099-01-01T00:00:00Z"


def _home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, expiration: str = FAR
) -> dict[str, object]:
    monkeypatch.setenv("IAMGATE_HOME", str(tmp_path))
    monkeypatch.delenv("IAMGATE_NO_FAST_PATH", raising=False)
    (tmp_path / "cache").mkdir()
    (tmp_path / "session.json").write_text(json.dumps({"url": "http://127.0.0.1:9"}))
    creds = {
        "Version": 1,
        "AccessKeyId": "ASIAAAAAAAAAAAAAAAAA",
        "SecretAccessKey": "secret",
        "SessionToken": "iamgate1.x",
        "Expiration": expiration,
    }
    (tmp_path / "cache" / "acme-prod__ReadOnly.json").write_text(json.dumps(creds))
    return creds


ARGV = ["credentials", "--account", "acme-prod", "--role", "ReadOnly"]


@pytest.mark.parametrize(
    "stamp",
    [
        "1970-01-01T00:00:00Z",
        "2000-02-29T23:59:59Z",
        "2026-12-02T05:08:53Z",
        "2100-03-01T12:00:00Z",
    ],
)
def test_epoch_seconds_agrees_with_the_standard_library(stamp: str) -> None:
    assert epoch_seconds(stamp) == calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))


@pytest.mark.parametrize("bad", ["2026-12-02 05:08:53Z", "2026-13-02T05:08:53Z", "soon", ""])
def test_epoch_seconds_refuses_anything_else(bad: str) -> None:
    with pytest.raises(ValueError):
        epoch_seconds(bad)


def test_only_the_plain_credentials_command_takes_the_fast_path() -> None:
    assert _account_and_role(ARGV) == ("acme-prod", "ReadOnly")
    assert _account_and_role(["credentials", "--role=R", "--account=A"]) == ("A", "R")
    for argv in (
        ["ls"],
        ["credentials", "--account", "A"],
        ["credentials", "--account", "A", "--role", "R", "--issue-for", "dana"],
        ["credentials", "--account", "A", "--account", "B", "--role", "R"],
        ["credentials", "--account", "--role", "R"],
        ["credentials", "--profile", "A/R"],
        ["credentials", "--help"],
    ):
        assert _account_and_role(argv) is None, argv


def test_a_cached_credential_is_served_as_it_was_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = _home(tmp_path, monkeypatch)
    served = cached_credentials(ARGV)
    assert served is not None and json.loads(served) == creds


def test_a_credential_near_expiry_or_without_a_session_falls_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 240))
    _home(tmp_path, monkeypatch, expiration=soon)
    assert cached_credentials(ARGV) is None
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 600))
    (tmp_path / "cache" / "acme-prod__ReadOnly.json").write_text(
        json.dumps({"Version": 1, "Expiration": later}, indent=2)  # another layout: parsed
    )
    assert cached_credentials(ARGV) is not None
    (tmp_path / "session.json").unlink()  # logged out: the full command says so
    assert cached_credentials(ARGV) is None
    monkeypatch.setenv("IAMGATE_NO_FAST_PATH", "1")
    assert cached_credentials(ARGV) is None


def test_the_fast_path_imports_only_the_standard_library(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _home(tmp_path, monkeypatch)
    probe = (
        "import sys; sys.argv = ['iamgate', *sys.argv[1:]]\n"
        "from iamgate.cli.main import main\n"
        "main()\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('click', 'rich', 'botocore', 'pydantic', 'sqlalchemy', 'aiohttp', 'json', 'yaml'))\n"
        "print(heavy, file=sys.stderr)\n"
    )
    env = dict(os.environ)
    result = subprocess.run(
        [sys.executable, "-c", probe, *ARGV],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(result.stdout)["AccessKeyId"] == "ASIAAAAAAAAAAAAAAAAA"
    assert result.stderr.strip() == "[]"
