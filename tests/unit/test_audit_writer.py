"""The audit writer: group commit, fail closed for waiters, nothing lost for the rest."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from iamgate.audit.events import AuditEvent, EventType
from iamgate.audit.search import verify
from iamgate.audit.writer import AuditLog
from iamgate.store.database import open_engine


def event(n: int) -> AuditEvent:
    return AuditEvent(EventType.AWS_CALL, principal=f"p{n}", fields={"request_id": f"r{n}"})


def test_events_wait_out_a_locked_store_and_keep_their_order(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'state.db'}")
    log = AuditLog(engine)
    assert log.append(event(0)).result(timeout=10) == 1
    lock = sqlite3.connect(str(tmp_path / "state.db"), isolation_level=None, timeout=0)
    lock.execute("BEGIN EXCLUSIVE")
    waited = log.append(event(1))
    later = [log.append(event(n)) for n in (2, 3)]
    with pytest.raises(Exception, match="locked"):
        waited.result(timeout=30)  # a waiter learns of the failure: the gateway says 503
    lock.execute("ROLLBACK")
    lock.close()
    assert log.flush(timeout=30)
    with engine.connect() as conn:
        principals = [
            r[0] for r in conn.execute(text("SELECT principal FROM audit_events ORDER BY seq"))
        ]
    assert principals == ["p0", "p1", "p2", "p3"]  # nothing lost, nothing reordered
    assert verify(engine) == []
    assert all(f.done() for f in later)
    log.close()


def test_concurrent_events_share_commits(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'state.db'}")
    log = AuditLog(engine)
    futures = [log.append(event(n)) for n in range(2000)]
    assert sorted(f.result(timeout=30) for f in futures) == list(range(1, 2001))
    assert verify(engine) == []
    log.close()
