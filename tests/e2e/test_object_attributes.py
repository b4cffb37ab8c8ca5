"""GetObjectAttributes through a real gateway, as boto3 sends it, against a real moto server.

With `ObjectAttributes=[]` botocore leaves the empty `x-amz-object-attributes` header out and
sends `GET /bucket/key?attributes`: S3 routes it by the sub-resource and answers the missing
header itself. The gateway must identify, authorize and forward it as GetObjectAttributes
(not GetObject), so the caller gets the upstream's own answer.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError
from harness import GatewayProcess, MotoRecorder, audited_calls

pytestmark = pytest.mark.e2e

CI = "222222222222"
BUCKET = "ci-object-attributes"


def _answer(call: Any) -> tuple[str, Any]:
    """("ok", the attributes) or ("error", its code and message): what the caller sees."""
    try:
        got = call()
    except ClientError as error:
        return "error", (error.response["Error"]["Code"], error.response["Error"]["Message"])
    got.pop("ResponseMetadata")
    return "ok", got


@pytest.mark.parametrize("attributes", [[], ["ETag", "ObjectSize"]])
def test_get_object_attributes_gets_the_upstreams_own_answer(
    gateway: GatewayProcess, attributes: list[str]
) -> None:
    direct = gateway.sandbox.client(CI, "s3")
    direct.create_bucket(Bucket=BUCKET)
    key = f"data/{uuid.uuid4().hex}.csv"
    direct.put_object(Bucket=BUCKET, Key=key, Body=b"a,b\n1,2\n")
    creds = gateway.issue("ci-bot", CI, "CIRunner")
    s3 = gateway.client("s3", creds)
    recorder = MotoRecorder(gateway.sandbox.endpoint_url)
    recorder.start()
    through = _answer(
        lambda: s3.get_object_attributes(Bucket=BUCKET, Key=key, ObjectAttributes=attributes)
    )
    sent = [r for r in recorder.stop() if key in r["url"]]
    expected = _answer(
        lambda: direct.get_object_attributes(Bucket=BUCKET, Key=key, ObjectAttributes=attributes)
    )
    assert through == expected
    if attributes:
        assert through[0] == "ok" and through[1]["ObjectSize"] == 8
    (request,) = sent
    assert request["method"] == "GET" and "?attributes" in request["url"]
    (event,) = audited_calls(gateway.state_url, access_key_id=creds.access_key_id)
    assert event["fields"]["operation"] == "GetObjectAttributes"
    assert event["fields"]["decision"] == "allowed"
    assert event["fields"]["resource"] == f"arn:aws:s3:::{BUCKET}/{key}"
