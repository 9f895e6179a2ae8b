"""Bayeux 1.0 over long-polling, as the protocol: the messages we send and how an answer is read.

No I/O here. :class:`Outbox` builds requests with fresh ids; :func:`read_response` turns a
response body into :class:`Reply` (an answer to one of our ``/meta/*`` requests, matched by
channel *and* id) and :class:`Notification` (everything else), in the order the server wrote
them. Servers disagree on that order (Faye puts notifications after the connect reply, CometD
before it) and a delivered notification may carry an ``id`` equal to one of ours, so neither
position nor id alone identifies a reply.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from archiver.errors import ProtocolError

HANDSHAKE = "/meta/handshake"
CONNECT = "/meta/connect"
SUBSCRIBE = "/meta/subscribe"
DISCONNECT = "/meta/disconnect"
LONG_POLLING = "long-polling"

RETRY = "retry"
REHANDSHAKE = "handshake"
NONE = "none"

# CometD's server defaults, used until the server advises otherwise.
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_INTERVAL_S = 10.0

Request = dict[str, Any]  # one message we send


@dataclass(frozen=True, slots=True)
class Advice:
    """The server's advice; a newer one replaces the older whole, absent fields taking defaults."""

    reconnect: str = RETRY  # retry | handshake | none, or anything a server invents
    interval_s: float = 0.0  # wait at least this long before the next connect
    timeout_s: float = DEFAULT_TIMEOUT_S  # how long the server holds a connect
    max_interval_s: float = DEFAULT_MAX_INTERVAL_S  # the server forgets us this long after a reply
    multiple_clients: bool = False  # the server saw several sessions behind one browser cookie

    @classmethod
    def parse(cls, value: object) -> Advice | None:
        """The advice in a reply's ``advice`` field; None when there is none."""
        if not isinstance(value, Mapping):
            return None
        reconnect = value.get("reconnect", RETRY)
        return cls(
            reconnect=reconnect if isinstance(reconnect, str) else str(reconnect),
            # A negative interval would mean "do not retry"; no server is known to send one.
            interval_s=max(0.0, _seconds(value.get("interval"), 0.0)),
            timeout_s=max(0.0, _seconds(value.get("timeout"), DEFAULT_TIMEOUT_S)),
            max_interval_s=max(0.0, _seconds(value.get("maxInterval"), DEFAULT_MAX_INTERVAL_S)),
            multiple_clients=value.get("multiple-clients") is True,
        )

    @property
    def unconnected_limit_s(self) -> float:
        """After this long without a successful connect the server has surely dropped us."""
        return self.timeout_s + self.interval_s + self.max_interval_s


@dataclass(frozen=True, slots=True)
class Reply:
    """The server's answer to one ``/meta/*`` request of ours."""

    request: Mapping[str, Any]
    fields: Mapping[str, Any]

    @property
    def channel(self) -> str:
        """The meta channel (``/meta/connect`` ...)."""
        return str(self.request["channel"])

    @property
    def successful(self) -> bool:
        """True only for ``"successful": true``."""
        return self.fields.get("successful") is True

    @property
    def error(self) -> str:
        """The error string (``code:args:message``), or ``""``."""
        error = self.fields.get("error")
        return "" if error is None else str(error)

    @property
    def error_code(self) -> int | None:
        """The numeric code before the first colon of ``error``."""
        code, _, _ = self.error.partition(":")
        return int(code) if code.strip().isdigit() else None

    @property
    def unknown_client(self) -> bool:
        """A 401 or 402 error: the server does not know our clientId (whatever the text says)."""
        return not self.successful and self.error_code in (401, 402)

    @property
    def advice(self) -> Advice | None:
        """The advice this reply carries, if any."""
        return Advice.parse(self.fields.get("advice"))


@dataclass(frozen=True, slots=True)
class Notification:
    """A message on a non-meta channel (an event the server delivers to us)."""

    channel: str
    data: object


@dataclass(frozen=True, slots=True)
class Response:
    """One response body, read: replies and notifications in the server's order."""

    items: list[Reply | Notification]
    stray: int  # meta messages that answer nothing we sent in this request

    def reply_to(self, channel: str) -> Reply | None:
        """The (first) reply on ``channel``."""
        for item in self.items:
            if isinstance(item, Reply) and item.channel == channel:
                return item
        return None

    def replies(self, channel: str) -> list[Reply]:
        """Every reply on ``channel``, in order."""
        return [item for item in self.items if isinstance(item, Reply) and item.channel == channel]


class Outbox:
    """Builds requests; ids are unique per outbox so replies can be matched."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    def _message(self, channel: str, **fields: Any) -> Request:
        return {"channel": channel, "id": str(next(self._ids)), **fields}

    def handshake(self) -> Request:
        """A handshake offering long-polling only (GWS supports nothing else)."""
        return self._message(HANDSHAKE, version="1.0", supportedConnectionTypes=[LONG_POLLING])

    def subscribe(self, client_id: str, channel: str) -> Request:
        """Subscribe to ``channel`` (a name or a ``*``/``**`` pattern)."""
        return self._message(SUBSCRIBE, clientId=client_id, subscription=channel)

    def connect(self, client_id: str, *, first: bool) -> Request:
        """A connect; the first after a handshake asks to be answered at once.

        Without ``advice.timeout: 0`` Faye holds even the first connect for a full timeout, and
        CometD only answers it at once as a courtesy to old clients.
        """
        advice = {"advice": {"timeout": 0}} if first else {}
        return self._message(CONNECT, clientId=client_id, connectionType=LONG_POLLING, **advice)

    def disconnect(self, client_id: str) -> Request:
        """End the session (best effort; servers must not rely on it)."""
        return self._message(DISCONNECT, clientId=client_id)


def read_response(body: object, sent: Sequence[Mapping[str, Any]]) -> Response:
    """Split a response body into replies to ``sent`` and notifications, in the server's order.

    A bare object is accepted as a one-element array. A meta message is a reply when its channel
    and id match a request in ``sent``; one without an id answers the oldest unanswered request
    on its channel. Raises ProtocolError for a body that is neither an array nor an object.
    """
    if isinstance(body, Mapping):
        body = [body]
    if not isinstance(body, list):
        raise ProtocolError(f"Bayeux response is a {type(body).__name__}, not an array")
    pending = list(sent)
    items: list[Reply | Notification] = []
    stray = 0
    for element in body:
        channel = element.get("channel") if isinstance(element, Mapping) else None
        if not isinstance(channel, str):
            stray += 1
            continue
        if not channel.startswith("/meta/"):
            items.append(Notification(channel, element.get("data")))
            continue
        request = _answered(pending, channel, element.get("id"))
        if request is None:
            stray += 1
            continue
        pending.remove(request)
        items.append(Reply(request, element))
    return Response(items, stray)


def _answered(
    pending: list[Mapping[str, Any]], channel: str, reply_id: object
) -> Mapping[str, Any] | None:
    for request in pending:
        if request["channel"] == channel and (reply_id is None or str(reply_id) == request["id"]):
            return request
    return None


def _seconds(milliseconds: object, default_s: float) -> float:
    if isinstance(milliseconds, int | float) and not isinstance(milliseconds, bool):
        return float(milliseconds) / 1000.0
    return default_s
