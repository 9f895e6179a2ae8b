"""Tolerant parsing: every timestamp shape, spelling variant and the seed's sample payloads."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from archiver.gws.models import (
    FAST_EPOCH_MS_TO,
    MalformedPayload,
    parse_epoch,
    parse_message,
    parse_session,
    parse_timestamp,
    session_objects,
)
from archiver.gws.wire import decode_json
from archiver.instants import format_instant, from_epoch_ms


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2014-01-09 11:58:12.035+0200", "2014-01-09T09:58:12.035Z"),
        ("2016-01-20 14:24:10.000+0200", "2016-01-20T12:24:10.000Z"),
        ("2014-05-1502:24:00.000-0700", "2014-05-15T09:24:00.000Z"),
        ("2013-11-2521: 02: 22.000+0200", "2013-11-25T19:02:22.000Z"),
        ("2013-11-25 21:02:22.000+0200", "2013-11-25T19:02:22.000Z"),
        ("2015-10-01 16:02:07.000+0300", "2015-10-01T13:02:07.000Z"),
        ("2015-11-26T16:39:41Z", "2015-11-26T16:39:41.000Z"),
        ("2013-12-27T13:16:41.018-0800", "2013-12-27T21:16:41.018Z"),
        ("2013-12-27T13:16:41.018-08:00", "2013-12-27T21:16:41.018Z"),
        ("2013-12-27 13:16:41", "2013-12-27T13:16:41.000Z"),
    ],
)
def test_every_documented_timestamp_shape_parses(text: str, expected: str) -> None:
    """gws-api.md §3.6: each shape normalises to the same UTC instant format."""
    message = parse_message({"index": 1, "type": "Text", "timestamp": text})
    assert message.sent_at == expected
    assert parse_timestamp(text) is not None


@pytest.mark.parametrize(
    "value", [1389261492035, "1389261492035", "1389261492035L", 1389261492.035, 1389261492035.0]
)
def test_timestamp_seconds_holds_milliseconds(value: object) -> None:
    """``timestampSeconds`` is milliseconds (with or without ``L``); small values are seconds."""
    message = parse_message(
        {"index": 3, "type": "Text", "timestampSeconds": value, "timestamp": "1999-01-01 00:00"}
    )
    assert message.sent_at == "2014-01-09T09:58:12.035Z"


@given(st.integers(min_value=-(10**16), max_value=10**16))
@example(FAST_EPOCH_MS_TO - 1)
@example(FAST_EPOCH_MS_TO)
@example(10**11)
@example(10**11 - 1)
def test_whole_milliseconds_read_as_through_a_datetime(value: int) -> None:
    """The fast path for integer ``timestampSeconds`` writes what the datetime path writes, so
    a message archived before it compares equal when read again; the exact form agrees too."""
    through_datetime = parse_epoch(value)
    expected = None if through_datetime is None else format_instant(through_datetime)
    assert parse_message({"index": 1, "type": "Text", "timestampSeconds": value}).sent_at == (
        expected
    )
    if 10**11 <= value < FAST_EPOCH_MS_TO:
        assert from_epoch_ms(value) == expected


def test_epoch_milliseconds_beyond_a_datetime_are_no_instant() -> None:
    """Years 1 to 9999, as a datetime holds: outside them, no instant (not a five-digit year)."""
    assert from_epoch_ms(253_402_300_799_999) == "9999-12-31T23:59:59.999Z"
    assert from_epoch_ms(-62_135_596_800_000) == "0001-01-01T00:00:00.000Z"
    assert from_epoch_ms(253_402_300_800_000) is None
    assert from_epoch_ms(-62_135_596_800_001) is None


def test_java_long_suffix_in_body_is_tolerated() -> None:
    """A body with ``1389261492035L`` (invalid JSON, as in the docs) still decodes."""
    body = (
        b'{"statusCode":0,"messages":[{"index":1,"type":"Text","timestampSeconds":1389261492035L}]}'
    )
    payload = decode_json(body, "http://gws")
    assert parse_message(payload["messages"][0]).sent_at == "2014-01-09T09:58:12.035Z"


def test_message_without_any_time_keeps_sent_at_null() -> None:
    """No timestamp means NULL, never the archiving time."""
    assert parse_message({"index": 1, "type": "Text", "text": "x"}).sent_at is None
    assert parse_message({"index": 1, "type": "Text", "timestamp": "garbage"}).sent_at is None


def test_spelling_variants_get_canonical_names() -> None:
    """``TypingStopping`` is stored as ``TypingStopped``; raw_json keeps what was sent."""
    message = parse_message({"index": 5, "type": "TypingStopping"})
    assert message.type == "TypingStopped"
    assert '"TypingStopping"' in message.raw_json


def test_notice_words_come_from_text_or_notice_text() -> None:
    """Notice carries ``text``; CustomNotice and NicknameUpdated carry ``noticeText``."""
    assert parse_message({"index": 1, "type": "Notice", "text": "hi"}).text == "hi"
    custom = parse_message({"index": 2, "type": "CustomNotice", "noticeText": "custom"})
    assert custom.text == "custom"
    assert parse_message({"index": 3, "type": "PushUrl", "url": "http://x"}).url == "http://x"


def test_transcript_save_done_is_index_minus_one() -> None:
    """TranscriptSaveDone is never a cursor position, whatever index it carries."""
    assert parse_message({"index": -1, "type": "TranscriptSaveDone"}).index == -1
    assert parse_message({"type": "TranscriptSaveDone", "index": 9}).index == -1


def test_unknown_type_is_kept() -> None:
    """Undocumented types are kept under their own name with the raw JSON."""
    message = parse_message({"index": 7, "type": "IdleControlAlert", "text": "idle"})
    assert not message.known_type
    assert message.type == "IdleControlAlert"


@pytest.mark.parametrize(
    "obj", [None, [], "x", {"type": "Text"}, {"index": "one", "type": "Text"}, {"index": 1}]
)
def test_unusable_messages_are_rejected(obj: object) -> None:
    """A message without a usable index or type cannot be keyed: MalformedPayload."""
    with pytest.raises(MalformedPayload):
        parse_message(obj)


SEED_MESSAGES = [
    {
        "index": 2,
        "type": "ParticipantJoined",
        "from": {"type": "Agent", "nickname": "Agent1", "participantId": "009052BDEE4A003E"},
        "visibility": "All",
        "timestamp": "2013-12-27T13:16:41.018-0800",
    },
    {
        "index": 3,
        "type": "TypingStarted",
        "from": {"type": "Customer", "nickname": "PersonP", "participantId": "009052BDEE39003C"},
        "visibility": "All",
        "timestamp": "2013-12-27T13:16:41.186-0800",
    },
    {
        "index": 4,
        "type": "Text",
        "from": {"type": "Customer", "nickname": "PersonP", "participantId": "009052BDEE39003C"},
        "text": "dddd",
        "visibility": "All",
        "timestamp": "2013-12-27T13:16:41.187-0800",
    },
]
SEED_SESSION = {
    "state": "Chatting",
    "id": "0000Na9B26EF002G",
    "uri": "http://localhost:8080/api/v2/smssessions/0000Na9B26EF002G",
    "participants": [
        {"type": "Agent", "nickname": "Agent1", "participantId": "009052BDEE4A003E"},
        {"type": "Customer", "nickname": "PersonP", "participantId": "009052BDEE39003C"},
    ],
    "capabilities": ["AttachUserData", "UpdateUserData", "Leave", "Transfer", "Consult"],
    "userData": {},
}


def test_seed_sample_messages_parse() -> None:
    """The seed document's sample messages parse with sender, visibility and time."""
    parsed = [parse_message(obj) for obj in SEED_MESSAGES]
    assert [m.index for m in parsed] == [2, 3, 4]
    assert parsed[2].text == "dddd"
    assert parsed[2].from_nickname == "PersonP"
    assert parsed[0].from_participant_id == "009052BDEE4A003E"
    assert parsed[2].sent_at == "2013-12-27T21:16:41.187Z"


@pytest.mark.parametrize(
    "body",
    [
        {"statusCode": 0, "smssessions": [SEED_SESSION]},
        {"statusCode": 0, "smsessions": [SEED_SESSION]},
        SEED_SESSION,
        [SEED_SESSION],
        {"statusCode": 0, "smssession": SEED_SESSION},
    ],
)
def test_session_list_envelopes(body: object) -> None:
    """The ``smssessions`` envelope, a bare object and a bare array all give the session."""
    (session,) = [parse_session(obj) for obj in session_objects(body)]
    assert session.id == "0000Na9B26EF002G"
    assert session.state == "Chatting"
    assert not session.final


def test_session_list_without_sessions_is_malformed() -> None:
    """A list response with no recognisable sessions is a protocol problem, not 'no sessions'."""
    with pytest.raises(MalformedPayload):
        session_objects({"statusCode": 0, "something": []})
    assert session_objects({"statusCode": 0, "smssessions": []}) == []
