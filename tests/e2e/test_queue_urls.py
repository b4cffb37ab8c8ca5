"""Queue URLs returned through the gateway name the gateway, and work through it.

moto builds SQS queue URLs from the address its request reached; through the sandbox's
gateway they must name the gateway, so a client (boto3, the aws CLI, a query-protocol
request) that uses them stays on the gateway. The gateway never sends a request where a
queue URL points. Everything else from the upstream crosses byte for byte: error bodies and
`x-amz-*` headers are the same directly and through the gateway.
"""

from __future__ import annotations

import json
import re
import socket
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from harness import GatewayProcess, audited_calls, clean_env, creds_env, gateway_creds, run_aws

from iamgate.sandbox import Sandbox

pytestmark = pytest.mark.e2e

CI = "222222222222"


@pytest.fixture
def sqs(gateway: GatewayProcess) -> Any:
    return gateway.client("sqs", gateway.issue("ci-bot", CI, "CIRunner"))


def test_a_queue_url_from_the_gateway_names_it_and_works_through_it(
    gateway: GatewayProcess, sandbox: Sandbox, sqs: Any
) -> None:
    name = f"builds-{uuid.uuid4().hex[:8]}"
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    assert url == f"{gateway.url}/{CI}/{name}"
    assert sqs.get_queue_url(QueueName=name)["QueueUrl"] == url
    assert url in sqs.list_queues(QueueNamePrefix=name)["QueueUrls"]
    sqs.send_message(QueueUrl=url, MessageBody="build 42 done")
    direct = sandbox.client(CI, "sqs")
    direct_url = direct.get_queue_url(QueueName=name)["QueueUrl"]
    assert direct_url == f"{sandbox.endpoint_url}/{CI}/{name}"  # moto itself is unchanged
    attributes = direct.get_queue_attributes(
        QueueUrl=direct_url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "1"
    (message,) = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)["Messages"]
    assert message["Body"] == "build 42 done"
    sent = audited_calls(gateway.state_url, principal="ci-bot", action="sqs:SendMessage")
    assert sent and sent[0]["fields"]["status"] == 200


def test_a_message_naming_the_upstream_is_received_as_sent(
    gateway: GatewayProcess, sandbox: Sandbox, sqs: Any
) -> None:
    """Only queue URLs in answers are rewritten, never a message (botocore checks its MD5)."""
    url = sqs.create_queue(QueueName=f"notes-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    note = f"moto answers at {sandbox.endpoint_url}/{CI}/elsewhere"
    sqs.send_message(QueueUrl=url, MessageBody=note)
    (message,) = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)["Messages"]
    assert message["Body"] == note


def test_the_cli_gets_and_uses_the_gateways_queue_url(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    env = creds_env(clean_env(tmp_path), gateway_creds(gateway.issue("ci-bot", CI, "CIRunner")))
    name = f"deploys-{uuid.uuid4().hex[:8]}"

    def aws(*args: str) -> Any:
        result = run_aws(["sqs", *args], env=env, endpoint_url=gateway.url)
        assert result.returncode == 0, result.stderr
        return result.json()

    url = aws("create-queue", "--queue-name", name)["QueueUrl"]
    assert url == f"{gateway.url}/{CI}/{name}"
    aws("send-message", "--queue-url", url, "--message-body", "deploy 7")
    received = aws("receive-message", "--queue-url", url)
    assert [m["Body"] for m in received["Messages"]] == ["deploy 7"]


def _signed(
    gateway: GatewayProcess, body: bytes, headers: dict[str, str], path: str = "/"
) -> tuple[int, bytes]:
    creds = gateway.issue("ci-bot", CI, "CIRunner")
    request = AWSRequest(method="POST", url=gateway.url + path, data=body, headers=headers)
    SigV4Auth(
        Credentials(creds.access_key_id, creds.secret_access_key, creds.session_token),
        "sqs",
        "us-east-1",
    ).add_auth(request)
    sent = urllib.request.Request(
        gateway.url + path, data=body, headers=dict(request.headers.items()), method="POST"
    )
    try:
        with urllib.request.urlopen(sent, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_the_query_protocol_gets_the_gateways_queue_url_too(
    gateway: GatewayProcess, sqs: Any
) -> None:
    """SQS's older protocol (query, XML), as SDKs before botocore's switch to JSON send it."""
    name = f"legacy-{uuid.uuid4().hex[:8]}"
    sqs.create_queue(QueueName=name)
    form = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    status, body = _signed(
        gateway, f"Action=GetQueueUrl&QueueName={name}&Version=2012-11-05".encode(), form
    )
    assert status == 200, body
    assert f"<QueueUrl>{gateway.url}/{CI}/{name}</QueueUrl>".encode() in body


@pytest.fixture
def elsewhere() -> Iterator[socket.socket]:
    """A listener a queue URL may name: nothing may ever connect to it."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        yield listener


def test_a_queue_url_naming_another_host_does_not_move_the_call(
    gateway: GatewayProcess, sandbox: Sandbox, sqs: Any, elsewhere: socket.socket
) -> None:
    name = f"pinned-{uuid.uuid4().hex[:8]}"
    sqs.create_queue(QueueName=name)
    port = elsewhere.getsockname()[1]
    sqs.send_message(QueueUrl=f"http://127.0.0.1:{port}/{CI}/{name}", MessageBody="stays")
    with pytest.raises(BlockingIOError):
        elsewhere.accept()  # nobody came
    direct = sandbox.client(CI, "sqs")
    url = direct.get_queue_url(QueueName=name)["QueueUrl"]
    (message,) = direct.receive_message(QueueUrl=url)["Messages"]
    assert message["Body"] == "stays"


# -- error responses cross byte for byte -------------------------------------------------

_REQUEST_IDS = re.compile(rb"<Request(?:Id|ID)>[^<]*</Request(?:Id|ID)>")
_ID_HEADERS = frozenset({"x-amz-request-id", "x-amz-id-2", "x-amzn-requestid"})


def _raw_error(client: Any, call: Callable[[Any], object]) -> tuple[int, dict[str, str], bytes]:
    seen: list[dict[str, Any]] = []
    client.meta.events.register(
        "before-parse", lambda response_dict, **_: seen.append(response_dict)
    )
    with pytest.raises(ClientError):
        call(client)
    raw = seen[-1]
    headers = {
        k.lower(): v
        for k, v in raw["headers"].items()
        if k.lower().startswith("x-amz") and k.lower() not in _ID_HEADERS
    }
    return raw["status_code"], headers, _REQUEST_IDS.sub(b"<RequestId/>", raw["body"])


ERRORS: dict[str, tuple[str, Callable[[Any], object]]] = {
    "s3 NoSuchKey": ("s3", lambda c: c.get_object(Bucket="acme-ci-data", Key="no/such/key")),
    "s3 NoSuchBucket": ("s3", lambda c: c.list_objects_v2(Bucket="no-such-bucket-9f3e")),
    "sqs QueueDoesNotExist": ("sqs", lambda c: c.get_queue_url(QueueName="no-such-queue")),
    "dynamodb ResourceNotFound": ("dynamodb", lambda c: c.describe_table(TableName="nothing")),
    "ec2 InvalidInstanceID": (
        "ec2",
        lambda c: c.describe_instances(InstanceIds=["i-0123456789abcdef0"]),
    ),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_an_upstream_error_crosses_byte_for_byte(
    gateway: GatewayProcess, sandbox: Sandbox, case: str
) -> None:
    service, call = ERRORS[case]
    direct = _raw_error(sandbox.client(CI, service), call)
    through = _raw_error(gateway.client(service, gateway.issue("loader", CI, "Admin")), call)
    assert through == direct
    status, _, body = through
    assert status >= 400 and body  # a real error document was compared
    if service == "sqs":  # its query-compatible code travels in an x-amz header
        assert json.loads(body)["__type"].endswith("QueueDoesNotExist")
