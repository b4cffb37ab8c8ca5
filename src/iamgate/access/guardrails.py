"""Guardrails: limits on an operation's parameters, checked on what is forwarded.

A guardrail that can be argued around is worse than none, so anything ambiguous about the
parameters (a key given twice, a body that cannot be read) fails closed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from iamgate.access.patterns import matches, matches_any
from iamgate.config import Guardrail


@dataclass(frozen=True, slots=True)
class Violation:
    message: str


class Ambiguous(Exception):
    """The parameters cannot be read with certainty (duplicates, undecodable body)."""


def _number(name: str, value: object) -> float:
    if isinstance(value, bool):
        raise Ambiguous(f"{name} is not a number")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise Ambiguous(f"{name}={value!r} is not a number") from None
    raise Ambiguous(f"{name} is not a number")


def check_guardrail(
    guardrail: Guardrail, action: str, params: Mapping[str, object]
) -> Violation | None:
    """None when the parameters keep within the guardrail (or it is for another action)."""
    if not matches(guardrail.action, action):
        return None
    for name, limit in guardrail.max.items():
        if name in params and _number(name, params[name]) > limit:
            return Violation(f"{name}={params[name]} is above the limit of {limit}")
    for name, limit in guardrail.min.items():
        if name in params and _number(name, params[name]) < limit:
            return Violation(f"{name}={params[name]} is below the minimum of {limit}")
    for name, allowed in guardrail.allowed.items():
        if name not in params:
            continue
        value = params[name]
        if not isinstance(value, str) or matches_any(allowed, value, case_sensitive=True) is None:
            return Violation(f"{name}={value} is not one of the allowed values {allowed}")
    for name, denied in guardrail.denied.items():
        value = params.get(name)
        if isinstance(value, str) and matches_any(denied, value, case_sensitive=True):
            return Violation(f"{name}={value} is a denied value")
    return None
