"""Every refusal parses, in botocore's own parser, to the code and message we meant."""

from __future__ import annotations

from typing import Any, cast

import botocore.session
import pytest
from botocore.awsrequest import HeadersDict
from botocore.model import Shape
from botocore.parsers import create_parser

from iamgate.aws.errors import ErrorResponse, error_code_for, render_error
from iamgate.refusals import Reason

# (service, operation, protocol, signing name, awsQueryCompatible)
CASES = [
    ("s3", "GetObject", "rest-xml", "s3", False),
    ("s3", "HeadObject", "rest-xml", "s3", False),
    ("s3control", "ListAccessPoints", "rest-xml", "s3", False),
    ("route53", "ListHostedZones", "rest-xml", "route53", False),
    ("sts", "GetCallerIdentity", "query", "sts", False),
    ("rds", "DeleteDBInstance", "query", "rds", False),
    ("ec2", "RunInstances", "ec2", "ec2", False),
    ("dynamodb", "PutItem", "json", "dynamodb", False),
    ("sqs", "SendMessage", "json", "sqs", True),
    ("cloudwatch", "GetMetricData", "json", "monitoring", True),
    ("lambda", "ListFunctions", "rest-json", "lambda", False),
    ("s3tables", "ListTableBuckets", "rest-json", "s3tables", False),
    ("cloudwatch", "GetMetricData", "smithy-rpc-v2-cbor", "monitoring", True),
    ("cloudwatchomni", "CreateAlert", "smithy-rpc-v2-cbor", "cloudwatch", False),
]
MESSAGE = "iamgate: role data-scientist denies rds:DeleteDBInstance <&> \"quotes\" 'q' ü ☃ 😀"


def _parse(service: str, operation: str, protocol: str, rendered: ErrorResponse) -> Any:
    model = botocore.session.get_session().get_service_model(service)
    return create_parser(protocol).parse(
        {
            "status_code": rendered.status,
            # As botocore hands them to its parsers: case-insensitive.
            "headers": HeadersDict(rendered.headers),
            "body": rendered.body,
        },
        cast(Shape, model.operation_model(operation).output_shape),
    )


def test_the_cases_use_real_protocols() -> None:
    session = botocore.session.get_session()
    for service, operation, protocol, signing, compat in CASES:
        model = session.get_service_model(service)
        assert operation in model.operation_names
        assert protocol in (model.metadata.get("protocols") or [model.protocol])
        assert (model.signing_name or model.endpoint_prefix) == signing
        assert ("awsQueryCompatible" in model.metadata) is compat


@pytest.mark.parametrize(("service", "operation", "protocol", "signing", "compat"), CASES)
@pytest.mark.parametrize("reason", list(Reason))
def test_refusals_parse_as_aws_errors(
    service: str, operation: str, protocol: str, signing: str, compat: bool, reason: Reason
) -> None:
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
    parsed = _parse(service, operation, protocol, rendered)
    status, code = error_code_for(reason, signing, protocol)
    assert rendered.status == status
    assert parsed["ResponseMetadata"]["HTTPStatusCode"] == status
    if head:  # HEAD errors carry no body: clients see the status alone, as with S3
        assert rendered.body == b""
        assert parsed["Error"]["Code"] == str(status)
        return
    assert parsed["ResponseMetadata"]["RequestId"] == "REQ-1"
    if compat:  # botocore reports the legacy query code, the JSON one as QueryErrorCode
        legacy = rendered.headers["x-amzn-query-error"].split(";")[0]
        assert parsed["Error"]["Code"] == legacy
        assert parsed["Error"]["QueryErrorCode"] == code
    else:
        assert parsed["Error"]["Code"] == code
    assert parsed["Error"]["Message"] == MESSAGE


@pytest.mark.parametrize(("service", "operation", "protocol", "signing", "compat"), CASES)
def test_unprintable_characters_do_not_break_the_document(
    service: str, operation: str, protocol: str, signing: str, compat: bool
) -> None:
    message = "key a\x00b\x1bc\ud800 denied"
    rendered = render_error(
        Reason.ACCESS_DENIED, message, signing_name=signing, protocol=protocol, request_id="R"
    )
    parsed = _parse(service, operation, protocol, rendered)
    assert parsed["Error"]["Code"] == error_code_for(Reason.ACCESS_DENIED, signing, protocol)[1]
    assert parsed["Error"]["Message"].startswith("key a")


@pytest.mark.parametrize(
    ("reason", "signing", "protocol", "expected"),
    [
        (Reason.UNKNOWN_KEY, "s3", "rest-xml", (403, "InvalidAccessKeyId")),
        (Reason.UNKNOWN_KEY, "sts", "query", (403, "InvalidClientTokenId")),
        (Reason.UNKNOWN_KEY, "ec2", "ec2", (401, "AuthFailure")),
        (Reason.UNKNOWN_KEY, "dynamodb", "json", (400, "UnrecognizedClientException")),
        (Reason.UNKNOWN_KEY, "lambda", "rest-json", (403, "UnrecognizedClientException")),
        (Reason.BAD_SIGNATURE, "s3", "rest-xml", (403, "SignatureDoesNotMatch")),
        (Reason.BAD_SIGNATURE, "iam", "query", (403, "SignatureDoesNotMatch")),
        (Reason.BAD_SIGNATURE, "dynamodb", "json", (400, "InvalidSignatureException")),
        (Reason.EXPIRED_CREDENTIAL, "s3", "rest-xml", (400, "ExpiredToken")),
        (Reason.EXPIRED_CREDENTIAL, "sts", "query", (403, "ExpiredToken")),
        (Reason.EXPIRED_CREDENTIAL, "ec2", "ec2", (400, "RequestExpired")),
        (Reason.EXPIRED_CREDENTIAL, "kms", "json", (400, "ExpiredTokenException")),
        (Reason.REVOKED_CREDENTIAL, "s3", "rest-xml", (400, "InvalidToken")),
        (Reason.REVOKED_CREDENTIAL, "rds", "query", (403, "InvalidClientTokenId")),
        (Reason.REVOKED_CREDENTIAL, "dynamodb", "json", (400, "UnrecognizedClientException")),
        (Reason.BAD_TOKEN, "s3", "rest-xml", (400, "InvalidToken")),
        (Reason.SKEWED_CLOCK, "s3", "rest-xml", (403, "RequestTimeTooSkewed")),
        (Reason.SKEWED_CLOCK, "sts", "query", (403, "SignatureDoesNotMatch")),
        (Reason.SKEWED_CLOCK, "ec2", "ec2", (400, "RequestExpired")),
        (Reason.SKEWED_CLOCK, "dynamodb", "json", (400, "InvalidSignatureException")),
        (Reason.PRESIGN_EXPIRED, "s3", "rest-xml", (403, "AccessDenied")),
        (Reason.ACCESS_DENIED, "s3", "rest-xml", (403, "AccessDenied")),
        (Reason.ACCESS_DENIED, "rds", "query", (403, "AccessDenied")),
        (Reason.ACCESS_DENIED, "ec2", "ec2", (403, "UnauthorizedOperation")),
        (Reason.ACCESS_DENIED, "dynamodb", "json", (400, "AccessDeniedException")),
        (Reason.ACCESS_DENIED, "lambda", "rest-json", (403, "AccessDeniedException")),
        (Reason.ACCESS_DENIED, "s3tables", "rest-json", (403, "AccessDeniedException")),
        (Reason.BODY_HASH_MISMATCH, "s3", "rest-xml", (400, "XAmzContentSHA256Mismatch")),
        (Reason.BAD_DIGEST, "s3", "rest-xml", (400, "BadDigest")),
        (Reason.MISSING_AUTH, "s3", "rest-xml", (403, "AccessDenied")),
        (Reason.MISSING_AUTH, "sts", "query", (403, "MissingAuthenticationToken")),
        (Reason.MISSING_AUTH, "dynamodb", "json", (400, "MissingAuthenticationTokenException")),
        (Reason.UNKNOWN_OPERATION, "sts", "query", (400, "InvalidAction")),
        (Reason.UNKNOWN_OPERATION, "dynamodb", "json", (400, "UnknownOperationException")),
        (Reason.UNKNOWN_OPERATION, "s3", "rest-xml", (400, "InvalidRequest")),
        (Reason.UPSTREAM_UNAVAILABLE, "s3", "rest-xml", (503, "ServiceUnavailable")),
        (Reason.UPSTREAM_UNAVAILABLE, "dynamodb", "json", (503, "ServiceUnavailable")),
        (Reason.AUDIT_UNAVAILABLE, "sts", "query", (503, "ServiceUnavailable")),
        (Reason.INTERNAL, "s3", "rest-xml", (500, "InternalError")),
        (Reason.INTERNAL, "sts", "query", (500, "InternalFailure")),
        (Reason.INTERNAL, "dynamodb", "json", (500, "InternalFailure")),
    ],
)
def test_the_codes_clients_expect(
    reason: Reason, signing: str, protocol: str, expected: tuple[int, str]
) -> None:
    assert error_code_for(reason, signing, protocol) == expected


def test_headers_per_protocol() -> None:
    def render(signing: str, protocol: str, **kw: Any) -> ErrorResponse:
        return render_error(
            Reason.ACCESS_DENIED,
            "no",
            signing_name=signing,
            protocol=protocol,
            request_id="RID",
            **kw,
        )

    s3 = render("s3", "rest-xml")
    assert (s3.headers["x-amz-request-id"], s3.headers["x-amz-id-2"]) == ("RID", "RID")
    assert "x-amzn-RequestId" not in s3.headers
    assert s3.body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>')
    ddb = render("dynamodb", "json", json_version="1.0")
    assert ddb.headers["Content-Type"] == "application/x-amz-json-1.0"
    assert ddb.headers["x-amzn-RequestId"] == "RID"
    assert "x-amzn-query-error" not in ddb.headers
    kms = render("kms", "json", json_version="1.1")
    assert kms.headers["Content-Type"] == "application/x-amz-json-1.1"
    sqs = render("sqs", "json", query_compatible=True)
    assert sqs.headers["x-amzn-query-error"] == "AccessDenied;Sender"
    lam = render("lambda", "rest-json")
    assert lam.headers["x-amzn-ErrorType"] == "AccessDeniedException"
    cbor = render("monitoring", "smithy-rpc-v2-cbor")
    assert cbor.headers["smithy-protocol"] == "rpc-v2-cbor"
    unavailable = render_error(
        Reason.UPSTREAM_UNAVAILABLE,
        "later",
        signing_name="sqs",
        protocol="json",
        request_id="R",
        query_compatible=True,
    )
    assert unavailable.headers["x-amzn-query-error"] == "ServiceUnavailable;Receiver"


def test_long_messages_in_cbor() -> None:
    for size in (23, 24, 255, 256, 65535, 65536):
        message = "m" * size
        rendered = render_error(
            Reason.ACCESS_DENIED,
            message,
            signing_name="monitoring",
            protocol="smithy-rpc-v2-cbor",
            request_id="R",
        )
        parsed = _parse("cloudwatch", "GetMetricData", "smithy-rpc-v2-cbor", rendered)
        assert parsed["Error"]["Message"] == message


def test_s3_error_details_are_elements_of_its_error_document() -> None:
    """S3's expired-URL answer carries Expires and ServerTime, which botocore surfaces."""
    details = {"X-Amz-Expires": "60", "Expires": "2026-01-01T00:00:00Z", "ServerTime": "<&>"}
    rendered = render_error(
        Reason.PRESIGN_EXPIRED,
        "Request has expired",
        signing_name="s3",
        protocol="rest-xml",
        request_id="R",
        details=details,
    )
    assert rendered.status == 403
    error = _parse("s3", "GetObject", "rest-xml", rendered)["Error"]
    assert error["Code"] == "AccessDenied"
    assert error["Message"] == "Request has expired"
    assert {name: error[name] for name in details} == details
    with pytest.raises(ValueError, match="not an XML element name"):
        render_error(
            Reason.PRESIGN_EXPIRED,
            "m",
            signing_name="s3",
            protocol="rest-xml",
            request_id="R",
            details={"a><b": "x"},
        )
