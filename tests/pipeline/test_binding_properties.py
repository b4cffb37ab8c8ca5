"""A property: whatever is done to a well-formed request, the gateway either refuses it or
forwards a request that the upstream executes as exactly the operation and parameters the
gateway identified, authorized and audited.

Requests are built by botocore's own serializers, then perturbed the ways a security review
did: parameters moved between query and body, duplicated, re-cased; a second Action; an
X-Amz-Target beside an Action; headers added after signing. The upstream's reading is
moto's (`Action` from the query or the form, else `X-Amz-Target`; every value of a key).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode

import botocore.session
import pytest
from botocore.serialize import create_serializer
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pipeline import CI, Pipeline, Received

from iamgate.aws.operations import Identified

_SESSION = botocore.session.get_session()

OPERATIONS: list[tuple[str, str, dict[str, Any]]] = [
    ("ec2", "RunInstances", {"ImageId": "ami-1", "MinCount": 1, "MaxCount": 5}),
    ("ec2", "DescribeInstances", {"InstanceIds": ["i-1", "i-2"]}),
    ("ec2", "TerminateInstances", {"InstanceIds": ["i-1"]}),
    ("rds", "DescribeDBInstances", {"DBInstanceIdentifier": "prod-db"}),
    ("rds", "DeleteDBInstance", {"DBInstanceIdentifier": "prod-db", "SkipFinalSnapshot": True}),
    ("sts", "GetCallerIdentity", {}),
    (
        "sts",
        "AssumeRole",
        {"RoleArn": "arn:aws:iam::222222222222:role/Admin", "RoleSessionName": "xy"},
    ),
    ("dynamodb", "DescribeTable", {"TableName": "builds"}),
    ("dynamodb", "DeleteTable", {"TableName": "builds"}),
    ("dynamodb", "Scan", {"TableName": "builds", "Limit": 5}),
]
OTHER_ACTIONS = ["DeleteDBInstance", "TerminateInstances", "AssumeRole", "RunInstances"]
OTHER_TARGETS = ["DynamoDB_20120810.DeleteTable", "DynamoDB_20120810.DescribeTable"]


def serialized(service: str, name: str, params: dict[str, Any]) -> dict[str, Any]:
    model = _SESSION.get_service_model(service)
    protocol = model.resolved_protocol if hasattr(model, "resolved_protocol") else model.protocol
    built: dict[str, Any] = create_serializer(protocol).serialize_to_request(
        params, model.operation_model(name)
    )
    return built


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    service, name, params = draw(st.sampled_from(OPERATIONS))
    built = serialized(service, name, params)
    headers = {k: str(v) for k, v in built["headers"].items()}
    query: list[tuple[str, str]] = (
        list(built["query_string"].items()) if isinstance(built["query_string"], dict) else []
    )
    form = isinstance(built["body"], dict)
    body_pairs: list[tuple[str, str]] = (
        [(k, str(v)) for k, v in built["body"].items()] if form else []
    )
    json_body = built["body"] if not form else b""
    unsigned: list[tuple[str, str]] = []
    for change in draw(st.lists(st.sampled_from(CHANGES), max_size=3)):
        if change == "move" and body_pairs:
            i = draw(st.integers(0, len(body_pairs) - 1))
            query.append(body_pairs.pop(i))
        elif change == "duplicate" and body_pairs:
            key = draw(st.sampled_from([k for k, _ in body_pairs]))
            where = draw(st.sampled_from([query, body_pairs]))
            where.append((key, draw(st.sampled_from(["1000", "prod-db", "DeleteTable"]))))
        elif change == "recase" and body_pairs:
            i = draw(st.integers(0, len(body_pairs) - 1))
            key, value = body_pairs[i]
            body_pairs[i] = (key.lower(), value)
        elif change == "recased copy" and body_pairs:
            key = draw(st.sampled_from([k for k, _ in body_pairs]))
            body_pairs.append((key.swapcase(), "1000"))
        elif change == "second action":
            where = draw(st.sampled_from([query, body_pairs]))
            where.append(("Action", draw(st.sampled_from(OTHER_ACTIONS))))
        elif change == "second target":
            headers["X-Amz-Target"] = draw(st.sampled_from(OTHER_TARGETS))
        elif change == "unsigned target":
            unsigned.append(("X-Amz-Target", draw(st.sampled_from(OTHER_TARGETS))))
        elif change == "unsigned header":
            unsigned.append(("X-Amz-Meta-Extra", "1"))
    body = (
        urlencode(body_pairs).encode()
        if form
        else (json_body if isinstance(json_body, bytes) else str(json_body).encode())
    )
    return {
        "service": service,
        "target": "/" + (f"?{urlencode(query)}" if query else ""),
        "headers": headers,
        "body": body,
        "unsigned": unsigned,
    }


CHANGES = [
    "move",
    "duplicate",
    "recase",
    "recased copy",
    "second action",
    "second target",
    "unsigned target",
    "unsigned header",
]


def upstream_reading(sent: Received) -> tuple[str, dict[str, Any]]:
    """How moto reads what it received: every value of every key, Action first."""
    values: dict[str, list[str]] = {}
    for key, value in parse_qsl(sent.query, keep_blank_values=True):
        values.setdefault(key, []).append(value)
    headers = {k.lower(): v for k, v in sent.headers}
    if "x-www-form-urlencoded" in headers.get("content-type", ""):
        for key, value in parse_qsl(sent.body.decode(), keep_blank_values=True):
            values.setdefault(key, []).append(value)
    repeated = [k for k, v in values.items() if len(v) > 1]
    assert not repeated, f"the upstream sees {repeated} more than once"
    if "Action" in values:
        assert "x-amz-target" not in headers
        return values["Action"][0], {k: v[0] for k, v in values.items()}
    return headers["x-amz-target"].rsplit(".", 1)[-1], json.loads(sent.body or b"{}")


@pytest.fixture(scope="module")
def watched(pipeline: Pipeline) -> Iterator[tuple[Pipeline, list[Identified]]]:
    """The pipeline, and what its identification returned for each request."""
    seen: list[Identified] = []
    index = pipeline.gateway.index
    original = index.identify

    def identify(*args: Any, **kwargs: Any) -> Identified | None:
        found = original(*args, **kwargs)
        if found is not None:
            seen.append(found)
        return found

    index.identify = identify  # type: ignore[method-assign]
    try:
        yield pipeline, seen
    finally:
        del index.identify


@given(request=requests())
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_what_is_forwarded_is_what_was_authorized(
    watched: tuple[Pipeline, list[Identified]], request: dict[str, Any]
) -> None:
    gw, seen = watched
    gw.reset()
    seen.clear()
    creds = gw.issue("ci-bot", CI, "CIRunner")
    signed = gw.signed(
        creds,
        request["service"],
        "POST",
        request["target"],
        body=request["body"],
        headers=request["headers"],
    )
    answer = gw.send("POST", request["target"], [*signed, *request["unsigned"]], request["body"])
    (record,) = gw.calls()
    if not gw.received:
        assert answer.status >= 400 and record["decision"] == "denied"
        event(f"refused: {str(record['reason']).split(': ')[-1][:40]}")
        return
    event("forwarded")
    (sent,) = gw.received
    (identified,) = seen
    operation, params = upstream_reading(sent)
    assert record["decision"] == "allowed"
    assert operation == identified.operation.name == record["operation"]
    assert params == dict(identified.params)
