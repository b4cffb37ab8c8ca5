"""The estate of the sandbox: its accounts, roles and resources, seeded into moto.

moto in server mode is a separate process speaking the real AWS wire protocols on
127.0.0.1, so the gateway and the AWS CLI talk to it exactly as they would to AWS.

How moto (5.2) decides the account of a request, in order (`BaseResponse.get_current_account`):

1. the `MOTO_ACCOUNT_ID` environment variable of the *server* process, for every request;
2. an `x-moto-account-id` request header, whatever the credentials say;
3. the access key in the request: keys minted by `sts:AssumeRole` of
   `arn:aws:iam::111111111111:role/X` and keys of IAM users of 111111111111 belong to
   111111111111;
4. anything else (an access key moto never issued) is account 123456789012.

The sandbox relies on 3 only: the server is started without inherited `MOTO_*` variables
and the seed sends no moto headers. moto's AssumeRole neither checks that the role exists
nor evaluates its trust policy, so the seed reaches each account by assuming its `Admin`
role before creating it. The gateway must never let through a client's `x-moto-*` header
(2), nor a path under `/moto-api` (moto's control API: reset, and a JSON dump of all state
with every secret key) or `/latest/` (instance metadata): moto routes those by path alone,
before looking at Host or signature. A path-style S3 CreateMultipartUpload of bucket
`moto-api`, key `reset`, is a POST to /moto-api/reset and wipes every account.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3
import botocore.session
from botocore.config import Config as BotoConfig

from iamgate.sandbox.moto_server import MotoServer

REGION = "us-east-1"


@dataclass(frozen=True, slots=True)
class SandboxAccount:
    name: str
    id: str
    labels: dict[str, str] = field(default_factory=dict)
    external_id: str | None = None


# The tests' labels: customer-globex carries `env: prod` too, so a role that selects
# `{env: [prod]}` reaches it (the end-to-end tests rely on that). `iamgate demo` labels the
# same accounts by owner instead (`demo.DEMO_LABELS`), so there a customer's account is
# reached only by a role meant for it.
SANDBOX_ACCOUNTS: tuple[SandboxAccount, ...] = (
    SandboxAccount("acme-prod", "111111111111", {"env": "prod"}),
    SandboxAccount("acme-ci", "222222222222", {"env": "ci"}),
    SandboxAccount(
        "customer-globex", "333333333333", {"env": "prod", "customer": "globex"}, "globex-7f3a9c"
    ),
)
SANDBOX_ROLES = ("ReadOnly", "DataScientist", "CIRunner", "Admin")

# The gateway's own principal: an IAM user in a fourth account, so that its identity, the
# trust policies and the account of its keys agree, as they would in AWS.
GATEWAY_ACCOUNT = "999999999999"
GATEWAY_USER = "iamgate-gateway"
# Amazon Linux 2, one of the AMIs moto puts in every region of every account: demo
# commands can name it, and the seed checks it is there.
SANDBOX_AMI_ID = "ami-04681a1dbd79675a5"

# A key moto never issued, so moto places it in account 123456789012. Used once, to
# assume a role in GATEWAY_ACCOUNT and create the gateway's user there.
_BOOTSTRAP_CREDENTIALS = {
    "aws_access_key_id": "AKIASANDBOXBOOTSTRAP",
    "aws_secret_access_key": "sandbox-bootstrap-secret",
}

# What each role may do, as inline policies. moto enforces them only with its IAM
# authentication switched on (it is off), but `aws iam get-role-policy` shows them.
_ROLE_ACTIONS: dict[str, list[str]] = {
    "ReadOnly": ["*:Describe*", "*:Get*", "*:List*"],
    "DataScientist": ["*:Describe*", "*:Get*", "*:List*", "s3:*", "athena:*", "glue:*"],
    "CIRunner": ["ec2:*", "s3:*", "dynamodb:*", "lambda:*", "sqs:*", "kms:*", "iam:List*"],
    "Admin": ["*"],
}


def _moto_base_amis() -> list[dict[str, Any]]:
    """moto's own region-independent AMI list (44 images, Amazon Linux among them).

    By default moto also loads about 1,250 region-specific images into each account it
    creates EC2 state for, which costs time at the first EC2 call of every account and
    again when the server exits. Given this list as MOTO_AMIS_PATH, it loads only these.
    """
    spec = importlib.util.find_spec("moto")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("moto is not installed: pip install 'iamgate[sandbox]'")
    path = Path(next(iter(spec.submodule_search_locations))) / "ec2/resources/amis.json.gz"
    with gzip.open(path, "rt", encoding="utf-8") as f:
        amis: list[dict[str, Any]] = json.load(f)
    return amis


def _trust_policy(external_id: str | None) -> str:
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{GATEWAY_ACCOUNT}:root"},
        "Action": ["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"],
    }
    if external_id:
        statement["Condition"] = {"StringEquals": {"sts:ExternalId": external_id}}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def _allow(actions: list[str], resource: str = "*") -> str:
    statement = {"Effect": "Allow", "Action": actions, "Resource": resource}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def _credentials(response: Mapping[str, Any]) -> dict[str, str]:
    creds = response["Credentials"]
    return {
        "aws_access_key_id": creds["AccessKeyId"],
        "aws_secret_access_key": creds["SecretAccessKey"],
        "aws_session_token": creds["SessionToken"],
    }


class Sandbox:
    """moto server + seeded multi-account estate, the upstream AWS of tests and demo.

    Each account of `accounts` holds the roles of SANDBOX_ROLES, buckets `<name>-data` and
    `<name>-logs`, two instances named `<name>-web` and a database `<name>-db`. The
    gateway's credentials are those of an IAM user in GATEWAY_ACCOUNT created by `seed()`:
    moto mints the keys, so they change with every start (and every reset).
    """

    def __init__(
        self, *, port: int | None = None, log_path: Path | None = None, region: str = REGION
    ) -> None:
        self._workdir: Path | None = None
        self.server = MotoServer(port=port, log_path=log_path)
        self.region = region
        self.accounts = SANDBOX_ACCOUNTS
        self.ami_id = SANDBOX_AMI_ID
        self._gateway_credentials: dict[str, str] | None = None
        # One botocore session for every client, so service models load once. It reads
        # no profile or config file of the machine's; every client gets its credentials,
        # region and endpoint explicitly.
        core = botocore.session.Session(
            session_vars={
                # (config key, environment variables, default, conversion): none from env
                "profile": (None, None, None, None),
                "config_file": (None, None, os.devnull, None),
                "credentials_file": (None, None, os.devnull, None),
            }
        )
        self._session = boto3.Session(botocore_session=core, region_name=region)
        self._client_lock = threading.Lock()  # creating clients is not thread-safe
        self._config = BotoConfig(retries={"mode": "standard", "max_attempts": 2})

    @property
    def endpoint_url(self) -> str:
        return self.server.endpoint_url

    @property
    def gateway_credentials(self) -> dict[str, str]:
        """AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the gateway's environment."""
        if self._gateway_credentials is None:
            raise RuntimeError("the sandbox is not seeded: call start() first")
        return {
            "AWS_ACCESS_KEY_ID": self._gateway_credentials["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": self._gateway_credentials["aws_secret_access_key"],
        }

    def start(self) -> None:
        """Start moto and seed it; on any failure, nothing is left running."""
        try:
            self._workdir = Path(tempfile.mkdtemp(prefix="iamgate-sandbox-"))
            amis = self._workdir / "amis.json"
            amis.write_text(json.dumps(_moto_base_amis()), encoding="utf-8")
            # Settings given explicitly, so the machine's environment cannot change them.
            self.server.env.update(
                {
                    "MOTO_AMIS_PATH": str(amis),
                    # Another account's bucket is AccessDenied, as in AWS without a bucket
                    # policy. moto allows it by default, which would hide a request signed
                    # for the wrong account.
                    "MOTO_S3_ALLOW_CROSSACCOUNT_ACCESS": "false",
                }
            )
            self.server.start()
            self.seed()
        except BaseException:
            self.stop()
            raise

    def reset(self) -> None:
        """Back to the seeded estate, for a test that changed it; about half a second.

        The gateway's keys change. A gateway still holding the old ones keeps working,
        since moto checks no signature, but its own identity becomes moto's default one.
        """
        self.server.reset()
        self.seed()

    def stop(self) -> None:
        self.server.stop()
        self._gateway_credentials = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def account(self, key: str) -> SandboxAccount:
        """The sandbox account with this name or id."""
        for account in self.accounts:
            if key in (account.id, account.name):
                return account
        raise KeyError(f"no sandbox account {key!r}")

    def role_arn(self, account_id: str, role: str) -> str:
        return f"arn:aws:iam::{account_id}:role/{role}"

    def assume(self, account_id: str, role: str, session_name: str = "direct") -> dict[str, str]:
        """AssumeRole as the gateway does it: its own principal, the account's ExternalId.

        Returns `aws_access_key_id`, `aws_secret_access_key` and `aws_session_token`, the
        keyword arguments of boto3's `client()` and `Session()`.
        """
        if self._gateway_credentials is None:
            raise RuntimeError("the sandbox is not seeded: call start() first")
        return self._assume(self._gateway_credentials, account_id, role, session_name)

    def client(self, account_id: str, service: str, role: str = "Admin") -> Any:
        """A boto3 client for `service` in the account, straight to moto."""
        return self._client(service, self.assume(account_id, role, "sandbox"))

    def seed(self) -> None:
        """The gateway's user, then each account's estate (on a fresh or reset server).

        One account after another: moto serves one request at a time in effect (the GIL),
        and in parallel the seed measured slower.
        """
        self._gateway_credentials = self._create_gateway_user()
        for account in self.accounts:
            self._seed_account(account)

    def _assume(
        self, caller: Mapping[str, str], account_id: str, role: str, session_name: str
    ) -> dict[str, str]:
        params: dict[str, Any] = {
            "RoleArn": self.role_arn(account_id, role),
            "RoleSessionName": session_name,
        }
        external_id = next((a.external_id for a in self.accounts if a.id == account_id), None)
        if external_id:
            params["ExternalId"] = external_id
        return _credentials(self._client("sts", caller).assume_role(**params))

    def _client(self, service: str, credentials: Mapping[str, str]) -> Any:
        with self._client_lock:
            return self._session.client(
                service,  # type: ignore[call-overload]
                endpoint_url=self.endpoint_url,
                config=self._config,
                aws_access_key_id=credentials["aws_access_key_id"],
                aws_secret_access_key=credentials["aws_secret_access_key"],
                aws_session_token=credentials.get("aws_session_token"),
            )

    def _create_gateway_user(self) -> dict[str, str]:
        admin = self._assume(
            _BOOTSTRAP_CREDENTIALS, GATEWAY_ACCOUNT, "iamgate-sandbox-bootstrap", "bootstrap"
        )
        iam = self._client("iam", admin)
        iam.create_user(UserName=GATEWAY_USER)
        iam.put_user_policy(
            UserName=GATEWAY_USER,
            PolicyName="assume-sandbox-roles",
            PolicyDocument=_allow(
                ["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"],
                "arn:aws:iam::*:role/*",
            ),
        )
        key = iam.create_access_key(UserName=GATEWAY_USER)["AccessKey"]
        return {
            "aws_access_key_id": key["AccessKeyId"],
            "aws_secret_access_key": key["SecretAccessKey"],
        }

    def _seed_account(self, account: SandboxAccount) -> None:
        """Everything created with credentials of the account's Admin role.

        The role is assumed before it exists: moto mints credentials in the account of any
        role ARN, and what is created with them lives in that account.
        """
        admin = self.assume(account.id, "Admin", "seed")
        iam, s3, ec2, rds = (self._client(s, admin) for s in ("iam", "s3", "ec2", "rds"))
        tag = [{"Key": "iamgate:sandbox", "Value": account.name}]
        for role in SANDBOX_ROLES:
            iam.create_role(
                RoleName=role,
                AssumeRolePolicyDocument=_trust_policy(account.external_id),
                Description=f"{role} in {account.name}",
                Tags=tag,
            )
            iam.put_role_policy(
                RoleName=role, PolicyName=role, PolicyDocument=_allow(_ROLE_ACTIONS[role])
            )
        for suffix in ("data", "logs"):
            bucket = f"{account.name}-{suffix}"
            if self.region == "us-east-1":
                s3.create_bucket(Bucket=bucket)
            else:
                location = {"LocationConstraint": self.region}
                s3.create_bucket(Bucket=bucket, CreateBucketConfiguration=location)
            s3.put_object(Bucket=bucket, Key="README.txt", Body=f"{bucket}\n".encode())
            s3.put_object(Bucket=bucket, Key="2026/11/report.csv", Body=b"day,count\n1,42\n")
        ec2.describe_images(ImageIds=[self.ami_id])  # fails if moto no longer has it
        name = [*tag, {"Key": "Name", "Value": f"{account.name}-web"}]
        ec2.run_instances(
            ImageId=self.ami_id,
            MinCount=2,
            MaxCount=2,
            InstanceType="t3.micro",
            TagSpecifications=[{"ResourceType": "instance", "Tags": name}],
        )
        rds.create_db_instance(
            DBInstanceIdentifier=f"{account.name}-db",
            DBInstanceClass="db.t3.micro",
            Engine="postgres",
            AllocatedStorage=20,
            MasterUsername="admin_user",
            MasterUserPassword="sandbox-only-password",
            Tags=tag,
        )
