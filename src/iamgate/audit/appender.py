"""Linking events into one hash chain in the store, in order, one transaction per batch.

This is the only code that writes the audit log. The gateway's writer process appends
through it, and so does a one-shot administration command (`DirectAuditLog`). The caller
numbers the events; a batch is stored in one transaction, and events already stored are
skipped when offered again, so after a failure (or a crash) the same events can simply be
offered again.

A record the store refuses for what is in it (a value too long for its column, a character
it cannot hold, a body that is not JSON) must not stop the chain: the audit log is
fail-closed, so that would stop the gateway. When a batch is refused with such an error,
its halves are stored apart (and their halves, and so on), and a record refused on its own
is stored in its place as an `audit.quarantined` record (its id, type, number, size,
SHA-256 and the error's class), so that the chain goes on and verifies. If the store
refuses that too, or fails in any other way (down, locked, full), the failure is the
store's: the error propagates, the head is what the store holds, and the caller offers the
events again later (the gateway meanwhile answers 503).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Engine, func, select

from iamgate.audit.chain import GENESIS, link
from iamgate.audit.events import AuditEvent, encode, quarantined
from iamgate.store.tables import audit_events

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
# Raised for what a record holds, not for the state of the store (PEP 249 names, looked up
# in the driver in use; ProgrammingError covers a value of a type the driver cannot bind).
# Not IntegrityError: that is another writer having stored the same numbers (the head is
# re-read and the next try skips them); a record without the columns that may not be empty
# is refused before it reaches the store.
_DATA_ERRORS = ("DataError", "ProgrammingError", "NotSupportedError")
_REQUIRED = ("id", "time", "type")


# Search-only columns: the access key a record names (derived from its body, like the
# columns above, and checked by `audit verify`), and, on an outcome, its call's place in the
# search order (`iamgate.audit.search`), which the appender looks up when it stores it.
SEARCH_COLUMNS = ("access_key_id", "call_time", "call_chain", "call_seq")
MAX_ACCESS_KEY = 128  # the `access_key_id` column; a longer "key" is no key this gateway issued
# Calls this appender stored whose outcome may follow: their place, by request id. Beyond
# this many (or after a restart), an outcome's call is looked up in the store instead.
MAX_PENDING_CALLS = 20_000
_CALL = "aws.call"
_OUTCOME = "aws.call.outcome"


def columns_of(body_json: str | bytes) -> dict[str, Any]:
    """The searchable columns of an event, derived from its body alone."""
    return _columns(orjson.loads(body_json))


def access_key_of(body_json: str | bytes) -> str | None:
    """The `access_key_id` column of an event, derived from its body alone."""
    return _access_key(orjson.loads(body_json))


def _access_key(body: Any) -> str | None:
    fields = body.get("fields") if isinstance(body, dict) else None
    key = fields.get("access_key_id") if isinstance(fields, dict) else None
    return key if isinstance(key, str) and 0 < len(key) <= MAX_ACCESS_KEY else None


def _columns(body: Any) -> dict[str, Any]:
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
        "status": status if isinstance(status, int) and not isinstance(status, bool) else None,
        "request_id": fields.get("request_id"),
    }


class ChainBroken(Exception):
    """Events offered out of order: a bug in the caller, never a passing failure."""


class IncompleteRecord(ValueError):
    """A record without an id, time or type, which the store would refuse."""


class Appender:
    def __init__(self, engine: Engine, chain: str) -> None:
        self.chain = chain
        self._engine = engine
        self._connection: Any = None  # one DBAPI connection of its own, kept open
        names = ("chain", "seq", "prev_hash", "hash", "body", *COLUMNS, *SEARCH_COLUMNS)
        mark = _PARAM_STYLE.get(engine.dialect.paramstyle, "?")
        # Constant column names and placeholders only: no value is ever formatted in.
        self._insert = (
            f"INSERT INTO audit_events ({', '.join(names)}) "  # noqa: S608
            f"VALUES ({', '.join(mark for _ in names)})"
        )
        self.seq, self.head = self._stored_head()
        self._calls: dict[str, tuple[str, str, int]] = {}  # request id: (time, chain, seq)
        self._find_call = (
            "SELECT time, chain, seq FROM audit_events "  # noqa: S608
            f"WHERE request_id = {mark} AND type = '{_CALL}' "
            "ORDER BY time DESC, chain DESC, seq DESC LIMIT 1"
        )
        dbapi = engine.dialect.loaded_dbapi
        self._data_errors: tuple[type[BaseException], ...] = (
            ValueError,  # not UTF-8, not JSON (UnicodeError, JSONDecodeError), NUL
            TypeError,
            OverflowError,  # an integer too large for the driver
            AttributeError,  # JSON that is not an object
            IncompleteRecord,
            *(getattr(dbapi, name) for name in _DATA_ERRORS if hasattr(dbapi, name)),
        )
        self.quarantined = 0  # records stored in quarantined form since this appender began

    def _stored_head(self) -> tuple[int, str]:
        """Where this chain ends in the store: a restarted writer carries it on."""
        c = audit_events.c
        with self._engine.connect() as conn:
            last = conn.execute(select(func.max(c.seq)).where(c.chain == self.chain)).scalar()
            if last is None:
                return 0, GENESIS
            digest = conn.execute(
                select(c.hash).where(c.chain == self.chain, c.seq == last)
            ).scalar_one()
        return int(last), str(digest)

    def write(self, events: Sequence[tuple[int, bytes]]) -> int:
        """Store the numbered events after the head; the new head.

        Events at or below the head are already stored (a resend) and are skipped. In the
        common case the events are stored in one transaction. A record that the store
        refuses for what it holds is stored in quarantined form instead (see above). On any
        other failure the exception propagates, and the head is what the store holds.
        """
        try:
            return self._write(events)
        except Exception as exc:
            if not self._for_data(exc):
                raise
        return self._salvage(events)

    def _for_data(self, exc: BaseException) -> bool:
        return not isinstance(exc, ChainBroken) and isinstance(exc, self._data_errors)

    def _salvage(self, events: Sequence[tuple[int, bytes]]) -> int:
        """The store refused `events` for what is in them: store each half on its own, and
        so on down to the records it refuses, which are quarantined. A few transactions per
        such record, not one per record of the batch."""
        pending = [(number, body) for number, body in events if number > self.seq]
        if len(pending) == 1:
            number, body = pending[0]
            try:
                self._write(pending)
            except Exception as exc:
                if not self._for_data(exc):
                    raise
                self._quarantine(number, body, exc)
        elif pending:
            half = len(pending) // 2
            for part in (pending[:half], pending[half:]):
                try:
                    self._write(part)
                except Exception as exc:
                    if not self._for_data(exc):
                        raise
                    self._salvage(part)
        return self.seq

    def _quarantine(self, number: int, body: bytes, error: BaseException) -> None:
        if number <= self.seq:
            return  # stored meanwhile by a writer that overtook this one
        stand_in = quarantined(body, number, type(error).__name__)
        self._write([(number, stand_in)])  # if the store refuses this too, the store is at fault
        self.quarantined += 1
        log.error(
            "audit event %d of chain %s (%d bytes) refused by the store: %s: %s; "
            "stored as audit.quarantined",
            number,
            self.chain,
            len(body),
            type(error).__name__,
            str(error)[:300],
        )

    def _write(self, events: Sequence[tuple[int, bytes]]) -> int:
        """Store the numbered events after the head, in one transaction; the new head.

        On any failure nothing is stored, the head is re-read, and the exception propagates.
        """
        seq, head = self.seq, self.head
        rows: list[list[Any]] = []
        for number, body in events:
            if number <= seq:
                continue
            if number != seq + 1:
                raise ChainBroken(f"chain {self.chain}: event {number} offered after {seq}")
            text = body.decode()
            digest = link(head, number, text)
            parsed = orjson.loads(body)
            columns = _columns(parsed)
            if not all(isinstance(columns[name], str) for name in _REQUIRED):
                raise IncompleteRecord(
                    f"chain {self.chain}: event {number} has no id, time or type"
                )
            rows.append(
                [
                    self.chain,
                    number,
                    head,
                    digest,
                    text,
                    *(columns[c] for c in COLUMNS),
                    _access_key(parsed),
                    *self._place_of_call(columns, number),
                ]
            )
            seq, head = number, digest
        if not rows:
            return self.seq
        try:
            # A transaction per batch through SQLAlchemy's pool and result machinery costs
            # more than the rows themselves: the appender keeps one DBAPI connection.
            if self._connection is None:
                self._connection = self._engine.raw_connection()
            cursor = self._connection.cursor()
            try:
                self._find_calls(cursor, rows)
                cursor.executemany(self._insert, rows)
            finally:
                cursor.close()
            self._connection.commit()
        except Exception:
            self._discard_connection()
            # Someone may have stored some of these meanwhile (a writer that was replaced):
            # carry on from what the store holds, so that the next try skips them.
            with contextlib.suppress(Exception):
                self.seq, self.head = self._stored_head()
            raise
        self.seq, self.head = seq, head
        return seq

    def _place_of_call(self, columns: dict[str, Any], number: int) -> tuple[Any, Any, Any]:
        """An outcome's call's (time, chain, seq), when this appender stored the call; and
        a call whose outcome may follow is remembered."""
        request_id = columns["request_id"]
        if not isinstance(request_id, str):
            return None, None, None
        if columns["type"] == _CALL and columns["status"] is None:
            if len(self._calls) >= MAX_PENDING_CALLS:
                del self._calls[next(iter(self._calls))]
            self._calls[request_id] = (columns["time"], self.chain, number)
        elif columns["type"] == _OUTCOME:
            return self._calls.pop(request_id, (None, None, None))
        return None, None, None

    def _find_calls(self, cursor: Any, rows: list[list[Any]]) -> None:
        """Outcomes whose call this appender did not store (it began after, or forgot it):
        their call's place, from the store."""
        at = len(rows[0]) - 3
        kind, request = 5 + COLUMNS.index("type"), 5 + COLUMNS.index("request_id")
        for row in rows:
            if row[kind] == _OUTCOME and row[at] is None and isinstance(row[request], str):
                cursor.execute(self._find_call, (row[request],))
                found = cursor.fetchone()
                if found is not None:
                    row[at : at + 3] = found

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None

    def _discard_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            connection.rollback()
            connection.close()
        except Exception:
            log.debug("closing a failed audit connection", exc_info=True)
            with contextlib.suppress(Exception):
                connection.invalidate()


class DirectAuditLog:
    """For a one-shot command: each event is committed before `append` returns, on a chain
    of its own; if it cannot be, the command fails rather than act unrecorded."""

    def __init__(self, engine: Engine) -> None:
        self._appender = Appender(engine, secrets.token_hex(8))

    @property
    def chain(self) -> str:
        return self._appender.chain

    def append(self, event: AuditEvent) -> None:
        self._appender.write([(self._appender.seq + 1, encode(event))])

    def close(self) -> None:
        self._appender.close()
