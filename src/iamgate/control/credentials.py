"""Issuing gateway credentials: the one place they are minted, recorded and audited.

A person's CLI asks through the JSON API (`POST /api/v1/credentials`, under their login
session); an administrator on the gateway host issues for a user or a bot
(`iamgate credentials --issue-for`). Both end in `_issue`: the credentials are minted, their
issue is stored (so a revocation of the holder reaches them) and `credentials.issued` is
written, so that "what did this key do?" starts from its issue whoever asked for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from iamgate.access.decisions import role_reaches
from iamgate.audit.events import AuditEvent, EventType
from iamgate.audit.writer import AuditSink
from iamgate.config import AccountConfig, Config, RoleConfig
from iamgate.control.callers import Caller
from iamgate.control.errors import ControlError, Kind, forbidden, invalid, not_found
from iamgate.control.users import Actor
from iamgate.identity.bots import bot_name
from iamgate.identity.credentials import (
    GatewayCredentials,
    KeyRing,
    PrincipalKind,
    mint_credentials,
)
from iamgate.store.issued_credentials import record_issued

TIME = "%Y-%m-%dT%H:%M:%SZ"
MIN_TTL = timedelta(minutes=1)
MAX_TTL = timedelta(hours=12)
DEFAULT_TTL_SECONDS = 3600


@dataclass(frozen=True, slots=True)
class CredentialsRequest:
    """What a person asks for: an account (by name), an IAM role in it, a lifetime."""

    account: str
    role: str
    ttl_seconds: int = DEFAULT_TTL_SECONDS


def account_named(config: Config, name: str) -> AccountConfig:
    account = config.aws.account_named(name)
    if account is None:
        raise not_found("NoSuchAccount", f"no account {name!r}")
    return account


class Credentials:
    def __init__(self, engine: Engine, keyring: KeyRing, audit: AuditSink) -> None:
        self.engine, self.keyring, self.audit = engine, keyring, audit

    def for_caller(
        self, config: Config, caller: Caller, asked: CredentialsRequest, by: Actor
    ) -> GatewayCredentials:
        """Credentials for the caller's own use, within what their roles and their login
        session allow: the shortest of the asked lifetime, 12 h, the longest
        `max_session_ttl` of the roles that reach the role, and the session's time left."""
        account = account_named(config, asked.account)
        reaching = [r for r in caller.roles if role_reaches(r, account, asked.role)]
        if not reaching:
            raise forbidden(
                f"iamgate: no role of yours allows {asked.role} in account {account.name}"
            )
        if asked.ttl_seconds < MIN_TTL.total_seconds():
            raise invalid("ttl_seconds must be a whole number, at least 60")
        now = datetime.now(UTC)
        ttl = min(
            timedelta(seconds=min(asked.ttl_seconds, int(MAX_TTL.total_seconds()))),
            max(r.max_session_ttl for r in reaching),
            caller.session.expires_at - now,
        )
        if ttl < MIN_TTL:
            raise ControlError(
                Kind.UNAUTHENTICATED, "Unauthorized", "the login session is about to expire"
            )
        return self._issue(
            principal=caller.user,
            kind="bot" if bot_name(caller.user) is not None else "user",
            account=account,
            aws_role=asked.role,
            gateway_roles=reaching,
            now=now,
            ttl=ttl,
            login_session=caller.session.id,
            by=by,
        )

    def for_principal(
        self,
        config: Config,
        principal: str,
        kind: PrincipalKind,
        account_name: str,
        aws_role: str,
        ttl: timedelta,
        *,
        by: Actor,
    ) -> GatewayCredentials:
        """An administrator's issue, on the gateway host, for a user or bot: no login session
        behind it; the gateway roles recorded are the configured user's, if it is one."""
        account = config.aws.account_named(account_name)
        if account is None:
            known = ", ".join(a.name for a in config.aws.accounts) or "none"
            raise not_found(
                "NoSuchAccount", f"unknown account {account_name!r} (configured: {known})"
            )
        if not MIN_TTL <= ttl <= MAX_TTL:
            raise invalid("must be between 1m and 12h", code="InvalidTtl")
        user = next((u for u in config.users if u.name == principal), None)
        roles: Mapping[str, RoleConfig] = {r.name: r for r in config.roles}
        return self._issue(
            principal=principal,
            kind=kind,
            account=account,
            aws_role=aws_role,
            gateway_roles=[roles[r] for r in (user.roles if user else ()) if r in roles],
            now=datetime.now(UTC),
            ttl=ttl,
            login_session=None,
            by=by,
            issued_by=by.name,
        )

    def _issue(
        self,
        *,
        principal: str,
        kind: PrincipalKind,
        account: AccountConfig,
        aws_role: str,
        gateway_roles: Sequence[RoleConfig],
        now: datetime,
        ttl: timedelta,
        login_session: str | None,
        by: Actor,
        **extra: object,
    ) -> GatewayCredentials:
        creds = mint_credentials(
            self.keyring,
            principal=principal,
            kind=kind,
            account_id=account.id,
            aws_role=aws_role,
            gateway_roles=tuple(r.name for r in gateway_roles),
            now=now,
            ttl=ttl,
            login_session=login_session,
        )
        record_issued(self.engine, creds.claims)
        self.audit.append(
            AuditEvent(
                EventType.CREDENTIALS_ISSUED,
                principal=principal,
                source_ip=by.source_ip,
                user_agent=by.user_agent,
                fields={
                    "account_id": account.id,
                    "aws_role": aws_role,
                    "access_key_id": creds.access_key_id,
                    "expires_at": creds.claims.expires_at.astimezone(UTC).strftime(TIME),
                    "gateway_roles": list(creds.claims.gateway_roles),
                    "login_session": login_session,
                    **extra,
                },
            )
        )
        return creds
