"""The few bytes the gateway and its audit writer process exchange (pure code).

Gateway to writer: frames of `seq` (u64), length (u32) and the event's canonical JSON; the
first frame, numbered 0, is the writer's settings as JSON. Writer to gateway: acknowledgements
of a status byte and a `seq` (u64), each covering every event up to that number: "stored"
when they are durable, "failed" when the store refused them (the writer keeps them and
tries again; their waiters are told at once).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

FRAME = struct.Struct("!QI")
ACK = struct.Struct("!BQ")
STORED, FAILED = 0, 1
MAX_BODY = 16 * 1024 * 1024


def frame(seq: int, body: bytes) -> bytes:
    return FRAME.pack(seq, len(body)) + body


def ack(status: int, seq: int) -> bytes:
    return ACK.pack(status, seq)


class WireError(Exception):
    """Bytes that no gateway sends: the link is broken, not the event."""


@dataclass
class FrameReader:
    """Frames out of a byte stream that arrives in pieces of any size."""

    _buffer: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buffer += data
        frames: list[tuple[int, bytes]] = []
        offset = 0
        buffer = self._buffer
        while len(buffer) - offset >= FRAME.size:
            seq, length = FRAME.unpack_from(buffer, offset)
            if length > MAX_BODY:
                raise WireError(f"a frame of {length} bytes")
            end = offset + FRAME.size + length
            if end > len(buffer):
                break
            frames.append((seq, bytes(buffer[offset + FRAME.size : end])))
            offset = end
        del buffer[:offset]
        return frames


@dataclass
class AckReader:
    _buffer: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[tuple[int, int]]:
        self._buffer += data
        whole = len(self._buffer) - len(self._buffer) % ACK.size
        acks = [ACK.unpack_from(self._buffer, at) for at in range(0, whole, ACK.size)]
        del self._buffer[:whole]
        for status, _ in acks:
            if status not in (STORED, FAILED):
                raise WireError(f"an acknowledgement with status {status}")
        return acks
