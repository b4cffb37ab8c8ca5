"""Decoding aws-chunked request bodies into the plain body the upstream receives.

Two framings arrive from real clients: signed chunks (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`,
each chunk signed in a chain seeded by the request signature, optionally with a signed
trailer) and unsigned chunks with a checksum trailer (`STREAMING-UNSIGNED-PAYLOAD-TRAILER`,
what botocore sends over TLS). Data of a signed chunk is released only after its signature
verifies; a checksum trailer is checked against the decoded bytes at the end.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import zlib
from collections.abc import Callable, Sequence
from typing import Protocol

from awscrt import checksums

from iamgate.refusals import Reason, Refused
from iamgate.sigv4.canonical import EMPTY_SHA256
from iamgate.sigv4.verify import Verified, signature_of

SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_MODES = frozenset({SIGNED, SIGNED_TRAILER, UNSIGNED_TRAILER})
MAX_LINE = 4096
MAX_CHUNK = 64 * 1024 * 1024


def is_streaming(content_sha256: str | None) -> bool:
    return content_sha256 in STREAMING_MODES


class _Checksum(Protocol):
    def update(self, data: bytes) -> None: ...
    def digest_b64(self) -> str: ...


class _Crc:
    def __init__(self, fn: Callable[[bytes, int], int], width: int) -> None:
        self._fn, self._width, self._value = fn, width, 0

    def update(self, data: bytes) -> None:
        self._value = self._fn(data, self._value)

    def digest_b64(self) -> str:
        return base64.b64encode(self._value.to_bytes(self._width, "big")).decode()


class _Hash:
    def __init__(self, name: str) -> None:
        self._hash = hashlib.new(name)

    def update(self, data: bytes) -> None:
        self._hash.update(data)

    def digest_b64(self) -> str:
        return base64.b64encode(self._hash.digest()).decode()


def _checksum_for(trailer: str) -> _Checksum | None:
    algorithm = trailer.removeprefix("x-amz-checksum-")
    if algorithm == "crc32":
        return _Crc(zlib.crc32, 4)
    if algorithm == "crc32c":
        return _Crc(checksums.crc32c, 4)
    if algorithm == "crc64nvme":
        return _Crc(checksums.crc64nvme, 8)
    if algorithm in ("sha1", "sha256", "sha512"):
        return _Hash(algorithm)
    return None


def _incomplete(message: str) -> Refused:
    return Refused(Reason.INCOMPLETE_BODY, message)


class ChunkedDecoder:
    def __init__(
        self,
        content_sha256: str,
        *,
        verified: Verified | None,
        trailer_names: Sequence[str] = (),
        decoded_length: int | None = None,
    ) -> None:
        if content_sha256 not in STREAMING_MODES:
            raise ValueError(f"not an aws-chunked mode: {content_sha256}")
        self._signed = content_sha256 in (SIGNED, SIGNED_TRAILER)
        if self._signed and verified is None:
            raise ValueError("signed chunks need the verified request signature")
        self._verified = verified
        self._previous = verified.seed_signature if verified else ""
        self._trailer_names = [n.lower() for n in trailer_names]
        self._checksums = {
            name: c for name in self._trailer_names if (c := _checksum_for(name)) is not None
        }
        self._decoded_length = decoded_length
        self._buffer = bytearray()
        self._state = "size"  # size -> data -> size ... -> trailer -> done
        self._chunk_size = 0
        self._chunk_signature = ""
        self._decoded = 0
        self._trailers: dict[str, str] = {}
        self._trailer_lines: list[bytes] = []

    def feed(self, data: bytes) -> bytes:
        if self._state == "done" and data:
            raise _incomplete("Data after the end of the aws-chunked body")
        self._buffer += data
        out = bytearray()
        while True:
            if self._state == "size":
                line = self._line()
                if line is None:
                    break
                self._start_chunk(line)
            elif self._state == "data":
                if len(self._buffer) < self._chunk_size + 2:
                    break
                chunk = bytes(self._buffer[: self._chunk_size])
                if self._buffer[self._chunk_size : self._chunk_size + 2] != b"\r\n":
                    raise _incomplete("Chunk data must end with CRLF")
                del self._buffer[: self._chunk_size + 2]
                self._check_chunk(chunk)
                out += chunk
                self._state = "size"
            elif self._state == "trailer":
                line = self._line()
                if line is None:
                    break
                if line == b"":
                    self._end_trailers()
                    self._state = "done"
                else:
                    self._trailer_lines.append(line)
            else:
                break
        return bytes(out)

    def _line(self) -> bytes | None:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > MAX_LINE:
                raise _incomplete("aws-chunked framing line too long")
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        return line

    def _start_chunk(self, line: bytes) -> None:
        size_text, _, extension = line.partition(b";")
        try:
            size = int(size_text, 16)
        except ValueError:
            raise _incomplete("Invalid aws-chunked chunk size") from None
        if size < 0 or size > MAX_CHUNK:
            raise _incomplete("aws-chunked chunk too large")
        if self._signed:
            key, eq, signature = extension.partition(b"=")
            if key != b"chunk-signature" or not eq or len(signature) != 64:
                raise _incomplete("Each chunk must carry a chunk-signature")
            self._chunk_signature = signature.decode("ascii", "replace")
        self._chunk_size = size
        if size == 0:
            self._check_chunk(b"")
            self._state = "trailer"
        else:
            self._state = "data"

    def _check_chunk(self, chunk: bytes) -> None:
        if self._signed:
            expected = self._chain("AWS4-HMAC-SHA256-PAYLOAD", EMPTY_SHA256, chunk)
            if not hmac.compare_digest(expected, self._chunk_signature):
                raise Refused(
                    Reason.BAD_SIGNATURE,
                    "The chunk signature we calculated does not match the signature you provided.",
                )
            self._previous = expected
        self._decoded += len(chunk)
        if self._decoded_length is not None and self._decoded > self._decoded_length:
            raise _incomplete("More data than x-amz-decoded-content-length declares")
        for checksum in self._checksums.values():
            checksum.update(chunk)

    def _chain(self, algorithm: str, middle: str, data: bytes) -> str:
        assert self._verified is not None
        auth = self._verified.auth
        to_sign = "\n".join(
            (
                algorithm,
                auth.amz_date,
                auth.scope.as_string(),
                self._previous,
                *((middle,) if middle else ()),
                hashlib.sha256(data).hexdigest(),
            )
        )
        return signature_of(self._verified.signing_key, to_sign)

    def _end_trailers(self) -> None:
        signature: str | None = None
        signed_part = b""
        for line in self._trailer_lines:
            name, colon, value = line.partition(b":")
            if not colon:
                raise _incomplete("Malformed trailer line")
            key = name.decode("ascii", "replace").strip().lower()
            if key == "x-amz-trailer-signature":
                signature = value.decode("ascii", "replace").strip()
                continue
            signed_part += line + b"\n"
            self._trailers[key] = value.decode("utf-8", "replace").strip()
        if self._signed and self._trailer_lines:
            expected = self._chain("AWS4-HMAC-SHA256-TRAILER", "", signed_part)
            if signature is None or not hmac.compare_digest(expected, signature):
                raise Refused(
                    Reason.BAD_SIGNATURE,
                    "The trailer signature we calculated does not match the signature you "
                    "provided.",
                )

    def finish(self) -> dict[str, str]:
        if self._state != "done" or self._buffer:
            raise _incomplete("The aws-chunked body ended before its final chunk")
        if self._decoded_length is not None and self._decoded != self._decoded_length:
            raise _incomplete(
                f"The body has {self._decoded} bytes but x-amz-decoded-content-length says "
                f"{self._decoded_length}"
            )
        for name in self._trailer_names:
            if name not in self._trailers:
                raise _incomplete(f"The trailer {name} announced in x-amz-trailer is missing")
        for name, checksum in self._checksums.items():
            if not hmac.compare_digest(checksum.digest_b64(), self._trailers[name]):
                raise Refused(
                    Reason.BAD_DIGEST,
                    f"The {name.removeprefix('x-amz-checksum-').upper()} you specified did "
                    "not match the calculated checksum.",
                )
        return dict(self._trailers)
