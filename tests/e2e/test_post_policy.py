"""S3 POST-policy uploads through a real gateway, against a real moto server.

boto3's `generate_presigned_post` signs a policy with gateway credentials against the
gateway's endpoint; the form is then sent by `requests` and by a page in headless Chromium,
as a browser form would be. What lands in moto is read back from moto directly; what the
gateway refuses is an S3 error document, an audit record, and no request at moto.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from botocore.config import Config as BotoConfig
from harness import GatewayProcess, MotoRecorder, audited_calls
from playwright.sync_api import Browser, FilePayload

from iamgate.aws.post_form import parse_post_form
from iamgate.identity.credentials import GatewayCredentials
from iamgate.sandbox import Sandbox

pytestmark = pytest.mark.e2e

PROD = "111111111111"
CI = "222222222222"
BUCKET = "ci-form-uploads"
PROD_BUCKET = "prod-form-uploads"
# boto3 signs POST policies with SigV2 in us-east-1 unless told otherwise.
SIGV4 = BotoConfig(signature_version="s3v4")


@pytest.fixture(scope="module")
def buckets(sandbox: Sandbox) -> Iterator[Any]:
    """The CI account's upload bucket (and a prod one), made in moto directly."""
    ci_s3 = sandbox.client(CI, "s3")
    ci_s3.create_bucket(Bucket=BUCKET)
    sandbox.client(PROD, "s3").create_bucket(Bucket=PROD_BUCKET)
    yield ci_s3


@pytest.fixture
def recorder(sandbox: Sandbox) -> Iterator[MotoRecorder]:
    rec = MotoRecorder(sandbox.endpoint_url)
    rec.start()
    yield rec
    rec.stop()


def _presigned_post(
    gateway: GatewayProcess,
    creds: GatewayCredentials,
    *,
    bucket: str = BUCKET,
    key: str = "uploads/${filename}",
    expires_in: int = 300,
    max_size: int = 1024,
    sigv2: bool = False,
) -> dict[str, Any]:
    s3 = gateway.client("s3", creds, None if sigv2 else SIGV4)  # None: boto3's default
    post: dict[str, Any] = s3.generate_presigned_post(
        Bucket=bucket,
        Key=key,
        Fields={"Content-Type": "text/plain", "x-amz-meta-origin": "form"},
        Conditions=[
            ["starts-with", "$key", "uploads/"],
            ["content-length-range", 1, max_size],
            {"Content-Type": "text/plain"},
            {"x-amz-meta-origin": "form"},
        ],
        ExpiresIn=expires_in,
    )
    return post


def _send(
    post: dict[str, Any], body: bytes = b"quarterly numbers\n", name: str = "report.txt"
) -> requests.Response:
    return requests.post(post["url"], data=post["fields"], files={"file": (name, body)}, timeout=30)


def _error(response: requests.Response) -> tuple[str, str]:
    """(Code, Message) of an S3 error document."""
    assert response.headers["Content-Type"] == "application/xml"
    code = re.search(r"<Code>([^<]*)</Code>", response.text)
    message = re.search(r"<Message>([^<]*)</Message>", response.text)
    assert code and message, response.text
    return code.group(1), html.unescape(message.group(1))


def _audited(gateway: GatewayProcess, creds: GatewayCredentials) -> dict[str, Any]:
    events = audited_calls(gateway.state_url, access_key_id=creds.access_key_id)
    assert len(events) == 1, events
    fields: dict[str, Any] = events[0]["fields"]
    return fields


def test_a_presigned_post_sent_by_requests_lands_in_the_bucket(
    gateway: GatewayProcess, buckets: Any, recorder: MotoRecorder
) -> None:
    creds = gateway.issue("ci-bot", CI, "CIRunner")
    post = _presigned_post(gateway, creds)
    assert post["url"] == f"{gateway.url}/{BUCKET}"
    response = _send(post)
    assert response.status_code == 204, response.text
    stored = buckets.get_object(Bucket=BUCKET, Key="uploads/report.txt")
    assert stored["Body"].read() == b"quarterly numbers\n"
    assert stored["ContentType"] == "text/plain"
    assert stored["Metadata"] == {"origin": "form"}
    record = _audited(gateway, creds)
    assert record["action"] == "s3:PutObject" and record["decision"] == "allowed"
    assert record["resource"] == f"arn:aws:s3:::{BUCKET}/uploads/report.txt"
    assert record["params"]["Bucket"] == BUCKET
    assert record["params"]["Key"] == "uploads/report.txt"
    assert record["gateway_role"] == "ci-runner" and record["status"] == 204
    # What moto was sent: the resolved key, and a policy of the gateway's that pins it and
    # the size, signed with the assumed role's key, not the caller's.
    (sent,) = [r for r in recorder.stop() if r["method"] == "POST" and BUCKET in r["url"]]
    body = base64.b64decode(sent["body"]) if sent["body_encoded"] else sent["body"].encode()
    form = parse_post_form(body, sent["headers"]["Content-Type"])
    assert form.get("key") == "uploads/report.txt"
    assert (form.get("x-amz-credential") or "").split("/")[0] != creds.access_key_id
    assert form.get("x-amz-security-token") != creds.session_token
    conditions = json.loads(base64.b64decode(form.get("policy") or ""))["conditions"]
    assert {"key": "uploads/report.txt"} in conditions
    assert ["content-length-range", 18, 18] in conditions


def test_boto3s_default_sigv2_presigned_post_lands_as_the_sigv4_one_does(
    gateway: GatewayProcess, buckets: Any, recorder: MotoRecorder
) -> None:
    """boto3 without `signature_version='s3v4'` signs the form with SigV2 in us-east-1."""
    creds = gateway.issue("ci-bot", CI, "CIRunner")
    post = _presigned_post(gateway, creds, sigv2=True)
    assert {"AWSAccessKeyId", "signature", "x-amz-security-token"} <= set(post["fields"])
    assert "x-amz-signature" not in post["fields"]
    response = _send(post, b"sigv2 numbers\n", "v2.txt")
    assert response.status_code == 204, response.text
    stored = buckets.get_object(Bucket=BUCKET, Key="uploads/v2.txt")
    assert stored["Body"].read() == b"sigv2 numbers\n"
    assert stored["Metadata"] == {"origin": "form"}
    record = _audited(gateway, creds)
    assert record["action"] == "s3:PutObject" and record["decision"] == "allowed"
    assert record["resource"] == f"arn:aws:s3:::{BUCKET}/uploads/v2.txt"
    (sent,) = [r for r in recorder.stop() if r["method"] == "POST" and BUCKET in r["url"]]
    body = base64.b64decode(sent["body"]) if sent["body_encoded"] else sent["body"].encode()
    form = parse_post_form(body, sent["headers"]["Content-Type"])
    assert form.get("AWSAccessKeyId") is None and form.get("signature") is None
    assert form.get("x-amz-algorithm") == "AWS4-HMAC-SHA256"


def test_success_action_status_201_is_the_answer(gateway: GatewayProcess, buckets: Any) -> None:
    creds = gateway.issue("ci-bot", CI, "CIRunner")
    s3 = gateway.client("s3", creds, SIGV4)
    post = s3.generate_presigned_post(
        Bucket=BUCKET,
        Key="uploads/created.txt",
        Fields={"success_action_status": "201"},
        Conditions=[{"success_action_status": "201"}],
    )
    response = _send(post, b"created")
    assert response.status_code == 201, response.text  # (moto's 201 has no XML body)
    assert buckets.get_object(Bucket=BUCKET, Key="uploads/created.txt")["Body"].read() == (
        b"created"
    )


def test_a_browser_form_uploads_through_the_gateway(
    gateway: GatewayProcess, buckets: Any, browser: Browser
) -> None:
    creds = gateway.issue("ci-bot", CI, "CIRunner")
    s3 = gateway.client("s3", creds, SIGV4)
    post = s3.generate_presigned_post(
        Bucket=BUCKET,
        Key="uploads/browser/${filename}",
        Fields={"success_action_status": "201"},
        Conditions=[
            ["starts-with", "$key", "uploads/browser/"],
            {"success_action_status": "201"},
            ["content-length-range", 1, 4096],
        ],
    )
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in post["fields"].items()
    )
    page = browser.new_page()
    try:
        page.set_content(
            f'<form action="{post["url"]}" method="post" enctype="multipart/form-data">'
            f'{hidden}<input type="file" name="file" id="file">'
            '<button type="submit">Upload</button></form>'
        )
        photo = FilePayload(name="photo.txt", mimeType="text/plain", buffer=b"pixels")
        page.set_input_files("#file", files=[photo])
        with page.expect_response(post["url"]) as answer:
            page.click("button")
        assert answer.value.status == 201
    finally:
        page.close()
    stored = buckets.get_object(Bucket=BUCKET, Key="uploads/browser/photo.txt")
    assert stored["Body"].read() == b"pixels"
    record = _audited(gateway, creds)
    assert record["resource"] == f"arn:aws:s3:::{BUCKET}/uploads/browser/photo.txt"
    assert (
        "Chrome"
        in audited_calls(gateway.state_url, access_key_id=creds.access_key_id)[0]["user_agent"]
    )


def _tamper_policy(post: dict[str, Any]) -> None:
    policy = json.loads(base64.b64decode(post["fields"]["policy"]))
    policy["conditions"][0] = ["starts-with", "$key", ""]  # any key at all
    post["fields"]["policy"] = base64.b64encode(json.dumps(policy).encode()).decode()
    post["fields"]["key"] = "anywhere/report.txt"


def _tamper_signature(post: dict[str, Any]) -> None:
    signature = post["fields"]["x-amz-signature"]
    post["fields"]["x-amz-signature"] = ("0" if signature[0] != "0" else "1") + signature[1:]


def _tamper_sigv2_signature(post: dict[str, Any]) -> None:
    raw = bytearray(base64.b64decode(post["fields"]["signature"]))
    raw[0] ^= 1
    post["fields"]["signature"] = base64.b64encode(bytes(raw)).decode()


def _outside_prefix(post: dict[str, Any]) -> None:
    post["fields"]["key"] = "secrets/report.txt"


def _extra_field(post: dict[str, Any]) -> None:
    post["fields"]["x-amz-meta-owner"] = "mallory"


Refusal = tuple[Callable[[dict[str, Any]], None] | None, dict[str, Any], int, str, str]
REFUSALS: dict[str, Refusal] = {
    "key outside the prefix": (
        _outside_prefix,
        {},
        403,
        "AccessDenied",
        'Invalid according to Policy: Policy Condition failed: ["starts-with", "$key", "uploads/"]',
    ),
    "extra field": (
        _extra_field,
        {},
        403,
        "AccessDenied",
        "Invalid according to Policy: Extra input fields: x-amz-meta-owner",
    ),
    "file too large": (
        None,
        {"max_size": 10},
        400,
        "EntityTooLarge",
        "Your proposed upload exceeds the maximum allowed size",
    ),
    "expired policy": (
        None,
        {"expires_in": -60},
        403,
        "AccessDenied",
        "Invalid according to Policy: Policy expired.",
    ),
    "tampered policy": (_tamper_policy, {}, 403, "SignatureDoesNotMatch", "signature"),
    "tampered signature": (_tamper_signature, {}, 403, "SignatureDoesNotMatch", "signature"),
    "SigV2, tampered signature": (
        _tamper_sigv2_signature,
        {"sigv2": True},
        403,
        "SignatureDoesNotMatch",
        "signature",
    ),
    "SigV2, tampered policy": (
        _tamper_policy,
        {"sigv2": True},
        403,
        "SignatureDoesNotMatch",
        "signature",
    ),
    "SigV2, key outside the prefix": (
        _outside_prefix,
        {"sigv2": True},
        403,
        "AccessDenied",
        'Invalid according to Policy: Policy Condition failed: ["starts-with", "$key", "uploads/"]',
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refused_uploads_are_s3_errors_audited_and_never_reach_moto(
    gateway: GatewayProcess, buckets: Any, recorder: MotoRecorder, case: str
) -> None:
    change, options, status, code, message = REFUSALS[case]
    creds = gateway.issue("ci-bot", CI, "CIRunner")
    post = _presigned_post(gateway, creds, **options)
    if change is not None:
        change(post)
    response = _send(post)
    assert response.status_code == status, response.text
    got_code, got_message = _error(response)
    assert got_code == code
    assert message in got_message
    assert recorder.stop() == []
    record = _audited(gateway, creds)
    assert record["decision"] == "denied" and record["error_code"] == code
    assert record["status"] == status


def test_a_role_that_may_not_write_the_bucket_is_refused(
    gateway: GatewayProcess, buckets: Any, recorder: MotoRecorder
) -> None:
    creds = gateway.issue("dana", PROD, "ReadOnly")  # data-scientist: read and list only
    response = _send(_presigned_post(gateway, creds, bucket=PROD_BUCKET))
    assert response.status_code == 403, response.text
    code, message = _error(response)
    assert code == "AccessDenied" and message.startswith("iamgate: ")
    assert "s3:PutObject" in message
    assert recorder.stop() == []
    record = _audited(gateway, creds)
    assert record["action"] == "s3:PutObject" and record["decision"] == "denied"
    assert record["resource"] == f"arn:aws:s3:::{PROD_BUCKET}/uploads/report.txt"
    assert "s3:PutObject" in record["reason"]


def test_a_form_posted_to_a_buckets_virtual_host_lands_in_that_bucket(
    gateway: GatewayProcess, buckets: Any
) -> None:
    creds = gateway.issue("ci-bot", CI, "CIRunner")
    post = _presigned_post(gateway, creds)
    response = requests.post(
        f"{gateway.url}/",
        data=post["fields"],
        files={"file": ("virtual.txt", b"by host")},
        headers={"Host": f"{BUCKET}.127.0.0.1:{gateway.port}"},
        timeout=30,
    )
    assert response.status_code == 204, response.text
    stored = buckets.get_object(Bucket=BUCKET, Key="uploads/virtual.txt")
    assert stored["Body"].read() == b"by host"


def test_a_form_cut_short_is_malformed_audited_and_not_forwarded(
    gateway: GatewayProcess, buckets: Any, recorder: MotoRecorder
) -> None:
    creds = gateway.issue("ci-bot", CI, "CIRunner")
    post = _presigned_post(gateway, creds)
    prepared = requests.Request(
        "POST", post["url"], data=post["fields"], files={"file": ("f.txt", b"abc")}
    ).prepare()
    assert isinstance(prepared.body, bytes)
    response = requests.post(
        post["url"],
        data=prepared.body[:-20],  # no closing boundary
        headers={"Content-Type": prepared.headers["Content-Type"]},
        timeout=30,
    )
    assert response.status_code == 400, response.text
    assert _error(response)[0] == "MalformedPOSTRequest"
    assert recorder.stop() == []
    request_id = re.search(r"<RequestId>([^<]*)</RequestId>", response.text)
    assert request_id
    deadline = time.monotonic() + 10
    while not (
        found := [
            e
            for e in audited_calls(gateway.state_url, decision="denied")
            if e["fields"]["request_id"] == request_id.group(1)
        ]
    ):
        assert time.monotonic() < deadline, "no audit record of the refusal"
        time.sleep(0.1)
    assert found[0]["fields"]["error_code"] == "MalformedPOSTRequest"
    assert found[0]["fields"]["status"] == 400


def test_success_action_redirect_sends_the_browser_on_as_s3_does(
    gateway: GatewayProcess, buckets: Any
) -> None:
    creds = gateway.issue("ci-bot", CI, "CIRunner")
    s3 = gateway.client("s3", creds, SIGV4)
    done = "http://127.0.0.1:9/done?from=form"
    post = s3.generate_presigned_post(
        Bucket=BUCKET,
        Key="uploads/redirected.txt",
        Fields={"success_action_redirect": done},
        Conditions=[{"success_action_redirect": done}],
    )
    response = requests.post(
        post["url"],
        data=post["fields"],
        files={"file": ("r.txt", b"then go")},
        allow_redirects=False,
        timeout=30,
    )
    assert response.status_code == 303, response.text
    location = response.headers["Location"]
    assert location.startswith("http://127.0.0.1:9/done?")
    assert f"bucket={BUCKET}" in location and "key=uploads%2Fredirected.txt" in location
    assert buckets.get_object(Bucket=BUCKET, Key="uploads/redirected.txt")["Body"].read() == (
        b"then go"
    )


def test_a_5_mib_file_crosses_whole(gateway: GatewayProcess, buckets: Any) -> None:
    creds = gateway.issue("ci-bot", CI, "CIRunner")
    data = os.urandom(5 * 1024 * 1024)
    post = _presigned_post(gateway, creds, max_size=len(data))
    response = _send(post, data, name="big.bin")
    assert response.status_code == 204, response.text
    stored = buckets.get_object(Bucket=BUCKET, Key="uploads/big.bin")["Body"].read()
    assert hashlib.sha256(stored).digest() == hashlib.sha256(data).digest()
