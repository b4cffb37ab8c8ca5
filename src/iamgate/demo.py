"""`iamgate demo`: a whole estate on one laptop, to see iamgate work in two minutes.

A moto server plays AWS with three accounts; the gateway runs on top of it with a
configuration written for that estate. Everything the demo writes stays in its directory
(`~/.iamgate/demo` by default): the configuration and state, the people's passwords (kept
across restarts), an AWS config file with ready-made profiles, and `env.sh`, which makes any
shell ready for the printed commands (`source …/env.sh`), so neither the person's real
`~/.aws/config` nor their own `~/.iamgate` login is touched.

One demo runs per directory (a lock file says which process holds it). `--smoke` beside a
running demo runs in a temporary directory of its own on a free port and leaves it alone.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pyotp
import yaml

from iamgate.config import Config, parse_config
from iamgate.identity.passwords import hash_password, verify_password
from iamgate.identity.totp import new_totp_secret
from iamgate.sandbox import Sandbox, SandboxAccount
from iamgate.sandbox.federation import FederationStandIn
from iamgate.server import Runtime, build_runtime, run, serving, until_stopped
from iamgate.store.directory import get_user, put_user

BIN = Path(sys.executable).parent


@dataclass(frozen=True, slots=True)
class DemoProfile:
    name: str
    user: str
    account: str
    role: str
    what: str


# Profiles minted on the gateway host for every call (an administrator's shortcut, so the
# first commands need no login). A person's own profiles come from `iamgate login` and
# `iamgate profiles sync`: those are the ones a revocation visibly stops (story 3).
PROFILES = (
    DemoProfile("dana-prod", "dana", "acme-prod", "ReadOnly", "dana's read-only view of prod"),
    DemoProfile("ci", "ci-bot", "acme-ci", "CIRunner", "the CI job in acme-ci"),
)
PEOPLE = ("admin", "dana", "carl")

# The demo's labels. `owner` says whose account it is; only acme's own accounts carry acme's
# `env`, so a role that selects `{owner: [acme], env: [prod]}` can never reach a customer's
# account by accident: a customer's account is reached only by a role that names it.
DEMO_LABELS: dict[str, dict[str, str]] = {
    "acme-prod": {"owner": "acme", "env": "prod"},
    "acme-ci": {"owner": "acme", "env": "ci"},
    "customer-globex": {"owner": "customer", "customer": "globex"},
}


def demo_labels(account: SandboxAccount) -> dict[str, str]:
    return DEMO_LABELS.get(account.name, {"owner": "customer", **account.labels})


def demo_config(sandbox: Sandbox, *, port: int, directory: Path) -> dict[str, Any]:
    return {
        "server": {"listen": f"127.0.0.1:{port}"},
        "storage": {"url": f"sqlite:///{directory / 'state.db'}"},
        "aws": {
            "upstream": {"endpoint_url": sandbox.endpoint_url},
            "accounts": [
                {"name": a.name, "id": a.id, "labels": demo_labels(a)}
                | ({"external_id": a.external_id} if a.external_id else {})
                for a in sandbox.accounts
            ],
        },
        "roles": [
            {
                "name": "data-scientist",
                "description": "acme's own production accounts, read-only",
                "allow": {
                    "accounts": {"owner": ["acme"], "env": ["prod"]},
                    "aws_roles": ["ReadOnly"],
                    "access_levels": ["read", "list"],
                },
                "deny": {"actions": ["rds:Delete*"]},
                "max_session_ttl": "1h",
            },
            {
                "name": "ci-runner",
                "allow": {
                    "accounts": {"name": ["acme-ci"]},
                    "aws_roles": ["CIRunner"],
                    "actions": ["ec2:*", "s3:*", "sts:GetCallerIdentity"],
                },
                "guardrails": [{"action": "ec2:RunInstances", "max": {"MaxCount": 10}}],
            },
            {
                "name": "contractor",
                "description": "a contractor working in the customer's account, read-only",
                "allow": {
                    "accounts": {"customer": ["globex"]},
                    "aws_roles": ["ReadOnly"],
                    "access_levels": ["read", "list"],
                },
                "max_session_ttl": "1h",
            },
            {
                "name": "admin",
                "administer": True,
                "allow": {
                    "accounts": {"name": [a.name for a in sandbox.accounts]},
                    "aws_roles": ["Admin", "ReadOnly"],
                },
            },
        ],
        "users": [
            {"name": "admin", "roles": ["admin"]},
            {"name": "dana", "roles": ["data-scientist"]},
            {"name": "carl", "roles": ["contractor"]},
            {"name": "ci-bot", "roles": ["ci-runner"]},
        ],
    }


def iamgate_executable() -> str:
    """The `iamgate` next to this interpreter, so profiles work from any shell."""
    candidate = BIN / "iamgate"
    return str(candidate) if candidate.exists() else (shutil.which("iamgate") or "iamgate")


def aws_config_text(config: Config, config_path: Path, profiles: tuple[DemoProfile, ...]) -> str:
    exe = iamgate_executable()
    lines = [
        "# Written by `iamgate demo` at every start.",
        "[plugins]",
        "iamgate = iamgate.awscli_plugin",
        "",
    ]
    for p in profiles:
        command = shlex.join(
            [
                exe,
                "credentials",
                "--config",
                str(config_path),
                "--issue-for",
                p.user,
                "--account",
                p.account,
                "--role",
                p.role,
            ]
        )
        lines += [
            f"[profile {p.name}]",
            f"# {p.what}: a fresh credential minted on the gateway host for every call",
            "region = us-east-1",
            f"endpoint_url = {config.server.url}",
            "s3 =",
            "    signature_version = s3v4",
            f"credential_process = {command}",
            "",
        ]
    return "\n".join(lines)


def env_file_text(directory: Path) -> str:
    """`source`d by a shell: the demo's commands then work as printed, in any shell."""
    q = shlex.quote
    return "\n".join(
        [
            "# Written by `iamgate demo`: `source` it to make a shell ready for the demo.",
            f'export PATH={q(str(directory / "bin"))}:{q(str(BIN))}:"$PATH"',
            f"export AWS_CONFIG_FILE={q(str(directory / 'aws-config'))}",
            "# the demo's logins and cached credentials, apart from your own ~/.iamgate",
            f"export IAMGATE_HOME={q(str(directory / 'home'))}",
            "unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_ENDPOINT_URL AWS_ACCESS_KEY_ID \\",
            "    AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN",
            "",
        ]
    )


def code_script_text(people_file: Path) -> str:
    """`demo-code NAME`: a current one-time code of a demo person, without a phone."""
    return "\n".join(
        [
            f"#!{sys.executable}",
            '"""A current one-time code (TOTP) of a person of `iamgate demo`: demo-code NAME."""',
            "import json, sys",
            "import pyotp",
            f"people = json.loads(open({str(people_file)!r}).read())",
            'print(pyotp.TOTP(people[sys.argv[1]]["totp_secret"]).now())',
            "",
        ]
    )


@dataclass(frozen=True, slots=True)
class Step:
    """One printed shell command, run as printed by `--smoke`."""

    command: str
    why: str
    works: bool = True  # or is refused, by design
    login: str | None = None  # asks for this person's password and one-time code
    check: Callable[[str], bool] | None = field(default=None, compare=False)


def _opens_console(output: str) -> bool:
    urls = [line for line in output.splitlines() if line.startswith("http://127.0.0.1:")]
    if not urls:
        return False
    url = urls[0]
    with urllib.request.urlopen(url, timeout=10) as page:  # noqa: S310
        return "assumed-role/ReadOnly/dana" in page.read().decode()


def steps(url: str, directory: Path, ami_id: str) -> tuple[tuple[str, tuple[Step, ...]], ...]:
    """The demo's walk, in sections: what it prints and what `--smoke` runs."""
    launch = f"ec2 run-instances --image-id {ami_id} --query Instances[].InstanceId --count"
    config = shlex.quote(str(directory / "config.yaml"))
    carls = "aws --profile iamgate-customer-globex-ReadOnly s3 ls"
    return (
        (
            "Ready-made profiles (each call mints a credential on the gateway host):",
            (
                Step("aws --profile dana-prod sts get-caller-identity", "who am I, in acme-prod"),
                Step("aws --profile dana-prod s3 ls", "read-only view: reading works"),
                Step(
                    "aws --profile dana-prod rds describe-db-instances"
                    " --query DBInstances[].DBInstanceIdentifier",
                    "read-only view: describing works",
                ),
                Step(
                    "aws --profile dana-prod rds delete-db-instance"
                    " --db-instance-identifier acme-prod-db --skip-final-snapshot",
                    "story 1: deleting the prod database is refused",
                    works=False,
                ),
                Step(
                    f"aws --profile ci {launch} 10",
                    "story 2: the CI job starts the 10 instances it needs",
                ),
                Step(
                    f"aws --profile ci {launch} 1000",
                    "story 2: ...and 1000 are refused by the guardrail",
                    works=False,
                ),
            ),
        ),
        (
            "A person's way: log in (password, then a code: `demo-code dana` prints one):",
            (
                Step(f"iamgate login {url} --user dana", "dana logs in", login="dana"),
                Step(
                    "iamgate ls",
                    "story 4: dana's role reaches acme's prod account, never the customer's",
                    check=lambda out: "acme-prod" in out and "customer-globex" not in out,
                ),
                Step(
                    "iamgate aws --account acme-prod --role ReadOnly -- rds describe-db-instances"
                    " --query DBInstances[].DBInstanceIdentifier",
                    "her credentials, without a profile",
                ),
                Step(
                    "iamgate aws --account customer-globex --role ReadOnly -- s3 ls",
                    "story 4: the customer's account is not hers",
                    works=False,
                ),
                Step(
                    "iamgate console --account acme-prod --role ReadOnly",
                    "a console sign-in URL with the same view (open it in a browser)",
                    check=_opens_console,
                ),
            ),
        ),
        (
            "Story 3, a contractor's key leaks (`demo-code carl` prints his code):",
            (
                Step(f"iamgate login {url} --user carl", "carl logs in", login="carl"),
                Step(
                    "iamgate profiles sync",
                    "his own profiles, written into $AWS_CONFIG_FILE",
                    check=lambda out: "iamgate-customer-globex-ReadOnly" in out,
                ),
                Step(
                    carls,
                    "story 4: the contractor works in the customer's account",
                    check=lambda out: "customer-globex-data" in out,
                ),
                Step(
                    f"iamgate sessions revoke --user carl --config {config}",
                    "the administrator revokes carl, on the gateway host",
                ),
                Step(
                    carls,
                    "story 3: his next call is refused: his key is revoked, and so is the"
                    " login that could mint another",
                    works=False,
                    check=lambda out: "revoked" in out,
                ),
            ),
        ),
    )


# -- one demo per directory -------------------------------------------------------------


class DemoBusy(Exception):
    """Another demo holds the directory, or the port is taken."""


class DemoLock:
    """An exclusive lock on the demo's directory, held for as long as the demo runs."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "demo.lock"
        self._file: IO[str] | None = None

    def acquire(self, url: str) -> None:
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            raise DemoBusy(
                f"another iamgate demo is running from {self.path.parent}"
                + (f" ({holder})" if holder else "")
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}, gateway {url}\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the gateway binds
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _claim(directory: Path, port: int) -> DemoLock:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = DemoLock(directory)
    lock.acquire(f"http://127.0.0.1:{port}")
    if _port_in_use(port):
        lock.release()
        raise DemoBusy(f"127.0.0.1:{port} is in use (another demo or gateway?)")
    return lock


# -- the people -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class People:
    credentials: dict[str, tuple[str, str]]  # name -> (password, TOTP secret)
    changed: tuple[str, ...]  # whose password and secret are new at this start


def seed_people(runtime: Runtime, directory: Path) -> People:
    """Passwords and TOTP secrets for the demo's people, kept in `people.json` (0600)
    across restarts; made anew only for someone who has none, or whose password an
    administrator has changed meanwhile."""
    people_file = directory / "people.json"
    try:
        known: dict[str, Any] = json.loads(people_file.read_text())
    except (OSError, ValueError):
        known = {}
    credentials: dict[str, tuple[str, str]] = {}
    changed = []
    for name in PEOPLE:
        entry = known.get(name) or {}
        password, secret = entry.get("password"), entry.get("totp_secret")
        row = get_user(runtime.engine, name)
        if (
            isinstance(password, str)
            and isinstance(secret, str)
            and row is not None
            and row.record.totp_secret == secret
            and verify_password(row.record.password_hash, password)
        ):
            credentials[name] = (password, secret)
            continue
        password, secret = secrets.token_urlsafe(12), new_totp_secret()
        put_user(runtime.engine, name, password_hash=hash_password(password), totp_secret=secret)
        credentials[name] = (password, secret)
        changed.append(name)
    people_file.touch(mode=0o600)
    people_file.chmod(0o600)
    people_file.write_text(
        json.dumps(
            {n: {"password": p, "totp_secret": s} for n, (p, s) in credentials.items()}, indent=1
        )
    )
    return People(credentials, tuple(changed))


# -- running ----------------------------------------------------------------------------


def _say(text: str) -> None:
    print(f"demo: {text}", flush=True)


async def _until_ready(runtime: Runtime) -> None:
    started = time.monotonic()
    _say(
        f"gateway listening on {runtime.config.server.url}; compiling AWS's service models"
        " (about 15 s; /api/v1/health answers 503 until then)..."
    )
    while not runtime.gateway.ready:  # noqa: ASYNC110 - a property, with no event to await
        await asyncio.sleep(0.2)
    _say(f"gateway ready in {time.monotonic() - started:.0f} s")


async def _serve(
    runtime: Runtime, smoke: bool, directory: Path, sandbox: Sandbox, people: People
) -> int:
    async with serving(runtime):
        await _until_ready(runtime)
        walk = steps(runtime.config.server.url, directory, sandbox.ami_id)
        _print_welcome(runtime.config, sandbox, directory, people, walk)
        if smoke:
            return await asyncio.to_thread(_smoke, directory, people, walk)
        await until_stopped()
    return 0


def _smoke(directory: Path, people: People, walk: tuple[tuple[str, tuple[Step, ...]], ...]) -> int:
    """Each printed command, as printed, in a shell made ready by the printed line."""
    ready = f". {shlex.quote(str(directory / 'env.sh'))}"
    done = unexpected = 0
    for _, section in walk:
        for step in section:
            print(f"\n# {step.why}\n$ {step.command}", flush=True)
            given = None
            if step.login is not None:
                password, secret = people.credentials[step.login]
                given = f"{password}\n{pyotp.TOTP(secret).now()}\n"
            result = subprocess.run(
                ["bash", "-c", f"{ready} && {step.command}"],
                input=given,
                capture_output=True,
                text=True,
                check=False,
                # no terminal: the password prompt reads the standard input
                start_new_session=True,
                timeout=120,
            )
            output = result.stdout + result.stderr
            print(output, end="" if output.endswith("\n") or not output else "\n", flush=True)
            behaved = (result.returncode == 0) == step.works
            if behaved and step.check is not None:
                try:
                    behaved = step.check(output)
                except OSError as error:
                    print(f"demo: {error}")
                    behaved = False
            done += 1
            if not behaved:
                unexpected += 1
                print("demo: ^ this did not behave as designed", flush=True)
    print(f"\ndemo: {done - unexpected} of {done} commands behaved as designed", flush=True)
    return 1 if unexpected else 0


def _print_welcome(
    config: Config,
    sandbox: Sandbox,
    directory: Path,
    people: People,
    walk: tuple[tuple[str, tuple[Step, ...]], ...],
) -> None:
    accounts = config.aws.accounts
    labels = "; ".join(
        f"{a.name}: " + ", ".join(f"{k}={v}" for k, v in a.labels.items()) for a in accounts
    )
    print(f"""
iamgate demo
  gateway   {config.server.url}   (the AWS API endpoint for the profiles below)
  web UI    {config.server.url}/   (log in as one of the people below; admin administers)
  console   {config.aws.console.federation_url}   (stands in for signin.aws.amazon.com)
  sandbox   {sandbox.endpoint_url}   (moto, playing AWS)
  accounts  {", ".join(f"{a.name} ({a.id})" for a in accounts)}
  labels    {labels}
  files     {directory}   (config.yaml, state.db, aws-config, people.json, env.sh)

People log in with a password and a one-time code (TOTP). For the demo:
  {"user":8}{"password":28}TOTP secret (add it to an authenticator app)""")
    for name, (password, secret) in people.credentials.items():
        print(f"  {name:8}{password:28}{secret}")
    if people.changed:
        print(f"  (new at this start: {', '.join(people.changed)}; the others are as before)")
    else:
        print("  (the same as at the last start)")
    print(f"""
In another shell, this line makes it ready (PATH, AWS_CONFIG_FILE, IAMGATE_HOME):
  $ source {shlex.quote(str(directory / "env.sh"))}""")
    for title, section in walk:
        print(f"\n{title}")
        for step in section:
            print(f"  $ {step.command}")
            print(f"      # {step.why}{'' if step.works else ' (refused)'}")
    print("\nEvery AWS call above goes through the gateway, is re-signed with AssumeRole")
    print("credentials for its account, and is audited. Ctrl-C stops the demo.", flush=True)


def run_demo(*, port: int, directory: Path, smoke: bool) -> int:
    directory = directory.expanduser().absolute()
    scratch: Path | None = None
    try:
        lock = _claim(directory, port)
    except DemoBusy as busy:
        if not smoke:
            print(
                f"iamgate demo: {busy}. Stop it first, or give this one its own --dir and --port.",
                file=sys.stderr,
            )
            return 2
        scratch = Path(tempfile.mkdtemp(prefix="iamgate-demo-smoke-"))
        directory, port = scratch, _free_port()
        lock = _claim(directory, port)
        _say(f"{busy}: leaving it alone, this smoke run uses {directory} and port {port}")
    try:
        return _run(port, directory, smoke)
    except KeyboardInterrupt:
        return 0
    finally:
        lock.release()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _write_private(path: Path, text: str, mode: int = 0o600) -> None:
    path.touch(mode=mode)
    path.chmod(mode)
    path.write_text(text)


def _run(port: int, directory: Path, smoke: bool) -> int:
    _say("starting the sandbox: moto, three accounts, their roles, buckets, instances and")
    _say("databases (about 10 s)...")
    started = time.monotonic()
    with Sandbox() as sandbox, FederationStandIn(sandbox.endpoint_url) as federation:
        _say(f"sandbox ready at {sandbox.endpoint_url} in {time.monotonic() - started:.0f} s")
        os.environ.update(sandbox.gateway_credentials)
        config_path = directory / "config.yaml"
        settings = demo_config(sandbox, port=port, directory=directory)
        # moto has no console: "Open console" lands on the sandbox's sign-in stand-in.
        settings["aws"]["console"] = {"federation_url": federation.url}
        config_path.write_text(yaml.safe_dump(settings, sort_keys=False))
        config = parse_config(config_path.read_text(), source=str(config_path))
        _write_private(directory / "aws-config", aws_config_text(config, config_path, PROFILES))
        _write_private(directory / "env.sh", env_file_text(directory))
        (directory / "bin").mkdir(exist_ok=True)
        _write_private(
            directory / "bin" / "demo-code", code_script_text(directory / "people.json"), 0o700
        )
        (directory / "home").mkdir(exist_ok=True, mode=0o700)
        runtime = build_runtime(config)
        people = seed_people(runtime, directory)
        return run(_serve(runtime, smoke, directory, sandbox, people))
