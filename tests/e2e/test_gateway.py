"""The real AWS CLI and boto3 through a real gateway process, against a real moto server.

Each call is also made directly to the sandbox with the assumed role's credentials, and the
two results must agree.
"""

from __future__ import annotations

import base64
import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from harness import (
    BIN,
    GatewayProcess,
    MotoRecorder,
    audited_calls,
    clean_env,
    creds_env,
    gateway_creds,
    run_aws,
)

from iamgate.sandbox import Sandbox

pytestmark = pytest.mark.e2e

PROD = "111111111111"
CI = "222222222222"


class Pair:
    """The same CLI command through the gateway and directly against the sandbox."""

    def __init__(
        self, gw: GatewayProcess, sandbox: Sandbox, home: Path, user: str, account: str, role: str
    ):
        base = clean_env(home)
        self.gw = gw
        self.via = creds_env(base, gateway_creds(gw.issue(user, account, role)))
        self.direct = creds_env(base, sandbox.assume(account, role, session_name=user))
        self.sandbox = sandbox

    def through(self, *args: str, extra: tuple[str, ...] = ()) -> Any:
        result = run_aws(args, env=self.via, endpoint_url=self.gw.url, extra=extra)
        assert result.returncode == 0, result.stderr
        return result.json()

    def directly(self, *args: str) -> Any:
        result = run_aws(args, env=self.direct, endpoint_url=self.sandbox.endpoint_url)
        assert result.returncode == 0, result.stderr
        return result.json()


@pytest.fixture(scope="module")
def prod(gateway: GatewayProcess, sandbox: Sandbox, home: Path) -> Pair:
    return Pair(gateway, sandbox, home, "dana", PROD, "ReadOnly")


@pytest.fixture(scope="module")
def ci(gateway: GatewayProcess, sandbox: Sandbox, home: Path) -> Pair:
    return Pair(gateway, sandbox, home, "ci-bot", CI, "CIRunner")


def test_get_caller_identity_is_the_assumed_role(prod: Pair) -> None:
    via = prod.through("sts", "get-caller-identity")
    direct = prod.directly("sts", "get-caller-identity")
    assert via["Account"] == direct["Account"] == PROD
    assert via["Arn"] == f"arn:aws:sts::{PROD}:assumed-role/ReadOnly/dana"
    assert via["Arn"] == direct["Arn"]


def test_s3_round_trip_of_a_50_mib_file(ci: Pair, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(50 * 1024 * 1024))
    ci.through("s3", "mb", "s3://ci-artifacts")
    ci.through("s3", "cp", str(source), "s3://ci-artifacts/builds/big.bin")
    back = tmp_path / "back.bin"
    ci.through("s3", "cp", "s3://ci-artifacts/builds/big.bin", str(back))
    assert (
        hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(source.read_bytes()).digest()
    )
    head_via = ci.through(
        "s3api", "head-object", "--bucket", "ci-artifacts", "--key", "builds/big.bin"
    )
    head_direct = ci.directly(
        "s3api", "head-object", "--bucket", "ci-artifacts", "--key", "builds/big.bin"
    )
    assert head_via["ContentLength"] == head_direct["ContentLength"] == 50 * 1024 * 1024
    assert head_via["ETag"] == head_direct["ETag"]
    assert head_via["ETag"].endswith('-7"')  # the CLI uploaded it in 8 MiB parts
    listing = run_aws(["s3", "ls", "s3://ci-artifacts/builds/"], env=ci.via, endpoint_url=ci.gw.url)
    assert "big.bin" in listing.stdout


@pytest.mark.parametrize(
    "key", ["with space/file.txt", "plus+sign.txt", "ütf-8 ключ ☃.txt", "question?mark=1&x.txt"]
)
def test_awkward_object_keys(ci: Pair, tmp_path: Path, key: str) -> None:
    ci.through("s3api", "create-bucket", "--bucket", "ci-keys")
    body = tmp_path / "body.txt"
    body.write_text(f"contents of {key}")
    ci.through("s3api", "put-object", "--bucket", "ci-keys", "--key", key, "--body", str(body))
    out = tmp_path / "out.txt"
    ci.through("s3api", "get-object", "--bucket", "ci-keys", "--key", key, str(out))
    assert out.read_text() == f"contents of {key}"
    keys_via = [
        o["Key"] for o in ci.through("s3api", "list-objects-v2", "--bucket", "ci-keys")["Contents"]
    ]
    keys_direct = [
        o["Key"] for o in ci.directly("s3api", "list-objects-v2", "--bucket", "ci-keys")["Contents"]
    ]
    assert key in keys_via
    assert keys_via == keys_direct


def test_presigned_get(ci: Pair, tmp_path: Path) -> None:
    ci.through("s3", "mb", "s3://ci-presign")
    body = tmp_path / "report.csv"
    body.write_text("a,b\n1,2\n")
    ci.through("s3", "cp", str(body), "s3://ci-presign/report.csv")
    presign = ["s3", "presign", "s3://ci-presign/report.csv", "--expires-in", "300"]
    v2 = run_aws(presign, env=ci.via, endpoint_url=ci.gw.url).stdout.strip()
    assert "AWSAccessKeyId=" in v2  # CLI v1 presigns with SigV2 unless told otherwise
    with urllib.request.urlopen(v2, timeout=30) as response:
        assert response.read() == b"a,b\n1,2\n"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(v2.replace("report.csv", "other.csv"), timeout=30)
    assert refused.value.code == 403
    answer = refused.value.read()
    assert answer.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>')
    assert b"<Code>SignatureDoesNotMatch</Code>" in answer
    config = tmp_path / "aws-config"
    config.write_text("[default]\ns3 =\n    signature_version = s3v4\n")
    url = run_aws(
        presign, env={**ci.via, "AWS_CONFIG_FILE": str(config)}, endpoint_url=ci.gw.url
    ).stdout.strip()
    assert url.startswith(ci.gw.url) and "X-Amz-Signature=" in url
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.read() == b"a,b\n1,2\n"
    tampered = url.replace("report.csv", "other.csv")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(tampered, timeout=30)
    assert info.value.code == 403
    assert b"SignatureDoesNotMatch" in info.value.read()


def test_ec2_run_and_describe(ci: Pair, sandbox: Sandbox) -> None:
    ran = ci.through(
        "ec2",
        "run-instances",
        "--image-id",
        sandbox.ami_id,
        "--count",
        "3",
        "--instance-type",
        "t3.micro",
    )
    ids = {i["InstanceId"] for i in ran["Instances"]}
    assert len(ids) == 3

    def described(pair_result: Any) -> set[str]:
        return {i["InstanceId"] for r in pair_result["Reservations"] for i in r["Instances"]}

    via = described(ci.through("ec2", "describe-instances"))
    direct = described(ci.directly("ec2", "describe-instances"))
    assert ids <= via
    assert via == direct


def test_rds_describe_through_a_profile(prod: Pair, gateway: GatewayProcess, home: Path) -> None:
    """CLI v1 pins rds to rds.amazonaws.com; an iamgate profile must still reach the gateway."""
    process = (
        f"{BIN / 'iamgate'} credentials --config {gateway.config_path} "
        "--issue-for dana --account acme-prod --role ReadOnly"
    )
    config = home / "aws-config-rds"
    config.write_text(
        "[plugins]\niamgate = iamgate.awscli_plugin\n\n"
        "[profile prod]\nregion = us-east-1\n"
        f"endpoint_url = {gateway.url}\n"
        f"credential_process = {process}\n"
    )
    env = clean_env(home)
    env["AWS_CONFIG_FILE"] = str(config)
    via = run_aws(["rds", "describe-db-instances", "--profile", "prod"], env=env)
    assert via.returncode == 0, via.stderr
    direct = prod.directly("rds", "describe-db-instances")
    names = sorted(d["DBInstanceIdentifier"] for d in via.json()["DBInstances"])
    assert names == sorted(d["DBInstanceIdentifier"] for d in direct["DBInstances"])
    assert names, "the sandbox seeds RDS instances in acme-prod"
    sqs = run_aws(["sqs", "list-queues", "--profile", "prod"], env=env)
    assert sqs.returncode == 0, sqs.stderr


def test_dynamodb(ci: Pair) -> None:
    ci.through(
        "dynamodb",
        "create-table",
        "--table-name",
        "builds",
        "--attribute-definitions",
        "AttributeName=id,AttributeType=S",
        "--key-schema",
        "AttributeName=id,KeyType=HASH",
        "--billing-mode",
        "PAY_PER_REQUEST",
    )
    ci.through(
        "dynamodb",
        "put-item",
        "--table-name",
        "builds",
        "--item",
        '{"id": {"S": "b-1"}, "ok": {"BOOL": true}}',
    )
    via = ci.through("dynamodb", "scan", "--table-name", "builds")
    direct = ci.directly("dynamodb", "scan", "--table-name", "builds")
    assert via["Items"] == direct["Items"] == [{"id": {"S": "b-1"}, "ok": {"BOOL": True}}]


def test_lambda_iam_sqs_kms(ci: Pair, tmp_path: Path) -> None:
    assert ci.through("lambda", "list-functions") == ci.directly("lambda", "list-functions")
    roles_via = {r["RoleName"] for r in ci.through("iam", "list-roles")["Roles"]}
    roles_direct = {r["RoleName"] for r in ci.directly("iam", "list-roles")["Roles"]}
    assert {"ReadOnly", "DataScientist", "CIRunner", "Admin"} <= roles_via == roles_direct
    queue = ci.through("sqs", "create-queue", "--queue-name", "jobs")["QueueUrl"]
    sent = ci.through("sqs", "send-message", "--queue-url", queue, "--message-body", "hello")
    assert sent["MD5OfMessageBody"] == hashlib.md5(b"hello").hexdigest()  # noqa: S324
    got = ci.directly("sqs", "receive-message", "--queue-url", queue)
    assert got["Messages"][0]["Body"] == "hello"
    key = ci.through("kms", "create-key", "--description", "ci key")["KeyMetadata"]["KeyId"]
    encrypted = ci.through("kms", "encrypt", "--key-id", key, "--plaintext", "aGVsbG8=")
    assert encrypted["KeyId"].endswith(key)
    blob = tmp_path / "ciphertext.bin"
    blob.write_bytes(base64.b64decode(encrypted["CiphertextBlob"]))
    plain = ci.through("kms", "decrypt", "--ciphertext-blob", f"fileb://{blob}")
    # CLI v1 takes --plaintext as text: what went in is the text "aGVsbG8=" itself.
    assert base64.b64decode(plain["Plaintext"]) == b"aGVsbG8="
    described = ci.directly("kms", "describe-key", "--key-id", key)["KeyMetadata"]
    assert described["Description"] == "ci key"


def test_accounts_are_isolated(ci: Pair, prod: Pair) -> None:
    ci.through("s3", "mb", "s3://ci-only-bucket")
    ci_buckets = {b["Name"] for b in ci.through("s3api", "list-buckets")["Buckets"]}
    prod_buckets = {b["Name"] for b in prod.through("s3api", "list-buckets")["Buckets"]}
    assert "ci-only-bucket" in ci_buckets
    assert "ci-only-bucket" not in prod_buckets
    assert prod_buckets and not (prod_buckets & ci_buckets)


def test_boto3_through_the_gateway(gateway: GatewayProcess) -> None:
    creds = gateway.issue("dana", PROD, "ReadOnly")
    session = boto3.Session(
        aws_access_key_id=creds.access_key_id,
        aws_secret_access_key=creds.secret_access_key,
        aws_session_token=creds.session_token,
        region_name="us-east-1",
    )
    cfg = BotoConfig(retries={"max_attempts": 1})
    sts = session.client("sts", endpoint_url=gateway.url, config=cfg)
    assert sts.get_caller_identity()["Account"] == PROD
    s3 = session.client("s3", endpoint_url=gateway.url, config=cfg)
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert names and all(n.startswith("acme-prod") for n in names)


# -- refusals: the right AWS error code, and nothing reaches the upstream ------------------


@pytest.fixture
def recorder(sandbox: Sandbox) -> Iterator[MotoRecorder]:
    rec = MotoRecorder(sandbox.endpoint_url)
    rec.start()
    yield rec


def _refused(gateway: GatewayProcess, home: Path, creds: dict[str, str], *args: str) -> str:
    result = run_aws(
        list(args),
        env=creds_env(clean_env(home), creds),
        endpoint_url=gateway.url,
        extra=("--cli-connect-timeout", "5"),
    )
    assert result.returncode != 0
    return result.stderr


def test_expired_credentials(gateway: GatewayProcess, home: Path, recorder: MotoRecorder) -> None:
    creds = gateway_creds(
        gateway.issue(
            "carl",
            PROD,
            "ReadOnly",
            ttl=timedelta(minutes=5),
            now=datetime.now(UTC) - timedelta(hours=1),
        )
    )
    assert "(ExpiredToken)" in _refused(gateway, home, creds, "sts", "get-caller-identity")
    assert "(ExpiredToken)" in _refused(gateway, home, creds, "s3", "ls")
    assert "(ExpiredTokenException)" in _refused(gateway, home, creds, "dynamodb", "list-tables")
    assert recorder.stop() == []


def test_unknown_key_and_wrong_token(
    gateway: GatewayProcess, home: Path, recorder: MotoRecorder
) -> None:
    good = gateway_creds(gateway.issue("carl", PROD, "ReadOnly"))
    other = gateway_creds(gateway.issue("dana", PROD, "ReadOnly"))
    unknown = {**good, "aws_access_key_id": "AKIAIOSFODNN7EXAMPLE"}
    assert "(InvalidClientTokenId)" in _refused(
        gateway, home, unknown, "sts", "get-caller-identity"
    )
    assert "(InvalidAccessKeyId)" in _refused(gateway, home, unknown, "s3api", "list-buckets")
    swapped = {**good, "aws_session_token": other["aws_session_token"]}
    assert "(InvalidClientTokenId)" in _refused(
        gateway, home, swapped, "sts", "get-caller-identity"
    )
    assert "(InvalidToken)" in _refused(gateway, home, swapped, "s3api", "list-buckets")
    assert "(UnrecognizedClientException)" in _refused(
        gateway, home, swapped, "dynamodb", "list-tables"
    )
    wrong_secret = {**good, "aws_secret_access_key": other["aws_secret_access_key"]}
    assert "(SignatureDoesNotMatch)" in _refused(
        gateway, home, wrong_secret, "sts", "get-caller-identity"
    )
    assert "(InvalidSignatureException)" in _refused(
        gateway, home, wrong_secret, "dynamodb", "list-tables"
    )
    assert recorder.stop() == []


def _signed(
    gateway: GatewayProcess,
    service: str,
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
) -> tuple[str, dict[str, str], bytes]:
    from botocore.auth import S3SigV4Auth, SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    creds = gateway.issue("ci-bot", CI, "CIRunner")
    request = AWSRequest(method=method, url=gateway.url + path, data=body, headers=headers)
    signer = S3SigV4Auth if service == "s3" else SigV4Auth
    signer(
        Credentials(creds.access_key_id, creds.secret_access_key, creds.session_token),
        service,
        "us-east-1",
    ).add_auth(request)
    prepared = request.prepare()
    return prepared.url, dict(prepared.headers.items()), body


def _send(
    url: str, headers: dict[str, str], body: bytes, method: str = "POST"
) -> tuple[int, bytes]:
    headers = {k: v for k, v in headers.items() if k.lower() != "content-length"}
    request = urllib.request.Request(url, data=body or None, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


DDB_HEADERS = {
    "X-Amz-Target": "DynamoDB_20120810.ListTables",
    "Content-Type": "application/x-amz-json-1.0",
}


def test_tampering_is_refused_before_the_upstream(
    gateway: GatewayProcess, recorder: MotoRecorder
) -> None:
    url, headers, body = _signed(gateway, "dynamodb", "POST", "/", b"{}", DDB_HEADERS)
    assert _send(url, headers, body)[0] == 200  # the untouched request works
    recorder.start()

    sig = headers["Authorization"]
    bad_sig = {**headers, "Authorization": sig[:-1] + ("0" if sig[-1] != "0" else "1")}
    status, reply = _send(url, bad_sig, body)
    assert (status, b"InvalidSignatureException" in reply) == (400, True)

    status, reply = _send(url, headers, b'{"Limit": 1}')
    assert b"InvalidSignatureException" in reply

    status, reply = _send(url, {**headers, "X-Amz-Target": "DynamoDB_20120810.DeleteTable"}, body)
    assert b"InvalidSignatureException" in reply

    s3_url, s3_headers, _ = _signed(
        gateway, "s3", "PUT", "/ci-artifacts/tampered.txt", b"original", {}
    )
    status, reply = _send(s3_url, s3_headers, b"tampered", method="PUT")
    assert status == 400 and b"XAmzContentSHA256Mismatch" in reply

    assert recorder.stop() == []


def test_every_request_is_audited(gateway: GatewayProcess, prod: Pair) -> None:
    prod.through("sts", "get-caller-identity")
    events = audited_calls(gateway.state_url, principal="dana", action="sts:GetCallerIdentity")
    assert events
    f = events[0]["fields"]
    assert events[0]["principal"] == "dana" and f["account_id"] == PROD
    assert f["decision"] == "allowed" and f["gateway_role"] == "data-scientist"
    assert f["status"] == 200 and f["aws_request_id"]
    assert f["latency_ms"] > 0 and f["bytes_out"] > 0
    assert events[0]["source_ip"] == "127.0.0.1" and "aws-cli" in events[0]["user_agent"]


def test_expect_100_continue_waits_for_a_good_signature(gateway: GatewayProcess) -> None:
    """A client must not be invited to send a large body the gateway will refuse."""
    import socket

    def exchange(headers: dict[str, str]) -> bytes:
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
            lines = ["PUT /ci-artifacts/expect.bin HTTP/1.1"]
            lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() != "content-length"]
            lines += [f"Host: 127.0.0.1:{gateway.port}", "Content-Length: 1048576"]
            lines += ["Expect: 100-continue", "", ""]
            sock.sendall("\r\n".join(lines).encode())
            return sock.recv(65536)

    _, headers, _ = _signed(
        gateway,
        "s3",
        "PUT",
        "/ci-artifacts/expect.bin",
        b"",
        {"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"},
    )
    assert exchange(headers).startswith(b"HTTP/1.1 100 Continue")
    sig = headers["Authorization"]
    bad = {**headers, "Authorization": sig[:-1] + ("0" if sig[-1] != "0" else "1")}
    first = exchange(bad)
    assert first.startswith(b"HTTP/1.1 403"), first[:200]
    assert b"SignatureDoesNotMatch" in first


@pytest.fixture(scope="module")
def tls_gateway(
    sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GatewayProcess, Path]]:
    import trustme

    directory = tmp_path_factory.mktemp("tls-gateway")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_path, key_path, ca_path = (directory / n for n in ("cert.pem", "key.pem", "ca.pem"))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    for blob in cert.cert_chain_pems[1:]:
        blob.write_to_path(str(cert_path), append=True)
    cert.private_key_pem.write_to_path(str(key_path))
    ca.cert_pem.write_to_path(str(ca_path))
    gw = GatewayProcess(sandbox, directory, tls=(cert_path, key_path))
    gw.start()
    yield gw, ca_path
    gw.stop()


def test_over_tls_with_aws_chunked_uploads(
    tls_gateway: tuple[GatewayProcess, Path], sandbox: Sandbox, home: Path, tmp_path: Path
) -> None:
    gw, ca = tls_gateway
    env = creds_env(clean_env(home), gateway_creds(gw.issue("ci-bot", CI, "CIRunner")))
    tls = ("--ca-bundle", str(ca))

    def aws(*args: str) -> Any:
        result = run_aws(args, env=env, endpoint_url=gw.url, extra=tls)
        assert result.returncode == 0, result.stderr
        return result.json()

    assert aws("sts", "get-caller-identity")["Account"] == CI
    aws("s3", "mb", "s3://ci-tls")
    for size in (5 * 1024, 20 * 1024 * 1024):
        source = tmp_path / f"up-{size}.bin"
        source.write_bytes(os.urandom(size))
        aws("s3", "cp", str(source), f"s3://ci-tls/{source.name}")
        back = tmp_path / f"down-{size}.bin"
        aws("s3", "cp", f"s3://ci-tls/{source.name}", str(back))
        assert back.read_bytes() == source.read_bytes()
    # The CLI really used aws-chunked with a checksum trailer over TLS: the gateway decoded it.
    puts = [
        e["fields"]["bytes_in"]
        for e in audited_calls(gw.state_url, action="s3:PutObject", limit=1000)
    ]
    assert any(5 * 1024 < b < 6 * 1024 for b in puts), puts  # chunk framing adds bytes


def test_a_client_cannot_switch_moto_accounts(gateway: GatewayProcess) -> None:
    """moto honours x-moto-account-id; the gateway must never pass it on, signed or not."""
    creds = gateway.issue("dana", PROD, "ReadOnly")
    s3 = gateway.client("s3", creds)

    def add_header(request: Any, **_: Any) -> None:
        request.headers["x-moto-account-id"] = CI  # signed along with the rest

    s3.meta.events.register_first("before-sign.s3.ListBuckets", add_header)
    names = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert names == {"acme-prod-data", "acme-prod-logs"}


def test_the_sandbox_control_api_is_out_of_reach(gateway: GatewayProcess, sandbox: Sandbox) -> None:
    """moto answers /moto-api/* whatever the service: a bucket named moto-api must not
    let a client reset or read the sandbox through the gateway."""
    creds = gateway.issue("ci-bot", CI, "CIRunner")
    s3 = gateway.client("s3", creds, BotoConfig(s3={"addressing_style": "path"}))
    from botocore.exceptions import ClientError

    attempts: list[tuple[str, dict[str, str]]] = [
        ("create_multipart_upload", {"Bucket": "moto-api", "Key": "reset"}),
        ("get_object", {"Bucket": "moto-api", "Key": "data.json"}),
        ("get_object", {"Bucket": "latest", "Key": "meta-data/iam/security-credentials/x"}),
    ]
    for operation, params in attempts:
        with pytest.raises(ClientError) as info:
            getattr(s3, operation)(**params)
        assert info.value.response["Error"]["Code"] == "AccessDenied"
    prod = sandbox.client(PROD, "s3").list_buckets()["Buckets"]
    assert {b["Name"] for b in prod} >= {"acme-prod-data", "acme-prod-logs"}
