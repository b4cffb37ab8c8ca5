"""`iamgate demo`: a whole estate on one laptop, to see iamgate work in two minutes.

A moto server plays AWS with three accounts; the gateway runs on top of it with a
configuration written for that estate; AWS CLI profiles that get their credentials from
`iamgate credentials` are written to a config file of the demo's own, so the person's real
`~/.aws/config` is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from iamgate.config import Config, parse_config
from iamgate.sandbox import Sandbox
from iamgate.server import Runtime, build_runtime, run, serving


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
    DemoProfile("globex", "dana", "customer-globex", "ReadOnly", "a customer account"),
)


def demo_config(sandbox: Sandbox, *, port: int, directory: Path) -> dict[str, object]:
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
                    "actions": ["ec2:*", "s3:*"],
                },
                "guardrails": [{"action": "ec2:RunInstances", "max": {"MaxCount": 10}}],
            },
        ],
        "users": [
            {"name": "dana", "roles": ["data-scientist"]},
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


def commands_to_try(ami_id: str) -> tuple[tuple[str, str], ...]:
    return (
        ("dana-prod", "sts get-caller-identity"),
        ("dana-prod", "s3 ls"),
        ("dana-prod", "ec2 describe-instances --query Reservations[].Instances[].InstanceId"),
        ("dana-prod", "rds describe-db-instances --query DBInstances[].DBInstanceIdentifier"),
        ("ci", "s3 ls"),
        ("ci", f"ec2 run-instances --image-id {ami_id} --count 2 --query Instances[].InstanceId"),
        ("globex", "s3 ls"),
    )


async def _serve(runtime: Runtime, smoke: bool, aws_config: Path, sandbox: Sandbox) -> int:
    async with serving(runtime):
        _print_welcome(runtime.config, sandbox, aws_config)
        if smoke:
            return await asyncio.to_thread(_smoke, aws_config, commands_to_try(sandbox.ami_id))
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
    return 0


def _aws_env(aws_config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_CONFIG_FILE"] = str(aws_config)
    env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _smoke(aws_config: Path, commands: tuple[tuple[str, str], ...]) -> int:
    failures = 0
    for profile, command in commands:
        print(f"\n$ aws --profile {profile} {command}", flush=True)
        result = subprocess.run(
            ["aws", "--profile", profile, *shlex.split(command)],
            env=_aws_env(aws_config),
            check=False,
        )
        failures += result.returncode != 0
    print(f"\ndemo: {len(commands) - failures} of {len(commands)} commands succeeded")
    return 1 if failures else 0


def _print_welcome(config: Config, sandbox: Sandbox, aws_config: Path) -> None:
    print(f"""
iamgate demo
  gateway   {config.server.url}   (the AWS API endpoint for the profiles below)
  sandbox   {sandbox.endpoint_url}   (moto, playing AWS)
  accounts  {", ".join(f"{a.name} ({a.id})" for a in sandbox.accounts)}

In another shell:
  export AWS_CONFIG_FILE={aws_config}
""")
    for profile, command in commands_to_try(sandbox.ami_id):
        print(f"  aws --profile {profile} {command}")
    print("\nEvery call above goes through the gateway, is re-signed with AssumeRole credentials")
    print("for its account, and is audited. Ctrl-C stops the demo.", flush=True)


def run_demo(*, port: int, directory: Path, smoke: bool) -> int:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with Sandbox() as sandbox:
        os.environ.update(sandbox.gateway_credentials)
        config_path = directory / "config.yaml"
        config_path.write_text(
            yaml.safe_dump(demo_config(sandbox, port=port, directory=directory), sort_keys=False)
        )
        config = parse_config(config_path.read_text(), source=str(config_path))
        aws_config = directory / "aws-config"
        aws_config.write_text(aws_config_text(config, config_path, PROFILES))
        aws_config.chmod(0o600)
        runtime = build_runtime(config)
        try:
            return run(_serve(runtime, smoke, aws_config, sandbox))
        except KeyboardInterrupt:
            return 0
