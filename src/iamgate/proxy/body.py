"""Request bodies that are checked while they stream, and never released unchecked.

Large S3 uploads cannot be held in memory, so their integrity (the signed SHA-256, chunk
signatures, checksum trailers) is only known at the end. The stream therefore holds back its
last piece until the whole body has been verified: if verification fails, the upstream
request is aborted before it is complete, and the upstream acts on nothing.

A client that leaves its body without a byte for `idle` seconds, or drops the connection
part-way, stops the stream with a refusal (`RequestTimeout`, `IncompleteBody`) rather than
holding the call, its share of the gateway and an upstream connection.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import StreamReader, web

from iamgate.refusals import Reason, Refused
from iamgate.sigv4 import ChunkedDecoder, check_payload_sha256

READ_SIZE = 256 * 1024


@dataclass(slots=True)
class BodyStream:
    """One pass over the client's body; `refusal` tells why it stopped early, if it did."""

    source: StreamReader
    decoder: ChunkedDecoder | None = None
    expected_sha256: str | None = None
    idle: float | None = None  # seconds the client may leave the body without a byte
    bytes_in: int = 0
    bytes_forwarded: int = 0
    refusal: Refused | None = field(default=None)

    async def chunks(self) -> AsyncIterator[bytes]:
        hasher = hashlib.sha256() if self.expected_sha256 else None
        held = b""
        self.source.set_read_chunk_size(READ_SIZE)
        try:
            while raw := await read_within(self.source, READ_SIZE, self.idle):
                self.bytes_in += len(raw)
                data = self.decoder.feed(raw) if self.decoder else raw
                if not data:
                    continue
                if hasher is not None:
                    hasher.update(data)
                if held:
                    self.bytes_forwarded += len(held)
                    yield held
                held = data
            if self.decoder is not None:
                self.decoder.finish()
            if hasher is not None and self.expected_sha256 is not None:
                check_payload_sha256(hasher.hexdigest(), self.expected_sha256)
        except Refused as refused:
            self.refusal = refused
            raise
        if held:
            self.bytes_forwarded += len(held)
            yield held


async def read_within(source: StreamReader, size: int, idle: float | None) -> bytes:
    """Up to `size` bytes of the body as soon as there are any; b"" at its end."""
    try:
        async with asyncio.timeout(idle):
            return await source.read(size)
    except TimeoutError:
        raise Refused(
            Reason.REQUEST_TIMEOUT,
            f"iamgate: no byte of the request body arrived for {idle:g} seconds; the "
            "connection was closed",
        ) from None
    except (ConnectionError, web.RequestPayloadError):
        raise Refused(
            Reason.INCOMPLETE_BODY, "iamgate: the connection ended before the request body did"
        ) from None
