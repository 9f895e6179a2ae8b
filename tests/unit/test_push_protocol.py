"""The Bayeux client's protocol handling, with canned response arrays.

Pure functions are tested directly; the PushClient runs against a scripted Bayeux endpoint on
127.0.0.1 that answers each POST with the next canned array (and holds the request, like a
server holding a connect, when the script has run out). Time is fake: sleeping advances it.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from archiver.config import Account, GwsConfig, PushConfig, Secret
from archiver.errors import ProtocolError
from archiver.gws.bayeux import Advice, Notification, Reply, read_response
from archiver.gws.client import GwsClient
from archiver.gws.notifications import hint_for
from archiver.gws.push import Hint, PushClient
from archiver.gws.transport import GwsHost
from tests.support import wait_for

Batch = list[dict[str, Any]]
Responder = Callable[[Batch], Any]

CLIENT_ID = "client-1"
SMS = "/v2/me/smssessions"
NEW_MESSAGES = {
    "messageType": "MessageLogUpdated",
    "notificationType": "NewMessages",
    "smssessionUri": "http://gws/api/v2/smssessions/S1",
    "messages": [{"index": 3, "type": "Text", "text": "never stored"}],
}
HANDSHAKE_ADVICE = {"reconnect": "retry", "interval": 0, "timeout": 1000}


# ---------------------------------------------------------------- response reading


def test_events_before_and_after_the_connect_reply_keep_their_order() -> None:
    """Every element is read, whatever its position (CometD: events first; Faye: last)."""
    sent = [{"channel": "/meta/connect", "id": "7"}]
    body = [
        {"channel": SMS, "data": {"n": 1}},
        {"channel": "/meta/connect", "id": "7", "successful": True},
        {"channel": SMS, "data": {"n": 2}},
    ]
    items = read_response(body, sent).items
    assert [type(item) for item in items] == [Notification, Reply, Notification]
    assert [item.data for item in items if isinstance(item, Notification)] == [{"n": 1}, {"n": 2}]


def test_an_event_carrying_a_pending_request_id_stays_an_event() -> None:
    """Replies are matched by channel and id, so Faye's event ``id`` collisions do no harm."""
    sent = [{"channel": "/meta/connect", "id": "3"}]
    body = [
        {"channel": SMS, "id": "3", "data": {}},
        {"channel": "/meta/connect", "id": "3", "successful": True},
    ]
    response = read_response(body, sent)
    assert isinstance(response.items[0], Notification)
    reply = response.reply_to("/meta/connect")
    assert reply is not None
    assert reply.successful


def test_a_bare_object_is_read_as_a_one_element_array() -> None:
    """Servers MAY answer with a bare object; it is accepted."""
    sent = [{"channel": "/meta/handshake", "id": "1"}]
    reply = read_response({"channel": "/meta/handshake", "id": "1"}, sent).reply_to(
        "/meta/handshake"
    )
    assert reply is not None


def test_a_meta_message_answering_nothing_we_sent_is_stray() -> None:
    """A reply to an older request (another id) is not taken for the current one."""
    sent = [{"channel": "/meta/connect", "id": "9"}]
    response = read_response([{"channel": "/meta/connect", "id": "8"}], sent)
    assert response.items == []
    assert response.stray == 1


def test_a_body_that_is_no_array_is_a_protocol_error() -> None:
    """A JSON string or number is not a Bayeux response."""
    with pytest.raises(ProtocolError):
        read_response("hello", [])


def test_advice_is_read_in_seconds_with_defaults_for_absent_fields() -> None:
    """Milliseconds become seconds; an unknown reconnect value is kept for the client to judge."""
    advice = Advice.parse({"reconnect": "later", "interval": 2000, "multiple-clients": True})
    assert advice == Advice("later", 2.0, 30.0, 10.0, True)
    assert Advice.parse(None) is None


@pytest.mark.parametrize(
    ("error", "unknown"),
    [
        ("402::Unknown client", True),  # CometD 3 (GWS 8.5)
        ("402::session_unknown", True),  # CometD 4+, cometd-nodejs-server
        ("401:x:Unknown client", True),  # Faye
        ("403::subscribe_denied", False),
        ("4021::odd", False),
        ("", False),
    ],
)
def test_unknown_client_is_read_from_the_code_not_the_text(error: str, unknown: bool) -> None:
    """401 and 402 mean "handshake again" whatever text follows."""
    reply = Reply({"channel": "/meta/connect", "id": "1"}, {"successful": False, "error": error})
    assert reply.unknown_client is unknown


# ---------------------------------------------------------------- hints


@pytest.mark.parametrize(
    ("channel", "data", "expected"),
    [
        (SMS, NEW_MESSAGES, ("S1", False)),
        (
            SMS,
            {"messageType": "MessageLogUpdated", "smsessionPath": "/smsessions/S2/"},
            ("S2", False),
        ),
        (
            SMS,
            {"messageType": "SMSsessionStateChangeMessage", "smssession": {"id": "S3"}},
            ("S3", True),
        ),
        (
            "/v2/me/x",
            {"messageType": "SMSsessionStateChangeMessage", "smsession": {"id": "S4"}},
            ("S4", True),
        ),
        (SMS, {"messageType": "MessageLogUpdated", "smssessionUri": "http://h/smssessions"}, None),
        (SMS, {"messageType": "MessageLogUpdated", "smssessionPath": "/smssessions/a b"}, None),
        (SMS, {"messageType": "SMSsessionTyping", "smssession": {"id": "S5"}}, None),
        (SMS, "not an object", None),
    ],
)
def test_sms_notifications_become_hints(
    channel: str, data: object, expected: tuple[str, bool] | None
) -> None:
    """The session id comes from the resource or the URI/path; anything unclear polls all."""
    hint = hint_for(Notification(channel, data), 5.0)
    if expected is None:
        assert hint == Hint(None, True, 5.0)
    else:
        assert hint == Hint(expected[0], expected[1], 5.0)


@pytest.mark.parametrize(
    ("channel", "data"),
    [
        ("/v2/me/chats", {"messageType": "MessageLogUpdated", "chatUri": "http://h/chats/C1"}),
        ("/v2/me/devices", {"messageType": "DeviceStateChangeMessage"}),
    ],
)
def test_other_notifications_give_no_hint(channel: str, data: object) -> None:
    """Chat transcripts share MessageLogUpdated but are not ours; devices neither."""
    assert hint_for(Notification(channel, data), 0.0) is None


# ---------------------------------------------------------------- the client, scripted


class FakeClock:
    """Time that moves only when somebody sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class ScriptedBayeux:
    """A Bayeux endpoint answering each POST with the next responder; none left: it holds."""

    def __init__(self) -> None:
        self.requests: list[Batch] = []
        self.headers: list[dict[str, str]] = []
        self.logins = 0
        self.token = "token-1"
        self._script: asyncio.Queue[Responder] = asyncio.Queue()

    def then(self, *responders: Responder) -> None:
        """Queue answers for the next requests."""
        for responder in responders:
            self._script.put_nowait(responder)

    def channels(self, n: int) -> list[str]:
        """The channels of request ``n``."""
        return [message["channel"] for message in self.requests[n]]

    async def notifications(self, request: web.Request) -> web.StreamResponse:
        batch = await request.json()
        self.requests.append(batch)
        self.headers.append(dict(request.headers))
        if batch[0]["channel"] == "/meta/disconnect":
            return web.json_response([{**batch[0], "successful": True}])
        result = (await self._script.get())(batch)
        if inspect.isawaitable(result):
            result = await result
        return result if isinstance(result, web.StreamResponse) else web.json_response(result)

    async def me(self, request: web.Request) -> web.StreamResponse:
        self.logins += 1
        return web.json_response({"statusCode": 0}, headers={"X-CSRF-TOKEN": self.token})


def handshake(advice: dict[str, Any] | None = None, **fields: Any) -> Responder:
    """A successful handshake reply (with HANDSHAKE_ADVICE unless told otherwise)."""

    def respond(batch: Batch) -> Any:
        reply = {
            "channel": "/meta/handshake",
            "id": batch[0]["id"],
            "successful": True,
            "clientId": CLIENT_ID,
            "version": "1.0",
            "supportedConnectionTypes": ["long-polling"],
            "advice": HANDSHAKE_ADVICE if advice is None else advice,
            **fields,
        }
        return [{k: v for k, v in reply.items() if v is not None}]

    return respond


def answer(
    connect: dict[str, Any] | None = None,
    *,
    before: Iterable[dict[str, Any]] = (),
    after: Iterable[dict[str, Any]] = (),
    refuse: Iterable[str] = (),
) -> Responder:
    """Replies to every message of the batch (connect: ``successful`` unless told otherwise)."""

    def respond(batch: Batch) -> Any:
        replies = []
        for message in batch:
            reply = {"channel": message["channel"], "id": message["id"], "successful": True}
            if message["channel"] == "/meta/subscribe":
                reply["subscription"] = message["subscription"]
                if message["subscription"] in refuse:
                    reply.update(successful=False, error="403::subscribe_denied")
            else:
                reply.update(connect or {})
            replies.append(reply)
        return [*before, *replies, *after]

    return respond


def status(code: int, text: str = "") -> Responder:
    """An HTTP error answer."""
    return lambda batch: web.Response(status=code, text=text)


@dataclass
class Harness:
    """A PushClient against the scripted endpoint, with what its callbacks received."""

    server: ScriptedBayeux
    client: GwsClient
    clock: FakeClock
    push: PushClient = field(init=False)
    hints: list[Hint] = field(default_factory=list)
    subscribed: int = 0
    downs: list[str] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def on_subscribed(self) -> None:
        self.subscribed += 1

    def start(self) -> None:
        self.task = asyncio.create_task(self.push.run())

    async def requests(self, n: int) -> None:
        """Wait until the server has seen ``n`` requests."""
        await wait_for(lambda: len(self.server.requests) >= n, timeout_s=5)

    async def stopped(self) -> None:
        """Wait for run() to return by itself."""
        assert self.task is not None
        await asyncio.wait_for(self.task, timeout=5)


@asynccontextmanager
async def scripted(
    config: PushConfig | None = None, **gws: Any
) -> AsyncIterator[tuple[Harness, ScriptedBayeux]]:
    """A scripted endpoint and a PushClient on it; the client is cancelled at the end."""
    server = ScriptedBayeux()
    app = web.Application()
    app.router.add_post("/api/v2/notifications", server.notifications)
    app.router.add_get("/api/v2/me", server.me)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    gws_config = GwsConfig(
        base_url=f"http://127.0.0.1:{port}",
        accounts=(Account("agent1", Secret("pw")),),
        **gws,
    )
    host = GwsHost(gws_config)
    client = GwsClient(host, gws_config.accounts[0])
    clock = FakeClock()
    push_config = config or PushConfig(backoff_step_s=1.0, backoff_max_s=3.0)
    harness = Harness(server, client, clock)
    harness.push = PushClient(
        client,
        push_config,
        on_hint=harness.hints.append,
        on_subscribed=harness.on_subscribed,
        on_down=harness.downs.append,
        clock=clock,
        sleep=clock.sleep,
    )
    try:
        yield harness, server
    finally:
        if harness.task is not None:
            harness.task.cancel()
            await asyncio.gather(harness.task, return_exceptions=True)
        await client.close()
        await host.close()
        await runner.cleanup()


async def test_first_batch_subscribes_and_asks_for_an_immediate_connect() -> None:
    """Handshake, then one batch [subscribe…, connect(timeout 0)], then plain connects."""
    config = PushConfig(channels=("/v2/me/*", "/v2/me/smssessions"))
    async with scripted(config) as (harness, server):
        server.then(handshake(), answer())
        harness.start()
        await harness.requests(3)
        handshake_request, batch, connect = server.requests[:3]
        assert handshake_request[0]["version"] == "1.0"
        assert handshake_request[0]["supportedConnectionTypes"] == ["long-polling"]
        assert [m.get("subscription") for m in batch] == ["/v2/me/*", "/v2/me/smssessions", None]
        assert batch[-1]["advice"] == {"timeout": 0}
        assert connect == [
            {
                "channel": "/meta/connect",
                "id": connect[0]["id"],
                "clientId": CLIENT_ID,
                "connectionType": "long-polling",
            }
        ]
        assert harness.subscribed == 1
        assert harness.push.healthy


async def test_push_requests_carry_the_rest_identity() -> None:
    """Basic header, the CSRF token from a REST GET, and the cookie the handshake set."""
    async with scripted() as (harness, server):

        def with_cookie(batch: Batch) -> Any:
            response = web.json_response(handshake()(batch))
            response.set_cookie("BAYEUX_BROWSER", "b1", httponly=True)
            return response

        await harness.client.login()
        server.then(with_cookie, answer())
        harness.start()
        await harness.requests(3)
        for headers in server.headers:
            assert headers["Authorization"].startswith("Basic ")
            assert headers["X-CSRF-TOKEN"] == "token-1"
        assert "BAYEUX_BROWSER=b1" in server.headers[2]["Cookie"]


async def test_events_around_the_connect_reply_become_hints_in_order() -> None:
    """Events before and after the reply both fire hints, in the server's order."""
    state = {"messageType": "SMSsessionStateChangeMessage", "smssession": {"id": "S9"}}
    async with scripted() as (harness, server):
        server.then(
            handshake(),
            answer(),
            answer(
                before=[{"channel": SMS, "data": NEW_MESSAGES}],
                after=[{"channel": SMS, "data": state}],
            ),
        )
        harness.start()
        await harness.requests(4)
        assert harness.hints == [Hint("S1", False, 100.0), Hint("S9", True, 100.0)]


async def test_an_event_with_the_connect_id_fires_a_hint_and_the_connect_still_counts() -> None:
    """Faye delivered an event whose id equalled our connect's; both are handled."""

    def colliding(batch: Batch) -> Any:
        connect_id = batch[-1]["id"]
        return [
            {"channel": "/meta/connect", "id": connect_id, "successful": True},
            {"channel": SMS, "id": connect_id, "data": NEW_MESSAGES},
        ]

    async with scripted() as (harness, server):
        server.then(handshake(), answer(), colliding)
        harness.start()
        await harness.requests(4)
        assert [hint.session_id for hint in harness.hints] == ["S1"]
        assert harness.push.healthy
        assert harness.push.stats.failures == 0


async def test_a_bare_object_connect_reply_is_handled() -> None:
    """A connect answered with a bare object keeps the loop going."""
    async with scripted() as (harness, server):
        server.then(
            handshake(),
            answer(),
            lambda batch: {"channel": "/meta/connect", "id": batch[0]["id"], "successful": True},
        )
        harness.start()
        await harness.requests(4)
        assert harness.push.stats.failures == 0
        assert harness.push.stats.connects == 3


async def test_unknown_advice_means_handshake_again() -> None:
    """A reconnect value nobody documented is treated as "handshake", never as retry."""
    async with scripted() as (harness, server):
        server.then(handshake(), answer(), answer({"advice": {"reconnect": "later"}}))
        server.then(handshake(), answer())
        harness.start()
        await harness.requests(6)
        assert server.channels(3) == ["/meta/handshake"]
        assert harness.push.stats.rehandshakes == {"unknown_advice": 1}
        assert harness.subscribed == 2
        assert len(harness.downs) == 1


@pytest.mark.parametrize("error", ["402::Unknown client", "402::session_unknown", "401:x:Unknown"])
async def test_unknown_client_means_handshake_again_even_without_advice(error: str) -> None:
    """401/402, whatever the text and with no advice, → handshake, resubscribe, on_subscribed."""
    async with scripted() as (harness, server):
        server.then(handshake(), answer(), answer({"successful": False, "error": error}))
        server.then(handshake(), answer())
        harness.start()
        await harness.requests(6)
        assert server.channels(3) == ["/meta/handshake"]
        assert server.channels(4) == ["/meta/subscribe", "/meta/connect"]
        assert harness.push.stats.rehandshakes == {"unknown_client": 1}
        assert harness.subscribed == 2


async def test_multiple_clients_advice_warns_once_and_its_interval_is_obeyed() -> None:
    """Two sessions on one cookie: one warning, and connects spaced by the advised interval."""
    crowded = {"advice": {"reconnect": "retry", "interval": 2000, "multiple-clients": True}}
    async with scripted() as (harness, server):
        server.then(handshake(), answer(crowded), answer(crowded))
        with capture_logs() as logs:
            harness.start()
            await harness.requests(4)
        warnings = [entry for entry in logs if entry["event"] == "push_multiple_clients"]
        assert len(warnings) == 1
        assert warnings[0]["log_level"] == "warning"
        assert harness.clock.sleeps == [2.0, 2.0]


async def test_reconnect_none_stops_push_for_good() -> None:
    """Advice "none": on_down once, run() returns, and not one more request (no disconnect)."""
    async with scripted() as (harness, server):
        server.then(handshake(), answer(), answer({"advice": {"reconnect": "none"}}))
        harness.start()
        await harness.stopped()
        await asyncio.sleep(0.1)
        assert len(server.requests) == 3
        assert len(harness.downs) == 1
        assert not harness.push.healthy


async def test_http_errors_back_off_step_by_step_up_to_the_cap() -> None:
    """HTTP 500/408/502 → wait 1, 2, 3, 3 s (step 1, cap 3), connect again; no handshake."""
    async with scripted() as (harness, server):
        server.then(handshake(), answer())
        server.then(status(500), status(408), status(502), status(500), answer())
        harness.start()
        await harness.requests(8)
        assert harness.clock.sleeps == [1.0, 2.0, 3.0, 3.0]
        assert all(server.channels(n) == ["/meta/connect"] for n in range(2, 8))
        # Not connected after a failure: answer at once, so recovery is known without a hold.
        advice = [m[0].get("advice") for m in server.requests[2:8]]
        assert advice == [None, *[{"timeout": 0}] * 4, None]
        assert harness.push.stats.handshakes == 1
        assert harness.push.stats.failures == 4
        # Down at the first failure, up again (the owner polls everything) at recovery.
        assert len(harness.downs) == 1
        assert harness.subscribed == 2


async def test_unconnected_longer_than_the_server_keeps_us_means_handshake_again() -> None:
    """No successful connect for timeout + interval + maxInterval → handshake, not retry."""
    advice = {**HANDSHAKE_ADVICE, "maxInterval": 2000}  # the server forgets us after 3 s
    async with scripted() as (harness, server):
        server.then(handshake(advice), answer({"advice": advice}))
        server.then(status(500), status(500), status(500), handshake(), answer())
        harness.start()
        await harness.requests(7)
        assert server.channels(5) == ["/meta/handshake"]
        assert harness.push.stats.rehandshakes == {"expired": 1}


async def test_a_csrf_refusal_renews_the_token_and_handshakes_again() -> None:
    """HTTP 403 "Missing or invalid Csrf token" → REST GET for a new token → handshake."""
    async with scripted() as (harness, server):
        await harness.client.login()
        server.then(handshake(), answer(), status(403, "Missing or invalid Csrf token"))
        server.then(handshake(), answer())
        server.token = "token-2"
        harness.start()
        await harness.requests(6)
        assert server.logins == 2
        assert server.channels(3) == ["/meta/handshake"]
        assert server.headers[3]["X-CSRF-TOKEN"] == "token-2"
        assert harness.push.stats.rehandshakes == {"csrf": 1}


async def test_a_refused_channel_is_left_to_polling() -> None:
    """A 403 on one subscription: the others work; the refused one is not asked for again,
    not even after a re-handshake."""
    config = PushConfig(channels=("/v2/me/*", "/v2/secret"))
    lost = {"successful": False, "error": "402::session_unknown"}
    async with scripted(config) as (harness, server):
        server.then(handshake(), answer(refuse=["/v2/secret"]), answer(lost), handshake(), answer())
        with capture_logs() as logs:
            harness.start()
            await harness.requests(6)
        assert server.channels(3) == ["/meta/handshake"]
        assert [m.get("subscription") for m in server.requests[4]] == ["/v2/me/*", None]
        assert harness.push.healthy
        refused = [entry["channel"] for entry in logs if entry["event"] == "push_channel_refused"]
        assert refused == ["/v2/secret"]


async def test_every_channel_refused_stops_push() -> None:
    """With no channel left there is nothing to hear: on_down, and run() returns."""
    async with scripted() as (harness, server):
        server.then(handshake(), answer(refuse=["/v2/me/*"]))
        harness.start()
        await harness.stopped()
        assert harness.downs == ["every channel was refused"]


@pytest.mark.parametrize(
    "handshake_advice",
    [
        {"reconnect": "handshake", "interval": 0, "timeout": 1000},  # cometd/cometd#2057
        None,  # no advice at all after an advised handshake (cometd/cometd#722)
    ],
)
async def test_a_handshake_reply_never_leaves_handshake_advice_behind(
    handshake_advice: dict[str, Any] | None,
) -> None:
    """After "reconnect: handshake", a successful handshake leads to connects, not a loop."""
    lost = {"successful": False, "error": "402::x", "advice": {"reconnect": "handshake"}}
    async with scripted() as (harness, server):

        def odd_handshake(batch: Batch) -> Any:
            body: list[dict[str, Any]] = handshake()(batch)
            if handshake_advice is None:
                del body[0]["advice"]
            else:
                body[0]["advice"] = handshake_advice
            return body

        server.then(handshake(), answer(), answer(lost), odd_handshake, answer(), answer())
        harness.start()
        await harness.requests(7)
        assert harness.push.stats.handshakes == 2
        assert server.channels(6) == ["/meta/connect"]


async def test_a_handshake_refused_with_reconnect_none_stops_push() -> None:
    """An unsuccessful handshake advising "none" is final."""
    refused = {"channel": "/meta/handshake", "successful": False, "error": "403::denied"}
    async with scripted() as (harness, server):
        server.then(
            lambda batch: [{**refused, "id": batch[0]["id"], "advice": {"reconnect": "none"}}]
        )
        harness.start()
        await harness.stopped()
        assert harness.downs == ["handshake refused: 403::denied"]


async def test_shutdown_sends_a_disconnect() -> None:
    """Cancelling run() sends /meta/disconnect for the session, best effort."""
    async with scripted() as (harness, server):
        server.then(handshake(), answer())
        harness.start()
        await harness.requests(3)
        assert harness.task is not None
        harness.task.cancel()
        await asyncio.gather(harness.task, return_exceptions=True)
        assert server.requests[-1] == [
            {
                "channel": "/meta/disconnect",
                "id": server.requests[-1][0]["id"],
                "clientId": CLIENT_ID,
            }
        ]


async def test_a_held_connect_may_outlast_the_rest_timeout() -> None:
    """The HTTP timeout is the advised hold plus network_delay_s, not the REST timeout."""
    advice = {"reconnect": "retry", "interval": 0, "timeout": 1000}

    async def held(batch: Batch) -> Any:
        await asyncio.sleep(0.5)
        return answer()(batch)

    config = PushConfig(network_delay_s=0.5)
    async with scripted(config, request_timeout_s=0.2) as (harness, server):
        server.then(handshake(advice), answer(), held)
        harness.start()
        await harness.requests(4)
        assert harness.push.stats.failures == 0
