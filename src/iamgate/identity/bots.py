"""Bots: CI jobs and machines as principals, and what a verified web identity token gets.

A bot is `bot:NAME`, with gateway roles as a user has them: defined in the configuration
(`bots:`), or added by an administrator to the state store (`iamgate bots add`, the API,
the Bots page; `control.bots`), as users are; the configuration's is the one in force when
both name it. Callers pass the lookup of both (`FindBot`); it defaults to the configuration.
A job becomes its bot by an OIDC token that a trusted issuer signed and that one binding
maps to the bot (`identity.oidc`, `identity.bindings`). What it then gets is decided here,
from data alone: the account and IAM role its `RoleArn` names, if the bot's gateway roles
reach them; a lifetime within those roles' `max_session_ttl`; and the job's claims, which
travel inside the credential so that every call of the job names the job in the audit
trail with no lookup. A bot's credential stays good only while its bot and its binding
do: the gateway checks both on every call, so removing either in the configuration ends
the job's access on its next call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from iamgate.access.decisions import role_reaches
from iamgate.config import AccountConfig, BotConfig, Config, RoleConfig
from iamgate.identity.bindings import Binding, claim_text
from iamgate.identity.credentials import Claims
from iamgate.identity.oidc import TrustedIssuer

BOT_PREFIX = "bot:"
DEFAULT_DURATION = timedelta(hours=1)  # STS's own, when DurationSeconds is not given
# The claims that say which job made a call: GitHub Actions' and GitLab CI's. Only these
# travel in the credential (each cut to MAX_CLAIM characters), so its token stays small.
JOB_CLAIMS = (
    "sub",
    # GitHub Actions
    "repository",
    "repository_id",
    "repository_owner",
    "workflow",
    "workflow_ref",
    "job_workflow_ref",
    "run_id",
    "run_number",
    "run_attempt",
    "sha",
    "actor",
    "actor_id",
    "ref",
    "ref_type",
    "environment",
    "event_name",
    # GitLab CI
    "project_path",
    "project_id",
    "namespace_path",
    "pipeline_id",
    "pipeline_source",
    "job_id",
    "ref_protected",
    "user_login",
    "user_id",
)
MAX_CLAIM = 256
# A bot by name, from the configuration or the state store; None when neither has it.
FindBot = Callable[[str], BotConfig | None]


def bot_principal(name: str) -> str:
    return BOT_PREFIX + name


def bot_name(principal: str) -> str | None:
    """The bot a principal is, or None for a user (whose names hold no colon)."""
    return principal[len(BOT_PREFIX) :] if principal.startswith(BOT_PREFIX) else None


def job_claims(claims: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The job's claims as they are recorded: the known ones, as text, bounded."""
    out = []
    for name in JOB_CLAIMS:
        text = claim_text(claims.get(name)) if name in claims else None
        if text is not None:
            out.append((name, text[:MAX_CLAIM]))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Trust:
    """The issuers and bindings of a configuration, as the token checks take them."""

    issuers: Mapping[str, TrustedIssuer]
    jwks_urls: Mapping[str, str]
    bindings: tuple[Binding, ...]

    @classmethod
    def of(cls, config: Config) -> Trust:
        oidc = config.oidc
        issuers = {
            i.url: TrustedIssuer(i.url, tuple(i.audience), tuple(i.algorithms), i.leeway)
            for i in oidc.issuers
        }
        bindings = tuple(
            Binding(
                name=b.name,
                issuer=oidc.issuer_of(b) or "",
                bot=b.bot,
                claims={name: tuple(values) for name, values in b.claims.items()},
                deny=b.deny,
            )
            for b in oidc.bindings
        )
        jwks = {i.url: i.jwks_url for i in oidc.issuers if i.jwks_url}
        return cls(issuers, jwks, bindings)

    @property
    def configured(self) -> bool:
        return bool(self.issuers)


class NotGranted(Exception):
    """The bot may not have what the call asks; the message names the bot and binding."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class Grant:
    bot: BotConfig
    account: AccountConfig
    aws_role: str
    gateway_roles: tuple[RoleConfig, ...]
    ttl: timedelta


def grant_for(
    config: Config,
    roles: Mapping[str, RoleConfig],
    binding: Binding,
    account_id: str,
    aws_role: str,
    duration: timedelta | None,
    find_bot: FindBot | None = None,
) -> Grant:
    """What the bot of `binding` gets for the IAM role `aws_role` in `account_id`: the
    gateway roles of the bot that reach it, for the asked lifetime (STS's hour when none
    is asked) within the longest `max_session_ttl` among them."""
    named = f"binding `{binding.name}`"
    bot = (find_bot or config.bot_named)(binding.bot or "")
    if bot is None:
        raise NotGranted(
            f"{named} names bot `{binding.bot}`, which does not exist (not in the "
            "configuration's bots, nor added with `iamgate bots add`)"
        )
    account = config.aws.account_by_id(account_id)
    if account is None:
        raise NotGranted(
            f"account {account_id} is not configured on this gateway ({named}, bot `{bot.name}`)"
        )
    held = [roles[r] for r in bot.roles if r in roles]
    reaching = tuple(r for r in held if role_reaches(r, account, aws_role))
    if not reaching:
        raise NotGranted(
            f"bot `{bot.name}` ({named}) may not use role {aws_role} in account "
            f"{account.name} ({account.id}): {_held(held)}"
        )
    longest = max(r.max_session_ttl for r in reaching)
    return Grant(bot, account, aws_role, reaching, min(duration or DEFAULT_DURATION, longest))


def _held(held: Sequence[RoleConfig]) -> str:
    if not held:
        return "it holds no gateway role"
    return "none of its gateway roles (" + ", ".join(r.name for r in held) + ") reaches it"


def still_bound(config: Config, claims: Claims, find_bot: FindBot | None = None) -> str | None:
    """Why a bot's credential no longer holds (its bot is gone, or its binding from the
    configuration), or None while it does."""
    name = bot_name(claims.principal)
    if name is None:
        return None
    if (find_bot or config.bot_named)(name) is None:
        return f"bot `{name}` is no longer configured"
    if claims.binding is not None and not any(
        b.name == claims.binding and b.bot == name and not b.deny for b in config.oidc.bindings
    ):
        return f"binding `{claims.binding}` no longer maps tokens to bot `{name}`"
    return None
