"""Administration of bots: the CI jobs and machines that act as `bot:NAME`.

As with users (`control.users`), the configuration's `bots:` are bootstrap bots: their
roles are the configuration's to set, and they leave when the configuration drops them.
Every other bot is stored (`iamgate bots add`), and an administrator sets its roles or
removes it from the CLI on the gateway host, through the JSON API or on the Bots page:
all three run these use cases, with the same audit events and the same effect on the next
call of the bot's jobs (removing a bot, or revoking it, ends every credential it holds).

Bindings (which jobs' tokens act as which bot) stay in the configuration: they are trust
policy, reviewed with it and checked by `iamgate config check`; here they are only shown.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine

from iamgate.audit.events import AuditEvent, EventType
from iamgate.audit.search import Filters, search
from iamgate.audit.writer import AuditSink
from iamgate.config import BOT_NAME_PATTERN, BindingConfig, Config, Configured, LiveConfig, live
from iamgate.control.errors import ControlError, Kind, conflict, invalid
from iamgate.control.users import Actor
from iamgate.identity.bots import bot_principal
from iamgate.store.bots import (
    BotRow,
    Issued,
    add_bot,
    delete_bot,
    get_bot,
    issued_to,
    last_issued,
    list_bots,
    set_bot_roles,
)
from iamgate.store.login_sessions import LoginSession, list_login_sessions
from iamgate.store.revocations import revoke

BOT_NAME = f"^{BOT_NAME_PATTERN}$"
MAX_DESCRIPTION = 256


def no_such_bot(name: str) -> ControlError:
    return ControlError(Kind.NOT_FOUND, "NoSuchBot", f"no bot {name!r}")


@dataclass(frozen=True)
class BindingView:
    """A binding of the configuration that maps tokens to a bot, as it is shown."""

    name: str
    issuer: str | None
    claims: dict[str, list[str]]


@dataclass(frozen=True)
class BotSummary:
    name: str
    roles: tuple[str, ...]
    source: str  # "config" (bootstrap) or "store"
    description: str
    created_at: datetime | None
    bindings: tuple[BindingView, ...]
    last_exchange: Issued | None  # the newest credential its jobs got, expired or not
    live: tuple[Issued, ...]  # credentials unexpired and not revoked, newest first
    # Of the last exchange, from its `credentials.issued` record in the audit trail: the
    # binding that mapped the job's token, and the job's claims (repository, run, ref...).
    last_binding: str | None = None
    last_job: dict[str, str] = field(default_factory=dict)
    # Renewable sessions of machines that joined as the bot (a join token, AWS IAM join),
    # in force now: each mints credentials until it ends; a revocation ends them too.
    sessions: tuple[LoginSession, ...] = ()


def _bindings_of(config: Config, name: str) -> tuple[BindingView, ...]:
    return tuple(
        BindingView(b.name, config.oidc.issuer_of(b), dict(b.claims))
        for b in config.oidc.bindings
        if _binds(b, name)
    )


def _binds(binding: BindingConfig, name: str) -> bool:
    return not binding.deny and binding.bot == name


class Bots(Configured):
    def __init__(self, config: Config | LiveConfig, engine: Engine, audit: AuditSink) -> None:
        self.live = live(config)
        self.engine = engine
        self.audit = audit

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

    def _check_roles(self, roles: Sequence[str]) -> list[str]:
        unknown = sorted(set(roles) - set(self.roles))
        if unknown:
            raise invalid(
                code="UnknownRole", message=f"unknown gateway roles: {', '.join(unknown)}"
            )
        return list(dict.fromkeys(roles))

    def _summary(
        self, name: str, roles: Sequence[str], source: str, row: BotRow | None
    ) -> BotSummary:
        principal = bot_principal(name)
        now = datetime.now(UTC)
        live_ones = tuple(c for c in issued_to(self.engine, principal, since=now) if not c.revoked)
        configured = self.config.bot_named(name)
        last = last_issued(self.engine, principal)
        binding, job = self._exchange_of(last)
        return BotSummary(
            name=name,
            roles=tuple(roles),
            source=source,
            description=configured.description if configured else (row.description if row else ""),
            created_at=row.created_at if row else None,
            bindings=_bindings_of(self.config, name),
            last_exchange=last,
            live=live_ones,
            last_binding=binding,
            last_job=job,
            sessions=tuple(
                x
                for x in list_login_sessions(self.engine, principal)
                if x.revoked_at is None and x.expires_at > now
            ),
        )

    def _exchange_of(self, issued: Issued | None) -> tuple[str | None, dict[str, str]]:
        """The binding and job claims the audit trail recorded for an issued key."""
        if issued is None:
            return None, {}
        found = search(
            self.engine,
            Filters(
                type=str(EventType.CREDENTIALS_ISSUED),
                access_key_id=issued.access_key_id,
                limit=1,
            ),
        )
        if not found:
            return None, {}
        fields = found[0].get("fields") or {}
        job = fields.get("job") if isinstance(fields.get("job"), dict) else {}
        binding = fields.get("binding")
        return (
            binding if isinstance(binding, str) else None,
            {str(k): str(v) for k, v in (job or {}).items()},
        )

    def bots(self) -> list[BotSummary]:
        """Every bot, the configuration's and the stored, by name; a stored bot whose name
        the configuration took since is shown once, as the configuration's."""
        found = {b.name: self._summary(b.name, b.roles, "config", None) for b in self.config.bots}
        for row in list_bots(self.engine):
            if row.name not in found:
                found[row.name] = self._summary(row.name, row.roles, "store", row)
        return [found[name] for name in sorted(found)]

    def bot(self, name: str) -> BotSummary:
        configured = self.config.bot_named(name)
        if configured is not None:
            return self._summary(name, configured.roles, "config", None)
        row = get_bot(self.engine, name)
        if row is None:
            raise no_such_bot(name)
        return self._summary(name, row.roles, "store", row)

    def exists(self, name: str) -> bool:
        return self.config.bot_named(name) is not None or get_bot(self.engine, name) is not None

    def add(
        self, name: str, roles: Sequence[str], *, by: Actor, description: str = ""
    ) -> BotSummary:
        if not re.match(BOT_NAME, name):
            raise invalid(
                code="InvalidName",
                message="a bot name is 1-60 of a-z, 0-9 and _ . @ -, starting with a letter "
                "or digit",
            )
        if len(description) > MAX_DESCRIPTION:
            raise invalid(f"a description is at most {MAX_DESCRIPTION} characters")
        wanted = self._check_roles(roles)
        if self.config.bot_named(name) is not None:
            raise conflict(
                "BootstrapBot", f"bot {name!r} is in the configuration: its roles are set there"
            )
        if not add_bot(self.engine, name, wanted, description=description, by=by.name):
            raise conflict("BotExists", f"bot {name!r} exists; set its roles instead")
        self._record(EventType.BOT_CHANGED, by, bot=name, change="added", roles=wanted)
        return self.bot(name)

    def set_roles(self, name: str, roles: Sequence[str], *, by: Actor) -> None:
        """The bot's jobs hold these roles from their next call (credentials they hold keep
        their account and IAM role, checked against the new roles on every call)."""
        if self.config.bot_named(name) is not None:
            raise conflict(
                "BootstrapBot", f"{name} is a bootstrap bot: its roles are in the config"
            )
        wanted = self._check_roles(roles)
        if not set_bot_roles(self.engine, name, wanted):
            raise no_such_bot(name)
        self._record(EventType.BOT_CHANGED, by, bot=name, change="roles", roles=wanted)

    def remove(self, name: str, *, by: Actor) -> None:
        """The bot is gone: its jobs' credentials stop on their next call, and their tokens
        are refused (a binding that names it maps to no bot until one is added again)."""
        if self.config.bot_named(name) is not None:
            raise conflict("BootstrapBot", f"{name} is a bootstrap bot: remove it from the config")
        if not delete_bot(self.engine, name):
            raise no_such_bot(name)
        revoke(self.engine, "user", bot_principal(name), by=by.name)
        self._record(EventType.BOT_CHANGED, by, bot=name, change="removed")

    def revoke(self, name: str, *, by: Actor) -> int:
        """Every credential the bot's jobs hold, and every session of a machine joined as
        it, stops on its next call, on every replica; jobs may exchange tokens again
        (remove the bot or its binding to stop that). Returns how many credentials were
        live."""
        shown = self.bot(name)
        held = shown.live
        revoke(self.engine, "user", bot_principal(name), by=by.name)
        self._record(
            EventType.SESSION_REVOKED,
            by,
            user=bot_principal(name),
            bot=name,
            scope="user",
            live_credentials=len(held),
            live_sessions=len(shown.sessions),
        )
        return len(held)
