"""People use iamgate as they use the AWS CLI: log in, sync profiles, run `aws`.

Everything here runs the real `iamgate` and `aws` commands against the real gateway process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from harness import GatewayProcess, clean_env, run_aws
from people import Person, enrol, iamgate, login

pytestmark = pytest.mark.e2e


def test_dana_logs_in_syncs_profiles_and_uses_the_aws_cli(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    dana = enrol(gateway, tmp_path, "dana")
    assert login(gateway, dana).returncode == 0
    session_file = Path(dana.env["IAMGATE_HOME"]) / "session.json"
    assert session_file.stat().st_mode & 0o777 == 0o600

    listing = iamgate(dana.env, "ls", "--json")
    assert listing.returncode == 0, listing.stderr
    access = json.loads(listing.stdout)
    assert [(a["name"], [r["aws_role"] for r in a["roles"]]) for a in access["accounts"]] == [
        ("acme-prod", ["ReadOnly", "DataScientist"]),
        ("customer-globex", ["ReadOnly", "DataScientist"]),
    ]
    table = iamgate(dana.env, "ls")
    assert "acme-prod" in table.stdout and "acme-ci" not in table.stdout

    aws_config = tmp_path / "aws-config"
    aws_config.write_text("# my own settings\n[profile mine]\nregion = eu-west-1\n")
    synced = iamgate(dana.env, "profiles", "sync", "--config-file", str(aws_config))
    assert synced.returncode == 0, synced.stderr
    text = aws_config.read_text()
    assert text.startswith("# my own settings\n[profile mine]\nregion = eu-west-1\n")
    assert "[profile iamgate-acme-prod-ReadOnly]" in text
    assert aws_config.stat().st_mode & 0o777 == 0o600
    again = iamgate(dana.env, "profiles", "sync", "--config-file", str(aws_config))
    assert again.returncode == 0 and aws_config.read_text() == text  # idempotent

    env = dict(dana.env, AWS_CONFIG_FILE=str(aws_config))
    profile = ["--profile", "iamgate-acme-prod-ReadOnly"]
    described = run_aws(["rds", "describe-db-instances", *profile], env=env)
    assert described.returncode == 0, described.stderr
    assert described.json()["DBInstances"][0]["DBInstanceIdentifier"] == "acme-prod-db"
    deleted = run_aws(
        [
            "rds",
            "delete-db-instance",
            "--db-instance-identifier",
            "acme-prod-db",
            "--skip-final-snapshot",
            *profile,
        ],
        env=env,
    )
    assert "iamgate: role data-scientist denies rds:DeleteDBInstance" in deleted.stderr

    cache = list((Path(dana.env["IAMGATE_HOME"]) / "cache").glob("*.json"))
    assert cache and all(p.stat().st_mode & 0o777 == 0o600 for p in cache)

    via_wrapper = iamgate(
        dana.env,
        "aws",
        "--account",
        "acme-prod",
        "--role",
        "ReadOnly",
        "--",
        "sqs",
        "list-queues",
        "--region",
        "us-east-1",
    )
    assert via_wrapper.returncode == 0, via_wrapper.stderr
    exports = iamgate(dana.env, "env", "--account", "acme-prod", "--role", "ReadOnly")
    assert "export AWS_ACCESS_KEY_ID=ASIA" in exports.stdout
    assert f"export AWS_ENDPOINT_URL={gateway.url}" in exports.stdout

    refused = iamgate(dana.env, "credentials", "--account", "acme-ci", "--role", "CIRunner")
    assert refused.returncode != 0
    assert "no role of yours allows CIRunner in account acme-ci" in refused.stderr

    # Logging out ends the session on the server: its credentials stop working too.
    cached = json.loads(cache[0].read_text())
    assert iamgate(dana.env, "logout").returncode == 0
    assert not list((Path(dana.env["IAMGATE_HOME"]) / "cache").glob("*.json"))
    time.sleep(1.2)
    creds_env = {**dana.env}
    creds_env |= {
        "AWS_ACCESS_KEY_ID": cached["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": cached["SecretAccessKey"],
        "AWS_SESSION_TOKEN": cached["SessionToken"],
    }
    after = run_aws(["sts", "get-caller-identity"], env=creds_env, endpoint_url=gateway.url)
    assert after.returncode != 0 and "(InvalidClientTokenId)" in after.stderr


def test_login_errors_answer_alike_and_only_an_administrator_locks(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    erin = enrol(gateway, tmp_path, "erin", roles="contractor")
    config = ["--config", str(gateway.config_path)]

    def error_of(result: subprocess.CompletedProcess[str]) -> str:
        assert result.returncode != 0
        return result.stderr

    # One answer whoever the name is and whichever factor was wrong: the answer to a wrong
    # code does not confirm the password, nor does the answer to a reused one.
    alike = "invalid user name, password or one-time code; a code works only once"
    unknown = Person("nobody", erin.secret, erin.env)
    assert alike in error_of(login(gateway, unknown))
    assert "HTTP" not in error_of(login(gateway, unknown))  # people's words, no status codes
    assert alike in error_of(login(gateway, erin, password="wrong password!", code="000000"))
    assert alike in error_of(login(gateway, erin, code="000000"))
    code = erin.code()
    assert login(gateway, erin, code=code).returncode == 0
    assert alike in error_of(login(gateway, erin, code=code))

    # An administrator's lock: a wrong password still answers like any wrong password; only
    # the right password with a fresh code learns that the account is locked.
    assert iamgate(erin.env, "users", "lock", "erin", *config).returncode == 0
    assert alike in error_of(login(gateway, erin, password="wrong password!", code=erin.peek()))
    locked = "this account is locked; ask an administrator"
    assert locked in error_of(login(gateway, erin, code=erin.peek()))
    assert iamgate(erin.env, "users", "unlock", "erin", *config).returncode == 0
    assert login(gateway, erin).returncode == 0


def test_revoking_a_user_stops_their_credentials_on_the_next_call(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    frank = enrol(gateway, tmp_path, "frank", roles="contractor")
    assert login(gateway, frank).returncode == 0
    creds = iamgate(frank.env, "env", "--account", "customer-globex", "--role", "ReadOnly")
    env = dict(frank.env)
    for line in creds.stdout.splitlines():
        if not line.startswith("export "):
            continue  # unset AWS_PROFILE …
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value.strip("'")
    first = run_aws(["s3", "ls"], env=env)
    assert first.returncode == 0, first.stderr
    revoked = iamgate(
        frank.env, "sessions", "revoke", "--user", "frank", "--config", str(gateway.config_path)
    )
    assert revoked.returncode == 0, revoked.stderr
    time.sleep(1.2)  # one directory poll
    second = run_aws(["s3", "ls"], env=env)
    assert second.returncode != 0 and "(InvalidToken)" in second.stderr
    # A new login after the revocation works again.
    time.sleep(1.1)
    assert login(gateway, frank).returncode == 0
    assert (
        iamgate(
            frank.env, "credentials", "--account", "customer-globex", "--role", "ReadOnly"
        ).returncode
        == 0
    )


def test_an_expired_login_session_issues_nothing(gateway: GatewayProcess, tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    env["IAMGATE_HOME"] = str(tmp_path / "home")
    Path(env["IAMGATE_HOME"]).mkdir()
    expires = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    session = {
        "url": gateway.url,
        "token": "iglogin1.deadbeefdeadbeef.forged",
        "user": "dana",
        "expires_at": expires,
    }
    (Path(env["IAMGATE_HOME"]) / "session.json").write_text(json.dumps(session))
    result = iamgate(env, "credentials", "--account", "acme-prod", "--role", "ReadOnly")
    assert result.returncode != 0 and "log in first" in result.stderr
    assert not os.path.exists(Path(env["IAMGATE_HOME"]) / "cache")


def _env_for(person: Person, account: str, role: str) -> dict[str, str]:
    exported = iamgate(person.env, "env", "--account", account, "--role", role)
    assert exported.returncode == 0, exported.stderr
    env = dict(person.env)
    for line in exported.stdout.splitlines():
        if not line.startswith("export "):
            continue  # unset AWS_PROFILE …
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value.strip("'")
    return env


def test_roles_and_locks_apply_on_the_next_call(gateway: GatewayProcess, tmp_path: Path) -> None:
    gina = enrol(gateway, tmp_path, "gina", roles="contractor")
    assert login(gateway, gina).returncode == 0
    listing = json.loads(iamgate(gina.env, "ls", "--json").stdout)
    assert [(a["name"], [r["aws_role"] for r in a["roles"]]) for a in listing["accounts"]] == [
        ("customer-globex", ["ReadOnly"])
    ]
    env = _env_for(gina, "customer-globex", "ReadOnly")
    assert run_aws(["s3", "ls"], env=env).returncode == 0
    config = ["--config", str(gateway.config_path)]

    users = iamgate(gina.env, "users", "ls", *config)
    assert re.search(r"gina\s.*contractor", users.stdout), users.stdout

    assert iamgate(gina.env, "users", "roles", "gina", *config).returncode == 0
    time.sleep(1.2)
    refused = run_aws(["s3", "ls"], env=env)
    assert refused.returncode != 0
    assert "no role of yours allows ReadOnly in account customer-globex" in refused.stderr

    assert iamgate(gina.env, "users", "roles", "gina", "contractor", *config).returncode == 0
    time.sleep(1.2)
    assert run_aws(["s3", "ls"], env=env).returncode == 0

    locked = iamgate(gina.env, "users", "lock", "gina", *config)
    assert locked.returncode == 0, locked.stderr
    time.sleep(1.2)
    assert "(InvalidToken)" in run_aws(["s3", "ls"], env=env).stderr
    assert "locked" in login(gateway, gina, code=gina.peek()).stderr

    assert iamgate(gina.env, "users", "rm", "gina", *config).returncode == 0
    assert "gina" not in iamgate(gina.env, "users", "ls", *config).stdout
    bootstrap = iamgate(gina.env, "users", "rm", "dana", *config)
    assert bootstrap.returncode != 0 and "bootstrap user" in bootstrap.stderr


def test_ls_shows_an_admin_every_account(gateway: GatewayProcess, tmp_path: Path) -> None:
    ada = enrol(gateway, tmp_path, "ada", roles="admin")
    assert login(gateway, ada).returncode == 0
    listing = json.loads(iamgate(ada.env, "ls", "--json").stdout)
    assert [(a["name"], [r["aws_role"] for r in a["roles"]]) for a in listing["accounts"]] == [
        ("acme-prod", ["Admin", "ReadOnly"]),
        ("acme-ci", ["Admin", "ReadOnly"]),
        ("customer-globex", ["Admin", "ReadOnly"]),
    ]
    assert {r["allows"] for a in listing["accounts"] for r in a["roles"]} == {"all actions"}


def test_revoking_one_login_session_by_id(gateway: GatewayProcess, tmp_path: Path) -> None:
    hank = enrol(gateway, tmp_path, "hank", roles="contractor")
    assert login(gateway, hank).returncode == 0
    env = _env_for(hank, "customer-globex", "ReadOnly")
    assert run_aws(["s3", "ls"], env=env).returncode == 0
    config = ["--config", str(gateway.config_path)]
    listed = iamgate(hank.env, "sessions", "ls", "--user", "hank", *config)
    assert listed.returncode == 0, listed.stderr
    session_id = json.loads((Path(hank.env["IAMGATE_HOME"]) / "session.json").read_text())[
        "session"
    ]
    assert session_id in listed.stdout and "active" in listed.stdout
    assert iamgate(hank.env, "sessions", "revoke", session_id, *config).returncode == 0
    time.sleep(1.2)
    refused = run_aws(["s3", "ls"], env=env)
    assert refused.returncode != 0 and "(InvalidToken)" in refused.stderr
    assert "revoked" in iamgate(hank.env, "sessions", "ls", "--user", "hank", *config).stdout
    # The cached credential is refused by the gateway (above); the server issues no new one.
    for cached in (Path(hank.env["IAMGATE_HOME"]) / "cache").glob("*.json"):
        cached.unlink()
    again = iamgate(hank.env, "credentials", "--account", "customer-globex", "--role", "ReadOnly")
    assert again.returncode != 0 and "log in first" in again.stderr
