"""`iamgate config check`: is a configuration file usable, and does it say what it means?"""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from iamgate.cli.examples import examples
from iamgate.config import Config, ConfigError, load_config
from iamgate.config_hints import action_pattern_problems, did_you_mean

_EXTRA = re.compile(r"^(?P<head>.*?:\d+: )(?P<key>\S+): Extra inputs are not permitted$")


def _loc(dotted: str) -> list[str | int]:
    loc: list[str | int] = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", dotted):
        loc.append(int(index) if index else name)
    return loc


def with_hints(message: str) -> str:
    """A loader error, each unknown key followed by the known key it is closest to."""
    lines = []
    for line in message.splitlines():
        extra = _EXTRA.match(line)
        if extra and "did you mean" not in line:
            line += did_you_mean(Config, _loc(extra["key"]))
        lines.append(line)
    return "\n".join(lines)


def _line_of(text: str, pattern: str) -> int | None:
    for number, line in enumerate(text.splitlines(), 1):
        if pattern in line:
            return number
    return None


@click.group("config")
def config_group() -> None:
    """Check a gateway configuration before serving or reloading it."""


@config_group.command(
    "check",
    epilog=examples(
        "iamgate config check --config gateway.yaml",
        "iamgate config check --config gateway.yaml --json",
        "iamgate config check --config gateway.yaml && systemctl reload iamgate",
    ),
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    required=True,
    help="The gateway's YAML configuration.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON, for scripts.")
def config_check(config_path: Path, as_json: bool) -> None:
    """Validate the file as `iamgate serve` would, then flag what is valid but likely wrong:
    action patterns (allow, deny, guardrails) that match no IAM action, such as `rds:Delte*`.

    Exits 1 when the file cannot be used or something is flagged."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        errors = with_hints(str(exc)).splitlines()
        if as_json:
            click.echo(json.dumps({"ok": False, "errors": errors, "warnings": []}, indent=2))
            raise SystemExit(1) from None
        raise click.ClickException("\n".join(errors)) from None
    try:
        text = config_path.read_text()
    except (OSError, UnicodeDecodeError):
        text = ""
    warnings = []
    for problem in action_pattern_problems(config):
        line = _line_of(text, problem.pattern)
        warnings.append(f"{config_path}:{line or '?'}: {problem}")
    if as_json:
        report = {
            "ok": not warnings,
            "errors": [],
            "warnings": warnings,
            "accounts": len(config.aws.accounts),
            "roles": len(config.roles),
            "users": len(config.users),
            "bots": len(config.bots),
            "oidc_bindings": len(config.oidc.bindings),
        }
        click.echo(json.dumps(report, indent=2))
    else:
        for warning in warnings:
            click.echo(warning, err=True)
        summary = (
            f"{len(config.aws.accounts)} accounts, {len(config.roles)} roles, "
            f"{len(config.users)} users"
        )
        if config.bots or config.oidc.bindings:
            bots, bindings = len(config.bots), len(config.oidc.bindings)
            summary += f", {bots} bot{'s' * (bots != 1)}, {bindings} OIDC binding"
            summary += "s" * (bindings != 1)
        if warnings:
            problems = f"{len(warnings)} problem{'s' if len(warnings) > 1 else ''}"
            click.echo(f"{config_path}: {problems} ({summary})", err=True)
        else:
            click.echo(f"{config_path}: OK ({summary})")
    if warnings:
        raise SystemExit(1)
