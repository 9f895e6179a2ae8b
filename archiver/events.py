"""Typed events: one per archived message, plus session lifecycle events.

Events are rows of the ``events`` table, written in the same transaction as the messages they
describe (a transactional outbox), and only handed to subscribers after that commit. Their JSON
form (also the webhook body) is ``{"id", "seq", "type", "session_id", "occurred_at", "data"}``.
A row's ``payload_json`` is the ``data``; it is built here (:func:`message_event_row`,
:func:`session_event_row`) and read back here (:func:`event_from_row`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, TypeVar

import orjson

if TYPE_CHECKING:
    from archiver.gws.models import Message, SmsSession

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


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class Text(MessageEvent):
    """Fires when a participant's text message is archived."""

    TYPE: ClassVar[str] = "Text"


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantJoined(MessageEvent):
    """Fires when a participant joined."""

    TYPE: ClassVar[str] = "ParticipantJoined"


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantLeft(MessageEvent):
    """Fires when a participant left."""

    TYPE: ClassVar[str] = "ParticipantLeft"


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantRejoined(MessageEvent):
    """Fires when a participant rejoined."""

    TYPE: ClassVar[str] = "ParticipantRejoined"


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class TypingStarted(MessageEvent):
    """Fires when typing began (text is a preview)."""

    TYPE: ClassVar[str] = "TypingStarted"


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class TypingStopped(MessageEvent):
    """Fires when typing stopped."""

    TYPE: ClassVar[str] = "TypingStopped"


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class PushUrl(MessageEvent):
    """Fires when a participant pushed a URL (in ``url``)."""

    TYPE: ClassVar[str] = "PushUrl"


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class Notice(MessageEvent):
    """Fires when a notice (in ``text``) is archived."""

    TYPE: ClassVar[str] = "Notice"


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class CustomNotice(MessageEvent):
    """Fires when a custom notice is archived."""

    TYPE: ClassVar[str] = "CustomNotice"


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class NicknameUpdated(MessageEvent):
    """Fires when a nickname changed."""

    TYPE: ClassVar[str] = "NicknameUpdated"


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class TranscriptSaveDone(MessageEvent):
    """Fires once per session when GWS reports its transcript saved."""

    TYPE: ClassVar[str] = "TranscriptSaveDone"


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


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class ViewStarted(SessionEvent):
    """Fires when a configured account starts to see the session (``account``, with its state).

    A session's first view comes with ``SessionStarted``; later ones are a transfer, a
    conference or consult partner, or a pick-up from a queue. ``view`` numbers the views.
    """

    TYPE: ClassVar[str] = "ViewStarted"
    view: int


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class ViewEnded(SessionEvent):
    """Fires when an account stops seeing the session: ``reason`` is ``revoked`` (it lost it,
    the conversation goes on elsewhere), ``completed`` (done for that account), ``gone`` (no
    longer in its list) or ``ended`` (the session ended)."""

    TYPE: ClassVar[str] = "ViewEnded"
    view: int
    reason: str


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SessionReconciled(SessionEvent):
    """Fires when the archived session was checked against Interaction History.

    ``status`` is ``verified``, ``filled``, ``different`` or ``unchecked``; ``filled`` and
    ``differing`` list message indices. Messages filled before ``SessionEnded`` also have their
    own message events; those filled after it are only in ``filled_messages`` (message event
    payloads), so no message event ever follows ``SessionEnded``.
    """

    TYPE: ClassVar[str] = "SessionReconciled"
    status: str
    history_messages: int | None
    filled: list[int]
    differing: list[int]
    filled_messages: list[dict[str, Any]]
    detail: str | None


def event_from_row(
    seq: int, event_id: str, type_name: str, session_id: str, occurred_at: str, payload: str
) -> Event:
    """Rebuild a typed event from its ``events`` row."""
    cls = EVENT_TYPES.get(type_name)
    if cls is None:
        raise ValueError(f"unknown event type {type_name!r} in the archive")
    data = orjson.loads(payload)
    return cls(seq=seq, event_id=event_id, session_id=session_id, occurred_at=occurred_at, **data)


class EventRow(NamedTuple):
    """One row of the ``events`` table, as the writer commits it."""

    seq: int
    event_id: str
    type: str
    session_id: str
    message_index: int | None
    occurred_at: str
    payload_json: str

    def typed(self) -> Event:
        """The typed event this row stores."""
        return event_from_row(
            self.seq, self.event_id, self.type, self.session_id, self.occurred_at, self.payload_json
        )


def message_event_row(
    seq: int, session_id: str, account: str, message: Message, archived_at: str
) -> EventRow:
    """The row of the event for a newly archived message (``Unknown`` for an undocumented type).

    Built as the row itself, not as a typed event first: this runs once per message. The
    payload's keys are exactly the MessageEvent fields (and Unknown's), so event_from_row reads it.
    """
    data = message_event_data(account, message)
    event_type = message.type if message.known_type else Unknown.TYPE
    return EventRow(
        seq,
        message_event_id(session_id, message.index),
        event_type,
        session_id,
        message.index,
        message.sent_at or archived_at,
        orjson.dumps(data).decode(),
    )


def message_event_data(account: str, message: Message) -> dict[str, Any]:
    """The ``data`` of a message's event (``Unknown``'s with ``gws_type`` and ``raw``)."""
    data: dict[str, Any] = {
        "account": account,
        "index": message.index,
        "text": message.text,
        "url": message.url,
        "from_type": message.from_type,
        "from_nickname": message.from_nickname,
        "from_participant_id": message.from_participant_id,
        "visibility": message.visibility,
        "sent_at": message.sent_at,
    }
    if not message.known_type:
        data["gws_type"] = message.type
        data["raw"] = orjson.loads(message.raw_json)
    return data


def session_event_row(
    cls: type[SessionEvent],
    seq: int,
    kind: str,
    occurred_at: str,
    account: str,
    session: SmsSession,
    **extra: Any,
) -> EventRow:
    """The row of a lifecycle event of ``session`` as now stored; ``kind`` ends its id."""
    event = cls(
        event_id=lifecycle_event_id(session.id, kind),
        seq=seq,
        session_id=session.id,
        occurred_at=occurred_at,
        account=account,
        state=session.state,
        participants=orjson.loads(session.participants_json),
        user_data=orjson.loads(session.user_data_json),
        **extra,
    )
    payload = orjson.dumps(event.data()).decode()
    return EventRow(seq, event.event_id, cls.TYPE, session.id, None, occurred_at, payload)
