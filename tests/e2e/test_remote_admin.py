"""Administration from another machine: `iamgate users/sessions/audit` without `--config`,
as the administrator logged in with `iamgate login`, through the gateway's JSON API."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from harness import GatewayProcess, clean_env, run_aws
from people import PASSWORD, Person, enrol, iamgate, login

pytestmark = pytest.mark.e2e


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def _env_for(person: Person, account: str, role: str) -> dict[str, str]:
    exported = _ok(iamgate(person.env, "env", "--account", account, "--role", role))
    env = dict(person.env)
    for line in exported.splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            env[name] = value.strip("'")
    return env


def test_an_administrator_logged_in_administers_the_gateway_through_its_api(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    rita = enrol(gateway, tmp_path, "rita", roles="admin")
    ivan = enrol(gateway, tmp_path, "ivan", roles="contractor")
    assert login(gateway, rita).returncode == 0, "rita logs in"
    assert login(gateway, ivan).returncode == 0, "ivan logs in"

    # Lists users: the same JSON as on the gateway host, and a table.
    listed = json.loads(_ok(iamgate(rita.env, "users", "ls", "--json")))
    local = json.loads(
        _ok(iamgate(rita.env, "users", "ls", "--json", "--config", str(gateway.config_path)))
    )
    assert listed == local
    ivan_row = next(u for u in listed if u["user"] == "ivan")
    assert ivan_row == {
        "user": "ivan",
        "roles": ["contractor"],
        "has_password": True,
        "locked_until": None,
        "failed_logins": 0,
    }
    assert re.search(r"ivan\s.*contractor", _ok(iamgate(rita.env, "users", "ls")))

    # Locks ivan: his credentials stop, and his login is refused; unlocks him again.
    env = _env_for(ivan, "customer-globex", "ReadOnly")
    assert run_aws(["s3", "ls"], env=env).returncode == 0
    assert "ivan locked" in _ok(iamgate(rita.env, "users", "lock", "ivan"))
    time.sleep(1.2)  # one directory poll
    assert "(InvalidToken)" in run_aws(["s3", "ls"], env=env).stderr
    assert "locked" in login(gateway, ivan, code=ivan.peek()).stderr
    locked = json.loads(_ok(iamgate(rita.env, "users", "ls", "--json")))
    assert next(u for u in locked if u["user"] == "ivan")["locked_until"] is not None
    assert "ivan unlocked" in _ok(iamgate(rita.env, "users", "unlock", "ivan"))
    assert login(gateway, ivan).returncode == 0

    # Revokes ivan's sessions: his next AWS call fails.
    env = _env_for(ivan, "customer-globex", "ReadOnly")
    assert run_aws(["s3", "ls"], env=env).returncode == 0
    sessions = json.loads(_ok(iamgate(rita.env, "sessions", "ls", "--user", "ivan", "--json")))
    assert [s["state"] for s in sessions][:1] == ["active"]
    assert set(sessions[0]) == {"session", "user", "created_at", "expires_at", "state"}
    revoked = _ok(iamgate(rita.env, "sessions", "revoke", "--user", "ivan"))
    assert "revoked 1 session of ivan, and every gateway credential issued to ivan" in revoked
    time.sleep(1.2)
    after = run_aws(["s3", "ls"], env=env)
    assert after.returncode != 0 and "(InvalidToken)" in after.stderr
    states = json.loads(_ok(iamgate(rita.env, "sessions", "ls", "--user", "ivan", "--json")))
    assert "active" not in {s["state"] for s in states}
    assert "revoked" in _ok(iamgate(rita.env, "sessions", "ls", "--user", "ivan"))

    # Searches the audit trail: ivan's calls, allowed and then refused, newest first.
    found = _ok(iamgate(rita.env, "audit", "search", "--principal", "ivan", "--json"))
    events = [json.loads(line) for line in found.splitlines()]
    assert events and {e["principal"] for e in events} == {"ivan"}
    assert {e["fields"]["decision"] for e in events} >= {"allowed"}
    table = _ok(iamgate(rita.env, "audit", "search", "--principal", "ivan", "--limit", "3"))
    assert "customer-globex" in table and "s3:ListAllMyBuckets" in table
    changes = _ok(iamgate(rita.env, "audit", "search", "--type", "user.changed", "--json"))
    assert any(
        json.loads(line)["principal"] == "rita" and json.loads(line)["fields"]["user"] == "ivan"
        for line in changes.splitlines()
    )


def test_an_administrator_adds_resets_sets_roles_and_removes_a_user_remotely(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    rosa = enrol(gateway, tmp_path, "rosa", roles="admin")
    assert login(gateway, rosa).returncode == 0
    added = iamgate(
        rosa.env, "users", "add", "jules", "--roles", "contractor", "--password-stdin",
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    secret = re.search(r"TOTP secret for jules: ([A-Z2-7]+)", _ok(added))
    assert secret and "user jules added" in added.stdout
    jules = Person("jules", secret.group(1), dict(rosa.env, IAMGATE_HOME=str(tmp_path / "j")))
    assert login(gateway, jules).returncode == 0

    again = iamgate(rosa.env, "users", "add", "jules", "--password-stdin", stdin=PASSWORD + "\n")
    assert again.returncode != 0 and "use `iamgate users reset jules`" in again.stderr
    unknown = iamgate(rosa.env, "users", "add", "kim", "--roles", "nope", "--password-stdin")
    assert unknown.returncode != 0 and "unknown roles: nope" in unknown.stderr
    short = iamgate(rosa.env, "users", "add", "kim", "--password-stdin", stdin="short\n")
    assert short.returncode != 0 and "at least 12 characters" in short.stderr

    _ok(iamgate(rosa.env, "users", "roles", "jules", "contractor", "admin"))
    roles = json.loads(_ok(iamgate(rosa.env, "users", "ls", "--json")))
    assert sorted(next(u for u in roles if u["user"] == "jules")["roles"]) == [
        "admin",
        "contractor",
    ]

    reset = iamgate(
        rosa.env, "users", "reset", "jules", "--password-stdin", stdin="another long password\n"
    )
    new_secret = re.search(r"TOTP secret for jules: ([A-Z2-7]+)", _ok(reset))
    assert new_secret and new_secret.group(1) != secret.group(1)
    jules.secret = new_secret.group(1)
    assert login(gateway, jules, password="another long password").returncode == 0

    assert "user jules removed" in _ok(iamgate(rosa.env, "users", "rm", "jules"))
    users = json.loads(_ok(iamgate(rosa.env, "users", "ls", "--json")))
    assert "jules" not in {u["user"] for u in users}
    missing = iamgate(rosa.env, "users", "lock", "jules")
    assert missing.returncode != 0 and "no user 'jules'" in missing.stderr


def test_a_non_administrator_is_refused_in_peoples_words(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    nora = enrol(gateway, tmp_path, "nora", roles="contractor")
    nobody = clean_env(tmp_path)
    nobody["IAMGATE_HOME"] = str(tmp_path / "nobody")
    not_in = iamgate(nobody, "users", "ls")
    assert not_in.returncode != 0 and "not logged in: run `iamgate login" in not_in.stderr
    assert "--config" in not_in.stderr

    assert login(gateway, nora).returncode == 0
    refused = f"nora is not an administrator of {gateway.url}"
    for command in (
        ["users", "ls"],
        ["users", "lock", "dana"],
        ["users", "unlock", "dana"],
        ["users", "roles", "nora", "admin"],
        ["users", "rm", "dana"],
        ["sessions", "ls"],
        ["sessions", "revoke", "--user", "dana"],
        ["audit", "search", "--principal", "dana"],
    ):
        result = iamgate(nora.env, *command)
        assert result.returncode != 0 and refused in result.stderr, (command, result.stderr)
        assert "HTTP" not in result.stderr and "Traceback" not in result.stderr
    added = iamgate(nora.env, "users", "add", "eve", "--password-stdin", stdin=PASSWORD + "\n")
    assert added.returncode != 0 and refused in added.stderr
    # Her own events are hers to search.
    assert iamgate(nora.env, "audit", "search", "--json").returncode == 0
