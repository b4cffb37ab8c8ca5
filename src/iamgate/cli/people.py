"""The CLI for people: log in, see what I may use, and use it with the AWS CLI as it is.

State lives under ~/.iamgate (IAMGATE_HOME overrides it), every file 0600: the login session
and cached gateway credentials, reused until five minutes before they expire.
"""

from __future__ import annotations

import configparser
import contextlib
import http.client
import json
import os
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import webbrowser
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from iamgate.aws.profiles import PROFILE_PREFIX, profiles_block, without_block
from iamgate.cli.fast import REFRESH_BEFORE_SECONDS, cache_file, home_dir, seconds_left
from iamgate.cli.targets import known_targets, remember_used, resolve, target_options

REFRESH_BEFORE = timedelta(seconds=REFRESH_BEFORE_SECONDS)


def home() -> Path:
    return Path(home_dir())


PLACEHOLDER_URL = "http://127.0.0.1:8080"


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


def remembered() -> dict[str, str]:
    """The gateway URL and user of the last successful login (kept after logout)."""
    data = _read(home() / "remembered.json") or {}
    return {k: v for k, v in data.items() if k in ("url", "user") and isinstance(v, str)}


def login_hint() -> str:
    """`run `iamgate login URL --user USER``, with what this machine remembers."""
    last = remembered()
    url = last.get("url")
    command = ["iamgate", "login", url or "URL"]
    command += ["--user", last.get("user", "USER")]
    return f"run `{shlex.join(command)}`" if url else f"run `{' '.join(command)}`"


def _session() -> dict[str, Any]:
    session = _read(home() / "session.json")
    if session is None:
        raise click.ClickException(f"not logged in: {login_hint()}")
    expires = session.get("expires_at")
    if isinstance(expires, str):
        try:
            ended = seconds_left(expires) <= 0
        except ValueError:
            ended = False
        if ended:
            raise click.ClickException(f"your login session ended at {expires}: {login_hint()}")
    return session


def _ssl_reason(reason: object) -> str | None:
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"its TLS certificate is not trusted here ({reason.verify_message})"
    if isinstance(reason, ssl.SSLError):
        text = str(reason)
        if any(
            s in text
            for s in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "record layer failure",
                      "UNKNOWN_PROTOCOL", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST")
        ):  # fmt: skip
            return "it does not answer https: this gateway speaks http"
        return "its TLS handshake failed"
    return None


def _unreachable(url: str, reason: object) -> str:
    """Why the gateway at `url` could not be reached, in people's words."""
    parsed = urllib.parse.urlsplit(url)
    tls = _ssl_reason(reason)
    if tls is not None:
        message = f"cannot talk to the gateway at {url}: {tls}"
        if "speaks http" in tls:
            message += f"; use {urllib.parse.urlunsplit(('http', *parsed[1:]))}"
        return message
    if isinstance(reason, ConnectionRefusedError):
        return f"nothing answers at {url}: is the gateway running, and is this its address?"
    if isinstance(reason, socket.gaierror):
        return f"cannot find the host {parsed.hostname!r} of {url}: is the address right?"
    if isinstance(reason, TimeoutError | socket.timeout):
        return f"the gateway at {url} did not answer within 30 seconds"
    if isinstance(reason, ConnectionResetError | http.client.HTTPException):
        if parsed.scheme == "http":
            https = urllib.parse.urlunsplit(("https", *parsed[1:]))
            return (
                f"the gateway at {url} closed the connection without an HTTP answer: "
                f"it may speak https; try {https}"
            )
        return f"the gateway at {url} closed the connection without answering"
    return f"cannot reach the gateway at {url}: {getattr(reason, 'strerror', None) or reason}"


def _http_error(url: str, path: str, err: urllib.error.HTTPError, authenticated: bool) -> str:
    try:
        body = json.loads(err.read())
        message = body.get("message") if isinstance(body, dict) else None
    except (ValueError, OSError):
        message = None
    if err.code == 401 and authenticated:
        # The gateway's own hint names no URL or user; this machine remembers both.
        said = str(message or "log in first").split(": iamgate login", 1)[0]
        return f"{said}: {login_hint()}"
    if message:
        return str(message)
    if err.code == 404:
        return (
            f"{url} does not look like an iamgate gateway (nothing at {path}): "
            "is it the right address?"
        )
    if err.code >= 500:
        return f"the gateway at {url} failed ({err.reason}); try again, or tell its administrator"
    return f"the gateway at {url} refused: {err.reason}"


def _call(
    url: str,
    path: str,
    body: dict[str, Any] | None,
    token: str | None,
    method: str | None = None,
) -> Any:
    if not url.startswith(("http://", "https://")):
        raise click.ClickException(
            f"the gateway URL must start with http:// or https://, not {url!r} "
            f"(e.g. {PLACEHOLDER_URL})"
        )
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url.rstrip("/") + path,
        data=json.dumps(body).encode() if body is not None else None,
        method=method or ("POST" if body is not None else "GET"),
        headers={"Content-Type": "application/json"}
        | ({"Authorization": f"Bearer {token}"} if token else {}),
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            raw = response.read()
            return json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        raise click.ClickException(_http_error(url, path, err, token is not None)) from None
    except urllib.error.URLError as err:
        raise click.ClickException(_unreachable(url, err.reason)) from None
    except (OSError, http.client.HTTPException) as err:
        raise click.ClickException(_unreachable(url, err)) from None


def _forget_credentials() -> None:
    for cached in (home() / "cache").glob("*.json"):
        cached.unlink()


@click.command()
@click.argument("url", required=False)
@click.option("--user", default=None, help="Your user name on the gateway (default: the last one).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--otp", default=None, help="The one-time code (prompted for if not given).")
def login(url: str | None, user: str | None, password_stdin: bool, otp: str | None) -> None:
    """Log in with password and one-time code; the session is kept under ~/.iamgate.

    URL and --user default to those of the last login on this machine.

    \b
    Examples:
      iamgate login http://127.0.0.1:8080 --user dana
      iamgate login                     # the same gateway and user as last time
    """
    last = remembered()
    url = url or last.get("url")
    user = user or last.get("user")
    if url is None:
        raise click.UsageError(
            f"which gateway? e.g. `iamgate login {PLACEHOLDER_URL} --user {user or 'USER'}`"
        )
    if user is None:
        user = click.prompt("User")
    password = (
        sys.stdin.readline().rstrip("\n")
        if password_stdin
        else click.prompt("Password", hide_input=True)
    )
    code = otp or click.prompt("One-time code")
    reply = _call(url, "/api/v1/login", {"user": user, "password": password, "otp": code}, None)
    _write_private(home() / "session.json", {"url": url, **reply})
    _write_private(home() / "remembered.json", {"url": url, "user": user})
    _forget_credentials()
    click.echo(f"logged in to {url} as {user} until {reply['expires_at']}")
    with contextlib.suppress(click.ClickException):
        _access(_session())  # for completion and the picker


@click.command()
def logout() -> None:
    """End the login session on the server and forget it here.

    The gateway URL and user name are remembered for the next `iamgate login`.

    \b
    Example:
      iamgate logout
    """
    session = _read(home() / "session.json")
    if session is not None:
        try:
            _call(session["url"], "/api/v1/logout", {}, session["token"])
        finally:
            (home() / "session.json").unlink(missing_ok=True)
            _forget_credentials()
    click.echo("logged out")


def _left(seconds: float) -> str:
    minutes = max(0, int(seconds // 60))
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m"


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")
def status(as_json: bool) -> None:
    """Who I am, on which gateway, and how long my login session has left.

    Asks the gateway whether it still accepts the session; exits 1 when not logged in.

    \b
    Examples:
      iamgate status
      iamgate whoami --json
    """
    session = _session()
    url, user = session["url"], session.get("user", "?")
    left = seconds_left(session["expires_at"])
    accepted: bool | None = None
    note = ""
    try:
        me = _call(url, "/api/v1/me", None, session["token"])
        accepted, user = True, me.get("user", user)
    except click.ClickException as exc:
        if "log in" in exc.message:
            accepted = False
            note = exc.message
        else:
            note = f"could not ask the gateway: {exc.message}"
    last = _read(home() / "last.json") or {}
    if as_json:
        report = {
            "user": user,
            "gateway": url,
            "expires_at": session["expires_at"],
            "seconds_left": int(left),
            "accepted": accepted,
            "last_used": last or None,
        }
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(f"{user} on {url}")
        click.echo(f"login session until {session['expires_at']} ({_left(left)} left)")
        if last.get("account"):
            click.echo(f"last used: {last['account']}/{last['role']}")
        if note:
            click.echo(note, err=True)
    if accepted is False:
        sys.exit(1)


def _access(session: dict[str, Any]) -> dict[str, Any]:
    """GET /api/v1/access, kept in ~/.iamgate/access.json for completion and the picker."""
    access: dict[str, Any] = _call(session["url"], "/api/v1/access", None, session["token"])
    _write_private(home() / "access.json", access)
    return access


@click.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")
def list_access(as_json: bool) -> None:
    """The accounts and IAM roles I may use now, and the gateway roles I may request.

    \b
    Examples:
      iamgate ls
      iamgate ls --json | jq -r '.accounts[].name'
    """
    session = _session()
    access = _access(session)
    if as_json:
        click.echo(json.dumps(access, indent=2))
        return
    table = Table("account", "id", "labels", "IAM role", "profile", "via gateway role", "allows")
    for column in table.columns[:5]:
        column.no_wrap = True
    for account in access["accounts"]:
        labels = ", ".join(f"{k}={v}" for k, v in account["labels"].items())
        for role in account["roles"]:
            table.add_row(
                account["name"],
                account["id"],
                labels,
                role["aws_role"],
                f"{account['name']}/{role['aws_role']}",
                role["gateway_role"],
                role["allows"],
            )
    wide_console().print(table)
    requestable = access.get("requestable") or []
    if requestable:
        asks = Table("may request", "accounts", "IAM roles", "for", "at most", "reason", "stages")
        for offer in requestable:
            reason = ("required: " if offer["reason_required"] else "optional: ") + offer["prompt"]
            asks.add_row(
                offer["role"],
                ", ".join(offer["accounts"]),
                ", ".join(offer["aws_roles"]),
                offer["default_duration"],
                offer["max_duration"],
                reason,
                str(offer["stages"]),
            )
        wide_console().print(asks)
        click.echo("ask with: iamgate request create --role ROLE --account A --reason '...'")


def wide_console() -> Console:
    """A console that never cuts names: as wide as the terminal, or unbounded in a pipe."""
    if sys.stdout.isatty():
        return Console()
    return Console(width=10_000, soft_wrap=True)


def fetch_credentials(account: str, role: str) -> dict[str, Any]:
    """credential_process JSON, from the cache while it has five minutes left."""
    session = _session()
    cache = Path(cache_file(account, role))
    cached = _read(cache)
    if cached is not None:
        try:
            fresh = seconds_left(str(cached["Expiration"])) > REFRESH_BEFORE_SECONDS
        except (KeyError, ValueError):
            fresh = False
        if fresh:
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


def _choices() -> list[tuple[str, str]]:
    return known_targets() or [
        pair for pair in _pairs(_access(_session())) if not any(c in pair[1] for c in "*?")
    ]


def _pairs(access: dict[str, Any]) -> list[tuple[str, str]]:
    return [(a["name"], r["aws_role"]) for a in access["accounts"] for r in a["roles"]]


def target(account: str | None, role: str | None, profile: str | None) -> tuple[str, str]:
    """The account and role of a person's command (picker, last used); remembered."""
    chosen = resolve(account, role, profile, choices=_choices)
    remember_used(*chosen)
    return chosen


@click.command(
    "aws",
    context_settings={"ignore_unknown_options": True},
    epilog="""\b
Examples:
  iamgate aws --account acme-prod --role ReadOnly -- s3 ls
  iamgate aws --profile acme-prod/ReadOnly -- rds describe-db-instances
  iamgate aws -- sts get-caller-identity      # pick, or the last used""",
)
@target_options()
@region_option
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run_aws(
    account: str | None,
    role: str | None,
    profile: str | None,
    region: str | None,
    args: tuple[str, ...],
) -> None:
    """Run `aws ARGS…` with my credentials for ACCOUNT/ROLE, through the gateway."""
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE")}
    aws = shutil.which("aws", path=env.get("PATH"))
    if aws is None:
        raise click.ClickException(AWS_CLI_MISSING)
    account, role = target(account, role, profile)
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


def _shell_variables(account: str, role: str, region: str | None) -> dict[str, str]:
    chosen = resolve_region(account, role, region)
    variables = _aws_env(fetch_credentials(account, role), chosen)
    variables["AWS_CONFIG_FILE"] = str(_env_aws_config(variables["AWS_ENDPOINT_URL"], chosen))
    return variables


@click.command(
    "env",
    epilog="""\b
Examples:
  eval "$(iamgate env --account acme-ci --role CIRunner)"
  eval "$(iamgate env --profile iamgate-acme-prod-ReadOnly --region eu-west-1)"
  iamgate env --profile acme-prod/ReadOnly --json""",
)
@target_options()
@region_option
@click.option("--json", "as_json", is_flag=True, help="Print the variables as JSON, for scripts.")
def env_lines(
    account: str | None, role: str | None, profile: str | None, region: str | None, as_json: bool
) -> None:
    """`export` lines for a shell or a CI job: `eval "$(iamgate env …)"`.

    They point AWS_CONFIG_FILE at iamgate's own file (~/.iamgate/aws-config) so that the AWS
    CLI v1 sends every service, rds and sqs included, to the gateway; your own profiles are
    not read in that shell, and AWS_PROFILE is unset."""
    variables = _shell_variables(*target(account, role, profile), region)
    if as_json:
        click.echo(json.dumps(variables, indent=2))
        return
    click.echo("unset AWS_PROFILE AWS_DEFAULT_PROFILE")
    for name, value in variables.items():
        click.echo(f"export {name}={shlex.quote(value)}")


@click.command(
    "shell",
    epilog="""\b
Examples:
  iamgate shell --account acme-prod --role ReadOnly
  iamgate shell --profile acme-prod/ReadOnly -c 'aws s3 ls'
  iamgate shell                                  # pick, or the last used""",
)
@target_options()
@region_option
@click.option(
    "-c", "--command", default=None, help="Run this command in the shell instead of a prompt."
)
def shell(
    account: str | None,
    role: str | None,
    profile: str | None,
    region: str | None,
    command: str | None,
) -> None:
    """A subshell ($SHELL) with my credentials for ACCOUNT/ROLE, through the gateway.

    It has the variables of `iamgate env`, and IAMGATE_PROFILE=ACCOUNT/ROLE for a prompt;
    `exit` returns to where you were. Credentials last as long as `iamgate credentials`'."""
    account, role = target(account, role, profile)
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE")}
    env |= _shell_variables(account, role, region)
    env["IAMGATE_PROFILE"] = f"{account}/{role}"
    program = os.environ.get("SHELL") or shutil.which("bash") or "/bin/sh"
    argv = [program, *(["-c", command] if command is not None else [])]
    if command is None:
        click.echo(f"iamgate: a shell as {account}/{role}; `exit` to leave it", err=True)
    try:
        done = subprocess.run(argv, env=env, check=False)
    except OSError as exc:
        raise click.ClickException(f"cannot run {program}: {exc.strerror}") from None
    sys.exit(done.returncode)


@click.command(
    "console",
    epilog="""\b
Examples:
  iamgate console --account acme-prod --role ReadOnly --open
  iamgate console --profile acme-prod/ReadOnly --destination https://console.aws.amazon.com/s3/
  iamgate console --profile acme-prod/ReadOnly --json""",
)
@target_options()
@click.option("--region", default=None, help="The console's region (the gateway's default).")
@click.option("--destination", default=None, help="A console deep link to open instead.")
@click.option("--open", "open_browser", is_flag=True, help="Open it in the web browser.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (url, expires_at), for scripts.")
def console(
    account: str | None,
    role: str | None,
    profile: str | None,
    region: str | None,
    destination: str | None,
    open_browser: bool,
    as_json: bool,
) -> None:
    """A sign-in URL for the AWS console as ACCOUNT/ROLE, with the same view as the CLI.

    The URL signs in whoever opens it, within 15 minutes: it is printed for you alone."""
    account, role = target(account, role, profile)
    session = _session()
    body = {"account": account, "role": role}
    body |= {k: v for k, v in (("region", region), ("destination", destination)) if v}
    reply = _call(session["url"], "/api/v1/console", body, session["token"])
    if as_json:
        click.echo(json.dumps(reply, indent=2))
        return
    if reply.get("note"):
        click.echo(f"note: {reply['note']}", err=True)
    click.echo(f"console session until {reply['expires_at']}", err=True)
    if open_browser and webbrowser.open(reply["url"]):
        click.echo("opened the console in your browser", err=True)
        return
    click.echo(reply["url"])


@click.command(
    "completion",
    epilog="""\b
Examples:
  eval "$(iamgate completion bash)"      # in ~/.bashrc
  iamgate completion zsh > ~/.zfunc/_iamgate
  iamgate completion fish > ~/.config/fish/completions/iamgate.fish""",
)
@click.argument("shell_name", metavar="SHELL", type=click.Choice(["bash", "zsh", "fish"]))
@click.pass_context
def completion(ctx: click.Context, shell_name: str) -> None:
    """The completion script for SHELL: commands, options, accounts, roles and profiles.

    Accounts and roles come from the last `iamgate ls` (login and `profiles sync` refresh it)."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell_name)
    assert cls is not None
    root = ctx.find_root().command
    click.echo(cls(root, {}, "iamgate", "_IAMGATE_COMPLETE").source())


@click.group()
def profiles() -> None:
    """AWS CLI profiles for every role I hold."""


def iamgate_command() -> str:
    candidate = Path(sys.argv[0]).resolve()
    if candidate.name == "iamgate" and candidate.exists():
        return str(candidate)
    return shutil.which("iamgate") or str(Path(sys.executable).parent / "iamgate")


@profiles.command(
    "sync",
    epilog="""\b
Examples:
  iamgate profiles sync
  aws --profile iamgate-acme-prod-ReadOnly s3 ls
  iamgate profiles sync --region eu-west-1 --config-file ./aws-config --json""",
)
@click.option(
    "--config-file",
    type=click.Path(path_type=Path),
    default=lambda: os.environ.get("AWS_CONFIG_FILE") or Path.home() / ".aws/config",
    help="The AWS CLI config file to write (default: $AWS_CONFIG_FILE, else ~/.aws/config).",
)
@click.option(
    "--region", default="us-east-1", show_default=True, help="The profiles' default region."
)
@click.option("--json", "as_json", is_flag=True, help="Print the profile names as JSON.")
def profiles_sync(config_file: Path, region: str, as_json: bool) -> None:
    """Write iamgate's profiles (one per account and IAM role I may use) and drop stale ones;
    every byte outside iamgate's block stays as it was."""
    session = _session()
    access = _access(session)
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
    if as_json:
        click.echo(json.dumps({"config_file": str(config_file), "profiles": names}, indent=2))
        return
    for name in names:
        click.echo(f"aws --profile {name} sts get-caller-identity")
