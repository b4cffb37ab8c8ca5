"""Appending to this writer's hash chain: durable before forwarding, cheap under load.

Requests hand events to a queue and, when they must, wait for them to be durable. One
thread drains whatever has accumulated, links it into the chain and commits it in a single
transaction (group commit), so concurrent requests share one fsync. If the commit fails,
every waiter learns it and the chain does not advance: the gateway then answers 503 and
forwards nothing (fail closed), and recovers as soon as the store does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import secrets
import threading
from concurrent.futures import Future
from typing import Any

from sqlalchemy import Engine

from iamgate.audit.chain import GENESIS, canonical, link
from iamgate.audit.events import AuditEvent
from iamgate.refusals import Reason, Refused

log = logging.getLogger(__name__)
COLUMNS = (
    "id",
    "time",
    "type",
    "principal",
    "account_id",
    "aws_role",
    "service",
    "action",
    "decision",
    "status",
    "request_id",
)
_PARAM_STYLE = {"qmark": "?", "format": "%s", "pyformat": "%s"}
_STOP = object()
DURABLE_TIMEOUT = 5.0
RETRY_SECONDS = 0.2
MAX_BACKLOG = 100_000


def columns_of(body_json: str) -> dict[str, Any]:
    """The searchable columns of an event, derived from its body alone."""
    return _columns(json.loads(body_json))


def _columns(body: dict[str, Any]) -> dict[str, Any]:
    fields = body.get("fields", {})
    status = fields.get("status")
    return {
        "id": body.get("id"),
        "time": body.get("time"),
        "type": body.get("type"),
        "principal": body.get("principal"),
        "account_id": fields.get("account_id"),
        "aws_role": fields.get("aws_role"),
        "service": fields.get("service"),
        "action": fields.get("action"),
        "decision": fields.get("decision"),
        "status": status if isinstance(status, int) else None,
        "request_id": fields.get("request_id"),
    }


class AuditLog:
    def __init__(self, engine: Engine, *, enabled: bool = True, max_batch: int = 1000) -> None:
        self._engine = engine
        self.enabled = enabled
        self.chain = secrets.token_hex(8)
        self._seq = 0
        self._head = GENESIS
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._max_batch = max_batch
        self._pending = 0
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    @property
    def _insert_sql(self) -> str:
        names = ("chain", "seq", "prev_hash", "hash", "body", *COLUMNS)
        marks = ", ".join(_PARAM_STYLE.get(self._engine.dialect.paramstyle, "?") for _ in names)
        # Constant column names and placeholders only: no value is ever formatted in.
        return f"INSERT INTO audit_events ({', '.join(names)}) VALUES ({marks})"  # noqa: S608

    def append(self, event: AuditEvent) -> Future[int]:
        """A future of the event's sequence number, set once it is durable."""
        future: Future[int] = Future()
        if not self.enabled:
            future.set_result(0)
            return future
        with self._lock:
            self._pending += 1
            self._idle.clear()
        self._queue.put((event, future))
        return future

    async def durably(self, event: AuditEvent) -> int:
        try:
            return await asyncio.wait_for(asyncio.wrap_future(self.append(event)), DURABLE_TIMEOUT)
        except Exception:
            raise Refused(
                Reason.AUDIT_UNAVAILABLE,
                "iamgate: the audit log cannot be written right now, so nothing was forwarded; "
                "retry shortly",
            ) from None

    def head(self) -> tuple[int, str]:
        return self._seq, self._head

    def flush(self, timeout: float = 10.0) -> bool:
        return self._idle.wait(timeout)

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        retry: list[AuditEvent] = []  # written by no one yet, oldest first
        while True:
            if retry:
                try:
                    item = self._queue.get(timeout=RETRY_SECONDS)
                except queue.Empty:
                    item = None
            else:
                item = self._queue.get()
            stop = item is _STOP
            batch: list[tuple[AuditEvent, Future[int] | None]] = [(e, None) for e in retry]
            if item is not None and not stop:
                batch.append(item)  # type: ignore[arg-type]
            while not stop and len(batch) < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                batch.append(more)  # type: ignore[arg-type]
            if batch:
                try:
                    written = self._write(batch)
                except Exception:  # the writer must outlive any one batch
                    log.exception("audit writer failed on a batch of %d", len(batch))
                    written = False
                # Events are never dropped for a passing failure of the store: they are
                # written, in order, as soon as it is back (within a bounded backlog).
                retry = [] if written else [e for e, _ in batch][-MAX_BACKLOG:]
                self._settled(len(batch) - len(retry))
            if stop:
                return

    def _settled(self, count: int) -> None:
        with self._lock:
            self._pending -= count
            if self._pending == 0:
                self._idle.set()

    def _write(self, batch: list[tuple[AuditEvent, Future[int] | None]]) -> bool:
        seq, head = self._seq, self._head
        rows: list[tuple[Any, ...]] = []
        for event, _ in batch:
            seq += 1
            data = event.as_dict()
            body = canonical(data)
            digest = link(head, seq, body)
            columns = _columns(data)
            rows.append((self.chain, seq, head, digest, body, *(columns[c] for c in COLUMNS)))
            head = digest
        try:
            with self._engine.begin() as conn:
                conn.exec_driver_sql(self._insert_sql, rows)
        except Exception as exc:
            log.error("audit log not written (%d events): %s", len(batch), type(exc).__name__)
            for _, future in batch:
                if future is not None and future.set_running_or_notify_cancel():
                    future.set_exception(exc)
            return False
        else:
            self._seq, self._head = seq, head
            for row, (_, future) in zip(rows, batch, strict=True):
                # A waiter that gave up (timeout) cancelled its future: the event is durable
                # all the same, and its outcome will say the call was not forwarded.
                if future is not None and future.set_running_or_notify_cancel():
                    future.set_result(int(row[1]))
            return True
