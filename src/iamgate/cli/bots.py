"""`iamgate bots …`: the CI jobs and machines that act as `bot:NAME`.

On the gateway host with --config (the state store, as the operator at this terminal), or
as the administrator logged in with `iamgate login` (the JSON API's /bots): both run the
use cases of `control/bots.py`, and print the same data (`bot_data`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from iamgate.cli.admin import administering, config_option, json_option
from iamgate.cli.examples import examples
from iamgate.cli.join import bots_token
from iamgate.cli.people import wide_console
from iamgate.cli.remote import administrator, path_part
from iamgate.control.bots import Bots, BotSummary
from iamgate.identity.bots import bot_principal
from iamgate.store.bots import Issued

TIME = "%Y-%m-%dT%H:%M:%SZ"


def _stamp(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime(TIME) if value else None


def _credential(c: Issued) -> dict[str, Any]:
    return {
        "access_key_id": c.access_key_id,
        "account_id": c.account_id,
        "aws_role": c.aws_role,
        "issued_at": _stamp(c.issued_at),
        "expires_at": _stamp(c.expires_at),
    }


def bot_data(b: BotSummary) -> dict[str, Any]:
    """A bot as the CLI prints it: the API's shape (`web.api_models.Bot`), so --config and
    the logged-in administrator print the same."""
    return {
        "name": b.name,
        "principal": bot_principal(b.name),
        "roles": list(b.roles),
        "source": b.source,
        "description": b.description,
        "created_at": _stamp(b.created_at),
        "bindings": [{"name": x.name, "issuer": x.issuer, "claims": x.claims} for x in b.bindings],
        "last_exchange": _credential(b.last_exchange) if b.last_exchange else None,
        "last_binding": b.last_binding,
        "last_job": b.last_job,
        "live_credentials": [_credential(c) for c in b.live],
        "live_sessions": [
            {
                "id": x.id,
                "kind": x.kind,
                "created_at": _stamp(x.created_at),
                "expires_at": _stamp(x.expires_at),
            }
            for x in b.sessions
        ],
    }


def _roles(text: str) -> list[str]:
    return [r.strip() for r in text.split(",") if r.strip()]


@click.group("bots")
def bots_group() -> None:
    """Add, list, change and remove bots: CI jobs and machines that get gateway credentials
    by an OIDC token a binding maps to them (on the gateway host with --config, or as the
    administrator logged in with `iamgate login`). Bindings are in the configuration."""


@bots_group.command(
    "add",
    epilog=examples(
        "iamgate bots add infra-deploy --roles ci-runner --config gateway.yaml",
        "iamgate bots add infra-deploy --roles ci-runner   # as the administrator logged in",
    ),
)
@config_option
@click.argument("name")
@click.option("--roles", default="", help="Gateway roles, comma-separated.")
@click.option("--description", default="", help="What the bot is for (shown to admins).")
def bots_add(config_path: Path | None, name: str, roles: str, description: str) -> None:
    """Add a bot with gateway roles; a binding under oidc.bindings maps jobs' tokens to it."""
    wanted = _roles(roles)
    if config_path is None:
        body = {"name": name, "roles": wanted, "description": description}
        added = administrator().call("POST", "/api/v1/bots", body)
    else:
        with administering(config_path) as (admin, me):
            bots = Bots(admin.live, admin.engine, admin.audit)
            added = bot_data(bots.add(name, wanted, by=me, description=description))
    click.echo(f"bot {name} added with roles: {', '.join(wanted) or 'none'}")
    if not added["bindings"]:
        click.echo(
            f"no binding maps tokens to bot {name} yet: add one under oidc.bindings "
            "(see the README's CI identity)"
        )


@bots_group.command(
    "roles",
    epilog=examples(
        "iamgate bots roles infra-deploy ci-runner,ci-deploy --config gateway.yaml",
        'iamgate bots roles infra-deploy "" --config gateway.yaml   # no roles',
        "iamgate bots roles infra-deploy ci-runner   # as the administrator logged in",
    ),
)
@config_option
@click.argument("name")
@click.argument("roles")
def bots_roles(config_path: Path | None, name: str, roles: str) -> None:
    """Set the bot's gateway roles (comma-separated; "" for none), from its jobs' next call."""
    wanted = _roles(roles)
    if config_path is None:
        administrator().call("PUT", f"/api/v1/bots/{path_part(name)}/roles", {"roles": wanted})
    else:
        with administering(config_path) as (admin, me):
            Bots(admin.live, admin.engine, admin.audit).set_roles(name, wanted, by=me)
    click.echo(f"bot {name} now holds: {', '.join(wanted) or 'no roles'}")


@bots_group.command(
    "rm",
    epilog=examples(
        "iamgate bots rm infra-deploy --config gateway.yaml",
        "iamgate bots rm infra-deploy   # as the administrator logged in",
    ),
)
@config_option
@click.argument("name")
def bots_rm(config_path: Path | None, name: str) -> None:
    """Remove a bot; every credential its jobs hold stops on its next call."""
    if config_path is None:
        administrator().call("DELETE", f"/api/v1/bots/{path_part(name)}")
    else:
        with administering(config_path) as (admin, me):
            Bots(admin.live, admin.engine, admin.audit).remove(name, by=me)
    click.echo(f"bot {name} removed; its credentials were revoked")


@bots_group.command(
    "ls",
    epilog=examples(
        "iamgate bots ls --config gateway.yaml",
        "iamgate bots ls --json   # as the administrator logged in",
    ),
)
@config_option
@json_option
def bots_ls(config_path: Path | None, as_json: bool) -> None:
    """Every bot: where it is defined, its gateway roles and bindings, its last exchange and
    how many credentials its jobs hold now."""
    if config_path is None:
        listed: list[dict[str, Any]] = administrator().call("GET", "/api/v1/bots")["bots"]
    else:
        with administering(config_path, changes=False) as (admin, _):
            listed = [bot_data(b) for b in Bots(admin.live, admin.engine, admin.audit).bots()]
    if as_json:
        click.echo(json.dumps(listed, indent=2))
        return
    table = Table(
        "bot", "defined in", "roles", "bindings", "last exchange", "live credentials", "sessions"
    )
    table.columns[0].no_wrap = True
    for b in listed:
        last = b["last_exchange"]
        table.add_row(
            b["name"],
            b["source"],
            ", ".join(b["roles"]) or "-",
            ", ".join(x["name"] for x in b["bindings"]) or "none",
            f"{last['issued_at']} {last['account_id']} {last['aws_role']}" if last else "never",
            str(len(b["live_credentials"])),
            str(len(b["live_sessions"])),
        )
    wide_console().print(table)


# A one-time join token for a machine with no OIDC (`iamgate bots token`, cli/join.py).
bots_group.add_command(bots_token)
