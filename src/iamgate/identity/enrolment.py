"""Enrolment of a new user by a one-time link: the pure parts, no HTTP and no store.

An administrator who adds a user gets a link, never the user's secrets. The link carries a
random secret; the store keeps only its SHA-256 (as login sessions do). Whoever opens the
link sees the TOTP secret that will be theirs, as a QR code and as text, chooses a password
and proves with a current code that their authenticator holds the secret. Then the link is
spent: it works once, and for ENROLMENT_TTL at most.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import segno

from iamgate.identity.totp import enrolment_uri, matching_step

ENROLMENT_TTL = timedelta(hours=24)
LINK_PREFIX = "igenrol1"
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
_TOKEN = re.compile(rf"^{LINK_PREFIX}\.([0-9a-f]{{16}})\.([A-Za-z0-9_-]{{43}})$")


@dataclass(frozen=True, slots=True)
class LinkToken:
    """A link's id (stored as it is) and secret (stored only as its hash)."""

    id: str
    secret: str

    @property
    def text(self) -> str:
        return f"{LINK_PREFIX}.{self.id}.{self.secret}"

    @property
    def secret_hash(self) -> str:
        return secret_hash(self.secret)


def new_link_token() -> LinkToken:
    return LinkToken(secrets.token_hex(8), secrets.token_urlsafe(32))


def parse_link_token(text: str) -> LinkToken | None:
    match = _TOKEN.match(text)
    return LinkToken(match.group(1), match.group(2)) if match else None


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def hash_matches(stored: str, token: LinkToken) -> bool:
    return hmac.compare_digest(stored.encode(), token.secret_hash.encode())


def link_url(gateway_url: str, token: LinkToken) -> str:
    return f"{gateway_url.rstrip('/')}/enrol/{token.text}"


@dataclass(frozen=True, slots=True)
class LinkState:
    """What the store holds of a link, as the use case needs it."""

    user: str
    totp_secret: str
    expires_at: datetime
    used_at: datetime | None


def link_usable(state: LinkState | None, now: datetime) -> bool:
    return state is not None and state.used_at is None and state.expires_at > now


def password_problem(password: str, again: str, user: str) -> str | None:
    """Why a chosen password is refused, or None."""
    if password != again:
        return "The two passwords differ."
    if len(password) < MIN_PASSWORD:
        return f"A password has at least {MIN_PASSWORD} characters."
    if len(password) > MAX_PASSWORD:
        return f"A password has at most {MAX_PASSWORD} characters."
    if password.strip().lower() == user.lower():
        return "The password may not be the user name."
    return None


def code_step(totp_secret: str, code: str, now: datetime) -> int | None:
    """The time step of a correct current code (recorded as used), or None."""
    return matching_step(totp_secret, code, now)


def qr_svg(uri: str) -> str:
    """The otpauth:// URI as an inline SVG QR code: no script, no external resource."""
    qr = segno.make(uri, error="m", micro=False)
    return qr.svg_inline(scale=5, border=4, dark="#000", light="#fff", title="TOTP QR code")


def authenticator_uri(totp_secret: str, user: str) -> str:
    return enrolment_uri(totp_secret, user)
