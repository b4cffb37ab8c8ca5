"""A profile name works wherever --account/--role do; the last used and a picker otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from iamgate.cli import targets
from iamgate.cli.commands import cli
from iamgate.cli.targets import parse_profile, remember_used, resolve

ACCESS = {
    "accounts": [
        {"name": "acme-prod", "roles": [{"aws_role": "ReadOnly"}, {"aws_role": "Data-Sci"}]},
        {"name": "acme-ci", "roles": [{"aws_role": "CIRunner"}, {"aws_role": "Dev*"}]},
    ]
}


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("IAMGATE_HOME", str(tmp_path / "iamgate"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    (tmp_path / "iamgate").mkdir()
    (tmp_path / "iamgate" / "access.json").write_text(json.dumps(ACCESS))
    return tmp_path


def test_profile_names_people_use(home: Path) -> None:
    assert parse_profile("acme-prod/ReadOnly") == ("acme-prod", "ReadOnly")
    assert parse_profile("iamgate-acme-prod-ReadOnly") == ("acme-prod", "ReadOnly")
    # A dash in the role: the access list says where the account ends.
    assert parse_profile("iamgate-acme-prod-Data-Sci") == ("acme-prod", "Data-Sci")
    # Any AWS CLI profile whose credential_process is iamgate's.
    (home / "aws-config").write_text(
        "[profile work]\ncredential_process = /opt/iamgate credentials "
        "--account acme-ci --role CIRunner\n"
    )
    assert parse_profile("work") == ("acme-ci", "CIRunner")
    with pytest.raises(click.BadParameter, match="no profile named 'nope'"):
        parse_profile("nope")


def test_explicit_choices_win_and_cannot_be_mixed() -> None:
    assert resolve("a", "r", None) == ("a", "r")
    assert resolve(None, None, "acme-ci/CIRunner") == ("acme-ci", "CIRunner")
    with pytest.raises(click.UsageError, match="not both"):
        resolve("a", None, "acme-ci/CIRunner")
    with pytest.raises(click.UsageError, match="give --account and --role"):
        resolve(None, None, None)  # credential_process: never guess


def test_a_script_gets_the_last_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(targets, "_interactive", lambda: False)
    with pytest.raises(click.UsageError, match="which account and role"):
        resolve(None, None, None, choices=list)
    remember_used("acme-ci", "CIRunner")
    assert resolve(None, None, None, choices=list) == ("acme-ci", "CIRunner")
    with pytest.raises(click.UsageError):
        resolve("acme-prod", None, None, choices=list)  # not what was last used


def test_a_person_picks_with_the_last_used_as_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(targets, "_interactive", lambda: True)
    remember_used("acme-ci", "CIRunner")
    choices = targets.known_targets()
    assert choices == [
        ("acme-prod", "ReadOnly"),
        ("acme-prod", "Data-Sci"),
        ("acme-ci", "CIRunner"),
    ]

    @click.command()
    def picker() -> None:
        click.echo("=".join(resolve(None, None, None, choices=lambda: choices)))

    picked = CliRunner().invoke(picker, input="\n")
    assert "3  acme-ci/CIRunner  (last used)" in picked.output
    assert picked.output.strip().endswith("acme-ci=CIRunner")
    assert CliRunner().invoke(picker, input="2\n").output.strip().endswith("acme-prod=Data-Sci")

    @click.command()
    def one_role() -> None:
        click.echo("=".join(resolve(None, "ReadOnly", None, choices=lambda: choices)))

    assert CliRunner().invoke(one_role).output.strip() == "acme-prod=ReadOnly"


def test_completion_offers_accounts_roles_and_profiles() -> None:
    def complete(args: list[str], incomplete: str) -> list[str]:
        from click.shell_completion import ShellComplete

        completer = ShellComplete(cli, {}, "iamgate", "_IAMGATE_COMPLETE")
        return [c.value for c in completer.get_completions(args, incomplete)]

    assert complete(["env", "--account"], "acme-") == ["acme-prod", "acme-ci"]
    assert complete(["env", "--account", "acme-prod", "--role"], "") == ["ReadOnly", "Data-Sci"]
    assert "acme-ci/CIRunner" in complete(["shell", "--profile"], "acme-ci")
    assert complete(["aws", "--profile"], "iamgate-acme-ci") == ["iamgate-acme-ci-CIRunner"]
    script = CliRunner().invoke(cli, ["completion", "bash"])
    assert script.exit_code == 0 and "_IAMGATE_COMPLETE" in script.output
