"""The hash chain that makes the audit log tamper-evident.

Each event is stored with its sequence number in its writer's chain and the hash of the
previous event; its own hash covers both. Editing an event breaks its hash, deleting or
reordering one breaks the next event's link, and a chain head anchored off-host catches
removal from the end.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

GENESIS = "0" * 64
CANONICAL = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def canonical_bytes(body: dict[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8 as is; a value JSON has no form for becomes its str().

    The stored text is what is hashed and verified, so this form never has to be rebuilt.
    """
    return orjson.dumps(body, default=str, option=CANONICAL)


def canonical(body: dict[str, Any]) -> str:
    return canonical_bytes(body).decode()


def link(prev_hash: str, seq: int, body_json: str) -> str:
    return hashlib.sha256(f"{prev_hash}\n{seq}\n{body_json}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredEvent:
    chain: str
    seq: int
    prev_hash: str
    hash: str
    body: str  # canonical JSON, as hashed
    columns: dict[str, Any]  # the searchable copies, which must agree with the body


@dataclass(frozen=True, slots=True)
class Problem:
    chain: str
    seq: int
    what: str  # "edited", "deleted", "reordered"
    detail: str

    def __str__(self) -> str:
        return f"chain {self.chain}: event {self.seq} {self.what}: {self.detail}"


def verify_chain(events: Iterable[StoredEvent], columns_of: Any = None) -> list[Problem]:
    """Problems in the chains of `events` (in any order), by sequence number."""
    ordered = sorted(events, key=lambda e: (e.chain, e.seq))
    return list(verify_ordered(ordered, columns_of=columns_of))


def verify_ordered(events: Iterable[StoredEvent], columns_of: Any = None) -> Iterator[Problem]:
    """Problems in the chains of `events`, which come by chain, then by sequence number.

    Only the event before is kept, so a store of any size is verified as it is read."""
    chain: str | None = None
    expected_prev = GENESIS
    expected_seq = 1
    for event in events:
        if event.chain != chain:
            chain, expected_prev, expected_seq = event.chain, GENESIS, 1
        if event.seq != expected_seq:
            missing = (
                f"{expected_seq}"
                if event.seq == expected_seq + 1
                else f"{expected_seq}..{event.seq - 1}"
            )
            yield Problem(event.chain, expected_seq, "deleted", f"events {missing} are missing")
        own = link(event.prev_hash, event.seq, event.body)
        if own != event.hash:
            yield Problem(event.chain, event.seq, "edited", "its hash does not match")
        elif columns_of is not None and columns_of(event.body) != event.columns:
            yield Problem(event.chain, event.seq, "edited", "its columns disagree with its body")
        elif event.prev_hash != expected_prev and event.seq == expected_seq:
            yield Problem(
                event.chain,
                event.seq,
                "reordered",
                "it does not follow the event stored before it",
            )
        expected_prev = event.hash
        expected_seq = event.seq + 1
