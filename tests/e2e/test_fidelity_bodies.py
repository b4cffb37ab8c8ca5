"""Compressed bodies cross the gateway as the client signed them, with the real clients.

An S3 object labelled gzip is stored and read back byte for byte (its encoding is its
metadata); botocore's request compression (CloudWatch PutMetricData above
`request_min_compression_size_bytes`) is verified and forwarded as sent; and a body that
claims gzip but is none gets an error the SDK parses, with an audit record.
"""

from __future__ import annotations

import gzip
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSRequest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError
from harness import GatewayProcess, audited_calls, clean_env, creds_env, gateway_creds, run_aws

from iamgate.sandbox import Sandbox

pytestmark = pytest.mark.e2e

CI = "222222222222"
BUCKET = "acme-ci-logs"


def test_the_cli_stores_a_gzip_object_and_reads_it_back_byte_for_byte(
    gateway: GatewayProcess, sandbox: Sandbox, tmp_path: Path
) -> None:
    packed = gzip.compress(b"".join(b"line %d of the build log\n" % i for i in range(5000)))
    source, fetched = tmp_path / "build.log.gz", tmp_path / "fetched.gz"
    source.write_bytes(packed)
    env = creds_env(clean_env(tmp_path), gateway_creds(gateway.issue("ci-bot", CI, "CIRunner")))
    key = f"cli/{uuid.uuid4().hex}.log"
    put = run_aws(
        ["s3", "cp", str(source), f"s3://{BUCKET}/{key}", "--content-encoding", "gzip"],
        env=env,
        endpoint_url=gateway.url,
    )
    assert put.returncode == 0, put.stderr
    stored = sandbox.client(CI, "s3").get_object(Bucket=BUCKET, Key=key)
    assert stored["ContentEncoding"] == "gzip" and stored["Body"].read() == packed
    get = run_aws(
        ["s3", "cp", f"s3://{BUCKET}/{key}", str(fetched)], env=env, endpoint_url=gateway.url
    )
    assert get.returncode == 0, get.stderr
    assert fetched.read_bytes() == packed


def test_boto3_reads_a_gzip_object_through_the_gateway_as_stored(
    gateway: GatewayProcess,
) -> None:
    s3 = gateway.client("s3", gateway.issue("ci-bot", CI, "CIRunner"))
    packed = gzip.compress(json.dumps({"n": list(range(2000))}).encode())
    key = f"boto3/{uuid.uuid4().hex}.json"
    s3.put_object(Bucket=BUCKET, Key=key, Body=packed, ContentEncoding="gzip")
    got = s3.get_object(Bucket=BUCKET, Key=key)
    assert got["ContentEncoding"] == "gzip" and got["Body"].read() == packed


def own_record(gateway: GatewayProcess, mark: str, **filters: Any) -> dict[str, Any]:
    """The audit record of this test's own call, by the marker in its User-Agent (the
    store is shared by the whole session, and records land a moment after the answer)."""
    deadline = time.monotonic() + 15
    while True:
        events = audited_calls(gateway.state_url, wait=1, **filters)
        mine = [e for e in events if mark in (e.get("user_agent") or "")]
        if mine or time.monotonic() > deadline:
            assert mine, f"no audit record by {mark} among {len(events)}"
            return mine[0]
        time.sleep(0.2)


def _metric_data(namespace_tag: str, count: int) -> list[dict[str, Any]]:
    return [
        {
            "MetricName": f"build-seconds-{i % 7}",
            "Dimensions": [{"Name": "Pipeline", "Value": f"{namespace_tag}-pipeline-{i}"}],
            "Value": float(i),
            "Unit": "Seconds",
        }
        for i in range(count)
    ]


def test_compressed_put_metric_data_reaches_moto(gateway: GatewayProcess, sandbox: Sandbox) -> None:
    """botocore gzips PutMetricData above 10 KiB by default; the hook proves it did."""
    mark = f"iamgate-test/{uuid.uuid4().hex}"
    cloudwatch = gateway.client(
        "cloudwatch",
        gateway.issue("loader", CI, "Admin"),
        BotoConfig(request_min_compression_size_bytes=1024, user_agent_extra=mark),
    )
    sent: list[AWSPreparedRequest] = []
    cloudwatch.meta.events.register(
        "before-send.cloudwatch.PutMetricData", lambda request, **_: sent.append(request)
    )
    namespace = f"CI/{uuid.uuid4().hex[:8]}"
    cloudwatch.put_metric_data(Namespace=namespace, MetricData=_metric_data("ci", 300))
    (request,) = sent
    body = request.body
    assert isinstance(body, bytes) and request.headers["Content-Encoding"] in (b"gzip", "gzip")
    assert gzip.decompress(body)  # really gzip, as sent
    listed = sandbox.client(CI, "cloudwatch").list_metrics(Namespace=namespace)
    names = {m["MetricName"] for m in listed["Metrics"]}
    assert names == {f"build-seconds-{i}" for i in range(7)}
    record = own_record(gateway, mark, principal="loader", action="cloudwatch:PutMetricData")
    assert record["fields"]["status"] == 200
    assert record["fields"]["bytes_in"] == len(body)


def test_the_cli_sends_compressed_metrics_through_the_gateway(
    gateway: GatewayProcess, sandbox: Sandbox, tmp_path: Path
) -> None:
    namespace = f"CLI/{uuid.uuid4().hex[:8]}"
    data = tmp_path / "metrics.json"
    data.write_text(json.dumps(_metric_data("cli", 400)))
    assert len(data.read_bytes()) > 10240  # above botocore's default compression threshold
    env = creds_env(clean_env(tmp_path), gateway_creds(gateway.issue("loader", CI, "Admin")))
    result = run_aws(
        [
            "cloudwatch",
            "put-metric-data",
            "--namespace",
            namespace,
            "--metric-data",
            f"file://{data}",
            "--debug",
        ],
        env=env,
        endpoint_url=gateway.url,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "'Content-Encoding': b'gzip'" in result.stderr or (
        "'Content-Encoding': 'gzip'" in result.stderr
    )
    listed = sandbox.client(CI, "cloudwatch").list_metrics(Namespace=namespace)
    assert len(listed["Metrics"]) == 400


def _claim_gzip(request: AWSRequest, **_: object) -> None:
    """What a broken client or proxy sends: a body labelled gzip that is none."""
    request.data = b'{"ExclusiveStartTableName": "not gzip at all"}'
    request.headers["Content-Encoding"] = "gzip"


def test_a_body_that_claims_gzip_but_is_none_gets_an_aws_error_and_a_record(
    gateway: GatewayProcess,
) -> None:
    mark = f"iamgate-test/{uuid.uuid4().hex}"
    dynamodb = gateway.client(
        "dynamodb",
        gateway.issue("ci-bot", CI, "CIRunner"),
        BotoConfig(retries={"max_attempts": 0}, user_agent_extra=mark),
    )
    dynamodb.meta.events.register("before-sign.dynamodb.ListTables", _claim_gzip)
    with pytest.raises(ClientError) as refused:
        dynamodb.list_tables()
    error = refused.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["Error"]["Code"] == "ValidationException"
    assert "not valid gzip" in error["Error"]["Message"]
    record = own_record(gateway, mark, principal="ci-bot", decision="denied")
    assert "not valid gzip" in str(record["fields"]["reason"])
    assert record["fields"]["error_code"] == "ValidationException"
