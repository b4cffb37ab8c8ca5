"""The authorization decision: may this principal, holding these gateway roles, call this
action in this account as this IAM role? Explicit deny wins; otherwise some role must allow
the target and the action with its guardrails holding; otherwise default deny. Every
decision names the rule that made it, for the error message and the audit trail.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from iamgate.access.guardrails import Ambiguous, check_guardrail
from iamgate.access.levels import access_levels
from iamgate.access.minting import (
    ISSUES_CREDENTIALS,
    issues_credentials,
    named_explicitly,
    never_forwarded,
)
from iamgate.access.patterns import matches_any
from iamgate.config import AccountConfig, AccountSelector, RoleConfig

Levels = Callable[[str], frozenset[str]]


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    role: str | None  # the gateway role whose rule decided, if any
    rule: str  # what decided, in words a person can act on


def account_selected(selector: AccountSelector, account: AccountConfig) -> bool:
    """An empty selector selects nothing: access to accounts is always stated."""
    if not (selector.name or selector.id or selector.labels):
        return False
    if selector.name and account.name not in selector.name:
        return False
    if selector.id and account.id not in selector.id:
        return False
    return all(account.labels.get(key) in values for key, values in selector.labels.items())


def role_reaches(role: RoleConfig, account: AccountConfig, aws_role: str) -> bool:
    allow = role.allow
    return account_selected(allow.accounts, account) and (
        matches_any(allow.aws_roles, aws_role, case_sensitive=True) is not None
    )


def _allows_action(role: RoleConfig, action: str, levels: Levels) -> str | None:
    """Why `role` allows `action` (for the audit), or None."""
    allow = role.allow
    if issues_credentials(action):
        return f"allow {action}, by name" if named_explicitly(allow.actions, action) else None
    if not allow.actions and not allow.access_levels:
        return "all actions"
    pattern = matches_any(allow.actions, action)
    if pattern is not None:
        return f"allow {pattern}"
    if allow.access_levels:
        have = levels(action)
        if have and have <= set(allow.access_levels):
            return f"access levels {', '.join(sorted(have))}"
    return None


def decide(
    roles: Sequence[RoleConfig],
    account: AccountConfig,
    aws_role: str,
    action: str,
    region: str,
    params: Mapping[str, object],
    *,
    levels: Levels = access_levels,
    ambiguous: str | None = None,
) -> Decision:
    reaching = [r for r in roles if role_reaches(r, account, aws_role)]
    return decide_among(
        reaching, account, aws_role, action, region, params, levels=levels, ambiguous=ambiguous
    )


def decide_among(
    reaching: Sequence[RoleConfig],
    account: AccountConfig,
    aws_role: str,
    action: str,
    region: str,
    params: Mapping[str, object],
    *,
    levels: Levels = access_levels,
    ambiguous: str | None = None,
) -> Decision:
    """The decision among the roles already known to reach (account, aws_role)."""
    if never_forwarded(action):
        return Decision(
            False,
            None,
            f"{action} is not available through the gateway; credentials are issued by iamgate",
        )
    if not reaching:
        return Decision(
            False,
            None,
            f"no role of yours allows {aws_role} in account {account.name} ({account.id})",
        )
    for role in reaching:
        denied = matches_any(role.deny.actions, action)
        if denied is not None:
            return Decision(False, role.name, f"role {role.name} denies {action} (deny {denied})")
    refusals: list[Decision] = []
    for role in reaching:
        if role.allow.regions and matches_any(role.allow.regions, region) is None:
            refusals.append(
                Decision(False, role.name, f"role {role.name} does not allow region {region}")
            )
            continue
        why = _allows_action(role, action, levels)
        if why is None:
            continue
        guardrails = [g for g in role.guardrails if matches_any([g.action], action)]
        if guardrails and ambiguous is not None:
            refusals.append(
                Decision(
                    False,
                    role.name,
                    f"role {role.name} has a guardrail on {action} and the request is "
                    f"ambiguous: {ambiguous}",
                )
            )
            continue
        violation = None
        try:
            for guardrail in guardrails:
                violation = check_guardrail(guardrail, action, params)
                if violation is not None:
                    break
        except Ambiguous as exc:
            refusals.append(
                Decision(False, role.name, f"role {role.name} guardrail on {action}: {exc}")
            )
            continue
        if violation is not None:
            refusals.append(
                Decision(
                    False,
                    role.name,
                    f"role {role.name} guardrail on {action}: {violation.message}",
                )
            )
            continue
        return Decision(True, role.name, f"role {role.name} allows {action} ({why})")
    if refusals:
        return refusals[0]
    names = ", ".join(r.name for r in reaching)
    if issues_credentials(action):
        gives = ISSUES_CREDENTIALS.get(action, "credentials")
        return Decision(
            False,
            reaching[0].name,
            f"{action} issues credentials that work without the gateway ({gives}); "
            f"role {names} does not allow it by name",
        )
    return Decision(False, reaching[0].name, f"role {names} does not allow {action}")


class Reach:
    """Which of the roles a principal holds reach an (account, IAM role), remembered.

    A user may hold a thousand gateway roles while a call needs the few that reach its
    account: those are found once per (roles held, account, IAM role) and then looked up.
    The key is the names held, so a change of a user's roles finds a new entry by itself;
    a new configuration builds a new Reach.
    """

    def __init__(self, roles: Mapping[str, RoleConfig], *, size: int = 4096) -> None:
        self._roles = roles
        self._size = size
        self._known: dict[tuple[tuple[str, ...], str, str], tuple[RoleConfig, ...]] = {}

    def of(
        self, held: tuple[str, ...], account: AccountConfig, aws_role: str
    ) -> tuple[RoleConfig, ...]:
        key = (held, account.id, aws_role)
        found = self._known.get(key)
        if found is None:
            roles = self._roles
            found = tuple(
                roles[name]
                for name in held
                if name in roles and role_reaches(roles[name], account, aws_role)
            )
            if len(self._known) >= self._size:
                self._known.pop(next(iter(self._known)))  # the oldest entry
            self._known[key] = found
        return found
