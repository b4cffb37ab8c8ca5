"""Session policies: the gateway's allow/deny, expressed so that AWS enforces it too.

The gateway refuses what a role does not allow, but a console session (and any credential
that ever escaped) is only as narrow as the session policy passed to `sts:AssumeRole`. So
for the gateway roles that reach an (account, IAM role), this derives:

- `PolicyArns`: AWS's own managed job-function policies for access levels, because "read
  only" must mean what AWS means by it, and no inline list of read actions would fit:
  read+list -> ReadOnlyAccess, list only -> ViewOnlyAccess.
- an inline `Policy` (at most 2,048 characters packed, AWS's limit) with the explicitly
  allowed actions, region conditions, and every deny.

Session policies are unioned with each other and intersected with the role's own policy,
which matches the gateway: some role's allow is needed, and any deny wins. Guardrails on
request parameters (MaxCount and the like) have no IAM condition key and remain the
gateway's alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from iamgate.config import RoleConfig

MAX_PACKED_POLICY = 2048

_LEVEL_POLICIES = {
    frozenset({"read", "list"}): "ReadOnlyAccess",
    frozenset({"list"}): "job-function/ViewOnlyAccess",
}


class SessionPolicyError(ValueError):
    """A role whose rules cannot be expressed as a session policy AWS would accept."""


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    policy: str | None  # inline JSON, minified
    policy_arns: tuple[str, ...]

    @property
    def unrestricted(self) -> bool:
        return self.policy is None and not self.policy_arns


def _region_condition(regions: list[str]) -> dict[str, Any]:
    return {"StringLike": {"aws:RequestedRegion": regions}} if regions else {}


def session_policy_for(roles: Sequence[RoleConfig], *, partition: str = "aws") -> SessionPolicy:
    statements: list[dict[str, Any]] = []
    arns: set[str] = set()
    unrestricted = False
    for role in roles:
        allow = role.allow
        condition = _region_condition(allow.regions)
        if not allow.actions and not allow.access_levels:
            if not condition:
                unrestricted = True
                continue
            statements.append(
                {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": condition}
            )
        if allow.actions:
            statement: dict[str, Any] = {
                "Effect": "Allow",
                "Action": sorted(set(allow.actions)),
                "Resource": "*",
            }
            if condition:
                statement["Condition"] = condition
            statements.append(statement)
        if allow.access_levels:
            levels = frozenset(allow.access_levels)
            name = _LEVEL_POLICIES.get(levels)
            if name is None:
                raise SessionPolicyError(
                    f"role {role.name}: access levels {sorted(levels)} have no AWS managed "
                    "policy to express them; use [read, list] or [list], or list actions"
                )
            arns.add(f"arn:{partition}:iam::aws:policy/{name}")
            if condition:
                raise SessionPolicyError(
                    f"role {role.name}: regions cannot be combined with access levels in a "
                    "session policy; list the actions instead"
                )
    denied = sorted({a for role in roles for a in role.deny.actions})
    if denied:
        statements.append({"Effect": "Deny", "Action": denied, "Resource": "*"})
    if unrestricted:
        # One role allows everything: the others' allows add nothing, denies still apply.
        statements = [s for s in statements if s["Effect"] == "Deny"]
        if statements:
            statements.insert(0, {"Effect": "Allow", "Action": "*", "Resource": "*"})
        arns.clear()
    if not statements:
        return SessionPolicy(None, tuple(sorted(arns)))
    policy = json.dumps({"Version": "2012-10-17", "Statement": statements}, separators=(",", ":"))
    if len(policy) > MAX_PACKED_POLICY:
        raise SessionPolicyError(
            f"the session policy for roles {', '.join(r.name for r in roles)} is "
            f"{len(policy)} characters; AWS accepts at most {MAX_PACKED_POLICY}"
        )
    return SessionPolicy(policy, tuple(sorted(arns)))
