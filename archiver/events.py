"""Typed events: one per archived message, plus session lifecycle events.

Events are rows of the ``events`` table, written in the same transaction as the messages they
describe (a transactional outbox), and only handed to subscribers after that commit. Their JSON
form (also the webhook body) is ``{"id", "seq", "type", "session_id", "occurred_at", "data"}``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import orjson

E = TypeVar("E", bound="Event")

EVENT_TYPES: dict[str, type[Event]] = {}
_DATA_FIELDS: dict[type, tuple[str, ...]] = {}  # per event class, its non-base field names


def _register(cls: type[E]) -> type[E]:
    EVENT_TYPES[cls.TYPE] = cls
    return cls


def message_event_id(session_id: str, index: int) -> str:
    """The deterministic id of the event for message ``index`` of a session."""
    return f"evt_{session_id}_{index}"


def lifecycle_event_id(session_id: str, kind: str) -> str:
    """The deterministic id of a lifecycle event (``started``, ``ended``, ``updated_3``)."""
    return f"evt_{session_id}_{kind}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Something that happened to an archived session; ``seq`` is its place in the archive."""

    TYPE: ClassVar[str] = ""
    BASE_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"event_id", "seq", "session_id", "occurred_at"}
    )

    event_id: str
    seq: int
    session_id: str
    occurred_at: str

    @property
    def type(self) -> str:
        """The event's type name, as in the ``type`` column and the JSON form."""
        return self.TYPE

    def data(self) -> dict[str, Any]:
        """The type-specific fields, as stored in ``payload_json``."""
        names = _DATA_FIELDS.get(type(self))
        if names is None:
            fields = dataclasses.fields(self)
            names = tuple(f.name for f in fields if f.name not in self.BASE_FIELDS)
            _DATA_FIELDS[type(self)] = names
        return {name: getattr(self, name) for name in names}

    def to_json(self) -> dict[str, Any]:
        """The public JSON form of this event."""
        return {
            "id": self.event_id,
            "seq": self.seq,
            "type": self.TYPE,
            "session_id": self.session_id,
            "occurred_at": self.occurred_at,
            "data": self.data(),
        }

    def to_bytes(self) -> bytes:
        """The JSON form, encoded (the webhook body)."""
        return orjson.dumps(self.to_json())


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageEvent(Event):
    """Base of the events that describe one archived message."""

    account: str
    index: int
    text: str | None = None
    url: str | None = None
    from_type: str | None = None
    from_nickname: str | None = None
    from_participant_id: str | None = None
    visibility: str | None = None
    sent_at: str | None = None


def _message_event(type_name: str, doc: str) -> type[MessageEvent]:
    namespace = {"TYPE": type_name, "__doc__": doc, "__module__": __name__}
    cls = type(type_name, (MessageEvent,), namespace)
    return _register(dataclass(frozen=True, slots=True, kw_only=True)(cls))


Text = _message_event("Text", "Fires when a participant's text message is archived.")
ParticipantJoined = _message_event("ParticipantJoined", "Fires when a participant joined.")
ParticipantLeft = _message_event("ParticipantLeft", "Fires when a participant left.")
ParticipantRejoined = _message_event("ParticipantRejoined", "Fires when a participant rejoined.")
TypingStarted = _message_event("TypingStarted", "Fires when typing began (text is a preview).")
TypingStopped = _message_event("TypingStopped", "Fires when typing stopped.")
PushUrl = _message_event("PushUrl", "Fires when a participant pushed a URL (in ``url``).")
Notice = _message_event("Notice", "Fires when a notice (in ``text``) is archived.")
CustomNotice = _message_event("CustomNotice", "Fires when a custom notice is archived.")
NicknameUpdated = _message_event("NicknameUpdated", "Fires when a nickname changed.")
TranscriptSaveDone = _message_event(
    "TranscriptSaveDone", "Fires once per session when GWS reports its transcript saved."
)


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class Unknown(MessageEvent):
    """Fires for a message of a type GWS did not document; ``raw`` holds it whole."""

    TYPE: ClassVar[str] = "Unknown"
    gws_type: str
    raw: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionEvent(Event):
    """Base of the lifecycle events; fields are the session as GWS last listed it."""

    account: str
    state: str | None
    participants: list[Any]
    user_data: dict[str, Any]


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SessionStarted(SessionEvent):
    """Fires once per session, when the archiver first sees it."""

    TYPE: ClassVar[str] = "SessionStarted"


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SessionUpdated(SessionEvent):
    """Fires when a session's state, participants or user data changed (``changed`` says which)."""

    TYPE: ClassVar[str] = "SessionUpdated"
    changed: list[str]


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SessionEnded(SessionEvent):
    """Fires once per session, after its last drain (``reason`` says why it ended)."""

    TYPE: ClassVar[str] = "SessionEnded"
    reason: str


def event_from_row(
    seq: int, event_id: str, type_name: str, session_id: str, occurred_at: str, payload: str
) -> Event:
    """Rebuild a typed event from its ``events`` row."""
    cls = EVENT_TYPES.get(type_name)
    if cls is None:
        raise ValueError(f"unknown event type {type_name!r} in the archive")
    data = orjson.loads(payload)
    return cls(seq=seq, event_id=event_id, session_id=session_id, occurred_at=occurred_at, **data)
