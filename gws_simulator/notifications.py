"""The GWS notifications of the simulator's SMS sessions, published on `/v2/me/smssessions`.

Shapes from gws-api.md §4.5: `MessageLogUpdated`/`NewMessages` with the new message as the
messages endpoint renders it, `smssessionUri` and `smssessionPath`; and
`SMSsessionStateChangeMessage` with `notificationType` `StatusChange` (a state change, or a
new session), `ParticipantsUpdated` (a join or leave) or `PropertiesUpdated` (user data),
carrying the full `smssession` resource. Only the session's owner hears of it, and nothing is
rendered while none of that account's clients is subscribed.

In quirks mode about half the notifications spell the keys `smsession`, `smsessionUri` and
`smsessionPath` (§4.6). A message never carries the docs' `L` suffix on `timestampSeconds`
here: it would make the whole Bayeux response unparseable, not one message.
"""

from __future__ import annotations

import random

import orjson

from gws_simulator.bayeux import Bayeux
from gws_simulator.wire import Message
from gws_simulator.world import Session, World

SMS_CHANNEL = "/v2/me/smssessions"


class Notifier:
    """A `SessionObserver` that publishes each SMS session change to its owner's clients."""

    def __init__(self, world: World, bayeux: Bayeux, seed: int) -> None:
        self._world = world
        self._bayeux = bayeux
        self._quirks = random.Random(f"push-quirks/{seed}") if world.quirks else None

    def session_changed(self, session: Session, change: str) -> None:
        """Publish an `SMSsessionStateChangeMessage` with the session as it is now."""
        if self._bayeux.listening(session.account, SMS_CHANNEL):
            self._publish_state(session.account, change, self._world.session_json(session))

    def session_left(self, session: Session, account: str) -> None:
        """Tell the previous owner the session is over for it (Completed, nobody left)."""
        if self._bayeux.listening(account, SMS_CHANNEL):
            gone = self._world.session_dict(session)
            gone.update(state="Completed", capabilities=[], participants=[])
            self._publish_state(account, "StatusChange", orjson.dumps(gone))

    def message_added(self, session: Session, message: Message) -> None:
        """Publish a `MessageLogUpdated` carrying the new message."""
        if not self._bayeux.listening(session.account, SMS_CHANNEL):
            return
        body = message.body
        # `timestampSeconds` is always the last key, so a quirky `L` sits just before the brace.
        if body.endswith(b"L}"):
            body = body[:-2] + b"}"
        key = self._spelling()
        uri = f"{self._world.base_url}/api/v2/smssessions/{session.id}".encode()
        data = b"".join(
            (
                b'{"messageType":"MessageLogUpdated","notificationType":"NewMessages","',
                key,
                b'Uri":"',
                uri,
                b'","',
                key,
                b'Path":"/smssessions/',
                session.id.encode(),
                b'","messages":[',
                body,
                b"]}",
            )
        )
        self._bayeux.publish(session.account, SMS_CHANNEL, data)

    def _publish_state(self, account: str, change: str, resource: bytes) -> None:
        data = b"".join(
            (
                b'{"messageType":"SMSsessionStateChangeMessage","notificationType":"',
                change.encode(),
                b'","',
                self._spelling(),
                b'":',
                resource,
                b"}",
            )
        )
        self._bayeux.publish(account, SMS_CHANNEL, data)

    def _spelling(self) -> bytes:
        """`smssession`, or in quirks mode half the time the docs' `smsession`."""
        if self._quirks is not None and self._quirks.random() < 0.5:
            return b"smsession"
        return b"smssession"
