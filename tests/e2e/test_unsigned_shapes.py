"""An unsigned request is refused in its own service's protocol, as AWS would refuse it.

Each service protocol botocore speaks (query, ec2, json, rest-json, rest-xml,
smithy-rpc-v2-cbor) has a client here sending an unsigned call exactly as the SDK sends it
(`signature_version=UNSIGNED`); the SDK must parse the answer into a ClientError with the
service's own code, and the gateway must record what was attempted. Anonymous S3 requests
(boto3 and curl) get S3's AccessDenied, while the web UI on the same port keeps its pages.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError
from harness import GatewayProcess, MotoRecorder, audited_calls, clean_env, run_aws

pytestmark = pytest.mark.e2e

CI_ACCOUNT = "222222222222"
PUBLIC_BUCKET = "acme-ci-public-reads"


@pytest.fixture(scope="module", autouse=True)
def models_compiled(gateway: GatewayProcess) -> None:
    """An unsigned request is read against the models compiled so far: all, once ready."""
    gateway.wait_until_ready()


def unsigned(gateway: GatewayProcess, service: str, marker: str = "") -> Any:
    """An UNSIGNED client; `marker` in its User-Agent finds its own audit records."""
    session: Any = boto3.Session()  # Any: the stubs type clients by literal service name
    return session.client(
        service,
        endpoint_url=gateway.url,
        region_name="us-east-1",
        config=BotoConfig(
            signature_version=UNSIGNED, retries={"max_attempts": 0}, user_agent_extra=marker
        ),
    )


def marker() -> str:
    return f"iamgate-test/{uuid.uuid4().hex}"


def _call(
    gateway: GatewayProcess, service: str, call: Callable[[Any], object], mark: str
) -> dict[str, Any]:
    with pytest.raises(ClientError) as refused:
        call(unsigned(gateway, service, mark))
    return dict(refused.value.response)


def _record(gateway: GatewayProcess, action: str, mark: str) -> dict[str, Any]:
    """The audit record of this test's own call (the store is shared by the session)."""
    deadline = time.monotonic() + 15
    while True:
        events = audited_calls(gateway.state_url, wait=1, action=action, decision="denied")
        mine = [e for e in events if mark in (e.get("user_agent") or "")]
        if mine or time.monotonic() > deadline:
            assert mine, f"no audit record of {action} by {mark}"
            return mine[0]
        time.sleep(0.2)


# (service, protocol botocore speaks to it, the call, the code, the status, its IAM action)
PROTOCOLS = [
    ("sts", "query", lambda c: c.get_caller_identity(), "MissingAuthenticationToken", 403,
     "sts:GetCallerIdentity"),
    ("sqs", "json", lambda c: c.list_queues(), "MissingAuthenticationToken", 400,
     "sqs:ListQueues"),
    ("ec2", "ec2", lambda c: c.describe_instances(), "MissingAuthenticationToken", 403,
     "ec2:DescribeInstances"),
    ("dynamodb", "json", lambda c: c.list_tables(), "MissingAuthenticationTokenException", 400,
     "dynamodb:ListTables"),
    ("lambda", "rest-json", lambda c: c.list_functions(), "MissingAuthenticationTokenException",
     403, "lambda:ListFunctions"),
    ("route53", "rest-xml", lambda c: c.list_hosted_zones(), "MissingAuthenticationToken", 403,
     "route53:ListHostedZones"),
    # Query-compatible services (SQS, CloudWatch) report the query code in a header.
    ("cloudwatch", "smithy-rpc-v2-cbor", lambda c: c.list_metrics(),
     "MissingAuthenticationToken", 400, "cloudwatch:ListMetrics"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("service", "protocol", "call", "code", "status", "action"),
    PROTOCOLS,
    ids=[f"{p[0]}-{p[1]}" for p in PROTOCOLS],
)
def test_an_unsigned_call_gets_its_services_error_in_its_protocol(
    gateway: GatewayProcess,
    service: str,
    protocol: str,
    call: Callable[[Any], object],
    code: str,
    status: int,
    action: str,
) -> None:
    assert unsigned(gateway, service).meta.service_model.protocol == protocol
    recorder = MotoRecorder(gateway.sandbox.endpoint_url)
    recorder.start()
    mark = marker()
    error = _call(gateway, service, call, mark)
    assert recorder.stop() == []  # never forwarded
    assert error["Error"]["Code"] == code
    assert error["ResponseMetadata"]["HTTPStatusCode"] == status
    record = _record(gateway, action, mark)
    assert record["fields"]["reason"].startswith("missing-auth")
    # The record keeps the service's own code; the SDK of a query-compatible one reads the
    # query code from its header.
    assert record["fields"]["error_code"].removesuffix("Exception") == code.removesuffix(
        "Exception"
    )


@pytest.mark.parametrize("operation", ["assume_role_with_web_identity", "assume_role_with_saml"])
def test_web_identity_exchanges_are_told_the_gateway_trusts_no_provider(
    gateway: GatewayProcess, operation: str
) -> None:
    """boto3 sends these unsigned, as AWS designed them; STS's own error, not a web 404."""
    mark = marker()
    sts = boto3.client(
        "sts",
        endpoint_url=gateway.url,
        region_name="us-east-1",
        config=BotoConfig(user_agent_extra=mark),
    )
    arguments: dict[str, str] = {"RoleArn": "arn:aws:iam::222222222222:role/CIRunner"}
    if operation == "assume_role_with_web_identity":
        arguments |= {"RoleSessionName": "job", "WebIdentityToken": "eyJhbGciOi.x.y"}
    else:
        arguments |= {
            "PrincipalArn": "arn:aws:iam::222222222222:saml-provider/corp",
            "SAMLAssertion": "PHNhbWxwOlJlc3BvbnNlLz4=",
        }
    with pytest.raises(ClientError) as refused:
        getattr(sts, operation)(**arguments)
    error = refused.value.response["Error"]
    assert error["Code"] == "InvalidIdentityToken"
    assert "is not configured for this gateway: it trusts no" in error["Message"]
    action = "sts:AssumeRoleWithWebIdentity" if "web" in operation else "sts:AssumeRoleWithSAML"
    record = _record(gateway, action, mark)
    assert record["fields"]["reason"].startswith("web-identity-unconfigured")


ANONYMOUS_S3 = [
    ("get_object", {"Bucket": "acme-ci-data", "Key": "README.txt"}, "s3:GetObject"),
    ("list_objects_v2", {"Bucket": "acme-ci-data"}, "s3:ListBucket"),
    ("put_object", {"Bucket": "acme-ci-data", "Key": "drop.txt", "Body": b"x"}, "s3:PutObject"),
    ("head_object", {"Bucket": "acme-ci-data", "Key": "README.txt"}, "s3:GetObject"),
]


@pytest.mark.parametrize(("operation", "arguments", "action"), ANONYMOUS_S3)
def test_anonymous_s3_calls_get_s3s_access_denied(
    gateway: GatewayProcess, operation: str, arguments: dict[str, Any], action: str
) -> None:
    mark = marker()
    s3 = unsigned(gateway, "s3", mark)
    s3.meta.config.s3 = {"addressing_style": "path"}
    recorder = MotoRecorder(gateway.sandbox.endpoint_url)
    recorder.start()
    with pytest.raises(ClientError) as refused:
        getattr(s3, operation)(**arguments)
    assert recorder.stop() == []
    error = refused.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert error["Error"]["Code"] in ("AccessDenied", "403")  # HEAD: no body, the status
    assert _record(gateway, action, mark)["fields"]["resource"].startswith(
        "arn:aws:s3:::acme-ci-data"
    )


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["s3api", "get-object", "--bucket", "acme-ci-data", "--key", "README.txt", "-"],
         "AccessDenied"),
        (["sts", "get-caller-identity"], "MissingAuthenticationToken"),
        (["lambda", "list-functions"], "MissingAuthenticationTokenException"),
        (["ec2", "describe-vpcs"], "MissingAuthenticationToken"),
    ],
)  # fmt: skip
def test_the_cli_without_signing_gets_the_services_error(
    gateway: GatewayProcess, tmp_path: Path, args: list[str], code: str
) -> None:
    result = run_aws(
        args, env=clean_env(tmp_path), endpoint_url=gateway.url, extra=["--no-sign-request"]
    )
    assert result.returncode != 0
    assert f"An error occurred ({code})" in result.stderr, result.stderr


def _curl(*args: str) -> tuple[int, dict[str, str], bytes]:
    done = subprocess.run(
        ["curl", "-s", "-i", "--max-time", "10", *args], capture_output=True, check=True
    )
    head, _, body = done.stdout.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize(
    ("args", "path"),
    [
        ((), "/acme-ci-data/README.txt"),
        ((), "/acme-ci-data?list-type=2"),
        (("-X", "PUT", "--data-binary", "hello"), f"/acme-ci-data/{uuid.uuid4().hex}"),
        (("-X", "DELETE"), "/acme-ci-data/README.txt"),
    ],
)
def test_anonymous_curl_gets_s3s_xml(
    gateway: GatewayProcess, args: tuple[str, ...], path: str
) -> None:
    status, headers, body = _curl(*args, gateway.url + path)
    assert status == 403
    assert headers["content-type"] == "application/xml"
    assert b"<Code>AccessDenied</Code>" in body and headers["x-amz-request-id"]


def test_the_web_ui_keeps_its_pages_beside_anonymous_s3(gateway: GatewayProcess) -> None:
    """A browser asking for a page, or an address no page has, gets HTML; the API its JSON."""
    html = ("-H", "Accept: text/html,application/xhtml+xml,*/*;q=0.8")
    status, headers, _ = _curl(*html, gateway.url + "/login")
    assert status == 200 and headers["content-type"].startswith("text/html")
    status, headers, _ = _curl(*html, gateway.url + "/acme-ci-data/README.txt")
    assert status == 404 and headers["content-type"].startswith("text/html")
    icon = ("-H", "Sec-Fetch-Dest: image", "-H", "Accept: image/avif,image/webp,*/*")
    status, headers, _ = _curl(*icon, gateway.url + "/favicon.ico")  # as Chromium asks
    assert status == 404 and headers["content-type"].startswith("text/html")
    status, headers, _ = _curl(gateway.url + "/api/v1/nothing-here")
    assert status == 404 and headers["content-type"].startswith("application/json")
    status, headers, _ = _curl(gateway.url + "/static/iamgate.css")
    assert status == 200 and headers["content-type"].startswith("text/css")


def test_a_public_read_object_is_not_served_anonymously_by_design(
    gateway: GatewayProcess,
) -> None:
    """S3 would serve a public-read object to anyone; the gateway forwards no unsigned
    request (no principal to authorize or attribute), and says so in S3's own error."""
    key = f"public/{uuid.uuid4().hex}.txt"
    ci = gateway.sandbox.client(CI_ACCOUNT, "s3")
    ci.create_bucket(Bucket=PUBLIC_BUCKET)
    ci.put_object(Bucket=PUBLIC_BUCKET, Key=key, Body=b"for everyone", ACL="public-read")
    grants = ci.get_object_acl(Bucket=PUBLIC_BUCKET, Key=key)["Grants"]
    assert any(g["Grantee"].get("URI", "").endswith("/AllUsers") for g in grants)
    mark = marker()
    s3 = unsigned(gateway, "s3", mark)
    s3.meta.config.s3 = {"addressing_style": "path"}
    recorder = MotoRecorder(gateway.sandbox.endpoint_url)
    recorder.start()
    with pytest.raises(ClientError) as refused:
        s3.get_object(Bucket=PUBLIC_BUCKET, Key=key)
    assert recorder.stop() == []
    error = refused.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert error["Error"]["Code"] == "AccessDenied"
    assert "iamgate requires signed requests" in error["Error"]["Message"]
    record = _record(gateway, "s3:GetObject", mark)["fields"]
    assert record["resource"] == f"arn:aws:s3:::{PUBLIC_BUCKET}/{key}"
    status, headers, body = _curl(f"{gateway.url}/{PUBLIC_BUCKET}/{key}")
    assert status == 403 and headers["content-type"] == "application/xml"
    assert b"<Code>AccessDenied</Code>" in body and b"requires signed requests" in body
