"""`iamgate request …`: ask for a requestable gateway role, review, drop, revoke.

As the user logged in with `iamgate login`, through the gateway's JSON API; or on the gateway
host with --config and --as USER, straight in the state store. Both run the same use cases
(`control/requests.py`) and print the same data (`request_data`).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import click
from rich.table import Table

from iamgate.audit.appender import DirectAuditLog
from iamgate.cli.admin import open_store, wait_until_in_force
from iamgate.cli.examples import examples
from iamgate.cli.people import wide_console
from iamgate.cli.remote import Remote, logged_in, path_part
from iamgate.control.errors import ControlError
from iamgate.control.requests import Requests, ask_of, request_data
from iamgate.control.users import Actor

WAIT_POLL_SECONDS = 1.0


class Desk(Protocol):
    """Where requests are made and reviewed: the gateway's API, or its store here."""

    def create(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def list(self, *, mine: bool, to_review: bool) -> list[dict[str, Any]]: ...
    def show(self, request_id: str) -> dict[str, Any]: ...
    def act(self, request_id: str, verb: str, body: dict[str, Any]) -> dict[str, Any]: ...


class RemoteDesk:
    def __init__(self, remote: Remote) -> None:
        self.remote = remote

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        reply: dict[str, Any] = self.remote.call("POST", "/api/v1/requests", body)
        return reply

    def list(self, *, mine: bool, to_review: bool) -> list[dict[str, Any]]:
        query = {"mine": "true"} if mine else {"to_review": "true"} if to_review else None
        return list(self.remote.call("GET", "/api/v1/requests", query=query)["requests"])

    def show(self, request_id: str) -> dict[str, Any]:
        reply: dict[str, Any] = self.remote.call("GET", f"/api/v1/requests/{path_part(request_id)}")
        return reply

    def act(self, request_id: str, verb: str, body: dict[str, Any]) -> dict[str, Any]:
        path = f"/api/v1/requests/{path_part(request_id)}/{verb}"
        reply: dict[str, Any] = self.remote.call("POST", path, body)
        return reply


class LocalDesk:
    def __init__(self, requests: Requests, me: Actor) -> None:
        self.requests, self.me = requests, me

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        request = self.requests.create(ask_of(**body), by=self.me)
        return self.show(request.id)

    def list(self, *, mine: bool, to_review: bool) -> list[dict[str, Any]]:
        views = self.requests.list(by=self.me, mine=mine, to_review=to_review)
        return [request_data(v) for v in views]

    def show(self, request_id: str) -> dict[str, Any]:
        return request_data(self.requests.show(request_id, by=self.me))

    def act(self, request_id: str, verb: str, body: dict[str, Any]) -> dict[str, Any]:
        reason = str(body.get("reason") or "")
        if verb in ("approve", "deny"):
            accounts = list(body.get("accounts") or [])
            self.requests.review(
                request_id, approve=verb == "approve", reason=reason, by=self.me, accounts=accounts
            )
        elif verb == "drop":
            self.requests.drop(request_id, by=self.me, reason=reason)
        else:
            self.requests.revoke(request_id, by=self.me, reason=reason)
        return self.show(request_id)


@contextlib.contextmanager
def desk(config_path: Path | None, user: str | None, *, grants: bool = False) -> Iterator[Desk]:
    """The API as the user logged in, or (--config) the store as --as USER; a refusal becomes
    the command's error. A change to a grant (`grants`) returns once the running gateway has
    it in force, as a revocation does (the API's replica applies it before it answers)."""
    if config_path is None:
        if user is not None:
            raise click.BadParameter("--as goes with --config (on the gateway host)")
        yield RemoteDesk(logged_in())
        return
    if user is None:
        raise click.BadParameter("on the gateway host, say who acts: --as USER")
    config, engine = open_store(config_path)
    log = DirectAuditLog(engine)
    try:
        yield LocalDesk(Requests(config, engine, log), Actor(user, user_agent="iamgate-cli"))
    except ControlError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        log.close()
        engine.dispose()
    if grants:
        wait_until_in_force(config.server.url, datetime.now(UTC))


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="The gateway's configuration, on the gateway host (with --as). Without it, the "
    "gateway of `iamgate login`, as the user logged in there.",
)
as_option = click.option(
    "--as", "user", default=None, metavar="USER", help="With --config: the user who acts."
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")


def _accounts(data: dict[str, Any]) -> str:
    if data["state"] in ("approved", "active", "ended"):
        return ", ".join(
            a["name"] + ("" if a["approved"] else " (not approved)") for a in data["accounts"]
        )
    return ", ".join(a["name"] for a in data["accounts"])


def _print(data: dict[str, Any]) -> None:
    state = data["state"] + (f" ({data['ended_by']})" if data.get("ended_by") else "")
    lines = [
        f"request {data['id']}: {state}",
        f"  {data['requester']} asks for role {data['role']} for {data['duration']}",
        f"  accounts: {_accounts(data)}",
        f"  reason: {data['reason'] or '-'}",
    ]
    if data.get("ticket"):
        lines.append(f"  ticket: {data['ticket']}")
    if data.get("actions"):
        lines.append(f"  only: {', '.join(data['actions'])}")
    lines.append(f"  needs: {' and '.join(data['stages'])}")
    if data["state"] == "pending":
        lines.append(f"  waits for review until {data['pending_until']}")
    if data.get("starts_at"):
        lines.append(f"  granted from {data['starts_at']} until {data['ends_at']}")
    for review in data["reviews"]:
        lines.append(
            f"  {review['decision']} by {review['reviewer']} at {review['at']}"
            f" for {', '.join(review['accounts']) or '-'}: {review['reason'] or '-'}"
        )
    click.echo("\n".join(lines))


@click.group("request")
def request_group() -> None:
    """Ask for a requestable gateway role for a time and a reason; review others' requests.
    An approved request applies to the credentials you already have, on your next call."""


@request_group.command(
    "create",
    epilog=examples(
        "iamgate request create --role prod-admin --account acme-prod --duration 2h \\",
        "    --reason 'INC-42: delete the broken replica'",
        "iamgate request create --role prod-admin --accounts env=prod --reason '...' --wait",
        "iamgate request create --role prod-admin --account acme-prod --start +30m \\",
        "    --action 'rds:Delete*' --reason '...'",
    ),
)
@click.option("--role", required=True, help="The requestable gateway role.")
@click.option("--account", "accounts", multiple=True, help="An account by name or id (repeat).")
@click.option("--accounts", "selector", default=None, help="Accounts by label, e.g. env=prod.")
@click.option("--duration", default=None, help="How long, e.g. 2h (default: the role's).")
@click.option("--reason", default="", help="Why (the role may require it).")
@click.option("--start", default=None, help="When to start: ISO 8601, or +30m from now.")
@click.option("--action", "actions", multiple=True, help="Only this IAM action (repeat).")
@click.option("--ticket", default=None, help="A ticket reference.")
@click.option("--wait", is_flag=True, help="Wait until the request is reviewed (or expires).")
@config_option
@as_option
@json_option
def request_create(
    role: str,
    accounts: tuple[str, ...],
    selector: str | None,
    duration: str | None,
    reason: str,
    start: str | None,
    actions: tuple[str, ...],
    ticket: str | None,
    wait: bool,
    config_path: Path | None,
    user: str | None,
    as_json: bool,
) -> None:
    """Ask for a requestable gateway role, for some accounts, for a time."""
    body: dict[str, Any] = {
        "role": role,
        "accounts": list(accounts),
        "selector": selector,
        "duration": duration,
        "reason": reason,
        "start": start,
        "actions": list(actions),
        "ticket": ticket,
    }
    with desk(config_path, user) as where:
        data = where.create({k: v for k, v in body.items() if v not in (None, [])})
        if not as_json:
            click.echo(f"request {data['id']} created; it needs {' and '.join(data['stages'])}")
        while wait and data["state"] == "pending":
            time.sleep(WAIT_POLL_SECONDS)
            data = where.show(data["id"])
    if as_json:
        click.echo(json.dumps(data, indent=2))
    elif wait:
        _print(data)
    if wait and data["state"] not in ("approved", "active"):
        raise SystemExit(1)


@request_group.command(
    "ls",
    epilog=examples(
        "iamgate request ls --mine",
        "iamgate request ls --to-review",
        "iamgate request ls --json | jq -r '.[].id'",
    ),
)
@click.option("--mine", is_flag=True, help="Only my requests.")
@click.option("--to-review", is_flag=True, help="Only requests waiting for my review.")
@config_option
@as_option
@json_option
def request_ls(
    mine: bool, to_review: bool, config_path: Path | None, user: str | None, as_json: bool
) -> None:
    """Requests I may see: mine, those I review, or (administrators) all."""
    if mine and to_review:
        raise click.BadParameter("--mine or --to-review, not both")
    with desk(config_path, user) as where:
        found = where.list(mine=mine, to_review=to_review)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    table = Table("id", "state", "requester", "role", "accounts", "duration", "reason", "created")
    for data in found:
        state = data["state"] + (f" ({data['ended_by']})" if data.get("ended_by") else "")
        table.add_row(
            data["id"],
            state,
            data["requester"],
            data["role"],
            _accounts(data),
            data["duration"],
            data["reason"],
            data["created_at"],
        )
    wide_console().print(table)


@request_group.command("show", epilog=examples("iamgate request show rq-0123456789"))
@click.argument("request_id", metavar="ID")
@config_option
@as_option
@json_option
def request_show(
    request_id: str, config_path: Path | None, user: str | None, as_json: bool
) -> None:
    """One request: its accounts, stages, reviews and grant."""
    with desk(config_path, user) as where:
        data = where.show(request_id)
    click.echo(json.dumps(data, indent=2)) if as_json else _print(data)


def _acting(verb: str, summary: str, *, reason_required: bool) -> click.Command:
    @click.argument("request_id", metavar="ID")
    @click.option(
        "--reason",
        required=reason_required,
        default=None if reason_required else "",
        help="Why (recorded in the audit trail).",
    )
    @config_option
    @as_option
    @json_option
    def command(
        request_id: str,
        reason: str,
        config_path: Path | None,
        user: str | None,
        as_json: bool,
        **extra: Any,
    ) -> None:
        body: dict[str, Any] = {"reason": reason}
        if extra.get("accounts"):
            body["accounts"] = list(extra["accounts"])
        with desk(config_path, user, grants=verb != "deny") as where:
            data = where.act(request_id, verb, body)
        if as_json:
            click.echo(json.dumps(data, indent=2))
        else:
            _print(data)

    command.__doc__ = summary
    if verb == "approve":
        command = click.option(
            "--account",
            "accounts",
            multiple=True,
            help="Approve only this account (repeat); default: every one you review.",
        )(command)
    return request_group.command(
        verb, epilog=examples(f"iamgate request {verb} rq-0123456789 --reason '...'")
    )(command)


_acting("approve", "Approve a request waiting for your review.", reason_required=True)
_acting("deny", "Deny a request: any deny ends it.", reason_required=True)
_acting("drop", "End your own request: cancel it, or end its grant now.", reason_required=False)
_acting("revoke", "End a grant you reviewed (or, as an administrator, any).", reason_required=False)
