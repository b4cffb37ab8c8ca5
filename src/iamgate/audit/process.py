"""The audit writer process: `python -m iamgate.audit.process FD`.

The gateway is one Python process whose event loop is its bottleneck. Linking events into the
chain, writing and fsyncing them in a thread of that process would make every commit contend
with the proxy for the interpreter lock, and a durable record waits on exactly those
commits. So the writing happens here, in a process of its own on its own core: it reads
numbered events from the socket FD, appends whatever has arrived in one transaction (group
commit), and acknowledges up to the last one. When the store cannot be written (down,
locked, full), it says so at once (so the gateway answers 503) and keeps the batch to try
again. A record the store refuses for what it holds never holds the chain up: the appender
stores it in quarantined form and goes on (see `iamgate.audit.appender`). When the gateway
goes away, it stores what it was sent and exits.
"""

from __future__ import annotations

import contextlib
import json
import logging
import selectors
import signal
import socket
import sys
import time

from iamgate.audit.appender import Appender
from iamgate.audit.wire import FAILED, STORED, FrameReader, ack
from iamgate.store.database import open_engine

log = logging.getLogger("iamgate.audit.process")
RETRY_SECONDS = 0.2
MAX_BATCH = 2000
LAST_TRIES_SECONDS = 10.0
READ_SIZE = 1 << 20


def serve(sock: socket.socket) -> int:
    reader = FrameReader()
    settings, backlog = _settings(sock, reader)
    appender = Appender(open_engine(settings["url"]), settings["chain"])
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    failing = False
    closed = False
    while not closed:
        wait = RETRY_SECONDS if failing else (0 if backlog else None)
        if selector.select(wait):
            data = _read_available(sock)
            closed = data is None
            backlog.extend(reader.feed(data or b""))
        if not backlog:
            continue
        while backlog:
            batch, backlog = backlog[:MAX_BATCH], backlog[MAX_BATCH:]
            try:
                appender.write(batch)
            except Exception as exc:
                backlog = batch + backlog
                if not failing:
                    log.error("audit log not written (%d events): %s", len(backlog), _said(exc))
                failing = True
                _send(sock, ack(FAILED, backlog[-1][0]))
                break
            failing = False
            _send(sock, ack(STORED, batch[-1][0]))
    return _last_tries(appender, backlog)


def _settings(
    sock: socket.socket, reader: FrameReader
) -> tuple[dict[str, str], list[tuple[int, bytes]]]:
    """The settings frame, and any events that arrived with it."""
    while True:
        data = sock.recv(READ_SIZE)
        if not data:
            raise SystemExit("iamgate audit writer: the gateway went away before it began")
        frames = reader.feed(data)
        if frames:
            seq, body = frames[0]
            if seq != 0:
                raise SystemExit("iamgate audit writer: events came before the settings")
            settings: dict[str, str] = json.loads(body)
            return settings, frames[1:]


def _read_available(sock: socket.socket) -> bytes | None:
    """Everything the gateway has sent so far (at least one read's worth); None at its end."""
    chunks = []
    data = sock.recv(READ_SIZE)
    if not data:
        return None
    chunks.append(data)
    sock.setblocking(False)
    try:
        while len(data) == READ_SIZE:
            data = sock.recv(READ_SIZE)
            if not data:
                break
            chunks.append(data)
    except BlockingIOError:
        pass
    finally:
        sock.setblocking(True)
    return b"".join(chunks)


def _send(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # the gateway has gone; what is stored stays stored
        sock.sendall(data)


def _last_tries(appender: Appender, backlog: list[tuple[int, bytes]]) -> int:
    """The gateway has closed: store what it sent, trying for a while if the store is down."""
    deadline = time.monotonic() + LAST_TRIES_SECONDS
    while backlog:
        try:
            appender.write(backlog)
            backlog = []
        except Exception as exc:
            if time.monotonic() > deadline:
                log.error(
                    "audit writer exits with %d events unwritten: %s", len(backlog), _said(exc)
                )
                return 1
            time.sleep(RETRY_SECONDS)
    appender.close()
    return 0


def _said(exc: BaseException) -> str:
    """An error for the log, bounded: a driver may quote the value it refused."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 500 else text[:499] + "…"


def main() -> int:
    # A stop (Ctrl-C, or SIGTERM to the whole group from systemd or a container runtime)
    # reaches the gateway too: the writer outlives it just long enough to store what it was
    # sent, and ends when the gateway closes the socket.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sock = socket.socket(fileno=int(sys.argv[1]))
    try:
        return serve(sock)
    finally:
        sock.close()


if __name__ == "__main__":
    sys.exit(main())
