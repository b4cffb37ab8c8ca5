"""Whatever the gateway hands the audit log, what is recorded is bounded and storable.

The event model cuts every field to a documented size, so a record always fits the store's
columns and the writer's frames; `encode` never raises; a record the store refuses all the
same has a small ASCII stand-in (`quarantined`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from fuzzed_events import MIB, events, texts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import String

from iamgate.audit.appender import columns_of
from iamgate.audit.events import (
    COLUMN_WIDTHS,
    MAX_EVENT_BYTES,
    MAX_ID,
    MAX_SOURCE_IP,
    MAX_TEXT,
    MAX_TYPE,
    MAX_USER_AGENT,
    STATUS_RANGE,
    AuditEvent,
    EventType,
    encode,
    quarantined,
)
from iamgate.audit.wire import MAX_BODY
from iamgate.store.tables import audit_events


def width(column: str) -> int | None:
    kind = audit_events.c[column].type
    assert isinstance(kind, String)
    return kind.length


def test_the_bounds_are_the_store_columns() -> None:
    for name, limit in COLUMN_WIDTHS.items():
        assert width(name) == limit, name
    assert width("id") == MAX_ID
    assert width("type") == MAX_TYPE
    assert max(len(str(t)) for t in EventType) <= MAX_TYPE
    assert MAX_EVENT_BYTES < MAX_BODY  # an event always fits in one frame to the writer


def test_an_ordinary_event_is_recorded_as_it_was() -> None:
    fields = {
        "request_id": "r" * 32,
        "account_id": "111111111111",
        "aws_role": "ReadOnly",
        "service": "s3",
        "action": "s3:ListBucket",
        "decision": "allowed",
        "status": 200,
        "params": {"Bucket": "b", "MaxKeys": 1000, "Flag": True, "Ratio": 0.5, "None": None},
        "roles": ["a", "b"],
    }
    event = AuditEvent(
        EventType.AWS_CALL,
        principal="dana",
        source_ip="127.0.0.1",
        user_agent="aws-cli/1.32",
        fields=fields,
    )
    body = orjson.loads(encode(event))
    assert body["fields"] == fields
    assert (body["principal"], body["source_ip"], body["user_agent"]) == (
        "dana",
        "127.0.0.1",
        "aws-cli/1.32",
    )
    assert "truncated" not in body and "altered" not in body
    assert encode(event) == orjson.dumps(
        event.as_dict(), option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
    )


def test_a_17_mib_user_name_is_cut_to_the_principal_column() -> None:
    name = "x" * (17 * MIB)
    event = AuditEvent(
        EventType.LOGIN_FAILED, principal=name, fields={"user": name, "error": "BAD_PASSWORD"}
    )
    encoded = encode(event)
    body = orjson.loads(encoded)
    assert len(encoded) < 16 * 1024
    assert len(body["principal"]) == COLUMN_WIDTHS["principal"]
    assert body["principal"].endswith("…")
    assert len(body["fields"]["user"]) == MAX_TEXT
    assert body["fields"]["error"] == "BAD_PASSWORD"
    assert body["truncated"] == ["principal", "fields.user"]


def test_columns_lose_nul_and_odd_types_and_text_loses_lone_surrogates() -> None:
    event = AuditEvent(
        EventType.AWS_CALL,
        principal="da\x00na",
        user_agent="curl\udc80/8",  # an undecodable header byte, as the proxy reads it
        fields={
            "account_id": 111111111111,
            "service": ["s3"],
            "status": 2**40,
            "note": "keeps \x00 in the body",
            "bad": "\ud800",
        },
    )
    body = orjson.loads(encode(event))
    assert body["principal"] == "da\ufffdna"
    assert body["user_agent"] == "curl\ufffd/8"
    assert body["fields"]["account_id"] == "111111111111"
    assert body["fields"]["service"] == "['s3']"
    assert body["fields"]["status"] == str(2**40)
    assert body["fields"]["note"] == "keeps \x00 in the body"
    assert body["fields"]["bad"] == "\ufffd"
    assert set(body["altered"]) >= {"principal", "user_agent", "fields.account_id"}


def test_deep_cyclic_wide_and_unprintable_values_are_bounded() -> None:
    deep: list[Any] = []
    inner = deep
    for _ in range(100_000):
        inner.append([])
        inner = inner[0]
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    @dataclass
    class Point:
        x: int
        y: str

    fields: dict[Any, Any] = {
        "deep": deep,
        "cyclic": cyclic,
        "wide": list(range(10_000)),
        "many": {f"k{i}": "v" * 100 for i in range(100_000)},
        "huge_int": 10**5000,
        2**80: "a key beyond 64 bits",
        ("a", "tuple"): "a key JSON has no form for",
        "unprintable": Unprintable(),
        "bytes": b"\x00\xff" * MIB,
        "set": {1, 2},
        "point": Point(1, "y"),
        "when": datetime(2026, 1, 1, tzinfo=UTC),
        "nan": math.nan,
    }
    encoded = encode(AuditEvent(EventType.CONFIG_LOADED, fields=fields))
    assert len(encoded) <= MAX_EVENT_BYTES
    body = orjson.loads(encoded)
    got = body["fields"]
    assert got["wide"][-1] == "… 9900 more" and len(got["wide"]) == 101
    assert got["huge_int"] == "<an integer of 16610 bits>"
    assert got["unprintable"] == "<a Unprintable that cannot be shown>"
    assert got["point"] == {"x": 1, "y": "y"}
    assert got["when"] == "2026-01-01T00:00:00+00:00"
    assert got["nan"] is None
    assert "fields.deep.0.0.0.0.0.0.0" in body["truncated"]


def test_an_event_that_cannot_be_encoded_is_recorded_as_a_stand_in() -> None:
    event = AuditEvent(EventType.LOGIN_FAILED, principal="dana", time="not a time")  # type: ignore[arg-type]
    body = orjson.loads(encode(event))
    assert (body["type"], body["principal"]) == ("login.failed", "dana")
    assert body["fields"] == {"…": "not recorded: AttributeError"}
    assert body["truncated"] == ["fields"]


def test_a_quarantined_record_says_what_it_stands_for_in_ascii() -> None:
    original = encode(AuditEvent(EventType.LOGIN_FAILED, id="e" * 24, principal="é" * 10))
    stand_in = quarantined(original, 7, "StringDataRightTruncation")
    assert stand_in.isascii()
    body = orjson.loads(stand_in)
    assert body["type"] == "audit.quarantined"
    assert body["fields"]["seq"] == 7
    assert body["fields"]["event_id"] == "e" * 24
    assert body["fields"]["event_type"] == "login.failed"
    assert body["fields"]["error"] == "StringDataRightTruncation"
    assert body["fields"]["bytes"] == len(original)
    for garbage in (b"\xff\xfe", b"[1, 2]", b"", b'{"id": "\\u0000' + b"x" * 100 + b'"}'):
        body = orjson.loads(quarantined(garbage, 1, "DataError"))
        assert body["fields"]["bytes"] == len(garbage)
        assert body["fields"]["event_id"] is None or len(body["fields"]["event_id"]) <= MAX_ID


# -- any event ---------------------------------------------------------------------------------


def check_storable(encoded: bytes) -> dict[str, Any]:
    assert len(encoded) <= MAX_EVENT_BYTES
    text = encoded.decode()  # UTF-8, so no lone surrogate either
    assert "\x00" not in text  # escaped in the JSON text
    body: dict[str, Any] = orjson.loads(encoded)
    columns = columns_of(encoded)
    for name, value in columns.items():
        if name == "status":
            assert value is None or STATUS_RANGE[0] <= value <= STATUS_RANGE[1]
            continue
        assert value is None or isinstance(value, str), name
        if isinstance(value, str):
            assert len(value) <= COLUMN_WIDTHS.get(name, MAX_ID), name
            assert "\x00" not in value, name
    assert columns["id"] and columns["time"] and columns["type"]
    for name, limit in (("source_ip", MAX_SOURCE_IP), ("user_agent", MAX_USER_AGENT)):
        assert body[name] is None or len(body[name]) <= limit
    return body


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events)
def test_any_event_encodes_within_bounds_and_fits_the_columns(event: AuditEvent) -> None:
    check_storable(encode(event))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.binary(max_size=200) | st.builds(lambda t: t.encode("utf-8", "surrogatepass"), texts),
    st.integers(1, 2**63 - 1),
    texts,
)
def test_any_stand_in_is_small_ascii_and_storable(body: bytes, seq: int, error: str) -> None:
    stand_in = quarantined(body, seq, error)
    assert stand_in.isascii()
    assert check_storable(stand_in)["fields"]["seq"] == seq
