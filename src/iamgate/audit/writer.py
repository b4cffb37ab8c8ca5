"""The gateway's audit log: durable before forwarding, and nearly free for the event loop.

Events are encoded where they happen and numbered in this writer's chain; the audit writer
process (`iamgate.audit.process`) links and commits them. The loop and the writer meet only
through a socket, so a commit never holds the proxy's interpreter lock:

- a record someone waits on (a call about to be forwarded) leaves at once, and its caller
  prepares the upstream request while the writer commits; the rest (outcomes, logins) ride
  along with it, or leave within DEFER_SECONDS;
- whatever arrives while the writer commits shares its next transaction (group commit), and
  one acknowledgement settles all the records waiting on a batch;
- if the store refuses a batch, or the writer does not answer within DURABLE_TIMEOUT, the
  waiters are refused at once (fail closed: the gateway answers 503 and forwards nothing),
  while the events stay queued and are stored, in order, once the store is back;
- if the writer process dies, a new one resumes the chain and is sent every event not yet
  acknowledged; events it already stored are skipped by number, so none is lost or doubled;
- no event can hold the chain up, and with it the gateway: each is bounded where it is
  encoded (`iamgate.audit.events`), and one the store refuses all the same is stored in
  quarantined form (`iamgate.audit.appender`); only the store itself can fail the waiters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Generator
from typing import Any, Protocol

from sqlalchemy import Engine

from iamgate.audit.events import AuditEvent, encode, quarantined
from iamgate.audit.wire import MAX_BODY, STORED, AckReader, WireError, frame
from iamgate.refusals import Reason, Refused

log = logging.getLogger(__name__)
DURABLE_TIMEOUT = 5.0
DEFER_SECONDS = 0.05
STOP_SECONDS = 10.0
RESTART_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)
MAX_UNACKNOWLEDGED = 1_000_000


class AuditSink(Protocol):
    """What records an event: the gateway's audit log, or a command's direct one."""

    def append(self, event: AuditEvent) -> None: ...


class AuditUnavailable(Exception):
    pass


class DurableRecord:
    """An event on its way to the store: await it before acting on what it records."""

    __slots__ = ("_waiter",)

    def __init__(self, waiter: asyncio.Future[int]) -> None:
        self._waiter = waiter

    def __await__(self) -> Generator[Any, None, int]:
        try:
            return (yield from self._waiter.__await__())
        except AuditUnavailable:
            raise Refused(
                Reason.AUDIT_UNAVAILABLE,
                "iamgate: the audit log cannot be written right now, so nothing was forwarded; "
                "retry shortly",
            ) from None

    def abandon(self) -> None:
        """Not awaited after all (the request failed meanwhile): the event is stored just the
        same, and a failure to store it is not an unhandled error of the loop."""
        if self._waiter.done():
            _consume(self._waiter)
        else:
            self._waiter.add_done_callback(_consume)


def _consume(waiter: asyncio.Future[int]) -> None:
    if not waiter.cancelled():
        waiter.exception()


class _Link(asyncio.Protocol):
    def __init__(self, log: AuditLog) -> None:
        self._log = log
        self._acks = AckReader()

    def data_received(self, data: bytes) -> None:
        try:
            acks = self._acks.feed(data)
        except WireError:
            log.exception("the audit writer sent nonsense")
            self._log.restart_writer()
            return
        for status, seq in acks:
            self._log.acknowledged(status == STORED, seq)

    def connection_lost(self, exc: Exception | None) -> None:
        self._log.writer_lost()


class AuditLog:
    def __init__(self, engine: Engine, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.chain = secrets.token_hex(8)
        self._url = engine.url.render_as_string(hide_password=False)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._seq = 0
        self._early: list[AuditEvent] = []  # appended before start()
        self._unacknowledged: deque[tuple[int, bytes]] = deque()  # oldest first
        self._outbox: list[bytes] = []  # frames not yet written to the writer
        self._stored = 0  # the last seq the writer has stored
        self._waiters: deque[tuple[int, float, asyncio.Future[int]]] = deque()
        self._defer: asyncio.TimerHandle | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._transport: asyncio.Transport | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._flushers: list[tuple[int, asyncio.Future[None]]] = []
        self._restarts = 0
        self.acknowledgements = 0  # how many batches the writer has stored: group commit
        self._stopping = False
        self._stopped = False
        self._drained: asyncio.Event | None = None

    # -- the life of the writer process -----------------------------------------------------

    async def start(self) -> None:
        if not self.enabled:
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._drained = asyncio.Event()
        await self._spawn()
        early, self._early = self._early, []
        for event in early:
            self._add(encode(event), None)

    @property
    def writer_pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def _spawn(self) -> None:
        assert self._loop is not None
        ours, theirs = socket.socketpair()
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "iamgate.audit.process",
                str(theirs.fileno()),
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        try:
            self._transport, _ = await self._loop.create_unix_connection(
                lambda: _Link(self), sock=ours
            )
        except BaseException:
            ours.close()  # the writer sees its end close, and exits
            raise
        # The store's URL may hold a password: it goes over the socket, never on a command line.
        settings = json.dumps({"url": self._url, "chain": self.chain}).encode()
        pending = [frame(0, settings)] + [frame(s, b) for s, b in self._unacknowledged]
        self._outbox.clear()  # every unacknowledged event is in `pending`
        self._transport.write(b"".join(pending))

    def writer_lost(self) -> None:
        self._transport = None
        if self._stopping:
            if self._drained is not None:
                self._drained.set()
            return
        log.error("the audit writer process exited; starting another")
        self._fail_waiters()
        assert self._loop is not None
        delay = RESTART_SECONDS[min(self._restarts, len(RESTART_SECONDS) - 1)]
        self._restarts += 1
        self._loop.call_later(delay, lambda: asyncio.ensure_future(self._respawn()))

    async def _respawn(self) -> None:
        if self._stopping or self._transport is not None:
            return
        try:
            await self._spawn()
        except Exception:
            log.exception("could not start the audit writer process")
            self.writer_lost()

    def restart_writer(self) -> None:
        """End a writer that misbehaves; a new one takes over its chain."""
        if self._process is not None and self._process.returncode is None:
            self._process.kill()  # never two writers on one chain
        if self._transport is not None:
            self._transport.abort()

    async def stop(self) -> None:
        """Store what was appended (for up to STOP_SECONDS), then end the writer process."""
        if not self.enabled or self._loop is None or self._stopped:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_SECONDS):
                await self.flush()
        self._stopping = True
        if self._transport is not None:
            assert self._drained is not None
            self._drained.clear()
            self._transport.write_eof()  # the writer stores what it holds, then exits
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_SECONDS):
                    await self._drained.wait()
        if self._process is not None and self._process.returncode is None:
            try:
                async with asyncio.timeout(STOP_SECONDS):
                    await self._process.wait()
            except TimeoutError:
                self._process.kill()
        self._stopped = True

    async def flush(self) -> None:
        """Until everything appended so far is stored (bound it with asyncio.timeout)."""
        if not self.enabled or self._loop is None or self._stored >= self._seq:
            return
        self._send_queued()
        done: asyncio.Future[None] = self._loop.create_future()
        self._flushers.append((self._seq, done))
        await done

    # -- recording ----------------------------------------------------------------------------

    def append(self, event: AuditEvent) -> None:
        """Record `event` without waiting; it is stored, in order, within moments."""
        if not self.enabled:
            return
        if self._stopped:
            log.warning("audit event %s after the audit log stopped: not recorded", event.type)
            return
        if self._loop is None:
            self._early.append(event)
            return
        body = encode(event)
        if threading.get_ident() == self._loop_thread:
            self._add(body, None)
        else:  # an administration call running in a worker thread
            self._loop.call_soon_threadsafe(self._add, body, None)

    def start_durable(self, event: AuditEvent) -> DurableRecord:
        """Send `event` to be stored at once; awaiting the record waits until it is durable.

        The gateway starts the record of a call as soon as it has decided, and prepares the
        upstream request while the writer commits: the commit's latency is then hidden
        behind that work instead of added to it.
        """
        if not self.enabled:
            done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            done.set_result(0)
            return DurableRecord(done)
        assert self._loop is not None, "the audit log has not been started"
        waiter: asyncio.Future[int] = self._loop.create_future()
        self._add(encode(event), waiter)
        return DurableRecord(waiter)

    async def durably(self, event: AuditEvent) -> int:
        """The event's sequence number once it is durable; a refusal if it cannot be."""
        return await self.start_durable(event)

    def _add(self, body: bytes, waiter: asyncio.Future[int] | None) -> None:
        assert self._loop is not None
        self._seq += 1
        if len(body) > MAX_BODY:  # never from `encode`; the writer would refuse the frame
            body = quarantined(body, self._seq, "too large for the audit writer")
        self._unacknowledged.append((self._seq, body))
        self._outbox.append(frame(self._seq, body))
        if len(self._unacknowledged) > MAX_UNACKNOWLEDGED:
            lost, _ = self._unacknowledged.popleft()
            log.error("audit backlog full: event %d of chain %s dropped", lost, self.chain)
        if waiter is None:
            if self._defer is None:
                self._defer = self._loop.call_later(DEFER_SECONDS, self._send_queued)
            return
        if self._transport is None:  # no writer right now: refuse at once, keep the event
            waiter.set_exception(AuditUnavailable())
            return
        self._waiters.append((self._seq, time.monotonic() + DURABLE_TIMEOUT, waiter))
        if self._watchdog is None:
            self._watchdog = self._loop.call_later(DURABLE_TIMEOUT / 4, self._check_deadlines)
        # Someone waits on this one: it leaves now, with everything queued before it, so the
        # commit runs while its caller goes on. Records that arrive while the writer commits
        # queue in the socket and share its next transaction (group commit).
        self._send_queued()

    def _send_queued(self) -> None:
        """Send everything appended since the last send, in one write."""
        if self._defer is not None:
            self._defer.cancel()
            self._defer = None
        if self._transport is None or not self._outbox:
            return  # without a writer, the next one is sent every unacknowledged event
        self._transport.write(b"".join(self._outbox))
        self._outbox.clear()

    # -- what the writer says -----------------------------------------------------------------

    def acknowledged(self, stored: bool, seq: int) -> None:
        if stored:
            self.acknowledgements += 1
            self._restarts = 0
            self._stored = max(self._stored, seq)
            while self._unacknowledged and self._unacknowledged[0][0] <= seq:
                self._unacknowledged.popleft()
            if self._flushers:
                waiting = []
                for target, done in self._flushers:
                    if target > self._stored:
                        waiting.append((target, done))
                    elif not done.done():
                        done.set_result(None)
                self._flushers = waiting
        while self._waiters and self._waiters[0][0] <= seq:
            number, _, waiter = self._waiters.popleft()
            if waiter.done():  # gave up already; the event is durable all the same
                continue
            if stored:
                waiter.set_result(number)
            else:
                waiter.set_exception(AuditUnavailable())

    def _check_deadlines(self) -> None:
        assert self._loop is not None
        self._watchdog = None
        now = time.monotonic()
        while self._waiters and self._waiters[0][1] <= now:
            _, _, waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(AuditUnavailable())
        if self._waiters:
            self._watchdog = self._loop.call_later(DURABLE_TIMEOUT / 4, self._check_deadlines)

    def _fail_waiters(self) -> None:
        while self._waiters:
            _, _, waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(AuditUnavailable())
