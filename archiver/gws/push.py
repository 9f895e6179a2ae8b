"""Push mode: a Bayeux long-polling client on GWS notifications that turns them into poll hints.

Polling stays the source of truth; :class:`PushClient` only says "poll this session now". It
speaks with the account's own HTTP identity, the REST client's ``transport`` (Basic header,
JSESSIONID and ``BAYEUX_BROWSER`` cookies in a jar that keeps cookies of IP hosts), plus the
client's CSRF token when known, so one PushClient per account and never two on one jar.

Lifecycle: handshake → one batch ``[subscribe…, connect(advice.timeout=0)]`` → held connects,
exactly one outstanding, each with an HTTP timeout of the advised hold plus
``network_delay_s``. What ends a session and what follows:

- advice ``retry`` (or none given): wait ``interval``, connect again;
- advice ``handshake``, an unknown advice, a 401/402 error (any text), a CSRF 403 (after a REST
  GET refreshed the token), or no successful connect for longer than timeout + interval +
  maxInterval: handshake again, resubscribe;
- advice ``none``, or every channel refused: stop for good (poll-only), no more requests;
- an HTTP error or network failure: back off (``backoff_step_s`` more per failure, up to
  ``backoff_max_s``), connect again.

The owner hears about it through three callbacks: ``on_hint`` per SMS notification,
``on_subscribed`` whenever push becomes healthy (after every (re)subscribe, and after a failed
connect recovers; the owner then polls everything, since notifications may have been missed),
``on_down`` whenever it stops being healthy, and once more when push stops for good.

Interaction History (UCS) answers its requests on ``/v2/ucs/*`` channels: those notifications go
to ``on_history`` (never to hints; it must not raise), and :meth:`PushClient.wait_subscribed`
tells the requester when results can arrive. The channel list is the owner's
(``PushConfig.channels``), so one PushClient may serve hints, history results, or both; a
history-only owner passes no-op hint callbacks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog
from yarl import URL

from archiver.config import PushConfig
from archiver.errors import AuthError, GwsError, ProtocolError
from archiver.gws.bayeux import (
    CONNECT,
    HANDSHAKE,
    LONG_POLLING,
    NONE,
    REHANDSHAKE,
    RETRY,
    SUBSCRIBE,
    Advice,
    Notification,
    Outbox,
    Reply,
    Request,
    Response,
    read_response,
)
from archiver.gws.client import GwsClient
from archiver.gws.notifications import Hint, hint_for
from archiver.state import PushReport

__all__ = ["Hint", "PushClient", "PushStats"]

log = structlog.get_logger()

DISCONNECT_TIMEOUT_S = 1.0
HISTORY_CHANNELS = "/v2/ucs/"  # the prefix of the Interaction History channels
ENDPOINT = "notifications"  # the metrics label of push requests in GwsHost.requests


@dataclass(slots=True)
class PushStats:
    """Counters of one PushClient (exported as metrics)."""

    handshakes: int = 0  # successful handshakes, the first included
    rehandshakes: Counter[str] = field(default_factory=Counter)  # by cause
    connects: int = 0  # connect requests sent
    hints: int = 0  # SMS notifications turned into hints
    history: int = 0  # Interaction History notifications handed to on_history
    ignored: int = 0  # other notifications (devices, chats ...)
    failures: int = 0  # failed requests and unsuccessful replies


class PushClient:
    """One account's Bayeux session, kept alive until cancelled; see the module docstring."""

    def __init__(
        self,
        client: GwsClient,
        config: PushConfig,
        *,
        on_hint: Callable[[Hint], None],
        on_subscribed: Callable[[], None],
        on_down: Callable[[str], None],
        on_history: Callable[[Notification], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.client = client  # its login and CSRF token; its transport sends
        self.transport = client.transport
        self.config = config
        # Quoted once here, as aiohttp would on every request: the transport sends it as it is.
        self.url = str(URL(client.base_url + config.path))
        self.stats = PushStats()
        self._on_hint = on_hint
        self._on_subscribed = on_subscribed
        self._on_down = on_down
        self._on_history = on_history
        self._clock = clock
        self._sleep = sleep
        self._outbox = Outbox()
        self._advice = Advice()
        self._client_id: str | None = None
        self._connected = False  # the last connect succeeded (since the last handshake)
        self._subscribed: set[str] = set()
        self._to_subscribe: list[str] = []
        self._refused: set[str] = set()
        self._healthy = False
        self._came_up = asyncio.Event()  # set, then replaced, each time push becomes healthy
        self._failing = False  # failures since the last successful connect
        self._backoff_s = 0.0
        self._delay_s = 0.0  # wait this long before the next request
        self._last_contact = clock()
        self._warned_multiple_clients = False

    @property
    def healthy(self) -> bool:
        """Subscribed, and the last connect succeeded."""
        return self._healthy

    def subscribed(self, channel: str) -> bool:
        """True while healthy with a subscription that covers ``channel`` (a name or pattern)."""
        return self._healthy and any(_covers(s, channel) for s in self._subscribed)

    async def wait_subscribed(self, channel: str) -> None:
        """Return once :meth:`subscribed` holds for ``channel``; bound the wait with a timeout."""
        while not self.subscribed(channel):
            await self._came_up.wait()

    def report(self) -> PushReport:
        """The listener's state now, for health and metrics."""
        stats = self.stats
        return PushReport(
            account=self.client.account.username,
            up=self._healthy,
            handshakes=stats.handshakes,
            rehandshakes=dict(stats.rehandshakes),
            hints=stats.hints,
            ignored=stats.ignored,
            failures=stats.failures,
        )

    async def run(self) -> None:
        """Keep a Bayeux session until cancelled; returns only when push stops for good."""
        cause: str | None = None
        try:
            while await self._handshake(reestablish=cause is not None):
                cause = await self._keep_connected()
                if cause is None:
                    return
                self.stats.rehandshakes[cause] += 1
                log.info("push_rehandshake", cause=cause, account=self.client.account.username)
        finally:
            self._healthy = False  # nothing arrives any more: history requests must not wait
            await self._disconnect()

    async def _handshake(self, *, reestablish: bool) -> bool:
        """Handshake until it succeeds (True) or the server refuses for good (False)."""
        while True:
            # Stale advice must not outlive its session: an old "handshake" plus an advice-less
            # handshake reply would loop (cometd/cometd#722).
            self._advice = Advice()
            self._client_id = None
            self._connected = False
            self._subscribed.clear()
            self._to_subscribe = [c for c in self.config.channels if c not in self._refused]
            try:
                response = await self._exchange([self._outbox.handshake()], hold_s=0.0)
            except AuthError as exc:
                self._failed("handshake", str(exc))
                await self._refresh_login()
                continue
            except GwsError as exc:
                self._failed("handshake", str(exc))
                continue
            reply = response.reply_to(HANDSHAKE)
            if reply is None:
                self._failed("handshake", "no /meta/handshake reply")
                continue
            client_id = reply.fields.get("clientId")
            if reply.successful and isinstance(client_id, str) and client_id:
                return self._handshook(reply, client_id, reestablish=reestablish)
            self._advice = reply.advice or self._advice
            if self._advice.reconnect == NONE:
                self._stop(f"handshake refused: {reply.error or 'no error given'}")
                return False
            self._failed("handshake", reply.error or "handshake unsuccessful")

    def _handshook(self, reply: Reply, client_id: str, *, reestablish: bool) -> bool:
        types = reply.fields.get("supportedConnectionTypes")
        if isinstance(types, list) and LONG_POLLING not in types:
            self._stop(f"the server offers no long-polling: {types}")
            return False
        # Some servers put reconnect "handshake" on a successful handshake (cometd/cometd#2057);
        # this handshake has answered it.
        self._advice = dataclasses.replace(reply.advice or Advice(), reconnect=RETRY)
        self._client_id = client_id
        self._last_contact = self._clock()
        self.stats.handshakes += 1
        log.info(
            "push_handshake",
            account=self.client.account.username,
            reestablish=reestablish,
            timeout_s=self._advice.timeout_s,
        )
        return True

    async def _keep_connected(self) -> str | None:
        """Connect, again and again; return why to handshake again, or None to stop."""
        assert self._client_id is not None
        while True:
            if self._failing and self._unconnected_too_long():
                return "expired"
            batch = [self._outbox.subscribe(self._client_id, c) for c in self._to_subscribe]
            batch.append(self._outbox.connect(self._client_id, first=not self._connected))
            self.stats.connects += 1
            try:
                response = await self._exchange(batch, hold_s=self._advice.timeout_s)
            except AuthError as exc:
                self._failed("connect", str(exc))
                await self._refresh_login()
                return "csrf" if exc.status == 403 else "auth"
            except GwsError as exc:
                self._failed("connect", str(exc))
                continue
            lost = self._read_subscriptions(response.replies(SUBSCRIBE))
            reply = response.reply_to(CONNECT)
            if reply is None:
                self._failed("connect", "no /meta/connect reply")
                continue
            if reply.advice is not None:
                self._take_advice(reply.advice)
            reconnect = self._advice.reconnect
            if reconnect == NONE:
                self._stop(f"the server advised reconnect none: {reply.error or 'no error'}")
                return None
            cause = _rehandshake_cause(reply, reconnect, lost)
            if cause is not None:
                self._failed("connect", reply.error or f"advice reconnect {reconnect}")
                return cause
            if not reply.successful:
                self._failed("connect", reply.error or "connect unsuccessful")
                continue
            if not self._subscribed and not self._to_subscribe:
                self._stop("every channel was refused")
                return None
            self._connect_succeeded()

    def _read_subscriptions(self, replies: Sequence[Reply]) -> bool:
        """Record subscribe outcomes; True when one says the server does not know us."""
        lost = False
        for reply in replies:
            channel = str(reply.request["subscription"])
            if reply.successful:
                self._subscribed.add(channel)
            elif reply.unknown_client:
                lost = True
                continue
            else:
                self._refused.add(channel)
                log.warning(
                    "push_channel_refused",
                    channel=channel,
                    error=reply.error,
                    account=self.client.account.username,
                )
            if channel in self._to_subscribe:
                self._to_subscribe.remove(channel)
        return lost

    def _take_advice(self, advice: Advice) -> None:
        self._advice = advice
        if advice.multiple_clients and not self._warned_multiple_clients:
            self._warned_multiple_clients = True
            log.warning(
                "push_multiple_clients",
                problem="cookie not kept or shared: the server will not hold connects",
                interval_s=advice.interval_s,
                account=self.client.account.username,
            )

    def _connect_succeeded(self) -> None:
        self._connected = True
        self._last_contact = self._clock()
        self._backoff_s = 0.0
        self._failing = False
        self._delay_s = self._advice.interval_s
        if self._subscribed and not self._healthy:
            self._healthy = True
            log.info(
                "push_up",
                channels=sorted(self._subscribed),
                handshakes=self.stats.handshakes,
                account=self.client.account.username,
            )
            self._came_up.set()
            self._came_up = asyncio.Event()
            self._on_subscribed()

    def _failed(self, stage: str, error: str) -> None:
        """A request or reply failed: down if we were up, and wait longer before the next."""
        self.stats.failures += 1
        # Like CometD's own client: not connected any more, so the next connect asks to be
        # answered at once, and push is known healthy again without waiting out a hold.
        self._connected = False
        self._backoff_s = min(
            self._backoff_s + self.config.backoff_step_s, self.config.backoff_max_s
        )
        self._delay_s = self._advice.interval_s + self._backoff_s
        if self._healthy:
            self._healthy = False
            log.warning(
                "push_down", reason=error, stage=stage, account=self.client.account.username
            )
            self._on_down(error)
        elif not self._failing:
            log.warning(
                "push_failing", error=error, stage=stage, account=self.client.account.username
            )
        self._failing = True

    def _stop(self, reason: str) -> None:
        """Push is over for this run: no more requests, not even a disconnect."""
        self._healthy = False
        self._client_id = None
        log.warning("push_down", reason=reason, final=True, account=self.client.account.username)
        self._on_down(reason)

    def _unconnected_too_long(self) -> bool:
        unconnected_s = self._clock() - self._last_contact + self._delay_s
        return unconnected_s > self._advice.unconnected_limit_s

    async def _refresh_login(self) -> None:
        """A REST GET renews the session cookie and the CSRF token the next handshake needs."""
        try:
            await self.client.login()
        except GwsError as exc:
            log.debug("push_login_failed", error=str(exc), account=self.client.account.username)

    async def _exchange(self, batch: list[Request], *, hold_s: float) -> Response:
        """Wait out any delay, POST ``batch``, read the answer; hints fire here, in order."""
        if self._delay_s > 0:
            await self._sleep(self._delay_s)
            self._delay_s = 0.0
        response, received_at = await self._post(batch, hold_s=hold_s)
        for item in response.items:
            if isinstance(item, Notification):
                self._dispatch(item, received_at)
        return response

    def _dispatch(self, notification: Notification, received_at: float) -> None:
        """Hand a notification to on_history (UCS results) or on_hint (SMS), or count it ignored."""
        if notification.channel.startswith(HISTORY_CHANNELS):
            if self._on_history is None:
                self.stats.ignored += 1
            else:
                self.stats.history += 1
                self._on_history(notification)
            return
        try:
            hint = hint_for(notification, received_at)
        except Exception:  # a notification of any shape costs that notification only
            log.warning("push_event_unreadable", channel=str(notification.channel)[:200])
            hint = None
        if hint is None:
            self.stats.ignored += 1
        else:
            self.stats.hints += 1
            self._on_hint(hint)

    async def _post(self, batch: list[Request], *, hold_s: float) -> tuple[Response, float]:
        """One exchange through the account's transport; a reply of any shape is read safely."""
        answer = await self.transport.send(
            "POST",
            self.url,
            endpoint=ENDPOINT,
            headers={"Content-Type": "application/json", **self.client.csrf_headers()},
            data=orjson.dumps(batch),
            # The server may hold the request for the advised timeout: a shorter HTTP timeout
            # would abandon a connect the server still holds, and the events with it.
            total_timeout_s=hold_s + self.config.network_delay_s,
        )
        received_at = self._clock()
        try:
            return read_response(answer.payload, batch), received_at
        except ProtocolError as exc:
            raise ProtocolError(str(exc), url=self.url) from exc
        except Exception as exc:  # a reply of any shape is a protocol error, never a crash
            raise ProtocolError(f"unreadable Bayeux reply: {exc!r}", url=self.url) from exc

    async def _disconnect(self) -> None:
        """Best effort, bounded: tell the server we are gone (it expires us anyway)."""
        if self._client_id is None:
            return
        message = self._outbox.disconnect(self._client_id)
        self._client_id = None
        try:
            async with asyncio.timeout(DISCONNECT_TIMEOUT_S):
                await self._post([message], hold_s=0.0)
        except (GwsError, TimeoutError) as exc:
            log.debug("push_disconnect_failed", error=str(exc))


def _covers(subscription: str, channel: str) -> bool:
    """True if ``subscription`` names ``channel`` or matches it as a ``*``/``**`` pattern."""
    if subscription == channel:
        return True
    parent, _, last = subscription.rpartition("/")
    if last not in ("*", "**") or not channel.startswith(parent + "/"):
        return False
    below = channel[len(parent) + 1 :]
    return bool(below) and (last == "**" or "/" not in below)


def _rehandshake_cause(reply: Reply, reconnect: str, subscription_lost: bool) -> str | None:
    """Why this connect reply means handshaking again, or None when it does not."""
    if reply.unknown_client or subscription_lost:
        return "unknown_client"
    if reconnect == REHANDSHAKE:
        return "advice"
    if reconnect != RETRY:
        return "unknown_advice"
    return None
