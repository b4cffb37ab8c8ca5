"""Administration on the gateway host: users and sessions, straight in the state store."""

from __future__ import annotations

import contextlib
import getpass
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.table import Table
from sqlalchemy import Engine

from iamgate.audit.appender import DirectAuditLog
from iamgate.cli.examples import examples
from iamgate.cli.people import wide_console
from iamgate.config import Config, ConfigError, load_config
from iamgate.store.database import open_engine
from iamgate.store.directory import (
    get_user,
    list_login_sessions,
    list_users,
    sync_bootstrap_users,
)
from iamgate.web.admin import Actor, Admin, AdminError, Enrolment

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")


def _stamp(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    required=True,
    help="The gateway's configuration (for its state store).",
)


def open_store(config_path: Path) -> tuple[Config, Engine]:
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    engine = open_engine(config.storage.url)
    sync_bootstrap_users(engine, config.users)
    return config, engine


@contextlib.contextmanager
def administering(config_path: Path) -> Iterator[tuple[Admin, Actor]]:
    """The shared administration code, as the operator at this terminal, on its own short
    audit chain; a refusal becomes the command's error."""
    config, engine = open_store(config_path)
    log = DirectAuditLog(engine)
    try:
        yield Admin(config, engine, log), Actor(getpass.getuser())
    except AdminError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        log.close()


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 12:
        raise click.BadParameter("use at least 12 characters", param_hint="password")
    return password


def _show(enrolment: Enrolment) -> None:
    click.echo(f"TOTP secret for {enrolment.user}: {enrolment.totp_secret}")
    click.echo(f"Enrol it in an authenticator app: {enrolment.otpauth_uri}")


@click.group()
def users() -> None:
    """Add, list, reset, lock and remove users."""


@users.command(
    "add",
    epilog=examples(
        "iamgate users add dana --roles data-scientist --config gateway.yaml",
        'echo "$PASSWORD" | iamgate users add ci-bot --roles ci-runner --password-stdin \\',
        "    --config gateway.yaml",
    ),
)
@config_option
@click.argument("name")
@click.option("--roles", default="", help="Gateway roles, comma-separated.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def users_add(config_path: Path, name: str, roles: str, password_stdin: bool) -> None:
    """Add a user with a password and a new TOTP secret to enrol in an authenticator app."""
    with administering(config_path) as (admin, me):
        wanted = [r for r in roles.split(",") if r]
        unknown = sorted(set(wanted) - set(admin.roles))
        if unknown:
            raise click.BadParameter(f"unknown roles: {', '.join(unknown)}", param_hint="--roles")
        row = get_user(admin.engine, name)
        if row is not None and row.has_password:
            raise click.ClickException(f"user {name} exists; use `iamgate users reset {name}`")
        password = _read_password(password_stdin)
        _show(admin.add_user(name, wanted, by=me, password=password))
    click.echo(f"user {name} added")


@users.command("reset", epilog=examples("iamgate users reset dana --config gateway.yaml"))
@config_option
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the new password from standard input.")
def users_reset(config_path: Path, name: str, password_stdin: bool) -> None:
    """A new password and a new TOTP secret; every session of the user ends."""
    with administering(config_path) as (admin, me):
        if get_user(admin.engine, name) is None:
            raise click.ClickException(f"no user {name}")
        _show(admin.reset(name, by=me, password=_read_password(password_stdin)))
    click.echo(f"user {name} reset; their sessions were revoked")


@users.command("lock", epilog=examples("iamgate users lock dana --config gateway.yaml"))
@config_option
@click.argument("name")
def users_lock(config_path: Path, name: str) -> None:
    """Lock the account and end everything it holds, at once."""
    with administering(config_path) as (admin, me):
        admin.lock(name, by=me)
    click.echo(f"user {name} locked; their sessions and credentials were revoked")


@users.command("unlock", epilog=examples("iamgate users unlock dana --config gateway.yaml"))
@config_option
@click.argument("name")
def users_unlock(config_path: Path, name: str) -> None:
    """Let a locked user log in again."""
    with administering(config_path) as (admin, me):
        admin.unlock(name, by=me)
    click.echo(f"user {name} unlocked")


@users.command(
    "roles",
    epilog=examples(
        "iamgate users roles dana data-scientist contractor --config gateway.yaml",
        "iamgate users roles dana --config gateway.yaml   # no roles",
    ),
)
@config_option
@click.argument("name")
@click.argument("roles", nargs=-1)
def users_roles(config_path: Path, name: str, roles: tuple[str, ...]) -> None:
    """Set the user's gateway roles (none: no access). Applies on the user's next call."""
    with administering(config_path) as (admin, me):
        admin.set_roles(name, roles, by=me)
    click.echo(f"user {name} now holds: {', '.join(roles) or 'no roles'}")


@users.command("rm", epilog=examples("iamgate users rm dana --config gateway.yaml"))
@config_option
@click.argument("name")
def users_rm(config_path: Path, name: str) -> None:
    """Remove a user; their sessions and credentials are revoked."""
    with administering(config_path) as (admin, me):
        admin.remove(name, by=me)
    click.echo(f"user {name} removed; their sessions and credentials were revoked")


@users.command(
    "ls",
    epilog=examples(
        "iamgate users ls --config gateway.yaml", "iamgate users ls --json --config gateway.yaml"
    ),
)
@config_option
@json_option
def users_ls(config_path: Path, as_json: bool) -> None:
    """Every user, their gateway roles, and whether they can log in."""
    _, engine = open_store(config_path)
    table = Table("user", "roles", "can log in", "locked until", "failed logins")
    table.columns[0].no_wrap = True
    now = datetime.now(UTC)
    rows = list_users(engine)
    if as_json:
        listed = [
            {
                "user": row.record.name,
                "roles": list(row.roles),
                "has_password": row.has_password,
                "locked_until": _stamp(row.record.locked_until)
                if row.record.locked_until and row.record.locked_until > now
                else None,
                "failed_logins": row.record.failed_logins,
            }
            for row in rows
        ]
        click.echo(json.dumps(listed, indent=2))
        return
    for row in rows:
        locked = row.record.locked_until
        table.add_row(
            row.record.name,
            ", ".join(row.roles) or "-",
            "yes" if row.has_password else "no (iamgate users reset)",
            locked.strftime("%Y-%m-%d %H:%M UTC") if locked and locked > now else "-",
            str(row.record.failed_logins),
        )
    wide_console().print(table)


@click.group()
def sessions() -> None:
    """List and revoke login sessions and gateway credentials."""


@sessions.command(
    "ls",
    epilog=examples(
        "iamgate sessions ls --user dana --config gateway.yaml",
        "iamgate sessions ls --json --config gateway.yaml",
    ),
)
@config_option
@click.option("--user", default=None, help="Only this user's sessions.")
@json_option
def sessions_ls(config_path: Path, user: str | None, as_json: bool) -> None:
    """Login sessions, newest first, with their state (active, expired, revoked)."""
    _, engine = open_store(config_path)
    table = Table("session", "user", "created", "expires", "state")
    table.columns[0].no_wrap = True
    table.columns[1].no_wrap = True
    now = datetime.now(UTC)
    listed = []
    for s in list_login_sessions(engine, user):
        state = "revoked" if s.revoked_at else ("expired" if s.expires_at <= now else "active")
        listed.append(
            {
                "session": s.id,
                "user": s.user,
                "created_at": _stamp(s.created_at),
                "expires_at": _stamp(s.expires_at),
                "state": state,
            }
        )
        if as_json:
            continue
        table.add_row(
            s.id,
            s.user,
            s.created_at.strftime("%Y-%m-%d %H:%M"),
            s.expires_at.strftime("%Y-%m-%d %H:%M"),
            state,
        )
    if as_json:
        click.echo(json.dumps(listed, indent=2))
        return
    wide_console().print(table)


@sessions.command(
    "revoke",
    epilog=examples(
        "iamgate sessions revoke --user dana --config gateway.yaml",
        "iamgate sessions revoke --access-key ASIA0123456789ABCDEF --config gateway.yaml",
        "iamgate sessions revoke SESSION_ID --config gateway.yaml",
    ),
)
@config_option
@click.argument("session_id", required=False)
@click.option("--user", default=None, help="Revoke everything this user holds.")
@click.option("--access-key", default=None, help="Revoke one gateway credential (ASIA…).")
def sessions_revoke(
    config_path: Path, session_id: str | None, user: str | None, access_key: str | None
) -> None:
    """Takes effect on the next request, on every replica."""
    chosen = [x for x in (session_id, user, access_key) if x]
    if len(chosen) != 1:
        raise click.UsageError("give one of SESSION_ID, --user or --access-key")
    with administering(config_path) as (admin, me):
        if session_id:
            admin.revoke_session(session_id, by=me)
            click.echo(f"revoked login session {session_id}")
        elif user:
            if get_user(admin.engine, user) is None:
                raise click.ClickException(f"no user named {user}")
            active = len(admin.sessions(user))
            admin.revoke_user(user, by=me)
            noun = "session" if active == 1 else "sessions"
            click.echo(
                f"revoked {active} {noun} of {user}, and every gateway credential issued "
                f"to {user} until now"
            )
        elif access_key:
            admin.revoke_credential(access_key, by=me)
            click.echo(f"revoked gateway credential {access_key}")
