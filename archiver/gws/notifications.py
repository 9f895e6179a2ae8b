"""GWS notifications read as poll hints: which SMS session to poll now.

A hint is an idempotent trigger, never data: nothing from a notification payload is stored.
GWS spells its keys several ways (``smssession``/``smsession``, ``…Uri``/``…Path``), so keys and
message types are matched case-insensitively and every documented spelling is tried.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from archiver.gws.bayeux import Notification

_SESSION_KEYS = ("smssession", "smsession")
_LOCATION_KEYS = ("smssessionuri", "smsessionuri", "smssessionpath", "smsessionpath")
_STATE_CHANGE = frozenset({"smssessionstatechangemessage", "smsessionstatechangemessage"})
_LOG_UPDATED = "messagelogupdated"
_COLLECTIONS = frozenset({"smssessions", "smsessions"})
_SESSION_ID = re.compile(r"[A-Za-z0-9._~-]{1,128}")


@dataclass(frozen=True, slots=True)
class Hint:
    """A notification said an SMS session changed; fired for every SMS notification received."""

    session_id: str | None  # None: "something changed, poll everything" (unparseable / unknown)
    state_changed: bool  # SMSsessionStateChangeMessage: also refresh the session list
    received_at: float  # time.monotonic() when the response carrying it arrived


def hint_for(notification: Notification, received_at: float) -> Hint | None:
    """The hint a notification gives, or None when it is not about SMS sessions."""
    data = notification.data
    fields = (
        {str(key).lower(): value for key, value in data.items()}
        if isinstance(data, Mapping)
        else {}
    )
    message_type = fields.get("messagetype")
    kind = message_type.lower() if isinstance(message_type, str) else ""
    if not _about_sms(notification.channel, kind, fields):
        return None
    state_changed = kind in _STATE_CHANGE
    session_id = _session_id(fields) if state_changed or kind == _LOG_UPDATED else None
    if session_id is None:
        # An SMS event we cannot pin to one session: the list refresh finds whatever changed.
        return Hint(None, True, received_at)
    return Hint(session_id, state_changed, received_at)


def _about_sms(channel: str, kind: str, fields: Mapping[str, object]) -> bool:
    # MessageLogUpdated is shared with chat, so the type alone does not say "SMS".
    return (
        "sms" in channel.lower()
        or "sms" in kind
        or any(key.startswith(_SESSION_KEYS) for key in fields)
    )


def _session_id(fields: Mapping[str, object]) -> str | None:
    """The first well-formed id: the resource's ``id``, else a URI's or path's last segment."""
    candidates: list[str] = []
    for key in _SESSION_KEYS:
        resource = fields.get(key)
        if isinstance(resource, Mapping) and isinstance(resource.get("id"), str | int):
            candidates.append(str(resource["id"]))
    for key in _LOCATION_KEYS:
        location = fields.get(key)
        if isinstance(location, str):
            path = location.split("?", 1)[0].split("#", 1)[0].rstrip("/")
            candidates.append(path.rsplit("/", 1)[-1])
    return next((found for found in candidates if _valid(found)), None)


def _valid(candidate: str) -> bool:
    return bool(_SESSION_ID.fullmatch(candidate)) and candidate.lower() not in _COLLECTIONS
