"""The embedded AWS of the demo and the tests: a real moto server with a seeded estate.

moto in server mode is a separate process speaking the real AWS wire protocols on
127.0.0.1, so the gateway and the AWS CLI talk to it exactly as they would to AWS. Its
account model follows credentials: what is created with credentials from
`sts:AssumeRole` into `arn:aws:iam::111111111111:role/X` lives in account 111111111111.
That gives three isolated accounts, each seeded with the IAM roles, buckets, instances and
databases the stories of the design need.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3

REGION = "us-east-1"


@dataclass(frozen=True, slots=True)
class SandboxAccount:
    name: str
    id: str
    labels: dict[str, str] = field(default_factory=dict)
    external_id: str | None = None


SANDBOX_ACCOUNTS: tuple[SandboxAccount, ...] = (
    SandboxAccount("acme-prod", "111111111111", {"env": "prod"}),
    SandboxAccount("acme-ci", "222222222222", {"env": "ci"}),
    SandboxAccount(
        "customer-globex", "333333333333", {"env": "prod", "customer": "globex"}, "globex-7f3a9c"
    ),
)
SANDBOX_ROLES = ("ReadOnly", "DataScientist", "CIRunner", "Admin")
# The gateway's own principal, in a fourth account of its own.
GATEWAY_ACCOUNT = "999999999999"
GATEWAY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "AKIAGATEWAYSANDBOX01",
    "AWS_SECRET_ACCESS_KEY": "sandbox-gateway-secret",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MotoServer:
    """A real moto server child process on a free 127.0.0.1 port."""

    def __init__(self, *, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or _free_port()
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
        log = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"moto server exited with {self._process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/data.json", timeout=1):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("moto server did not answer in time")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def __enter__(self) -> MotoServer:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _trust_policy(external_id: str | None) -> str:
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{GATEWAY_ACCOUNT}:root"},
        "Action": ["sts:AssumeRole", "sts:SetSourceIdentity"],
    }
    if external_id:
        statement["Condition"] = {"StringEquals": {"sts:ExternalId": external_id}}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


class Sandbox:
    """moto plus a seeded three-account estate: the upstream AWS of tests and the demo."""

    def __init__(
        self, *, port: int | None = None, log_path: Path | None = None, region: str = REGION
    ) -> None:
        self.server = MotoServer(port=port, log_path=log_path)
        self.region = region
        self.accounts = SANDBOX_ACCOUNTS
        self.gateway_credentials = dict(GATEWAY_CREDENTIALS)
        self.ami_id = ""

    @property
    def endpoint_url(self) -> str:
        return self.server.endpoint_url

    def start(self) -> None:
        self.server.start()
        try:
            self.seed()
        except BaseException:
            self.server.stop()
            raise

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def role_arn(self, account_id: str, role: str) -> str:
        return f"arn:aws:iam::{account_id}:role/{role}"

    def _session(self, credentials: dict[str, str]) -> Any:
        return boto3.Session(
            aws_access_key_id=credentials["aws_access_key_id"],
            aws_secret_access_key=credentials["aws_secret_access_key"],
            aws_session_token=credentials["aws_session_token"],
            region_name=self.region,
        )

    def assume(self, account_id: str, role: str, session_name: str = "direct") -> dict[str, str]:
        """Credentials straight from the sandbox's STS, as the gateway gets them."""
        account = next((a for a in self.accounts if a.id == account_id), None)
        sts = boto3.client(
            "sts",
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=GATEWAY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=GATEWAY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        params: dict[str, Any] = {
            "RoleArn": self.role_arn(account_id, role),
            "RoleSessionName": session_name,
        }
        if account and account.external_id:
            params["ExternalId"] = account.external_id
        creds = sts.assume_role(**params)["Credentials"]
        return {
            "aws_access_key_id": creds["AccessKeyId"],
            "aws_secret_access_key": creds["SecretAccessKey"],
            "aws_session_token": creds["SessionToken"],
        }

    def client(self, account_id: str, service: str, role: str = "Admin") -> Any:
        return self._session(self.assume(account_id, role, "seed")).client(
            service, endpoint_url=self.endpoint_url
        )

    def seed(self) -> None:
        for account in self.accounts:
            self._seed_account(account)

    def _seed_account(self, account: SandboxAccount) -> None:
        session = self._session(self.assume(account.id, "Admin", "seed"))

        def client(service: str) -> Any:
            return session.client(service, endpoint_url=self.endpoint_url)

        iam = client("iam")
        for role in SANDBOX_ROLES:
            iam.create_role(
                RoleName=role,
                AssumeRolePolicyDocument=_trust_policy(account.external_id),
                Description=f"{role} in {account.name}",
                Tags=[{"Key": "iamgate:sandbox", "Value": account.name}],
            )
        s3 = client("s3")
        for suffix in ("data", "logs"):
            bucket = f"{account.name}-{suffix}"
            s3.create_bucket(Bucket=bucket)
            s3.put_object(Bucket=bucket, Key="README.txt", Body=f"{bucket}\n".encode())
            s3.put_object(Bucket=bucket, Key="2026/11/report.csv", Body=b"day,count\n1,42\n")
        ec2 = client("ec2")
        if not self.ami_id:
            images = ec2.describe_images(Owners=["amazon"])["Images"]
            self.ami_id = sorted(i["ImageId"] for i in images)[0]
        ec2.run_instances(
            ImageId=self.ami_id,
            MinCount=2,
            MaxCount=2,
            InstanceType="t3.micro",
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [{"Key": "Name", "Value": f"{account.name}-web"}],
                }
            ],
        )
        rds = client("rds")
        rds.create_db_instance(
            DBInstanceIdentifier=f"{account.name}-db",
            DBInstanceClass="db.t3.micro",
            Engine="postgres",
            AllocatedStorage=20,
            MasterUsername="admin_user",
            MasterUserPassword="sandbox-only-password",
        )
