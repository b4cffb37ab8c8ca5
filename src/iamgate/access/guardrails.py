"""Guardrails: limits on an operation's parameters, checked on what is forwarded.

A guardrail that can be argued around is worse than none, so anything ambiguous about the
parameters (a key given twice, a body that cannot be read, a name the operation does not
take) fails closed, and a limit holds for every way the upstream reads it: a number is a
plain decimal (not "1e3", "0x10", "NaN" or "1_000"), and a maximum on `MaxX` also bounds
`MinX`, since AWS acts on at least the minimum (RunInstances with MinCount=1000 launches
1000 whatever MaxCount says, or fails).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from iamgate.access.patterns import matches, matches_any
from iamgate.config import Guardrail


@dataclass(frozen=True, slots=True)
class Violation:
    message: str


class Ambiguous(Exception):
    """The parameters cannot be read with certainty (duplicates, undecodable body)."""


_DECIMAL = re.compile(r"-?[0-9]{1,30}(\.[0-9]{1,30})?")


def _number(name: str, value: object) -> float:
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        return value
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        return float(value)
    raise Ambiguous(f"{name}={value!r} is not a plain decimal number")


def _bounded_by_maximum(name: str) -> Iterator[str]:
    """The parameter a maximum is on, and its `Min` sibling, if it has one."""
    yield name
    if name.startswith("Max") and len(name) > 3:
        yield "Min" + name[3:]


def check_guardrail(
    guardrail: Guardrail, action: str, params: Mapping[str, object]
) -> Violation | None:
    """None when the parameters keep within the guardrail (or it is for another action)."""
    if not matches(guardrail.action, action):
        return None
    for limited, limit in guardrail.max.items():
        for name in _bounded_by_maximum(limited):
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
