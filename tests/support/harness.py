"""Real processes for end-to-end tests: `iamgate serve` and the `aws` CLI.

The gateway runs as its own process from a config file, exactly as an operator runs it;
the AWS CLI runs with an environment of its own, so nothing on the machine (~/.aws,
AWS_* variables) leaks into a test.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import yaml
from botocore.config import Config as BotoConfig

from iamgate.identity.credentials import GatewayCredentials, mint_credentials
from iamgate.sandbox import Sandbox
from iamgate.store.database import load_keyring, open_engine

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(tmp: Path) -> dict[str, str]:
    """An environment with no AWS settings of the machine's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_CONFIG_FILE"] = str(tmp / "no-aws-config")
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp / "no-aws-credentials")
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def gateway_config(
    sandbox: Sandbox,
    *,
    port: int,
    directory: Path,
    tls: tuple[Path, Path] | None = None,
    federation_url: str | None = None,
) -> dict[str, Any]:
    server: dict[str, Any] = {"listen": f"127.0.0.1:{port}"}
    if tls is not None:
        server["tls"] = {"cert": str(tls[0]), "key": str(tls[1])}
    return {
        "server": server,
        "storage": {"url": f"sqlite:///{directory / 'state.db'}"},
        "aws": {
            "upstream": {"endpoint_url": sandbox.endpoint_url},
            "console": {"federation_url": federation_url},
            "accounts": [
                {"name": a.name, "id": a.id, "labels": a.labels}
                | ({"external_id": a.external_id} if a.external_id else {})
                for a in sandbox.accounts
            ],
        },
        "roles": TEST_ROLES,
        "users": [
            {"name": "dana", "roles": ["data-scientist"]},
            {"name": "ci-bot", "roles": ["ci-runner"]},
            {"name": "carl", "roles": ["contractor"]},
            {"name": "loader", "roles": ["admin"]},
        ],
    }


# The stories of the design, plus what the end-to-end tests of the CI role exercise.
TEST_ROLES: list[dict[str, Any]] = [
    {
        "name": "data-scientist",
        "allow": {
            "accounts": {"env": ["prod"]},
            "aws_roles": ["ReadOnly", "DataScientist"],
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
            "actions": [
                "ec2:*",
                "s3:*",
                "dynamodb:*",
                "lambda:List*",
                "iam:List*",
                "sqs:*",
                "kms:*",
                "sts:GetCallerIdentity",
            ],
        },
        "guardrails": [{"action": "ec2:RunInstances", "max": {"MaxCount": 10}}],
    },
    {
        "name": "admin",
        "administer": True,
        "allow": {
            "accounts": {"name": ["acme-prod", "acme-ci", "customer-globex"]},
            "aws_roles": ["Admin", "ReadOnly"],
        },
    },
    {
        "name": "contractor",
        "allow": {
            "accounts": {"customer": ["globex"]},
            "aws_roles": ["ReadOnly"],
            "access_levels": ["read", "list"],
        },
    },
]


@dataclass
class GatewayProcess:
    """`iamgate serve --config F` as a child process."""

    sandbox: Sandbox
    directory: Path
    tls: tuple[Path, Path] | None = None
    federation_url: str | None = None  # the sandbox's stand-in for AWS's sign-in endpoint
    storage_url: str | None = None  # default: SQLite in `directory`
    server: dict[str, Any] = field(default_factory=dict)  # more of the `server:` section
    args: tuple[str, ...] = ()  # more of `iamgate serve`'s options, e.g. ("--workers", "2")
    # Sections added to the configuration, or (`roles`) appended to the test roles.
    extra: dict[str, Any] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.directory / "config.yaml"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def state_url(self) -> str:
        """The store, as SQLAlchemy (in this process) reaches it."""
        url = self.storage_url or f"sqlite:///{self.directory / 'state.db'}"
        return url.replace("postgresql://", "postgresql+psycopg://", 1)

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = gateway_config(
            self.sandbox,
            port=self.port,
            directory=self.directory,
            tls=self.tls,
            federation_url=self.federation_url,
        )
        if self.storage_url is not None:
            config["storage"]["url"] = self.storage_url
        config["server"].update(self.server)
        for section, value in self.extra.items():
            config[section] = config[section] + value if section == "roles" else value
        self.config_path.write_text(yaml.safe_dump(config))
        env = clean_env(self.directory)
        env.update(self.sandbox.gateway_credentials)
        log = (self.directory / "gateway.log").open("wb")
        self.process = subprocess.Popen(
            [str(BIN / "iamgate"), "serve", "--config", str(self.config_path), *self.args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    "gateway exited:\n" + (self.directory / "gateway.log").read_text()
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("gateway did not start listening")

    def wait_until_ready(self, timeout: float = 120) -> None:
        """Until every service model is compiled (`/api/v1/health` answers 200): an
        unsigned request is read against the models compiled so far."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/api/v1/health", timeout=5):
                    return
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def client(
        self, service: str, creds: GatewayCredentials, config: BotoConfig | None = None
    ) -> Any:
        """A boto3 client for `service` through this gateway, as a caller holding `creds`."""
        session: Any = boto3.Session(  # Any: the stubs type clients by literal service name
            aws_access_key_id=creds.access_key_id,
            aws_secret_access_key=creds.secret_access_key,
            aws_session_token=creds.session_token,
            region_name="us-east-1",
        )
        return session.client(service, endpoint_url=self.url, config=config)

    def issue(
        self,
        principal: str,
        account_id: str,
        role: str,
        *,
        ttl: timedelta = timedelta(hours=1),
        now: datetime | None = None,
    ) -> GatewayCredentials:
        keyring = load_keyring(open_engine(self.state_url))
        return mint_credentials(
            keyring,
            principal=principal,
            kind="user",
            account_id=account_id,
            aws_role=role,
            gateway_roles=(),
            now=now or datetime.now(UTC),
            ttl=ttl,
        )


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """Parsed output of API commands; the text of high-level ones (`s3 cp`, `s3 mb`)."""
        try:
            return json.loads(self.stdout) if self.stdout.strip() else None
        except json.JSONDecodeError:
            return self.stdout


def run_aws(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    endpoint_url: str | None = None,
    extra: Sequence[str] = (),
    timeout: float = 180,
) -> CliResult:
    command = [str(BIN / "aws"), *args, "--region", "us-east-1", "--output", "json", *extra]
    if endpoint_url:
        command += ["--endpoint-url", endpoint_url]
    done = subprocess.run(
        command, env=dict(env), capture_output=True, text=True, timeout=timeout, check=False
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


def creds_env(base: Mapping[str, str], creds: Mapping[str, str]) -> dict[str, str]:
    env = dict(base)
    env["AWS_ACCESS_KEY_ID"] = creds["aws_access_key_id"]
    env["AWS_SECRET_ACCESS_KEY"] = creds["aws_secret_access_key"]
    env["AWS_SESSION_TOKEN"] = creds["aws_session_token"]
    return env


def gateway_creds(c: GatewayCredentials) -> dict[str, str]:
    return {
        "aws_access_key_id": c.access_key_id,
        "aws_secret_access_key": c.secret_access_key,
        "aws_session_token": c.session_token,
    }


class MotoRecorder:
    """moto's own request recorder: what really reached the upstream."""

    def __init__(self, endpoint_url: str) -> None:
        self.endpoint_url = endpoint_url

    def _post(self, what: str) -> None:
        request = urllib.request.Request(
            f"{self.endpoint_url}/moto-api/recorder/{what}", data=b"", method="POST"
        )
        with urllib.request.urlopen(request, timeout=10):
            pass

    def start(self) -> None:
        self._post("reset-recording")
        self._post("start-recording")

    def stop(self) -> list[dict[str, Any]]:
        self._post("stop-recording")
        url = f"{self.endpoint_url}/moto-api/recorder/download-recording"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def audited_calls(state_url: str, *, wait: float = 10, **filters: Any) -> list[dict[str, Any]]:
    """API-call events from the gateway's audit log (newest first), once there are some;
    each has its outcome merged into `fields`."""
    from sqlalchemy import create_engine

    from iamgate.audit.search import Filters, search

    engine = create_engine(state_url)
    deadline = time.monotonic() + wait
    while True:
        events = search(engine, Filters(**filters))
        complete = [e for e in events if e["fields"].get("outcome_recorded", True)]
        if (complete and len(complete) == len(events)) or time.monotonic() > deadline:
            return events
        time.sleep(0.1)
