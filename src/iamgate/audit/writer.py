"""Writing audit events off the request path, many per transaction.

Requests hand events to a queue; one thread drains whatever has accumulated and inserts it
in a single transaction (group commit), so the cost of durability is shared by all the
requests in flight.
"""

from __future__ import annotations

import logging
import queue
import threading

from sqlalchemy import Engine, insert

from iamgate.audit.events import ApiCallEvent
from iamgate.store.tables import api_calls

log = logging.getLogger(__name__)
_STOP = object()


class AuditWriter:
    def __init__(self, engine: Engine, *, max_batch: int = 500) -> None:
        self._engine = engine
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._max_batch = max_batch
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._idle = threading.Event()
        self._idle.set()
        self._pending = 0
        self._lock = threading.Lock()
        self._thread.start()

    def record(self, event: ApiCallEvent) -> None:
        with self._lock:
            self._pending += 1
            self._idle.clear()
        self._queue.put(event)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every recorded event is in the store (tests and shutdown use this)."""
        return self._idle.wait(timeout)

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            stop = item is _STOP
            batch = [] if stop else [item]
            while len(batch) < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                batch.append(more)
            if batch:
                self._write([e for e in batch if isinstance(e, ApiCallEvent)])
            if stop:
                return

    def _write(self, batch: list[ApiCallEvent]) -> None:
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(api_calls), [e.as_row() for e in batch])
        except Exception:
            log.exception("could not write %d audit events", len(batch))
        finally:
            with self._lock:
                self._pending -= len(batch)
                if self._pending == 0:
                    self._idle.set()
