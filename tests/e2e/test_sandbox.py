"""The sandbox is a real moto server with three isolated, seeded accounts."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from harness import clean_env, creds_env, run_aws

from iamgate.sandbox import SANDBOX_ROLES, Sandbox

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as box:
        yield box


def session(sandbox: Sandbox, account: str, role: str = "ReadOnly") -> Any:
    creds = sandbox.assume(account, role, "tester")
    return boto3.Session(
        aws_access_key_id=creds["aws_access_key_id"],
        aws_secret_access_key=creds["aws_secret_access_key"],
        aws_session_token=creds["aws_session_token"],
        region_name="us-east-1",
    )


def test_each_account_has_its_own_estate(sandbox: Sandbox) -> None:
    for account in sandbox.accounts:
        s = session(sandbox, account.id)
        iam = s.client("iam", endpoint_url=sandbox.endpoint_url)
        assert {r["RoleName"] for r in iam.list_roles()["Roles"]} >= set(SANDBOX_ROLES)
        buckets = {
            b["Name"]
            for b in s.client("s3", endpoint_url=sandbox.endpoint_url).list_buckets()["Buckets"]
        }
        assert buckets == {f"{account.name}-data", f"{account.name}-logs"}
        dbs = s.client("rds", endpoint_url=sandbox.endpoint_url).describe_db_instances()
        assert [d["DBInstanceIdentifier"] for d in dbs["DBInstances"]] == [f"{account.name}-db"]
        reservations = s.client("ec2", endpoint_url=sandbox.endpoint_url).describe_instances()
        assert sum(len(r["Instances"]) for r in reservations["Reservations"]) == 2
        identity = s.client("sts", endpoint_url=sandbox.endpoint_url).get_caller_identity()
        assert identity["Arn"] == f"arn:aws:sts::{account.id}:assumed-role/ReadOnly/tester"


def test_the_aws_cli_works_against_it(sandbox: Sandbox, tmp_path: Path) -> None:
    env = creds_env(clean_env(tmp_path), sandbox.assume("111111111111", "ReadOnly"))
    listing = run_aws(["s3", "ls"], env=env, endpoint_url=sandbox.endpoint_url)
    assert listing.returncode == 0, listing.stderr
    assert "acme-prod-data" in listing.stdout and "acme-ci-data" not in listing.stdout


def test_stop_closes_the_port_and_ends_the_process() -> None:
    box = Sandbox()
    box.start()
    port = box.server.port
    box.stop()
    assert not box.server.running
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
