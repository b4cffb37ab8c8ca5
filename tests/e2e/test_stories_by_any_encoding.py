"""The stories hold by every encoding: the attacks of the security review, against a real
gateway process and a real moto server.

The data scientist cannot delete the production database however the request is spelled;
the CI role cannot launch more instances than its guardrail allows; no call that mints
credentials succeeds. Each attempt must leave the sandbox untouched (moto's own recorder
shows nothing reached it) and leave an audit record that names what was attempted.
"""

from __future__ import annotations

import gzip
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from harness import GatewayProcess, MotoRecorder, audited_calls

from iamgate.sandbox import Sandbox

pytestmark = pytest.mark.e2e

PROD, CI = "111111111111", "222222222222"
FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
RDS = "Version=2014-10-31"
EC2 = "Version=2016-11-15"


def attempt(
    gw: GatewayProcess,
    user: str,
    account: str,
    role: str,
    service: str,
    target: str,
    body: bytes,
    headers: dict[str, str],
    mark: str = "",
) -> tuple[int, bytes]:
    """A request signed with `user`'s gateway credentials exactly as given, sent raw;
    `mark`, as its User-Agent, finds its audit record (`own_record`)."""
    creds = gw.issue(user, account, role)
    if mark:
        headers = {**headers, "User-Agent": mark}
    request = AWSRequest(method="POST", url=gw.url + target, data=body, headers=headers)
    SigV4Auth(
        Credentials(creds.access_key_id, creds.secret_access_key, creds.session_token),
        service,
        "us-east-1",
    ).add_auth(request)
    sent = urllib.request.Request(
        gw.url + target, data=body, headers=dict(request.headers.items()), method="POST"
    )
    try:
        with urllib.request.urlopen(sent, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def marker() -> str:
    return f"iamgate-test/{uuid.uuid4().hex}"


def own_record(gw: GatewayProcess, mark: str, **filters: str) -> dict[str, Any]:
    """The audit record of the request sent with `mark`. A refusal's record is written
    after its answer, and the session's store holds other tests' refusals by the same user,
    so the newest matching record need not be this one yet."""
    deadline = time.monotonic() + 15
    while True:
        events = audited_calls(gw.state_url, wait=1, decision="denied", **filters)
        mine = [e for e in events if e.get("user_agent") == mark]
        if mine or time.monotonic() > deadline:
            assert len(mine) == 1, f"{len(mine)} audit records of the request sent by {mark}"
            return mine[0]
        time.sleep(0.2)


@pytest.fixture
def recorder(sandbox: Sandbox) -> Iterator[MotoRecorder]:
    rec = MotoRecorder(sandbox.endpoint_url)
    rec.start()
    yield rec
    rec.stop()


DELETE = f"Action=DeleteDBInstance&{RDS}&DBInstanceIdentifier=acme-prod-db&SkipFinalSnapshot=true"
DESCRIBE = f"Action=DescribeDBInstances&{RDS}"
DELETE_ENCODINGS: dict[str, tuple[str, bytes, dict[str, str]]] = {
    "delete in the body, describe in the query": (f"/?{DESCRIBE}", DELETE.encode(), FORM),
    "describe in the body, delete in the query": (f"/?{DELETE}", DESCRIBE.encode(), FORM),
    "two actions in the body": ("/", f"{DESCRIBE}&{DELETE}".encode(), FORM),
    "delete gzipped behind a describe": (
        f"/?{DESCRIBE}",
        gzip.compress(DELETE.encode()),
        {**FORM, "Content-Encoding": "gzip"},
    ),
    "a json target beside the delete": (
        "/",
        DELETE.encode(),
        {**FORM, "X-Amz-Target": "AmazonRDSv19.DescribeDBInstances"},
    ),
    "lower-case action": ("/", DELETE.replace("Action", "action").encode(), FORM),
}


@pytest.mark.parametrize("name", DELETE_ENCODINGS)
def test_the_data_scientist_cannot_delete_the_database_by_any_encoding(
    gateway: GatewayProcess, sandbox: Sandbox, recorder: MotoRecorder, name: str
) -> None:
    target, body, headers = DELETE_ENCODINGS[name]
    mark = marker()
    status, reply = attempt(gateway, "dana", PROD, "ReadOnly", "rds", target, body, headers, mark)
    assert status in (400, 403), reply
    assert recorder.stop() == []
    dbs = sandbox.client(PROD, "rds").describe_db_instances()["DBInstances"]
    assert [d["DBInstanceIdentifier"] for d in dbs] == ["acme-prod-db"]
    record = own_record(gateway, mark, principal="dana")
    told = f"{record['fields']['action']} {record['fields']['reason']}"
    assert "DeleteDBInstance" in told, told


RUN = f"Action=RunInstances&{EC2}&ImageId=ami-12c6146b&InstanceType=t3.micro"
OVER_THE_LIMIT: dict[str, tuple[str, bytes]] = {
    "MaxCount in the query and the body": (
        "/?MaxCount=5",
        f"{RUN}&MinCount=1&MaxCount=1000".encode(),
    ),
    "MaxCount twice in the body": ("/", f"{RUN}&MinCount=1&MaxCount=5&MaxCount=1000".encode()),
    "MaxCount spelled two ways": ("/", f"{RUN}&MinCount=1&MaxCount=5&maxcount=1000".encode()),
    "MinCount above the limit, no MaxCount": ("/", f"{RUN}&MinCount=1000".encode()),
    "MinCount above the limit, MaxCount below": ("/", f"{RUN}&MinCount=1000&MaxCount=5".encode()),
    "MaxCount as an exponent": ("/", f"{RUN}&MinCount=1&MaxCount=1e3".encode()),
}


@pytest.mark.parametrize("name", OVER_THE_LIMIT)
def test_the_ci_role_cannot_exceed_its_guardrail_by_any_encoding(
    gateway: GatewayProcess, sandbox: Sandbox, recorder: MotoRecorder, name: str
) -> None:
    ec2 = sandbox.client(CI, "ec2")
    before = sum(len(r["Instances"]) for r in ec2.describe_instances()["Reservations"])
    recorder.start()  # what the sandbox client itself did is not the gateway's
    target, body = OVER_THE_LIMIT[name]
    mark = marker()
    status, reply = attempt(gateway, "ci-bot", CI, "CIRunner", "ec2", target, body, FORM, mark)
    assert status in (400, 403), reply
    assert recorder.stop() == []
    after = sum(len(r["Instances"]) for r in ec2.describe_instances()["Reservations"])
    assert after == before
    record = own_record(gateway, mark, principal="ci-bot")
    assert "RunInstances" in f"{record['fields']['action']} {record['fields']['reason']}"


MINTING: dict[str, tuple[str, bytes, dict[str, str]]] = {
    "sts assume-role behind get-caller-identity": (
        "/?Action=GetCallerIdentity&Version=2011-06-15",
        b"Action=AssumeRole&Version=2011-06-15&RoleSessionName=xy"
        b"&RoleArn=arn%3Aaws%3Aiam%3A%3A222222222222%3Arole%2FCIRunner",
        FORM,
    ),
    "sts get-session-token": ("/", b"Action=GetSessionToken&Version=2011-06-15", FORM),
}


@pytest.mark.parametrize("name", MINTING)
def test_no_credential_minting_call_succeeds(
    gateway: GatewayProcess, recorder: MotoRecorder, name: str
) -> None:
    target, body, headers = MINTING[name]
    status, reply = attempt(gateway, "ci-bot", CI, "CIRunner", "sts", target, body, headers)
    assert status in (400, 403) and b"Credentials" not in reply, reply
    assert recorder.stop() == []


def test_a_credential_issuing_call_needs_a_role_that_names_it(
    gateway: GatewayProcess, recorder: MotoRecorder
) -> None:
    """The admin role allows everything, but not, by wildcard, keys that outlive iamgate."""
    mark = marker()
    status, reply = attempt(
        gateway,
        "loader",
        CI,
        "Admin",
        "iam",
        "/",
        b"Action=CreateAccessKey&Version=2010-05-08&UserName=ci",
        FORM,
        mark,
    )
    assert status == 403 and b"issues credentials that work without the gateway" in reply
    assert recorder.stop() == []
    record = own_record(gateway, mark, principal="loader")
    assert record["fields"]["action"] == "iam:CreateAccessKey"
    assert record["fields"]["issues_credentials"] is True


def test_a_gzip_object_crosses_byte_for_byte(gateway: GatewayProcess, sandbox: Sandbox) -> None:
    """The server must not decompress what the client signed compressed: an object stored
    with Content-Encoding gzip arrives in S3 exactly as sent."""
    s3 = gateway.client("s3", gateway.issue("ci-bot", CI, "CIRunner"))
    packed = gzip.compress(b"build log\n" * 1000)
    s3.put_object(Bucket="acme-ci-logs", Key="log.gz", Body=packed, ContentEncoding="gzip")
    stored = sandbox.client(CI, "s3").get_object(Bucket="acme-ci-logs", Key="log.gz")
    assert stored["ContentEncoding"] == "gzip" and stored["Body"].read() == packed
