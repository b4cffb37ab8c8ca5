"""Just-in-time access in the browser: the real gateway process in front of moto, the real
`aws` CLI with dana's one profile, and headless Chromium for everyone else's clicks.

dana's `aws rds delete-db-instance` is refused; she asks for prod-admin from My access with a
reason; a team lead and then security approve on the Requests page (two stages); her page
follows along by itself; her same profile now deletes; she drops the grant on the Requests
page and her next call is refused. She sees no approve button on her own request, and a
reviewer whose scope is other accounts sees neither the request nor a button, and cannot
approve it by posting the form anyway.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import GatewayProcess, audited_calls, run_aws
from people import PASSWORD, Person, enrol, iamgate, login
from playwright.sync_api import Browser, Page, expect

from iamgate.audit.events import EventType
from iamgate.sandbox import Sandbox

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("databases_restored")]

# tests/e2e/test_access_requests.py's roles, and a reviewer for staging accounts only.
ROLES: list[dict[str, Any]] = [
    {"name": "team-lead"},
    {"name": "security"},
    {"name": "staging-lead"},
    {
        "name": "prod-admin",
        "allow": {"accounts": {"env": ["prod"]}, "aws_roles": ["ReadOnly", "Admin"]},
        "requestable": {
            "requesters": ["data-scientist"],
            "stages": [
                {
                    "approve": 1,
                    "from": [
                        "team-lead",
                        {"role": "staging-lead", "accounts": {"env": ["staging"]}},
                    ],
                },
                {"approve": 1, "from": "security"},
            ],
            "max_duration": "2h",
            "default_duration": "1h",
            "reason": {"required": True, "prompt": "Which incident?"},
        },
    },
]

REQUEST_EVENTS = tuple(str(t) for t in EventType if t.startswith("request."))


@pytest.fixture(scope="module")
def gateway_jit(
    sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(sandbox, tmp_path_factory.mktemp("web-jit"), extra={"roles": ROLES})
    gw.start()
    yield gw
    gw.stop()


def _log_in(browser: Browser, url: str, person: Person) -> Page:
    page = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
    page.goto(f"{url}/login")
    page.get_by_label("User name").fill(person.name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("One-time code").fill(person.code())
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{url}/access")
    return page


def _delete(env: dict[str, str], name: str, mark: str) -> Any:
    return run_aws(
        ["rds", "delete-db-instance", "--db-instance-identifier", name,
         "--skip-final-snapshot", "--profile", "iamgate-acme-prod-ReadOnly"],
        env=dict(env, AWS_EXECUTION_ENV=mark),
    )  # fmt: skip


def _database(sandbox: Sandbox) -> str:
    name = f"webjit-{secrets.token_hex(3)}"
    sandbox.client(sandbox.account("acme-prod").id, "rds").create_db_instance(
        DBInstanceIdentifier=name,
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        MasterUsername="admin",
        MasterUserPassword="not-a-secret-1",
        AllocatedStorage=20,
    )
    return name


def _approve(page: Page, url: str, request_id: str, reason: str) -> None:
    page.goto(f"{url}/requests")
    card = page.locator(f"#to-review article[data-request='{request_id}']")
    expect(card).to_be_visible()
    expect(card.locator(".accounts")).to_contain_text("acme-prod")
    card.get_by_label("Your reason").fill(reason)
    card.get_by_role("button", name=f"Approve {request_id}").click()
    expect(page.locator("#message")).to_contain_text(f"Approved request {request_id}")


def test_dana_asks_in_the_browser_two_stages_approve_she_deletes_until_she_drops(
    gateway_jit: GatewayProcess, sandbox: Sandbox, browser: Browser, tmp_path: Path
) -> None:
    gw = gateway_jit
    dana, lee, sec, stan = (
        enrol(gw, tmp_path, name, roles=roles)
        for name, roles in (("dana", ""), ("lee", "team-lead"), ("sec", "security"),
                            ("stan", "staging-lead"))
    )  # fmt: skip
    assert login(gw, dana).returncode == 0
    aws_config = tmp_path / "aws-config-dana"
    synced = iamgate(dana.env, "profiles", "sync", "--config-file", str(aws_config))
    assert synced.returncode == 0, synced.stderr
    env = dict(dana.env, AWS_CONFIG_FILE=str(aws_config))
    doomed = _database(sandbox)

    # 1. refused with her read-only profile
    refused = _delete(env, doomed, "webjit-refused")
    assert refused.returncode != 0 and "denies rds:DeleteDBInstance" in refused.stderr

    # 2. she asks from My access, with the role's prompt
    mine = _log_in(browser, gw.url, dana)
    form = mine.get_by_role("form", name="Request prod-admin")
    expect(form).to_contain_text("Which incident?")
    expect(form.get_by_label("Duration (at most 2h)")).to_have_value("1h")
    form.get_by_label("acme-prod").check()
    form.get_by_label("Duration (at most 2h)").fill("3h")
    form.get_by_label(re.compile("Which incident")).fill("INC-8: a broken replica")
    form.get_by_role("button", name="Request prod-admin").click()
    # over the role's limit: refused by the use case's rules, what she typed kept
    expect(mine.locator("#request-error")).to_have_text(
        "role prod-admin may be requested for at most 2h"
    )
    expect(form.get_by_label(re.compile("Which incident"))).to_have_value("INC-8: a broken replica")
    expect(form.get_by_label("acme-prod")).to_be_checked()
    form.get_by_label("Duration (at most 2h)").fill("30m")
    form.get_by_role("button", name="Request prod-admin").click()
    expect(mine).to_have_url(re.compile(r"/requests\?made="))
    request_id = mine.url.rpartition("made=")[2]
    card = mine.locator(f"#mine article[data-request='{request_id}']")
    expect(card).to_have_attribute("data-state", "pending")
    expect(card.locator(".stages")).to_have_text(
        "1 of team-lead or staging-lead (scoped), then 1 of security"
    )
    expect(card.locator(".reason")).to_contain_text("INC-8: a broken replica")
    # no approve button on her own request, anywhere on her page
    expect(mine.get_by_role("button", name=re.compile("^Approve"))).to_have_count(0)

    # 3. a reviewer for staging accounts sees neither the request nor a button; posting the
    # form anyway is refused (403, as the API says) and the request stays pending
    outsider = _log_in(browser, gw.url, stan)
    outsider.goto(f"{gw.url}/requests")
    expect(outsider.locator(f"article[data-request='{request_id}']")).to_have_count(0)
    expect(outsider.get_by_role("button", name=re.compile("^Approve"))).to_have_count(0)
    csrf = outsider.locator("form.who input[name=csrf]").input_value()
    forced = outsider.request.post(
        f"{gw.url}/requests/{request_id}/approve",
        form={"csrf": csrf, "reason": "me too"},
        headers={"Origin": gw.url},
    )
    assert forced.status == 403 and "you do not review this request" in forced.text()

    # 4. the team lead approves (stage 1), security approves (stage 2), in the browser
    _approve(_log_in(browser, gw.url, lee), gw.url, request_id, "go ahead")
    expect(card).to_have_attribute("data-state", "pending")  # her page: one stage is not all
    reviewer = _log_in(browser, gw.url, sec)
    _approve(reviewer, gw.url, request_id, "ok, 30 minutes")
    done = reviewer.locator(f"#history article[data-request='{request_id}']")
    expect(done).to_have_attribute("data-state", re.compile("approved|active"))
    expect(done.locator(".reviews")).to_contain_text("approve by lee for acme-prod: “go ahead”")
    expect(done.locator(".reviews")).to_contain_text("approve by sec")
    expect(done.locator(".accounts")).to_contain_text("acme-prod ✓ approved")

    # 5. dana's page follows by itself (no reload by her); her same profile now deletes
    expect(card).to_have_attribute("data-state", re.compile("approved|active"), timeout=15_000)
    deadline = time.monotonic() + 5
    while True:
        deleted = _delete(env, doomed, "webjit-granted")
        if deleted.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert deleted.returncode == 0, deleted.stderr

    # 6. she drops it on the Requests page: her next call is refused
    keep = _database(sandbox)
    card.get_by_role("button", name=f"Drop {request_id}").click()
    expect(mine.locator("#message")).to_have_text(
        f"Dropped request {request_id}: its access no longer works."
    )
    ended = mine.locator(f"#history article[data-request='{request_id}']")
    expect(ended).to_have_attribute("data-state", "ended")
    expect(ended).to_contain_text("ended (dropped)")
    after = _delete(env, keep, "webjit-after-drop")
    assert after.returncode != 0 and "denies rds:DeleteDBInstance" in after.stderr

    # every step through the pages is in the audit trail, with who did it
    trail = [
        (e["type"], e["principal"])
        for e in audited_calls(gw.state_url, types=REQUEST_EVENTS, limit=500)
        if e["fields"].get("request_id") == request_id
    ]
    for step in (
        ("request.created", "dana"),
        ("request.refused", "stan"),
        ("request.reviewed", "lee"),
        ("request.approved", "sec"),
        ("request.ended", "dana"),
    ):
        assert step in trail, trail


def test_one_request_over_a_label_selector_approved_for_one_account_by_ticking_it(
    gateway_jit: GatewayProcess, browser: Browser, tmp_path: Path
) -> None:
    gw = gateway_jit
    dina, lia, sam = (
        enrol(gw, tmp_path, name, roles=roles)
        for name, roles in (("dina", "data-scientist"), ("lia", "team-lead"), ("sam", "security"))
    )
    mine = _log_in(browser, gw.url, dina)
    form = mine.get_by_role("form", name="Request prod-admin")
    form.get_by_label("or every account with labels").fill("env=prod")
    form.get_by_label(re.compile("Which incident")).fill("INC-9: both prod accounts")
    form.get_by_role("button", name="Request prod-admin").click()
    expect(mine).to_have_url(re.compile(r"/requests\?made="))
    request_id = mine.url.rpartition("made=")[2]
    card = mine.locator(f"#mine article[data-request='{request_id}']")
    expect(card.locator(".accounts .label")).to_have_text(["acme-prod", "customer-globex"])

    lead = _log_in(browser, gw.url, lia)
    lead.goto(f"{gw.url}/requests")
    review = lead.locator(f"#to-review article[data-request='{request_id}']")
    review.get_by_label("acme-prod").check()  # stage 1 for this account only
    review.get_by_label("Your reason").fill("prod only")
    review.get_by_role("button", name=f"Approve {request_id}").click()
    expect(lead.locator("#message")).to_contain_text("it is now pending")
    _approve(_log_in(browser, gw.url, sam), gw.url, request_id, "fine")  # no tick: all

    expect(card).to_have_attribute("data-state", re.compile("approved|active"), timeout=15_000)
    expect(card.locator(".accounts .label")).to_have_text(
        ["acme-prod ✓ approved", "customer-globex"]
    )
    expect(card.locator(".reviews")).to_contain_text("approve by lia for acme-prod: “prod only”")
    expect(card.locator(".reviews")).to_contain_text(
        "approve by sam for acme-prod, customer-globex: “fine”"
    )
    # dropping a granted request ends it
    card.get_by_role("button", name=f"Drop {request_id}").click()
    expect(mine.locator(f"#history article[data-request='{request_id}']")).to_have_attribute(
        "data-state", "ended"
    )
