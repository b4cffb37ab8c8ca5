"""Bots managed like users: `iamgate bots add/ls/roles/rm` on the gateway host and as the
administrator logged in, the JSON API's /bots, and the admin Bots page in headless
Chromium. A bot added in the store is one a binding of the configuration can map a job to:
its job exchanges a token of a real issuer process with the real aws CLI and boto3, and
revoking or removing the bot stops the job's credentials on their next call."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError
from harness import GatewayProcess, audited_calls, clean_env, run_aws
from issuer import RunningIssuer, running_issuer
from people import PASSWORD, Person, enrol, iamgate, login
from playwright.sync_api import Browser, BrowserContext, Page, expect

from iamgate.sandbox import Sandbox

pytestmark = pytest.mark.e2e
AUDIENCE = "https://iamgate.example/ci"
CI = "222222222222"
CI_ROLE = f"arn:aws:iam::{CI}:role/CIRunner"


def _trust(issuer: RunningIssuer) -> dict[str, Any]:
    """Bindings are the configuration's; of the bots they name only one is configured:
    the others are added in the store by the tests, as an administrator would."""

    def binding(name: str, bot: str) -> dict[str, Any]:
        return {"name": name, "bot": bot, "claims": {"repository": f"acme/{bot}"}}

    return {
        "bots": [{"name": "from-config", "roles": ["ci-runner"]}],
        "oidc": {
            "issuers": [{"url": issuer.url, "audience": AUDIENCE}],
            "bindings": [
                binding("deploys", "deployer"),
                binding("remote-jobs", "remote-bot"),
                binding("api-jobs", "api-bot"),
                binding("page-jobs", "page-bot"),
            ],
        },
    }


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningIssuer]:
    with running_issuer(tmp_path_factory.mktemp("issuer")) as running:
        yield running


@pytest.fixture(scope="module")
def gw(
    sandbox: Sandbox, issuer: RunningIssuer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(sandbox, tmp_path_factory.mktemp("gw"), extra=_trust(issuer))
    gateway.start()
    gateway.wait_until_ready()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def admin(gw: GatewayProcess, tmp_path_factory: pytest.TempPathFactory) -> Person:
    loader = enrol(gw, tmp_path_factory.mktemp("admin"), "loader")  # admin in the config
    assert login(gw, loader).returncode == 0
    return loader


def host(gw: GatewayProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """An `iamgate` command on the gateway host, with --config."""
    return iamgate(clean_env(gw.directory), *args, "--config", str(gw.config_path))


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout


def exchange(gw: GatewayProcess, issuer: RunningIssuer, bot: str) -> dict[str, Any]:
    sts: Any = boto3.Session().client(
        "sts",
        endpoint_url=gw.url,
        region_name="us-east-1",
        config=BotoConfig(retries={"total_max_attempts": 1}),
    )
    token = issuer.token(AUDIENCE, repository=f"acme/{bot}")
    answer: dict[str, Any] = sts.assume_role_with_web_identity(
        RoleArn=CI_ROLE, RoleSessionName="job", WebIdentityToken=token
    )
    return answer


def job_client(gw: GatewayProcess, creds: dict[str, Any]) -> Any:
    """A long-running job's STS client, holding the credentials it was given."""
    session: Any = boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name="us-east-1",
    )
    return session.client(
        "sts", endpoint_url=gw.url, config=BotoConfig(retries={"total_max_attempts": 1})
    )


def stops(client: Any) -> str:
    """The message of the client's first refused call, within a few seconds."""
    deadline = time.monotonic() + 10
    while True:
        try:
            client.get_caller_identity()
        except ClientError as exc:
            return str(exc.response["Error"]["Message"])
        assert time.monotonic() < deadline, "the credential still works"
        time.sleep(0.2)


def job_env(gw: GatewayProcess, tmp: Path, token: str) -> dict[str, str]:
    """A CI job's environment: no key, no secret; four variables and a token file."""
    token_file = tmp / "job-token"
    token_file.write_text(token)
    return clean_env(tmp) | {
        "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file),
        "AWS_ROLE_ARN": CI_ROLE,
        "AWS_ENDPOINT_URL": gw.url,
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def test_a_bot_added_on_the_gateway_host_is_what_its_binding_maps_jobs_to(
    gw: GatewayProcess, issuer: RunningIssuer, tmp_path: Path
) -> None:
    with pytest.raises(ClientError) as before:
        exchange(gw, issuer, "deployer")
    assert "names bot `deployer`, which does not exist" in str(before.value)

    added = ok(host(gw, "bots", "add", "deployer", "--roles", "ci-runner"))
    assert "bot deployer added" in added
    env = job_env(gw, tmp_path, issuer.token(AUDIENCE, repository="acme/deployer"))
    whoami = run_aws(["sts", "get-caller-identity"], env=env)
    assert whoami.returncode == 0, whoami.stderr
    assert whoami.json()["Account"] == CI and "bot=deployer" in whoami.json()["Arn"]

    (deployer,) = [b for b in json.loads(ok(host(gw, "bots", "ls", "--json"))) if
                   b["name"] == "deployer"]  # fmt: skip
    assert deployer["source"] == "store" and deployer["roles"] == ["ci-runner"]
    assert [x["name"] for x in deployer["bindings"]] == ["deploys"]
    assert deployer["last_exchange"]["account_id"] == CI
    assert len(deployer["live_credentials"]) == 1
    table = ok(host(gw, "bots", "ls"))
    assert "deployer" in table and "from-config" in table

    # The configuration's bot is its own: neither changed nor removed here.
    refused = host(gw, "bots", "rm", "from-config")
    assert refused.returncode != 0 and "bootstrap bot" in refused.stderr
    unknown = host(gw, "bots", "roles", "deployer", "ci-runner,nobody")
    assert unknown.returncode != 0 and "unknown gateway roles: nobody" in unknown.stderr
    assert "now holds: ci-runner" in ok(host(gw, "bots", "roles", "deployer", "ci-runner"))

    # Removed: the job's live credential stops on its next call, and its token is refused.
    client = job_client(gw, exchange(gw, issuer, "deployer")["Credentials"])
    assert client.get_caller_identity()["Account"] == CI
    assert "removed" in ok(host(gw, "bots", "rm", "deployer"))
    assert "iamgate revoked it" in stops(client)
    with pytest.raises(ClientError):
        exchange(gw, issuer, "deployer")
    changes = audited_calls(gw.state_url, type="bot.changed", wait=0)
    assert {e["fields"]["change"] for e in changes if e["fields"]["bot"] == "deployer"} == {
        "added",
        "roles",
        "removed",
    }


def test_an_administrator_logged_in_manages_bots_through_the_api(
    gw: GatewayProcess, issuer: RunningIssuer, admin: Person, tmp_path: Path
) -> None:
    ok(iamgate(admin.env, "bots", "add", "remote-bot", "--roles", "ci-runner"))
    client = job_client(gw, exchange(gw, issuer, "remote-bot")["Credentials"])
    assert client.get_caller_identity()["Account"] == CI
    remote = json.loads(ok(iamgate(admin.env, "bots", "ls", "--json")))
    local = json.loads(ok(host(gw, "bots", "ls", "--json")))
    assert remote == local
    (mine,) = [b for b in remote if b["name"] == "remote-bot"]
    assert len(mine["live_credentials"]) == 1 and mine["principal"] == "bot:remote-bot"

    revoked = ok(iamgate(admin.env, "sessions", "revoke", "--bot", "remote-bot"))
    assert "(1 live)" in revoked
    assert "iamgate revoked it" in stops(client)
    # A job may exchange again: a credential issued after the revocation works. Credentials
    # carry their issue time in whole seconds, and one issued within the revocation's
    # second counts as revoked (the safe side), so the job's next exchange comes after it.
    time.sleep(1.1)
    again = job_client(gw, exchange(gw, issuer, "remote-bot")["Credentials"])
    assert again.get_caller_identity()["Account"] == CI
    ok(iamgate(admin.env, "bots", "roles", "remote-bot", ""))
    ok(iamgate(admin.env, "bots", "rm", "remote-bot"))
    assert "iamgate revoked it" in stops(again)
    missing = iamgate(admin.env, "bots", "rm", "remote-bot")
    assert missing.returncode != 0 and "no bot 'remote-bot'" in missing.stderr

    dana = enrol(gw, tmp_path, "dana")
    assert login(gw, dana).returncode == 0
    refused = iamgate(dana.env, "bots", "ls")
    assert refused.returncode != 0 and "not an administrator" in refused.stderr


def api(
    gw: GatewayProcess, method: str, path: str, token: str, body: Any = None
) -> tuple[int, Any]:
    request = urllib.request.Request(
        gw.url + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def test_the_json_api_adds_shows_changes_revokes_and_removes_bots(
    gw: GatewayProcess, issuer: RunningIssuer, admin: Person
) -> None:
    token = json.loads((Path(admin.env["IAMGATE_HOME"]) / "session.json").read_text())["token"]
    status, added = api(gw, "POST", "/api/v1/bots", token, {"name": "api-bot", "roles": []})
    assert status == 201 and added["bindings"][0]["name"] == "api-jobs", added
    with pytest.raises(ClientError) as no_role:
        exchange(gw, issuer, "api-bot")
    assert "it holds no gateway role" in str(no_role.value)
    assert api(gw, "PUT", "/api/v1/bots/api-bot/roles", token, {"roles": ["ci-runner"]})[0] == 204
    creds = exchange(gw, issuer, "api-bot")["Credentials"]
    status, shown = api(gw, "GET", "/api/v1/bots/api-bot", token)
    assert status == 200 and shown["roles"] == ["ci-runner"]
    assert shown["last_exchange"]["access_key_id"] == creds["AccessKeyId"]
    assert shown["last_binding"] == "api-jobs"
    assert shown["last_job"]["repository"] == "acme/api-bot"
    assert [c["access_key_id"] for c in shown["live_credentials"]] == [creds["AccessKeyId"]]
    assert api(gw, "POST", "/api/v1/bots", token, {"name": "api-bot"})[1]["error"] == "BotExists"
    bad = api(gw, "PUT", "/api/v1/bots/api-bot/roles", token, {"roles": ["nobody"]})
    assert bad[0] == 400 and bad[1]["error"] == "UnknownRole"
    assert api(gw, "DELETE", "/api/v1/bots/from-config", token)[0] == 409
    assert api(gw, "GET", "/api/v1/bots/nobody", token)[1]["error"] == "NoSuchBot"
    status, revoked = api(gw, "DELETE", "/api/v1/bots/api-bot/sessions", token)
    assert status == 200 and revoked == {"bot": "api-bot", "revoked_credentials": 1}
    assert "iamgate revoked it" in stops(job_client(gw, creds))
    assert api(gw, "GET", "/api/v1/bots/api-bot", token)[1]["live_credentials"] == []
    assert api(gw, "DELETE", "/api/v1/bots/api-bot", token)[0] == 204
    assert api(gw, "GET", "/api/v1/bots/api-bot", token)[0] == 404


# -- the browser ---------------------------------------------------------------------------


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1366, "height": 800})
    yield ctx
    ctx.close()


def log_in(page: Page, url: str, person: Person) -> None:
    page.goto(f"{url}/login")
    page.get_by_label("User name").fill(person.name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("One-time code").fill(person.code())
    page.get_by_role("button", name="Log in").click()


def test_an_admin_adds_a_bot_on_the_bots_page_sees_its_exchange_and_revokes_it(
    gw: GatewayProcess, issuer: RunningIssuer, context: BrowserContext, tmp_path: Path
) -> None:
    pam = enrol(gw, tmp_path, "pam", roles="admin")  # her own codes: a code works once
    page = context.new_page()
    log_in(page, gw.url, pam)
    page.get_by_role("link", name="Bots").click()
    expect(page).to_have_url(f"{gw.url}/admin/bots")
    form = page.get_by_role("form", name="Add a bot")
    form.get_by_label("Bot name").fill("page-bot")
    form.get_by_label("Description").fill("the page's own deploys")
    form.get_by_label("ci-runner").check()
    form.get_by_role("button", name="Add bot").click()
    expect(page.get_by_role("status")).to_contain_text("Added bot page-bot")
    row = page.locator("#bots tr[data-bot='page-bot']")
    expect(row.locator(".bindings")).to_contain_text("page-jobs")  # the configuration's
    expect(row.locator(".bindings")).to_contain_text("repository=acme/page-bot")
    expect(row.locator(".last-exchange")).to_contain_text("never")

    # The job: a token from the issuer, exchanged by the aws CLI; its credentials held for
    # the job's next steps, as a job exports them.
    token_file = tmp_path / "job-token"
    token_file.write_text(issuer.token(AUDIENCE, repository="acme/page-bot", run_id="4242"))
    plain = clean_env(tmp_path) | {"AWS_ENDPOINT_URL": gw.url}
    exchanged = run_aws(
        [
            "sts",
            "assume-role-with-web-identity",
            "--role-arn",
            CI_ROLE,
            "--role-session-name",
            "job",
            "--web-identity-token",
            f"file://{token_file}",
        ],
        env=plain,
    )
    assert exchanged.returncode == 0, exchanged.stderr
    creds = exchanged.json()["Credentials"]
    job = plain | {
        "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
        "AWS_SESSION_TOKEN": creds["SessionToken"],
    }
    step = run_aws(["sts", "get-caller-identity"], env=job)
    assert step.returncode == 0 and "bot=page-bot" in step.json()["Arn"], step.stderr

    page.reload()
    row = page.locator("#bots tr[data-bot='page-bot']")
    expect(row.locator(".last-exchange")).to_contain_text(creds["AccessKeyId"])
    expect(row.locator(".last-exchange")).to_contain_text("acme-ci")
    # From the audit trail: the binding that mapped the job's token, and the job.
    expect(row.locator(".last-exchange .job")).to_contain_text("binding page-jobs")
    expect(row.locator(".last-exchange .job")).to_contain_text("repository=acme/page-bot")
    expect(row.locator(".last-exchange .job")).to_contain_text("run_id=4242")
    expect(row.locator(".live")).to_have_text("1")
    expect(page.locator(f"#bot-credentials tr[data-key='{creds['AccessKeyId']}']")).to_be_visible()

    row.get_by_role("button", name="Revoke credentials of bot page-bot").click()
    expect(page.get_by_role("heading", name="Revoke credentials of bot page-bot?")).to_be_visible()
    confirm = page.get_by_role("form", name="Confirm")
    confirm.get_by_role("button", name="Revoke credentials of bot page-bot").click()
    expect(page.get_by_role("status")).to_contain_text("Revoked 1 live credential(s) of bot")
    expect(page.locator("#bots tr[data-bot='page-bot'] .live")).to_have_text("0")

    after = run_aws(["sts", "get-caller-identity"], env=job)  # the job's next call
    assert after.returncode != 0
    assert "iamgate revoked it" in after.stderr  # STS says InvalidClientTokenId
    revocations = audited_calls(gw.state_url, principal="pam", type="session.revoked", wait=0)
    assert any(e["fields"].get("bot") == "page-bot" for e in revocations)


def test_a_forged_revoke_of_a_bot_is_refused(
    gw: GatewayProcess, context: BrowserContext, tmp_path: Path
) -> None:
    fay = enrol(gw, tmp_path, "fay", roles="admin")
    page = context.new_page()
    log_in(page, gw.url, fay)
    answer = page.request.post(
        f"{gw.url}/admin/bots/from-config/revoke",
        form={"csrf": "not-the-token", "confirmed": "yes"},
        headers={"Origin": gw.url},
    )
    assert answer.status == 403
    assert "This form has expired" in answer.text()
