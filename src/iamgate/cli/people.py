"""The CLI for people: log in, see what I may use, and use it with the AWS CLI as it is.

State lives under ~/.iamgate (IAMGATE_HOME overrides it), every file 0600: the login session
and cached gateway credentials, reused until five minutes before they expire.
"""

from __future__ import annotations

import configparser
import json
import os
import shlex
import shutil
import sys
import urllib.error
import urllib.request
import webbrowser
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from iamgate.aws.profiles import PROFILE_PREFIX, profiles_block, without_block

REFRESH_BEFORE = timedelta(minutes=5)


def home() -> Path:
    return Path(os.environ.get("IAMGATE_HOME") or Path.home() / ".iamgate")


def _write_private(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    path.chmod(0o600)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _session() -> dict[str, Any]:
    session = _read(home() / "session.json")
    if session is None:
        raise click.ClickException("not logged in: iamgate login URL --user USER")
    return session


def _call(url: str, path: str, body: dict[str, Any] | None, token: str | None) -> Any:
    if not url.startswith(("http://", "https://")):
        raise click.ClickException(f"the gateway URL must be http(s)://…, not {url!r}")
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url.rstrip("/") + path,
        data=json.dumps(body).encode() if body is not None else None,
        method="POST" if body is not None else "GET",
        headers={"Content-Type": "application/json"}
        | ({"Authorization": f"Bearer {token}"} if token else {}),
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            raw = response.read()
            return json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        try:
            message = json.loads(err.read()).get("message", err.reason)
        except ValueError:
            message = err.reason
        raise click.ClickException(f"{message} (HTTP {err.code})") from None
    except urllib.error.URLError as err:
        raise click.ClickException(f"cannot reach {url}: {err.reason}") from None


@click.command()
@click.argument("url")
@click.option("--user", required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--otp", default=None, help="The one-time code (prompted for if not given).")
def login(url: str, user: str, password_stdin: bool, otp: str | None) -> None:
    """Log in with password and one-time code; the session is kept under ~/.iamgate."""
    password = (
        sys.stdin.readline().rstrip("\n")
        if password_stdin
        else click.prompt("Password", hide_input=True)
    )
    code = otp or click.prompt("One-time code")
    reply = _call(url, "/api/v1/login", {"user": user, "password": password, "otp": code}, None)
    _write_private(home() / "session.json", {"url": url, **reply})
    for cached in (home() / "cache").glob("*.json"):
        cached.unlink()
    click.echo(f"logged in to {url} as {user} until {reply['expires_at']}")


@click.command()
def logout() -> None:
    """End the login session on the server and forget it here."""
    session = _read(home() / "session.json")
    if session is not None:
        try:
            _call(session["url"], "/api/v1/logout", {}, session["token"])
        finally:
            (home() / "session.json").unlink(missing_ok=True)
            for cached in (home() / "cache").glob("*.json"):
                cached.unlink()
    click.echo("logged out")


@click.command("ls")
@click.option("--json", "as_json", is_flag=True)
def list_access(as_json: bool) -> None:
    """The accounts and IAM roles I may use now."""
    session = _session()
    access = _call(session["url"], "/api/v1/access", None, session["token"])
    if as_json:
        click.echo(json.dumps(access, indent=2))
        return
    table = Table("account", "id", "labels", "IAM role", "via gateway role", "allows")
    for account in access["accounts"]:
        labels = ", ".join(f"{k}={v}" for k, v in account["labels"].items())
        for role in account["roles"]:
            table.add_row(
                account["name"],
                account["id"],
                labels,
                role["aws_role"],
                role["gateway_role"],
                role["allows"],
            )
    Console().print(table)


def fetch_credentials(account: str, role: str) -> dict[str, Any]:
    """credential_process JSON, from the cache while it has five minutes left."""
    session = _session()
    cache = home() / "cache" / f"{account}__{role}.json"
    cached = _read(cache)
    if cached is not None:
        expires = datetime.strptime(cached["Expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        if expires - datetime.now(UTC) > REFRESH_BEFORE:
            return cached
    creds: dict[str, Any] = _call(
        session["url"],
        "/api/v1/credentials",
        {"account": account, "role": role},
        session["token"],
    )
    _write_private(cache, creds)
    return creds


DEFAULT_REGION = "us-east-1"


def _aws_config_file() -> Path:
    return Path(os.environ.get("AWS_CONFIG_FILE") or Path.home() / ".aws" / "config")


def _profile_region(account: str, role: str) -> str | None:
    """The region of `[profile iamgate-ACCOUNT-ROLE]` (written by `iamgate profiles sync`)."""
    parser = configparser.RawConfigParser(strict=False)
    try:
        parser.read(_aws_config_file())
    except (configparser.Error, OSError, UnicodeDecodeError):
        return None
    section = f"profile {PROFILE_PREFIX}{account}-{role}"
    region = parser.get(section, "region", fallback="") if parser.has_section(section) else ""
    return region.strip() or None


def resolve_region(account: str, role: str, region: str | None) -> str:
    """As aws-vault: --region, else the profile's, else AWS_REGION / AWS_DEFAULT_REGION,
    else us-east-1."""
    return (
        region
        or _profile_region(account, role)
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or DEFAULT_REGION
    )


def _aws_env(creds: dict[str, Any], region: str) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
        "AWS_SESSION_TOKEN": creds["SessionToken"],
        "AWS_ENDPOINT_URL": _session()["url"],
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
    }


region_option = click.option(
    "--region",
    default=None,
    help="AWS_REGION and AWS_DEFAULT_REGION (default: the iamgate profile's region, "
    "else AWS_REGION / AWS_DEFAULT_REGION, else us-east-1).",
)

AWS_CLI_MISSING = (
    "the AWS CLI (`aws`) was not found on PATH; install it, e.g. `pip install awscli`, "
    "or see https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html"
)


@click.command("aws", context_settings={"ignore_unknown_options": True})
@click.option("--account", required=True)
@click.option("--role", required=True)
@region_option
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run_aws(account: str, role: str, region: str | None, args: tuple[str, ...]) -> None:
    """Run `aws ARGS…` with my credentials for ACCOUNT/ROLE, through the gateway."""
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE")}
    aws = shutil.which("aws", path=env.get("PATH"))
    if aws is None:
        raise click.ClickException(AWS_CLI_MISSING)
    env |= _aws_env(fetch_credentials(account, role), resolve_region(account, role, region))
    # --endpoint-url on the command line: CLI v1 ignores the profile's for rds, sqs and others.
    argv = [aws, *args]
    if not any(a == "--endpoint-url" or a.startswith("--endpoint-url=") for a in args):
        argv += ["--endpoint-url", env["AWS_ENDPOINT_URL"]]
    try:
        os.execve(aws, argv, env)  # noqa: S606 - becomes the aws CLI, as intended
    except OSError as exc:
        raise click.ClickException(f"cannot run {aws}: {exc.strerror}") from None


def _env_aws_config(url: str, region: str) -> Path:
    """An AWS config file for `iamgate env`: CLI v1 pins rds, sqs, emr, docdb, neptune and
    health to AWS's own hosts unless --endpoint-url is given, whatever AWS_ENDPOINT_URL says;
    iamgate's AWS CLI plugin, loaded from this file, keeps them on the gateway."""
    path = home() / "aws-config"
    text = "\n".join(
        [
            "# Written by `iamgate env`: keeps every AWS CLI service on the gateway.",
            "[plugins]",
            "iamgate = iamgate.awscli_plugin",
            "",
            "[default]",
            f"region = {region}",
            f"endpoint_url = {url}",
            "s3 =",
            "    signature_version = s3v4",
            "",
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


@click.command("env")
@click.option("--account", required=True)
@click.option("--role", required=True)
@region_option
def env_lines(account: str, role: str, region: str | None) -> None:
    """`export` lines for a shell or a CI job: `eval "$(iamgate env …)"`.

    They point AWS_CONFIG_FILE at iamgate's own file (~/.iamgate/aws-config) so that the AWS
    CLI v1 sends every service, rds and sqs included, to the gateway; your own profiles are
    not read in that shell, and AWS_PROFILE is unset."""
    chosen = resolve_region(account, role, region)
    variables = _aws_env(fetch_credentials(account, role), chosen)
    variables["AWS_CONFIG_FILE"] = str(_env_aws_config(variables["AWS_ENDPOINT_URL"], chosen))
    click.echo("unset AWS_PROFILE AWS_DEFAULT_PROFILE")
    for name, value in variables.items():
        click.echo(f"export {name}={shlex.quote(value)}")


@click.command("console")
@click.option("--account", required=True)
@click.option("--role", required=True)
@click.option("--region", default=None, help="The console's region (the gateway's default).")
@click.option("--destination", default=None, help="A console deep link to open instead.")
@click.option("--open", "open_browser", is_flag=True, help="Open it in the web browser.")
def console(
    account: str, role: str, region: str | None, destination: str | None, open_browser: bool
) -> None:
    """A sign-in URL for the AWS console as ACCOUNT/ROLE, with the same view as the CLI.

    The URL signs in whoever opens it, within 15 minutes: it is printed for you alone."""
    session = _session()
    body = {"account": account, "role": role}
    body |= {k: v for k, v in (("region", region), ("destination", destination)) if v}
    reply = _call(session["url"], "/api/v1/console", body, session["token"])
    if reply.get("note"):
        click.echo(f"note: {reply['note']}", err=True)
    click.echo(f"console session until {reply['expires_at']}", err=True)
    if open_browser and webbrowser.open(reply["url"]):
        click.echo("opened the console in your browser", err=True)
        return
    click.echo(reply["url"])


@click.group()
def profiles() -> None:
    """AWS CLI profiles for every role I hold."""


def iamgate_command() -> str:
    candidate = Path(sys.argv[0]).resolve()
    if candidate.name == "iamgate" and candidate.exists():
        return str(candidate)
    return shutil.which("iamgate") or str(Path(sys.executable).parent / "iamgate")


@profiles.command("sync")
@click.option(
    "--config-file",
    type=click.Path(path_type=Path),
    default=lambda: os.environ.get("AWS_CONFIG_FILE") or Path.home() / ".aws/config",
)
@click.option("--region", default="us-east-1", show_default=True)
def profiles_sync(config_file: Path, region: str) -> None:
    """Write iamgate's profiles (one per account and IAM role I may use) and drop stale ones;
    every byte outside iamgate's block stays as it was."""
    session = _session()
    access = _call(session["url"], "/api/v1/access", None, session["token"])
    existing = config_file.read_text() if config_file.exists() else ""
    rest = without_block(existing)
    has_plugins = any(line.strip() == "[plugins]" for line in rest.splitlines())
    block, names = profiles_block(
        access, session["url"], iamgate_command(), region, with_plugin=not has_plugins
    )
    if rest and not rest.endswith("\n"):
        rest += "\n"
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(rest + ("\n" if rest.strip() else "") + block)
    config_file.chmod(0o600)
    for name in names:
        click.echo(f"aws --profile {name} sts get-caller-identity")
