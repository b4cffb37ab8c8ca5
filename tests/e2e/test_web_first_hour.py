"""The first hour of a new user of the web UI, in headless Chromium against a real gateway.

Destructive buttons ask first (without any script: the pages' CSP allows none inline), the
last administrator cannot be locked, an ended session says why and a re-login lands on a
page, the login form forgives a pasted code, the audit page answers "what did this key do?",
and every page fits a phone's width. Screenshots land in the test's tmp folder.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from harness import GatewayProcess, audited_calls
from people import PASSWORD, Person, enrol, iamgate, login
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    ViewportSize,
    expect,
)

from iamgate.sandbox import Sandbox
from iamgate.sandbox.federation import FederationStandIn

pytestmark = pytest.mark.e2e
PHONE: ViewportSize = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def web(
    sandbox: Sandbox, federation: FederationStandIn, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(
        sandbox, tmp_path_factory.mktemp("first-hour-gateway"), federation_url=federation.url
    )
    gw.start()
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def loader(web: GatewayProcess, tmp_path_factory: pytest.TempPathFactory) -> Person:
    """The only enrolled administrator of this gateway (until a test adds another)."""
    return enrol(web, tmp_path_factory.mktemp("first-hour-loader"), "loader")


@pytest.fixture
def someone(web: GatewayProcess, tmp_path: Path, request: pytest.FixtureRequest) -> Person:
    name = "f-" + request.node.name.removeprefix("test_")[:40].replace("_", "-")
    return enrol(web, tmp_path, name, roles="contractor")


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1366, "height": 800})
    yield ctx
    ctx.close()


def log_in(page: Page, url: str, person: Person, *, code: str | None = None) -> None:
    page.goto(f"{url}/login")
    fill_login(page, person, code=code)


def fill_login(page: Page, person: Person, *, code: str | None = None) -> None:
    page.get_by_label("User name").fill(person.name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("One-time code").fill(code or person.code())
    page.get_by_role("button", name="Log in").click()


def api(url: str, method: str, path: str, token: str, body: object = None) -> tuple[int, object]:
    request = urllib.request.Request(
        url + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
            return response.status, json.loads(text) if text else None
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read().decode() or "null")


def bearer(person: Person) -> str:
    session = Path(person.env["IAMGATE_HOME"]) / "session.json"
    return str(json.loads(session.read_text())["token"])


# -- 1. destructive buttons confirm; the last administrator stays ----------------------------


def test_destructive_buttons_ask_first_without_any_script(
    web: GatewayProcess, loader: Person, someone: Person, browser: Browser, tmp_path: Path
) -> None:
    # Scripts off: the confirmation is a step the server serves, so the strict CSP holds.
    ctx = browser.new_context(java_script_enabled=False)
    try:
        page = ctx.new_page()
        log_in(page, web.url, loader)
        expect(page).to_have_url(f"{web.url}/access")
        csp = page.request.get(f"{web.url}/admin/users").headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        page.goto(f"{web.url}/admin/users")
        row = page.locator(f"#users tr[data-user='{someone.name}']")
        for label in (
            f"Lock {someone.name}",
            f"Reset TOTP of {someone.name}",
            f"Reset password and TOTP of {someone.name}",
        ):
            row.get_by_role("button", name=label).click()
            expect(page.get_by_role("heading", name=f"{label}?")).to_be_visible()
            page.screenshot(path=tmp_path / "confirm.png")
            page.get_by_role("link", name="Cancel").click()
            expect(page).to_have_url(f"{web.url}/admin/users")
            expect(row.locator(".state")).to_contain_text("active")  # nothing happened
        row.get_by_role("button", name=f"Lock {someone.name}").click()
        page.get_by_role("form", name="Confirm").get_by_role(
            "button", name=f"Lock {someone.name}"
        ).click()
        expect(page.get_by_role("status")).to_contain_text(f"Locked {someone.name}")
        expect(row.locator(".state")).to_contain_text("locked")
    finally:
        ctx.close()


def test_the_last_administrator_cannot_be_locked(
    web: GatewayProcess, loader: Person, context: BrowserContext
) -> None:
    page = context.new_page()
    log_in(page, web.url, loader)
    page.goto(f"{web.url}/admin/users")
    page.locator("#users tr[data-user='loader']").get_by_role("button", name="Lock loader").click()
    expect(page.get_by_role("alert")).to_contain_text("loader is the last administrator")
    expect(page.locator("#users tr[data-user='loader'] .state")).to_contain_text("active")
    # Nor through the JSON API, nor with the self-confirmation.
    assert login(web, loader).returncode == 0
    status, body = api(web.url, "POST", "/api/v1/users/loader/lock?confirm=self", bearer(loader))
    assert status == 409 and isinstance(body, dict)
    assert "last administrator" in json.dumps(body)


def test_an_administrator_locks_themself_only_with_a_second_yes(
    web: GatewayProcess, loader: Person, browser: Browser, tmp_path: Path
) -> None:
    ada = enrol(web, tmp_path, "ada", roles="admin")  # a second administrator
    ctx = browser.new_context()
    try:
        page = ctx.new_page()
        log_in(page, web.url, ada)
        page.goto(f"{web.url}/admin/users")
        page.locator("#users tr[data-user='ada']").get_by_role("button", name="Lock ada").click()
        expect(page.get_by_role("status")).to_contain_text("This is you")
        confirm = page.get_by_role("form", name="Confirm")
        confirm.get_by_role("button", name="Lock ada").click()  # the box is not ticked
        expect(page.get_by_role("heading", name="Lock ada?")).to_be_visible()
        confirm.get_by_label("Yes, lock my own account").check()
        confirm.get_by_role("button", name="Lock ada").click()
        expect(page).to_have_url(f"{web.url}/login?why=locked")
        expect(page.get_by_role("status")).to_contain_text("Your account is locked")
    finally:
        ctx.close()
    assert (
        iamgate(ada.env, "users", "unlock", "ada", "--config", str(web.config_path)).returncode == 0
    )

    # The JSON API asks for the same second yes before an administrator demotes themself.
    assert login(web, ada).returncode == 0
    token = bearer(ada)
    status, body = api(web.url, "PUT", "/api/v1/users/ada/roles", token, {"roles": ["contractor"]})
    assert status == 409 and "ConfirmSelf" in json.dumps(body)
    status, _ = api(
        web.url, "PUT", "/api/v1/users/ada/roles?confirm=self", token, {"roles": ["contractor"]}
    )
    assert status == 204


# -- 2. an ended session says why; a re-login lands on a page -------------------------------


def test_a_revoked_session_says_so_and_open_console_logs_back_in_to_a_page(
    web: GatewayProcess, loader: Person, someone: Person, context: BrowserContext
) -> None:
    page = context.new_page()
    log_in(page, web.url, someone)
    expect(page).to_have_url(f"{web.url}/access")
    revoked = iamgate(
        someone.env, "sessions", "revoke", "--user", someone.name, "--config", str(web.config_path)
    )
    assert revoked.returncode == 0, revoked.stderr

    with context.expect_page() as opened:
        page.get_by_role("button", name="Open console: customer-globex / ReadOnly").click()
    tab = opened.value
    tab.wait_for_load_state()
    expect(tab).to_have_url(f"{web.url}/login?next=%2Faccess&why=revoked")
    expect(tab.get_by_role("status")).to_contain_text("ended by an administrator")
    fill_login(tab, someone)
    expect(tab).to_have_url(f"{web.url}/access")  # a page, not the JSON API
    expect(tab.get_by_role("heading", name="My access")).to_be_visible()

    # A form's address opened as a page goes to its page; an unknown one gets a page.
    tab.goto(f"{web.url}/console")
    expect(tab).to_have_url(f"{web.url}/access")
    response = tab.goto(f"{web.url}/no/such/page")
    assert response is not None and response.status == 404
    expect(tab.get_by_role("heading", name="Page not found")).to_be_visible()
    assert (
        tab.request.get(f"{web.url}/api/v1/nothing")
        .headers["content-type"]
        .startswith("application/json")
    )


def test_a_locked_users_browser_says_locked(
    web: GatewayProcess, someone: Person, context: BrowserContext
) -> None:
    page = context.new_page()
    log_in(page, web.url, someone)
    expect(page).to_have_url(f"{web.url}/access")
    config = ["--config", str(web.config_path)]
    assert iamgate(someone.env, "users", "lock", someone.name, *config).returncode == 0
    page.goto(f"{web.url}/audit")
    expect(page).to_have_url(f"{web.url}/login?next=%2Faudit&why=locked")
    expect(page.get_by_role("status")).to_contain_text("Your account is locked")


# -- 3. the login form forgives ------------------------------------------------------------


def test_the_login_form_keeps_the_name_and_takes_a_pasted_code_with_a_space(
    web: GatewayProcess, someone: Person, context: BrowserContext
) -> None:
    page = context.new_page()
    page.goto(f"{web.url}/login")
    page.get_by_label("User name").fill(someone.name)
    page.get_by_label("Password").fill("not the password")
    page.get_by_label("One-time code").fill(someone.peek())
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("Invalid user name, password")
    expect(page.get_by_label("User name")).to_have_value(someone.name)
    expect(page.get_by_label("Password")).to_be_focused()

    code = someone.code()
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("One-time code").fill(f"{code[:3]} {code[3:]}")
    expect(page.get_by_label("One-time code")).to_have_value(f"{code[:3]} {code[3:]}")
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{web.url}/access")


# -- 4. the audit page answers "what did this leaked key do?" --------------------------------


def client(web: GatewayProcess, service: str, creds: dict[str, str]) -> Any:
    session: Any = boto3.Session(  # Any: the stubs type clients by literal service name
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name="us-east-1",
    )
    return session.client(service, endpoint_url=web.url)


def test_the_audit_page_tells_what_a_leaked_key_did(
    web: GatewayProcess, loader: Person, context: BrowserContext, tmp_path: Path
) -> None:
    lee = enrol(web, tmp_path, "lee", roles="data-scientist")
    assert login(web, lee).returncode == 0
    token = bearer(lee)
    keys = {}
    for role in ("ReadOnly", "DataScientist"):
        status, body = api(
            web.url, "POST", "/api/v1/credentials", token, {"account": "acme-prod", "role": role}
        )
        assert status == 200 and isinstance(body, dict), body
        keys[role] = body
    leaked = keys["ReadOnly"]
    client(web, "sts", leaked).get_caller_identity()
    client(web, "s3", leaked).list_buckets()
    with pytest.raises(ClientError):
        client(web, "rds", leaked).delete_db_instance(
            DBInstanceIdentifier="acme-prod-db", SkipFinalSnapshot=True
        )
    client(web, "sts", keys["DataScientist"]).get_caller_identity()  # another key of lee's
    key = leaked["AccessKeyId"]
    config = ["--config", str(web.config_path)]
    assert iamgate(lee.env, "sessions", "revoke", "--access-key", key, *config).returncode == 0
    audited_calls(web.state_url, principal="lee", limit=4)  # stored, outcomes too

    page = context.new_page()
    log_in(page, web.url, loader)
    page.goto(f"{web.url}/audit")
    page.get_by_label("Access key").fill(key.lower())  # as pasted from anywhere
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#key-summary")).to_contain_text("Issued to lee for acme-prod / ReadOnly")
    rows = page.locator("table.events tbody tr")
    expect(rows).to_have_count(3)  # never the DataScientist key's call
    actions = rows.locator("td:nth-child(5)").all_inner_texts()
    assert sorted(actions) == [
        "rds:DeleteDBInstance",
        "s3:ListAllMyBuckets",
        "sts:GetCallerIdentity",
    ]
    denied = rows.filter(has_text="rds:DeleteDBInstance")
    expect(denied).to_contain_text("denied")
    expect(denied.locator("td.key")).to_contain_text(key)
    expect(denied.locator("td.resource")).to_contain_text("acme-prod-db")
    expect(denied.locator("td:nth-child(10)")).to_have_text("us-east-1")
    expect(denied.locator("td:nth-child(11)")).to_have_text("127.0.0.1")
    page.screenshot(path=tmp_path / "audit-key.png", full_page=True)

    # Every event about the key: its issue and its revocation too.
    page.get_by_label("Events").select_option(label="Every event")
    page.get_by_role("button", name="Filter").click()
    types = rows.evaluate_all("rs => rs.map(r => r.dataset.type)")
    assert {"credentials.issued", "session.revoked", "aws.call"} <= set(types), types
    revoked = rows.filter(has_text="session.revoked")
    expect(revoked.locator("td.key")).to_contain_text(key)

    # A key this gateway never issued: said so.
    page.goto(f"{web.url}/audit?key=ASIAAAAAAAAAAAAAAAAA&type=all")
    expect(page.locator("#key-summary")).to_contain_text("never issued this key")


def test_the_audit_page_shows_every_kind_of_event_and_refuses_what_it_cannot_read(
    web: GatewayProcess, loader: Person, someone: Person, context: BrowserContext
) -> None:
    # A day in someone's life: login, credentials, a revocation, a lock.
    config = ["--config", str(web.config_path)]
    assert login(web, someone).returncode == 0
    target = {"account": "customer-globex", "role": "ReadOnly"}
    assert api(web.url, "POST", "/api/v1/credentials", bearer(someone), target)[0] == 200
    assert (
        iamgate(someone.env, "sessions", "revoke", "--user", someone.name, *config).returncode == 0
    )
    assert iamgate(someone.env, "users", "lock", someone.name, *config).returncode == 0
    page = context.new_page()
    log_in(page, web.url, loader)
    for label, kind in (
        ("Logins and logouts", "login.succeeded"),
        ("Users: adds, locks, resets", "user.changed"),
        ("Revocations", "session.revoked"),
        ("Credentials issued", "credentials.issued"),
        ("Configuration, start and stop", "config.loaded"),
    ):
        page.goto(f"{web.url}/audit")
        page.get_by_label("Events").select_option(label=label)
        page.get_by_role("button", name="Filter").click()
        types = page.locator("table.events tbody tr").evaluate_all(
            "rs => rs.map(r => r.dataset.type)"
        )
        assert kind in types, (label, types)
    locked = page.locator("table.events tbody tr", has_text="user.changed")
    page.goto(f"{web.url}/audit?type=users")
    expect(locked.filter(has_text=f"change: locked; user: {someone.name}")).to_be_visible()

    response = page.goto(f"{web.url}/audit?since=yesterday&status=abc&key=nope&decision=maybe")
    assert response is not None and response.status == 400
    alerts = page.get_by_role("alert")
    expect(alerts).to_have_count(4)
    expect(alerts.nth(0)).to_contain_text("Status 'abc' is not an HTTP status")
    expect(page.get_by_role("alert").filter(has_text="Since 'yesterday'")).to_be_visible()
    expect(page.get_by_role("alert").filter(has_text="'NOPE' is not an access key")).to_be_visible()
    expect(page.locator("table.events tbody tr.none")).to_have_count(1)


# -- 5. a phone's width ----------------------------------------------------------------------


def fits(page: Page, shots: Path, name: str) -> None:
    page.screenshot(path=shots / f"{name}.png", full_page=True)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{name}: the page is {width} px wide"


def test_every_page_fits_a_phone(
    web: GatewayProcess, loader: Person, browser: Browser, tmp_path: Path
) -> None:
    shots = tmp_path / "390px"
    shots.mkdir()
    ctx = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True)
    try:
        page = ctx.new_page()
        page.goto(f"{web.url}/login")
        fits(page, shots, "login")
        fill_login(page, loader)
        expect(page).to_have_url(f"{web.url}/access")
        page.locator("details.setup").first.locator("summary").click()
        fits(page, shots, "access")
        page.goto(f"{web.url}/audit?type=all")
        expect(page.locator("table.events tbody tr").first).to_be_visible()
        fits(page, shots, "audit-all")
        page.goto(f"{web.url}/audit")
        expect(page.get_by_label("Principal")).to_be_hidden()  # the filters fold away
        fits(page, shots, "audit")
        page.get_by_text("Filters", exact=True).click()
        expect(page.get_by_label("Principal")).to_be_visible()
        fits(page, shots, "audit-filters")
        page.goto(f"{web.url}/admin/users")
        fits(page, shots, "users")
        page.locator("#users tbody tr").first.get_by_role("button", name="Reset TOTP").click()
        expect(page.get_by_role("form", name="Confirm")).to_be_visible()
        fits(page, shots, "confirm")
        page.goto(f"{web.url}/admin/roles")
        fits(page, shots, "roles")
        page.goto(f"{web.url}/nowhere")
        fits(page, shots, "not-found")
    finally:
        ctx.close()
    assert len(list(shots.glob("*.png"))) == 9


# -- 6. roles' accounts, copy buttons, the time left ----------------------------------------


def test_roles_show_the_accounts_they_match_and_the_header_the_time_left(
    web: GatewayProcess, loader: Person, context: BrowserContext
) -> None:
    page = context.new_page()
    log_in(page, web.url, loader)
    expect(page.locator("#session-left")).to_have_text(re.compile(r"^1[12]h(\d+m)? left$"))
    page.goto(f"{web.url}/admin/roles")
    matches = page.locator("td.matches[data-role='data-scientist'] .label")
    expect(matches).to_have_text(["acme-prod", "customer-globex"])  # never acme-ci
    expect(page.locator("td.matches[data-role='ci-runner'] .label")).to_have_text(["acme-ci"])


def test_cli_set_up_blocks_copy_to_the_clipboard(
    web: GatewayProcess, someone: Person, browser: Browser
) -> None:
    ctx = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    try:
        page = ctx.new_page()
        log_in(page, web.url, someone)
        expect(page).to_have_url(f"{web.url}/access")
        role = page.locator("li.role[data-role='ReadOnly']").first
        role.get_by_text("CLI set-up").click()
        role.get_by_role("button", name=f"Copy: iamgate login {web.url}").click()
        expect(role.get_by_role("button", name=f"Copy: iamgate login {web.url}")).to_have_text(
            "Copied"
        )
        copied = page.evaluate("navigator.clipboard.readText()")
        assert copied.startswith(f"iamgate login {web.url} --user {someone.name}\n")
        assert "iamgate profiles sync" in copied
    finally:
        ctx.close()
