"""The gateway's audit log against its real writer process and a real SQLite store.

Group commit, fail closed for whoever waits, nothing lost or doubled for the rest: through
a locked store, a killed writer, and a stop.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from postgres import fresh_database, write_lock
from sqlalchemy import Engine, text

from iamgate.audit.appender import Appender, ChainBroken, DirectAuditLog
from iamgate.audit.events import AuditEvent, EventType, encode
from iamgate.audit.search import verify
from iamgate.audit.writer import AuditLog
from iamgate.refusals import Reason, Refused
from iamgate.store.database import open_engine


def event(n: int) -> AuditEvent:
    return AuditEvent(EventType.AWS_CALL, principal=f"p{n}", fields={"request_id": f"r{n}"})


def principals(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT principal FROM audit_events ORDER BY chain, seq"))
        return [r[0] for r in rows]


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        yield open_engine(f"sqlite:///{tmp_path / 'state.db'}")
        return
    with fresh_database() as url:
        engine = open_engine(url)
        yield engine
        engine.dispose()


def test_concurrent_records_share_commits_and_each_gets_its_place(engine: Engine) -> None:
    async def run() -> tuple[list[int], int]:
        log = AuditLog(engine)
        await log.start()
        seqs = await asyncio.gather(*(log.durably(event(n)) for n in range(2000)))
        await log.stop()
        return list(seqs), log.acknowledgements

    seqs, commits = asyncio.run(run())
    assert sorted(seqs) == list(range(1, 2001))
    assert commits < 100  # 2000 records, a few commits
    assert verify(engine) == []


def test_a_locked_store_refuses_waiters_at_once_and_loses_nothing(
    engine: Engine, tmp_path: Path
) -> None:
    async def run() -> None:
        log = AuditLog(engine)
        await log.start()
        assert await log.durably(event(0)) == 1
        with write_lock(engine):
            with pytest.raises(Refused) as refused:
                await log.durably(event(1))  # the gateway answers 503 and forwards nothing
            assert refused.value.reason is Reason.AUDIT_UNAVAILABLE
            log.append(event(2))
            log.append(event(3))
        async with asyncio.timeout(30):
            await log.flush()
        assert await log.durably(event(4)) == 5
        await log.stop()

    asyncio.run(run())
    assert principals(engine) == ["p0", "p1", "p2", "p3", "p4"]  # in order, none lost
    assert verify(engine) == []


def test_a_record_is_committed_while_its_caller_works_on(engine: Engine) -> None:
    """The gateway signs the upstream request while the record is committed: the record
    must leave at once, not when the caller next yields to the loop."""

    async def run() -> None:
        log = AuditLog(engine)
        await log.start()
        record = log.start_durable(event(0))
        deadline = time.monotonic() + 10
        while principals(engine) != ["p0"]:  # the loop is blocked here, as while signing
            assert time.monotonic() < deadline, "the record waited for the caller"
            time.sleep(0.005)  # noqa: ASYNC251 - blocking the loop is the point
        assert await record == 1
        await log.stop()

    asyncio.run(run())


def test_a_record_given_up_on_is_stored_and_raises_nothing_later(engine: Engine) -> None:
    """A call that fails while its record is on the way (say AssumeRole fails) leaves the
    record behind: it is stored all the same, and its failure is nobody's unhandled error."""
    unhandled: list[dict[str, object]] = []

    async def run() -> None:
        asyncio.get_running_loop().set_exception_handler(
            lambda _, context: unhandled.append(context)
        )
        log = AuditLog(engine)
        await log.start()
        with write_lock(engine):
            log.start_durable(event(0)).abandon()
            with pytest.raises(Refused):
                await log.durably(event(1))
        async with asyncio.timeout(30):
            await log.flush()
        await log.stop()

    asyncio.run(run())
    gc.collect()  # an unretrieved exception is reported when its future is collected
    assert unhandled == []
    assert principals(engine) == ["p0", "p1"]
    assert verify(engine) == []


def test_a_killed_writer_is_replaced_and_its_chain_carries_on(engine: Engine) -> None:
    async def run() -> None:
        log = AuditLog(engine)
        await log.start()
        for n in range(50):
            await log.durably(event(n))
        pid = log.writer_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        for n in range(50, 60):  # while there is no writer: kept, and waiters refused
            log.append(event(n))
        refused = 0
        for n in range(60, 200):
            try:
                await log.durably(event(n))
            except Refused:
                refused += 1
                await asyncio.sleep(0.05)
        assert log.writer_pid != pid
        assert refused < 140  # a new writer took over
        await log.stop()

    asyncio.run(run())
    assert principals(engine) == [f"p{n}" for n in range(200)]  # every event, once, in order
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(DISTINCT chain) FROM audit_events")).scalar() == 1
    assert verify(engine) == []


def test_events_appended_anywhere_are_stored_by_stop(engine: Engine) -> None:
    async def run() -> None:
        log = AuditLog(engine)
        log.append(event(0))  # before the writer exists
        await log.start()
        log.append(event(1))  # on the loop, nobody waiting
        worker = threading.Thread(target=log.append, args=(event(2),))  # an admin thread
        worker.start()
        worker.join()
        await asyncio.sleep(0.01)
        await log.stop()

    asyncio.run(run())
    assert sorted(principals(engine)) == ["p0", "p1", "p2"]
    assert verify(engine) == []


def test_audit_off_writes_nothing_and_never_waits(engine: Engine) -> None:
    async def run() -> int:
        log = AuditLog(engine, enabled=False)
        await log.start()
        seq = await log.durably(event(0))
        await log.stop()
        return seq

    assert asyncio.run(run()) == 0
    assert principals(engine) == []


def test_a_command_records_each_event_before_it_goes_on(engine: Engine, tmp_path: Path) -> None:
    log = DirectAuditLog(engine)
    log.append(event(0))
    assert principals(engine) == ["p0"]
    with write_lock(engine), pytest.raises(Exception, match="lock"):
        log.append(event(1))  # the command fails rather than act unrecorded
    log.append(event(2))
    log.close()
    assert principals(engine) == ["p0", "p2"]
    assert verify(engine) == []


def test_a_resend_is_stored_once_and_a_gap_is_refused(engine: Engine) -> None:
    first = Appender(engine, "c0ffee")
    assert first.write([(1, encode(event(1))), (2, encode(event(2)))]) == 2
    again = Appender(engine, "c0ffee")  # a restarted writer resumes where the store ends
    assert (again.seq, again.head) == (first.seq, first.head)
    assert again.write([(n, encode(event(n))) for n in (1, 2, 3)]) == 3
    with pytest.raises(ChainBroken):
        again.write([(5, encode(event(5)))])
    assert principals(engine) == ["p1", "p2", "p3"]
    assert verify(engine) == []


def test_a_writer_that_was_overtaken_carries_on_after_what_is_stored(engine: Engine) -> None:
    late = Appender(engine, "c0ffee")  # took over while the old writer was still storing
    old = Appender(engine, "c0ffee")
    old.write([(n, encode(event(n))) for n in (1, 2, 3)])
    batch = [(n, encode(event(n))) for n in (1, 2, 3, 4)]
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        late.write(batch)  # its idea of the head was stale: nothing stored, head re-read
    assert late.write(batch) == 4  # the retry skips what the old writer stored
    assert principals(engine) == ["p1", "p2", "p3", "p4"]
    assert verify(engine) == []
