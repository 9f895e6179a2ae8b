"""Tolerant models of what GWS sends: SMS sessions and their messages.

GWS payloads vary (gws-api.md §3.6, §4.6): timestamps in several shapes, ``timestampSeconds``
holding milliseconds (sometimes as a string with a Java ``L``), ``TypingStopping`` for
``TypingStopped``, ``smsession`` for ``smssession``. Parsing here accepts all of them and
normalises to canonical names and UTC instants; the raw JSON is kept alongside.

This is the one boundary where data from outside becomes typed: :func:`parse_message` and
:func:`parse_session` take any JSON value of any size and shape and either return a record or
raise :class:`MalformedPayload` with the reason, never anything else. A field that cannot be
read (a timestamp offset of +24:00, a year 0) leaves its column empty; only a message without a
usable index or type is refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

import orjson

from archiver.instants import format_instant as format_instant
from archiver.instants import from_epoch_ms

T = TypeVar("T")

MESSAGE_TYPES = (
    "Text",
    "ParticipantJoined",
    "ParticipantLeft",
    "ParticipantRejoined",
    "TypingStarted",
    "TypingStopped",
    "PushUrl",
    "Notice",
    "CustomNotice",
    "NicknameUpdated",
    "TranscriptSaveDone",
)
TYPE_SPELLINGS = {name.lower(): name for name in MESSAGE_TYPES} | {
    "typingstopping": "TypingStopped",
}
FINAL_STATES = frozenset({"Completed", "Revoked"})
TRANSCRIPT_SAVE_DONE_INDEX = -1
# Indices are stored as SQLite integers (64-bit); no real log comes near this.
MAX_INDEX = 2**62
_INDEX_DIGITS = re.compile(r"-?\d{1,19}")
MAX_ID_LENGTH = 1024
_SURROGATES = re.compile("[\ud800-\udfff]")
# Epoch values from this magnitude on are milliseconds; below it, seconds.
EPOCH_MS_FROM = 10**11
# Up to 2200 whole milliseconds take a path without a datetime. It gives the same text as
# parse_epoch's float division, which beyond about 2255 can be a millisecond off: archived
# values must keep comparing equal when a page is read again.
FAST_EPOCH_MS_TO = 7_258_118_400_000


class MalformedPayload(ValueError):
    """A payload that cannot be placed in the archive (no usable index or id)."""


@dataclass(frozen=True, slots=True)
class Malformed:
    """Something GWS sent that could not be parsed, kept raw (the ``malformed`` table).

    ``index`` is the log position it occupies, set only when a one-message read
    (``startIndex=N&count=1``) pinned it there: such an entry moves the session's cursor past
    ``N``. Nothing else that is malformed moves a cursor. ``raw_json`` is text, or the exact
    bytes when they are not valid UTF-8.
    """

    problem: str
    raw_json: str | bytes
    index: int | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """One entry of a session's message log, normalised; ``raw_json`` is what GWS sent."""

    index: int
    type: str
    text: str | None
    url: str | None
    from_type: str | None
    from_nickname: str | None
    from_participant_id: str | None
    visibility: str | None
    sent_at: str | None
    raw_json: str
    from_user_id: str | None = None  # an agent sender's GWS user id (from.path or from.uri)

    @property
    def known_type(self) -> bool:
        """True if ``type`` is one of the documented GWS message types."""
        return self.type in MESSAGE_TYPES

    def same_content(self, other: Message) -> bool:
        """True if both describe the same message (formatting of the raw JSON aside)."""
        return (
            self.type,
            self.text,
            self.url,
            self.from_participant_id,
            self.visibility,
            self.sent_at,
        ) == (
            other.type,
            other.text,
            other.url,
            other.from_participant_id,
            other.visibility,
            other.sent_at,
        )


@dataclass(frozen=True, slots=True)
class SmsSession:
    """An SMS session as listed by GWS; JSON fields are canonical (sorted keys) for comparison."""

    id: str
    state: str | None
    participants_json: str
    user_data_json: str
    # What this viewer may do with it (Accept while Invited): not archived, not compared.
    capabilities: tuple[str, ...] = field(default=(), compare=False)

    @property
    def final(self) -> bool:
        """True once GWS says the interaction is over for this agent."""
        return self.state in FINAL_STATES


def dumps(value: Any, *, sort_keys: bool = False) -> str:
    """Compact JSON text; non-ASCII kept as is."""
    option = orjson.OPT_SORT_KEYS if sort_keys else 0
    try:
        return orjson.dumps(value, option=option | orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        # orjson refuses what JSON allows but it cannot hold: integers beyond 64 bits, strings
        # with lone surrogates (escaped here, so the text stays valid UTF-8), nesting past 255.
        return json.dumps(value, separators=(",", ":"), sort_keys=sort_keys, default=str)


def parse_message(obj: object) -> Message:
    """Build a Message from one element of a ``messages`` array; raise MalformedPayload only."""
    return _guarded(_parse_message, "message", obj)


def _parse_message(obj: object) -> Message:
    if not isinstance(obj, Mapping):
        raise MalformedPayload(f"message is {type(obj).__name__}, not an object")
    index = _parse_index(obj.get("index"))
    raw_type = obj.get("type")
    if not isinstance(raw_type, str) or not raw_type:
        raise MalformedPayload(f"message {index} has no type")
    if len(raw_type) > MAX_ID_LENGTH:
        raise MalformedPayload(f"message {index} has a type of {len(raw_type)} characters")
    msg_type = TYPE_SPELLINGS.get(raw_type.lower(), raw_type)
    if msg_type == "TranscriptSaveDone":
        index = TRANSCRIPT_SAVE_DONE_INDEX
    elif index < 1:
        raise MalformedPayload(f"message index {index} is not a position (indices start at 1)")
    sender = obj.get("from")
    sender = sender if isinstance(sender, Mapping) else {}
    return Message(
        index=index,
        type=msg_type,
        text=_text_of(obj),
        url=_optional_str(obj.get("url")),
        from_type=_optional_str(sender.get("type")),
        from_nickname=_optional_str(sender.get("nickname")),
        from_participant_id=_optional_str(sender.get("participantId", sender.get("id"))),
        visibility=_optional_str(obj.get("visibility")),
        sent_at=_sent_at(obj),
        raw_json=dumps(obj),
        from_user_id=_user_id(sender) if sender.get("type") == "Agent" else None,
    )


_USER_PATH = re.compile(r"/users/([^/?#]{1,128})")


def _user_id(sender: Mapping[str, Any]) -> str | None:
    """The user id in an agent sender's ``path`` (``/users/{id}``) or ``uri``."""
    for key in ("path", "uri"):
        value = sender.get(key)
        if isinstance(value, str) and (match := _USER_PATH.search(value)):
            return match.group(1)
    return None


def participant_agents(participants_json: str) -> set[str]:
    """The user ids of a session's agent participants (``path``/``uri``), silent supervisors
    (visibility ``Supervisors``) left out: who handles the session, as its list shows it."""
    try:
        participants = orjson.loads(participants_json)
    except orjson.JSONDecodeError:
        return set()
    found = set()
    for member in participants if isinstance(participants, list) else ():
        if (
            isinstance(member, Mapping)
            and member.get("type") == "Agent"
            and member.get("visibility") != "Supervisors"
            and (user_id := _user_id(member)) is not None
        ):
            found.add(user_id)
    return found


def parse_session(obj: object) -> SmsSession:
    """Build an SmsSession from a session resource; raise MalformedPayload only (no usable id).

    Participants or user data that cannot be kept (nested too deep to serialise) are left empty:
    the session and its messages matter more than those fields.
    """
    return _guarded(_parse_session, "session", obj)


def _parse_session(obj: object) -> SmsSession:
    if not isinstance(obj, Mapping):
        raise MalformedPayload(f"session is {type(obj).__name__}, not an object")
    session_id = obj.get("id")
    if not isinstance(session_id, str) or not session_id.strip():
        raise MalformedPayload("session has no id")
    if len(session_id) > MAX_ID_LENGTH or _SURROGATES.search(session_id) or "\x00" in session_id:
        raise MalformedPayload(f"session id {session_id[:80]!r} is not usable")
    participants = obj.get("participants")
    user_data = obj.get("userData")
    state = _optional_str(obj.get("state"))
    return SmsSession(
        id=session_id,
        state=state if state is None or len(state) <= MAX_ID_LENGTH else None,
        participants_json=_json_or(participants if isinstance(participants, list) else [], "[]"),
        user_data_json=_json_or(user_data if isinstance(user_data, Mapping) else {}, "{}", True),
        capabilities=_capabilities(obj.get("capabilities")),
    )


def _capabilities(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(item for item in value[:64] if isinstance(item, str) and len(item) <= 64)


def _guarded(parse: Callable[[object], T], what: str, obj: object) -> T:
    """``parse(obj)``, with any exception but MalformedPayload turned into one."""
    try:
        return parse(obj)
    except MalformedPayload:
        raise
    except Exception as exc:  # any value from outside: nothing else may escape
        raise MalformedPayload(f"{what} cannot be read: {type(exc).__name__}: {exc}") from exc


def _json_or(value: object, fallback: str, sort_keys: bool = False) -> str:
    try:
        return dumps(value, sort_keys=sort_keys)
    except (RecursionError, TypeError, ValueError):
        return fallback


def session_objects(body: object) -> list[object]:
    """The session resources in a list response: the envelope, a bare object or a bare array."""
    if isinstance(body, list):
        return body
    if isinstance(body, Mapping):
        for key in ("smssessions", "smsessions"):
            if isinstance(body.get(key), list):
                return list(body[key])
        for key in ("smssession", "smsession"):
            if isinstance(body.get(key), Mapping):
                return [body[key]]
        if "id" in body:
            return [body]
        if isinstance(body.get("uris"), list) and not body["uris"]:
            return []
    raise MalformedPayload("session list has no smssessions array")


def _parse_index(value: object) -> int:
    """An index from an integer, an integral float, or digits in a string (``"5"``, ``"5L"``)."""
    if isinstance(value, bool):
        raise MalformedPayload("message index is a boolean")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, str):
        digits = value.strip().removesuffix("L")
        if not _INDEX_DIGITS.fullmatch(digits):
            raise MalformedPayload(f"message index {_clip(value)} is not an integer")
        value = int(digits)
    if not isinstance(value, int):
        raise MalformedPayload(f"message index {_clip(value)} is not an integer")
    if abs(value) > MAX_INDEX:
        raise MalformedPayload(f"message index {_clip(value)} is out of range")
    return value


def _clip(value: object, limit: int = 40) -> str:
    """A short, printable rendering of a bad value, for a reason text."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**limit:
        return f"of {len(str(abs(value))[:5000])}+ digits"
    text = repr(value) if isinstance(value, str | int | float | None) else type(value).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def _optional_str(value: object) -> str | None:
    """A text column: strings as they are (lone surrogates replaced), scalars as text."""
    if value is None:
        return None
    if isinstance(value, str):
        return value if value.isascii() else _SURROGATES.sub("\ufffd", value)
    if isinstance(value, bool | int | float):
        return _clip(value, 100) if isinstance(value, int) else str(value)
    return None


def _text_of(obj: Mapping[str, Any]) -> str | None:
    """The words of a message: ``text`` (Text, Notice, typing preview) or ``noticeText``."""
    for key in ("text", "noticeText"):
        value = obj.get(key)
        if value is not None:
            return _optional_str(value)
    return None


def _sent_at(obj: Mapping[str, Any]) -> str | None:
    """UTC instant from ``timestampSeconds`` (milliseconds), ``utcTime``, else ``timestamp``."""
    for key in ("timestampSeconds", "utcTime"):
        value = obj.get(key)
        if type(value) is int and EPOCH_MS_FROM <= value < FAST_EPOCH_MS_TO:
            return from_epoch_ms(value)  # the usual shape, formatted without a datetime
        instant = parse_epoch(value)
        if instant is not None:
            return format_instant(instant)
    stamp = obj.get("timestamp")
    if isinstance(stamp, str):
        instant = parse_timestamp(stamp)
        if instant is not None:
            return format_instant(instant)
    return None


def parse_epoch(value: object) -> datetime | None:
    """Epoch milliseconds (``1389261492035``, ``"1389261492035L"``); small values are seconds."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)L?\s*", value)
        if not match:
            return None
        value = float(match.group(1))
    if not isinstance(value, int | float):
        return None
    try:
        seconds = value / 1000 if abs(value) >= EPOCH_MS_FROM else float(value)
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ]?(\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r"\s*(Z|[+-]\d{2}(?::?\d{2})?)?"
)


def parse_timestamp(text: str) -> datetime | None:
    """Parse every shape in gws-api.md §3.6 (glued, spaced, ``T``, offsets); None if hopeless."""
    cleaned = re.sub(r":\s+", ":", text.strip())
    match = _TIMESTAMP.fullmatch(cleaned)
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    zone = _zone(offset)
    if zone is None:
        return None
    try:
        local = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micros
        )
        return local.replace(tzinfo=zone).astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def _zone(offset: str | None) -> timezone | None:
    """A fixed zone from ``Z``, ``+hh``, ``+hhmm`` or ``+hh:mm`` (UTC if none); None if invalid."""
    if offset is None or offset == "Z":
        return UTC
    digits = offset[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
    if hours > 23 or minutes > 59:
        return None
    total = hours * 60 + minutes
    return timezone(timedelta(minutes=-total if offset[0] == "-" else total))
