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


def _forged(
    expected: str | None,
    presented: str | None,
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> browser.Forgery | None:
    return browser.forgery(
        method, headers or {}, "https://gate.example.com", expected=expected, presented=presented
    )


def test_a_csrf_token_belongs_to_one_session() -> None:
    token = browser.csrf_token(KEY, "session-a")
    assert _forged(browser.csrf_token(KEY, "session-a"), token) is None
    assert _forged(browser.csrf_token(KEY, "session-b"), token) is browser.Forgery.BAD_TOKEN
    other_key = browser.csrf_token(b"other key" * 4, "session-a")
    assert _forged(other_key, token) is browser.Forgery.BAD_TOKEN
    for presented in (None, "", token[:-1]):
        assert _forged(token, presented) is browser.Forgery.BAD_TOKEN


def test_the_login_form_token_is_a_double_submit() -> None:
    value = browser.new_login_csrf()
    assert _forged(value, value) is None
    assert _forged(value, browser.new_login_csrf()) is browser.Forgery.BAD_TOKEN
    assert _forged(None, value) is browser.Forgery.BAD_TOKEN
    assert _forged(value, None) is browser.Forgery.BAD_TOKEN


def test_a_state_changing_request_must_come_from_our_origin_with_the_token() -> None:
    token = browser.csrf_token(KEY, "session-a")
    ours = {"Origin": "https://gate.example.com", "Sec-Fetch-Site": "same-origin"}
    assert _forged(token, token, ours) is None
    foreign = {"Origin": "https://evil.example.com"}
    assert _forged(token, token, foreign) is browser.Forgery.CROSS_ORIGIN  # token or not
    assert _forged(token, None, foreign) is browser.Forgery.CROSS_ORIGIN
    assert _forged(token, token, {"Sec-Fetch-Site": "cross-site"}) is browser.Forgery.CROSS_ORIGIN
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert _forged(token, None, ours, method) is browser.Forgery.BAD_TOKEN
    for method in ("GET", "HEAD", "OPTIONS"):  # they change nothing: no token to show
        assert _forged(token, None, foreign, method) is None


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
