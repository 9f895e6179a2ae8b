"""JSON wire forms of the simulator's resources: messages, sessions, users, timestamps.

Every message is serialised once, when it is created, and its bytes are kept; a messages
response is the join of those slices. In doc-quirks mode some messages are rendered the way
the Genesys documentation prints them (gws-api.md §3.6, §4.6): glued or ISO timestamps,
`timestampSeconds` with a Java `L` suffix (invalid JSON, as in the docs) and `TypingStopping`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

import orjson

JSON_CONTENT_TYPE = "application/json"


@dataclass(slots=True)
class Participant:
    """A member of an SMS session as GWS lists it in `participants` and `from`.

    A supervisor has a `visibility` (`Supervisors` when monitoring silently, `Agents` when
    coaching, `All` after barging in); nobody else has one. An agent who is a GWS user carries
    its user's `path` (`/users/{id}`), as newer GWS samples show.
    """

    type: str
    nickname: str
    participant_id: str
    visibility: str | None = None
    user_id: str | None = None

    def to_json(self) -> dict[str, str]:
        """The `{type, nickname, participantId}` object of the wire form (plus `visibility`)."""
        member = {"type": self.type, "nickname": self.nickname}
        member["participantId"] = self.participant_id
        if self.visibility is not None:
            member["visibility"] = self.visibility
        if self.user_id is not None:
            member["path"] = f"/users/{self.user_id}"
        return member


@dataclass(slots=True)
class Message:
    """One transcript entry; `body` holds its serialised JSON, rendered once at creation."""

    session_id: str
    account: str
    index: int
    type: str
    sender: Participant
    visibility: str
    created_ms: int
    text: str | None = None
    url: str | None = None
    notice_text: str | None = None
    body: bytes = b""
    poison: str | None = None  # the hostile catalogue entry served instead, if any
    expect: str | None = None  # what a correct archiver does with the poison
    claims: int | None = None  # the index a `conflict` poison claims

    def words(self) -> str | None:
        """The words the message carries: `text`, else `noticeText`, else `url` (PushUrl)."""
        if self.text is not None:
            return self.text
        if self.notice_text is not None:
            return self.notice_text
        return self.url

    def truth_record(self) -> dict[str, Any]:
        """The truth-file object for this message (DESIGN.md `--truth`, plus any poison).

        A poison record adds `poison`, `expect` and `slot` (its place in the log, as `index`),
        and `claims` for a conflict (see `hostile.py`).
        """
        record = {
            "session_id": self.session_id,
            "account": self.account,
            "index": self.index,
            "type": self.type,
            "text": self.words(),
            "visibility": self.visibility,
            "created_at": iso_utc(self.created_ms),
        }
        if self.poison is not None:
            record["poison"] = self.poison
            record["expect"] = self.expect
            record["slot"] = self.index
            if self.claims is not None:
                record["claims"] = self.claims
        return record


def iso_utc(epoch_ms: int) -> str:
    """UTC ISO-8601 with milliseconds and `Z`, e.g. `2026-01-02T03:04:05.678Z`."""
    return f"{_iso_second(epoch_ms // 1000)}.{epoch_ms % 1000:03d}Z"


# Formatting a date costs more than everything else in a message; every message of one second
# shares the same text up to the milliseconds, so that part is formatted once per second.
@lru_cache(maxsize=256)
def _iso_second(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def local_time(epoch_ms: int, utc_offset_minutes: int | None) -> datetime:
    """The instant in the configured offset, or in the machine's local zone when None."""
    instant = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    if utc_offset_minutes is None:
        return instant.astimezone()
    return instant.astimezone(timezone(timedelta(minutes=utc_offset_minutes)))


def format_timestamp(epoch_ms: int, utc_offset_minutes: int | None, shape: int = 0) -> str:
    """GWS `timestamp`: shape 0 is the documented `yyyy-MM-dd HH:mm:ss.SSS+hhmm`.

    Shapes 1-3 are the documented mangled forms used in quirks mode: date and time glued,
    glued with spaces after the colons, and ISO with a `T`.
    """
    seconds, offset = _local_second(epoch_ms // 1000, utc_offset_minutes, shape)
    return f"{seconds}.{epoch_ms % 1000:03d}{offset}"


@lru_cache(maxsize=1024)
def _local_second(epoch_s: int, utc_offset_minutes: int | None, shape: int) -> tuple[str, str]:
    """`format_timestamp` up to the seconds, and the offset, for one second."""
    moment = local_time(epoch_s * 1000, utc_offset_minutes)
    date = moment.strftime("%Y-%m-%d")
    offset = moment.strftime("%z")
    if shape == 1:
        return f"{date}{moment:%H:%M:%S}", offset
    if shape == 2:
        return f"{date}{moment:%H: %M: %S}", offset
    if shape == 3:
        return f"{date}T{moment:%H:%M:%S}", offset
    return f"{date} {moment:%H:%M:%S}", offset


def render_message(
    message: Message, utc_offset_minutes: int | None, quirks: random.Random | None = None
) -> bytes:
    """Serialise a message; with a `quirks` RNG, about half get each documented oddity."""
    msg_type = message.type
    shape = 0
    long_suffix = False
    if quirks is not None:
        if msg_type == "TypingStopped" and quirks.random() < 0.5:
            msg_type = "TypingStopping"
        shape = quirks.choice((0, 1, 2, 3))
        long_suffix = quirks.random() < 0.5
    wire: dict[str, Any] = {
        "index": message.index,
        "type": msg_type,
        "from": message.sender.to_json(),
    }
    if message.text is not None:
        wire["text"] = message.text
    if message.url is not None:
        wire["url"] = message.url
    if message.notice_text is not None:
        wire["noticeText"] = message.notice_text
    wire["visibility"] = message.visibility
    wire["timestamp"] = format_timestamp(message.created_ms, utc_offset_minutes, shape)
    wire["timestampSeconds"] = message.created_ms
    body = compact(orjson.dumps(wire))
    if long_suffix:
        millis = str(message.created_ms).encode()
        body = body.replace(b'"timestampSeconds":' + millis, b'"timestampSeconds":' + millis + b"L")
    return body


def without_long_suffix(body: bytes) -> bytes:
    """A message body fit for a notification: a quirky `L` after `timestampSeconds` removed.

    `timestampSeconds` is always the last key, so the `L` sits just before the closing brace;
    inside a Bayeux response it would make the whole response unparseable, not one message.
    """
    return body[:-2] + b"}" if body.endswith(b"L}") else body


def compact(body: bytes) -> bytes:
    """An exact-size copy: orjson's output keeps a 4 KiB buffer, too much to keep per message."""
    return memoryview(body).tobytes()


def envelope(key: str, items: list[bytes]) -> bytes:
    """`{"statusCode":0,"<key>":[...]}` built from pre-serialised items."""
    return b'{"statusCode":0,"' + key.encode() + b'":[' + b",".join(items) + b"]}"


def status_body(status_code: int, status_message: str | None = None) -> bytes:
    """A bare status reply; non-zero codes carry `statusMessage` and nothing else."""
    if status_code == 0:
        return b'{"statusCode":0}'
    return orjson.dumps({"statusCode": status_code, "statusMessage": status_message or ""})
