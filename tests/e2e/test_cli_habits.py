"""The first hour of a new user: the `iamgate` command behaves as people expect of a CLI.

Real `iamgate` and `aws` (CLI v1) processes against the real gateway process.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from harness import BIN, GatewayProcess, clean_env, free_port
from people import PASSWORD, enrol, iamgate, login

from iamgate.config import load_config

pytestmark = pytest.mark.e2e


def _shell(env: dict[str, str], script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_env_keeps_rds_and_sqs_on_the_gateway_and_sets_the_region(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    dana = enrol(gateway, tmp_path, "dana-env", roles="data-scientist")
    assert login(gateway, dana).returncode == 0
    env = dict(dana.env, AWS_PROFILE="somewhere-else")
    setup = 'eval "$(iamgate env --account acme-prod --role ReadOnly)" || exit 9; '

    regions = _shell(env, setup + 'echo "$AWS_REGION $AWS_DEFAULT_REGION ${AWS_PROFILE-unset}"')
    assert regions.returncode == 0, regions.stderr
    assert regions.stdout.split() == ["us-east-1", "us-east-1", "unset"]

    # A plain `aws rds …` in that shell: CLI v1 would send it to rds.amazonaws.com.
    rds = _shell(env, setup + "aws rds describe-db-instances")
    assert rds.returncode == 0, rds.stderr
    assert json.loads(rds.stdout)["DBInstances"][0]["DBInstanceIdentifier"] == "acme-prod-db"
    sqs = _shell(env, setup + "aws sqs list-queues")
    assert sqs.returncode == 0, sqs.stderr

    other = _shell(
        env,
        'eval "$(iamgate env --account acme-prod --role ReadOnly --region eu-west-1)"'
        ' && echo "$AWS_REGION $AWS_DEFAULT_REGION" && aws sqs list-queues',
    )
    assert other.returncode == 0, other.stderr
    assert other.stdout.split()[:2] == ["eu-west-1", "eu-west-1"]

    # The region of the profile `iamgate profiles sync` wrote wins over the default.
    aws_config = tmp_path / "aws-config"
    aws_config.write_text("[profile iamgate-acme-prod-ReadOnly]\nregion = eu-central-1\n")
    synced = _shell(
        dict(env, AWS_CONFIG_FILE=str(aws_config)),
        setup + 'echo "$AWS_REGION" && aws rds describe-db-instances',
    )
    assert synced.returncode == 0, synced.stderr
    assert synced.stdout.split()[0] == "eu-central-1"


def test_iamgate_aws_sets_the_region_and_keeps_rds_on_the_gateway(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    dana = enrol(gateway, tmp_path, "dana-aws", roles="data-scientist")
    assert login(gateway, dana).returncode == 0
    # No region anywhere: CLI v1 would refuse with "You must specify a region".
    described = iamgate(
        dana.env, "aws", "--account", "acme-prod", "--role", "ReadOnly", "--", "rds",
        "describe-db-instances",
    )  # fmt: skip
    assert described.returncode == 0, described.stderr
    assert json.loads(described.stdout)["DBInstances"][0]["DBInstanceIdentifier"] == (
        "acme-prod-db"
    )
    queues = iamgate(
        dana.env, "aws", "--account", "acme-prod", "--role", "ReadOnly", "--region",
        "eu-west-1", "--", "sqs", "list-queues",
    )  # fmt: skip
    assert queues.returncode == 0, queues.stderr


def test_iamgate_aws_without_the_aws_cli_says_how_to_install_it(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    dana = enrol(gateway, tmp_path, "dana-noaws", roles="data-scientist")
    assert login(gateway, dana).returncode == 0
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    env = dict(dana.env, PATH=str(empty))
    result = subprocess.run(
        [str(BIN / "iamgate"), "aws", "--account", "acme-prod", "--role", "ReadOnly", "--", "s3",
         "ls"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "AWS CLI (`aws`) was not found" in result.stderr
    assert "install" in result.stderr


def test_version(tmp_path: Path) -> None:
    result = iamgate(clean_env(tmp_path), "--version")
    assert result.returncode == 0
    assert result.stdout.strip() == "iamgate 0.1.0"


def test_revoke_names_what_it_revoked_and_refuses_an_unknown_user(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    config = str(gateway.config_path)
    env = clean_env(tmp_path)
    nobody = iamgate(env, "sessions", "revoke", "--user", "nobody", "--config", config)
    assert nobody.returncode != 0
    assert "no user named nobody" in nobody.stderr

    hana = enrol(gateway, tmp_path, "hana", roles="contractor")
    assert login(gateway, hana).returncode == 0
    assert login(gateway, hana).returncode == 0
    revoked = iamgate(env, "sessions", "revoke", "--user", "hana", "--config", config)
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout.startswith("revoked 2 sessions of hana")
    again = iamgate(env, "sessions", "revoke", "--user", "hana", "--config", config)
    assert again.returncode == 0 and again.stdout.startswith("revoked 0 sessions of hana")

    key = iamgate(env, "sessions", "revoke", "--access-key", "ASIA0123456789ABCDEF", "--config",
                  config)  # fmt: skip
    assert key.returncode == 0 and "revoked gateway credential ASIA0123456789ABCDEF" in key.stdout


def test_login_remembers_the_gateway_and_user_and_status_says_who_where_and_how_long(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    ivy = enrol(gateway, tmp_path, "ivy", roles="contractor")
    never = iamgate(ivy.env, "status")
    assert never.returncode != 0
    assert "not logged in: run `iamgate login URL --user USER`" in never.stderr

    assert login(gateway, ivy).returncode == 0
    status = iamgate(ivy.env, "status")
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith(f"ivy on {gateway.url}\n")
    assert re.search(r"login session until \S+ \((11h5\d|12h00)m left\)", status.stdout)
    who = json.loads(iamgate(ivy.env, "whoami", "--json").stdout)
    assert who["user"] == "ivy" and who["gateway"] == gateway.url and who["accepted"] is True
    assert 11 * 3600 < who["seconds_left"] <= 12 * 3600

    assert iamgate(ivy.env, "logout").returncode == 0
    hint = f"run `iamgate login {gateway.url} --user ivy`"
    after = iamgate(ivy.env, "status")
    assert after.returncode != 0 and f"not logged in: {hint}" in after.stderr
    creds = iamgate(ivy.env, "credentials", "--account", "customer-globex", "--role", "ReadOnly")
    assert creds.returncode != 0 and hint in creds.stderr

    # Neither URL nor user: those of the last login.
    again = iamgate(
        ivy.env, "login", "--password-stdin", "--otp", ivy.code(), stdin=PASSWORD + "\n"
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith(f"logged in to {gateway.url} as ivy until ")

    # A session the gateway no longer accepts: status says so, with the same hint.
    config = ["--config", str(gateway.config_path)]
    assert iamgate(ivy.env, "sessions", "revoke", "--user", "ivy", *config).returncode == 0
    time.sleep(1.2)
    revoked = iamgate(ivy.env, "status")
    assert revoked.returncode == 1 and hint in revoked.stderr


def test_errors_are_in_peoples_words(gateway: GatewayProcess, tmp_path: Path) -> None:
    jo = enrol(gateway, tmp_path, "jo", roles="contractor")

    def refused(*args: str) -> str:
        result = iamgate(jo.env, *args, stdin=PASSWORD + "\n")
        assert result.returncode != 0
        assert "Traceback" not in result.stderr and "(HTTP" not in result.stderr
        assert "SSL" not in result.stderr, result.stderr
        return result.stderr

    plain = gateway.url.removeprefix("http://")
    tls = refused("login", f"https://{plain}", "--user", "jo", "--password-stdin", "--otp", "1")
    assert "this gateway speaks http; use http://" in tls
    port = free_port()
    nothing = refused(
        "login", f"http://127.0.0.1:{port}", "--user", "jo", "--password-stdin", "--otp", "1"
    )
    assert f"nothing answers at http://127.0.0.1:{port}: is the gateway running" in nothing
    scheme = refused("login", plain, "--user", "jo", "--password-stdin", "--otp", "1")
    assert "must start with http:// or https://" in scheme

    assert login(gateway, jo).returncode == 0
    unknown = refused("credentials", "--account", "no-such-account", "--role", "ReadOnly")
    assert "no-such-account" in unknown


def test_a_profile_name_a_subshell_and_the_last_used(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    kai = enrol(gateway, tmp_path, "kai", roles="contractor")
    assert login(gateway, kai).returncode == 0
    env = dict(kai.env, SHELL="bash")

    sub = iamgate(
        env, "shell", "--profile", "customer-globex/ReadOnly", "-c",
        'echo "$IAMGATE_PROFILE"; aws s3 ls --region us-east-1 >/dev/null && echo listed',
    )  # fmt: skip
    assert sub.returncode == 0, sub.stderr
    assert sub.stdout.split() == ["customer-globex/ReadOnly", "listed"]
    failing = iamgate(env, "shell", "--profile", "customer-globex/ReadOnly", "-c", "exit 7")
    assert failing.returncode == 7

    exported = iamgate(env, "env", "--profile", "iamgate-customer-globex-ReadOnly", "--json")
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout)["AWS_ACCESS_KEY_ID"].startswith("ASIA")
    creds = iamgate(env, "credentials", "--profile", "customer-globex/ReadOnly")
    assert creds.returncode == 0 and json.loads(creds.stdout)["Version"] == 1

    # No terminal and neither --account/--role nor --profile: the last used, said so.
    again = iamgate(env, "aws", "--", "s3", "ls", "--region", "us-east-1")
    assert again.returncode == 0, again.stderr
    assert "using customer-globex/ReadOnly (the last used" in again.stderr
    status = json.loads(iamgate(env, "status", "--json").stdout)
    assert status["last_used"] == {"account": "customer-globex", "role": "ReadOnly"}
    wide = iamgate(env, "ls")
    assert "customer-globex/ReadOnly" in wide.stdout  # not cut at 80 columns in a pipe


def test_serve_takes_the_example_configuration_as_it_is(tmp_path: Path) -> None:
    """The example is valid as it is; `serve` runs it with only its address changed, so the
    test never depends on 127.0.0.1:8080 being free."""
    example = Path(__file__).resolve().parents[2] / "examples" / "gateway.yaml"
    assert load_config(example).server.url == "http://127.0.0.1:8080"
    port = free_port()
    text = example.read_text().replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    assert text.count(f"127.0.0.1:{port}") == 2  # listen and public_url, nothing else
    moved = tmp_path / "gateway.yaml"
    moved.write_text(text)
    env = clean_env(tmp_path)
    server = subprocess.Popen(
        [str(BIN / "iamgate"), "serve", "--config", str(moved)],
        cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stderr is not None
        first = server.stderr.readline()
        assert first.strip() == f"iamgate listening on http://127.0.0.1:{port}", first
        status = None
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health") as answer:
                    status = json.loads(answer.read())["status"]
            except urllib.error.HTTPError as err:  # 503 while service models compile
                status = json.loads(err.read())["status"]
            except OSError:
                time.sleep(0.2)
                continue
            break
        assert status in ("ready", "starting")
        assert (tmp_path / "iamgate-state.db").exists()
    finally:
        server.terminate()
        server.wait(timeout=60)
