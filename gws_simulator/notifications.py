"""The GWS notifications of the simulator's SMS sessions, published on `/v2/me/smssessions`.

Shapes from gws-api.md §4.5: `MessageLogUpdated`/`NewMessages` with the new message as the
messages endpoint renders it, `smssessionUri` and `smssessionPath`; and
`SMSsessionStateChangeMessage` with `notificationType` `StatusChange` (a state change, or a
new session), `ParticipantsUpdated` (a join or leave) or `PropertiesUpdated` (user data),
carrying the full `smssession` resource. Every account with a listed view hears of the
session's changes and messages, each seeing the resource as its own view shows it; a view's
own state change (opened, Accepted, Left, Completed, Revoked) goes to its account alone, and
a Revoked view hears nothing after it. Nothing is rendered for an account none of whose
clients is subscribed.

In quirks mode about half the notifications spell the keys `smsession`, `smsessionUri` and
`smsessionPath` (§4.6). A message never carries the docs' `L` suffix on `timestampSeconds`
here: it would make the whole Bayeux response unparseable, not one message.
"""

from __future__ import annotations

import random

from gws_simulator.bayeux import Bayeux
from gws_simulator.sessions import Session, View
from gws_simulator.wire import Message, without_long_suffix
from gws_simulator.world import World

SMS_CHANNEL = "/v2/me/smssessions"


class Notifier:
    """A `SessionObserver` that publishes each SMS session change to its viewers' clients."""

    def __init__(self, world: World, bayeux: Bayeux, seed: int) -> None:
        self._world = world
        self._bayeux = bayeux
        self._quirks = random.Random(f"push-quirks/{seed}") if world.quirks else None

    def session_changed(self, session: Session, change: str, visibility: str = "All") -> None:
        """Publish an `SMSsessionStateChangeMessage` to each viewer, with its view of it.

        A change only supervisors may see (a silent supervisor's join) goes to them alone.
        """
        for view in self._world.audience(session):
            if view.sees(visibility) and self._bayeux.listening(view.account, SMS_CHANNEL):
                body = self._world.session_json(session, view)
                self._publish_state(view.account, change, body)

    def view_changed(self, session: Session, view: View) -> None:
        """Publish a `StatusChange` with the view as it is now, to its account only."""
        if self._bayeux.listening(view.account, SMS_CHANNEL):
            body = self._world.session_json(session, view)
            self._publish_state(view.account, "StatusChange", body)

    def message_added(self, session: Session, message: Message) -> None:
        """Publish a `MessageLogUpdated` carrying the new message to each viewer."""
        if not any(self._bayeux.listening(account, SMS_CHANNEL) for account in session.views):
            return
        accounts = [
            view.account
            for view in self._world.audience(session)
            if self._bayeux.listening(view.account, SMS_CHANNEL)
        ]
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
                without_long_suffix(message.body),
                b"]}",
            )
        )
        for account in accounts:
            self._bayeux.publish(account, SMS_CHANNEL, data)

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
