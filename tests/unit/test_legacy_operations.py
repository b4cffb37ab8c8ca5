"""Operations that older botocore releases route differently are still identified, and the
legacy routes never change what a request the current models know is identified as.

The shipped data (src/iamgate/aws/data/legacy_operations.json.gz, built by
tools/build_legacy_operations.py from botocore releases of 2022-2026) is checked on real
cases found by that script; the precedence rules on small hand-made legacy models.
"""

from __future__ import annotations

from typing import Any

import botocore.session
import pytest
from botocore.model import ServiceModel
from model_requests import request_for

from iamgate.aws.operations import Identified, OperationIndex, load_legacy
from iamgate.refusals import Refused

FORM = {"content-type": "application/x-www-form-urlencoded; charset=utf-8"}


@pytest.fixture(scope="module")
def index() -> OperationIndex:
    return OperationIndex.build()


@pytest.fixture(scope="module")
def current() -> OperationIndex:
    return OperationIndex.build(legacy=False)


def _identify(index: OperationIndex, *request: Any) -> Identified | None:
    signing, method, path, query, headers, body = request
    return index.identify(signing, method, path, query, headers, body)


# (signing name, method, path, query, headers, body) -> (service, operation, IAM action)
REAL_CASES: list[tuple[tuple[Any, ...], tuple[str, str, str]]] = [
    # A service dropped from botocore (OpsWorks, 2024): its JSON target.
    (
        ("opsworks", "POST", "/", [], {"X-Amz-Target": "OpsWorks_20130218.DescribeStacks"}, b"{}"),
        ("opsworks", "DescribeStacks", "opsworks:DescribeStacks"),
    ),
    # A REST path changed: Amazon Location's places API moved under /v2 (GA releases).
    (
        ("geo-places", "POST", "/geocode", [], {}, b'{"QueryText": "x"}'),
        ("geo-places", "Geocode", "geo-places:Geocode"),
    ),
    # A path and method changed: SES v2 lists identities with POST /v2/email/list-identities
    # since botocore 1.43.105 (the AWS CLI v1 1.46 still bundles 1.43.62).
    (
        ("ses", "GET", "/v2/email/identities", [], {}, None),
        ("sesv2", "ListEmailIdentities", "ses:ListEmailIdentities"),
    ),
    # A signing name changed: IoT's models signed as execute-api until 2023; its IAM
    # actions were always iot:*.
    (
        ("execute-api", "GET", "/things", [], {}, None),
        ("iot", "ListThings", "iot:ListThings"),
    ),
    # A protocol dropped: SQS spoke query before it spoke JSON.
    (
        ("sqs", "POST", "/", [], FORM, b"Action=ListQueues&Version=2012-11-05"),
        ("sqs", "ListQueues", "sqs:ListQueues"),
    ),
]


@pytest.mark.parametrize(("request_", "expected"), REAL_CASES)
def test_real_operations_older_sdks_send(
    index: OperationIndex,
    current: OperationIndex,
    request_: tuple[Any, ...],
    expected: tuple[str, str, str],
) -> None:
    assert _identify(current, *request_) is None  # what the gateway did before
    found = _identify(index, *request_)
    assert found is not None
    operation = found.operation
    assert (operation.service, operation.name, operation.iam_action) == expected


def test_a_dropped_service_still_has_its_metadata(index: OperationIndex) -> None:
    """Errors and forwarding need the protocol, JSON version and endpoint of a service the
    current botocore no longer has."""
    assert index.protocol_for("opsworks") == "json"
    assert index.json_version("opsworks") == "1.1"
    assert index.endpoint_prefix("opsworks") == "opsworks"
    assert index.services_for("opsworks") == ()  # no current service: only legacy routes


def test_legacy_parameters_are_read_for_guardrails(index: OperationIndex) -> None:
    found = _identify(index, "sqs", "POST", "/", [], FORM, b"Action=CreateQueue&QueueName=q")
    assert found is not None and found.operation.name == "CreateQueue"
    assert found.operation.protocol == "query"
    assert found.params["QueueName"] == "q" and found.ambiguous is None
    odd = _identify(index, "sqs", "POST", "/", [], FORM, b"Action=CreateQueue&Nope=1")
    assert odd is not None and odd.ambiguous == "Nope is not a parameter of CreateQueue"


def test_every_shipped_legacy_operation_is_identified(
    index: OperationIndex, current: OperationIndex
) -> None:
    """A request built from each legacy operation's model is identified as that operation,
    unless the current models already identify that request (then the current answer wins,
    as for any request they know)."""
    total, own, shadowed, wrong = 0, 0, 0, []
    for variants in load_legacy().values():
        for _, model in variants:
            service = ServiceModel(model, model["service"])
            for name in model["operations"]:
                total += 1
                r = request_for(service, name)
                request = (r.signing_name, r.method, r.path, r.query, r.headers, r.body)
                found = _identify(index, *request)
                before = _identify(current, *request)
                got = (found.operation.service, found.operation.name) if found else None
                if got == (r.service, name):
                    own += 1
                elif (
                    before is not None and found is not None and found.operation == before.operation
                ):
                    shadowed += 1
                else:
                    wrong.append((r.service, name, r.method, r.path, got))
    assert wrong == [], wrong
    assert total > 1000 and own > 0.95 * total, (total, own, shadowed)


def test_legacy_operations_of_current_services_are_forwarded_as_their_callers_sent_them(
    current: OperationIndex,
) -> None:
    """The gateway forwards an identified call to its service's endpoint, in its JSON
    version, from the current metadata: the legacy models must agree with it."""
    available = set(botocore.session.get_session().get_available_services())
    for variants in load_legacy().values():
        for service, _ in variants:
            if service.name not in available:
                continue
            assert current.endpoint_prefix(service.name) == service.endpoint_prefix, service
            if "json" in service.protocols:
                assert current.json_version(service.name) == (service.json_version or "1.0")


def test_an_older_sdks_unsigned_call_is_recognised_by_its_legacy_shape() -> None:
    """An unsigned SQS query call (an SDK of before 2024) is refused as what it attempted,
    in its own protocol, like any unsigned call."""
    index = OperationIndex.build(["sqs", "sts"])
    index.preload()
    body = b"Action=ListQueues&Version=2012-11-05"
    found = index.identify_unsigned("POST", "/", [], FORM, body)
    assert found is not None
    signing, identified = found
    assert (signing, identified.operation.name, identified.operation.protocol) == (
        "sqs",
        "ListQueues",
        "query",
    )
    current = OperationIndex.build(["sqs", "sts"], legacy=False)
    current.preload()
    assert current.identify_unsigned("POST", "/", [], FORM, body) is None


def _legacy(operations: dict[str, Any], *, service: str = "lambda") -> Any:
    """Hand-made legacy models of one service, in the shipped data's form."""
    meta = {
        "protocol": "rest-json",
        "endpointPrefix": service,
        "signingName": service,
        "apiVersion": "2015-03-31",
    }
    variant = {"service": service, "metadata": meta, "operations": operations, "shapes": {}}
    return load_legacy(data={"signing": {service: [variant]}})


def test_current_operations_win_over_legacy_routes_for_the_same_request() -> None:
    """A legacy route naming another operation for a request the current models identify
    is never used: the current reading wins."""
    legacy = _legacy(
        {
            "OldListFunctions": {"http": {"method": "GET", "requestUri": "/2015-03-31/functions/"}},
            "OldThing": {"http": {"method": "GET", "requestUri": "/2015-03-31/old-things"}},
            "OldAnything": {"http": {"method": "GET", "requestUri": "/2015-03-31/{Anything+}"}},
        }
    )
    index = OperationIndex.build(["lambda"], legacy=legacy)
    listed = index.identify("lambda", "GET", "/2015-03-31/functions/", [], {}, None)
    assert listed is not None and listed.operation.name == "ListFunctions"
    function = index.identify("lambda", "GET", "/2015-03-31/functions/f", [], {}, None)
    assert function is not None and function.operation.name == "GetFunction"
    old = index.identify("lambda", "GET", "/2015-03-31/old-things", [], {}, None)
    assert old is not None and old.operation.name == "OldThing"
    # The catch-all legacy template only takes what neither current nor OldThing matches.
    other = index.identify("lambda", "GET", "/2015-03-31/elsewhere/x", [], {}, None)
    assert other is not None and other.operation.name == "OldAnything"


def test_legacy_routes_cannot_lift_a_refusal() -> None:
    """A request the current models refuse as ambiguous stays refused, whatever a legacy
    route would make of it."""
    legacy = _legacy(
        {"OldTagged": {"http": {"method": "GET", "requestUri": "/{Bucket}?tagging"}}},
        service="s3",
    )
    index = OperationIndex.build(["s3"], legacy=legacy)
    with pytest.raises(Refused):
        index.identify("s3", "GET", "/b", [("tagging", ""), ("versioning", "")], {}, None)


def test_legacy_routes_cannot_ignore_a_current_sub_resource() -> None:
    """S3 selects operations by query keys (?tagging, ?acl): a legacy template that does not
    name one cannot take a request that does, though no current operation matches it."""
    legacy = _legacy(
        {"OldPatch": {"http": {"method": "PATCH", "requestUri": "/{Bucket}"}}}, service="s3"
    )
    index = OperationIndex.build(["s3"], legacy=legacy)
    plain = index.identify("s3", "PATCH", "/b", [], {}, None)
    assert plain is not None and plain.operation.name == "OldPatch"
    with pytest.raises(Refused, match="sub-resource tagging"):
        index.identify("s3", "PATCH", "/b", [("tagging", "")], {}, None)


def test_without_legacy_data_nothing_changes(current: OperationIndex) -> None:
    assert current.services_for("opsworks") == ()
    assert current.identify("opsworks", "POST", "/", [], {"X-Amz-Target": "x.y"}, b"{}") is None
