"""Who is calling: a login session's user, the gateway roles they hold now, and whether one
of them administers iamgate. The JSON API and the pages ask the same question per request;
this is the one answer (roles come from the store each time, so a change applies at once).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine

from iamgate.config import Config, RoleConfig
from iamgate.control.errors import forbidden
from iamgate.identity.bots import bot_name
from iamgate.store.bots import get_bot
from iamgate.store.login_sessions import LoginSession
from iamgate.store.users import get_user


@dataclass(frozen=True, slots=True)
class Caller:
    session: LoginSession
    roles: tuple[RoleConfig, ...]
    administer: bool

    @property
    def user(self) -> str:
        return self.session.user


def caller_of(
    defined: Mapping[str, RoleConfig],
    engine: Engine,
    session: LoginSession,
    config: Config | None = None,
) -> Caller:
    """The session's user with the roles they hold now (roles the configuration no longer
    defines are ignored); a joined bot's (`bot:NAME`) are the configuration's bot's, else
    the stored bot's, none once neither has it. Blocking: call it in a thread from async
    code."""
    name = bot_name(session.user)
    if name is not None:
        configured = config.bot_named(name) if config is not None else None
        stored = get_bot(engine, name) if configured is None else None
        held: Sequence[str] = (
            configured.roles if configured else stored.roles if stored is not None else ()
        )
    else:
        row = get_user(engine, session.user)
        held = row.roles if row else ()
    roles = tuple(defined[r] for r in held if r in defined)
    return Caller(session, roles, name is None and any(r.administer for r in roles))


def require_administrator(caller: Caller) -> Caller:
    if not caller.administer:
        raise forbidden("only iamgate administrators may do this")
    return caller
