"""`iamgate demo`: a whole estate on one laptop, to see iamgate work in two minutes.

A moto server plays AWS with three accounts; the gateway runs on top of it with a
configuration written for that estate; AWS CLI profiles that get their credentials from
`iamgate credentials` are written to a config file of the demo's own, so the person's real
`~/.aws/config` is never touched.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyotp
import yaml

from iamgate.config import Config, parse_config
from iamgate.identity.passwords import hash_password
from iamgate.identity.totp import new_totp_secret
from iamgate.sandbox import Sandbox
from iamgate.sandbox.federation import FederationStandIn
from iamgate.server import Runtime, build_runtime, run, serving, until_stopped
from iamgate.store.directory import put_user


@dataclass(frozen=True, slots=True)
class DemoProfile:
    name: str
    user: str
    account: str
    role: str
    what: str


PROFILES = (
    DemoProfile("dana-prod", "dana", "acme-prod", "ReadOnly", "dana's read-only view of prod"),
    DemoProfile("ci", "ci-bot", "acme-ci", "CIRunner", "the CI job in acme-ci"),
    DemoProfile("carl-globex", "carl", "customer-globex", "ReadOnly", "carl, a contractor"),
)
PEOPLE = ("admin", "dana", "carl")


def demo_config(sandbox: Sandbox, *, port: int, directory: Path) -> dict[str, Any]:
    return {
        "server": {"listen": f"127.0.0.1:{port}"},
        "storage": {"url": f"sqlite:///{directory / 'state.db'}"},
        "aws": {
            "upstream": {"endpoint_url": sandbox.endpoint_url},
            "accounts": [
                {"name": a.name, "id": a.id, "labels": a.labels}
                | ({"external_id": a.external_id} if a.external_id else {})
                for a in sandbox.accounts
            ],
        },
        "roles": [
            {
                "name": "data-scientist",
                "allow": {
                    "accounts": {"env": ["prod"]},
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
    candidate = Path(sys.executable).parent / "iamgate"
    return str(candidate) if candidate.exists() else (shutil.which("iamgate") or "iamgate")


def aws_config_text(config: Config, config_path: Path, profiles: tuple[DemoProfile, ...]) -> str:
    exe = iamgate_executable()
    lines = [
        "# Written by `iamgate demo`. Profiles get short-lived gateway credentials.",
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
            f"# {p.what}",
            "region = us-east-1",
            f"endpoint_url = {config.server.url}",
            "s3 =",
            "    signature_version = s3v4",
            f"credential_process = {command}",
            "",
        ]
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Try:
    profile: str
    command: str
    works: bool  # or is refused, by design
    why: str


def commands_to_try(ami_id: str) -> tuple[Try, ...]:
    run = f"ec2 run-instances --image-id {ami_id} --query Instances[].InstanceId --count"
    return (
        Try("dana-prod", "sts get-caller-identity", True, "who am I, in acme-prod"),
        Try("dana-prod", "s3 ls", True, "read-only view: reading works"),
        Try(
            "dana-prod",
            "rds describe-db-instances --query DBInstances[].DBInstanceIdentifier",
            True,
            "read-only view: describing works",
        ),
        Try(
            "dana-prod",
            "rds delete-db-instance --db-instance-identifier acme-prod-db --skip-final-snapshot",
            False,
            "story 1: deleting the prod database is refused",
        ),
        Try("ci", f"{run} 10", True, "story 2: the CI job starts the 10 instances it needs"),
        Try("ci", f"{run} 1000", False, "story 2: ...and 1000 are refused by the guardrail"),
        Try("carl-globex", "s3 ls", True, "story 4: the contractor in the customer's account"),
    )


async def _serve(
    runtime: Runtime,
    smoke: bool,
    aws_config: Path,
    sandbox: Sandbox,
    people: dict[str, tuple[str, str]],
) -> int:
    async with serving(runtime):
        _print_welcome(runtime.config, sandbox, aws_config, people)
        if smoke:
            commands = await asyncio.to_thread(_smoke, aws_config, commands_to_try(sandbox.ami_id))
            console = await asyncio.to_thread(
                _smoke_console, runtime.config.server.url, people["dana"], aws_config.parent
            )
            return commands or console
        await until_stopped()
    return 0


def _aws_env(aws_config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_CONFIG_FILE"] = str(aws_config)
    env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _smoke(aws_config: Path, commands: tuple[Try, ...]) -> int:
    unexpected = 0
    for step in commands:
        print(f"\n# {step.why}\n$ aws --profile {step.profile} {step.command}", flush=True)
        result = subprocess.run(
            [
                "aws",
                "--profile",
                step.profile,
                *shlex.split(step.command),
                "--cli-connect-timeout",
                "5",
            ],
            env=_aws_env(aws_config),
            check=False,
        )
        unexpected += (result.returncode == 0) != step.works
    print(f"\ndemo: {len(commands) - unexpected} of {len(commands)} commands behaved as designed")
    return 1 if unexpected else 0


def _smoke_console(url: str, dana: tuple[str, str], directory: Path) -> int:
    """dana logs in as a person does and opens the console of her read-only view."""
    password, secret = dana
    env = _aws_env(directory / "aws-config") | {"IAMGATE_HOME": str(directory / "dana-home")}
    iamgate = str(Path(sys.executable).parent / "iamgate")
    print("\n# the console, from the CLI (the web UI's Open console does the same)")
    print(
        f"$ iamgate login {url} --user dana && iamgate console --account acme-prod --role ReadOnly"
    )
    code = pyotp.TOTP(secret).now()
    logged_in = subprocess.run(
        [iamgate, "login", url, "--user", "dana", "--password-stdin", "--otp", code],
        input=password + "\n",
        text=True,
        env=env,
        check=False,
    )
    signin = subprocess.run(
        [iamgate, "console", "--account", "acme-prod", "--role", "ReadOnly"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if logged_in.returncode or signin.returncode:
        print(signin.stderr, end="")
        return 1
    with urllib.request.urlopen(signin.stdout.strip(), timeout=10) as page:  # noqa: S310
        signed_in = "assumed-role/ReadOnly/dana" in page.read().decode()
    print("console: signed in as dana in acme-prod, read-only" if signed_in else "console: failed")
    return 0 if signed_in else 1


def _print_welcome(
    config: Config, sandbox: Sandbox, aws_config: Path, people: dict[str, tuple[str, str]]
) -> None:
    print(f"""
iamgate demo
  gateway   {config.server.url}   (the AWS API endpoint for the profiles below)
  web UI    {config.server.url}/   (log in as one of the people below; admin administers)
  console   {config.aws.console.federation_url}   (stands in for signin.aws.amazon.com)
  sandbox   {sandbox.endpoint_url}   (moto, playing AWS)
  accounts  {", ".join(f"{a.name} ({a.id})" for a in sandbox.accounts)}

In another shell:
  export AWS_CONFIG_FILE={aws_config}
""")
    for step in commands_to_try(sandbox.ami_id):
        print(f"  aws --profile {step.profile} {step.command}")
        print(f"      # {step.why}{'' if step.works else ' (refused)'}")
    print(f"""
People log in with a password and a one-time code (TOTP). For the demo:
  {"user":8}{"password":28}TOTP secret (add it to an authenticator app)""")
    for name, (password, secret) in people.items():
        print(f"  {name:8}{password:28}{secret}")
    print(f"""  a current code without a phone:  {Path(sys.executable).parent / "python"} -c \\
      "import pyotp; print(pyotp.TOTP('SECRET').now())"

  iamgate login {config.server.url} --user dana
  iamgate ls
  iamgate profiles sync --config-file {aws_config.parent / "my-aws-config"}
  iamgate aws --account acme-prod --role ReadOnly -- rds describe-db-instances
  iamgate sessions revoke --user carl --config {aws_config.parent / "config.yaml"}
      # revocation: carl's credentials stop working on their next call""")
    print("\nEvery call above goes through the gateway, is re-signed with AssumeRole credentials")
    print("for its account, and is audited. Ctrl-C stops the demo.", flush=True)


def seed_people(runtime: Runtime) -> dict[str, tuple[str, str]]:
    """Passwords and TOTP secrets for the demo's people, made anew on every start."""
    people = {}
    for name in PEOPLE:
        password, secret = secrets.token_urlsafe(12), new_totp_secret()
        put_user(runtime.engine, name, password_hash=hash_password(password), totp_secret=secret)
        people[name] = (password, secret)
    return people


def run_demo(*, port: int, directory: Path, smoke: bool) -> int:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with Sandbox() as sandbox, FederationStandIn(sandbox.endpoint_url) as federation:
        os.environ.update(sandbox.gateway_credentials)
        config_path = directory / "config.yaml"
        settings = demo_config(sandbox, port=port, directory=directory)
        # moto has no console: "Open console" lands on the sandbox's sign-in stand-in.
        settings["aws"]["console"] = {"federation_url": federation.url}
        config_path.write_text(yaml.safe_dump(settings, sort_keys=False))
        config = parse_config(config_path.read_text(), source=str(config_path))
        aws_config = directory / "aws-config"
        aws_config.write_text(aws_config_text(config, config_path, PROFILES))
        aws_config.chmod(0o600)
        runtime = build_runtime(config)
        people = seed_people(runtime)
        try:
            return run(_serve(runtime, smoke, aws_config, sandbox, people))
        except KeyboardInterrupt:
            return 0
