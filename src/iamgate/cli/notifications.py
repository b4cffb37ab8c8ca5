"""`iamgate notifications log`: the delivery log of access-request notifications, for
administrators: what was sent to which webhook or address, delivered or still retried, and
the last error. Secrets are never stored, so never shown."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from iamgate.cli.admin import config_option, json_option, open_store
from iamgate.cli.examples import examples
from iamgate.cli.people import wide_console
from iamgate.cli.remote import administrator
from iamgate.control.notifications import log_data
from iamgate.store.notifications import delivery_log


@click.group("notifications")
def notifications_group() -> None:
    """Notifications of access requests (webhooks and e-mail)."""


@notifications_group.command(
    "log",
    epilog=examples(
        "iamgate notifications log --config gateway.yaml",
        "iamgate notifications log --request rq-0123456789 --json   # as the administrator",
    ),
)
@config_option
@click.option("--request", "request_id", default=None, help="Only this request's.")
@click.option("--limit", default=100, show_default=True, help="The newest this many.")
@json_option
def notifications_log(
    config_path: Path | None, request_id: str | None, limit: int, as_json: bool
) -> None:
    """What was sent, to whom, and whether it arrived (newest first)."""
    if config_path is None:
        query = {"limit": str(limit)} | ({"request": request_id} if request_id else {})
        rows = list(administrator().call("GET", "/api/v1/notifications", query=query)["deliveries"])
    else:
        _, engine = open_store(config_path)
        rows = log_data(delivery_log(engine, request_id=request_id, limit=limit))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table("id", "request", "event", "channel", "target", "state", "tries", "last error")
    for row in rows:
        table.add_row(
            str(row["id"]),
            str(row["request_id"]),
            str(row["event"]),
            str(row["channel"]),
            str(row["target"]),
            str(row["state"]),
            str(row["attempts"]),
            str(row["last_error"] or ""),
        )
    wide_console().print(table)
