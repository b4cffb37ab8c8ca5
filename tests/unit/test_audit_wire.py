"""The gateway-to-writer framing: whatever pieces the bytes arrive in, the same frames."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iamgate.audit.wire import (
    FAILED,
    STORED,
    AckReader,
    FrameReader,
    WireError,
    ack,
    frame,
)

bodies = st.lists(st.binary(max_size=300), max_size=20)


@given(bodies, st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=50))
def test_frames_survive_any_split(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(frame(seq, body) for seq, body in enumerate(payloads, start=1))
    reader = FrameReader()
    received: list[tuple[int, bytes]] = []
    offset, turn = 0, 0
    while offset < len(stream):
        size = cuts[turn % len(cuts)]
        received += reader.feed(stream[offset : offset + size])
        offset, turn = offset + size, turn + 1
    assert received == list(enumerate(payloads, start=1))


@given(st.lists(st.tuples(st.sampled_from([STORED, FAILED]), st.integers(0, 2**64 - 1))))
def test_acknowledgements_survive_a_byte_at_a_time(acks: list[tuple[int, int]]) -> None:
    stream = b"".join(ack(status, seq) for status, seq in acks)
    reader = AckReader()
    received = [a for i in range(len(stream)) for a in reader.feed(stream[i : i + 1])]
    assert received == acks


def test_nonsense_breaks_the_link_not_the_log() -> None:
    with pytest.raises(WireError):
        FrameReader().feed(b"\0" * 8 + b"\xff\xff\xff\xff")  # a 4 GiB event
    with pytest.raises(WireError):
        AckReader().feed(b"\x07" + b"\0" * 8)
