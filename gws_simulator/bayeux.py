"""Bayeux 1.0 long-polling at `/api/v2/notifications`, with the CometD 3 semantics GWS runs.

A POST holds a JSON array of messages or one bare object, on the bare path or a suffixed one
(`/notifications/connect`, as the CometD clients send). It passes the same middlewares as the
REST routes: Basic or JSESSIONID identity, the request faults, and the CSRF check when
`--csrf` is on. GWS does not document whether CometD POSTs need the token; the simulator takes
the strict reading ("all POST requests"), so a client that sends the token whenever it knows
it works against either real behaviour.

Per client (a handshake; a clientId of 128 random bits, bound to the account):

- `/meta/connect` is answered at once unless it is alone in its POST, nothing is queued, the
  client was already connected and its `advice.timeout` is not 0 (CometD 3 holds neither the
  first connect nor one asking for timeout 0). Then it is held up to `timeout_s` (or the
  client's own `advice.timeout`) and answered early when events arrive. Holding needs the
  `BAYEUX_BROWSER` cookie set by the handshake, and no other held connect with the same
  cookie; otherwise the answer comes at once with the `multiple-clients` advice (2 s polling).
  A second connect of the client cancels the held one, whose request then fails with HTTP 408.
- Queued events precede the replies in every response but a handshake's, subscribe replies
  included. Advice rides on a connect reply only when it differs from the last one sent.
- A client that sends no connect within `max_interval_s` (plus the advised interval) of its
  last reply is dropped; its clientId then answers `402::Unknown client`, with the handshake
  advice on connect replies only, as CometD 3 does.

Decisions where the docs are silent: clients may not publish (`403::Publish denied`); the
handshake must offer `long-polling`; `/meta/...` subscriptions are forbidden; a clientId used
under another account is unknown; `/meta/disconnect` answers a held connect with advice
`reconnect: none`.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from gws_simulator.app import caller, json_response
from gws_simulator.bayeux_clients import BayeuxClient, ClientTable, Wake
from gws_simulator.bayeux_wire import (
    BROWSER_COOKIE,
    CONNECTION_TYPE,
    HANDSHAKE_ADVICE,
    MULTIPLE_CLIENTS_ADVICE,
    NONE_ADVICE,
    UNKNOWN_CLIENT,
    client_timeout_s,
    parse_messages,
    reply_to,
    subscription_error,
)
from gws_simulator.faults import FaultInjector
from gws_simulator.stats import Stats


@dataclass(slots=True)
class _Exchange:
    """One POST's context: its account, browser cookie, and whose queue its response empties."""

    account: str
    browser: str | None
    new_browser: str | None = None
    flush: BayeuxClient | None = None


class Bayeux:
    """The CometD server: clients, subscriptions, held connects and publishing.

    Counters in `Stats.bayeux`: `handshakes`; `notifications_published` (one per notification
    and subscribed client, before faults); `notifications_delivered` (events written to
    responses); `connects_held`; `connects_cancelled` (HTTP 408); `multiple_clients`;
    `clients_expired` (maxInterval); `clients_expired_forced` (`expire()`); `disconnects`.
    """

    def __init__(
        self,
        *,
        timeout_s: float,
        max_interval_s: float,
        stats: Stats,
        injector: FaultInjector,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if timeout_s < 0 or max_interval_s <= 0:
            raise ValueError("the Bayeux timeout must be >= 0 and max interval > 0")
        self.timeout_s = timeout_s
        self.max_interval_s = max_interval_s
        self._counters = stats.bayeux
        self._faults = stats.faults
        self._injector = injector
        self._clock = clock
        self._table = ClientTable(stats.bayeux, clock)
        self._subscribed = asyncio.Event()
        self._closing = False
        self._retry_advice: dict[str, Any] = {
            "reconnect": "retry",
            "interval": 0,
            "timeout": int(timeout_s * 1000),
        }

    def listening(self, account: str, channel: str) -> bool:
        """Whether some client of `account` is subscribed to `channel` (cheap; no expiry check)."""
        return self._table.listening(account, channel)

    async def wait_listening(self, account: str, channel: str) -> None:
        """Resolve once a client of `account` is subscribed to `channel`."""
        while not self.listening(account, channel):
            await self._subscribed.wait()

    def publish(self, account: str, channel: str, data: bytes) -> None:
        """Queue an event for each client of `account` subscribed to `channel`; wake its connect.

        `data` is the serialised `data` object. Each delivery may be dropped or duplicated by
        the `drop_notification` and `duplicate_notification` fault rates.
        """
        event = b'{"channel":"' + channel.encode() + b'","data":' + data + b"}"
        rates = self._injector.rates
        for client in self._table.live(account):
            if not client.matches(channel):
                continue
            self._counters["notifications_published"] += 1
            if self._injector.chance(rates.drop_notification):
                self._faults["drop_notification"] += 1
                continue
            client.queue.append(event)
            if self._injector.chance(rates.duplicate_notification):
                self._faults["duplicate_notification"] += 1
                client.queue.append(event)
            self._table.wake(client, Wake.EVENTS)

    def expire(self, account: str | None = None) -> int:
        """Forget every client (of `account`); a held or later connect gets 402 + handshake.

        Returns how many clients were forgotten.
        """
        doomed = self._table.live(account)
        for client in doomed:
            self._table.remove(client, "clients_expired_forced")
            self._table.wake(client, Wake.EXPIRED)
        return len(doomed)

    def clients(self) -> list[dict[str, Any]]:
        """The live clients: `clientId`, `account`, `subscriptions`, `queued`, `held`."""
        return [
            {
                "clientId": client.id,
                "account": client.account,
                "subscriptions": sorted(client.subscriptions),
                "queued": len(client.queue),
                "held": client.hold is not None,
            }
            for client in self._table.live()
        ]

    def release(self) -> None:
        """Answer every held connect now and hold no more (the server is shutting down)."""
        self._closing = True
        for client in self._table.live():
            self._table.wake(client, Wake.TIMEOUT)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Serve one Bayeux POST: its replies, preceded by the client's queued events."""
        messages = parse_messages(await request.read())
        if messages is None:
            return web.Response(status=400, text="Bad request")
        exchange = _Exchange(caller().username, request.cookies.get(BROWSER_COOKIE))
        replies: list[bytes] = []
        for message in messages:
            reply = await self._dispatch(message, exchange, alone=len(messages) == 1)
            if reply is None:
                self._counters["connects_cancelled"] += 1
                return web.Response(status=408)
            replies.append(orjson.dumps(reply))
        events: list[bytes] = []
        if exchange.flush is not None and exchange.flush.queue:
            events, exchange.flush.queue = exchange.flush.queue, []
            self._counters["notifications_delivered"] += len(events)
        response = json_response(b"[" + b",".join([*events, *replies]) + b"]")
        if exchange.new_browser is not None:
            response.set_cookie(BROWSER_COOKIE, exchange.new_browser, path="/", httponly=True)
        return response

    async def _dispatch(
        self, message: dict[str, Any], exchange: _Exchange, *, alone: bool
    ) -> dict[str, Any] | None:
        """The reply to one message; None when a newer connect cancelled this one."""
        channel = message["channel"]
        if channel == "/meta/handshake":
            return self._handshake(message, exchange)
        client = self._table.find(message.get("clientId"), exchange.account)
        if channel == "/meta/connect":
            return await self._connect(message, client, exchange, alone=alone)
        if client is not None:
            exchange.flush = client
        reply = reply_to(message)
        if channel in ("/meta/subscribe", "/meta/unsubscribe"):
            return self._subscribe(reply, message, client, add=channel == "/meta/subscribe")
        if channel == "/meta/disconnect":
            return self._disconnect(reply, client)
        reply["successful"] = False
        if channel.startswith("/meta/"):
            reply["error"] = f"400:{channel}:Unknown meta channel"
        else:
            reply["error"] = f"403:{channel}:Publish denied"
        return reply

    def _handshake(self, message: dict[str, Any], exchange: _Exchange) -> dict[str, Any]:
        reply = reply_to(message)
        reply.update(version="1.0", supportedConnectionTypes=[CONNECTION_TYPE])
        offered = message.get("supportedConnectionTypes")
        if not isinstance(offered, list) or CONNECTION_TYPE not in offered:
            reply.update(
                successful=False,
                error=f"301:{CONNECTION_TYPE}:Connection type not offered",
                advice=NONE_ADVICE,
            )
            return reply
        # A client that handshakes again leaves its old session behind: drop the lapsed.
        self._table.live(exchange.account)
        deadline = self._clock() + self.max_interval_s
        client = self._table.add(exchange.account, deadline, self._retry_advice)
        if exchange.browser is None:
            exchange.new_browser = secrets.token_hex(8)
        self._counters["handshakes"] += 1
        reply.update(clientId=client.id, successful=True, advice=self._retry_advice)
        return reply

    async def _connect(
        self,
        message: dict[str, Any],
        client: BayeuxClient | None,
        exchange: _Exchange,
        *,
        alone: bool,
    ) -> dict[str, Any] | None:
        reply = reply_to(message)
        if client is None:
            reply.update(successful=False, error=UNKNOWN_CLIENT, advice=HANDSHAKE_ADVICE)
            return reply
        reply["clientId"] = client.id
        if message.get("connectionType") != CONNECTION_TYPE:
            reply.update(successful=False, error=f"400:{CONNECTION_TYPE}:Unknown connection type")
            return reply
        # CometD 3 cancels the older held connect of the client (its request fails with 408).
        self._table.wake(client, Wake.SUPERSEDED)
        was_connected, client.connected = client.connected, True
        exchange.flush = client
        advice = self._retry_advice
        if alone and not client.queue and not self._closing:
            browser = exchange.browser
            timeout_s = client_timeout_s(message)
            if timeout_s is None:
                timeout_s = self.timeout_s
            if browser is None or self._table.browser_busy(browser):
                advice = MULTIPLE_CLIENTS_ADVICE
                self._counters["multiple_clients"] += 1
            elif timeout_s > 0 and was_connected:
                wake = await self._table.hold(client, browser, timeout_s)
                if wake is Wake.SUPERSEDED:
                    return None
                if wake is Wake.EXPIRED:
                    exchange.flush = None
                    reply.update(successful=False, error=UNKNOWN_CLIENT, advice=HANDSHAKE_ADVICE)
                    return reply
                if wake is Wake.DISCONNECTED:
                    advice = NONE_ADVICE
        reply["successful"] = True
        if advice != client.advised:
            reply["advice"] = advice
            client.advised = advice
        client.deadline = self._clock() + advice.get("interval", 0) / 1000 + self.max_interval_s
        return reply

    def _subscribe(
        self,
        reply: dict[str, Any],
        message: dict[str, Any],
        client: BayeuxClient | None,
        *,
        add: bool,
    ) -> dict[str, Any]:
        subscription = message.get("subscription")
        if client is not None:
            reply["clientId"] = client.id
        if subscription is not None:
            reply["subscription"] = subscription
        names = subscription if isinstance(subscription, list) else [subscription]
        error = UNKNOWN_CLIENT if client is None else subscription_error(names)
        if client is None or error is not None:
            reply.update(successful=False, error=error)
            return reply
        client.subscribe([name for name in names if isinstance(name, str)], add=add)
        if add:
            # Wake `wait_listening` callers, then arm a fresh event for the next subscribe.
            self._subscribed.set()
            self._subscribed = asyncio.Event()
        reply["successful"] = True
        return reply

    def _disconnect(self, reply: dict[str, Any], client: BayeuxClient | None) -> dict[str, Any]:
        if client is None:
            reply.update(successful=False, error=UNKNOWN_CLIENT)
            return reply
        self._table.remove(client, "disconnects")
        self._table.wake(client, Wake.DISCONNECTED)
        reply.update(clientId=client.id, successful=True)
        return reply


def add_bayeux_routes(app: web.Application, bayeux: Bayeux) -> None:
    """Serve `bayeux` at `/api/v2/notifications[/...]`; answer held connects on shutdown."""
    app.router.add_post("/api/v2/notifications", bayeux.handle)
    app.router.add_post("/api/v2/notifications/{meta:.*}", bayeux.handle)

    async def release(app: web.Application) -> None:
        bayeux.release()

    app.on_shutdown.append(release)
