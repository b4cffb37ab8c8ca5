"""Which account and IAM role a command is for: --account/--role, or a profile name.

A profile is `ACCOUNT/ROLE` or the name `iamgate profiles sync` writes,
`iamgate-ACCOUNT-ROLE`. With neither, a person at a terminal picks from what they may use
(the last used first, as Granted's `assume` does); a script gets the last one used.
Completion of accounts, roles and profiles reads ~/.iamgate/access.json, which `iamgate
ls`, `iamgate login` and `iamgate profiles sync` keep.
"""

from __future__ import annotations

import configparser
import json
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from click.shell_completion import CompletionItem

from iamgate.aws.profiles import PROFILE_PREFIX
from iamgate.cli.fast import home_dir

F = TypeVar("F", bound=Callable[..., Any])


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def known_targets() -> list[tuple[str, str]]:
    """(account, IAM role) pairs from the last access list seen, roles named exactly."""
    access = _read_json(Path(home_dir()) / "access.json") or {}
    pairs: list[tuple[str, str]] = []
    for account in access.get("accounts", []):
        for role in account.get("roles", []):
            pair = (str(account.get("name")), str(role.get("aws_role")))
            if not any(c in pair[1] for c in "*?") and pair not in pairs:
                pairs.append(pair)
    return pairs


def last_used() -> tuple[str, str] | None:
    last = _read_json(Path(home_dir()) / "last.json") or {}
    account, role = last.get("account"), last.get("role")
    return (account, role) if isinstance(account, str) and isinstance(role, str) else None


def remember_used(account: str, role: str) -> None:
    path = Path(home_dir()) / "last.json"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"account": account, "role": role}, f)


def _from_aws_config(name: str) -> tuple[str, str] | None:
    """--account and --role of the profile's credential_process in the AWS config file."""
    parser = configparser.RawConfigParser(strict=False)
    path = os.environ.get("AWS_CONFIG_FILE") or str(Path.home() / ".aws" / "config")
    try:
        parser.read(path)
        command = parser.get(f"profile {name}", "credential_process", fallback="")
        words = shlex.split(command)
    except (configparser.Error, OSError, UnicodeDecodeError, ValueError):
        return None
    if "credentials" not in words:
        return None
    found = {}
    for flag in ("--account", "--role"):
        if flag in words and words.index(flag) + 1 < len(words):
            found[flag] = words[words.index(flag) + 1]
    if len(found) != 2:
        return None
    return found["--account"], found["--role"]


def parse_profile(name: str) -> tuple[str, str]:
    """`ACCOUNT/ROLE`, `iamgate-ACCOUNT-ROLE`, or any AWS CLI profile run by iamgate."""
    if "/" in name:
        account, _, role = name.removeprefix(PROFILE_PREFIX).partition("/")
        if account and role:
            return account, role
    configured = _from_aws_config(name)
    if configured is not None:
        return configured
    rest = name.removeprefix(PROFILE_PREFIX)
    for account, role in known_targets():
        if rest == f"{account}-{role}":
            return account, role
    if name.startswith(PROFILE_PREFIX) and "-" in rest:
        account, _, role = rest.rpartition("-")
        return account, role
    raise click.BadParameter(
        f"no profile named {name!r}: give ACCOUNT/ROLE (e.g. acme-prod/ReadOnly) or "
        "iamgate-ACCOUNT-ROLE; `iamgate ls` lists them",
        param_hint="--profile",
    )


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def pick(choices: list[tuple[str, str]], default: tuple[str, str] | None) -> tuple[str, str]:
    """Ask which account and role, by number; the last used is the default."""
    if not choices:
        raise click.UsageError("you may use no account and role yet (see `iamgate ls`)")
    for n, (account, role) in enumerate(choices, 1):
        mark = "  (last used)" if (account, role) == default else ""
        click.echo(f"{n:3}  {account}/{role}{mark}", err=True)
    start = choices.index(default) + 1 if default in choices else None
    number = click.prompt(
        "Which one", type=click.IntRange(1, len(choices)), default=start, err=True
    )
    return choices[number - 1]


def resolve(
    account: str | None,
    role: str | None,
    profile: str | None,
    *,
    choices: Callable[[], list[tuple[str, str]]] | None = None,
) -> tuple[str, str]:
    """The (account, role) a command is for. `choices` lists what may be picked; without it
    (credential_process, scripts) both must be named."""
    if profile is not None:
        if account or role:
            raise click.UsageError("give --profile, or --account and --role, not both")
        return parse_profile(profile)
    if account and role:
        return account, role
    if choices is None:
        raise click.UsageError("give --account and --role, or --profile ACCOUNT/ROLE")
    last = last_used()
    if _interactive():
        options = [(a, r) for a, r in choices() if (account in (None, a)) and (role in (None, r))]
        if len(options) == 1 and (account or role):
            return options[0]
        return pick(options, last)
    if last is not None and account in (None, last[0]) and role in (None, last[1]):
        click.echo(f"using {last[0]}/{last[1]} (the last used; --profile to choose)", err=True)
        return last
    raise click.UsageError(
        "which account and role? give --account and --role, or --profile ACCOUNT/ROLE "
        "(`iamgate ls` lists them)"
    )


def _complete_account(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    seen: list[str] = []
    for account, _ in known_targets():
        if account.startswith(incomplete) and account not in seen:
            seen.append(account)
    return [CompletionItem(a) for a in seen]


def _complete_role(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    account = ctx.params.get("account")
    seen: list[str] = []
    for a, role in known_targets():
        if account in (None, a) and role.startswith(incomplete) and role not in seen:
            seen.append(role)
    return [CompletionItem(r) for r in seen]


def _complete_profile(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    names = [f"{a}/{r}" for a, r in known_targets()]
    names += [f"{PROFILE_PREFIX}{a}-{r}" for a, r in known_targets()]
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


def target_options(*, required: bool = False) -> Callable[[F], F]:
    """--account, --role and --profile, completed from the access list last seen."""
    pick_note = "" if required else " With none of them, pick from a list (or the last used)."

    def decorate(f: F) -> F:
        f = click.option(
            "--profile",
            default=None,
            shell_complete=_complete_profile,
            help="ACCOUNT/ROLE or iamgate-ACCOUNT-ROLE, instead of --account and --role."
            + pick_note,
        )(f)
        f = click.option(
            "--role",
            default=None,
            shell_complete=_complete_role,
            help="The IAM role in that account, e.g. ReadOnly.",
        )(f)
        f = click.option(
            "--account",
            default=None,
            shell_complete=_complete_account,
            help="The account's name (or id), e.g. acme-prod.",
        )(f)
        return f

    return decorate
