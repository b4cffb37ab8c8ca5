"""Which accounts and IAM roles a person's gateway roles reach, as people see it listed.

The CLI's `iamgate ls`, `profiles sync` and the web UI's "My access" all show this one view,
so what a page offers is exactly what the gateway would allow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from iamgate.access.decisions import role_reaches
from iamgate.config import Config, RoleConfig


def reachable_accounts(config: Config, roles: Sequence[RoleConfig]) -> list[dict[str, Any]]:
    """Accounts in configuration order, each with the (IAM role, gateway role) pairs held."""
    accounts = []
    for account in config.aws.accounts:
        entries = [
            {"aws_role": pattern, "gateway_role": role.name, "allows": describe(role)}
            for role in roles
            for pattern in role.allow.aws_roles
            if role_reaches(role, account, pattern)
        ]
        if entries:
            accounts.append(
                {"name": account.name, "id": account.id, "labels": account.labels, "roles": entries}
            )
    return accounts


def describe(role: RoleConfig) -> str:
    """A gateway role in one line: what it allows, what it takes back, what it caps."""
    allow = role.allow
    parts = []
    if allow.access_levels:
        parts.append("/".join(allow.access_levels))
    if allow.actions:
        parts.append(", ".join(allow.actions))
    if not parts:
        parts.append("all actions")
    if role.deny.actions:
        parts.append("except " + ", ".join(role.deny.actions))
    if role.guardrails:
        parts.append(f"{len(role.guardrails)} guardrail(s)")
    return "; ".join(parts)
