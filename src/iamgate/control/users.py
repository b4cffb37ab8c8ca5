"""Administration of iamgate itself: users, their sessions, who may administer.

The web UI's admin pages, the JSON API and the CLI on the gateway host all call these, so a
lock from the browser, the API or a terminal is the same change, with the same audit event
and the same effect on the next AWS call (a lock revokes everything the user holds).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from iamgate.audit.events import AuditEvent, EventType
from iamgate.audit.writer import AuditSink
from iamgate.config import USER_NAME, Config, Configured, LiveConfig, live
from iamgate.control.errors import ControlError, Kind, conflict, invalid, not_found
from iamgate.identity.passwords import hash_password
from iamgate.identity.totp import enrolment_uri, new_totp_secret
from iamgate.store.login_sessions import LoginSession, list_login_sessions
from iamgate.store.revocations import revoke
from iamgate.store.users import UserRow, delete_user, get_user, list_users, put_user, set_lock

LOCK_FOREVER = timedelta(days=365 * 100)


@dataclass(frozen=True)
class Actor:
    """Who does an administrative change, as the audit log records it."""

    name: str
    source_ip: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True)
class Enrolment:
    """What a new (or reset) user needs to log in; shown once to the administrator."""

    user: str
    password: str | None  # None: the password stays (a TOTP-only reset)
    totp_secret: str
    otpauth_uri: str


@dataclass(frozen=True)
class UserSummary:
    name: str
    roles: tuple[str, ...]
    locked: bool
    locked_until: datetime | None
    has_password: bool
    failed_logins: int
    created_at: datetime | None
    active_sessions: int


def session_state(session: LoginSession, now: datetime) -> str:
    """`active`, `expired` or `revoked`, as `iamgate sessions ls` shows it."""
    if session.revoked_at:
        return "revoked"
    return "expired" if session.expires_at <= now else "active"


def no_such_user(name: str) -> ControlError:
    return ControlError(Kind.NOT_FOUND, "NoSuchUser", f"no user {name!r}")


def new_password() -> str:
    """24 URL-safe characters (144 bits): typed once, then changed by nobody but a reset."""
    return secrets.token_urlsafe(18)


class Admin(Configured):
    def __init__(self, config: Config | LiveConfig, engine: Engine, audit: AuditSink) -> None:
        self.live = live(config)
        self.engine = engine
        self.audit = audit

    @property
    def bootstrap(self) -> set[str]:
        """Users the configuration lists: their roles are the configuration's to set."""
        return {u.name for u in self.config.users}

    def _record(self, kind: EventType, by: Actor, **fields: object) -> None:
        self.audit.append(
            AuditEvent(
                kind,
                principal=by.name,
                source_ip=by.source_ip,
                user_agent=by.user_agent,
                fields=fields,
            )
        )

    def _existing(self, name: str) -> UserRow:
        row = get_user(self.engine, name)
        if row is None:
            raise no_such_user(name)
        return row

    def _check_roles(self, roles: Sequence[str]) -> list[str]:
        unknown = sorted(set(roles) - set(self.roles))
        if unknown:
            raise invalid(
                code="UnknownRole", message=f"unknown gateway roles: {', '.join(unknown)}"
            )
        return list(dict.fromkeys(roles))

    def _enrol(self, name: str, password: str | None) -> Enrolment:
        password, secret = password or new_password(), new_totp_secret()
        put_user(self.engine, name, password_hash=hash_password(password), totp_secret=secret)
        return Enrolment(name, password, secret, enrolment_uri(secret, name))

    def administers(self, user: str) -> bool:
        row = get_user(self.engine, user)
        held = set(row.roles) if row else set()
        return any(r.administer for r in self.config.roles if r.name in held)

    def _active_administrators(self) -> set[str]:
        """Users who could administer iamgate now: an administering role, enrolled, unlocked."""
        now = datetime.now(UTC)
        administering = {r.name for r in self.config.roles if r.administer}
        return {
            row.record.name
            for row in list_users(self.engine)
            if administering & set(row.roles)
            and row.has_password
            and not (row.record.locked_until is not None and row.record.locked_until > now)
        }

    def check_admin_loss(
        self, name: str, *, by: Actor, change: str, confirmed_self: bool = False
    ) -> None:
        """Refuse a change (`lock`, `demote`, `remove`) that would leave nobody to administer
        iamgate, or that takes an administrator's own rights without their second yes."""
        active = self._active_administrators()
        if name not in active:
            return
        if not active - {name}:
            raise conflict(
                "LastAdministrator",
                f"{name} is the last administrator of iamgate: give another user an "
                f"administering role before you {change} {name}",
            )
        if name == by.name and not confirmed_self:
            raise conflict(
                "ConfirmSelf",
                f"you would {change} yourself and lose administration: confirm it a second "
                "time (in the JSON API, add ?confirm=self)",
            )

    def users(self) -> list[UserSummary]:
        now = datetime.now(UTC)
        active: dict[str, int] = {}
        for session in self.sessions():
            active[session.user] = active.get(session.user, 0) + 1
        summaries = []
        for row in list_users(self.engine):
            locked_until = row.record.locked_until
            summaries.append(
                UserSummary(
                    name=row.record.name,
                    roles=row.roles,
                    locked=locked_until is not None and locked_until > now,
                    locked_until=locked_until,
                    has_password=row.has_password,
                    failed_logins=row.record.failed_logins,
                    created_at=row.created_at,
                    active_sessions=active.get(row.record.name, 0),
                )
            )
        return summaries

    def add_user(
        self, name: str, roles: Sequence[str], *, by: Actor, password: str | None = None
    ) -> Enrolment:
        """A new user, enrolled: their password (generated unless given) and TOTP secret."""
        if not USER_NAME.match(name):
            raise invalid(
                code="InvalidName",
                message="a user name is 1-64 of a-z, 0-9 and _ . @ -, starting with a letter "
                "or digit",
            )
        wanted = self._check_roles(roles)
        row = get_user(self.engine, name)
        if row is not None and row.has_password:
            raise conflict("UserExists", f"user {name!r} exists; reset it instead")
        if row is None or (wanted and name not in self.bootstrap):
            put_user(self.engine, name, roles=wanted)
        enrolment = self._enrol(name, password)
        self._record(EventType.USER_CHANGED, by, user=name, change="added", roles=wanted)
        return enrolment

    def reset(self, name: str, *, by: Actor, password: str | None = None) -> Enrolment:
        """A new password and TOTP secret; every session and credential of the user ends."""
        self._existing(name)
        enrolment = self._enrol(name, password)
        set_lock(self.engine, name, None)
        revoke(self.engine, "user", name, by=by.name)
        self._record(EventType.USER_CHANGED, by, user=name, change="reset")
        return enrolment

    def reset_totp(self, name: str, *, by: Actor) -> Enrolment:
        """A new TOTP secret only (a lost phone); the password stays, every session ends."""
        self._existing(name)
        secret = new_totp_secret()
        put_user(self.engine, name, totp_secret=secret)
        revoke(self.engine, "user", name, by=by.name)
        self._record(EventType.USER_CHANGED, by, user=name, change="totp-reset")
        return Enrolment(name, None, secret, enrolment_uri(secret, name))

    def lock(self, name: str, *, by: Actor, confirmed_self: bool = False) -> None:
        self.check_admin_loss(name, by=by, change="lock", confirmed_self=confirmed_self)
        if not set_lock(self.engine, name, datetime.now(UTC) + LOCK_FOREVER):
            raise no_such_user(name)
        revoke(self.engine, "user", name, by=by.name)
        self._record(EventType.USER_CHANGED, by, user=name, change="locked")

    def unlock(self, name: str, *, by: Actor) -> None:
        if not set_lock(self.engine, name, None):
            raise no_such_user(name)
        self._record(EventType.USER_CHANGED, by, user=name, change="unlocked")

    def set_roles(
        self, name: str, roles: Sequence[str], *, by: Actor, confirmed_self: bool = False
    ) -> None:
        if name in self.bootstrap:
            raise conflict(
                "BootstrapUser", f"{name} is a bootstrap user: its roles are in the config"
            )
        wanted = self._check_roles(roles)
        self._existing(name)
        if not any(r.administer for r in self.config.roles if r.name in wanted):
            self.check_admin_loss(name, by=by, change="demote", confirmed_self=confirmed_self)
        put_user(self.engine, name, roles=wanted)
        self._record(EventType.USER_CHANGED, by, user=name, change="roles", roles=wanted)

    def remove(self, name: str, *, by: Actor, confirmed_self: bool = False) -> None:
        if name in self.bootstrap:
            raise conflict(
                "BootstrapUser", f"{name} is a bootstrap user: remove it from the config"
            )
        self.check_admin_loss(name, by=by, change="remove", confirmed_self=confirmed_self)
        if not delete_user(self.engine, name, by=by.name):
            raise no_such_user(name)
        self._record(EventType.USER_CHANGED, by, user=name, change="removed")

    def sessions(self, user: str | None = None) -> list[LoginSession]:
        """Login sessions still in force: not revoked, not expired."""
        now = datetime.now(UTC)
        return [
            s
            for s in list_login_sessions(self.engine, user)
            if s.revoked_at is None and s.expires_at > now
        ]

    def all_sessions(self, user: str | None = None) -> list[LoginSession]:
        """Every login session, newest first, ended ones too (see `session_state`)."""
        return list_login_sessions(self.engine, user)

    def revoke_session(self, session_id: str, *, by: Actor) -> None:
        known = {s.id: s for s in list_login_sessions(self.engine)}
        session = known.get(session_id)
        if session is None:
            raise not_found("NoSuchSession", f"no login session {session_id!r}")
        revoke(self.engine, "login", session_id, by=by.name)
        self._record(
            EventType.SESSION_REVOKED,
            by,
            login_session=session_id,
            user=session.user,
            scope="login",
        )

    def revoke_user(self, name: str, *, by: Actor) -> None:
        """Everything the user holds now stops working; new logins still may, unlike a lock."""
        revoke(self.engine, "user", name, by=by.name)
        self._record(EventType.SESSION_REVOKED, by, user=name, scope="user")

    def revoke_credential(self, access_key_id: str, *, by: Actor) -> None:
        if not access_key_id.startswith("ASIA") or len(access_key_id) != 20:
            raise invalid(code="InvalidAccessKeyId", message="a gateway access key is ASIA + 16")
        revoke(self.engine, "credential", access_key_id.removeprefix("ASIA"), by=by.name)
        self._record(EventType.SESSION_REVOKED, by, access_key_id=access_key_id, scope="credential")
