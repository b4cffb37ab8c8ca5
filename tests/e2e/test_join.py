"""A machine with no OIDC joins as its bot with a one-time token: the administrator makes it
(on the gateway host, or logged in through the API), the machine redeems it with
`iamgate join` (once), and `iamgate credentials`, `env`, `aws` and `profiles sync` then work
for the bot as for a person, until the bot is revoked. Real gateway and CLI processes, the
real aws CLI, moto upstream."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from harness import GatewayProcess, audited_calls, clean_env, run_aws
from people import enrol, iamgate, login

from iamgate.identity.aws_join import BODY, CONTENT_TYPE, SERVER_ID_HEADER
from iamgate.sandbox import Sandbox

pytestmark = pytest.mark.e2e

CI, PROD = "222222222222", "111111111111"
PROD_ROLE = f"arn:aws:iam::{PROD}:role/ReadOnly"
INSTANCE = "i-0123456789abcdef0"


@pytest.fixture(scope="module")
def gw(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    extra = {
        "bots": [
            {"name": "backup", "roles": ["ci-runner"]},
            {"name": "spare"},
            # servers running as acme-prod's ReadOnly role (an instance profile, say)
            {"name": "server", "roles": ["ci-runner"], "aws_join": [f"{PROD_ROLE}"]},
        ]
    }
    gateway = GatewayProcess(sandbox, tmp_path_factory.mktemp("gw"), extra=extra)
    gateway.start()
    gateway.wait_until_ready()
    yield gateway
    gateway.stop()


def machine(tmp_path: Path, name: str = "machine") -> dict[str, str]:
    env = clean_env(tmp_path)
    env["IAMGATE_HOME"] = str(tmp_path / name / "iamgate")
    env["AWS_CONFIG_FILE"] = str(tmp_path / name / "aws-config")
    return env


def host_token(gw: GatewayProcess, tmp_path: Path, bot: str = "backup") -> str:
    made = iamgate(
        clean_env(tmp_path), "bots", "token", bot, "--ttl", "30m", "--config", str(gw.config_path)
    )
    assert made.returncode == 0, made.stderr
    assert f"iamgate join {gw.url} --token TOKEN" in made.stderr
    return made.stdout.strip()


def events(gw: GatewayProcess, *types: str) -> list[dict[str, Any]]:
    return audited_calls(gw.state_url, wait=0, types=types, limit=1000)


def found(gw: GatewayProcess, kind: str, **fields: Any) -> list[dict[str, Any]]:
    """The events of `kind` with these fields, once there are some (the audit writer
    stores events in batches)."""
    deadline = time.monotonic() + 10
    while True:
        matching = [
            e
            for e in events(gw, kind)
            if all(e["fields"].get(name) == value for name, value in fields.items())
        ]
        if matching or time.monotonic() > deadline:
            return matching
        time.sleep(0.2)


def test_a_joined_machine_works_as_its_bot_until_revoked(
    gw: GatewayProcess, tmp_path: Path
) -> None:
    token = host_token(gw, tmp_path)
    assert token.startswith("igjoin1.")
    env = machine(tmp_path)
    joined = iamgate(env, "join", gw.url, "--token", token)
    assert joined.returncode == 0, joined.stderr
    assert f"joined {gw.url} as bot:backup until" in joined.stdout
    # once only: a second machine with the same token is refused
    again = iamgate(machine(tmp_path, "thief"), "join", gw.url, "--token", token)
    assert again.returncode != 0
    assert "not valid: unknown, already used or revoked" in again.stderr
    # as a person's login: credentials, env, aws and profiles sync
    listed = iamgate(env, "ls")
    assert listed.returncode == 0 and "acme-ci" in listed.stdout, listed.stderr
    creds = iamgate(env, "credentials", "--account", "acme-ci", "--role", "CIRunner")
    assert creds.returncode == 0, creds.stderr
    key = json.loads(creds.stdout)["AccessKeyId"]
    assert key.startswith("ASIA")
    lines = iamgate(env, "env", "--account", "acme-ci", "--role", "CIRunner")
    assert lines.returncode == 0 and "AWS_SECRET_ACCESS_KEY" in lines.stdout, lines.stderr
    who = iamgate(
        env, "aws", "--account", "acme-ci", "--role", "CIRunner", "--", "sts",
        "get-caller-identity", "--query", "Arn", "--output", "text",
    )  # fmt: skip
    assert who.returncode == 0, who.stderr
    assert who.stdout.strip() == f"arn:aws:sts::{CI}:assumed-role/CIRunner/bot=backup"
    synced = iamgate(env, "profiles", "sync")
    assert synced.returncode == 0, synced.stderr
    profile = run_aws(
        ["--profile", "iamgate-acme-ci-CIRunner", "ec2", "describe-instances"], env=env
    )
    assert profile.returncode == 0, profile.stderr
    # the trail: made by the operator, redeemed by the machine, the second refused; the
    # bot's credentials are issued to bot:backup under its join session
    session = json.loads((tmp_path / "machine" / "iamgate" / "session.json").read_text())
    token_id = token.split(".")[1]
    [made] = found(gw, "join.token.created", join_token=token_id)
    assert made["fields"]["bot"] == "backup"
    succeeded = found(gw, "join.succeeded", login_session=session["session"])
    assert [e["principal"] for e in succeeded] == ["bot:backup"]
    refused = found(gw, "join.refused", join_token=token_id)
    assert [e["fields"]["reason"] for e in refused] == ["used"]
    issued = found(gw, "credentials.issued", access_key_id=key)
    assert issued[0]["principal"] == "bot:backup"
    assert issued[0]["fields"]["login_session"] == session["session"]
    secret = token.split(".")[2]
    with open(gw.directory / "gateway.log", errors="replace") as log:  # never logged
        assert secret not in log.read()
    # renewed before it ends (cron): a new session; the old token is done, the key still good
    renewed = iamgate(env, "join", "--renew")
    assert renewed.returncode == 0, renewed.stderr
    assert f"renewed the session of bot:backup at {gw.url} until" in renewed.stdout
    now_held = json.loads((tmp_path / "machine" / "iamgate" / "session.json").read_text())
    assert now_held["session"] != session["session"]
    assert iamgate(env, "ls").returncode == 0
    # revoking the bot ends the machine's session and its credentials
    revoked = iamgate(
        clean_env(tmp_path), "sessions", "revoke", "--bot", "backup", "--config",
        str(gw.config_path),
    )  # fmt: skip
    assert revoked.returncode == 0, revoked.stderr
    after = run_aws(["--profile", "iamgate-acme-ci-CIRunner", "ec2", "describe-instances"], env=env)
    assert after.returncode != 0
    ended = iamgate(env, "ls")  # the session itself, which could mint another key
    assert ended.returncode != 0, ended.stdout


def test_an_administrator_makes_a_token_through_the_api(gw: GatewayProcess, tmp_path: Path) -> None:
    admin = enrol(gw, tmp_path, "joinadmin", roles="admin")
    assert login(gw, admin).returncode == 0
    made = iamgate(admin.env, "bots", "token", "spare", "--ttl", "5m")
    assert made.returncode == 0, made.stderr
    env = machine(tmp_path)
    joined = iamgate(env, "join", gw.url, "--token", made.stdout.strip())
    assert joined.returncode == 0, joined.stderr
    assert "as bot:spare" in joined.stdout
    # a person's login is not renewed as a machine's
    person = iamgate(admin.env, "join", "--renew")
    assert person.returncode != 0 and "a person logs in again" in person.stderr
    # spare has no gateway roles: it reaches nothing, and says so
    refused = iamgate(env, "credentials", "--account", "acme-ci", "--role", "CIRunner")
    assert refused.returncode != 0 and "no role of yours allows CIRunner" in refused.stderr
    # a bot's session administers nothing, and a person who does not administer makes none
    nobody = iamgate(env, "bots", "token", "spare")
    assert nobody.returncode != 0 and "not an administrator" in nobody.stderr
    dana = enrol(gw, tmp_path, "joindana", roles="data-scientist")
    assert login(gw, dana).returncode == 0
    denied = iamgate(dana.env, "bots", "token", "backup")
    assert denied.returncode != 0 and "not an administrator" in denied.stderr
    unknown = iamgate(admin.env, "bots", "token", "nobody")
    assert unknown.returncode != 0 and "no bot named 'nobody'" in unknown.stderr
    # a bot the administrator added to the store joins as well, with its stored roles
    added = iamgate(admin.env, "bots", "add", "stored", "--roles", "ci-runner")
    assert added.returncode == 0, added.stderr
    stored = iamgate(admin.env, "bots", "token", "stored")
    assert stored.returncode == 0, stored.stderr
    other = machine(tmp_path, "stored")
    assert iamgate(other, "join", gw.url, "--token", stored.stdout.strip()).returncode == 0
    reach = iamgate(other, "ls")
    assert reach.returncode == 0 and "acme-ci" in reach.stdout, reach.stderr


# -- AWS IAM join -------------------------------------------------------------------------


def instance_credentials(sandbox: Sandbox, role_arn: str) -> dict[str, str]:
    """What a server in AWS holds: its instance role's session credentials (moto's STS)."""
    sts = boto3.client(
        "sts",
        endpoint_url=sandbox.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=sandbox.gateway_credentials["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=sandbox.gateway_credentials["AWS_SECRET_ACCESS_KEY"],
    )
    c = sts.assume_role(RoleArn=role_arn, RoleSessionName=INSTANCE)["Credentials"]
    return {
        "AWS_ACCESS_KEY_ID": c["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": c["SecretAccessKey"],
        "AWS_SESSION_TOKEN": c["SessionToken"],
    }


def signed(
    gw: GatewayProcess,
    creds: dict[str, str],
    *,
    server_id: str | None = None,
    body: str = BODY,
    sign_server_id: bool = True,
) -> dict[str, Any]:
    target = requests.get(f"{gw.url}/api/v1/join/aws", timeout=30).json()
    headers = {"Content-Type": CONTENT_TYPE}
    if sign_server_id:
        headers[SERVER_ID_HEADER] = server_id or target["server_id"]
    request = AWSRequest("POST", target["sts_endpoint"] + "/", data=body, headers=headers)
    key = Credentials(
        creds["AWS_ACCESS_KEY_ID"], creds["AWS_SECRET_ACCESS_KEY"], creds["AWS_SESSION_TOKEN"]
    )
    SigV4Auth(key, "sts", target["region"]).add_auth(request)
    sent = dict(request.headers.items())
    if not sign_server_id:
        sent[SERVER_ID_HEADER] = target["server_id"]  # added after signing
    return {"bot": "server", "headers": sent, "body": body}


def test_a_server_in_aws_joins_by_its_iam_role(
    gw: GatewayProcess, sandbox: Sandbox, tmp_path: Path
) -> None:
    env = machine(tmp_path) | instance_credentials(sandbox, PROD_ROLE)
    joined = iamgate(env, "join", gw.url, "--bot", "server", "--aws")
    assert joined.returncode == 0, joined.stderr
    assert f"joined {gw.url} as bot:server until" in joined.stdout
    # the machine's own AWS credentials are not what it uses through the gateway
    runs = {k: v for k, v in env.items() if not k.startswith("AWS_")} | {
        "IAMGATE_HOME": env["IAMGATE_HOME"]
    }
    who = iamgate(
        runs, "aws", "--account", "acme-ci", "--role", "CIRunner", "--", "sts",
        "get-caller-identity", "--query", "Arn", "--output", "text",
    )  # fmt: skip
    assert who.returncode == 0, who.stderr
    assert who.stdout.strip() == f"arn:aws:sts::{CI}:assumed-role/CIRunner/bot=server"
    session = json.loads((tmp_path / "machine" / "iamgate" / "session.json").read_text())
    [succeeded] = found(gw, "join.succeeded", login_session=session["session"])
    assert succeeded["principal"] == "bot:server"
    assert succeeded["fields"]["via"] == "aws"
    assert succeeded["fields"]["arn"] == f"arn:aws:sts::{PROD}:assumed-role/ReadOnly/{INSTANCE}"
    assert succeeded["fields"]["pattern"] == PROD_ROLE


def test_aws_join_refusals_name_their_cause(
    gw: GatewayProcess, sandbox: Sandbox, tmp_path: Path
) -> None:
    # another IAM identity than the bot's: refused, naming the ARN
    other = machine(tmp_path) | instance_credentials(sandbox, f"arn:aws:iam::{CI}:role/CIRunner")
    refused = iamgate(other, "join", gw.url, "--bot", "server", "--aws")
    assert refused.returncode != 0
    assert f"arn:aws:sts::{CI}:assumed-role/CIRunner/{INSTANCE} may not join as bot server" in (
        refused.stderr
    )
    creds = instance_credentials(sandbox, PROD_ROLE)

    def join(body: dict[str, Any]) -> tuple[int, str]:
        answer = requests.post(f"{gw.url}/api/v1/join/aws", json=body, timeout=30)
        return answer.status_code, answer.text

    # made for another gateway: not replayable here
    status, text = join(signed(gw, creds, server_id="https://elsewhere.example"))
    assert status == 401 and "names the gateway 'https://elsewhere.example'" in text
    # the server id added after signing (another gateway could change it): refused
    status, text = join(signed(gw, creds, sign_server_id=False))
    assert status == 401 and "must be among the signed headers" in text
    # anything but GetCallerIdentity is not sent
    status, text = join(signed(gw, creds, body="Action=GetSessionToken&Version=2011-06-15"))
    assert status == 401 and "GetCallerIdentity" in text
    # a bot that does not join by AWS IAM
    status, text = join(signed(gw, creds) | {"bot": "nobody"})
    assert status == 401 and "no bot named 'nobody'" in text
    wanted = {
        "aws-no-match",
        "aws-wrong-server",
        "aws-server-id-unsigned",
        "aws-not-get-caller-identity",
        "no-such-bot",
    }
    deadline = time.monotonic() + 10  # the audit writer stores them in batches
    while True:
        reasons = {
            e["fields"]["reason"]
            for e in events(gw, "join.refused")
            if e["fields"].get("via") == "aws"
        }
        if wanted <= reasons or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert wanted <= reasons
