"""CI jobs with no secret: a job's OIDC token, from a real issuer process, exchanged by the
gateway itself (`sts:AssumeRoleWithWebIdentity`, never forwarded) for a bot's gateway
credentials; the real `aws` CLI and boto3 do the exchange from four environment variables.
Every refusal names its cause, in STS's error shape, and is audited; the job's claims are
on every record of its calls."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import signal
import subprocess
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import jwt
import pytest
import yaml
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization
from harness import BIN, GatewayProcess, audited_calls, clean_env, run_aws
from issuer import RunningIssuer, running_issuer
from people import enrol, iamgate, login

from iamgate.sandbox import Sandbox

pytestmark = pytest.mark.e2e
AUDIENCE = "https://iamgate.example/ci"
CI, PROD = "222222222222", "111111111111"
CI_ROLE = f"arn:aws:iam::{CI}:role/CIRunner"
EXCHANGE = "sts:AssumeRoleWithWebIdentity"
UNREACHABLE = "http://127.0.0.1:9"  # an issuer whose keys cannot be fetched (discard port)


def _trust(issuer: RunningIssuer, rotating: RunningIssuer) -> dict[str, Any]:
    def binding(name: str, bot: str, repository: str, **claims: Any) -> dict[str, Any]:
        return {
            "name": name,
            "issuer": issuer.url,
            "bot": bot,
            "claims": {"repository": repository, **claims},
        }

    return {
        "roles": [
            {
                "name": "ci-brief",
                "allow": {"accounts": {"name": ["acme-ci"]}, "aws_roles": ["CIRunner"]},
                "max_session_ttl": "20s",
            }
        ],
        "bots": [
            {"name": "infra-deploy", "roles": ["ci-runner"]},
            {"name": "brief", "roles": ["ci-brief"]},
            {"name": "revocable", "roles": ["ci-runner"]},
            {"name": "doomed", "roles": ["ci-runner"]},
            {"name": "rotated", "roles": ["ci-runner"]},
        ],
        "oidc": {
            "issuers": [
                {"url": issuer.url, "audience": AUDIENCE, "leeway": "5s"},
                {"url": rotating.url, "audience": [AUDIENCE], "algorithms": ["RS256"]},
                {"url": UNREACHABLE, "audience": AUDIENCE, "jwks_url": f"{UNREACHABLE}/keys"},
            ],
            "bindings": [
                binding("ci-main", "infra-deploy", "acme/infra", ref="refs/heads/main"),
                {
                    "name": "no-pull-request-target",
                    "issuer": issuer.url,
                    "deny": True,
                    "claims": {"event_name": "pull_request_target"},
                },
                binding("brief-jobs", "brief", "acme/brief"),
                binding("revocable-jobs", "revocable", "acme/revocable"),
                binding("doomed-jobs", "doomed", "acme/doomed"),
                {
                    "name": "rotated-jobs",
                    "issuer": rotating.url,
                    "bot": "rotated",
                    "claims": {"repository": "acme/*"},
                },
            ],
        },
    }


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningIssuer]:
    with running_issuer(tmp_path_factory.mktemp("issuer")) as running:
        yield running


@pytest.fixture(scope="module")
def rotating(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningIssuer]:
    """An issuer of its own, whose key the rotation test replaces."""
    with running_issuer(tmp_path_factory.mktemp("rotating")) as running:
        yield running


@pytest.fixture(scope="module")
def gw(
    sandbox: Sandbox,
    issuer: RunningIssuer,
    rotating: RunningIssuer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(sandbox, tmp_path_factory.mktemp("gw"), extra=_trust(issuer, rotating))
    gateway.start()
    gateway.wait_until_ready()
    yield gateway
    gateway.stop()


def sts(gw: GatewayProcess, marker: str = "") -> Any:
    """An STS client with no credentials: the exchange is unsigned, as SDKs send it."""
    session: Any = boto3.Session()
    return session.client(
        "sts",
        endpoint_url=gw.url,
        region_name="us-east-1",
        config=BotoConfig(retries={"total_max_attempts": 1}, user_agent_extra=marker),
    )


def exchange(
    gw: GatewayProcess, token: str, role_arn: str = CI_ROLE, marker: str = "", **more: Any
) -> dict[str, Any]:
    answer: dict[str, Any] = sts(gw, marker).assume_role_with_web_identity(
        RoleArn=role_arn, RoleSessionName="job", WebIdentityToken=token, **more
    )
    return answer


def refused(gw: GatewayProcess, token: str, role_arn: str = CI_ROLE) -> tuple[str, str, Any]:
    """(error code, message, the refusal's audit record)."""
    marker = f"test/{uuid.uuid4().hex}"
    with pytest.raises(ClientError) as caught:
        exchange(gw, token, role_arn, marker)
    error = caught.value.response["Error"]
    return error["Code"], error["Message"], own_record(gw, marker, decision="denied")


def own_record(gw: GatewayProcess, marker: str, **filters: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        for event in audited_calls(gw.state_url, action=EXCHANGE, wait=0, **filters):
            if marker in (event.get("user_agent") or ""):
                return event
        assert time.monotonic() < deadline, f"no audit record for {marker}"
        time.sleep(0.1)


def job_env(gw: GatewayProcess, tmp: Path, token: str, role_arn: str = CI_ROLE) -> dict[str, str]:
    """A CI job's environment: no key, no secret; four variables and a token file."""
    token_file = tmp / "job-token"
    token_file.write_text(token)
    env = clean_env(tmp)
    env |= {
        "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file),
        "AWS_ROLE_ARN": role_arn,
        "AWS_ENDPOINT_URL": gw.url,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    return env


def run_python(env: dict[str, str], script: str, timeout: float = 120) -> str:
    done = subprocess.run(
        [str(BIN / "python"), "-c", textwrap.dedent(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def run_id() -> str:
    return str(uuid.uuid4().int % 10**12)


# -- the job's story ---------------------------------------------------------------------


def test_a_job_with_only_the_four_variables_runs_the_aws_cli_and_boto3_in_ci(
    gw: GatewayProcess, issuer: RunningIssuer, tmp_path: Path
) -> None:
    run = run_id()
    env = job_env(gw, tmp_path, issuer.token(AUDIENCE, run_id=run, sha="c0ffee" * 6 + "abcd"))

    whoami = run_aws(["sts", "get-caller-identity"], env=env)
    assert whoami.returncode == 0, whoami.stderr
    assert whoami.json()["Account"] == CI
    assert "assumed-role/CIRunner/bot=infra-deploy" in whoami.json()["Arn"]
    made = run_aws(["s3", "mb", f"s3://job-{run}"], env=env)
    assert made.returncode == 0, made.stderr

    listed = run_python(
        env,
        f"""
        import boto3
        s3 = boto3.client("s3")
        s3.put_object(Bucket="job-{run}", Key="report.txt", Body=b"built")
        print(s3.list_objects_v2(Bucket="job-{run}")["Contents"][0]["Key"])
        print(boto3.client("ec2").describe_instances()["ResponseMetadata"]["HTTPStatusCode"])
        """,
    )
    assert listed.split() == ["report.txt", "200"]

    # Every call is the bot's and names the job; the exchanges are recorded with the binding.
    calls = audited_calls(gw.state_url, principal="bot:infra-deploy", action="s3:PutObject")
    mine = [c for c in calls if c["fields"].get("job", {}).get("run_id") == run]
    assert mine and mine[0]["fields"]["binding"] == "ci-main"
    job = mine[0]["fields"]["job"]
    assert job["repository"] == "acme/infra" and job["sha"] == "c0ffee" * 6 + "abcd"
    assert job["workflow"] == "deploy" and job["actor"] == "dana"
    exchanges = [
        e
        for e in audited_calls(gw.state_url, principal="bot:infra-deploy", action=EXCHANGE)
        if e["fields"].get("job", {}).get("run_id") == run
    ]
    assert exchanges and all(e["fields"]["decision"] == "allowed" for e in exchanges)
    assert exchanges[0]["fields"]["web_identity"]["binding"] == "ci-main"
    assert exchanges[0]["fields"]["status"] == 200
    assert exchanges[0]["fields"]["params"]["WebIdentityToken"] == "[redacted]"

    # `iamgate audit search --claim` finds the job's calls, and only them.
    found = search_audit(gw, "--claim", f"run_id={run}", "--limit", "200")
    actions = {e["fields"]["action"] for e in found}
    assert {"s3:CreateBucket", "s3:PutObject", "s3:ListBucket", EXCHANGE} <= actions
    assert "ec2:DescribeInstances" in actions and "sts:GetCallerIdentity" in actions
    assert all(e["fields"]["job"]["run_id"] == run for e in found)
    assert all(e["principal"] == "bot:infra-deploy" for e in found)
    by_sha = search_audit(gw, "--claim", "sha=" + "c0ffee" * 6 + "abcd", "--action", "s3:*")
    assert {e["fields"]["request_id"] for e in by_sha} == {
        e["fields"]["request_id"] for e in found if e["fields"]["action"].startswith("s3:")
    }
    assert search_audit(gw, "--claim", f"run_id={run}0") == []


def search_audit(gw: GatewayProcess, *args: str) -> list[dict[str, Any]]:
    """`iamgate audit search ARGS --json` on the gateway host."""
    done = subprocess.run(
        [str(BIN / "iamgate"), "audit", "search", *args, "--json", "--config", str(gw.config_path)],
        capture_output=True,
        text=True,
        check=False,
        env=clean_env(gw.directory),
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_the_jobs_guardrail_holds_for_the_bot(
    gw: GatewayProcess, sandbox: Sandbox, issuer: RunningIssuer, tmp_path: Path
) -> None:
    """The design's second story, for a job with no secret: 10 instances, not 1000."""
    env = job_env(gw, tmp_path, issuer.token(AUDIENCE))
    launch = ["ec2", "run-instances", "--image-id", sandbox.ami_id, "--count"]
    ten = run_aws([*launch, "10"], env=env)
    assert ten.returncode == 0, ten.stderr
    assert len(ten.json()["Instances"]) == 10
    thousand = run_aws([*launch, "1000"], env=env)
    assert thousand.returncode != 0 and "(UnauthorizedOperation)" in thousand.stderr
    assert "guardrail on ec2:RunInstances: MaxCount=1000 is above the limit of 10" in (
        thousand.stderr
    )


def test_the_reply_is_stss_own_shape(gw: GatewayProcess, issuer: RunningIssuer) -> None:
    answer = exchange(gw, issuer.token(AUDIENCE), DurationSeconds=900)
    creds = answer["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA") and len(creds["AccessKeyId"]) == 20
    assert creds["SessionToken"].startswith("iamgate1.")
    assert answer["SourceIdentity"] == "bot=infra-deploy"
    assert answer["AssumedRoleUser"]["Arn"] == f"arn:aws:sts::{CI}:assumed-role/CIRunner/job"
    assert answer["Provider"] == issuer.url and answer["Audience"] == AUDIENCE
    assert answer["SubjectFromWebIdentityToken"] == "repo:acme/infra:ref:refs/heads/main"


def test_duration_seconds_is_honoured_within_the_roles_max_session_ttl(
    gw: GatewayProcess, issuer: RunningIssuer
) -> None:
    def lifetime(token: str, **more: Any) -> range:
        """The whole seconds the credential can have been given: the gateway's clock read
        between `before` and `after`, its expiry cut to the second."""
        before = time.time()
        expiration = exchange(gw, token, **more)["Credentials"]["Expiration"].timestamp()
        after = time.time()
        return range(int(expiration - after), int(expiration - before) + 2)

    assert 900 in lifetime(issuer.token(AUDIENCE), DurationSeconds=900)
    assert 3600 in lifetime(issuer.token(AUDIENCE))  # STS's default: an hour
    # ci-runner's max_session_ttl is 1h: two hours asked is an hour given.
    assert 3600 in lifetime(issuer.token(AUDIENCE), DurationSeconds=7200)
    assert 20 in lifetime(issuer.token(AUDIENCE, repository="acme/brief"), DurationSeconds=900)


def test_the_same_token_for_the_prod_account_is_refused_naming_the_binding(
    gw: GatewayProcess, issuer: RunningIssuer, tmp_path: Path
) -> None:
    env = job_env(gw, tmp_path, issuer.token(AUDIENCE), f"arn:aws:iam::{PROD}:role/CIRunner")
    result = run_aws(["sts", "get-caller-identity"], env=env)
    assert result.returncode != 0
    assert "AccessDenied" in result.stderr
    assert "bot `infra-deploy` (binding `ci-main`) may not use role CIRunner" in result.stderr
    assert "acme-prod" in result.stderr


# -- every refusal, naming its cause -----------------------------------------------------


def _now() -> int:
    return int(time.time())


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")
    return _unb64(header), _unb64(payload), signature


def _unb64(part: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _json(value: dict[str, Any]) -> str:
    return _b64(json.dumps(value).encode())


@pytest.mark.parametrize(
    ("claims", "code", "cause"),
    [
        ({"aud": "https://elsewhere.example"}, "InvalidIdentityToken", "Incorrect token audience"),
        ({"iss": "https://token.actions.example.com"}, "InvalidIdentityToken", "trusts no OIDC"),
        (
            {"iat": _now() - 900, "nbf": _now() - 900, "exp": _now() - 600},
            "ExpiredTokenException",
            "Token expired",
        ),
        ({"nbf": _now() + 3600}, "InvalidIdentityToken", "not valid before"),
    ],
    ids=["wrong-audience", "wrong-issuer", "expired", "not-yet-valid"],
)
def test_a_token_the_gateway_does_not_accept_is_refused_naming_why(
    gw: GatewayProcess, issuer: RunningIssuer, claims: dict[str, Any], code: str, cause: str
) -> None:
    audience = claims.pop("aud", AUDIENCE)
    got, message, record = refused(gw, issuer.token(audience, **claims))
    assert got == code and cause in message, message
    reason = "web-identity-expired-token" if "expired" in cause.lower() else "web-identity-inv"
    assert record["fields"]["reason"].startswith(reason)
    assert cause in record["fields"]["reason"]
    assert record["principal"] is None and "job" not in record["fields"]


def test_parameters_sts_would_reject_are_a_validation_error(
    gw: GatewayProcess, issuer: RunningIssuer
) -> None:
    code, message, record = refused(gw, issuer.token(AUDIENCE), "arn:aws:iam::12:role/CIRunner")
    assert code == "ValidationError" and "arn:aws:iam::12:role/CIRunner is invalid" in message
    assert record["fields"]["reason"].startswith("web-identity-invalid-call")


def test_an_issuer_whose_keys_cannot_be_fetched_is_an_idp_communication_error(
    gw: GatewayProcess, issuer: RunningIssuer
) -> None:
    code, message, record = refused(gw, issuer.token(AUDIENCE, iss=UNREACHABLE))
    assert code == "IDPCommunicationError" and "could not be fetched; try again" in message
    assert record["fields"]["reason"].startswith("web-identity-issuer-unreachable")


def test_a_key_the_issuer_does_not_publish_is_refused(
    gw: GatewayProcess, issuer: RunningIssuer
) -> None:
    header, payload, signature = _parts(issuer.token(AUDIENCE))
    forged = ".".join((_json({**header, "kid": "not-a-key"}), _json(payload), signature))
    code, message, _ = refused(gw, forged)
    assert code == "InvalidIdentityToken" and "no signing key with kid 'not-a-key'" in message


def test_a_bad_signature_is_refused(gw: GatewayProcess, issuer: RunningIssuer) -> None:
    header, payload, signature = _parts(issuer.token(AUDIENCE))
    edited = {**payload, "repository": "acme/infra-evil"}
    code, message, _ = refused(gw, ".".join((_json(header), _json(edited), signature)))
    assert code == "InvalidIdentityToken" and "signature does not verify" in message


def test_alg_none_is_refused(gw: GatewayProcess, issuer: RunningIssuer) -> None:
    header, payload, _ = _parts(issuer.token(AUDIENCE))
    unsigned = ".".join((_json({**header, "alg": "none"}), _json(payload), ""))
    code, message, _ = refused(gw, unsigned)
    assert code == "InvalidIdentityToken" and "algorithm 'none' is not allowed" in message


def test_hs256_signed_with_the_issuers_public_key_is_refused(
    gw: GatewayProcess, issuer: RunningIssuer
) -> None:
    header, payload, _ = _parts(issuer.token(AUDIENCE))
    (jwk,) = issuer.keys()["keys"]
    public_pem = jwt.PyJWK(jwk).key.public_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    signed_part = f"{_json({**header, 'alg': 'HS256'})}.{_json(payload)}"
    mac = hmac.new(public_pem, signed_part.encode(), hashlib.sha256).digest()
    code, message, _ = refused(gw, f"{signed_part}.{_b64(mac)}")
    assert code == "InvalidIdentityToken" and "algorithm 'HS256' is not allowed" in message


def test_a_claim_no_binding_accepts_is_refused_naming_claim_and_binding(
    gw: GatewayProcess, issuer: RunningIssuer
) -> None:
    run = run_id()
    code, message, record = refused(
        gw, issuer.token(AUDIENCE, ref="refs/heads/feature", run_id=run)
    )
    assert code == "AccessDenied"
    assert (
        "claim `ref` is `refs/heads/feature`; binding `ci-main` requires `refs/heads/main`"
        in message
    )
    # The token was genuine: its record names the job that tried.
    assert record["fields"]["reason"].startswith("web-identity-denied")
    assert record["fields"]["job"]["run_id"] == run


def test_a_deny_binding_is_checked_first(gw: GatewayProcess, issuer: RunningIssuer) -> None:
    code, message, _ = refused(gw, issuer.token(AUDIENCE, event_name="pull_request_target"))
    assert code == "AccessDenied"
    assert "binding `no-pull-request-target` denies this token" in message


# -- a job's credentials over time ---------------------------------------------------------


def test_a_long_running_client_keeps_working_across_credential_expiry(
    gw: GatewayProcess, issuer: RunningIssuer, tmp_path: Path
) -> None:
    env = job_env(gw, tmp_path, issuer.token(AUDIENCE, repository="acme/brief"))
    out = run_python(
        env,
        """
        import time, boto3
        session = boto3.Session()
        sts = session.client("sts")
        keys = []
        for _ in range(2):
            assert sts.get_caller_identity()["Account"] == "222222222222"
            keys.append(session.get_credentials().get_frozen_credentials().access_key)
            time.sleep(22)  # the bot's credentials live 20 s
        assert sts.get_caller_identity()["Account"] == "222222222222"
        print(" ".join(keys))
        """,
    )
    first, second = out.split()
    assert first != second  # the SDK exchanged the token again by itself


def _bot_client(gw: GatewayProcess, creds: dict[str, Any]) -> Any:
    session: Any = boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name="us-east-1",
    )
    return session.client(
        "sts", endpoint_url=gw.url, config=BotoConfig(retries={"total_max_attempts": 1})
    )


def _stops(client: Any) -> str:
    """The message of the first refused call, within a few seconds."""
    deadline = time.monotonic() + 10
    while True:
        try:
            client.get_caller_identity()
        except ClientError as exc:
            return str(exc.response["Error"]["Message"])
        assert time.monotonic() < deadline, "the credential still works"
        time.sleep(0.2)


def test_revoking_the_bot_stops_its_live_credentials(
    gw: GatewayProcess, issuer: RunningIssuer
) -> None:
    creds = exchange(gw, issuer.token(AUDIENCE, repository="acme/revocable"))["Credentials"]
    client = _bot_client(gw, creds)
    assert client.get_caller_identity()["Account"] == CI
    # The key the exchange issued is known: what it did, and whose it is.
    key = creds["AccessKeyId"]
    (issued,) = audited_calls(gw.state_url, access_key_id=key, type="credentials.issued", wait=0)
    assert issued["principal"] == "bot:revocable"
    assert issued["fields"]["binding"] == "revocable-jobs"
    assert issued["fields"]["issued_by"] == "web-identity"
    (call,) = audited_calls(gw.state_url, access_key_id=key, action="sts:GetCallerIdentity")
    assert call["principal"] == "bot:revocable" and call["fields"]["job"]["repository"]
    config = str(gw.config_path)
    done = subprocess.run(
        [str(BIN / "iamgate"), "sessions", "revoke", "--bot", "revocable", "--config", config],
        capture_output=True,
        text=True,
        check=False,
        env=clean_env(gw.directory),
    )
    assert done.returncode == 0, done.stderr
    assert "revoked" in _stops(client)
    revocations = audited_calls(gw.state_url, type="session.revoked", wait=0)
    assert any(e["fields"].get("user") == "bot:revocable" for e in revocations)


def test_removing_the_binding_stops_its_live_credentials(
    gw: GatewayProcess, issuer: RunningIssuer
) -> None:
    token = issuer.token(AUDIENCE, repository="acme/doomed")
    client = _bot_client(gw, exchange(gw, token)["Credentials"])
    assert client.get_caller_identity()["Account"] == CI
    settings = yaml.safe_load(gw.config_path.read_text())
    bindings = settings["oidc"]["bindings"]
    settings["oidc"]["bindings"] = [b for b in bindings if b["name"] != "doomed-jobs"]
    gw.config_path.write_text(yaml.safe_dump(settings))
    assert gw.process is not None
    os.kill(gw.process.pid, signal.SIGHUP)
    assert "binding `doomed-jobs` no longer maps tokens to bot `doomed`" in _stops(client)
    (loaded,) = search_audit(gw, "--type", "config.loaded", "--limit", "1")
    assert loaded["fields"]["reloaded"] and "doomed-jobs" not in loaded["fields"]["oidc_bindings"]
    assert "ci-main" in loaded["fields"]["oidc_bindings"]
    with pytest.raises(ClientError) as again:
        exchange(gw, token)
    assert again.value.response["Error"]["Code"] == "AccessDenied"


def _exchanged_once_fetched(gw: GatewayProcess, rotating: RunningIssuer) -> float:
    """Rotate the issuer's key and exchange a token of the new key, retrying until the
    gateway's once-a-minute refetch finds it; when that fetch happened."""
    rotating.rotate()
    token = rotating.token(AUDIENCE, repository="acme/rotated")
    deadline = time.monotonic() + 75
    while True:
        fetched = rotating.jwks_fetches()
        try:
            exchange(gw, token)
        except ClientError as exc:
            assert "no signing key with kid" in exc.response["Error"]["Message"]
            assert time.monotonic() < deadline, "the rotated key was never fetched"
            time.sleep(1)
            continue
        assert rotating.jwks_fetches() > fetched  # this exchange fetched the new keys
        return time.monotonic()


def test_a_rotated_key_works_after_one_refetch(gw: GatewayProcess, rotating: RunningIssuer) -> None:
    last_fetch = _exchanged_once_fetched(gw, rotating)
    rotating.rotate()
    rotated = rotating.token(AUDIENCE, repository="acme/rotated")
    fetched = rotating.jwks_fetches()
    # Within a minute of the gateway's last fetch of the keys, the new key id is unknown:
    # tokens naming it (a flood of them) cost the issuer no fetch ...
    for _ in range(10):
        code, message, _ = refused(gw, rotated)
        assert code == "InvalidIdentityToken" and "no signing key with kid" in message
    assert rotating.jwks_fetches() == fetched
    time.sleep(max(0.0, last_fetch + 61 - time.monotonic()))
    # ... and then one refetch finds it.
    assert exchange(gw, rotated)["Credentials"]["AccessKeyId"].startswith("ASIA")
    assert rotating.jwks_fetches() == fetched + 1


def test_an_administrator_finds_a_jobs_calls_through_the_api(
    gw: GatewayProcess, issuer: RunningIssuer, tmp_path: Path
) -> None:
    run = run_id()
    creds = exchange(gw, issuer.token(AUDIENCE, run_id=run))["Credentials"]
    _bot_client(gw, creds).get_caller_identity()
    admin = enrol(gw, tmp_path, "ci-auditor", roles="admin")
    assert login(gw, admin).returncode == 0
    found = iamgate(admin.env, "audit", "search", "--claim", f"run_id={run}", "--json")
    assert found.returncode == 0, found.stderr
    events = [json.loads(line) for line in found.stdout.splitlines()]
    assert {e["fields"]["action"] for e in events} == {EXCHANGE, "sts:GetCallerIdentity"}
    assert {e["principal"] for e in events} == {"bot:infra-deploy"}
    wrong = iamgate(admin.env, "audit", "search", "--claim", "run_id")
    assert wrong.returncode != 0 and "is not NAME=VALUE" in wrong.stderr
