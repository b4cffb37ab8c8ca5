"""How much of the gateway one caller may hold at a time, so no caller starves another.

Three shares are counted, each per key:

- calls in flight per principal, from the moment a call's signature checks out until its
  answer has been sent (stalled uploads included);
- requests per source address (an IPv6 /64) that are still being read or authenticated,
  before anyone is known to have sent them;
- bytes of bodies read before their signature could be checked (outside S3 the signature
  covers the body's hash, so the whole body must be read first), per address and across
  the gateway.

A call over a share is refused with the service's throttling error (`Reason.THROTTLED`),
which AWS's SDKs retry with backoff. Each call's holdings live in one `Admission`, whose
`release()` gives everything back and is safe to call on every path, more than once.
No I/O here: the proxy asks, and acts on the answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from iamgate.identity.login import address_key
from iamgate.refusals import Reason, Refused

# One address may hold the unverified bytes of one largest buffered body, not more.
UNVERIFIED_BYTES_PER_ADDRESS = 64 * 1024 * 1024


@dataclass(slots=True)
class Shares:
    """At most `per_key` units held by one key at a time and, if `total` is set, at most
    `total` by all keys together."""

    per_key: int
    total: int | None = None
    _held: dict[str, int] = field(default_factory=dict)
    _all: int = 0

    def take(self, key: str, n: int = 1) -> bool:
        held = self._held.get(key, 0)
        if held + n > self.per_key or (self.total is not None and self._all + n > self.total):
            return False
        self._held[key] = held + n
        self._all += n
        return True

    def give_back(self, key: str, n: int = 1) -> None:
        held = self._held.get(key, 0) - n
        if held < 0:
            raise ValueError(f"{key!r} gives back more than it holds")
        if held:
            self._held[key] = held
        else:
            del self._held[key]
        self._all -= n

    def held(self, key: str | None = None) -> int:
        return self._all if key is None else self._held.get(key, 0)


class CallLimits:
    """The gateway's shares; one per process, fixed at start."""

    def __init__(
        self,
        *,
        calls_per_principal: int,
        unauthenticated_per_address: int,
        unverified_bytes: int,
        unverified_bytes_per_address: int = UNVERIFIED_BYTES_PER_ADDRESS,
    ) -> None:
        self.principals = Shares(calls_per_principal)
        self.addresses = Shares(unauthenticated_per_address)
        per_address = min(unverified_bytes_per_address, unverified_bytes)
        self.unverified = Shares(per_address, unverified_bytes)

    def admit(self, source: str | None) -> Admission:
        """A new request from `source` (the peer address), holding nothing yet."""
        return Admission(self, address_key(source))


@dataclass(slots=True)
class Admission:
    """What one request holds. The proxy calls, in order: `unauthenticated()` before it
    reads anything, `buffered(n)` for each piece of a body read before its signature is
    checked, `authenticated(principal)` once the signature checks out (which gives back
    the address's share and the body's bytes), and `release()` at the end, whatever
    happened."""

    limits: CallLimits
    address: str
    principal: str | None = None
    holds_address: bool = False
    unverified_bytes: int = 0

    def unauthenticated(self) -> None:
        if self.holds_address or self.principal is not None:
            return
        if not self.limits.addresses.take(self.address):
            raise Refused(
                Reason.THROTTLED,
                f"iamgate: too many requests from {self.address} are being read or "
                "authenticated at once; slow down and retry",
            )
        self.holds_address = True

    def buffered(self, n: int) -> None:
        if n <= 0 or self.principal is not None:
            return
        if not self.limits.unverified.take(self.address, n):
            raise Refused(
                Reason.THROTTLED,
                "iamgate: too many request bodies are waiting for their signatures to be "
                "checked; slow down and retry",
            )
        self.unverified_bytes += n

    def authenticated(self, principal: str) -> None:
        if self.principal is None:
            if not self.limits.principals.take(principal):
                raise Refused(
                    Reason.THROTTLED,
                    f"iamgate: {principal} already has {self.limits.principals.per_key} "
                    "calls in flight through the gateway; slow down and retry",
                )
            self.principal = principal
        self._give_back_unauthenticated()

    def release(self) -> None:
        self._give_back_unauthenticated()
        if self.principal is not None:
            self.limits.principals.give_back(self.principal)
            self.principal = None

    def _give_back_unauthenticated(self) -> None:
        if self.holds_address:
            self.limits.addresses.give_back(self.address)
            self.holds_address = False
        if self.unverified_bytes:
            self.limits.unverified.give_back(self.address, self.unverified_bytes)
            self.unverified_bytes = 0
