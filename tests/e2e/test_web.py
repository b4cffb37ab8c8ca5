"""The web UI in headless Chromium, against a real gateway process and the moto sandbox.

Each test drives Debian's Chromium through Playwright as a person would: type, click, read
the page. Screenshots of the main pages land in the run's tmp folder (`screenshots/`).
"""

from __future__ import annotations

import base64
import http.server
import re
import sqlite3
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from harness import GatewayProcess, MotoRecorder, audited_calls
from people import PASSWORD, Person, enrol, iamgate, login
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Response,
    expect,
)

from iamgate.sandbox import Sandbox
from iamgate.sandbox.federation import FederationStandIn

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def web(
    sandbox: Sandbox, federation: FederationStandIn, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(
        sandbox, tmp_path_factory.mktemp("web-gateway"), federation_url=federation.url
    )
    gw.start()
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def people(web: GatewayProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Person]:
    home = tmp_path_factory.mktemp("web-people")
    return {name: enrol(web, home, name) for name in ("dana", "carl", "loader")}


@pytest.fixture
def someone(web: GatewayProcess, tmp_path: Path, request: pytest.FixtureRequest) -> Person:
    """A contractor of one's own: a TOTP code works once, so each test logs in a fresh user."""
    name = "c-" + request.node.name.removeprefix("test_")[:40].replace("_", "-")
    return enrol(web, tmp_path, name, roles="contractor")


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1366, "height": 800}, ignore_https_errors=True)
    yield ctx
    ctx.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def log_in(page: Page, url: str, person: Person, *, code: str | None = None) -> None:
    page.goto(f"{url}/login")
    page.get_by_label("User name").fill(person.name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("One-time code").fill(code or person.code())
    page.get_by_role("button", name="Log in").click()


def session_cookie(context: BrowserContext) -> dict[str, object]:
    cookies = [c for c in context.cookies() if "iamgate-session" in c["name"]]
    assert len(cookies) == 1, context.cookies()
    return dict(cookies[0])


def fetch_page(url: str, cookie: str) -> tuple[int, str]:
    """A page as a browser with that cookie would get it, redirects not followed."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(url, headers={"Cookie": cookie})
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, ""
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Location", "")


def test_dana_logs_in_with_password_and_totp_and_sees_only_her_access(
    web: GatewayProcess, people: dict[str, Person], context: BrowserContext, screenshots: Path
) -> None:
    page = context.new_page()
    page.goto(web.url)
    expect(page).to_have_url(f"{web.url}/login")
    page.screenshot(path=screenshots / "login.png")

    log_in(page, web.url, people["dana"])
    expect(page).to_have_url(f"{web.url}/access")
    expect(page.get_by_role("heading", name="My access")).to_be_visible()
    accounts = page.locator("section.account h2").all_inner_texts()
    assert accounts == ["acme-prod", "customer-globex"]  # never acme-ci
    prod = page.locator("section.account", has=page.get_by_role("heading", name="acme-prod"))
    expect(prod.locator(".label", has_text="env: prod")).to_be_visible()
    roles = prod.locator("li.role").evaluate_all("els => els.map(e => e.dataset.role)")
    assert roles == ["ReadOnly", "DataScientist"]
    expect(prod.get_by_role("button", name="Open console: acme-prod / ReadOnly")).to_be_visible()
    # The gateway's own identity is an IAM user here, so no role chaining: the configured hour.
    expect(page.locator("#console-note")).to_have_text("Console sessions last 1h.")

    readonly = prod.locator("li.role[data-role='ReadOnly']")
    readonly.get_by_text("CLI set-up").click()
    setup = readonly.locator("details.setup")
    expect(setup).to_contain_text(f"iamgate login {web.url} --user dana")
    expect(setup).to_contain_text("[profile iamgate-acme-prod-ReadOnly]")
    expect(setup).to_contain_text(f"endpoint_url = {web.url}")
    expect(setup).to_contain_text(
        "credential_process = iamgate credentials --account acme-prod --role ReadOnly"
    )
    expect(setup).to_contain_text(
        "aws --profile iamgate-acme-prod-ReadOnly sts get-caller-identity"
    )
    page.screenshot(path=screenshots / "access.png", full_page=True)

    # No administration for dana: no menu entry, and the page itself says no.
    expect(page.get_by_role("link", name="Users")).to_have_count(0)
    page.goto(f"{web.url}/admin/roles")
    expect(page.get_by_role("alert")).to_contain_text("Only iamgate administrators")
    assert page.request.get(f"{web.url}/api/v1/users").status == 403  # nor through the API


def test_wrong_code_is_refused_and_audited(
    web: GatewayProcess, someone: Person, context: BrowserContext
) -> None:
    page = context.new_page()
    log_in(page, web.url, someone, code="000000")
    # The same answer as for a wrong password or an unknown name; the audit log says why.
    expect(page.get_by_role("alert")).to_have_text(
        "Invalid user name, password or one-time code; a code works only once."
    )
    expect(page).to_have_url(f"{web.url}/login")
    assert not [c for c in context.cookies() if "iamgate-session" in c["name"]]
    failed = audited_calls(web.state_url, principal=someone.name, type="login.failed")
    assert failed and failed[0]["fields"]["via"] == "web"
    assert failed[0]["fields"]["reason"] == "bad_code"


def test_session_cookie_flags_and_a_new_session_at_login(
    web: GatewayProcess, someone: Person, context: BrowserContext
) -> None:
    # Session fixation: a cookie planted before login is never the one that gets signed in.
    planted = "iglogin1.0123456789abcdef.planted-by-someone-else"
    context.add_cookies([{"name": "iamgate-session", "value": planted, "url": web.url}])
    page = context.new_page()
    log_in(page, web.url, someone)
    expect(page).to_have_url(f"{web.url}/access")
    cookie = session_cookie(context)
    assert cookie["value"] != planted and str(cookie["value"]).startswith("iglogin1.")
    assert cookie["name"] == "iamgate-session"  # plain HTTP: no __Host- prefix without Secure
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Lax" and cookie["path"] == "/"
    assert cookie["secure"] is False
    assert page.evaluate("document.cookie") == ""  # scripts cannot read it
    headers = page.request.get(f"{web.url}/access").headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"


def test_logout_ends_the_session_on_the_server(
    web: GatewayProcess, someone: Person, context: BrowserContext
) -> None:
    page = context.new_page()
    log_in(page, web.url, someone)
    expect(page).to_have_url(f"{web.url}/access")
    cookie = session_cookie(context)
    stolen = f"{cookie['name']}={cookie['value']}"
    assert fetch_page(f"{web.url}/access", stolen)[0] == 200

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{web.url}/login?why=logout")
    expect(page.get_by_role("status")).to_have_text("You have logged out.")
    status, location = fetch_page(f"{web.url}/access", stolen)  # a copy of the cookie is dead
    assert status == 303 and location.startswith("/login")


def test_an_idle_session_ends(
    web: GatewayProcess, someone: Person, context: BrowserContext
) -> None:
    page = context.new_page()
    log_in(page, web.url, someone)
    expect(page).to_have_url(f"{web.url}/access")
    token = str(session_cookie(context)["value"])
    quiet_since = (datetime.now(UTC) - timedelta(minutes=31)).strftime("%Y-%m-%d %H:%M:%S.%f")
    with sqlite3.connect(web.directory / "state.db") as db:
        db.execute(
            "UPDATE login_sessions SET last_seen_at = ? WHERE id = ?",
            (quiet_since, token.split(".")[1]),
        )
    page.goto(f"{web.url}/access")
    expect(page).to_have_url(f"{web.url}/login?next=%2Faccess&why=idle")
    expect(page.get_by_role("status")).to_contain_text("30 minutes without activity")


class _Attacker(http.server.BaseHTTPRequestHandler):
    """Another origin on this machine, serving a page that posts a form to the gateway."""

    form = ""

    def do_GET(self) -> None:
        body = self.form.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_cross_origin_form_post_is_refused(
    web: GatewayProcess, someone: Person, context: BrowserContext, screenshots: Path
) -> None:
    page = context.new_page()
    log_in(page, web.url, someone)
    expect(page).to_have_url(f"{web.url}/access")
    cookie = session_cookie(context)

    # Another port of 127.0.0.1 is the same *site*, so SameSite=Lax still sends the cookie:
    # only the Origin check and the CSRF token stand in the way, which is what this shows.
    _Attacker.form = (
        f'<form id="f" method="post" action="{web.url}/logout">'
        '<input name="csrf" value="guessed"></form>'
        "<script>document.getElementById('f').submit()</script>"
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Attacker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        page.wait_for_url(f"{web.url}/logout")
        expect(page.get_by_role("alert")).to_have_text("This form was sent from another site.")
        page.screenshot(path=screenshots / "csrf-refused.png")
    finally:
        server.shutdown()
    assert fetch_page(f"{web.url}/access", f"{cookie['name']}={cookie['value']}")[0] == 200
    refused = audited_calls(web.state_url, type="web.refused")
    assert any(e["fields"]["path"] == "/logout" for e in refused)


def test_over_tls_the_cookie_is_host_only_and_secure(
    sandbox: Sandbox,
    tmp_path_factory: pytest.TempPathFactory,
    context: BrowserContext,
) -> None:
    import trustme

    directory = tmp_path_factory.mktemp("web-tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
    cert.private_key_pem.write_to_path(str(directory / "key.pem"))
    gw = GatewayProcess(sandbox, directory, tls=(directory / "cert.pem", directory / "key.pem"))
    gw.start()
    try:
        person = enrol(gw, directory, "carl")
        page = context.new_page()
        log_in(page, gw.url, person)
        expect(page).to_have_url(f"{gw.url}/access")
        cookie = session_cookie(context)
        assert cookie["name"] == "__Host-iamgate-session"
        assert cookie["secure"] is True and cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Lax" and cookie["path"] == "/"
        response = page.request.get(f"{gw.url}/access")
        assert response.headers["strict-transport-security"].startswith("max-age=")
    finally:
        gw.stop()


def test_the_audit_page_filters_to_danas_denied_calls(
    web: GatewayProcess,
    people: dict[str, Person],
    context: BrowserContext,
    screenshots: Path,
) -> None:
    dana = people["dana"]
    assert login(web, dana).returncode == 0
    refused = iamgate(
        dana.env,
        "aws",
        "--account",
        "acme-prod",
        "--role",
        "ReadOnly",
        "--",
        "rds",
        "--region",
        "us-east-1",
        "delete-db-instance",
        "--db-instance-identifier",
        "acme-prod-db",
        "--skip-final-snapshot",
    )
    assert refused.returncode != 0 and "AccessDenied" in refused.stderr
    listed = iamgate(
        dana.env, "aws", "--account", "acme-prod", "--role", "ReadOnly", "--", "s3", "ls"
    )
    assert listed.returncode == 0, listed.stderr

    page = context.new_page()
    log_in(page, web.url, people["loader"])  # an administrator sees everyone's calls
    page.goto(f"{web.url}/audit")
    expect(page.locator("table.events tbody tr").first).to_be_visible()
    page.get_by_label("Principal").fill("dana")
    page.get_by_label("Decision").select_option("denied")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(
        f"{web.url}/audit?type=aws&principal=dana&key=&account=&role=&service=&action="
        "&claim=&decision=denied&status=&since=&until="
    )
    rows = page.locator("table.events tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("rds:DeleteDBInstance")
    expect(rows.first).to_contain_text("acme-prod")
    expect(rows.first).to_contain_text("ReadOnly")
    expect(rows.first).to_contain_text("data-scientist denies rds:DeleteDBInstance")
    page.screenshot(path=screenshots / "audit.png", full_page=True)

    # dana herself sees only her own calls, with no principal filter to widen it.
    own = context.browser
    assert own is not None
    dana_context = own.new_context()
    try:
        dana_page = dana_context.new_page()
        log_in(dana_page, web.url, dana)
        dana_page.goto(f"{web.url}/audit?principal=loader")
        expect(dana_page.get_by_label("Principal")).to_have_count(0)
        principals = set(
            dana_page.locator("table.events tbody tr td:nth-child(2)").all_inner_texts()
        )
        assert principals == {"dana"}
    finally:
        dana_context.close()


def test_the_audit_page_pages_to_older_calls_without_repeating_one(
    web: GatewayProcess, people: dict[str, Person], context: BrowserContext
) -> None:
    sts = web.client("sts", web.issue("ci-bot", "222222222222", "CIRunner"))
    for _ in range(55):
        sts.get_caller_identity()
    audited_calls(web.state_url, principal="ci-bot", limit=55)  # all stored, outcomes too

    page = context.new_page()
    log_in(page, web.url, people["loader"])
    page.goto(f"{web.url}/audit?principal=ci-bot&action=sts:GetCallerIdentity")
    rows = page.locator("table.events tbody tr")
    expect(rows).to_have_count(50)
    first = rows.evaluate_all("rs => rs.map(r => [r.dataset.id, r.cells[0].innerText])")
    page.get_by_role("link", name="Older calls →").click()
    expect(page).to_have_url(re.compile(r"before="))
    second = rows.evaluate_all("rs => rs.map(r => [r.dataset.id, r.cells[0].innerText])")
    assert len(second) >= 5
    assert not {i for i, _ in first} & {i for i, _ in second}  # no call on both pages
    assert max(t for _, t in second) <= min(t for _, t in first)  # and each page is older
    expect(page.locator("#events")).to_have_attribute("data-live", "off")  # history stays put


def test_an_admin_locks_carl_and_carls_next_cli_call_fails(
    web: GatewayProcess, people: dict[str, Person], context: BrowserContext, screenshots: Path
) -> None:
    carl = people["carl"]
    assert login(web, carl).returncode == 0
    target = ["--account", "customer-globex", "--role", "ReadOnly", "--"]
    before = iamgate(carl.env, "aws", *target, "s3", "ls")
    assert before.returncode == 0, before.stderr

    page = context.new_page()
    log_in(page, web.url, people["loader"])
    page.get_by_role("link", name="Users").click()
    expect(page).to_have_url(f"{web.url}/admin/users")
    row = page.locator("#users tr[data-user='carl']")
    expect(row.locator(".state")).to_contain_text("active")
    page.screenshot(path=screenshots / "users.png", full_page=True)
    page.get_by_role("link", name="Roles & accounts").click()
    expect(page.locator("table").first).to_contain_text("111111111111")
    page.screenshot(path=screenshots / "roles.png", full_page=True)
    page.get_by_role("link", name="Users").click()
    row.get_by_role("button", name="Lock carl").click()
    expect(page.get_by_role("heading", name="Lock carl?")).to_be_visible()  # a second step
    page.get_by_role("form", name="Confirm").get_by_role("button", name="Lock carl").click()
    expect(page.get_by_role("status")).to_contain_text("Locked carl")
    expect(page.locator("#users tr[data-user='carl'] .state")).to_contain_text("locked")

    after = iamgate(carl.env, "aws", *target, "s3", "ls")  # cached credentials, next call
    assert after.returncode != 0
    assert "(InvalidToken)" in after.stderr and "iamgate revoked it" in after.stderr
    assert login(web, carl).returncode != 0  # and no new login either
    changes = audited_calls(web.state_url, principal="loader", type="user.changed")
    assert any(e["fields"].get("user") == "carl" for e in changes), changes

    page.locator("#users tr[data-user='carl']").get_by_role("button", name="Unlock carl").click()
    expect(page.locator("#users tr[data-user='carl'] .state")).to_contain_text("active")


def test_an_admin_adds_a_user_who_then_logs_in(
    web: GatewayProcess, people: dict[str, Person], context: BrowserContext, browser: Browser
) -> None:
    page = context.new_page()
    log_in(page, web.url, people["loader"])
    page.goto(f"{web.url}/admin/users")
    form = page.get_by_role("form", name="Add a user")
    form.get_by_label("User name").fill("erin")
    form.get_by_label("contractor").check()
    form.get_by_role("button", name="Add user").click()
    expect(page.get_by_role("status")).to_have_text("Added erin.")
    expect(page.locator("[data-field='password']")).to_have_count(0)  # a link instead
    link = page.locator("[data-field='link']").inner_text().strip()
    expect(page.locator("#users tr[data-user='erin']")).to_contain_text("contractor")

    password = "erin's own long password"
    fresh = browser.new_context()
    try:
        erin_page = fresh.new_page()
        erin_page.goto(link)  # enrolment in detail: tests/e2e/test_web_enrolment.py
        secret = erin_page.locator("[data-field='totp']").inner_text().strip()
        erin = Person("erin", secret, {})
        erin_page.get_by_label("New password", exact=True).fill(password)
        erin_page.get_by_label("New password again").fill(password)
        erin_page.get_by_label("One-time code").fill(erin.code())
        erin_page.get_by_role("button", name="Enrol").click()
        expect(erin_page.get_by_role("status")).to_contain_text("You are enrolled")
        erin_page.get_by_label("User name").fill("erin")
        erin_page.get_by_label("Password").fill(password)
        erin_page.get_by_label("One-time code").fill(erin.code())
        erin_page.get_by_role("button", name="Log in").click()
        expect(erin_page).to_have_url(f"{web.url}/access")
        expect(erin_page.locator("section.account h2")).to_have_text(["customer-globex"])
    finally:
        fresh.close()

    # A lost phone: a new TOTP secret, the same password, and the old secret is dead.
    page.locator("#users tr[data-user='erin']").get_by_role(
        "button", name="Reset TOTP of erin"
    ).click()
    page.get_by_role("form", name="Confirm").get_by_role(
        "button", name="Reset TOTP of erin"
    ).click()
    expect(page.get_by_role("status")).to_contain_text("Reset erin's TOTP")
    new_secret = page.locator("[data-field='totp']").inner_text()
    assert new_secret != secret
    fresh = browser.new_context()
    try:
        again = fresh.new_page()
        for totp_secret, lands_on in ((secret, "/login"), (new_secret, "/access")):
            code = Person("erin", totp_secret, {}).code()
            again.goto(f"{web.url}/login")
            again.get_by_label("User name").fill("erin")
            again.get_by_label("Password").fill(password)
            again.get_by_label("One-time code").fill(code)
            again.get_by_role("button", name="Log in").click()
            expect(again).to_have_url(f"{web.url}{lands_on}")
    finally:
        fresh.close()

    # A name the directory refuses gets a clear message, and nothing is created.
    form = page.get_by_role("form", name="Add a user")
    form.get_by_label("User name").evaluate("e => e.removeAttribute('pattern')")
    form.get_by_label("User name").fill("Bad Name!")
    form.get_by_role("button", name="Add user").click()
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page.locator("#users tr[data-user='Bad Name!']")).to_have_count(0)


def test_dana_opens_the_console_with_the_read_only_view(
    web: GatewayProcess,
    people: dict[str, Person],
    federation: FederationStandIn,
    sandbox: Sandbox,
    context: BrowserContext,
    screenshots: Path,
) -> None:
    page = context.new_page()
    log_in(page, web.url, people["dana"])
    expect(page).to_have_url(f"{web.url}/access")
    recorder = MotoRecorder(sandbox.endpoint_url)
    recorder.start()
    console_responses: list[Response] = []
    context.on(  # the form opens a new tab, whose first response is the redirect
        "response", lambda r: console_responses.append(r) if r.url.endswith("/console") else None
    )
    with context.expect_page() as opened:
        page.get_by_role("button", name="Open console: acme-prod / ReadOnly").click()
    console = opened.value
    console.wait_for_load_state()
    recorded = recorder.stop()

    expect(console.get_by_role("heading")).to_have_text("Signed in to the AWS console")
    expect(console.locator("#arn")).to_have_text(
        "arn:aws:sts::111111111111:assumed-role/ReadOnly/dana"
    )
    expect(console.locator("#destination")).to_have_text(
        "https://us-east-1.console.aws.amazon.com/console/home?region=us-east-1"
    )
    expect(console.locator("#issuer")).to_have_text(web.url)
    expect(console.locator("#duration")).to_have_text("3600 s")
    console.screenshot(path=screenshots / "console-signin.png")

    redirect = console_responses[0]
    assert redirect.status == 302 and redirect.headers["referrer-policy"] == "no-referrer"
    assert redirect.headers["location"].startswith(federation.url + "?Action=login&")

    # The session AWS would open is the read-only view: AssumeRole carried ReadOnlyAccess.
    bodies = [base64.b64decode(r.get("body") or "").decode() for r in recorded]
    assumed = [b for b in bodies if "Action=AssumeRole&" in b]
    assert len(assumed) == 1, bodies
    body = assumed[0]
    assert "RoleArn=arn%3Aaws%3Aiam%3A%3A111111111111%3Arole%2FReadOnly" in body
    assert "RoleSessionName=dana" in body and "SourceIdentity=dana" in body
    assert "PolicyArns.member.1.arn=arn%3Aaws%3Aiam%3A%3Aaws%3Apolicy%2FReadOnlyAccess" in body
    assert "Policy=" in body and "rds%3ADelete%2A" in body  # the deny travels as inline policy

    signins = audited_calls(web.state_url, principal="dana", type="console.signin")
    assert signins[0]["fields"]["aws_role"] == "ReadOnly"
    assert signins[0]["fields"]["account_id"] == "111111111111"
    token = federation.signins[-1]
    log = (web.directory / "gateway.log").read_text()
    with sqlite3.connect(web.directory / "state.db") as db:
        stored = "\n".join(row[0] for row in db.execute("SELECT body FROM audit_events"))
    for secret in (token.access_key_id, redirect.headers["location"].rpartition("=")[2]):
        assert secret not in log and secret not in stored


def test_iamgate_console_prints_a_signin_url_for_allowed_roles_only(
    web: GatewayProcess, people: dict[str, Person], federation: FederationStandIn
) -> None:
    dana = people["dana"]
    assert login(web, dana).returncode == 0
    target = ["console", "--account", "acme-prod", "--role", "ReadOnly", "--region", "eu-west-1"]
    printed = iamgate(dana.env, *target)
    assert printed.returncode == 0, printed.stderr
    url = printed.stdout.strip()
    assert url.startswith(federation.url + "?Action=login&")
    assert "console session until" in printed.stderr
    with urllib.request.urlopen(url, timeout=10) as page:  # what the browser would open
        text = page.read().decode()
    assert "assumed-role/ReadOnly/dana" in text
    assert "https://eu-west-1.console.aws.amazon.com/console/home?region=eu-west-1" in text

    refused = iamgate(dana.env, "console", "--account", "acme-ci", "--role", "CIRunner")
    assert refused.returncode != 0 and refused.stdout == ""
    assert "no role of yours allows CIRunner in acme-ci" in refused.stderr
    elsewhere = iamgate(
        dana.env, *target[:5], "--destination", "https://evil.example/console.aws.amazon.com"
    )
    assert elsewhere.returncode != 0
    assert "deep link must be an https URL on console.aws.amazon.com" in elsewhere.stderr


def test_new_calls_appear_live_on_the_audit_page(
    web: GatewayProcess, people: dict[str, Person], browser: Browser
) -> None:
    dana = people["dana"]
    assert login(web, dana).returncode == 0
    own = browser.new_context()
    try:
        page = own.new_page()
        log_in(page, web.url, dana)
        page.goto(f"{web.url}/audit?service=sts")
        expect(page.locator("#live-status")).to_have_text(
            "Live: showing new calls as they happen.", timeout=15_000
        )
        before = page.locator("table.events tbody tr[data-id]").count()
        target = ["--account", "acme-prod", "--role", "ReadOnly", "--"]
        called = iamgate(
            dana.env, "aws", *target, "sts", "get-caller-identity", "--region", "us-east-1"
        )
        assert called.returncode == 0, called.stderr
        rows = page.locator("table.events tbody tr[data-id]")
        expect(rows).to_have_count(before + 1, timeout=15_000)  # no reload
        expect(rows.first).to_contain_text("sts:GetCallerIdentity")
        expect(rows.first).to_have_class("allowed fresh")
    finally:
        own.close()
