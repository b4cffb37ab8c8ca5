"""An AWS CLI whose botocore is older than the gateway's still gets its calls through.

The CLI reads its service models from `AWS_DATA_PATH` first, so giving it older botocore
models (tests/data/legacy-models, trimmed) makes it what a pinned older CLI is. Two routes
the gateway's botocore no longer has: SES v2's `GET /v2/email/identities` (botocore 1.43.60;
`POST /v2/email/list-identities` since 1.43.105) and SQS's query protocol (botocore 1.29.40;
JSON since). The gateway identifies both from its legacy routes and forwards them; neither
is refused as an unknown operation.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import GatewayProcess, audited_calls, clean_env, creds_env, gateway_creds, run_aws

from iamgate.aws.operations import OperationIndex
from iamgate.sandbox import Sandbox

pytestmark = pytest.mark.e2e

CI = "222222222222"
OLD_MODELS = Path(__file__).resolve().parent.parent / "data" / "legacy-models"


def _older_cli(gateway: GatewayProcess, tmp_path: Path) -> dict[str, str]:
    env = creds_env(clean_env(tmp_path), gateway_creds(gateway.issue("loader", CI, "Admin")))
    env["AWS_DATA_PATH"] = str(OLD_MODELS)
    return env


def test_an_older_cli_lists_sqs_queues_in_the_query_protocol(
    gateway: GatewayProcess, sandbox: Sandbox, tmp_path: Path
) -> None:
    url = sandbox.client(CI, "sqs").create_queue(QueueName=f"skew-{tmp_path.name[-8:]}")
    listed = run_aws(
        ["sqs", "list-queues", "--debug"],
        env=_older_cli(gateway, tmp_path),
        endpoint_url=gateway.url,
    )
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "'body': {'Action': 'ListQueues'" in listed.stderr  # the old protocol was spoken
    names = [queue.rsplit("/", 1)[1] for queue in listed.json()["QueueUrls"]]
    assert url["QueueUrl"].rsplit("/", 1)[1] in names  # moto's answer, through the gateway
    (record, *_) = audited_calls(gateway.state_url, principal="loader", action="sqs:ListQueues")
    assert record["fields"]["decision"] == "allowed"
    assert record["fields"]["status"] == 200


def test_an_older_cli_lists_ses_identities_on_the_path_since_changed(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    listed = run_aws(
        ["sesv2", "list-email-identities"],
        env=_older_cli(gateway, tmp_path),
        endpoint_url=gateway.url,
    )
    # moto routes by the same (newer) botocore models, so it answers the old path 404
    # itself: what matters here is that the gateway identified, allowed and forwarded it.
    assert "iamgate" not in listed.stderr, listed.stderr
    (record, *_) = audited_calls(
        gateway.state_url, principal="loader", action="ses:ListEmailIdentities"
    )
    assert record["fields"]["decision"] == "allowed"
    assert record["fields"]["status"] == 404
    assert listed.returncode != 0 and "(404)" in listed.stderr


def test_without_the_legacy_routes_those_calls_would_be_unknown() -> None:
    """The requests the older CLI sends are ones the gateway's own botocore does not
    describe, so the tests above exercise the legacy routes (and fail if botocore brings
    them back)."""
    form = {"content-type": "application/x-www-form-urlencoded; charset=utf-8"}
    requests: list[tuple[str, str, str, dict[str, str], bytes | None, str]] = [
        ("ses", "GET", "/v2/email/identities", {}, None, "ListEmailIdentities"),
        ("sqs", "POST", "/", form, b"Action=ListQueues&Version=2012-11-05", "ListQueues"),
    ]
    current = OperationIndex.build(["sesv2", "sqs"], legacy=False)
    index = OperationIndex.build(["sesv2", "sqs"])
    for signing, method, path, headers, body, name in requests:
        assert current.identify(signing, method, path, [], headers, body) is None
        found = index.identify(signing, method, path, [], headers, body)
        assert found is not None and found.operation.name == name
