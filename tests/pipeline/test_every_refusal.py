"""Every refusal reason, in every protocol it can arise in: an error the caller's SDK parses
into the code it expects, an audit record naming the reason, and nothing at the upstream.

The table holds one way to provoke each reason; the protocols are those of botocore's
clients (query, ec2, json, rest-json, rest-xml). Reasons provoked only by a stalled or
flooding client, or by an S3 browser form, are each tested where that machinery lives; the
last test checks that no reason is left out of both.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.auth
import botocore.session
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.model import OperationModel
from botocore.parsers import create_parser
from pipeline import CI, PROD, Answer, Pipeline, run_pipeline

from iamgate.aws.operations import OperationIndex
from iamgate.identity.credentials import GatewayCredentials, mint_credentials
from iamgate.refusals import Reason

FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
JSON = {"Content-Type": "application/x-amz-json-1.0"}


@dataclass(frozen=True)
class Call:
    """A request as a botocore client makes it, for one protocol."""

    protocol: str
    service: str  # signing name and botocore service
    operation: str
    method: str
    target: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


CALLS = {
    "query": Call(
        "query",
        "sts",
        "GetCallerIdentity",
        "POST",
        "/",
        b"Action=GetCallerIdentity&Version=2011-06-15",
        FORM,
    ),
    "ec2": Call(
        "ec2",
        "ec2",
        "DescribeInstances",
        "POST",
        "/",
        b"Action=DescribeInstances&Version=2016-11-15",
        FORM,
    ),
    "json": Call(
        "json",
        "dynamodb",
        "ListTables",
        "POST",
        "/",
        b"{}",
        {**JSON, "X-Amz-Target": "DynamoDB_20120810.ListTables"},
    ),
    "rest-json": Call("rest-json", "lambda", "ListFunctions", "GET", "/2015-03-31/functions/"),
    "rest-xml": Call("rest-xml", "s3", "GetObject", "GET", "/ci-bucket/report.csv"),
    "smithy-rpc-v2-cbor": Call(
        "smithy-rpc-v2-cbor",
        "monitoring",
        "ListMetrics",
        "POST",
        "/service/GraniteServiceVersion20100801/operation/ListMetrics",
        b"\xa0",  # an empty CBOR map
        {
            "Content-Type": "application/cbor",
            "Accept": "application/cbor",
            "smithy-protocol": "rpc-v2-cbor",
        },
    ),
}
# botocore's service for a signing name, where the two differ.
_BOTOCORE_NAMES = {"monitoring": "cloudwatch"}
_MODELS = botocore.session.get_session()


def operation_model(call: Call) -> OperationModel:
    service = _BOTOCORE_NAMES.get(call.service, call.service)
    return _MODELS.get_service_model(service).operation_model(call.operation)


def sdk_error_code(call: Call, answer: Answer) -> str:
    """The error code the service's botocore client raises for this answer."""
    model = operation_model(call)
    parser = create_parser(model.metadata["protocol"])
    assert model.output_shape is not None
    parsed = parser.parse(
        {"status_code": answer.status, "headers": answer.headers, "body": answer.body},
        model.output_shape,
    )
    return str(parsed.get("Error", {}).get("Code", ""))


def issue(
    gw: Pipeline,
    principal: str = "ci-bot",
    account: str = CI,
    role: str = "CIRunner",
    *,
    ago: dt.timedelta = dt.timedelta(0),
) -> GatewayCredentials:
    return mint_credentials(
        gw.gateway.keyring,
        principal=principal,
        kind="user",
        account_id=account,
        aws_role=role,
        gateway_roles=(),
        now=dt.datetime.now(dt.UTC) - ago,
        ttl=dt.timedelta(hours=1),
    )


class _DeclaredPayload(botocore.auth.S3SigV4Auth):
    """S3's signer, declaring the payload hash it is given (as a streaming upload does)
    rather than the body's own."""

    def __init__(self, creds: Credentials, declared: str) -> None:
        super().__init__(creds, "s3", "us-east-1")
        self._declared = declared

    def payload(self, request: AWSRequest) -> str:
        return self._declared


def signed(
    gw: Pipeline,
    call: Call,
    creds: Credentials,
    *,
    target: str | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    s3_signer: bool | None = None,
    declared: str | None = None,
) -> tuple[str, list[tuple[str, str]], bytes]:
    target = target if target is not None else call.target
    body = body if body is not None else call.body
    request = AWSRequest(
        method=call.method,
        url=gw.url + target,
        data=body,
        headers={**call.headers, **(headers or {})},
    )
    use_s3 = call.service == "s3" if s3_signer is None else s3_signer
    if declared is not None:
        _DeclaredPayload(creds, declared).add_auth(request)
    elif use_s3:
        botocore.auth.S3SigV4Auth(creds, call.service, "us-east-1").add_auth(request)
    else:
        botocore.auth.SigV4Auth(creds, call.service, "us-east-1").add_auth(request)
    return target, list(request.headers.items()), body


def botocore_creds(creds: GatewayCredentials) -> Credentials:
    return Credentials(creds.access_key_id, creds.secret_access_key, creds.session_token)


def replace_header(
    headers: list[tuple[str, str]], name: str, change: Callable[[str], str]
) -> list[tuple[str, str]]:
    return [(k, change(v) if k.lower() == name.lower() else v) for k, v in headers]


@pytest.fixture
def signed_long_ago(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore signs as if it were an hour ago (a client whose clock is wrong)."""
    then = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(hours=1)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: then)


Provoke = Callable[[Pipeline, Call], tuple[str, list[tuple[str, str]], bytes]]


def _missing_auth(gw: Pipeline, call: Call) -> tuple[str, list[tuple[str, str]], bytes]:
    return call.target, list(call.headers.items()), call.body


def _malformed_auth(gw: Pipeline, call: Call) -> tuple[str, list[tuple[str, str]], bytes]:
    target, headers, body = signed(gw, call, botocore_creds(issue(gw)))
    return (
        target,
        replace_header(headers, "Authorization", lambda v: "AWS4-HMAC-SHA256 Credential=garbage"),
        body,
    )


def _malformed_scope(gw: Pipeline, call: Call) -> tuple[str, list[tuple[str, str]], bytes]:
    target, headers, body = signed(gw, call, botocore_creds(issue(gw)))
    return (
        target,
        replace_header(
            headers, "Authorization", lambda v: v.replace("/aws4_request", "/aws5_request")
        ),
        body,
    )


def _without_host(authorization: str) -> str:
    def drop(match: re.Match[str]) -> str:
        names = [n for n in match.group(1).split(";") if n != "host"]
        return "SignedHeaders=" + ";".join(names)

    return re.sub(r"SignedHeaders=([^,]+)", drop, authorization)


def _unsigned_host(gw: Pipeline, call: Call) -> tuple[str, list[tuple[str, str]], bytes]:
    target, headers, body = signed(gw, call, botocore_creds(issue(gw)))
    return target, replace_header(headers, "Authorization", _without_host), body


def _unknown_key(gw: Pipeline, call: Call) -> tuple[str, list[tuple[str, str]], bytes]:
    return signed(
        gw, call, Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    )


def _bad_token(gw: Pipeline, call: Call) -> tuple[str, list[tuple[str, str]], bytes]:
    creds = issue(gw)
    other = issue(gw)
    return signed(
        gw, call, Credentials(creds.access_key_id, creds.secret_access_key, other.session_token)
    )


def _bad_signature(gw: Pipeline, call: Call) -> tuple[str, list[tuple[str, str]], bytes]:
    target, headers, body = signed(gw, call, botocore_creds(issue(gw)))
    flip = {"0": "1"}
    return (
        target,
        replace_header(headers, "Authorization", lambda v: v[:-1] + flip.get(v[-1], "0")),
        body,
    )


def _expired_credential(gw: Pipeline, call: Call) -> tuple[str, list[tuple[str, str]], bytes]:
    return signed(gw, call, botocore_creds(issue(gw, ago=dt.timedelta(hours=2))))


def _revoked(gw: Pipeline, call: Call) -> tuple[str, list[tuple[str, str]], bytes]:
    return signed(gw, call, botocore_creds(issue(gw, principal="nobody-any-more")))


def _body_hash(gw: Pipeline, call: Call) -> tuple[str, list[tuple[str, str]], bytes]:
    other = hashlib.sha256(b"another body").hexdigest()
    if call.service == "s3":
        put = Call(**{**call.__dict__, "method": "PUT"})
        return signed(gw, put, botocore_creds(issue(gw)), body=b"the object", declared=other)
    return signed(gw, call, botocore_creds(issue(gw)), headers={"x-amz-content-sha256": other})


def _access_denied(gw: Pipeline, call: Call) -> tuple[str, list[tuple[str, str]], bytes]:
    # ci-bot's role reaches CIRunner in acme-ci only.
    return signed(gw, call, botocore_creds(issue(gw, account=PROD)))


def _unknown_account(gw: Pipeline, call: Call) -> tuple[str, list[tuple[str, str]], bytes]:
    return signed(gw, call, botocore_creds(issue(gw, account="999999999999")))


UNKNOWN: dict[str, tuple[str, bytes, dict[str, str]]] = {
    "query": ("/", b"Action=NoSuchOperation&Version=2011-06-15", {}),
    "ec2": ("/", b"Action=NoSuchOperation&Version=2016-11-15", {}),
    "json": ("/", b"{}", {"X-Amz-Target": "DynamoDB_20120810.NoSuchOperation"}),
    "rest-json": ("/2015-03-31/no-such-resource/x/y/z", b"", {}),
    "smithy-rpc-v2-cbor": (
        "/service/GraniteServiceVersion20100801/operation/NoSuchOperation",
        b"\xa0",
        {},
    ),
}


def _unknown_operation(gw: Pipeline, call: Call) -> tuple[str, list[tuple[str, str]], bytes]:
    target, body, headers = UNKNOWN[call.protocol]
    return signed(gw, call, botocore_creds(issue(gw)), target=target, body=body, headers=headers)


AMBIGUOUS: dict[str, tuple[str, bytes | None, dict[str, str]]] = {
    "query": ("/?Action=DeleteRole&Version=2011-06-15", None, {}),
    "ec2": ("/?Action=TerminateInstances&Version=2016-11-15", None, {}),
    "json": ("/?Action=DeleteTable", None, {}),
    "rest-json": ("/2015-03-31/functions/?Action=DeleteFunction", None, {}),
    "rest-xml": ("/ci-bucket/report.csv?tagging&versioning", None, {}),
    "smithy-rpc-v2-cbor": (
        "/service/GraniteServiceVersion20100801/operation/ListMetrics?Action=DeleteAlarms",
        None,
        {},
    ),
}


def _ambiguous(gw: Pipeline, call: Call) -> tuple[str, list[tuple[str, str]], bytes]:
    target, body, headers = AMBIGUOUS[call.protocol]
    return signed(gw, call, botocore_creds(issue(gw)), target=target, body=body, headers=headers)


def _missing_content_sha(gw: Pipeline, call: Call) -> tuple[str, list[tuple[str, str]], bytes]:
    return signed(gw, call, botocore_creds(issue(gw)), s3_signer=False)


def _incomplete_body(gw: Pipeline, call: Call) -> tuple[str, list[tuple[str, str]], bytes]:
    put = Call(**{**call.__dict__, "method": "PUT"})
    body = b"5;chunk-signature=" + b"0" * 64 + b"\r\nhel"  # cut short mid-chunk
    return signed(
        gw,
        put,
        botocore_creds(issue(gw)),
        body=body,
        headers={"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": "5"},
        declared="STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    )


@dataclass(frozen=True)
class Case:
    reason: Reason
    provoke: Provoke
    protocols: tuple[str, ...] = tuple(CALLS)
    # The code each protocol's SDK sees, where AWS documents one (else: any code, parsed).
    codes: dict[str, str] = field(default_factory=dict)
    needs: str = ""  # a fixture the case runs under


CASES = [
    Case(
        Reason.MISSING_AUTH,
        _missing_auth,
        codes={"query": "MissingAuthenticationToken", "rest-xml": "AccessDenied"},
    ),
    Case(Reason.MALFORMED_AUTH, _malformed_auth, codes={"query": "IncompleteSignature"}),
    Case(Reason.MALFORMED_SCOPE, _malformed_scope),
    Case(Reason.UNSIGNED_HEADER, _unsigned_host),
    Case(
        Reason.UNKNOWN_KEY,
        _unknown_key,
        codes={
            "query": "InvalidClientTokenId",
            "ec2": "AuthFailure",
            "json": "UnrecognizedClientException",
            "rest-xml": "InvalidAccessKeyId",
        },
    ),
    Case(Reason.BAD_TOKEN, _bad_token),
    Case(
        Reason.BAD_SIGNATURE,
        _bad_signature,
        codes={
            "query": "SignatureDoesNotMatch",
            "ec2": "AuthFailure",
            "json": "InvalidSignatureException",
            "rest-xml": "SignatureDoesNotMatch",
        },
    ),
    Case(
        Reason.EXPIRED_CREDENTIAL,
        _expired_credential,
        codes={"query": "ExpiredToken", "ec2": "RequestExpired", "rest-xml": "ExpiredToken"},
    ),
    Case(Reason.REVOKED_CREDENTIAL, _revoked),
    Case(
        Reason.SKEWED_CLOCK,
        lambda gw, call: signed(gw, call, botocore_creds(issue(gw))),
        codes={"query": "SignatureDoesNotMatch", "rest-xml": "RequestTimeTooSkewed"},
        needs="signed_long_ago",
    ),
    Case(Reason.BODY_HASH_MISMATCH, _body_hash, codes={"rest-xml": "XAmzContentSHA256Mismatch"}),
    Case(
        Reason.MISSING_CONTENT_SHA256,
        _missing_content_sha,
        protocols=("rest-xml",),
        codes={"rest-xml": "InvalidRequest"},
    ),
    Case(Reason.INCOMPLETE_BODY, _incomplete_body, protocols=("rest-xml",)),
    Case(
        Reason.ACCESS_DENIED,
        _access_denied,
        codes={
            "query": "AccessDenied",
            "ec2": "UnauthorizedOperation",
            "json": "AccessDeniedException",
            "rest-xml": "AccessDenied",
        },
    ),
    Case(
        Reason.UNKNOWN_OPERATION,
        _unknown_operation,
        protocols=("query", "ec2", "json", "rest-json", "smithy-rpc-v2-cbor"),
    ),
    Case(Reason.AMBIGUOUS_REQUEST, _ambiguous),
    Case(Reason.UNKNOWN_ACCOUNT, _unknown_account),
]


def _params() -> Iterator[Any]:
    for case in CASES:
        for protocol in case.protocols:
            yield pytest.param(case, protocol, id=f"{case.reason.value}-{protocol}")


def assert_refused_as(
    gw: Pipeline, case_reason: Reason, call: Call, answer: Answer, code: str | None
) -> None:
    assert answer.status >= 400, answer
    parsed = sdk_error_code(call, answer)
    assert parsed, f"the SDK finds no error code in {answer.body[:300]!r}"
    if code is not None:
        assert parsed == code, (parsed, answer.body[:300])
    assert gw.received == [], "nothing may reach the upstream"
    (record,) = gw.calls()
    assert str(record["reason"]).startswith(case_reason.value + ":"), record["reason"]
    # Refused before the decision: denied (or error); after it (a streamed body that fails
    # its check on the way), the call's record says allowed and its outcome the refusal.
    assert record["decision"] in ("denied", "error") or record["status"] == answer.status
    assert record["error_code"] == parsed or answer.status >= 500 or call.protocol == "rest-json"


@pytest.mark.parametrize(("case", "protocol"), list(_params()))
def test_every_reason_in_every_protocol(
    case: Case, protocol: str, gw: Pipeline, request: pytest.FixtureRequest
) -> None:
    if case.needs:
        request.getfixturevalue(case.needs)
    call = CALLS[protocol]
    target, headers, body = case.provoke(gw, call)
    method = (
        "PUT"
        if case.reason in (Reason.INCOMPLETE_BODY,)
        or (case.reason is Reason.BODY_HASH_MISMATCH and protocol == "rest-xml")
        else call.method
    )
    answer = gw.send(method, target, headers, body)
    assert_refused_as(gw, case.reason, call, answer, case.codes.get(protocol))


# -- reasons that need a store or an STS that fails, or a fault of the gateway's own --------


@pytest.fixture(scope="module")
def failing(index: OperationIndex, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    yield from run_pipeline(tmp_path_factory.mktemp("failing"), index)


@pytest.mark.parametrize("protocol", list(CALLS))
def test_no_durable_audit_record_no_call(failing: Pipeline, protocol: str) -> None:
    failing.reset()
    failing.audit.unavailable = True
    try:
        call = CALLS[protocol]
        answer = failing.send(call.method, *signed(failing, call, botocore_creds(issue(failing))))
    finally:
        failing.audit.unavailable = False
    assert answer.status == 503 and answer.headers.get("Retry-After") == "1"
    assert sdk_error_code(call, answer)
    assert failing.received == []


@pytest.mark.parametrize("protocol", list(CALLS))
def test_an_upstream_sts_that_refuses_is_a_retryable_error(
    failing: Pipeline, protocol: str
) -> None:
    failing.reset()
    assert failing.sts is not None
    failing.sts.failing = True
    try:
        call = CALLS[protocol]
        # erin's upstream credentials are asked for here first (none are cached).
        creds = botocore_creds(issue(failing, principal="erin"))
        answer = failing.send(call.method, *signed(failing, call, creds))
    finally:
        failing.sts.failing = False
    assert answer.status >= 500, answer
    assert sdk_error_code(call, answer)
    assert failing.received == []
    (record,) = failing.calls()
    # Authorized and recorded before the upstream credentials were asked for: the call's
    # record says allowed, its outcome the failure.
    assert str(record["reason"]).startswith("upstream-unavailable:")
    assert record["decision"] == "allowed" and record["status"] == answer.status


@pytest.mark.parametrize("protocol", list(CALLS))
def test_a_fault_of_the_gateway_is_an_aws_shaped_500_and_audited(
    failing: Pipeline, protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing.reset()

    def broken(principal: str) -> tuple[str, ...]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(failing.gateway.directory, "roles_of", broken)
    call = CALLS[protocol]
    answer = failing.send(call.method, *signed(failing, call, botocore_creds(issue(failing))))
    assert answer.status == 500
    assert sdk_error_code(call, answer) in (
        "InternalFailure",
        "InternalError",
        "InternalServerError",
    )
    assert failing.received == []
    (record,) = failing.calls()
    assert str(record["reason"]).startswith("internal:") and record["decision"] == "error"


def test_web_identity_before_it_is_configured(gw: Pipeline) -> None:
    call = Call(
        "query",
        "sts",
        "AssumeRoleWithWebIdentity",
        "POST",
        "/",
        b"Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A"
        b"222222222222%3Arole%2FCIRunner&RoleSessionName=job&WebIdentityToken=eyJ",
        FORM,
    )
    answer = gw.send(call.method, call.target, list(call.headers.items()), call.body)
    assert_refused_as(gw, Reason.WEB_IDENTITY_UNCONFIGURED, call, answer, "InvalidIdentityToken")


# Reasons provoked by machinery tested in its own module: a stalled or flooding client
# (test_limits.py), a presigned link past its time (test_presigned_urls' pipeline cases),
# checksum trailers (test_binding.py), S3 browser forms (test_post_uploads.py) and web
# identity exchanges with a real OIDC issuer (test_web_identity_exchange.py).
ELSEWHERE = {
    Reason.THROTTLED: "test_limits.py",
    Reason.REQUEST_TIMEOUT: "test_limits.py",
    Reason.PRESIGN_EXPIRED: "../e2e/test_presigned_urls.py",
    Reason.BAD_DIGEST: "../unit/test_sigv4_chunked.py",
    Reason.MALFORMED_POST: "test_post_uploads.py",
    Reason.INVALID_ARGUMENT: "test_post_uploads.py",
    Reason.INVALID_POLICY: "test_post_uploads.py",
    Reason.ENTITY_TOO_LARGE: "test_post_uploads.py",
    Reason.ENTITY_TOO_SMALL: "test_post_uploads.py",
    Reason.WEB_IDENTITY_INVALID_CALL: "../e2e/test_web_identity_exchange.py",
    Reason.WEB_IDENTITY_INVALID_TOKEN: "../e2e/test_web_identity_exchange.py",
    Reason.WEB_IDENTITY_EXPIRED_TOKEN: "../e2e/test_web_identity_exchange.py",
    Reason.WEB_IDENTITY_DENIED: "../e2e/test_web_identity_exchange.py",
    Reason.WEB_IDENTITY_ISSUER_UNREACHABLE: "../e2e/test_web_identity_exchange.py",
}
HERE = {case.reason for case in CASES} | {
    Reason.AUDIT_UNAVAILABLE,
    Reason.UPSTREAM_UNAVAILABLE,
    Reason.INTERNAL,
    Reason.WEB_IDENTITY_UNCONFIGURED,
}


def test_no_reason_is_left_untested() -> None:
    assert set(Reason) == HERE | set(ELSEWHERE), set(Reason) - HERE - set(ELSEWHERE)
    here = Path(__file__).parent
    for reason, module in ELSEWHERE.items():
        text = (here / module).read_text()
        spelled = {reason.name, reason.value, *_codes_of(reason)}
        assert any(s in text for s in spelled), (reason, module)


def _codes_of(reason: Reason) -> set[str]:
    from iamgate.aws import errors

    table = errors.__dict__
    codes: set[str] = set()
    for value in table.values():
        if isinstance(value, dict) and reason in value:
            entry = value[reason]
            if isinstance(entry, dict):
                codes |= {code for _, code in entry.values()}
            elif isinstance(entry, tuple):
                codes.add(entry[1])
    return codes
