"""Fuzzing of the one boundary where GWS data becomes typed: any JSON value, any bytes.

Guarantee 7: whatever arrives, parsing yields a record or "kept raw, with the reason", and both
can be stored in SQLite; no other exception escapes.
"""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.errors import ProtocolError, UndecodableError
from archiver.gws.client import parse_messages_body
from archiver.gws.models import MalformedPayload, parse_message, parse_session
from archiver.gws.wire import decode_json

# Strings include lone surrogates, NUL, control and bidi characters.
strings = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
numbers = (
    st.integers()
    | st.integers(min_value=2**62, max_value=2**80)
    | st.integers(max_value=-(2**62))
    | st.floats(allow_nan=True, allow_infinity=True)
)
stamps = st.from_regex(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?([+-]\d{2}:?\d{2}|Z)?", fullmatch=True
)
scalars = st.none() | st.booleans() | numbers | strings | stamps
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(strings, inner, max_size=4),
    max_leaves=20,
)
message_like = st.fixed_dictionaries(
    {},
    optional={
        "index": numbers | strings | json_values,
        "type": st.sampled_from(["Text", "TranscriptSaveDone", "Notice"]) | json_values,
        "text": json_values,
        "noticeText": json_values,
        "url": json_values,
        "from": json_values | st.dictionaries(st.sampled_from(["nickname", "type"]), scalars),
        "visibility": json_values,
        "timestamp": stamps | json_values,
        "timestampSeconds": numbers | strings,
        "utcTime": numbers | strings,
    },
)
session_like = st.fixed_dictionaries(
    {},
    optional={
        "id": strings | json_values,
        "state": json_values,
        "participants": json_values,
        "userData": json_values,
    },
)


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


def storable(*values: object) -> None:
    """Each value goes into a SQLite column as the store would put it."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (v)")
    for value in values:
        conn.execute("INSERT INTO t VALUES (?)", (value,))


@settings(max_examples=400, deadline=None)
@given(message_like | json_values)
def test_any_message_value_is_a_message_or_kept_raw(value: Any) -> None:
    """A message element of any shape: a Message whose every column stores, or MalformedPayload."""
    try:
        message = parse_message(value)
    except MalformedPayload:
        return
    assert message.index == -1 or 1 <= message.index <= 2**62
    storable(*(getattr(message, name) for name in message.__slots__))  # type: ignore[attr-defined]


@settings(max_examples=300, deadline=None)
@given(session_like | json_values)
def test_any_session_value_is_a_session_or_kept_raw(value: Any) -> None:
    """A session entry of any shape: an SmsSession that stores, or MalformedPayload."""
    try:
        session = parse_session(value)
    except MalformedPayload:
        return
    storable(session.id, session.state, session.participants_json, session.user_data_json)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=0, max_value=10**6),
    st.lists(message_like | json_values, max_size=6),
)
def test_any_page_is_messages_plus_raw_entries(start: int, entries: list[Any]) -> None:
    """Every entry of a page is either a message or a rejected entry whose raw form stores."""
    page = parse_messages_body({"messages": entries}, "http://gws", start_index=start)
    assert len(page.messages) + len(page.rejected) == len(entries)
    storable(*(entry.raw_json for entry in page.rejected))


def test_nesting_too_deep_for_any_serialiser_is_kept_raw() -> None:
    """Deep nesting in one field costs that field or that message, never an exception."""
    for depth in (300, 2_000):
        deep = nested(depth)
        page = parse_messages_body(
            {"messages": [{"index": 1, "type": "Text", "text": "x", "deep": deep}, deep]},
            "http://gws",
        )
        assert len(page.messages) + len(page.rejected) == 2
        storable(*(entry.raw_json for entry in page.rejected))
        session = parse_session({"id": "S1", "userData": {"deep": deep}})
        assert session.id == "S1"


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200) | json_values.map(lambda v: repr(v).encode()))
def test_any_body_decodes_or_is_undecodable(body: bytes) -> None:
    """Any bytes: a JSON value, or UndecodableError (which the client reads in smaller pages)."""
    try:
        value = decode_json(body, "http://gws")
    except UndecodableError:
        return
    with contextlib.suppress(ProtocolError):
        parse_messages_body(value, "http://gws")
