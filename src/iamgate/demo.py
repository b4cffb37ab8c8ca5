"""`iamgate demo`: a whole estate on one laptop, to see iamgate work in two minutes.

A moto server plays AWS with three accounts; the gateway runs on top of it with a
configuration written for that estate. Everything the demo writes stays in its directory
(`~/.iamgate/demo` by default): the configuration and state, the people's passwords (kept
across restarts), an AWS config file with ready-made profiles, and `env.sh`, which makes any
shell ready for the printed commands (`source …/env.sh`), so neither the person's real
`~/.aws/config` nor their own `~/.iamgate` login is touched.

The CI story needs no iamgate client: a local OIDC issuer (its own process on 127.0.0.1)
stands in for GitHub Actions, the demo keeps a fresh job token in `ci/token` as a runner
would, and `ci-job COMMAND` runs a command with nothing but the four variables a job sets
(`AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_ROLE_ARN`, `AWS_ENDPOINT_URL`, `AWS_DEFAULT_REGION`):
the AWS CLI itself exchanges the token at the gateway.

One demo runs per directory (a lock file says which process holds it). `--smoke` beside a
running demo runs in a temporary directory of its own on a free port and leaves it alone.
"""

from __future__ import annotations

import asyncio
import contextlib
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
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
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
from iamgate.sandbox.oidc_issuer import GITHUB_JOB_CLAIMS
from iamgate.server import Runtime, build_runtime, run, serving, until_stopped
from iamgate.store.users import get_user, put_user

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
)
PEOPLE = ("admin", "dana", "carl")

# The CI story: acme/infra's deploy workflow on main, as GitHub Actions would run it, is the
# bot ci-deploy by the binding infra-main; the job asks for the IAM role CIRunner in acme-ci.
CI_BOT = "ci-deploy"
CI_BINDING = "infra-main"
CI_ACCOUNT = "acme-ci"
CI_ROLE = "CIRunner"
CI_REGION = "us-east-1"
TOKEN_REFRESH = 60.0  # seconds; the issuer's tokens live 5 minutes, as GitHub's do

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


def demo_config(sandbox: Sandbox, *, port: int, directory: Path, issuer_url: str) -> dict[str, Any]:
    gateway = f"http://127.0.0.1:{port}"
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
        ],
        "bots": [
            {
                "name": CI_BOT,
                "roles": ["ci-runner"],
                "description": "acme/infra's deploy workflow on GitHub Actions (main only)",
            }
        ],
        "oidc": {
            "issuers": [{"url": issuer_url, "audience": gateway}],
            "bindings": [
                {
                    "name": CI_BINDING,
                    "bot": CI_BOT,
                    "claims": {"repository": "acme/infra", "ref": "refs/heads/main"},
                }
            ],
        },
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


def ci_role_arn(sandbox: Sandbox) -> str:
    account = next(a for a in sandbox.accounts if a.name == CI_ACCOUNT)
    return f"arn:aws:iam::{account.id}:role/{CI_ROLE}"


def job_variables(directory: Path, gateway: str, role_arn: str) -> dict[str, str]:
    """All a CI job sets to use the gateway: no key, no secret, no iamgate."""
    return {
        "AWS_WEB_IDENTITY_TOKEN_FILE": str(directory / "ci" / "token"),
        "AWS_ROLE_ARN": role_arn,
        "AWS_ENDPOINT_URL": gateway,
        "AWS_DEFAULT_REGION": CI_REGION,
    }


def ci_job_script_text(variables: dict[str, str], home: Path) -> str:
    """`ci-job COMMAND...`: COMMAND with a job's environment alone. No AWS config file (so
    neither the demo's profiles and plugin nor the person's own), no key: the AWS CLI or SDK
    exchanges the token in the file for credentials, as in GitHub Actions. Its HOME is the
    job's own (the AWS CLI caches the exchanged credentials under ~/.aws), not the person's."""
    q = shlex.quote
    assignments = " ".join(f"{name}={q(value)}" for name, value in variables.items())
    return "\n".join(
        [
            "#!/bin/sh",
            "# Written by `iamgate demo`: ci-job COMMAND... runs COMMAND as the demo's CI job,",
            "# with only the four variables a job sets (and PATH, and a HOME of its own).",
            f'exec env -i PATH="$PATH" HOME={q(str(home))} \\',
            f"    {assignments} \\",
            "    AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \\",
            '    "$@"',
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
    run_id = GITHUB_JOB_CLAIMS["run_id"]
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
            ),
        ),
        (
            "A CI job with no secret (`ci-job` runs a command with the four variables alone):",
            (
                Step(
                    "ci-job aws sts get-caller-identity",
                    f"the job's token exchanged at the gateway: it is the bot {CI_BOT}",
                    check=lambda out: f"assumed-role/{CI_ROLE}/bot={CI_BOT}" in out,
                ),
                Step(
                    f"ci-job aws {launch} 10",
                    "story 2: the CI job starts the 10 instances it needs",
                ),
                Step(
                    f"ci-job aws {launch} 1000",
                    "story 2: ...and 1000 are refused by the guardrail",
                    works=False,
                    check=lambda out: "MaxCount=1000 is above the limit of 10" in out,
                ),
                Step(
                    f"iamgate audit search --claim run_id={run_id} --config {config}",
                    "every call of the job names its run, commit and workflow in the audit trail",
                    check=lambda out: f"bot:{CI_BOT}" in out,
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


# -- the CI system's issuer ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LocalIssuer:
    """The demo's stand-in for GitHub Actions' OIDC issuer, running in its own process."""

    url: str
    request_token: str  # what a runner gives its job to ask for tokens

    def job_token(self, audience: str) -> str:
        """A job's token, asked for as a GitHub job asks (its bearer request token)."""
        request = urllib.request.Request(  # noqa: S310 - the issuer on loopback
            f"{self.url}/token?{urllib.parse.urlencode({'audience': audience})}",
            headers={"Authorization": f"Bearer {self.request_token}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return str(json.load(response)["value"])

    def write_job_token(self, path: Path, audience: str) -> None:
        """A fresh token in the job's token file, replaced whole (a reader never sees half)."""
        fresh = path.with_name(path.name + ".new")
        _write_private(fresh, self.job_token(audience))
        fresh.replace(path)


@contextlib.contextmanager
def local_issuer(directory: Path) -> Iterator[LocalIssuer]:
    ready = directory / "issuer.json"
    ready.unlink(missing_ok=True)
    ready.touch(mode=0o600)  # it will hold the request token
    process = subprocess.Popen(
        [sys.executable, "-m", "iamgate.sandbox.oidc_issuer", "--ready-file", str(ready)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # a terminal's Ctrl-C is the demo's to handle
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the demo's OIDC issuer did not start")
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        yield LocalIssuer(info["url"], info["request_token"])
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _keep_token_fresh(issuer: LocalIssuer, path: Path, audience: str) -> None:
    """As a runner does for each job: the token file never holds an expired token."""
    while True:
        await asyncio.sleep(TOKEN_REFRESH)
        try:
            await asyncio.to_thread(issuer.write_job_token, path, audience)
        except OSError as error:
            _say(f"could not refresh the CI job's token: {error}")


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
    runtime: Runtime,
    smoke: bool,
    directory: Path,
    sandbox: Sandbox,
    people: People,
    issuer: LocalIssuer,
) -> int:
    gateway = runtime.config.server.url
    refresher = asyncio.create_task(_keep_token_fresh(issuer, directory / "ci" / "token", gateway))
    try:
        async with serving(runtime):
            await _until_ready(runtime)
            walk = steps(gateway, directory, sandbox.ami_id)
            _print_welcome(runtime.config, sandbox, directory, people, walk, issuer)
            if smoke:
                return await asyncio.to_thread(_smoke, directory, people, walk)
            await until_stopped()
        return 0
    finally:
        refresher.cancel()


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
    issuer: LocalIssuer,
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
  CI issuer {issuer.url}   (OIDC, stands in for GitHub Actions)
  accounts  {", ".join(f"{a.name} ({a.id})" for a in accounts)}
  labels    {labels}
  files     {directory}   (config.yaml, state.db, aws-config, people.json, env.sh, ci/)

People log in with a password and a one-time code (TOTP). For the demo:
  {"user":8}{"password":28}TOTP secret (add it to an authenticator app)""")
    for name, (password, secret) in people.credentials.items():
        print(f"  {name:8}{password:28}{secret}")
    if people.changed:
        print(f"  (new at this start: {', '.join(people.changed)}; the others are as before)")
    else:
        print("  (the same as at the last start)")
    variables = job_variables(directory, config.server.url, ci_role_arn(sandbox))
    print(f"""
A CI job needs no key and no iamgate: acme/infra's deploy workflow on main (the issuer's
job token, kept fresh in ci/token) is the bot {CI_BOT} by the binding {CI_BINDING}.
These four variables are all the job sets; `ci-job` runs a command with them alone:""")
    for name, value in variables.items():
        print(f"  export {name}={shlex.quote(value)}")
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
        ci = directory / "ci"
        ci.mkdir(exist_ok=True, mode=0o700)
        with local_issuer(ci) as issuer:
            return _run_with(port, directory, smoke, sandbox, federation, issuer)


def _run_with(
    port: int,
    directory: Path,
    smoke: bool,
    sandbox: Sandbox,
    federation: FederationStandIn,
    issuer: LocalIssuer,
) -> int:
    _say(f"OIDC issuer (standing in for GitHub Actions) at {issuer.url}")
    config_path = directory / "config.yaml"
    settings = demo_config(sandbox, port=port, directory=directory, issuer_url=issuer.url)
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
    variables = job_variables(directory, config.server.url, ci_role_arn(sandbox))
    (directory / "ci" / "home").mkdir(exist_ok=True, mode=0o700)
    job = ci_job_script_text(variables, directory / "ci" / "home")
    _write_private(directory / "bin" / "ci-job", job, 0o700)
    issuer.write_job_token(directory / "ci" / "token", config.server.url)
    (directory / "home").mkdir(exist_ok=True, mode=0o700)
    runtime = build_runtime(config)
    people = seed_people(runtime, directory)
    return run(_serve(runtime, smoke, directory, sandbox, people, issuer))
