"""A request that is an AWS call by its shape but carries no signature is answered in AWS's
protocol, and audited, never by the web API's JSON 404."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError
from harness import GatewayProcess, audited_calls

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", autouse=True)
def models_compiled(gateway: GatewayProcess) -> None:
    """An unsigned request is read against the models compiled so far: all, once ready."""
    gateway.wait_until_ready()


def unsigned(gateway: GatewayProcess, service: str) -> Any:
    session: Any = boto3.Session()  # Any: the stubs type clients by literal service name
    return session.client(
        service,
        endpoint_url=gateway.url,
        region_name="us-east-1",
        config=BotoConfig(signature_version=UNSIGNED, retries={"max_attempts": 0}),
    )


def test_web_identity_without_a_gateway_that_answers_it_is_refused_as_sts_would(
    gateway: GatewayProcess,
) -> None:
    sts = boto3.client("sts", endpoint_url=gateway.url, region_name="us-east-1")
    with pytest.raises(ClientError) as refused:
        sts.assume_role_with_web_identity(
            RoleArn="arn:aws:iam::222222222222:role/CIRunner",
            RoleSessionName="job",
            WebIdentityToken="not-a-token",
        )
    assert refused.value.response["Error"]["Code"] == "InvalidIdentityToken"


@pytest.mark.parametrize(
    ("service", "call", "action", "code"),
    [
        ("dynamodb", "list_tables", "dynamodb:ListTables", "MissingAuthenticationTokenException"),
        ("rds", "describe_db_instances", "rds:DescribeDBInstances", "MissingAuthenticationToken"),
    ],
)
def test_unsigned_calls_get_the_services_own_error(
    gateway: GatewayProcess, service: str, call: str, action: str, code: str
) -> None:
    client = unsigned(gateway, service)
    with pytest.raises(ClientError) as refused:
        getattr(client, call)()
    assert refused.value.response["Error"]["Code"] == code
    # Its own record, named by the operation its shape gave (written after the answer: the
    # search waits for it, rather than taking another test's denied record).
    events = audited_calls(gateway.state_url, decision="denied", action=action)
    assert any("missing-auth" in str(e["fields"].get("reason")) for e in events)


def test_an_unsigned_action_in_the_query_is_not_the_web_apis(gateway: GatewayProcess) -> None:
    request = urllib.request.Request(f"{gateway.url}/?Action=ListUsers&Version=2010-05-08")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    body = refused.value.read()
    assert refused.value.code == 403 and b"MissingAuthenticationToken" in body
