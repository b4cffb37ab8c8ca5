"""Presigned S3 URLs as the SDKs make them, followed by plain HTTP clients, through a real
gateway in front of moto: boto3's `generate_presigned_url` and `aws s3 presign` (CLI v1),
which presign with Signature Version 2 by default in us-east-1, and with SigV4."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
import requests
from botocore.config import Config as BotoConfig
from harness import GatewayProcess, MotoRecorder, audited_calls, clean_env, creds_env, run_aws
from harness import gateway_creds as as_env

from iamgate.identity.credentials import GatewayCredentials
from iamgate.sandbox import Sandbox

pytestmark = pytest.mark.e2e

PROD = "111111111111"
CI = "222222222222"
BUCKET = "presigned-urls"
SIGNERS = {"sigv2": None, "sigv4": BotoConfig(signature_version="s3v4")}


@pytest.fixture(scope="module")
def ci_creds(gateway: GatewayProcess) -> GatewayCredentials:
    creds = gateway.issue("ci-bot", CI, "CIRunner")
    s3 = gateway.client("s3", creds)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="report.csv", Body=b"a,b\n1,2\n")
    return creds


def presigner(gateway: GatewayProcess, creds: GatewayCredentials, version: str) -> Any:
    return gateway.client("s3", creds, SIGNERS[version])


def s3_error(body: bytes) -> dict[str, str]:
    """S3's error document as a user reads it (it is S3's bare <Error>, not a wrapper)."""
    root = ElementTree.fromstring(body)  # noqa: S314 - the gateway under test wrote it
    assert root.tag == "Error"
    return {child.tag: child.text or "" for child in root}


def refused(url: str, method: str = "GET") -> tuple[int, bytes]:
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=30)
    return info.value.code, info.value.read()


@pytest.mark.parametrize("version", ["sigv2", "sigv4"])
def test_boto3_presigned_put_get_and_head(
    gateway: GatewayProcess, sandbox: Sandbox, ci_creds: GatewayCredentials, version: str
) -> None:
    creds = gateway.issue("ci-bot", CI, "CIRunner")  # its own key: its own audit records
    client = presigner(gateway, creds, version)
    key = f"uploads/{version} ü+x.txt"
    put = client.generate_presigned_url(
        "put_object", Params={"Bucket": BUCKET, "Key": key, "ContentType": "text/plain"}
    )
    assert ("AWSAccessKeyId=" in put) is (version == "sigv2")
    recorder = MotoRecorder(sandbox.endpoint_url)
    recorder.start()
    uploaded = requests.put(
        put, data=b"uploaded through a link", headers={"Content-Type": "text/plain"}, timeout=30
    )
    reached = recorder.stop()
    assert uploaded.status_code == 200, uploaded.text
    # The upstream got the gateway's SigV4 request, and nothing of the link's own query.
    assert len(reached) == 1
    assert reached[0]["headers"]["Authorization"].startswith("AWS4-HMAC-SHA256 ")
    assert "?" not in reached[0]["url"]

    stored = gateway.client("s3", ci_creds).get_object(Bucket=BUCKET, Key=key)
    assert stored["Body"].read() == b"uploaded through a link"
    assert stored["ContentType"] == "text/plain"

    get = client.generate_presigned_url(
        "get_object",
        Params={"Bucket": BUCKET, "Key": key, "ResponseContentDisposition": 'attachment; x="a b"'},
    )
    with urllib.request.urlopen(get, timeout=30) as response:
        assert response.read() == b"uploaded through a link"
        assert response.headers["Content-Disposition"] == 'attachment; x="a b"'

    head = client.generate_presigned_url("head_object", Params={"Bucket": BUCKET, "Key": key})
    answered = requests.head(head, timeout=30)
    assert answered.status_code == 200
    assert answered.headers["Content-Length"] == str(len(b"uploaded through a link"))

    # Identified, authorized and audited as any SigV4 call: by its operation and its key.
    deadline = time.monotonic() + 10
    while len(events := audited_calls(gateway.state_url, access_key_id=creds.access_key_id)) < 3:
        assert time.monotonic() < deadline, events
        time.sleep(0.2)
    calls = sorted((e["fields"]["operation"], e["fields"]["action"]) for e in events)
    assert calls == [
        ("GetObject", "s3:GetObject"),
        ("HeadObject", "s3:GetObject"),
        ("PutObject", "s3:PutObject"),
    ]
    for event in events:
        assert event["principal"] == "ci-bot"
        assert event["fields"]["decision"] == "allowed" and event["fields"]["status"] == 200
        assert event["fields"]["gateway_role"] == "ci-runner"
        assert event["fields"]["region"] == "us-east-1"
        assert event["fields"]["params"]["Key"] == key


@pytest.mark.parametrize("version", ["sigv2", "sigv4"])
def test_a_large_presigned_upload_streams_through(
    gateway: GatewayProcess, ci_creds: GatewayCredentials, version: str
) -> None:
    body = os.urandom(3 * 1024 * 1024)  # past what the gateway buffers: streamed
    client = presigner(gateway, ci_creds, version)
    url = client.generate_presigned_url(
        "put_object", Params={"Bucket": BUCKET, "Key": f"big-{version}.bin"}
    )
    assert requests.put(url, data=body, timeout=60).status_code == 200
    back = gateway.client("s3", ci_creds).get_object(Bucket=BUCKET, Key=f"big-{version}.bin")
    assert back["Body"].read() == body


def test_aws_cli_presign_makes_a_working_sigv2_link(
    gateway: GatewayProcess, ci_creds: GatewayCredentials, home: Path
) -> None:
    env = creds_env(clean_env(home), as_env(ci_creds))
    done = run_aws(
        ["s3", "presign", f"s3://{BUCKET}/report.csv", "--expires-in", "300"],
        env=env,
        endpoint_url=gateway.url,
    )
    url = done.stdout.strip()
    assert done.returncode == 0 and "AWSAccessKeyId=" in url and "Signature=" in url
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.read() == b"a,b\n1,2\n"
    status, body = refused(url.replace("report.csv", "other.csv"))
    assert status == 403
    assert s3_error(body)["Code"] == "SignatureDoesNotMatch"


@pytest.mark.parametrize("version", ["sigv2", "sigv4"])
def test_an_expired_link_gets_s3s_answer_and_is_audited(
    gateway: GatewayProcess, ci_creds: GatewayCredentials, version: str
) -> None:
    creds = gateway.issue("ci-bot", CI, "CIRunner")  # its own key: its own audit records
    client = presigner(gateway, creds, version)
    params = {"Bucket": BUCKET, "Key": "report.csv"}
    get = client.generate_presigned_url("get_object", Params=params, ExpiresIn=1)
    head = client.generate_presigned_url("head_object", Params=params, ExpiresIn=1)
    time.sleep(2.2)
    status, body = refused(get)
    assert status == 403
    error = s3_error(body)
    assert error["Code"] == "AccessDenied" and error["Message"] == "Request has expired"
    assert error["ServerTime"] > error["Expires"]  # both ISO 8601 in UTC, as S3 writes them
    assert ("X-Amz-Expires" in error) is (version == "sigv4")
    assert refused(head, "HEAD") == (403, b"")
    deadline = time.monotonic() + 10
    while len(events := audited_calls(gateway.state_url, access_key_id=creds.access_key_id)) < 2:
        assert time.monotonic() < deadline, events
        time.sleep(0.2)
    assert len(events) == 2
    for event in events:
        fields = event["fields"]
        assert event["principal"] == "ci-bot" and fields["decision"] == "denied"
        assert fields["reason"].startswith("presign-expired: Request has expired")
        assert (fields["status"], fields["error_code"]) == (403, "AccessDenied")


@pytest.mark.parametrize("version", ["sigv2", "sigv4"])
def test_tampered_links_are_refused(
    gateway: GatewayProcess, ci_creds: GatewayCredentials, version: str
) -> None:
    client = presigner(gateway, ci_creds, version)
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": "report.csv"}
    )
    for tampered in (
        url.replace("report.csv", "report.csx"),
        url.replace(f"/{BUCKET}/", "/another-bucket/"),
        url + "&versionId=1",
    ):
        status, body = refused(tampered)
        assert status == 403, tampered
        assert s3_error(body)["Code"] == "SignatureDoesNotMatch"
    put_url = client.generate_presigned_url(
        "put_object", Params={"Bucket": BUCKET, "Key": "report.csv", "ContentType": "text/csv"}
    )
    swapped = requests.put(put_url, data=b"x", headers={"Content-Type": "text/html"}, timeout=30)
    assert swapped.status_code == 403
    assert s3_error(swapped.content)["Code"] == "SignatureDoesNotMatch"
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.read() == b"a,b\n1,2\n"  # untouched


def test_sigv2_links_sign_too_little_for_other_parameters_or_methods(
    gateway: GatewayProcess, ci_creds: GatewayCredentials
) -> None:
    """SigV2 leaves most of the query unsigned: a parameter it does not cover could turn a
    GET of an object into another operation, so it is refused; so is DELETE."""
    client = presigner(gateway, ci_creds, "sigv2")
    listing = client.generate_presigned_url("list_objects", Params={"Bucket": BUCKET})
    status, body = refused(listing + "&prefix=uploads")
    assert status == 403
    assert "not covered by a Signature Version 2 signature" in s3_error(body)["Message"]
    delete = client.generate_presigned_url(
        "delete_object", Params={"Bucket": BUCKET, "Key": "report.csv"}
    )
    answered = requests.delete(delete, timeout=30)
    assert answered.status_code == 403
    assert "GET, PUT and HEAD" in s3_error(answered.content)["Message"]
    with urllib.request.urlopen(
        client.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "report.csv"}),
        timeout=30,
    ) as response:
        assert response.read() == b"a,b\n1,2\n"  # still there


def test_a_presigned_head_that_signs_a_header_needs_it(
    gateway: GatewayProcess, ci_creds: GatewayCredentials
) -> None:
    """boto3 signs x-amz-checksum-mode into a HEAD presigned with ChecksumMode: sent, it
    works; left out, S3's 403 SignatureDoesNotMatch, not a 400."""
    client = presigner(gateway, ci_creds, "sigv4")
    url = client.generate_presigned_url(
        "head_object", Params={"Bucket": BUCKET, "Key": "report.csv", "ChecksumMode": "ENABLED"}
    )
    sent = requests.head(url, headers={"x-amz-checksum-mode": "ENABLED"}, timeout=30)
    assert sent.status_code == 200
    assert requests.head(url, timeout=30).status_code == 403
    status, body = refused(url)  # a GET of the HEAD link shows why
    assert status == 403
    assert "'x-amz-checksum-mode'" in s3_error(body)["Message"]


@pytest.mark.parametrize("version", ["sigv2", "sigv4"])
def test_a_link_for_what_the_role_does_not_allow_is_refused_and_audited(
    gateway: GatewayProcess, version: str
) -> None:
    """dana's data-scientist role reads prod; a link to write there is refused."""
    dana = gateway.issue("dana", PROD, "ReadOnly")
    client = presigner(gateway, dana, version)
    url = client.generate_presigned_url(
        "put_object", Params={"Bucket": "prod-data", "Key": f"planted-{version}.txt"}
    )
    answered = requests.put(url, data=b"planted", timeout=30)
    assert answered.status_code == 403
    error = s3_error(answered.content)
    assert error["Code"] == "AccessDenied" and error["Message"].startswith("iamgate:")
    events = audited_calls(gateway.state_url, access_key_id=dana.access_key_id)
    mine = [e["fields"] for e in events]
    assert len(mine) == 1 and events[0]["principal"] == "dana"
    assert mine[0]["action"] == "s3:PutObject"
    assert mine[0]["decision"] == "denied" and mine[0]["status"] == 403
    assert mine[0]["params"]["Key"] == f"planted-{version}.txt"


def test_a_sigv2_authorization_header_is_still_refused_in_s3s_words(
    gateway: GatewayProcess,
) -> None:
    answered = requests.get(
        f"{gateway.url}/{BUCKET}/report.csv",
        headers={"Authorization": "AWS ASIAEXAMPLEEXAMPLE00:c2lnbmF0dXJlc2lnbmF0dXI=", "Date": "x"},
        timeout=30,
    )
    assert answered.status_code == 400
    error = s3_error(answered.content)
    assert error["Code"] == "AuthorizationHeaderMalformed"
    assert "Signature Version 2 only in presigned S3 GET, PUT and HEAD URLs" in error["Message"]
