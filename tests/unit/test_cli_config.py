"""The example configuration works as it is; `iamgate config check` flags likely mistakes."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from iamgate.cli.commands import cli
from iamgate.config import Config, load_config
from iamgate.config_hints import did_you_mean, pattern_problem

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gateway.yaml"


def test_the_example_configuration_loads_and_checks_clean() -> None:
    config = load_config(EXAMPLE)
    assert config.server.listen.startswith("127.0.0.1:")
    assert {r.name for r in config.roles} >= {"data-scientist", "ci-runner"}
    checked = CliRunner().invoke(cli, ["config", "check", "--config", str(EXAMPLE)])
    assert checked.exit_code == 0, checked.output
    assert "OK (3 accounts, 4 roles, 3 users)" in checked.output


def test_a_deny_that_matches_no_iam_action_is_flagged(tmp_path: Path) -> None:
    bad = tmp_path / "gateway.yaml"
    bad.write_text(EXAMPLE.read_text().replace('"rds:Delete*"', '"rds:Delte*"'))
    checked = CliRunner().invoke(cli, ["config", "check", "--config", str(bad)])
    assert checked.exit_code == 1
    assert (
        f"{bad}:26: roles[0].deny.actions[0] (role data-scientist): 'rds:Delte*' matches no "
        "IAM action; did you mean rds:Delete*?"
    ) in checked.output
    as_json = CliRunner().invoke(cli, ["config", "check", "--config", str(bad), "--json"])
    report = json.loads(as_json.output)
    assert report["ok"] is False and len(report["warnings"]) == 1


def test_an_unknown_key_gets_the_closest_known_one(tmp_path: Path) -> None:
    bad = tmp_path / "gateway.yaml"
    bad.write_text(EXAMPLE.read_text().replace("deny: {actions:", "deny: {action:"))
    checked = CliRunner().invoke(cli, ["config", "check", "--config", str(bad)])
    assert checked.exit_code == 1
    assert "roles[0].deny.action: Extra inputs are not permitted; did you mean 'actions'?" in (
        checked.output
    )
    assert did_you_mean(Config, ("aws", "acounts")) == "; did you mean 'accounts'?"
    assert did_you_mean(Config, ("aws", "accounts", 2, "labls")) == "; did you mean 'labels'?"
    assert did_you_mean(Config, ("zzzzzz",)) == ""


def test_action_patterns_against_iams_own_data() -> None:
    for fine in ("*", "s3:*", "S3:getobject", "ec2:Describe?nstances", "sts:GetCallerIdentity"):
        assert pattern_problem(fine) is None, fine
    assert "did you mean ec2:RunInstances?" in (pattern_problem("ec2:RunInstance") or "")
    assert "there is no service 'rdss'" in (pattern_problem("rdss:Describe*") or "")
    assert "is not an IAM action" in (pattern_problem("DeleteBucket") or "")
