"""The hash chain catches every edit, deletion and reordering, by sequence number."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from iamgate.audit.chain import GENESIS, StoredEvent, canonical, link, verify_chain
from iamgate.audit.events import AuditEvent, EventType, summarize_params


def chain(n: int, name: str = "c1") -> list[StoredEvent]:
    events, head = [], GENESIS
    for seq in range(1, n + 1):
        body = canonical(AuditEvent(EventType.AWS_CALL, principal=f"user{seq}").as_dict())
        digest = link(head, seq, body)
        events.append(StoredEvent(name, seq, head, digest, body, {}))
        head = digest
    return events


def test_an_untouched_chain_verifies() -> None:
    assert verify_chain(chain(20) + chain(5, "c2")) == []


def test_an_edited_event_is_named() -> None:
    events = chain(10)
    events[4] = replace(events[4], body=events[4].body.replace("user5", "mallory"))
    problems = verify_chain(events)
    assert [(p.seq, p.what) for p in problems] == [(5, "edited")]


def test_a_deleted_event_is_named() -> None:
    events = chain(10)
    del events[6]
    problems = verify_chain(events)
    assert [(p.seq, p.what) for p in problems] == [(7, "deleted")]


def test_reordered_events_are_named() -> None:
    events = chain(10)
    a, b = events[3], events[4]
    events[3] = replace(b, seq=4)
    events[4] = replace(a, seq=5)
    problems = verify_chain(events)
    assert {4, 5} <= {p.seq for p in problems}
    assert min(p.seq for p in problems) == 4
    assert all(p.what in ("edited", "reordered") for p in problems)


@given(st.integers(min_value=1, max_value=30), st.data())
def test_any_single_change_is_caught(n: int, data: st.DataObject) -> None:
    events = chain(n)
    index = data.draw(st.integers(min_value=0, max_value=n - 1))
    change = data.draw(st.sampled_from(["body", "hash", "prev", "delete"]))
    if change == "delete":
        if index == n - 1:
            return  # removal from the end is what an anchored head is for
        del events[index]
    elif change == "body":
        events[index] = replace(events[index], body=events[index].body + " ")
    elif change == "hash":
        events[index] = replace(events[index], hash="f" * 64)
    else:
        events[index] = replace(events[index], prev_hash="e" * 64)
    assert verify_chain(events)


def test_parameters_are_bounded_and_redacted() -> None:
    summary = summarize_params(
        {"MasterUserPassword": "hunter2", "SecretString": "s", "Name": "x" * 500, "MaxCount": 3}
    )
    assert summary["MasterUserPassword"] == "[redacted]"
    assert summary["SecretString"] == "[redacted]"
    assert summary["MaxCount"] == 3 and len(str(summary["Name"])) <= 201
    assert "hunter2" not in repr(summary)
    many = summarize_params({f"P{i:03d}": i for i in range(60)})
    assert len(many) == 41 and many["…"] == "20 more"
