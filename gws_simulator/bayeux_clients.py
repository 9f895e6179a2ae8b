"""The Bayeux server's client table: sessions by clientId and account, their held connects.

A client lapses when no connect is held and its deadline (last reply + advised interval +
maxInterval) has passed; lapsed clients are dropped lazily, whenever the table is read, so no
sweeper task is needed. Held connects are counted per `BAYEUX_BROWSER` cookie, because CometD
lets one held connect per browser (`maxSessionsPerBrowser` 1).
"""

from __future__ import annotations

import asyncio
import enum
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gws_simulator.bayeux_wire import matching_names


class Wake(enum.Enum):
    """Why a held connect ends."""

    EVENTS = "events"
    TIMEOUT = "timeout"
    SUPERSEDED = "superseded"
    EXPIRED = "expired"
    DISCONNECTED = "disconnected"


@dataclass(eq=False, slots=True)
class Hold:
    """A connect waiting for events: its wake-up and the browser cookie it counts against."""

    waiter: asyncio.Future[Wake]
    browser: str


@dataclass(eq=False, slots=True)
class BayeuxClient:
    """One Bayeux session: its account, subscriptions, queued events and held connect."""

    id: str
    account: str
    deadline: float
    advised: dict[str, Any]
    subscriptions: set[str] = field(default_factory=set)
    queue: list[bytes] = field(default_factory=list)
    connected: bool = False
    hold: Hold | None = None
    matched: dict[str, bool] = field(default_factory=dict)

    def matches(self, channel: str) -> bool:
        """Whether a subscription covers `channel` (cached until the subscriptions change)."""
        known = self.matched.get(channel)
        if known is None:
            known = not self.subscriptions.isdisjoint(matching_names(channel))
            self.matched[channel] = known
        return known

    def subscribe(self, names: list[str], *, add: bool) -> None:
        """Add or remove subscriptions."""
        if add:
            self.subscriptions.update(names)
        else:
            self.subscriptions.difference_update(names)
        self.matched.clear()


class ClientTable:
    """Live clients by id and by account, and the connects they hold."""

    def __init__(self, counters: Counter[str], clock: Callable[[], float]) -> None:
        self._counters = counters
        self._clock = clock
        self._clients: dict[str, BayeuxClient] = {}
        self._by_account: dict[str, dict[str, BayeuxClient]] = {}
        self._held_browsers: Counter[str] = Counter()

    def add(self, account: str, deadline: float, advised: dict[str, Any]) -> BayeuxClient:
        """A new client with a fresh clientId of 128 random bits."""
        client = BayeuxClient(secrets.token_hex(16), account, deadline, advised)
        self._clients[client.id] = client
        self._by_account.setdefault(account, {})[client.id] = client
        return client

    def find(self, client_id: object, account: str) -> BayeuxClient | None:
        """The live client with this id under this account, else None."""
        client = self._clients.get(client_id) if isinstance(client_id, str) else None
        if client is None or client.account != account:
            return None
        if self._lapsed(client, self._clock()):
            self.remove(client, "clients_expired")
            return None
        return client

    def listening(self, account: str, channel: str) -> bool:
        """Whether a client of `account` is subscribed to `channel` (no expiry check: cheap)."""
        clients = self._by_account.get(account)
        return clients is not None and any(c.matches(channel) for c in clients.values())

    def live(self, account: str | None = None) -> list[BayeuxClient]:
        """The clients (of `account`) that have not lapsed; the lapsed are dropped."""
        if account is None:
            clients = list(self._clients.values())
        else:
            clients = list(self._by_account.get(account, {}).values())
        now = self._clock()
        alive = []
        for client in clients:
            if self._lapsed(client, now):
                self.remove(client, "clients_expired")
            else:
                alive.append(client)
        return alive

    def remove(self, client: BayeuxClient, counter: str) -> None:
        """Forget a client, counting why under `counter`."""
        self._clients.pop(client.id, None)
        account = self._by_account.get(client.account)
        if account is not None:
            account.pop(client.id, None)
            if not account:
                del self._by_account[client.account]
        self._counters[counter] += 1

    def browser_busy(self, browser: str) -> bool:
        """Whether a connect carrying this `BAYEUX_BROWSER` cookie is held already."""
        return browser in self._held_browsers

    async def hold(self, client: BayeuxClient, browser: str, timeout_s: float) -> Wake:
        """Hold the client's connect until events, a newer connect, an expiry or the timeout."""
        loop = asyncio.get_running_loop()
        hold = Hold(loop.create_future(), browser)
        client.hold = hold
        self._held_browsers[browser] += 1
        self._counters["connects_held"] += 1
        timer = loop.call_later(timeout_s, self._release, client, hold, Wake.TIMEOUT)
        try:
            return await hold.waiter
        finally:
            timer.cancel()
            # Cancelled while held (server shutdown): give the cookie back.
            self._release(client, hold, Wake.TIMEOUT)

    def wake(self, client: BayeuxClient, wake: Wake) -> None:
        """End the client's held connect, if any, with `wake`."""
        if client.hold is not None:
            self._release(client, client.hold, wake)

    def _release(self, client: BayeuxClient, hold: Hold, wake: Wake) -> None:
        # A late timer or cleanup must not end a newer hold of the same client.
        if client.hold is not hold:
            return
        client.hold = None
        self._held_browsers[hold.browser] -= 1
        if not self._held_browsers[hold.browser]:
            del self._held_browsers[hold.browser]
        if not hold.waiter.done():
            hold.waiter.set_result(wake)

    @staticmethod
    def _lapsed(client: BayeuxClient, now: float) -> bool:
        return client.hold is None and now > client.deadline
