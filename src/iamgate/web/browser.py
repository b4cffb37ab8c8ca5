"""The browser's side of a login: the session cookie, CSRF tokens, idle and absolute timeouts.

A browser holds the same kind of login session as the CLI, but in a cookie that page scripts
cannot read (HttpOnly), that other sites' POSTs do not carry along (SameSite=Lax) and that,
over TLS, is bound to this exact origin (`__Host-` prefix, Secure). A cookie travels by
itself, so every state-changing request must also carry a CSRF token only our own pages
know, and come from our own origin. These are decisions on data; the pages do the I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from urllib.parse import urlsplit

IDLE_TIMEOUT = timedelta(minutes=30)
ABSOLUTE_TIMEOUT = timedelta(hours=12)
# How stale `last_seen_at` may get before a page view writes it again: one write a minute
# per browser instead of one per request, at the price of an idle timeout a minute late.
TOUCH_INTERVAL = timedelta(minutes=1)
LOGIN_CSRF_COOKIE = "iamgate-login-csrf"


def session_cookie_name(tls: bool) -> str:
    """`__Host-` makes the browser refuse the cookie unless Secure, Path=/ and host-only."""
    return "__Host-iamgate-session" if tls else "iamgate-session"


@dataclass(frozen=True, slots=True)
class CookieFlags:
    name: str
    secure: bool
    httponly: bool = True
    samesite: str = "Lax"
    path: str = "/"


def session_cookie(tls: bool) -> CookieFlags:
    return CookieFlags(session_cookie_name(tls), secure=tls)


class SessionState(Enum):
    ACTIVE = "active"
    IDLE = "your session ended after 30 minutes without activity; log in again"
    EXPIRED = "your session expired; log in again"


def session_state(
    *,
    created_at: datetime,
    expires_at: datetime,
    last_seen_at: datetime | None,
    now: datetime,
    idle: timedelta = IDLE_TIMEOUT,
    absolute: timedelta = ABSOLUTE_TIMEOUT,
) -> SessionState:
    if now >= expires_at or now >= created_at + absolute:
        return SessionState.EXPIRED
    if now >= (last_seen_at or created_at) + idle:
        return SessionState.IDLE
    return SessionState.ACTIVE


def needs_touch(last_seen_at: datetime | None, now: datetime) -> bool:
    return last_seen_at is None or now - last_seen_at >= TOUCH_INTERVAL


def csrf_token(key: bytes, session_id: str) -> str:
    """Bound to one login session: a token from another session (or a logged-out one) fails."""
    mac = hmac.new(key, b"csrf\x00" + session_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def new_login_csrf() -> str:
    """The login form has no session yet: a random value in a cookie and in the form."""
    return secrets.token_urlsafe(24)


def _matches(expected: str | None, presented: str | None) -> bool:
    if not expected or not presented:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def same_origin(headers: Mapping[str, str], public_url: str) -> bool:
    """Whether a state-changing request comes from our own pages.

    Browsers send Origin on every POST and Sec-Fetch-Site on every request; either one
    naming another site is enough to refuse. A request with neither is not from a browser
    and cannot ride on a browser's cookie, so the CSRF token alone decides.
    """
    origin = headers.get("Origin")
    if origin is not None and origin.lower() != origin_of(public_url):
        return False
    site = headers.get("Sec-Fetch-Site")
    return site is None or site in ("same-origin", "none")


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Forgery(Enum):
    """Why a state-changing request is not taken as our own page's."""

    CROSS_ORIGIN = "cross-origin"
    BAD_TOKEN = "bad-token"  # missing, or not the one our page holds


def forgery(
    method: str,
    headers: Mapping[str, str],
    public_url: str,
    *,
    expected: str | None,
    presented: str | None,
) -> Forgery | None:
    """The one cross-origin and CSRF check, of the JSON API's cookie calls and of every
    form of the pages; None when the request is ours, or changes nothing (a safe method).

    A cookie travels by itself, so a state-changing request must come from our own origin
    and present the token only our page holds: the session's CSRF token (`csrf_token`)
    or, before there is a session (login, enrolment), the value of a Strict cookie.
    """
    if method in SAFE_METHODS:
        return None
    if not same_origin(headers, public_url):
        return Forgery.CROSS_ORIGIN
    if not _matches(expected, presented):
        return Forgery.BAD_TOKEN
    return None


def safe_next(target: str | None, default: str = "/access") -> str:
    """Where to go after login: a path on this site only (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return default
    if any(c in target for c in "\r\n\t\\") or target.startswith("/api/"):
        return default
    return target
