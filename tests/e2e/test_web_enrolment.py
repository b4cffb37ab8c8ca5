"""A new user enrols by a one-time link, in headless Chromium against a real gateway.

The administrator who adds a user gets a link and never the user's secrets; the user opens
it in a browser of their own, scans a QR code (inline SVG, no script), chooses a password,
confirms with a code and logs in. The link then no longer works.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import GatewayProcess, audited_calls
from people import PASSWORD, Person, enrol
from playwright.sync_api import Browser, expect

from iamgate.sandbox import Sandbox
from iamgate.sandbox.federation import FederationStandIn

pytestmark = pytest.mark.e2e
NEW_PASSWORD = "a long passphrase of my own"


@pytest.fixture(scope="module")
def web(
    sandbox: Sandbox, federation: FederationStandIn, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(
        sandbox, tmp_path_factory.mktemp("enrolment-gateway"), federation_url=federation.url
    )
    gw.start()
    yield gw
    gw.stop()


def test_a_new_user_enrols_by_a_one_time_link_and_logs_in(
    web: GatewayProcess, browser: Browser, tmp_path: Path
) -> None:
    loader = enrol(web, tmp_path, "loader")
    admin_ctx = browser.new_context()
    page = admin_ctx.new_page()
    page.goto(f"{web.url}/login")
    page.get_by_label("User name").fill(loader.name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("One-time code").fill(loader.code())
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{web.url}/access")

    page.goto(f"{web.url}/admin/users")
    form = page.get_by_role("form", name="Add a user")
    form.get_by_label("User name").fill("nina")
    form.get_by_label("contractor").check()
    form.get_by_role("button", name="Add user").click()
    expect(page.get_by_role("status")).to_have_text("Added nina.")
    link = page.locator("[data-field='link']").inner_text().strip()
    assert link.startswith(f"{web.url}/enrol/igenrol1.")
    # No secret reaches the administrator: no password, no TOTP secret, no otpauth URI.
    for field in ("password", "totp"):
        expect(page.locator(f"[data-field='{field}']")).to_have_count(0)
    assert "otpauth://" not in page.content() and "secret=" not in page.content()
    row = page.locator("#users tr[data-user='nina']")
    expect(row).to_contain_text("contractor")
    expect(row.locator(".state")).to_contain_text("not enrolled")
    page.screenshot(path=tmp_path / "admin-link.png")

    fresh = browser.new_context()
    try:
        nina_page = fresh.new_page()
        opened = nina_page.goto(link)
        assert opened is not None and opened.status == 200
        headers = opened.headers
        assert "script-src 'self'" in headers["content-security-policy"]
        assert "unsafe-inline" not in headers["content-security-policy"]
        assert headers["referrer-policy"] == "same-origin"
        qr = nina_page.locator("#totp-qr svg")
        expect(qr).to_be_visible()
        assert qr.evaluate("e => e.getBoundingClientRect().width") > 100
        secret = nina_page.locator("[data-field='totp']").inner_text().strip()
        assert len(secret) >= 16
        nina = Person("nina", secret, {})
        nina_page.screenshot(path=tmp_path / "enrol.png")

        # A wrong code is refused and the link stays usable.
        nina_page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
        nina_page.get_by_label("New password again").fill(NEW_PASSWORD)
        nina_page.get_by_label("One-time code").fill(
            "000000" if nina.peek() != "000000" else "111111"
        )
        nina_page.get_by_role("button", name="Enrol").click()
        expect(nina_page.get_by_role("alert")).to_contain_text("does not match")
        expect(nina_page.locator("[data-field='totp']")).to_have_text(secret)

        # Passwords that differ are refused too.
        nina_page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
        nina_page.get_by_label("New password again").fill(NEW_PASSWORD + "!")
        nina_page.get_by_label("One-time code").fill(nina.peek())
        nina_page.get_by_role("button", name="Enrol").click()
        expect(nina_page.get_by_role("alert")).to_contain_text("differ")

        nina_page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
        nina_page.get_by_label("New password again").fill(NEW_PASSWORD)
        nina_page.get_by_label("One-time code").fill(nina.code())
        nina_page.get_by_role("button", name="Enrol").click()
        expect(nina_page).to_have_url(f"{web.url}/login?why=enrolled&user=nina")
        expect(nina_page.get_by_role("status")).to_contain_text("You are enrolled")

        # Logging in: the code used to enrol is spent, the next one works.
        nina_page.get_by_label("User name").fill("nina")
        nina_page.get_by_label("Password").fill(NEW_PASSWORD)
        nina_page.get_by_label("One-time code").fill(nina.code())
        nina_page.get_by_role("button", name="Log in").click()
        expect(nina_page).to_have_url(f"{web.url}/access")
        expect(nina_page.locator("section.account h2")).to_have_text(["customer-globex"])

        # The link is dead now, opened or posted.
        again = nina_page.goto(link)
        assert again is not None and again.status == 410
        expect(nina_page.get_by_role("heading", name="Enrolment link not usable")).to_be_visible()
        expect(nina_page.locator("main")).to_contain_text("already been used")
        expect(nina_page.locator("#totp-qr")).to_have_count(0)
        assert secret not in nina_page.content()
    finally:
        fresh.close()

    # A forged link is refused the same way; the administrator sees nina enrolled.
    forged = admin_ctx.new_page().goto(link[:-4] + "AAAA")
    assert forged is not None and forged.status == 410
    page.goto(f"{web.url}/admin/users")
    expect(page.locator("#users tr[data-user='nina'] .state")).to_contain_text("active")

    deadline = time.monotonic() + 10
    while True:
        events = audited_calls(
            web.state_url, types=("enrolment.created", "enrolment.redeemed"), wait=0
        )
        kinds = sorted(e["type"] for e in events)
        if kinds == ["enrolment.created", "enrolment.redeemed"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert kinds == ["enrolment.created", "enrolment.redeemed"], events
    created = next(e for e in events if e["type"] == "enrolment.created")
    redeemed = next(e for e in events if e["type"] == "enrolment.redeemed")
    assert created["principal"] == "loader" and created["fields"]["user"] == "nina"
    assert redeemed["principal"] == "nina"
    assert created["fields"]["link"] == redeemed["fields"]["link"]
    assert link.split(".")[-1] not in str(events)  # the link's secret is never recorded
    admin_ctx.close()
