"""`iamgate audit`: search, export and verify the audit trail on the gateway host."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from iamgate.audit.search import export, heads, search, verify
from iamgate.cli.admin import config_option, host_config_option, open_store
from iamgate.cli.examples import examples
from iamgate.cli.people import wide_console
from iamgate.cli.remote import Remote, logged_in
from iamgate.control.audit_queries import AuditQuery, read


@click.group()
def audit() -> None:
    """The audit trail: every call, every decision."""


@audit.command(
    "search",
    epilog=examples(
        "iamgate audit search --principal dana --decision denied --config gateway.yaml",
        "iamgate audit search --action 'rds:Delete*' --since 2026-11-24T00:00:00Z --json \\",
        "    --config gateway.yaml",
        "iamgate audit search --claim run_id=9876543210 --config gateway.yaml",
        "iamgate audit search --principal bot:infra-deploy --claim ref=refs/heads/main \\",
        "    --config gateway.yaml",
        "iamgate audit search --principal dana   # as the administrator logged in",
    ),
)
@config_option
@click.option("--principal", help="User or bot name.")
@click.option("--account", help="Account name or id.")
@click.option("--role", "aws_role", help="IAM role name.")
@click.option("--service", help="AWS service, e.g. s3 or rds.")
@click.option("--action", help="IAM action or glob, e.g. 'rds:Delete*'.")
@click.option(
    "--decision", type=click.Choice(["allowed", "denied", "error"]), help="The gateway's decision."
)
@click.option("--status", type=int, help="HTTP status of the answer, e.g. 403.")
@click.option("--since", help="ISO 8601 time, UTC (e.g. 2026-11-24T00:00:00Z).")
@click.option("--until", help="ISO 8601 time, UTC: events before it.")
@click.option("--type", "kind", default="aws.call", show_default=True, help="Event type.")
@click.option("--limit", default=50, show_default=True, help="At most this many events.")
@click.option(
    "--claim",
    help="A CI job's token claim, NAME=VALUE (repository=acme/infra, run_id=…): its calls.",
)
@click.option("--json", "as_json", is_flag=True, help="JSON lines, for scripts.")
def audit_search(
    config_path: Path | None,
    principal: str | None,
    account: str | None,
    aws_role: str | None,
    service: str | None,
    action: str | None,
    decision: str | None,
    status: int | None,
    since: str | None,
    until: str | None,
    kind: str,
    limit: int,
    claim: str | None,
    as_json: bool,
) -> None:
    """Events newest first.

    Without --config, the gateway of `iamgate login` answers: everyone's events for an
    administrator, one's own for anyone else."""
    asked = AuditQuery(
        principal=principal,
        account=account,
        role=aws_role,
        service=service,
        action=action,
        decision=decision,
        status=None if status is None else str(status),
        since=since,
        until=until,
        type=kind,
        claim=claim,
    )
    if config_path is None:
        events, names = _remote_search(asdict(asked), limit)
    else:
        config, engine = open_store(config_path)
        found = read(config, asked)
        if found.problems:
            raise click.ClickException(" ".join(found.problems))
        events = search(engine, replace(found.filters, limit=limit))
        names = {a.id: a.name for a in config.aws.accounts}
    if as_json:
        for event in events:
            sys.stdout.write(json.dumps(event) + "\n")
        return
    table = Table(
        "time", "principal", "account", "role", "action", "decision", "status", "rule / reason"
    )
    for event in events:
        f = event["fields"]
        table.add_row(
            event["time"][:19].replace("T", " "),
            event.get("principal") or "-",
            names.get(f.get("account_id") or "", f.get("account_id") or "-"),
            f.get("aws_role") or "-",
            f.get("action") or "-",
            f.get("decision") or "-",
            str(f.get("status") or "-"),
            f.get("rule") or f.get("reason") or "",
        )
    wide_console().print(table)


PAGE = 1000  # the JSON API's largest page


def _remote_search(
    filters: dict[str, str | None], limit: int
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """`GET /api/v1/audit`, page after page (`before`), up to `limit` events; and the names
    of the accounts the caller may know."""
    remote = logged_in()
    if not remote.administer and filters["principal"] not in (None, remote.user):
        raise click.ClickException(
            f"{remote.not_administrator()}; you may search your own events (leave out --principal)"
        )
    query = {k: v for k, v in filters.items() if v is not None}
    events: list[dict[str, Any]] = []
    while len(events) < limit:
        page = min(PAGE, limit - len(events))
        reply = remote.call("GET", "/api/v1/audit", query=query | {"limit": str(page)})
        events += reply["events"]
        if not reply["next"] or len(reply["events"]) < page:
            break
        query["before"] = reply["next"]
    return events[:limit], _account_names(remote)


def _account_names(remote: Remote) -> dict[str, str]:
    if remote.administer:
        accounts = remote.call("GET", "/api/v1/accounts")["accounts"]
    else:
        accounts = remote.call("GET", "/api/v1/access")["accounts"]
    return {a["id"]: a["name"] for a in accounts}


@audit.command(
    "export",
    epilog=examples(
        "iamgate audit export --since 2026-11-01T00:00:00Z --head-file heads.json \\",
        "    --config gateway.yaml > audit.jsonl",
    ),
)
@host_config_option
@click.option("--since", help="ISO 8601 time, UTC.")
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl", help="Output format."
)
@click.option(
    "--head-file",
    type=click.Path(path_type=Path),
    help="Also write each chain's head here, to anchor it off-host.",
)
def audit_export(config_path: Path, since: str | None, fmt: str, head_file: Path | None) -> None:
    """Stream events as JSON lines, for a SIEM."""
    _, engine = open_store(config_path)
    for event in export(engine, since):
        sys.stdout.write(json.dumps(event, ensure_ascii=False) + "\n")
    if head_file is not None:
        head_file.write_text(json.dumps(heads(engine), indent=2) + "\n")


@audit.command(
    "verify", epilog=examples("iamgate audit verify --head-file heads.json --config gateway.yaml")
)
@host_config_option
@click.option(
    "--head-file",
    type=click.Path(path_type=Path, exists=True),
    help="Chain heads anchored earlier by `audit export --head-file`.",
)
def audit_verify(config_path: Path, head_file: Path | None) -> None:
    """Check every chain; name each edited, deleted or reordered event by sequence number."""
    _, engine = open_store(config_path)
    anchored = json.loads(head_file.read_text()) if head_file else None
    problems = verify(engine, anchored)
    chains = heads(engine)
    if problems:
        for problem in problems:
            click.echo(str(problem), err=True)
        raise SystemExit(1)
    total = sum(h["seq"] for h in chains.values())
    click.echo(f"audit log intact: {len(chains)} chains, {total} events")
