"""Every refusal parses, in botocore's own parser, to the code and message we meant."""

from __future__ import annotations

from typing import cast

import botocore.session
import pytest
from botocore.model import Shape
from botocore.parsers import create_parser

from iamgate.aws.errors import error_code_for, render_error
from iamgate.refusals import Reason

CASES = [
    ("s3", "GetObject", "rest-xml", "s3", False),
    ("s3", "HeadObject", "rest-xml", "s3", False),
    ("sts", "GetCallerIdentity", "query", "sts", False),
    ("ec2", "RunInstances", "ec2", "ec2", False),
    ("dynamodb", "PutItem", "json", "dynamodb", False),
    ("sqs", "SendMessage", "json", "sqs", True),
    ("lambda", "ListFunctions", "rest-json", "lambda", False),
    ("rds", "DeleteDBInstance", "query", "rds", False),
    ("cloudwatch", "GetMetricData", "smithy-rpc-v2-cbor", "monitoring", True),
]
MESSAGE = 'iamgate: role data-scientist denies rds:DeleteDBInstance <&> "quotes" ü'


@pytest.mark.parametrize(("service", "operation", "protocol", "signing", "compat"), CASES)
@pytest.mark.parametrize("reason", list(Reason))
def test_refusals_parse_as_aws_errors(
    service: str, operation: str, protocol: str, signing: str, compat: bool, reason: Reason
) -> None:
    model = botocore.session.get_session().get_service_model(service)
    head = operation.startswith("Head")
    rendered = render_error(
        reason,
        MESSAGE,
        signing_name=signing,
        protocol=protocol,
        request_id="REQ-1",
        query_compatible=compat,
        head=head,
    )
    parsed = create_parser(protocol).parse(
        {"status_code": rendered.status, "headers": rendered.headers, "body": rendered.body},
        cast(Shape, model.operation_model(operation).output_shape),
    )
    status, code = error_code_for(reason, signing, protocol)
    assert rendered.status == status
    if head:  # HEAD errors carry no body: clients see the status alone
        assert rendered.body == b""
        return
    if compat:
        assert parsed["Error"]["Code"] == rendered.headers["x-amzn-query-error"].split(";")[0]
    else:
        assert parsed["Error"]["Code"] == code
    assert parsed["Error"]["Message"] == MESSAGE


def test_the_codes_clients_expect() -> None:
    assert error_code_for(Reason.UNKNOWN_KEY, "s3", "rest-xml") == (403, "InvalidAccessKeyId")
    assert error_code_for(Reason.UNKNOWN_KEY, "sts", "query") == (403, "InvalidClientTokenId")
    assert error_code_for(Reason.UNKNOWN_KEY, "dynamodb", "json") == (
        400,
        "UnrecognizedClientException",
    )
    assert error_code_for(Reason.EXPIRED_CREDENTIAL, "sts", "query")[1] == "ExpiredToken"
    assert error_code_for(Reason.BAD_TOKEN, "s3", "rest-xml")[1] == "InvalidToken"
    assert error_code_for(Reason.ACCESS_DENIED, "rds", "query") == (403, "AccessDenied")
    assert error_code_for(Reason.ACCESS_DENIED, "ec2", "ec2")[1] == "UnauthorizedOperation"
