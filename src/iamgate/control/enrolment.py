"""The enrolment use case: an administrator adds a user and gets a one-time link; the new
user redeems it with a password of their choice and a code from their authenticator.

No HTTP here: the pages call it (and a JSON API or CLI could). The rules are in
`iamgate.identity.enrolment`, the rows in `iamgate.store.enrolments`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from iamgate.audit.events import AuditEvent, EventType
from iamgate.audit.writer import AuditSink
from iamgate.control.errors import ControlError, Kind
from iamgate.control.users import Actor, Admin
from iamgate.identity import enrolment as rules
from iamgate.identity.passwords import hash_password
from iamgate.identity.totp import new_totp_secret
from iamgate.store import enrolments as store


@dataclass(frozen=True, slots=True)
class Link:
    """What the administrator hands over: the address, to open once before `expires_at`."""

    user: str
    url: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Opened:
    """What the link's holder sees before enrolling."""

    user: str
    totp_secret: str
    otpauth_uri: str
    qr_svg: str
    expires_at: datetime


class Spent(enum.StrEnum):
    UNKNOWN = "This enrolment link is not valid."
    USED = "This enrolment link has already been used. Ask an iamgate administrator for a new one."
    EXPIRED = "This enrolment link has expired. Ask an iamgate administrator for a new one."


class EnrolmentRefused(ControlError):
    """The form is refused (a weak password, a wrong code); the link stays usable."""

    def __init__(self, message: str) -> None:
        super().__init__(Kind.INVALID, "EnrolmentRefused", message)


class LinkDead(ControlError):
    """The link no longer works (unknown, used or expired): a new one is needed."""

    def __init__(self, why: Spent) -> None:
        super().__init__(Kind.GONE, "LinkDead", why.value)
        self.why = why


class Enrolments:
    def __init__(
        self,
        engine: Engine,
        audit: AuditSink,
        admin: Admin,
        ttl: timedelta = rules.ENROLMENT_TTL,
    ) -> None:
        self.engine, self.audit, self.admin = engine, audit, admin
        self.ttl = ttl

    def _record(self, kind: EventType, actor: Actor, **fields: object) -> None:
        self.audit.append(
            AuditEvent(
                kind,
                principal=actor.name,
                source_ip=actor.source_ip,
                user_agent=actor.user_agent,
                fields=fields,
            )
        )

    def add_user(self, name: str, roles: Sequence[str], *, by: Actor, gateway_url: str) -> Link:
        """The user, added (as `Admin.add_user` checks and audits) with no password or TOTP
        that anyone knows, and a link for them to set both. ControlError as `add_user`."""
        self.admin.add_user(name, roles, by=by)  # its generated secrets are never shown
        return self.create_link(name, by=by, gateway_url=gateway_url)

    def create_link(self, name: str, *, by: Actor, gateway_url: str) -> Link:
        token, expires_at = store.create_link(
            self.engine, name, new_totp_secret(), ttl=self.ttl, by=by.name
        )
        self._record(
            EventType.ENROLMENT_CREATED,
            by,
            user=name,
            link=token.id,
            expires_at=expires_at.isoformat(),
        )
        return Link(name, rules.link_url(gateway_url, token), expires_at)

    def _state(self, text: str, now: datetime) -> tuple[rules.LinkToken, rules.LinkState]:
        token = rules.parse_link_token(text)
        state = store.link_state(self.engine, token) if token else None
        if token is None or state is None:
            raise LinkDead(Spent.UNKNOWN)
        if state.used_at is not None:
            raise LinkDead(Spent.USED)
        if not rules.link_usable(state, now):
            raise LinkDead(Spent.EXPIRED)
        return token, state

    def open(self, text: str) -> Opened:
        """What the link shows; LinkDead if it is spent, expired or not a link."""
        _, state = self._state(text, datetime.now(UTC))
        uri = rules.authenticator_uri(state.totp_secret, state.user)
        return Opened(state.user, state.totp_secret, uri, rules.qr_svg(uri), state.expires_at)

    def redeem(self, text: str, password: str, again: str, code: str, *, client: Actor) -> str:
        """Set the password and TOTP and spend the link; the user's name. EnrolmentRefused
        for a form to correct, LinkDead for a link that no longer works."""
        now = datetime.now(UTC)
        token, state = self._state(text, now)
        problem = rules.password_problem(password, again, state.user)
        if problem:
            raise EnrolmentRefused(problem)
        step = rules.code_step(state.totp_secret, code, now)
        if step is None:
            raise EnrolmentRefused(
                "That code does not match: scan the QR code (or type the secret) into your "
                "authenticator app, then type the code it shows now."
            )
        if not store.redeem_link(
            self.engine,
            token,
            password_hash=hash_password(password),
            totp_secret=state.totp_secret,
            totp_step=step,
            now=now,
        ):
            raise LinkDead(Spent.USED)
        self._record(
            EventType.ENROLMENT_REDEEMED,
            Actor(state.user, client.source_ip, client.user_agent),
            user=state.user,
            link=token.id,
        )
        return state.user
