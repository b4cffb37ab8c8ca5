"""IAM's wildcard syntax for actions and names: `*` and `?`, case-insensitive."""

from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=4096)
def compile_pattern(pattern: str, *, case_sensitive: bool = False) -> re.Pattern[str]:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{regex}$", 0 if case_sensitive else re.IGNORECASE)


def matches(pattern: str, value: str, *, case_sensitive: bool = False) -> bool:
    return compile_pattern(pattern, case_sensitive=case_sensitive).match(value) is not None


def matches_any(patterns: list[str] | tuple[str, ...], value: str, **kw: bool) -> str | None:
    """The first pattern that matches `value`, so a decision can name it."""
    return next((p for p in patterns if matches(p, value, **kw)), None)
