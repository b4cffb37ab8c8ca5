"""The `iamgate` command line (loaded by `iamgate.cli.main` unless the fast path answers)."""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import sys
from pathlib import Path

import click

from iamgate import __version__
from iamgate.audit.appender import DirectAuditLog
from iamgate.cli.admin import sessions, users
from iamgate.cli.audit import audit
from iamgate.cli.bots import bots_group
from iamgate.cli.config_check import config_group, with_hints
from iamgate.cli.examples import examples
from iamgate.cli.join import join
from iamgate.cli.notifications import notifications_group
from iamgate.cli.people import (
    completion,
    console,
    env_lines,
    fetch_credentials,
    list_access,
    login,
    logout,
    profiles,
    run_aws,
    shell,
    status,
)
from iamgate.cli.requests import request_group
from iamgate.cli.targets import resolve, target_options
from iamgate.config import (
    Config,
    ConfigError,
    load_config,
    load_config_with_source,
    parse_duration,
)
from iamgate.control.credentials import Credentials
from iamgate.control.errors import ControlError
from iamgate.control.users import Actor
from iamgate.store.database import load_keyring, open_engine


def _load(path: Path) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group(
    epilog=examples(
        "iamgate login http://127.0.0.1:8080 --user dana",
        "iamgate status",
        "iamgate ls",
        "iamgate profiles sync && aws --profile iamgate-acme-prod-ReadOnly s3 ls",
        "iamgate shell --profile acme-prod/ReadOnly",
        'eval "$(iamgate completion bash)"',
    )
)
@click.version_option(__version__, prog_name="iamgate", message="%(prog)s %(version)s")
@click.option("-v", "--verbose", is_flag=True, help="Log what the gateway does.")
def cli(verbose: bool) -> None:
    """iamgate: short-lived, audited access to many AWS accounts."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@cli.command(
    epilog=examples(
        "iamgate serve --config examples/gateway.yaml",
        "iamgate config check --config gateway.yaml && iamgate serve --config gateway.yaml",
        "iamgate serve --config gateway.yaml --workers 4",
    )
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    required=True,
    help="The gateway's YAML configuration (see examples/gateway.yaml).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Gateway processes sharing the port (SO_REUSEPORT), one per core to use: each has "
    "its own audit chain and its own per-caller limits and login throttles, as replicas do.",
)
def serve(config_path: Path, workers: int) -> None:
    """Run the gateway: the AWS API proxy, web UI and JSON API on one port."""
    from iamgate.server import build_runtime, run, serve_forever

    try:
        config, source = load_config_with_source(config_path)
    except ConfigError as exc:
        raise click.ClickException(with_hints(str(exc))) from None
    if workers > 1:
        from iamgate.aws.index_cache import cache_dir, load_or_build
        from iamgate.workers import prepare_store, supervise

        prepare_store(config)
        index = load_or_build(cache_dir())  # read once, shared by the forked workers

        def worker() -> None:
            runtime = build_runtime(config, index=index, source=source)
            run(serve_forever(runtime, worker=True))

        click.echo(f"iamgate listening on {config.server.url} ({workers} workers)", err=True)
        sys.exit(supervise(workers, worker))
    runtime = build_runtime(config, source=source)
    click.echo(f"iamgate listening on {config.server.url}", err=True)
    with contextlib.suppress(KeyboardInterrupt):
        run(serve_forever(runtime))


@cli.command(
    epilog="""\b
Examples:
  iamgate credentials --account acme-prod --role ReadOnly
  iamgate credentials --profile acme-prod/ReadOnly
  iamgate credentials --account acme-ci --role CIRunner --issue-for ci-bot --bot \\
      --ttl 30m --config gateway.yaml""",
)
@target_options(required=True)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Administrators, with --issue-for: mint on the gateway host itself.",
)
@click.option("--issue-for", "principal", default=None, help="User or bot to issue for.")
@click.option("--ttl", default="1h", show_default=True, help="Lifetime, with --issue-for.")
@click.option("--bot", is_flag=True, help="With --issue-for: the principal is a bot.")
def credentials(
    account: str | None,
    role: str | None,
    profile: str | None,
    config_path: Path | None,
    principal: str | None,
    ttl: str,
    bot: bool,
) -> None:
    """Print `credential_process` JSON for ACCOUNT/ROLE (cached until near expiry).

    This is what the profiles of `iamgate profiles sync` run before every `aws` command."""
    account, aws_role = resolve(account, role, profile)
    if principal is None:
        json.dump(fetch_credentials(account, aws_role), sys.stdout)
        sys.stdout.write("\n")
        return
    if config_path is None:
        raise click.UsageError("--issue-for needs --config")
    config = _load(config_path)
    try:
        lifetime = parse_duration(ttl)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--ttl") from None
    engine = open_engine(config.storage.url)
    log = DirectAuditLog(engine)
    try:
        creds = Credentials(engine, load_keyring(engine), log).for_principal(
            config,
            principal,
            "bot" if bot else "user",
            account,
            aws_role,
            lifetime,
            by=Actor(getpass.getuser()),
        )
    except ControlError as exc:
        if exc.code == "InvalidTtl":
            raise click.BadParameter(exc.message, param_hint="--ttl") from None
        raise click.ClickException(exc.message) from None
    finally:
        log.close()
    json.dump(creds.credential_process_json(), sys.stdout)
    sys.stdout.write("\n")


@cli.command(
    epilog=examples(
        "iamgate demo",
        "iamgate demo --port 8081 --dir /tmp/iamgate-demo",
        "iamgate demo --smoke          # run the printed commands once, then stop",
    )
)
@click.option("--port", default=8080, show_default=True, help="Gateway port on 127.0.0.1.")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path),
    default=Path.home() / ".iamgate" / "demo",
    show_default=True,
    help="Where the demo keeps its config, state and AWS profiles.",
)
@click.option("--smoke", is_flag=True, help="Run the printed commands once, then stop.")
def demo(port: int, directory: Path, smoke: bool) -> None:
    """The sandbox: an embedded AWS with three accounts and the gateway on top."""
    from iamgate.demo import run_demo

    sys.exit(run_demo(port=port, directory=directory, smoke=smoke))


for command in (
    login,
    logout,
    status,
    list_access,
    run_aws,
    env_lines,
    shell,
    console,
    completion,
    profiles,
    users,
    sessions,
    audit,
    config_group,
    request_group,
    bots_group,
    join,
    notifications_group,
):
    cli.add_command(command)
cli.add_command(status, "whoami")
