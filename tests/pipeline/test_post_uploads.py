"""S3 POST-policy uploads in the pipeline: what crosses, and every refusal, in milliseconds.

Forms are signed as boto3's `generate_presigned_post` signs them (botocore's
`S3SigV4PostAuth`) with gateway credentials, then sent as raw HTTP. A refused form must get
S3's error, an audit record, and nothing at the upstream; an allowed one must reach the
upstream as a form of the gateway's own, and nothing else the client sent.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
import urllib3
from botocore.auth import HmacV1PostAuth, S3SigV4PostAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from pipeline import CI, PROD, Answer, Pipeline

from iamgate.aws.post_form import parse_post_form
from iamgate.identity.credentials import GatewayCredentials

BUCKET = "uploads-bucket"
CONDITIONS: list[Any] = [
    {"bucket": BUCKET},
    ["starts-with", "$key", "in/"],
    {"Content-Type": "text/plain"},
    ["content-length-range", 1, 100],
]


def _fields(
    creds: GatewayCredentials,
    conditions: list[Any] | None = None,
    *,
    service: str = "s3",
    expiration: str = "2099-01-01T00:00:00Z",
    sigv2: bool = False,
) -> dict[str, str]:
    """Signed as boto3 signs them: SigV4, or SigV2 (its default where SigV2 is)."""
    request = AWSRequest(method="POST", url="http://gateway/")
    request.context["s3-presign-post-fields"] = {
        "key": "in/${filename}",
        "Content-Type": "text/plain",
    }
    request.context["s3-presign-post-policy"] = {
        "expiration": expiration,
        "conditions": list(CONDITIONS if conditions is None else conditions),
    }
    credentials = Credentials(creds.access_key_id, creds.secret_access_key, creds.session_token)
    if sigv2:
        HmacV1PostAuth(credentials).add_auth(request)
    else:
        S3SigV4PostAuth(credentials, service, "us-east-1").add_auth(request)
    fields: dict[str, str] = request.context["s3-presign-post-fields"]
    return fields


def _post(
    gw: Pipeline,
    fields: dict[str, str] | list[tuple[str, Any]],
    *,
    file: bytes = b"hello",
    target: str = f"/{BUCKET}",
    headers: list[tuple[str, str]] | None = None,
    cut: int = 0,
) -> Answer:
    parts = list(fields.items()) if isinstance(fields, dict) else list(fields)
    body, content_type = urllib3.encode_multipart_formdata(
        [*parts, ("file", ("note.txt", file, "text/plain"))]
    )
    if cut:
        body = body[:-cut]
    extra = [
        (name, value.replace("{host}", gw.url.removeprefix("http://")))
        for name, value in headers or []
    ]
    if any(name == "Content-Length" for name, _ in extra):
        body = b""  # the head alone: refused before any body is read
    return gw.send("POST", target, [("Content-Type", content_type), *extra], body)


def test_an_allowed_upload_reaches_the_upstream_as_the_gateways_own_form(gw: Pipeline) -> None:
    creds = gw.issue("ci-bot", CI, "CIRunner")
    answer = _post(
        gw,
        _fields(creds),
        headers=[("x-moto-account-id", PROD), ("x-amz-acl", "public-read")],
    )
    assert answer.status == 200, answer.body
    (received,) = gw.received
    assert (received.method, received.path, received.query) == ("POST", f"/{BUCKET}", "")
    headers = {name.lower(): value for name, value in received.headers}
    assert headers["x-moto-account-id"] == CI  # the gateway's decision, not the client's
    assert "x-amz-acl" not in headers and "authorization" not in headers
    form = parse_post_form(received.body, headers["content-type"])
    assert [name for name, _ in form.fields] == [
        "key",
        "Content-Type",
        "x-amz-algorithm",
        "x-amz-credential",
        "x-amz-date",
        "x-amz-security-token",
        "policy",
        "x-amz-signature",
    ]
    assert form.get("key") == "in/note.txt" and form.file == b"hello"
    assert (form.get("x-amz-credential") or "").startswith("ASIAUPSTREAMEXAMPLE0/")
    assert form.get("x-amz-security-token") == "upstream-token-for-ci-bot"
    policy = json.loads(base64.b64decode(form.get("policy") or ""))
    assert {"bucket": BUCKET} in policy["conditions"]
    assert {"key": "in/note.txt"} in policy["conditions"]
    assert ["content-length-range", 5, 5] in policy["conditions"]
    (call,) = gw.calls()
    assert call["action"] == "s3:PutObject" and call["decision"] == "allowed"
    assert call["resource"] == f"arn:aws:s3:::{BUCKET}/in/note.txt"
    assert call["params"]["ContentType"] == "text/plain"


def test_a_sigv2_form_is_uploaded_as_the_sigv4_form_is(gw: Pipeline) -> None:
    """boto3's default `generate_presigned_post` in us-east-1: the same checks, the same
    PutObject, and upstream the gateway's own SigV4 form; nothing of SigV2 crosses."""
    fields = _fields(gw.issue("ci-bot", CI, "CIRunner"), sigv2=True)
    assert "AWSAccessKeyId" in fields and "x-amz-signature" not in fields
    answer = _post(gw, fields, headers=[("x-moto-account-id", PROD)])
    assert answer.status == 200, answer.body
    (received,) = gw.received
    headers = {name.lower(): value for name, value in received.headers}
    assert headers["x-moto-account-id"] == CI
    form = parse_post_form(received.body, headers["content-type"])
    names = {name.lower() for name, _ in form.fields}
    assert not names & {"awsaccesskeyid", "signature"}
    assert form.get("x-amz-algorithm") == "AWS4-HMAC-SHA256"
    assert (form.get("x-amz-credential") or "").startswith("ASIAUPSTREAMEXAMPLE0/")
    assert form.get("key") == "in/note.txt" and form.file == b"hello"
    (call,) = gw.calls()
    assert call["action"] == "s3:PutObject" and call["decision"] == "allowed"
    assert call["resource"] == f"arn:aws:s3:::{BUCKET}/in/note.txt"


def _with(change: Callable[[dict[str, str]], object]) -> Callable[[Pipeline], Answer]:
    def send(gw: Pipeline) -> Answer:
        fields = _fields(gw.issue("ci-bot", CI, "CIRunner"))
        change(fields)
        return _post(gw, fields)

    return send


def _signed_by(
    *, conditions: list[Any] | None = None, **options: Any
) -> Callable[[Pipeline], Answer]:
    def send(gw: Pipeline) -> Answer:
        return _post(gw, _fields(gw.issue("ci-bot", CI, "CIRunner"), conditions, **options))

    return send


def _raw(**options: Any) -> Callable[[Pipeline], Answer]:
    def send(gw: Pipeline) -> Answer:
        return _post(gw, _fields(gw.issue("ci-bot", CI, "CIRunner")), **options)

    return send


def _v2(change: Callable[[dict[str, str]], object]) -> Callable[[Pipeline], Answer]:
    def send(gw: Pipeline) -> Answer:
        fields = _fields(gw.issue("ci-bot", CI, "CIRunner"), sigv2=True)
        change(fields)
        return _post(gw, fields)

    return send


def _v2_other_secret(fields: dict[str, str]) -> None:
    fields["signature"] = base64.b64encode(b"\0" * 20).decode()


def _other_users_token(gw: Pipeline) -> Answer:
    fields = _fields(gw.issue("ci-bot", CI, "CIRunner"))
    fields["x-amz-security-token"] = gw.issue("erin", CI, "CIRunner").session_token
    return _post(gw, fields)


def _unknown_key(fields: dict[str, str]) -> None:
    fields["x-amz-credential"] = (
        "AKIAIOSFODNN7EXAMPLE/" + fields["x-amz-credential"].split("/", 1)[1]
    )


CASES: dict[str, tuple[Callable[[Pipeline], Answer], int, str]] = {
    "no closing boundary": (_raw(cut=30), 400, "MalformedPOSTRequest"),
    "posted to an object path": (_raw(target=f"/{BUCKET}/in/x"), 400, "InvalidArgument"),
    "posted to / with no bucket host": (_raw(target="/"), 400, "InvalidArgument"),
    "posted with a query": (_raw(target=f"/{BUCKET}?tagging"), 400, "InvalidArgument"),
    "posted to a path on a bucket's host": (
        _raw(headers=[("Host", f"{BUCKET}.{{host}}")], target="/other"),
        400,
        "InvalidArgument",
    ),
    "SigV2 form, tampered signature": (_v2(_v2_other_secret), 403, "SignatureDoesNotMatch"),
    "SigV2 form, another policy": (
        _v2(lambda f: f.update(policy=base64.b64encode(b'{"conditions": []}').decode())),
        403,
        "SignatureDoesNotMatch",
    ),
    "SigV2 form, mixed with SigV4": (
        _v2(lambda f: f.update({"x-amz-signature": "00"})),
        400,
        "InvalidArgument",
    ),
    "SigV2 form, a key the gateway did not issue": (
        _v2(lambda f: f.update(AWSAccessKeyId="AKIAIOSFODNN7EXAMPLE")),
        403,
        "InvalidAccessKeyId",
    ),
    "SigV2 form, key outside the prefix": (
        _v2(lambda f: f.update(key="out/x")),
        403,
        "AccessDenied",
    ),
    "no policy": (_with(lambda f: f.pop("policy")), 403, "AccessDenied"),
    "no signature": (_with(lambda f: f.pop("x-amz-signature")), 400, "InvalidArgument"),
    "signed for another service": (_signed_by(service="sqs"), 400, "AuthorizationHeaderMalformed"),
    "a key the gateway did not issue": (_with(_unknown_key), 403, "InvalidAccessKeyId"),
    "another credential's token": (_other_users_token, 400, "InvalidToken"),
    "key outside the prefix": (
        _with(lambda f: f.update(key="out/x")),
        403,
        "AccessDenied",
    ),
    "expired policy": (_signed_by(expiration="2020-01-01T00:00:00Z"), 403, "AccessDenied"),
    "file too large": (_raw(file=b"x" * 101), 400, "EntityTooLarge"),
    "form above the gateway's buffered-body limit": (
        _raw(headers=[("Content-Length", str(64 * 2**20 + 1))]),
        400,
        "EntityTooLarge",
    ),
    "empty file": (_raw(file=b""), 400, "EntityTooSmall"),
    "policy not JSON": (
        _signed_by(conditions=[["between", "$key", "a"]]),
        400,
        "InvalidPolicyDocument",
    ),
    "a field the policy does not name": (
        _with(lambda f: f.update({"x-amz-meta-extra": "1"})),
        403,
        "AccessDenied",
    ),
    "the policy's bucket is another": (
        _signed_by(conditions=[{"bucket": "elsewhere"}, *CONDITIONS[1:]]),
        403,
        "AccessDenied",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_refused_forms_are_s3_errors_audited_and_not_forwarded(gw: Pipeline, case: str) -> None:
    send, status, code = CASES[case]
    answer = send(gw)
    assert answer.status == status, answer.body
    assert answer.headers["Content-Type"] == "application/xml"
    assert f"<Code>{code}</Code>".encode() in answer.body
    assert gw.received == []
    (call,) = gw.calls()
    assert call["decision"] == "denied" and call["error_code"] == code
    assert call["status"] == status


def test_a_role_that_may_not_write_is_refused_by_name(gw: Pipeline) -> None:
    creds = gw.issue("dana", PROD, "ReadOnly")
    answer = _post(gw, _fields(creds))
    assert answer.status == 403 and b"<Code>AccessDenied</Code>" in answer.body
    assert b"s3:PutObject" in answer.body
    assert gw.received == []
    (call,) = gw.calls()
    assert call["resource"] == f"arn:aws:s3:::{BUCKET}/in/note.txt"


def test_a_field_s3_reads_but_the_gateway_does_not_forward_is_refused(gw: Pipeline) -> None:
    creds = gw.issue("ci-bot", CI, "CIRunner")
    fields = _fields(creds, [*CONDITIONS, {"tagging": "<Tagging/>"}])
    fields = {"tagging": "<Tagging/>", **fields}
    answer = _post(gw, fields)
    assert answer.status == 400 and b"<Code>InvalidArgument</Code>" in answer.body
    assert b"tagging" in answer.body
    assert gw.received == []


def test_a_form_sent_after_100_continue_is_uploaded(gw: Pipeline) -> None:
    creds = gw.issue("ci-bot", CI, "CIRunner")
    answer = _post(gw, _fields(creds), headers=[("Expect", "100-continue")])
    assert answer.status == 200, answer.body
    (received,) = gw.received
    assert parse_post_form(received.body, dict(received.headers)["Content-Type"]).file == b"hello"
