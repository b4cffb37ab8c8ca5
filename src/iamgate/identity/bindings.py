"""Which bot a verified web identity token speaks for: claim bindings.

A binding names an issuer, a bot, and the claims a token must carry: every listed claim must
match one of its values, exactly or by glob (`*`, `?`, case-sensitive). Deny bindings are
checked first and any match refuses. A token that matches allow bindings of two different
bots is refused rather than guessed. A refusal says which claim failed which binding, so the
person fixing a CI job sees at once that the job ran on another branch or environment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from iamgate.access.patterns import matches

# A refusal names at most this many bindings that came close.
_NAMED = 3


@dataclass(frozen=True, slots=True)
class Binding:
    name: str
    issuer: str
    bot: str | None  # None for a deny binding
    claims: Mapping[str, tuple[str, ...]]
    deny: bool = False


class BindingRefused(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def claim_text(value: object) -> str | None:
    """A claim as bindings compare it: strings as they are, numbers in decimal, booleans as
    `true`/`false` (as JSON spells them); lists and objects never match a binding."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    return None


def first_mismatch(binding: Binding, claims: Mapping[str, Any]) -> str | None:
    """Why `binding` does not match these claims, or None when it does."""
    for name, wanted in binding.claims.items():
        if name not in claims:
            return f"the token has no claim `{name}`; binding `{binding.name}` requires it"
        value = claim_text(claims[name])
        if value is None or not any(matches(p, value, case_sensitive=True) for p in wanted):
            shown = value if value is not None else type(claims[name]).__name__
            return (
                f"claim `{name}` is `{shown[:200]}`; binding `{binding.name}` requires "
                + " or ".join(f"`{p}`" for p in wanted)
            )
    return None


def bind(claims: Mapping[str, Any], issuer: str, bindings: Sequence[Binding]) -> Binding:
    """The one allow binding these claims satisfy, or `BindingRefused` saying why not."""
    mine = [b for b in bindings if b.issuer == issuer]
    for binding in mine:
        if binding.deny and first_mismatch(binding, claims) is None:
            raise BindingRefused(f"binding `{binding.name}` denies this token")
    allowing = [b for b in mine if not b.deny]
    matched = [b for b in allowing if first_mismatch(b, claims) is None]
    bots = sorted({b.bot for b in matched if b.bot is not None})
    if len(bots) > 1:
        names = ", ".join(f"`{b.name}` ({b.bot})" for b in matched)
        raise BindingRefused(f"the token matches bindings of more than one bot: {names}")
    if matched:
        return matched[0]
    if not allowing:
        raise BindingRefused(f"no binding trusts tokens from {issuer}")
    reasons = [r for b in allowing[:_NAMED] if (r := first_mismatch(b, claims)) is not None]
    more = f" (and {len(allowing) - _NAMED} more bindings)" if len(allowing) > _NAMED else ""
    raise BindingRefused("; ".join(reasons) + more)
