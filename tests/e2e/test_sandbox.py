"""The sandbox is a real moto server with three isolated, seeded accounts.

What the gateway's end-to-end tests build on: credentials from `sandbox.assume()` act in
exactly one account, each account holds its own estate, the AWS CLI works against it, and
stopping it leaves nothing running.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import psutil
import pytest
from botocore.exceptions import ClientError

from iamgate.sandbox import (
    GATEWAY_ACCOUNT,
    GATEWAY_USER,
    SANDBOX_ACCOUNTS,
    SANDBOX_AMI_ID,
    SANDBOX_ROLES,
    MotoServer,
    Sandbox,
    SandboxAccount,
)

pytestmark = pytest.mark.e2e

PROD, CI, GLOBEX = (a.id for a in SANDBOX_ACCOUNTS)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    """A sandbox of this module's own, shadowing the session one that other tests change."""
    with Sandbox() as box:
        yield box


def client(sandbox: Sandbox, account: str, service: str, role: str = "ReadOnly") -> Any:
    creds = sandbox.assume(account, role, "tester")
    return boto3.client(
        service,  # type: ignore[call-overload]  # the stubs type only literal names
        region_name=sandbox.region,
        endpoint_url=sandbox.endpoint_url,
        **creds,
    )


def port_is_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("account", SANDBOX_ACCOUNTS, ids=lambda a: a.name)
def test_each_account_has_the_roles_the_gateway_assumes(
    sandbox: Sandbox, account: SandboxAccount
) -> None:
    roles = {r["RoleName"]: r for r in client(sandbox, account.id, "iam").list_roles()["Roles"]}
    assert set(roles) == set(SANDBOX_ROLES)
    for name, role in roles.items():
        assert role["Arn"] == f"arn:aws:iam::{account.id}:role/{name}"
        trust = role["AssumeRolePolicyDocument"]
        trust = json.loads(trust) if isinstance(trust, str) else trust
        (statement,) = trust["Statement"]
        assert statement["Principal"] == {"AWS": f"arn:aws:iam::{GATEWAY_ACCOUNT}:root"}
        if account.external_id:
            assert statement["Condition"] == {
                "StringEquals": {"sts:ExternalId": account.external_id}
            }
        else:
            assert "Condition" not in statement


@pytest.mark.parametrize("account", SANDBOX_ACCOUNTS, ids=lambda a: a.name)
def test_each_account_has_its_own_buckets_instances_and_database(
    sandbox: Sandbox, account: SandboxAccount
) -> None:
    s3 = client(sandbox, account.id, "s3")
    assert {b["Name"] for b in s3.list_buckets()["Buckets"]} == {
        f"{account.name}-data",
        f"{account.name}-logs",
    }
    readme = s3.get_object(Bucket=f"{account.name}-data", Key="README.txt")["Body"].read()
    assert readme == f"{account.name}-data\n".encode()

    ec2 = client(sandbox, account.id, "ec2")
    instances = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
    assert len(instances) == 2
    for instance in instances:
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        assert tags["Name"] == f"{account.name}-web"
        assert instance["ImageId"] == SANDBOX_AMI_ID
    assert {r["OwnerId"] for r in ec2.describe_instances()["Reservations"]} == {account.id}
    assert [i["ImageId"] for i in ec2.describe_images(ImageIds=[SANDBOX_AMI_ID])["Images"]] == [
        SANDBOX_AMI_ID
    ]

    dbs = client(sandbox, account.id, "rds").describe_db_instances()["DBInstances"]
    assert [d["DBInstanceIdentifier"] for d in dbs] == [f"{account.name}-db"]
    assert f":{account.id}:db:" in dbs[0]["DBInstanceArn"]


def test_acme_prod_buckets_are_invisible_and_closed_to_other_accounts(sandbox: Sandbox) -> None:
    for other in (CI, GLOBEX):
        s3 = client(sandbox, other, "s3", role="Admin")
        names = {b["Name"] for b in s3.list_buckets()["Buckets"]}
        assert not any(n.startswith("acme-prod") for n in names)
        # Unlike moto's default, as in AWS: no bucket policy, no access.
        with pytest.raises(ClientError) as denied:
            s3.get_object(Bucket="acme-prod-data", Key="README.txt")
        assert denied.value.response["Error"]["Code"] == "AccessDenied"


def test_what_assumed_credentials_create_lives_in_that_account_only(sandbox: Sandbox) -> None:
    bucket = f"isolation-{uuid.uuid4().hex[:12]}"
    ci_s3 = client(sandbox, CI, "s3", role="CIRunner")
    ci_ec2 = client(sandbox, CI, "ec2", role="CIRunner")
    ci_s3.create_bucket(Bucket=bucket)
    (instance,) = ci_ec2.run_instances(ImageId=SANDBOX_AMI_ID, MinCount=1, MaxCount=1)["Instances"]
    try:
        prod_ec2 = client(sandbox, PROD, "ec2")
        prod_ids = {
            i["InstanceId"]
            for r in prod_ec2.describe_instances()["Reservations"]
            for i in r["Instances"]
        }
        assert instance["InstanceId"] not in prod_ids
        prod_buckets = {b["Name"] for b in client(sandbox, PROD, "s3").list_buckets()["Buckets"]}
        assert bucket not in prod_buckets
        ci_buckets = {b["Name"] for b in ci_s3.list_buckets()["Buckets"]}
        assert bucket in ci_buckets
    finally:
        ci_s3.delete_bucket(Bucket=bucket)
        ci_ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])


def test_get_caller_identity_is_the_assumed_role_in_its_account(sandbox: Sandbox) -> None:
    identity = client(sandbox, PROD, "sts").get_caller_identity()
    assert identity["Arn"] == "arn:aws:sts::111111111111:assumed-role/ReadOnly/tester"
    assert identity["Account"] == PROD
    assert identity["UserId"].endswith(":tester")


def test_the_gateway_credentials_are_an_iam_user_of_the_gateway_account(
    sandbox: Sandbox,
) -> None:
    creds = sandbox.gateway_credentials
    assert set(creds) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    sts = boto3.client(
        "sts",
        region_name=sandbox.region,
        endpoint_url=sandbox.endpoint_url,
        aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
    )
    identity = sts.get_caller_identity()
    assert identity["Arn"] == f"arn:aws:iam::{GATEWAY_ACCOUNT}:user/{GATEWAY_USER}"


def test_sts_takes_the_assume_role_parameters_the_gateway_sends(sandbox: Sandbox) -> None:
    creds = sandbox.gateway_credentials
    sts = boto3.client(
        "sts",
        region_name=sandbox.region,
        endpoint_url=sandbox.endpoint_url,
        aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
    )
    before = datetime.now(UTC)
    deny_deletes = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Action": "rds:Delete*", "Resource": "*"}],
    }
    response = sts.assume_role(
        RoleArn=sandbox.role_arn(GLOBEX, "ReadOnly"),
        RoleSessionName="dana",
        SourceIdentity="dana",
        ExternalId=sandbox.account(GLOBEX).external_id,
        Policy=json.dumps(deny_deletes),
        PolicyArns=[{"arn": "arn:aws:iam::aws:policy/ReadOnlyAccess"}],
        DurationSeconds=900,
    )
    assert response["AssumedRoleUser"]["Arn"] == (
        f"arn:aws:sts::{GLOBEX}:assumed-role/ReadOnly/dana"
    )
    expiration = response["Credentials"]["Expiration"]
    assert before + timedelta(seconds=890) <= expiration <= before + timedelta(seconds=960)


def test_moto_takes_the_account_from_an_x_moto_account_id_header(sandbox: Sandbox) -> None:
    """Why the gateway strips x-moto-*: the header outranks the credentials' account."""
    s3 = client(sandbox, CI, "s3")

    def add_header(request: Any, **_: Any) -> None:
        request.headers["x-moto-account-id"] = PROD

    s3.meta.events.register("before-send.s3.ListBuckets", add_header)
    assert {b["Name"] for b in s3.list_buckets()["Buckets"]} == {
        "acme-prod-data",
        "acme-prod-logs",
    }


def cli_env(tmp_path: Path, creds: Mapping[str, str]) -> dict[str, str]:
    """Only the assumed credentials: no AWS_* variable, profile or ~/.aws of the machine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    (tmp_path / "config").write_text("")
    (tmp_path / "credentials").write_text("")
    env |= {
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(tmp_path / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": creds["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": creds["aws_secret_access_key"],
        "AWS_SESSION_TOKEN": creds["aws_session_token"],
    }
    return env


def test_the_aws_cli_lists_the_acme_prod_buckets(sandbox: Sandbox, tmp_path: Path) -> None:
    aws = Path(sys.executable).parent / "aws"
    done = subprocess.run(
        [str(aws), "s3", "ls", "--endpoint-url", sandbox.endpoint_url],
        env=cli_env(tmp_path, sandbox.assume(PROD, "ReadOnly", "cli")),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    listed = {line.split()[-1] for line in done.stdout.splitlines()}
    assert listed == {"acme-prod-data", "acme-prod-logs"}


def test_reset_brings_back_the_seeded_estate_alone(sandbox: Sandbox) -> None:
    s3 = sandbox.client(PROD, "s3")
    s3.create_bucket(Bucket="left-over")
    s3.delete_object(Bucket="acme-prod-data", Key="README.txt")
    sandbox.reset()
    s3 = sandbox.client(PROD, "s3")
    assert {b["Name"] for b in s3.list_buckets()["Buckets"]} == {
        "acme-prod-data",
        "acme-prod-logs",
    }
    assert s3.get_object(Bucket="acme-prod-data", Key="README.txt")["Body"].read()
    assert len(sandbox.client(CI, "iam").list_roles()["Roles"]) == len(SANDBOX_ROLES)


def test_stop_closes_the_port_and_ends_the_process() -> None:
    box = Sandbox()
    box.start()
    port, pid = box.server.port, box.server.pid
    assert pid is not None and port_is_open(port)
    box.stop()
    assert not box.server.running
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not port_is_open(port)
    box.stop()  # a second stop is harmless
    with pytest.raises(RuntimeError):
        box.gateway_credentials  # noqa: B018


def test_a_failing_seed_leaves_nothing_running(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Sandbox, account: SandboxAccount) -> None:
        raise RuntimeError(f"seeding {account.name} failed")

    monkeypatch.setattr(Sandbox, "_seed_account", broken)
    box = Sandbox()
    with pytest.raises(RuntimeError, match="seeding acme-prod failed"):
        box.start()
    assert not box.server.running
    assert not port_is_open(box.server.port)


def test_a_taken_port_is_an_error_not_a_leftover_process() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = MotoServer(port=taken.getsockname()[1])
        children_before = {p.pid for p in psutil.Process().children(recursive=True)}
        with pytest.raises(RuntimeError, match="exited"):
            server.start(timeout=20)
        children_after = {p.pid for p in psutil.Process().children(recursive=True)}
    assert not server.running
    assert children_after <= children_before
