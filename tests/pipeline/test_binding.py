"""One request, one meaning: what is authorized and audited is exactly what is forwarded.

Each case is a request a security review used to make the gateway decide on one operation
while the upstream executed another. Each must now be refused before anything reaches the
upstream, with an AWS-shaped error and an audit record that names what was attempted.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import pytest
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from pipeline import CI, PROD, Answer, Pipeline

FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
DDB = "DynamoDB_20120810"


@dataclass
class Case:
    """A signed request: `target` and `body` are signed; `extra` headers are not."""

    user: str
    account: str
    role: str
    service: str
    method: str
    target: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    extra: list[tuple[str, str]] = field(default_factory=list)


def send(gw: Pipeline, case: Case) -> Answer:
    creds = gw.issue(case.user, case.account, case.role)
    signed = gw.signed(
        creds, case.service, case.method, case.target, body=case.body, headers=case.headers
    )
    return gw.send(case.method, case.target, [*signed, *case.extra], case.body)


def assert_refused(gw: Pipeline, answer: Answer, code: str, *attempted: str) -> dict[str, object]:
    assert answer.status in (400, 403), answer
    assert code.encode() in answer.body, answer.body
    assert gw.received == [], "nothing may reach the upstream"
    (record,) = gw.calls()
    assert record["decision"] == "denied"
    told = f"{record['action']} {record['reason']}"
    for word in attempted:
        assert word in told, (word, told)
    return record


def dana(service: str, method: str, target: str, **kw: object) -> Case:
    return Case("dana", PROD, "ReadOnly", service, method, target, **kw)  # type: ignore[arg-type]


def ci(service: str, method: str, target: str, **kw: object) -> Case:
    return Case("ci-bot", CI, "CIRunner", service, method, target, **kw)  # type: ignore[arg-type]


RDS = "Version=2014-10-31"
EC2 = "Version=2016-11-15"
RUN = f"Action=RunInstances&{EC2}&ImageId=ami-12c6146b&InstanceType=t3.micro"

REFUSED: dict[str, tuple[Case, str, tuple[str, ...]]] = {
    # 1. Action in two places.
    "rds delete behind a describe": (
        dana(
            "rds",
            "POST",
            f"/?Action=DescribeDBInstances&{RDS}",
            body=f"Action=DeleteDBInstance&{RDS}&DBInstanceIdentifier=prod-db".encode(),
            headers=FORM,
        ),
        "InvalidParameterCombination",
        ("DescribeDBInstances", "DeleteDBInstance"),
    ),
    "sts assume-role behind get-caller-identity": (
        ci(
            "sts",
            "POST",
            "/?Action=GetCallerIdentity&Version=2011-06-15",
            body=b"Action=AssumeRole&Version=2011-06-15&RoleArn=arn:aws:iam::222222222222:role/Admin"
            b"&RoleSessionName=x",
            headers=FORM,
        ),
        "InvalidParameterCombination",
        ("AssumeRole",),
    ),
    "lower-case action beside Action": (
        ci(
            "ec2",
            "POST",
            "/",
            body=f"{RUN}&MaxCount=1&MinCount=1&action=TerminateInstances".encode(),
            headers=FORM,
        ),
        "InvalidParameterCombination",
        ("TerminateInstances",),
    ),
    # 2. X-Amz-Target beside an Action.
    "dynamodb delete-table as a describe": (
        ci(
            "dynamodb",
            "POST",
            "/?Action=DeleteTable&TableName=prod",
            body=b'{"TableName": "prod"}',
            headers={
                "X-Amz-Target": f"{DDB}.DescribeTable",
                "Content-Type": "application/x-amz-json-1.0",
            },
        ),
        "ValidationException",
        ("DescribeTable", "DeleteTable"),
    ),
    "X-Amz-Target on a query service": (
        dana(
            "rds",
            "POST",
            "/",
            body=f"Action=DescribeDBInstances&{RDS}".encode(),
            headers={**FORM, "X-Amz-Target": "AmazonRDSv19.DeleteDBInstance"},
        ),
        "InvalidParameterCombination",
        ("X-Amz-Target",),
    ),
    # 4. Two S3 sub-resources.
    "s3 tagging and versioning": (
        ci("s3", "GET", "/ci-artifacts?tagging&versioning"),
        "InvalidRequest",
        ("GetBucketTagging", "versioning"),
    ),
    "s3 acl and policy": (
        ci("s3", "PUT", "/ci-artifacts?acl&policy", body=b"{}"),
        "InvalidRequest",
        ("policy",),
    ),
    # 5. Guardrails hold for every way the upstream reads a count.
    "MaxCount in query and body": (
        ci(
            "ec2",
            "POST",
            "/?MaxCount=5",
            body=f"{RUN}&MinCount=1&MaxCount=1000".encode(),
            headers=FORM,
        ),
        "InvalidParameterCombination",
        ("MaxCount is given twice",),
    ),
    "MaxCount spelled twice": (
        ci(
            "ec2",
            "POST",
            "/",
            body=f"{RUN}&MinCount=1&MaxCount=5&maxcount=1000".encode(),
            headers=FORM,
        ),
        "InvalidParameterCombination",
        ("maxcount",),
    ),
    "maxcount alone": (
        ci("ec2", "POST", "/", body=f"{RUN}&MinCount=1&maxcount=1000".encode(), headers=FORM),
        "UnauthorizedOperation",
        ("ec2:RunInstances", "maxcount is not a parameter of RunInstances"),
    ),
    "MinCount above the limit, MaxCount absent": (
        ci("ec2", "POST", "/", body=f"{RUN}&MinCount=1000".encode(), headers=FORM),
        "UnauthorizedOperation",
        ("ec2:RunInstances", "MinCount=1000 is above the limit"),
    ),
    "MinCount above the limit, MaxCount lower": (
        ci("ec2", "POST", "/", body=f"{RUN}&MinCount=1000&MaxCount=5".encode(), headers=FORM),
        "UnauthorizedOperation",
        ("MinCount=1000",),
    ),
    "MaxCount as an exponent": (
        ci("ec2", "POST", "/", body=f"{RUN}&MinCount=1&MaxCount=1e3".encode(), headers=FORM),
        "UnauthorizedOperation",
        ("not a plain decimal",),
    ),
    # 6. Bodies outside the signature.
    "unsigned payload outside s3": (
        ci(
            "dynamodb",
            "POST",
            "/",
            body=b"{}",
            headers={
                "X-Amz-Target": f"{DDB}.ListTables",
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD",
            },
        ),
        "InvalidSignatureException",
        ("outside S3 the body is always signed",),
    ),
    "streaming payload outside s3": (
        ci(
            "sqs",
            "POST",
            "/",
            body=b"Action=ListQueues",
            headers={**FORM, "X-Amz-Content-SHA256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"},
        ),
        # A form to SQS is an older SDK's query call, answered in query's words.
        "XAmzContentSHA256Mismatch",
        ("outside S3",),
    ),
    # 8. Credential minting beyond STS, even for a role that allows the service.
    "ecr authorization token": (
        ci(
            "ecr",
            "POST",
            "/",
            body=b"{}",
            headers={
                "X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken",
                "Content-Type": "application/x-amz-json-1.1",
            },
        ),
        "AccessDeniedException",
        ("ecr:GetAuthorizationToken", "issues credentials"),
    ),
    "iam access key": (
        ci(
            "iam",
            "POST",
            "/",
            body=b"Action=CreateAccessKey&Version=2010-05-08&UserName=ci",
            headers=FORM,
        ),
        "AccessDenied",
        ("iam:CreateAccessKey", "issues credentials"),
    ),
    "sts session token": (
        ci("sts", "POST", "/", body=b"Action=GetSessionToken&Version=2011-06-15", headers=FORM),
        "AccessDenied",
        ("sts:GetSessionToken", "credentials are issued by iamgate"),
    ),
}


@pytest.mark.parametrize("name", REFUSED)
def test_a_request_with_two_readings_is_refused(gw: Pipeline, name: str) -> None:
    case, code, attempted = REFUSED[name]
    assert_refused(gw, send(gw, case), code, *attempted)


def test_credential_issuing_calls_are_audited_as_such(gw: Pipeline) -> None:
    case, code, _ = REFUSED["ecr authorization token"]
    record = assert_refused(gw, send(gw, case), code)
    assert record["issues_credentials"] is True


def test_an_unsigned_header_is_neither_read_nor_forwarded(gw: Pipeline) -> None:
    """A presigned URL need not sign x-amz-* headers: an unsigned X-Amz-Target must not make
    the signed `Action=DeleteQueue` look like ListQueues."""
    creds = gw.issue("ci-bot", CI, "CIRunner")
    request = AWSRequest(
        method="GET", url=f"{gw.url}/?Action=DeleteQueue&QueueUrl=http%3A%2F%2Fq%2F1%2Fprod"
    )
    SigV4QueryAuth(
        Credentials(creds.access_key_id, creds.secret_access_key, creds.session_token),
        "sqs",
        "us-east-1",
        expires=300,
    ).add_auth(request)
    target = str(request.url).removeprefix(gw.url)
    answer = gw.send(
        "GET",
        target,
        [("X-Amz-Target", "AmazonSQS.ListQueues"), ("Content-Type", "application/x-amz-json-1.0")],
    )
    # Read as the signed query says (SQS's query protocol, which older SDKs speak): it is
    # DeleteQueue, which ci-runner may not do, whatever the unsigned header claims.
    assert_refused(gw, answer, "AccessDenied", "sqs:DeleteQueue")


def test_a_header_given_twice_is_refused(gw: Pipeline) -> None:
    creds = gw.issue("ci-bot", CI, "CIRunner")
    headers = {"Content-Type": "application/x-amz-json-1.0"}
    signed = gw.signed(creds, "dynamodb", "POST", "/", body=b"{}", headers=headers)
    # Both targets are signed (SigV4 joins repeated headers with a comma), yet an upstream
    # may read either one: refused, not guessed.
    twice = [*signed, ("X-Amz-Target", f"{DDB}.DeleteTable"), ("X-Amz-Target", f"{DDB}.ListTables")]
    names = [name.lower() for name, _ in signed]
    auth = signed[names.index("authorization")][1]
    resigned = _sign_with_repeated_target(gw, creds, [f"{DDB}.DeleteTable", f"{DDB}.ListTables"])
    answer = gw.send("POST", "/", resigned, b"{}")
    assert_refused(gw, answer, "ValidationException", "X-Amz-Target is given twice")
    assert auth and twice  # the unsigned variant is refused as a bad signature as well
    gw.reset()
    assert gw.send("POST", "/", twice, b"{}").status == 400 and gw.received == []


def _sign_with_repeated_target(
    gw: Pipeline, creds: object, targets: list[str]
) -> list[tuple[str, str]]:
    from botocore.auth import SigV4Auth

    request = AWSRequest(method="POST", url=gw.url + "/", data=b"{}")
    request.headers["Content-Type"] = "application/x-amz-json-1.0"
    for target in targets:
        request.headers["X-Amz-Target"] = target  # HTTPHeaders appends
    SigV4Auth(
        Credentials(creds.access_key_id, creds.secret_access_key, creds.session_token),  # type: ignore[attr-defined]
        "dynamodb",
        "us-east-1",
    ).add_auth(request)
    return list(request.headers.items())


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("CONNECT", "dynamodb.us-east-1.amazonaws.com:443"),
        ("POST", "http://evil.example/"),
        ("POST", "https://dynamodb.us-east-1.amazonaws.com.evil.example/"),
    ],
)
def test_the_client_cannot_choose_the_upstream_host(gw: Pipeline, method: str, target: str) -> None:
    creds = gw.issue("ci-bot", CI, "CIRunner")
    headers = {"X-Amz-Target": f"{DDB}.ListTables", "Content-Type": "application/x-amz-json-1.0"}
    signed = gw.signed(creds, "dynamodb", "POST", "/", body=b"{}", headers=headers)
    answer = gw.send(method, target, signed, b"{}")
    assert answer.status == 400 and b"origin-form" in answer.body
    assert gw.received == []
    (record,) = gw.calls()
    assert record["decision"] == "denied"


@pytest.mark.parametrize(
    ("bucket", "method", "path"),
    [
        ("moto-api", "POST", "/reset?uploads"),  # CreateMultipartUpload: moto would reset
        ("moto-api", "GET", "/data.json"),  # GetObject: moto would dump the sandbox
        ("latest", "GET", "/meta-data/iam/security-credentials/"),
    ],
)
def test_a_virtual_hosted_bucket_cannot_reach_the_sandbox_controls(
    gw: Pipeline, bucket: str, method: str, path: str
) -> None:
    from botocore.auth import S3SigV4Auth

    creds = gw.issue("ci-bot", CI, "CIRunner")
    host = f"{bucket}.localhost:{gw.port}"
    request = AWSRequest(method=method, url=f"http://{host}{path}", data=b"")
    S3SigV4Auth(
        Credentials(creds.access_key_id, creds.secret_access_key, creds.session_token),
        "s3",
        "us-east-1",
    ).add_auth(request)
    answer = gw.send(method, path, [("Host", host), *request.headers.items()])
    assert_refused(gw, answer, "AccessDenied", "reserved")


def test_query_calls_are_forwarded_as_one_form_of_what_was_read(gw: Pipeline) -> None:
    case = ci(
        "ec2",
        "POST",
        "/?Filter.1.Name=instance-state-name",
        body=f"Action=DescribeInstances&{EC2}&Filter.1.Value.1=running".encode(),
        headers=FORM,
    )
    assert send(gw, case).status == 200
    (sent,) = gw.received
    assert (sent.method, sent.path, sent.query) == ("POST", "/", "")
    assert parse_qsl(sent.body.decode()) == [
        ("Filter.1.Name", "instance-state-name"),
        ("Action", "DescribeInstances"),
        ("Version", "2016-11-15"),
        ("Filter.1.Value.1", "running"),
    ]
    names = {name.lower(): value for name, value in sent.headers}
    assert "x-amz-target" not in names
    assert "Credential=ASIAUPSTREAMEXAMPLE0/" in names["authorization"]
    (record,) = gw.calls()
    assert record["action"] == "ec2:DescribeInstances" and record["decision"] == "allowed"


def test_json_calls_are_forwarded_as_the_json_that_was_read(gw: Pipeline) -> None:
    body = gzip.compress(b'{"TableName":  "builds", "Key": {"id": {"S": "1"}}}')
    case = ci(
        "dynamodb",
        "POST",
        "/",
        body=body,
        headers={
            "X-Amz-Target": f"{DDB}.GetItem",
            "Content-Type": "application/x-amz-json-1.0",
            "Content-Encoding": "gzip",
        },
    )
    assert send(gw, case).status == 200
    (sent,) = gw.received
    names = {name.lower(): value for name, value in sent.headers}
    assert names["x-amz-target"] == f"{DDB}.GetItem" and "content-encoding" not in names
    assert json.loads(sent.body) == {"TableName": "builds", "Key": {"id": {"S": "1"}}}
    assert sent.query == ""


def test_a_body_that_is_not_gzip_is_refused_and_audited(gw: Pipeline) -> None:
    case = ci(
        "dynamodb",
        "POST",
        "/",
        body=b"not gzip at all",
        headers={
            "X-Amz-Target": f"{DDB}.ListTables",
            "Content-Type": "application/x-amz-json-1.0",
            "Content-Encoding": "gzip",
        },
    )
    assert_refused(gw, send(gw, case), "ValidationException", "not valid gzip")


def test_an_s3_objects_content_encoding_is_its_metadata(gw: Pipeline) -> None:
    """S3 stores bytes labelled gzip as they are, gzip or not: they cross untouched."""
    body = b"not gzip, but labelled so by its owner"
    case = ci(
        "s3", "PUT", "/ci-artifacts/label.txt", body=body, headers={"Content-Encoding": "gzip"}
    )
    assert send(gw, case).status == 200
    (sent,) = gw.received
    assert sent.body == body
    assert ("Content-Encoding", "gzip") in sent.headers


def test_every_call_record_names_its_access_key_known_or_not(gw: Pipeline) -> None:
    """What did this leaked key do? The record names the key, whether it was allowed,
    refused, or never issued by this gateway."""
    case = ci("sts", "POST", "/", body=b"Action=GetCallerIdentity&Version=2011-06-15", headers=FORM)
    creds = gw.issue("ci-bot", CI, "CIRunner")
    signed = gw.signed(creds, "sts", "POST", "/", body=case.body, headers=case.headers)
    assert gw.send("POST", "/", signed, case.body).status == 200
    (allowed,) = gw.calls()
    assert allowed["access_key_id"] == creds.access_key_id
    gw.reset()
    forged = [
        (name, value.replace(creds.access_key_id, "ASIAFORGEDFORGEDFORG")) for name, value in signed
    ]
    assert gw.send("POST", "/", forged, case.body).status == 403
    (refused,) = gw.calls()
    assert refused["decision"] == "denied" and refused["access_key_id"] == "ASIAFORGEDFORGEDFORG"
