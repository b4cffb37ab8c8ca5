"""Hypothesis strategies for audit events of any size and content the gateway could hand
over: text with NUL, lone surrogates and characters beyond the BMP, from empty to megabytes;
integers beyond 64 bits; bytes; nesting thousands deep; values of the searchable columns
of any type."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from iamgate.audit.events import COLUMN_WIDTHS, AuditEvent, EventType

MIB = 1 << 20

# Text of any character (NUL, lone surrogates, beyond the BMP), short or megabytes long.
texts = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda piece, times: piece * times, st.text(min_size=1, max_size=4), st.integers(0, 3 * MIB)
    ),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(),
    texts,
    st.binary(max_size=64),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.dictionaries(st.one_of(texts, st.integers()), inner, max_size=6),
    ),
    max_leaves=40,
)
column_values = st.one_of(texts, scalars)
field_maps = st.fixed_dictionaries(
    {},
    optional={
        **{name: column_values for name in COLUMN_WIDTHS if name != "principal"},
        "status": st.one_of(st.integers(), st.integers(-(2**70), 2**70), texts),
        "params": values,
        "nested": values,
    },
).flatmap(
    lambda known: st.dictionaries(texts, values, max_size=4).map(lambda extra: {**extra, **known})
)


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for level in range(depth):
        value = {"level": level, "inner": value} if level % 2 else [value]
    return value


events = st.builds(
    AuditEvent,
    type=st.sampled_from(EventType),
    principal=st.one_of(st.none(), texts),
    source_ip=st.one_of(st.none(), texts),
    user_agent=st.one_of(st.none(), texts),
    fields=st.one_of(
        field_maps,
        st.integers(0, 5000).map(lambda depth: {"deep": nested(depth)}),
    ),
)
