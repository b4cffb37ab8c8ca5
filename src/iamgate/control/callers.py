"""Who is calling: a login session's user, the gateway roles they hold now, and whether one
of them administers iamgate. The JSON API and the pages ask the same question per request;
this is the one answer (roles come from the store each time, so a change applies at once).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Engine

from iamgate.config import RoleConfig
from iamgate.control.errors import forbidden
from iamgate.store.directory import LoginSession, get_user


@dataclass(frozen=True, slots=True)
class Caller:
    session: LoginSession
    roles: tuple[RoleConfig, ...]
    administer: bool

    @property
    def user(self) -> str:
        return self.session.user


def caller_of(defined: Mapping[str, RoleConfig], engine: Engine, session: LoginSession) -> Caller:
    """The session's user with the roles they hold now (roles the configuration no longer
    defines are ignored). Blocking: call it in a thread from async code."""
    row = get_user(engine, session.user)
    roles = tuple(defined[r] for r in (row.roles if row else ()) if r in defined)
    return Caller(session, roles, any(r.administer for r in roles))


def require_administrator(caller: Caller) -> Caller:
    if not caller.administer:
        raise forbidden("only iamgate administrators may do this")
    return caller
