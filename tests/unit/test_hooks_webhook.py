"""Webhooks: Standard Webhooks signatures (checked by the official package), answers, retries."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks.webhooks
from aiohttp import web
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from archiver.config import HooksConfig, Secret, WebhookHook, webhook_key
from archiver.events import Text
from archiver.hooks.retry import MAX_RETRY_AFTER_S
from archiver.hooks.webhook import WebhookSink, sign
from archiver.retry_after import parse_retry_after
from archiver.store.deliveries import DeliveryStore
from tests.support import wait_for
from tests.support.hooks import (
    FAST_RETRY,
    OTHER_SECRET,
    SECRET,
    Answer,
    EventSource,
    Received,
    Receiver,
    deliveries,
    dispatching,
    rows,
)

pytest_plugins = ["tests.support.hooks"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The Standard Webhooks specification's published test vector.
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

EVENT = Text(
    event_id="evt_S1_1",
    seq=7,
    session_id="S1",
    occurred_at="2024-03-01T10:00:00.000Z",
    account="agent1",
    index=1,
    text="hello",
)


def webhook(url: str, *secrets: str, **options: Any) -> WebhookHook:
    return WebhookHook(
        name="receiver",
        url=url,
        secrets=tuple(Secret(s) for s in secrets or (SECRET,)),
        **(FAST_RETRY | options),
    )


def test_signature_matches_the_specification_vector() -> None:
    """Our signer reproduces the spec's fixed vector, as the official package's signer does."""
    ours = sign([webhook_key(SECRET)], VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY)
    official = Webhook(SECRET).sign(
        VECTOR_ID, datetime.fromtimestamp(VECTOR_TIMESTAMP, UTC), VECTOR_BODY.decode()
    )
    assert ours == official == VECTOR_SIGNATURE


def test_official_verifier_accepts_the_vector_signed_by_us(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The official verifier, its clock set to the vector's time, accepts our headers."""

    class VectorTime(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> VectorTime:
            return cls.fromtimestamp(VECTOR_TIMESTAMP + 30, tz)

    monkeypatch.setattr(standardwebhooks.webhooks, "datetime", VectorTime)
    headers = {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": sign([webhook_key(SECRET)], VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY),
    }
    assert Webhook(SECRET).verify(VECTOR_BODY, headers) == {"test": 2432232314}


def test_rotated_secrets_each_verify_alone() -> None:
    """Signed with two secrets, a request verifies with either one, and not with a third."""
    sink = WebhookSink(webhook("http://127.0.0.1:9/hook", OTHER_SECRET, SECRET))
    body = EVENT.to_bytes()
    headers = sink.headers(EVENT, body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(SECRET).verify(body, headers)
    Webhook(OTHER_SECRET).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "QUJD" * 8).verify(body, headers)


def test_every_attempt_is_signed_afresh_with_the_same_id() -> None:
    """Two attempts of one event: same webhook-id, own timestamps, both verifiable."""
    now = time.time()
    instants = iter([now - 60, now])
    sink = WebhookSink(webhook("http://127.0.0.1:9/hook"), clock=lambda: next(instants))
    body = EVENT.to_bytes()
    first, second = sink.headers(EVENT, body), sink.headers(EVENT, body)
    assert first["webhook-id"] == second["webhook-id"] == EVENT.event_id
    assert int(second["webhook-timestamp"]) - int(first["webhook-timestamp"]) == 60
    assert first["webhook-signature"] != second["webhook-signature"]
    for headers in (first, second):
        assert Webhook(SECRET).verify(body, headers)["id"] == EVENT.event_id


def test_retry_after_reads_seconds_and_http_dates() -> None:
    """Retry-After in seconds or as an HTTP date becomes a wait; nonsense is ignored."""
    now = 1_700_000_000.0
    later = format_datetime(datetime.fromtimestamp(now + 90, UTC), usegmt=True)
    assert parse_retry_after("7", cap_s=MAX_RETRY_AFTER_S, now=now) == 7.0
    assert parse_retry_after(later, cap_s=MAX_RETRY_AFTER_S, now=now) == 90.0
    assert parse_retry_after("soon", cap_s=MAX_RETRY_AFTER_S, now=now) is None
    assert parse_retry_after(None, cap_s=MAX_RETRY_AFTER_S, now=now) is None


async def test_a_receivers_retry_after_is_capped_at_a_day(receiver: Receiver) -> None:
    """A receiver asking for ten days' rest gets at most a day (MAX_RETRY_AFTER_S)."""
    receiver.respond = lambda request: Answer(429, headers={"Retry-After": str(10 * 86_400)})
    async with WebhookSink(webhook(receiver.url)) as sink:
        outcome = await sink.deliver(EVENT)
    assert (outcome.ok, outcome.retry_after_s) == (False, MAX_RETRY_AFTER_S)


@contextlib.asynccontextmanager
async def serving(handler: Handler, keepalive_timeout: float = 75.0) -> AsyncIterator[int]:
    """An aiohttp server on 127.0.0.1 answering POST /hook with ``handler``; yields its port."""
    app = web.Application()
    app.router.add_post("/hook", handler)
    runner = web.AppRunner(
        app, access_log=None, shutdown_timeout=0.5, keepalive_timeout=keepalive_timeout
    )
    await runner.setup()
    sock = socket.create_server(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    try:
        yield sock.getsockname()[1]
    finally:
        await runner.cleanup()


async def test_an_answer_that_never_ends_is_not_read_to_its_end() -> None:
    """A receiver answering 200 with an endless body: delivered, its body not read on."""

    async def endless(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse()
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            while True:
                await response.write(b"x" * 65_536)

    async with serving(endless) as port:
        url = f"http://127.0.0.1:{port}/hook"
        async with WebhookSink(webhook(url, timeout_s=30.0)) as sink:
            outcome = await sink.deliver(EVENT)
    assert outcome.ok, outcome


async def test_attempts_share_a_kept_alive_connection_and_credentials_stay_out_of_host() -> None:
    """Twenty POSTs over one connection; the URL's user info becomes Basic auth, not Host."""
    seen: list[tuple[object, str, str, str, bool]] = []

    async def record(request: web.Request) -> web.Response:
        body = await request.read()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        verified = Webhook(SECRET).verify(body, dict(request.headers))["id"] == EVENT.event_id
        seen.append(
            (peer, request.host, request.headers["Authorization"], request.query_string, verified)
        )
        return web.Response(status=204)

    async with serving(record) as port:
        url = f"http://ops:pa%20ss@127.0.0.1:{port}/hook?token=t1"
        async with WebhookSink(webhook(url)) as sink:
            outcomes = [await sink.deliver(EVENT) for _ in range(20)]
    assert all(outcome.ok for outcome in outcomes)
    assert len({peer for peer, *_ in seen}) == 1
    basic = "Basic " + base64.b64encode(b"ops:pa ss").decode()
    assert {tuple(rest) for _, *rest in seen} == {(f"127.0.0.1:{port}", basic, "token=t1", True)}


async def test_a_connection_the_receiver_closed_while_idle_is_replaced() -> None:
    """A receiver dropping idle connections after 0.1 s: the next event goes on a new one."""
    peers: list[object] = []

    async def record(request: web.Request) -> web.Response:
        await request.read()
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        return web.Response(status=204)

    async with (
        serving(record, keepalive_timeout=0.1) as port,
        WebhookSink(webhook(f"http://127.0.0.1:{port}/hook")) as sink,
    ):
        first = await sink.deliver(EVENT)
        assert sink._pool is not None
        idle = list(sink._pool._idle)
        assert idle  # the first connection was kept for the next event
        await wait_for(lambda: all(connection.closed for connection in idle))
        second = await sink.deliver(EVENT)
    assert first.ok
    assert second.ok
    assert len(set(peers)) == 2


async def test_an_event_id_that_cannot_be_a_header_fails_the_attempt(receiver: Receiver) -> None:
    """An id with a line break is never sent (it would split the request); the outcome says so."""
    broken = dataclasses.replace(EVENT, event_id="evt_S1\r\nX-Injected: 1")
    async with WebhookSink(webhook(receiver.url)) as sink:
        outcome = await sink.deliver(broken)
    assert not outcome.ok
    assert "line break" in (outcome.error or "")
    assert receiver.requests == []


def subscribed(receiver: Receiver, **options: Any) -> HooksConfig:
    """One webhook subscriber, named ``receiver``, posting to ``receiver``."""
    return HooksConfig(webhooks=(webhook(receiver.url, **options),))


def disabled(path: Path) -> list[tuple[Any, ...]]:
    return rows(path, "SELECT name, disabled_reason FROM hook_subscribers WHERE disabled_at")


async def test_events_arrive_signed_with_event_json(
    source: EventSource, receiver: Receiver
) -> None:
    """Each event is POSTed once, verifiable, its body the event's JSON, webhook-id its id."""
    async with dispatching(source, subscribed(receiver)):
        events = await source.add("S1", 3)
        await wait_for(lambda: len(receiver.requests) == len(events), timeout_s=10)
    assert [r.body for r in receiver.requests] == [e.to_json() for e in events]
    assert all(r.verified and r.webhook_id == r.body["id"] for r in receiver.requests)


async def test_new_subscriber_starts_after_existing_events(
    source: EventSource, receiver: Receiver
) -> None:
    """A subscriber configured on a busy archive gets the events committed from then on."""
    await source.add("S1", 3)
    async with dispatching(source, subscribed(receiver)):
        later = await source.add("S1", 2)
        await wait_for(lambda: len(receiver.delivered()) == 2, timeout_s=10)
    assert [r.body["id"] for r in receiver.delivered()] == [e.event_id for e in later]


async def test_redirect_is_a_failure_and_is_not_followed(
    source: EventSource, receiver: Receiver
) -> None:
    """A 3xx answer fails the attempt; the Location is never fetched; the retry succeeds."""

    def respond(request: Received) -> Answer:
        if not receiver.requests:
            return Answer(302, headers={"Location": receiver.url + "-elsewhere"})
        return Answer(200)

    receiver.respond = respond
    async with dispatching(source, subscribed(receiver)):
        started, _ = await source.add("S1", 1)
        await wait_for(lambda: len(receiver.delivered()) == 2, timeout_s=10)
    assert [(r.path, r.status) for r in receiver.requests] == [
        ("/hook", 302),
        ("/hook", 200),
        ("/hook", 200),
    ]
    assert receiver.requests[0].webhook_id == receiver.requests[1].webhook_id == started.event_id


async def test_retry_after_is_honoured(source: EventSource, receiver: Receiver) -> None:
    """A 429 with Retry-After: 1 delays that event's next attempt by at least a second."""
    seen: set[str] = set()

    def respond(request: Received) -> Answer:
        if request.webhook_id not in seen:
            seen.add(request.webhook_id)
            return Answer(429, headers={"Retry-After": "1"})
        return Answer(200)

    receiver.respond = respond
    async with dispatching(source, subscribed(receiver)):
        events = await source.add("S1", 1)
        await wait_for(lambda: len(receiver.delivered()) == len(events), timeout_s=10)
    for event in events:
        first, second = [r for r in receiver.requests if r.webhook_id == event.event_id]
        assert (first.status, second.status) == (429, 200)
        assert second.arrived - first.arrived >= 0.95


async def test_gone_disables_the_endpoint_until_enabled(
    source: EventSource, receiver: Receiver
) -> None:
    """410 disables the subscriber: nothing more is sent until it is enabled, then all is."""
    receiver.respond = lambda request: Answer(410)
    async with dispatching(source, subscribed(receiver, max_in_flight=1)):
        events = await source.add("S1", 3)
        await wait_for(lambda: bool(disabled(source.path)), timeout_s=10)
        assert len(receiver.requests) == 1
        events += await source.add("S2", 2)
        receiver.respond = lambda request: Answer(200)
        async with DeliveryStore(source.path) as store:
            assert await store.enable("receiver")
        await wait_for(lambda: len(receiver.delivered()) == len(events), timeout_s=10)
    # The one 410, then one success per event: nothing was attempted while disabled.
    assert len(receiver.requests) == len(events) + 1
    assert receiver.delivered_ids() == {e.event_id for e in events}
    assert disabled(source.path) == []


async def test_last_failure_becomes_a_dead_letter_and_the_session_goes_on(
    source: EventSource, receiver: Receiver
) -> None:
    """After max_attempts failures the event is dead-lettered; later events still arrive."""
    receiver.respond = lambda r: Answer(500 if r.body["data"].get("index") == 2 else 200)
    async with dispatching(source, subscribed(receiver, max_attempts=3)):
        events = await source.add("S1", 3)
        await wait_for(lambda: len(receiver.delivered()) == 3, timeout_s=10)
        await wait_for(lambda: bool(deliveries(source.path, "dead")), timeout_s=10)
    indices = [r.body["data"].get("index") for r in receiver.requests]
    assert indices == [None, 1, 2, 2, 2, 3]
    assert deliveries(source.path, "dead") == [("receiver", events[2].event_id, 3, "HTTP 500")]
