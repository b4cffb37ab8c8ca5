"""Administration on the gateway host: users and sessions, straight in the state store."""

from __future__ import annotations

import contextlib
import getpass
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.table import Table
from sqlalchemy import Engine

from iamgate.audit.appender import DirectAuditLog
from iamgate.cli.examples import examples
from iamgate.cli.people import wide_console
from iamgate.cli.remote import administrator, path_part
from iamgate.config import Config, ConfigError, load_config
from iamgate.control.bots import Bots
from iamgate.control.errors import ControlError
from iamgate.control.users import Actor, Admin, Enrolment, session_state
from iamgate.store.database import open_engine
from iamgate.store.users import get_user, sync_bootstrap_users

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")


def _stamp(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="The gateway's configuration, on the gateway host (its state store). Without it, "
    "the gateway of `iamgate login`, as the administrator logged in there.",
)
host_config_option = click.option(
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
def administering(config_path: Path, *, changes: bool = True) -> Iterator[tuple[Admin, Actor]]:
    """The shared administration code, as the operator at this terminal, on its own short
    audit chain; a refusal becomes the command's error. A change returns once the running
    gateway has it in force (see `wait_until_in_force`)."""
    config, engine = open_store(config_path)
    log = DirectAuditLog(engine)
    try:
        yield Admin(config, engine, log), Actor(getpass.getuser())
    except ControlError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        log.close()
    if changes:
        wait_until_in_force(config.server.url, datetime.now(UTC))


IN_FORCE_WAIT_SECONDS = 10.0


def wait_until_in_force(url: str, committed: datetime) -> None:
    """Until the gateway at `url` has read the store since `committed`.

    A replica reads users and revocations every half second; a person who revokes a key
    and at once tries it (the demo's story 3, or a script) must find it refused, on a loaded
    machine too. The gateway says in its health answer when its last read began; this
    host's clock is the gateway's. Without a gateway answering, the change is in force when
    one starts; with one that does not read the store, the operator is warned.
    """
    health = f"{url.rstrip('/')}/api/v1/health"
    deadline = time.monotonic() + IN_FORCE_WAIT_SECONDS
    while True:
        try:
            with urllib.request.urlopen(health, timeout=2) as answer:  # noqa: S310 - our URL
                as_of = json.load(answer).get("directory_as_of")
        except urllib.error.HTTPError as starting:  # 503 while models compile: it answers
            as_of = json.load(starting).get("directory_as_of")
        except (OSError, ValueError):
            return  # no gateway (or not ours) answers: one applies the store when it starts
        if as_of and datetime.fromisoformat(as_of) > committed:
            return
        if time.monotonic() > deadline:
            click.echo(
                f"warning: the gateway at {url} has not read the state store for "
                f"{IN_FORCE_WAIT_SECONDS:.0f} s; this is in force once it does",
                err=True,
            )
            return
        time.sleep(0.05)


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


def _enrolment(reply: dict[str, Any]) -> Enrolment:
    return Enrolment(
        str(reply["user"]), reply.get("password"), str(reply["totp_secret"]), reply["otpauth_uri"]
    )


def _remote_users() -> tuple[Any, dict[str, dict[str, Any]]]:
    remote = administrator()
    listed = remote.call("GET", "/api/v1/users")["users"]
    return remote, {u["name"]: u for u in listed}


def _parse(stamp: str | None) -> datetime | None:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None


@click.group()
def users() -> None:
    """Add, list, reset, lock and remove users (on the gateway host with --config, or as the
    administrator logged in with `iamgate login`)."""


@users.command(
    "add",
    epilog=examples(
        "iamgate users add dana --roles data-scientist --config gateway.yaml",
        'echo "$PASSWORD" | iamgate users add ci-bot --roles ci-runner --password-stdin \\',
        "    --config gateway.yaml",
        "iamgate users add dana --roles data-scientist   # as the administrator logged in",
    ),
)
@config_option
@click.argument("name")
@click.option("--roles", default="", help="Gateway roles, comma-separated.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def users_add(config_path: Path | None, name: str, roles: str, password_stdin: bool) -> None:
    """Add a user with a password and a new TOTP secret to enrol in an authenticator app."""
    wanted = [r for r in roles.split(",") if r]
    if config_path is None:
        remote, known = _remote_users()
        defined = {r["name"] for r in remote.call("GET", "/api/v1/roles")["roles"]}
        _check_new(name, wanted, defined, name in known and known[name]["enrolled"])
        password = _read_password(password_stdin)
        body = {"name": name, "roles": wanted, "password": password}
        _show(_enrolment(remote.call("POST", "/api/v1/users", body)))
        click.echo(f"user {name} added")
        return
    with administering(config_path) as (admin, me):
        row = get_user(admin.engine, name)
        _check_new(name, wanted, set(admin.roles), row is not None and row.has_password)
        password = _read_password(password_stdin)
        _show(admin.add_user(name, wanted, by=me, password=password))
    click.echo(f"user {name} added")


def _check_new(name: str, wanted: list[str], defined: set[str], enrolled: bool) -> None:
    unknown = sorted(set(wanted) - defined)
    if unknown:
        raise click.BadParameter(f"unknown roles: {', '.join(unknown)}", param_hint="--roles")
    if enrolled:
        raise click.ClickException(f"user {name} exists; use `iamgate users reset {name}`")


@users.command(
    "reset",
    epilog=examples(
        "iamgate users reset dana --config gateway.yaml",
        "iamgate users reset dana   # as the administrator logged in",
    ),
)
@config_option
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the new password from standard input.")
def users_reset(config_path: Path | None, name: str, password_stdin: bool) -> None:
    """A new password and a new TOTP secret; every session of the user ends."""
    if config_path is None:
        remote, known = _remote_users()
        if name not in known:
            raise click.ClickException(f"no user {name}")
        body = {"password": _read_password(password_stdin)}
        reply = remote.call("POST", f"/api/v1/users/{path_part(name)}/reset", body)
        _show(_enrolment(reply))
    else:
        with administering(config_path) as (admin, me):
            if get_user(admin.engine, name) is None:
                raise click.ClickException(f"no user {name}")
            _show(admin.reset(name, by=me, password=_read_password(password_stdin)))
    click.echo(f"user {name} reset; their sessions were revoked")


@users.command(
    "lock",
    epilog=examples(
        "iamgate users lock dana --config gateway.yaml",
        "iamgate users lock dana   # as the administrator logged in",
    ),
)
@config_option
@click.argument("name")
def users_lock(config_path: Path | None, name: str) -> None:
    """Lock the account and end everything it holds, at once."""
    if config_path is None:
        administrator().call("POST", f"/api/v1/users/{path_part(name)}/lock")
    else:
        with administering(config_path) as (admin, me):
            admin.lock(name, by=me)
    click.echo(f"user {name} locked; their sessions and credentials were revoked")


@users.command(
    "unlock",
    epilog=examples(
        "iamgate users unlock dana --config gateway.yaml",
        "iamgate users unlock dana   # as the administrator logged in",
    ),
)
@config_option
@click.argument("name")
def users_unlock(config_path: Path | None, name: str) -> None:
    """Let a locked user log in again."""
    if config_path is None:
        administrator().call("POST", f"/api/v1/users/{path_part(name)}/unlock")
    else:
        with administering(config_path) as (admin, me):
            admin.unlock(name, by=me)
    click.echo(f"user {name} unlocked")


@users.command(
    "roles",
    epilog=examples(
        "iamgate users roles dana data-scientist contractor --config gateway.yaml",
        "iamgate users roles dana --config gateway.yaml   # no roles",
        "iamgate users roles dana data-scientist   # as the administrator logged in",
    ),
)
@config_option
@click.argument("name")
@click.argument("roles", nargs=-1)
def users_roles(config_path: Path | None, name: str, roles: tuple[str, ...]) -> None:
    """Set the user's gateway roles (none: no access). Applies on the user's next call."""
    if config_path is None:
        body = {"roles": list(roles)}
        administrator().call("PUT", f"/api/v1/users/{path_part(name)}/roles", body)
    else:
        with administering(config_path) as (admin, me):
            admin.set_roles(name, roles, by=me)
    click.echo(f"user {name} now holds: {', '.join(roles) or 'no roles'}")


@users.command(
    "rm",
    epilog=examples(
        "iamgate users rm dana --config gateway.yaml",
        "iamgate users rm dana   # as the administrator logged in",
    ),
)
@config_option
@click.argument("name")
def users_rm(config_path: Path | None, name: str) -> None:
    """Remove a user; their sessions and credentials are revoked."""
    if config_path is None:
        administrator().call("DELETE", f"/api/v1/users/{path_part(name)}")
    else:
        with administering(config_path) as (admin, me):
            admin.remove(name, by=me)
    click.echo(f"user {name} removed; their sessions and credentials were revoked")


@users.command(
    "ls",
    epilog=examples(
        "iamgate users ls --config gateway.yaml",
        "iamgate users ls --json --config gateway.yaml",
        "iamgate users ls   # as the administrator logged in",
    ),
)
@config_option
@json_option
def users_ls(config_path: Path | None, as_json: bool) -> None:
    """Every user, their gateway roles, and whether they can log in."""
    if config_path is None:
        _, known = _remote_users()
        listed = [
            {
                "user": u["name"],
                "roles": list(u["roles"]),
                "has_password": u["enrolled"],
                "locked_until": u.get("locked_until") if u["locked"] else None,
                "failed_logins": u["failed_logins"],
            }
            for u in known.values()
        ]
    else:
        with administering(config_path, changes=False) as (admin, _):
            summaries = admin.users()
        listed = [
            {
                "user": u.name,
                "roles": list(u.roles),
                "has_password": u.has_password,
                "locked_until": _stamp(u.locked_until) if u.locked else None,
                "failed_logins": u.failed_logins,
            }
            for u in summaries
        ]
    if as_json:
        click.echo(json.dumps(listed, indent=2))
        return
    table = Table("user", "roles", "can log in", "locked until", "failed logins")
    table.columns[0].no_wrap = True
    for user in listed:
        locked = _parse(user["locked_until"])
        table.add_row(
            user["user"],
            ", ".join(user["roles"]) or "-",
            "yes" if user["has_password"] else "no (iamgate users reset)",
            locked.strftime("%Y-%m-%d %H:%M UTC") if locked else "-",
            str(user["failed_logins"]),
        )
    wide_console().print(table)


@click.group()
def sessions() -> None:
    """List and revoke login sessions and gateway credentials (on the gateway host with
    --config, or as the administrator logged in with `iamgate login`)."""


@sessions.command(
    "ls",
    epilog=examples(
        "iamgate sessions ls --user dana --config gateway.yaml",
        "iamgate sessions ls --json --config gateway.yaml",
        "iamgate sessions ls --user dana   # as the administrator logged in",
    ),
)
@config_option
@click.option("--user", default=None, help="Only this user's sessions.")
@json_option
def sessions_ls(config_path: Path | None, user: str | None, as_json: bool) -> None:
    """Login sessions, newest first, with their state (active, expired, revoked)."""
    if config_path is None:
        query = {"all": "true"} | ({"user": user} if user else {})
        found = administrator().call("GET", "/api/v1/sessions", query=query)["sessions"]
        listed = [
            {
                "session": s["id"],
                "user": s["user"],
                "created_at": s["created_at"],
                "expires_at": s["expires_at"],
                "state": s["state"],
            }
            for s in found
        ]
    else:
        with administering(config_path, changes=False) as (admin, _):
            every = admin.all_sessions(user)
        now = datetime.now(UTC)
        listed = [
            {
                "session": s.id,
                "user": s.user,
                "created_at": _stamp(s.created_at),
                "expires_at": _stamp(s.expires_at),
                "state": session_state(s, now),
            }
            for s in every
        ]
    if as_json:
        click.echo(json.dumps(listed, indent=2))
        return
    table = Table("session", "user", "created", "expires", "state")
    table.columns[0].no_wrap = True
    table.columns[1].no_wrap = True
    for s in listed:
        created, expires = _parse(s["created_at"]), _parse(s["expires_at"])
        table.add_row(
            s["session"],
            s["user"],
            created.strftime("%Y-%m-%d %H:%M") if created else "-",
            expires.strftime("%Y-%m-%d %H:%M") if expires else "-",
            s["state"],
        )
    wide_console().print(table)


@sessions.command(
    "revoke",
    epilog=examples(
        "iamgate sessions revoke --user dana --config gateway.yaml",
        "iamgate sessions revoke --access-key ASIA0123456789ABCDEF --config gateway.yaml",
        "iamgate sessions revoke --bot infra-deploy --config gateway.yaml",
        "iamgate sessions revoke SESSION_ID --config gateway.yaml",
        "iamgate sessions revoke --user dana   # as the administrator logged in",
    ),
)
@config_option
@click.argument("session_id", required=False)
@click.option("--user", default=None, help="Revoke everything this user holds.")
@click.option("--access-key", default=None, help="Revoke one gateway credential (ASIA…).")
@click.option("--bot", default=None, help="Revoke every credential this bot's jobs hold.")
def sessions_revoke(
    config_path: Path | None,
    session_id: str | None,
    user: str | None,
    access_key: str | None,
    bot: str | None,
) -> None:
    """Takes effect on the next request, on every replica."""
    chosen = [x for x in (session_id, user, access_key, bot) if x]
    if len(chosen) != 1:
        raise click.UsageError("give one of SESSION_ID, --user, --access-key or --bot")
    if bot is not None:
        _revoke_bot(config_path, bot)
        return
    if config_path is None:
        remote = administrator()
        if session_id:
            remote.call("DELETE", f"/api/v1/sessions/{path_part(session_id)}")
        elif user:
            known = {u["name"] for u in remote.call("GET", "/api/v1/users")["users"]}
            if user not in known:
                raise click.ClickException(f"no user named {user}")
            reply = remote.call("DELETE", f"/api/v1/users/{path_part(user)}/sessions")
            _revoked_user(user, int(reply["revoked_sessions"]))
            return
        elif access_key:
            remote.call("DELETE", f"/api/v1/credentials/{path_part(access_key)}")
    else:
        with administering(config_path) as (admin, me):
            if session_id:
                admin.revoke_session(session_id, by=me)
            elif user:
                if get_user(admin.engine, user) is None:
                    raise click.ClickException(f"no user named {user}")
                active = len(admin.sessions(user))
                admin.revoke_user(user, by=me)
                _revoked_user(user, active)
                return
            elif access_key:
                admin.revoke_credential(access_key, by=me)
    if session_id:
        click.echo(f"revoked login session {session_id}")
    else:
        click.echo(f"revoked gateway credential {access_key}")


def _revoke_bot(config_path: Path | None, bot: str) -> None:
    """Every credential the bot's jobs exchanged until now stops on its next call; jobs
    may exchange tokens again (remove the bot, or its binding, to stop that)."""
    if config_path is None:
        reply = administrator().call("DELETE", f"/api/v1/bots/{path_part(bot)}/sessions")
        live = int(reply["revoked_credentials"])
    else:
        with administering(config_path) as (admin, me):
            live = Bots(admin.live, admin.engine, admin.audit).revoke(bot, by=me)
    click.echo(f"revoked every gateway credential issued to bot {bot} until now ({live} live)")


def _revoked_user(user: str, active: int) -> None:
    noun = "session" if active == 1 else "sessions"
    click.echo(
        f"revoked {active} {noun} of {user}, and every gateway credential issued to {user} "
        "until now"
    )
