"""The browser session's decisions: cookies, CSRF, origins, timeouts, where login leads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from iamgate.web import browser

KEY = b"k" * 32
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_the_cookie_is_host_only_and_secure_over_tls() -> None:
    tls = browser.session_cookie(tls=True)
    assert tls.name.startswith("__Host-") and tls.secure and tls.httponly
    assert tls.path == "/" and tls.samesite == "Lax"
    plain = browser.session_cookie(tls=False)
    assert not plain.name.startswith("__Host-") and not plain.secure and plain.httponly


def test_a_csrf_token_belongs_to_one_session() -> None:
    token = browser.csrf_token(KEY, "session-a")
    assert browser.csrf_valid(KEY, "session-a", token)
    assert not browser.csrf_valid(KEY, "session-b", token)
    assert not browser.csrf_valid(b"other key" * 4, "session-a", token)
    assert not browser.csrf_valid(KEY, "session-a", None)
    assert not browser.csrf_valid(KEY, "session-a", "")
    assert not browser.csrf_valid(KEY, "session-a", token[:-1])


def test_the_login_form_token_is_a_double_submit() -> None:
    value = browser.new_login_csrf()
    assert browser.login_csrf_valid(value, value)
    assert not browser.login_csrf_valid(value, browser.new_login_csrf())
    assert not browser.login_csrf_valid(None, value)
    assert not browser.login_csrf_valid(value, None)


def test_origins() -> None:
    url = "https://gate.example.com"
    assert browser.same_origin({"Origin": "https://gate.example.com"}, url)
    assert browser.same_origin({"Origin": "https://GATE.example.com"}, url + "/")
    assert not browser.same_origin({"Origin": "https://evil.example.com"}, url)
    assert not browser.same_origin({"Origin": "http://gate.example.com"}, url)
    assert not browser.same_origin({"Origin": "https://gate.example.com:8443"}, url)
    assert not browser.same_origin({"Origin": "null"}, url)
    assert not browser.same_origin({"Sec-Fetch-Site": "cross-site"}, url)
    assert not browser.same_origin({"Sec-Fetch-Site": "same-site"}, url)
    assert browser.same_origin({"Sec-Fetch-Site": "same-origin"}, url)
    assert browser.same_origin({}, url)  # not a browser: the CSRF token alone decides


def _state(created: timedelta, seen: timedelta | None, expires: timedelta) -> str:
    return browser.session_state(
        created_at=NOW - created,
        expires_at=NOW + expires,
        last_seen_at=None if seen is None else NOW - seen,
        now=NOW,
    ).name


def test_idle_and_absolute_timeouts() -> None:
    minutes, hours = timedelta(minutes=1), timedelta(hours=1)
    assert _state(5 * minutes, 1 * minutes, hours) == "ACTIVE"
    assert _state(5 * hours, 29 * minutes, hours) == "ACTIVE"
    assert _state(5 * hours, 30 * minutes, hours) == "IDLE"
    assert _state(31 * minutes, None, hours) == "IDLE"
    assert _state(12 * hours, 1 * minutes, hours) == "EXPIRED"  # absolute, however busy
    assert _state(1 * hours, 1 * minutes, -minutes) == "EXPIRED"  # the login session's own end
    assert browser.needs_touch(None, NOW)
    assert not browser.needs_touch(NOW - timedelta(seconds=59), NOW)
    assert browser.needs_touch(NOW - timedelta(seconds=60), NOW)


@given(st.text())
def test_after_login_only_a_path_on_this_site(target: str) -> None:
    chosen = browser.safe_next(target)
    assert chosen.startswith("/") and not chosen.startswith("//")
    assert not chosen.startswith("/\\") and "\n" not in chosen and "\\" not in chosen
    assert chosen == target or chosen == "/access"


def test_after_login_examples() -> None:
    assert browser.safe_next("/audit?decision=denied") == "/audit?decision=denied"
    for bad in ("https://evil.example", "//evil.example", "/\\evil", "", None, "/api/v1/x"):
        assert browser.safe_next(bad) == "/access"
