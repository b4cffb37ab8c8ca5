"""The stories of DESIGN.md through the real AWS CLI: read-only views and guardrails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from harness import (
    GatewayProcess,
    audited_calls,
    clean_env,
    creds_env,
    gateway_creds,
    run_aws,
)

from iamgate.sandbox import Sandbox

pytestmark = pytest.mark.e2e

PROD, CI, GLOBEX = "111111111111", "222222222222", "333333333333"


def aws(gw: GatewayProcess, home: Path, user: str, account: str, role: str, *args: str) -> Any:
    env = creds_env(clean_env(home), gateway_creds(gw.issue(user, account, role)))
    return run_aws(list(args), env=env, endpoint_url=gw.url)


def test_dana_reads_prod_but_cannot_delete_the_database(
    gateway: GatewayProcess, sandbox: Sandbox, home: Path
) -> None:
    listed = aws(gateway, home, "dana", PROD, "ReadOnly", "rds", "describe-db-instances")
    assert listed.returncode == 0, listed.stderr
    assert [d["DBInstanceIdentifier"] for d in listed.json()["DBInstances"]] == ["acme-prod-db"]
    readme = aws(
        gateway, home, "dana", PROD, "ReadOnly", "s3", "cp", "s3://acme-prod-data/README.txt", "-"
    )
    assert readme.returncode == 0 and readme.stdout == "acme-prod-data\n", readme.stderr

    deleted = aws(
        gateway,
        home,
        "dana",
        PROD,
        "ReadOnly",
        "rds",
        "delete-db-instance",
        "--db-instance-identifier",
        "acme-prod-db",
        "--skip-final-snapshot",
    )
    assert deleted.returncode != 0
    assert (
        "An error occurred (AccessDenied) when calling the DeleteDBInstance operation: "
        "iamgate: role data-scientist denies rds:DeleteDBInstance"
    ) in deleted.stderr

    still = sandbox.client(PROD, "rds").describe_db_instances()
    assert [d["DBInstanceIdentifier"] for d in still["DBInstances"]] == ["acme-prod-db"]

    events = audited_calls(
        gateway.state_url, principal="dana", action="rds:DeleteDBInstance", decision="denied"
    )
    assert events
    f = events[0]["fields"]
    assert f["gateway_role"] == "data-scientist"
    assert f["account_id"] == PROD and f["aws_role"] == "ReadOnly"
    assert "deny rds:Delete*" in f["rule"] and f["status"] == 403


def test_a_read_only_view_refuses_writes(
    gateway: GatewayProcess, home: Path, tmp_path: Path
) -> None:
    note = tmp_path / "note.txt"
    note.write_text("hello")
    put = aws(
        gateway,
        home,
        "dana",
        PROD,
        "ReadOnly",
        "s3",
        "cp",
        str(note),
        "s3://acme-prod-data/note.txt",
    )
    assert put.returncode != 0
    assert "role data-scientist does not allow s3:PutObject" in put.stderr


def test_dana_cannot_use_acme_ci_at_all(gateway: GatewayProcess, home: Path) -> None:
    for role in ("ReadOnly", "CIRunner"):
        result = aws(gateway, home, "dana", CI, role, "sts", "get-caller-identity")
        assert result.returncode != 0
        assert f"no role of yours allows {role} in account acme-ci" in result.stderr


def test_the_ci_guardrail_caps_run_instances(
    gateway: GatewayProcess, sandbox: Sandbox, home: Path
) -> None:
    def count() -> int:
        ec2 = sandbox.client(CI, "ec2")
        return sum(len(r["Instances"]) for r in ec2.describe_instances()["Reservations"])

    before = count()
    ten = aws(
        gateway,
        home,
        "ci-bot",
        CI,
        "CIRunner",
        "ec2",
        "run-instances",
        "--image-id",
        sandbox.ami_id,
        "--count",
        "10",
    )
    assert ten.returncode == 0, ten.stderr
    assert len(ten.json()["Instances"]) == 10
    thousand = aws(
        gateway,
        home,
        "ci-bot",
        CI,
        "CIRunner",
        "ec2",
        "run-instances",
        "--image-id",
        sandbox.ami_id,
        "--count",
        "1000",
    )
    assert thousand.returncode != 0
    assert "(UnauthorizedOperation)" in thousand.stderr
    assert "guardrail on ec2:RunInstances: MaxCount=1000 is above the limit of 10" in (
        thousand.stderr
    )
    assert count() == before + 10


def test_the_contractor_sees_only_the_customer_account(gateway: GatewayProcess, home: Path) -> None:
    own = aws(gateway, home, "carl", GLOBEX, "ReadOnly", "s3api", "list-buckets")
    assert own.returncode == 0, own.stderr
    assert {b["Name"] for b in own.json()["Buckets"]} == {
        "customer-globex-data",
        "customer-globex-logs",
    }
    other = aws(gateway, home, "carl", PROD, "ReadOnly", "s3api", "list-buckets")
    assert other.returncode != 0 and "(AccessDenied)" in other.stderr
