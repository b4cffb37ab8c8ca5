"""Decoding aws-chunked request bodies into the plain body the upstream receives.

Three framings arrive from real clients: signed chunks (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`,
each chunk signed in a chain seeded by the request signature), the same with a signed
trailer (`...-PAYLOAD-TRAILER`), and unsigned chunks with a checksum trailer
(`STREAMING-UNSIGNED-PAYLOAD-TRAILER`, what botocore sends over TLS). Data of a signed chunk
is released only after its signature verifies; unsigned data is released as it arrives and
its checksum trailer is checked at the end, so the caller must hold back the tail of the body
until `finish` returns.

Input is appended once to a buffer and parsed by offset, with one prefix deletion per `feed`,
so the cost stays linear in the body size whatever the split of the input.
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
TRAILER_SIGNATURE = "x-amz-trailer-signature"
CHECKSUM_PREFIX = "x-amz-checksum-"
MAX_LINE = 4096
MAX_TRAILERS = 16
MAX_CHUNK = 64 * 1024 * 1024
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
_SIGNATURE_DIGITS = frozenset(b"0123456789abcdef")
_CHUNK_SIGNATURE = b"chunk-signature="

# Parser states.
_SIZE, _DATA, _DATA_END, _TRAILER, _DONE, _FAILED = range(6)


def is_streaming(content_sha256: str | None) -> bool:
    return content_sha256 in STREAMING_MODES


class _Checksum(Protocol):
    def update(self, data: memoryview) -> None: ...
    def digest_b64(self) -> bytes: ...


class _Crc:
    def __init__(self, fn: Callable[[memoryview, int], int], width: int) -> None:
        self._fn, self._width, self._value = fn, width, 0

    def update(self, data: memoryview) -> None:
        self._value = self._fn(data, self._value)

    def digest_b64(self) -> bytes:
        return base64.b64encode(self._value.to_bytes(self._width, "big"))


class _Hash:
    def __init__(self, name: str) -> None:
        self._hash = hashlib.new(name)

    def update(self, data: memoryview) -> None:
        self._hash.update(data)

    def digest_b64(self) -> bytes:
        return base64.b64encode(self._hash.digest())


def _checksum_for(trailer: str) -> _Checksum:
    algorithm = trailer.removeprefix(CHECKSUM_PREFIX)
    if algorithm == "crc32":
        return _Crc(zlib.crc32, 4)
    if algorithm == "crc32c":
        return _Crc(checksums.crc32c, 4)
    if algorithm == "crc64nvme":
        return _Crc(checksums.crc64nvme, 8)
    if algorithm in ("sha1", "sha256"):
        return _Hash(algorithm)
    raise _incomplete(f"The checksum algorithm of the trailer {trailer} is not supported")


def _incomplete(message: str) -> Refused:
    return Refused(Reason.INCOMPLETE_BODY, message)


def _bad_signature(what: str) -> Refused:
    return Refused(
        Reason.BAD_SIGNATURE,
        f"The {what} signature we calculated does not match the signature you provided.",
    )


class ChunkedDecoder:
    """Push decoder: `feed` the body as it arrives, then `finish`. After a refusal every
    further call is refused too, so a caller cannot carry on past a failure by mistake."""

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
        self._signed = content_sha256 != UNSIGNED_TRAILER
        self._signed_trailer = content_sha256 == SIGNED_TRAILER
        if self._signed and verified is None:
            raise ValueError("signed chunks need the verified request signature")
        self._verified = verified
        self._previous = verified.seed_signature if verified is not None else ""
        names = [n.strip().lower() for n in trailer_names]
        self._trailer_names = tuple(dict.fromkeys(n for n in names if n))
        if content_sha256 == SIGNED and self._trailer_names:
            raise _incomplete(f"x-amz-trailer needs x-amz-content-sha256: {SIGNED_TRAILER}")
        self._checksums = {
            name: _checksum_for(name)
            for name in self._trailer_names
            if name.startswith(CHECKSUM_PREFIX)
        }
        self._decoded_length = decoded_length
        self._buffer = bytearray()
        self._state = _SIZE
        self._remaining = 0  # bytes of the current chunk's data still to come
        self._chunk_signature = b""
        self._chunk_hash = hashlib.sha256()
        self._pending: list[bytes] = []  # signed chunk data awaiting its signature
        self._decoded = 0
        self._trailer_lines: list[bytes] = []
        self._trailers: dict[str, str] = {}

    def feed(self, data: bytes) -> bytes:
        """The decoded bytes now released (often b"")."""
        if self._state == _FAILED:
            raise _incomplete("The aws-chunked body was already refused")
        if self._state == _DONE:
            if data:
                raise _incomplete("Data after the end of the aws-chunked body")
            return b""
        self._buffer += data
        out: list[bytes] = []
        view = memoryview(self._buffer)
        try:
            consumed = self._parse(view, out)
        except Refused:
            self._state = _FAILED
            raise
        finally:
            view.release()
        del self._buffer[:consumed]
        return b"".join(out)

    def finish(self) -> dict[str, str]:
        """At the end of input: the body must have been complete. Returns the trailers."""
        if self._state != _DONE:
            self._state = _FAILED
            raise _incomplete("The aws-chunked body ended before its final chunk")
        return dict(self._trailers)

    # -- parsing ------------------------------------------------------------------------

    def _parse(self, view: memoryview, out: list[bytes]) -> int:
        pos, end = 0, len(view)
        while pos < end:
            state = self._state
            if state == _DATA:
                take = min(self._remaining, end - pos)
                self._take(view[pos : pos + take], out)
                pos += take
                self._remaining -= take
                if not self._remaining:
                    self._state = _DATA_END
            elif state == _DATA_END:
                if end - pos < 2:
                    break
                if self._buffer[pos : pos + 2] != b"\r\n":
                    raise _incomplete("Chunk data must end with CRLF")
                pos += 2
                self._end_chunk(out)
                self._state = _SIZE
            elif state in (_SIZE, _TRAILER):
                crlf = self._buffer.find(b"\r\n", pos, min(end, pos + MAX_LINE + 2))
                if crlf < 0:
                    if end - pos > MAX_LINE + 1:  # a CR may await its LF
                        raise _incomplete("aws-chunked framing line too long")
                    break
                line = bytes(view[pos:crlf])
                pos = crlf + 2
                if state == _SIZE:
                    self._start_chunk(line)
                else:
                    self._trailer_line(line)
            else:
                raise _incomplete("Data after the end of the aws-chunked body")
        return pos

    def _start_chunk(self, line: bytes) -> None:
        size_text, semicolon, extension = line.partition(b";")
        if not 0 < len(size_text) <= 16 or not all(c in _HEX_DIGITS for c in size_text):
            raise _incomplete("Invalid aws-chunked chunk size")
        size = int(size_text, 16)
        if size > MAX_CHUNK:
            raise _incomplete("aws-chunked chunk too large")
        if self._signed:
            signature = extension.removeprefix(_CHUNK_SIGNATURE)
            if (
                not semicolon
                or not extension.startswith(_CHUNK_SIGNATURE)
                or len(signature) != 64
                or not all(c in _SIGNATURE_DIGITS for c in signature)
            ):
                raise _incomplete("Each chunk must carry a chunk-signature")
            self._chunk_signature = signature
            self._chunk_hash = hashlib.sha256()
        if size:
            self._remaining = size
            self._state = _DATA
        else:
            self._end_chunk([])
            self._state = _TRAILER

    def _take(self, piece: memoryview, out: list[bytes]) -> None:
        self._decoded += len(piece)
        if self._decoded_length is not None and self._decoded > self._decoded_length:
            raise _incomplete("More data than x-amz-decoded-content-length declares")
        for checksum in self._checksums.values():
            checksum.update(piece)
        if self._signed:
            self._chunk_hash.update(piece)
            self._pending.append(bytes(piece))
        else:
            out.append(bytes(piece))

    def _end_chunk(self, out: list[bytes]) -> None:
        if not self._signed:
            return
        expected = self._chain(
            "AWS4-HMAC-SHA256-PAYLOAD", EMPTY_SHA256, self._chunk_hash.hexdigest()
        )
        if not hmac.compare_digest(expected.encode(), self._chunk_signature):
            raise _bad_signature("chunk")
        self._previous = expected
        out.extend(self._pending)
        self._pending.clear()

    def _chain(self, algorithm: str, middle: str | None, data_hash: str) -> str:
        assert self._verified is not None
        auth = self._verified.auth
        lines = [algorithm, auth.amz_date, auth.scope.as_string(), self._previous]
        if middle is not None:
            lines.append(middle)
        lines.append(data_hash)
        return signature_of(self._verified.signing_key, "\n".join(lines))

    # -- trailers -----------------------------------------------------------------------

    def _trailer_line(self, line: bytes) -> None:
        if line:
            if len(self._trailer_lines) >= MAX_TRAILERS:
                raise _incomplete("Too many aws-chunked trailers")
            self._trailer_lines.append(line)
            return
        self._end_trailers()
        self._state = _DONE

    def _end_trailers(self) -> None:
        signature: bytes | None = None
        canonical = bytearray()
        for line in self._trailer_lines:
            name_bytes, colon, value_bytes = line.partition(b":")
            try:
                name = name_bytes.decode("ascii").strip().lower()
                value = value_bytes.decode("ascii").strip()
            except UnicodeDecodeError:
                raise _incomplete("aws-chunked trailers must be ASCII") from None
            if not colon or not name:
                raise _incomplete("Malformed aws-chunked trailer line")
            if name == TRAILER_SIGNATURE and signature is None:
                signature = value.encode()
                continue
            if name in self._trailers or name not in self._trailer_names:
                raise _incomplete(f"The trailer {name} was not announced in x-amz-trailer")
            self._trailers[name] = value
            canonical += f"{name}:{value}\n".encode()
        self._check_trailer_signature(signature, bytes(canonical))
        for name in self._trailer_names:
            if name not in self._trailers:
                raise _incomplete(f"The trailer {name} announced in x-amz-trailer is missing")
        if self._decoded_length is not None and self._decoded != self._decoded_length:
            raise _incomplete(
                f"The body has {self._decoded} bytes but x-amz-decoded-content-length says "
                f"{self._decoded_length}"
            )
        for name, checksum in self._checksums.items():
            if not hmac.compare_digest(checksum.digest_b64(), self._trailers[name].encode()):
                raise Refused(
                    Reason.BAD_DIGEST,
                    f"The {name.removeprefix(CHECKSUM_PREFIX).upper()} you specified did "
                    "not match the calculated checksum.",
                )

    def _check_trailer_signature(self, signature: bytes | None, canonical: bytes) -> None:
        if not self._signed_trailer:
            if signature is not None:
                raise _incomplete(f"{TRAILER_SIGNATURE} is only valid with {SIGNED_TRAILER}")
            return
        if signature is None:
            raise _incomplete(f"The trailer must end with {TRAILER_SIGNATURE}")
        expected = self._chain(
            "AWS4-HMAC-SHA256-TRAILER", None, hashlib.sha256(canonical).hexdigest()
        )
        if not hmac.compare_digest(expected.encode(), signature):
            raise _bad_signature("trailer")
