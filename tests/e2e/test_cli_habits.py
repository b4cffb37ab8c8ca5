"""The first hour of a new user: the `iamgate` command behaves as people expect of a CLI.

Real `iamgate` and `aws` (CLI v1) processes against the real gateway process.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from harness import BIN, GatewayProcess, clean_env
from people import enrol, iamgate, login

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
