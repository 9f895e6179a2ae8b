"""The simulator's CometD endpoint over real HTTP: Bayeux semantics and GWS notifications."""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import orjson
import pytest

from gws_simulator import FaultRates, Simulator, SimulatorOptions, cli

SMS = "/v2/me/smssessions"
HOLD_S = 1.0


def basic(username: str) -> dict[str, str]:
    """An HTTP Basic header for an agent account."""
    token = base64.b64encode(f"{username}:password".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class Peer:
    """A hand-driven Bayeux client: one account, one cookie jar, one clientId."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str, account: str) -> None:
        self.http = http
        self.url = f"{base_url}/api/v2/notifications"
        self.headers = basic(account)
        self.client_id = ""
        self._next_id = 0

    async def post(self, body: Any, path: str = "") -> tuple[int, Any]:
        """POST a body; the status and the parsed reply (None when it is not JSON)."""
        async with self.http.post(self.url + path, json=body, headers=self.headers) as response:
            raw = await response.read()
            is_json = response.content_type == "application/json"
            return response.status, orjson.loads(raw) if is_json else None

    def message(self, channel: str, **fields: Any) -> dict[str, Any]:
        """A message of this client with the next id."""
        self._next_id += 1
        return {"id": str(self._next_id), "channel": channel, "clientId": self.client_id, **fields}

    async def handshake(self) -> dict[str, Any]:
        """Handshake and keep the clientId; the reply."""
        status, replies = await self.post(
            [
                {
                    "id": "h",
                    "channel": "/meta/handshake",
                    "version": "1.0",
                    "supportedConnectionTypes": ["long-polling"],
                }
            ]
        )
        assert status == 200
        self.client_id = replies[0].get("clientId", "")
        reply: dict[str, Any] = replies[0]
        return reply

    async def subscribe(self, *names: str) -> list[Any]:
        """Subscribe; the response array."""
        subscription = names[0] if len(names) == 1 else list(names)
        status, replies = await self.post(
            [self.message("/meta/subscribe", subscription=subscription)]
        )
        assert status == 200
        return list(replies)

    async def connect(self, **fields: Any) -> tuple[int, Any]:
        """One `/meta/connect`; the status and the response array."""
        return await self.post(
            [self.message("/meta/connect", connectionType="long-polling", **fields)]
        )

    async def open(self, *names: str) -> None:
        """Handshake, subscribe, and make the first (immediate) connect: ready to be held."""
        await self.handshake()
        if names:
            await self.subscribe(*names)
        status, _ = await self.connect(advice={"timeout": 0})
        assert status == 200


MakePeer = Callable[..., Awaitable[Peer]]


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    options = SimulatorOptions(agents=2, bayeux_timeout_s=HOLD_S, bayeux_max_interval_s=5.0)
    async with Simulator(options) as sim:
        yield sim


@pytest.fixture
async def make_peer(simulator: Simulator) -> AsyncIterator[MakePeer]:
    """Peers with their own cookie jar (`unsafe`: 127.0.0.1 is an IP host), or a shared one."""
    async with AsyncExitStack() as stack:

        async def make(
            account: str = "agent1",
            http: aiohttp.ClientSession | None = None,
            sim: Simulator | None = None,
        ) -> Peer:
            if http is None:
                jar = aiohttp.CookieJar(unsafe=True)
                http = await stack.enter_async_context(aiohttp.ClientSession(cookie_jar=jar))
            return Peer(http, (sim or simulator).base_url, account)

        yield make


def events(replies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The `data` of the delivered events in a response array."""
    return [reply["data"] for reply in replies if not reply["channel"].startswith("/meta/")]


def kinds(replies: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(messageType, notificationType) of each delivered event."""
    return [(data["messageType"], data["notificationType"]) for data in events(replies)]


async def test_handshake_grants_client_id_advice_and_browser_cookie(make_peer: MakePeer) -> None:
    """A handshake answers a 128-bit clientId, retry advice with the hold, and BAYEUX_BROWSER."""
    peer = await make_peer()
    reply = await peer.handshake()
    assert reply["successful"] is True
    assert reply["id"] == "h"
    assert len(reply["clientId"]) == 32
    assert set(reply["clientId"]) <= set("0123456789abcdef")
    assert reply["advice"] == {"reconnect": "retry", "interval": 0, "timeout": 1000}
    assert reply["supportedConnectionTypes"] == ["long-polling"]
    assert any(cookie.key == "BAYEUX_BROWSER" for cookie in peer.http.cookie_jar)


async def test_handshake_without_long_polling_is_refused(make_peer: MakePeer) -> None:
    """A handshake that does not offer long-polling fails with advice `none`."""
    peer = await make_peer()
    offer = {"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["ws"]}
    _, replies = await peer.post(offer, path="/handshake")
    assert replies[0]["successful"] is False
    assert replies[0]["advice"] == {"reconnect": "none"}


async def test_cometd_needs_gws_credentials(make_peer: MakePeer) -> None:
    """The CometD endpoint asks for the same identity as REST: no credentials, HTTP 401."""
    peer = await make_peer()
    peer.headers = {}
    status, body = await peer.post({"channel": "/meta/handshake"})
    assert status == 401
    assert body == {"statusCode": 20, "statusMessage": "Access denied"}


async def test_csrf_mode_requires_the_token_on_cometd_posts(make_peer: MakePeer) -> None:
    """With --csrf, a CometD POST needs the session's token, like every other POST."""
    async with Simulator(SimulatorOptions(agents=1, csrf=True)) as sim:
        peer = await make_peer(sim=sim)
        status, _ = await peer.post({"channel": "/meta/handshake"})
        assert status == 403
        async with peer.http.get(f"{sim.base_url}/api/v2/me", headers=peer.headers) as response:
            peer.headers["X-CSRF-TOKEN"] = response.headers["X-CSRF-TOKEN"]
        assert (await peer.handshake())["successful"] is True


async def test_suffixed_url_and_bare_object_are_accepted(make_peer: MakePeer) -> None:
    """A bare message object POSTed to `/notifications/handshake` is served like an array."""
    peer = await make_peer()
    bare = {
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": ["long-polling"],
    }
    status, replies = await peer.post(bare, path="/handshake")
    assert status == 200
    assert replies[0]["successful"] is True


@pytest.mark.parametrize("body", [b"{not json", b"[]", b"[1]", b'[{"id": "x"}]'])
async def test_malformed_posts_answer_400(make_peer: MakePeer, body: bytes) -> None:
    """Bodies that are not Bayeux messages answer HTTP 400."""
    peer = await make_peer()
    async with peer.http.post(peer.url, data=body, headers=peer.headers) as response:
        assert response.status == 400


async def test_first_connect_is_answered_at_once(make_peer: MakePeer) -> None:
    """The first connect after a handshake is not held (CometD 3), even without advice."""
    peer = await make_peer()
    await peer.handshake()
    started = time.monotonic()
    status, replies = await peer.connect()
    assert status == 200
    assert replies[-1]["successful"] is True
    assert time.monotonic() - started < HOLD_S / 2


async def test_connect_asking_timeout_zero_is_answered_at_once(make_peer: MakePeer) -> None:
    """A later connect with `advice.timeout: 0` is not held either."""
    peer = await make_peer()
    await peer.open()
    started = time.monotonic()
    await peer.connect(advice={"timeout": 0})
    assert time.monotonic() - started < HOLD_S / 2


async def test_connect_is_held_for_the_timeout(make_peer: MakePeer) -> None:
    """With nothing to deliver, a later connect returns after the hold, successful and empty."""
    peer = await make_peer()
    await peer.open(SMS)
    started = time.monotonic()
    status, replies = await peer.connect()
    elapsed = time.monotonic() - started
    assert status == 200
    assert [reply["channel"] for reply in replies] == ["/meta/connect"]
    assert replies[0]["successful"] is True
    assert HOLD_S * 0.9 <= elapsed < HOLD_S * 2


async def test_held_connect_returns_early_with_events_first(
    simulator: Simulator, make_peer: MakePeer
) -> None:
    """An event ends the hold at once; events precede the connect reply, in publish order."""
    peer = await make_peer()
    await peer.open("/v2/me/*")
    session_id = simulator.world.create_session("agent1")
    await peer.connect()
    held = asyncio.create_task(peer.connect())
    await asyncio.sleep(0.1)
    started = time.monotonic()
    simulator.world.append_message(session_id, "Text", text="one")
    simulator.world.append_message(session_id, "Text", text="two")
    status, replies = await held
    assert time.monotonic() - started < HOLD_S / 2
    assert status == 200
    assert [reply["channel"] for reply in replies] == [SMS, SMS, "/meta/connect"]
    assert [data["messages"][0]["text"] for data in events(replies)] == ["one", "two"]


async def test_second_connect_cancels_the_held_one_with_408(make_peer: MakePeer) -> None:
    """A newer connect of the same client ends the held one with HTTP 408 (CometD 3)."""
    peer = await make_peer()
    await peer.open(SMS)
    held = asyncio.create_task(peer.connect())
    await asyncio.sleep(0.1)
    newer = asyncio.create_task(peer.connect())
    status, _ = await held
    assert status == 408
    assert (await newer)[0] == 200


async def test_connect_without_browser_cookie_gets_multiple_clients_advice(
    make_peer: MakePeer,
) -> None:
    """Without BAYEUX_BROWSER a connect is never held: multiple-clients advice, 2 s interval."""
    peer = await make_peer()
    await peer.open(SMS)
    peer.http.cookie_jar.clear()
    started = time.monotonic()
    _, replies = await peer.connect()
    assert time.monotonic() - started < HOLD_S / 2
    assert replies[-1]["successful"] is True
    assert replies[-1]["advice"] == {
        "reconnect": "retry",
        "interval": 2000,
        "multiple-clients": True,
    }


async def test_shared_browser_cookie_gets_multiple_clients_advice(
    simulator: Simulator, make_peer: MakePeer
) -> None:
    """Two clients sharing one cookie jar: while one connect is held the other is not."""
    first = await make_peer("agent1")
    second = await make_peer("agent2", http=first.http)
    await first.open(SMS)
    await second.open(SMS)
    held = asyncio.create_task(first.connect())
    await asyncio.sleep(0.1)
    _, replies = await second.connect()
    assert replies[-1]["advice"]["multiple-clients"] is True
    assert simulator.stats()["bayeux"]["multiple_clients"] == 1
    assert (await held)[0] == 200


async def test_normal_advice_returns_after_multiple_clients(make_peer: MakePeer) -> None:
    """After a multiple-clients reply, the next normal reply advises interval 0 again."""
    peer = await make_peer()
    await peer.open(SMS)
    cookies = list(peer.http.cookie_jar)
    peer.http.cookie_jar.clear()
    await peer.connect()
    for cookie in cookies:
        peer.http.cookie_jar.update_cookies({cookie.key: cookie.value})
    _, replies = await peer.connect(advice={"timeout": 0})
    assert replies[-1]["advice"] == {"reconnect": "retry", "interval": 0, "timeout": 1000}


async def test_client_is_dropped_after_max_interval(make_peer: MakePeer) -> None:
    """No connect within maxInterval of the last reply: 402 with handshake advice."""
    options = SimulatorOptions(agents=1, bayeux_timeout_s=HOLD_S, bayeux_max_interval_s=0.2)
    async with Simulator(options) as sim:
        peer = await make_peer(sim=sim)
        await peer.open(SMS)
        await asyncio.sleep(0.3)
        _, replies = await peer.connect()
        assert replies == [
            {
                "id": replies[0]["id"],
                "channel": "/meta/connect",
                "successful": False,
                "error": "402::Unknown client",
                "advice": {"reconnect": "handshake", "interval": 0},
            }
        ]
        assert sim.stats()["bayeux"]["clients_expired"] == 1


async def test_unknown_client_on_subscribe_has_no_advice(make_peer: MakePeer) -> None:
    """An unknown clientId on subscribe answers 402 without advice, as CometD 3 does."""
    peer = await make_peer()
    peer.client_id = "f" * 32
    (reply,) = await peer.subscribe(SMS)
    assert (reply["successful"], reply["error"]) == (False, "402::Unknown client")
    assert "advice" not in reply


async def test_client_id_of_another_account_is_unknown(make_peer: MakePeer) -> None:
    """A clientId presented under another account's credentials is unknown."""
    peer = await make_peer("agent1")
    await peer.handshake()
    peer.headers = basic("agent2")
    _, replies = await peer.connect()
    assert replies[0]["error"] == "402::Unknown client"


@pytest.mark.parametrize(
    ("names", "error"),
    [
        (["/meta/connect"], "403:/meta/connect:Forbidden channel"),
        (["/meta/*"], "403:/meta/*:Forbidden channel"),
        (["/v2/*/x"], "400:/v2/*/x:Invalid channel"),
        (["v2/me"], "400:v2/me:Invalid channel"),
        ([SMS, "/meta/**"], "403:/meta/**:Forbidden channel"),
    ],
)
async def test_bad_subscriptions_are_refused(
    simulator: Simulator, make_peer: MakePeer, names: list[str], error: str
) -> None:
    """`/meta/...` subscriptions answer 403 and malformed names 400; nothing is subscribed."""
    peer = await make_peer()
    await peer.handshake()
    (reply,) = await peer.subscribe(*names)
    assert (reply["successful"], reply["error"]) == (False, error)
    assert not simulator.bayeux.listening("agent1", SMS)


@pytest.mark.parametrize(
    ("name", "hears"),
    [(SMS, True), ("/v2/me/*", True), ("/v2/**", True), ("/**", True), ("/v2/*", False)],
)
async def test_subscription_patterns_glob_as_bayeux_says(
    simulator: Simulator, make_peer: MakePeer, name: str, hears: bool
) -> None:
    """`*` matches one segment and `**` any depth."""
    peer = await make_peer()
    await peer.handshake()
    (reply,) = await peer.subscribe(name)
    assert reply["successful"] is True
    assert simulator.bayeux.listening("agent1", SMS) is hears


async def test_unsubscribe_stops_delivery(simulator: Simulator, make_peer: MakePeer) -> None:
    """After `/meta/unsubscribe` the account is no longer listened to."""
    peer = await make_peer()
    await peer.open(SMS)
    _, replies = await peer.post([peer.message("/meta/unsubscribe", subscription=SMS)])
    assert replies[0]["successful"] is True
    assert not simulator.bayeux.listening("agent1", SMS)


async def test_clients_cannot_publish(make_peer: MakePeer) -> None:
    """A client's publish is denied."""
    peer = await make_peer()
    await peer.handshake()
    _, replies = await peer.post([peer.message(SMS, data={"x": 1})])
    assert (replies[0]["successful"], replies[0]["error"]) == (False, f"403:{SMS}:Publish denied")


async def test_subscribe_reply_carries_queued_events(
    simulator: Simulator, make_peer: MakePeer
) -> None:
    """Events queued for a client ride on its next response, a subscribe reply included."""
    peer = await make_peer()
    await peer.open(SMS)
    simulator.world.create_session("agent1")
    replies = await peer.subscribe("/v2/me/devices")
    assert [reply["channel"] for reply in replies] == [SMS, "/meta/subscribe"]


async def test_notifications_reach_only_the_owner(
    simulator: Simulator, make_peer: MakePeer
) -> None:
    """A change of agent1's session is published to agent1's clients only."""
    mine, theirs = await make_peer("agent1"), await make_peer("agent2")
    await mine.open(SMS)
    await theirs.open(SMS)
    simulator.world.create_session("agent1")
    _, replies = await theirs.connect(advice={"timeout": 0})
    assert events(replies) == []
    _, replies = await mine.connect(advice={"timeout": 0})
    assert kinds(replies) == [("SMSsessionStateChangeMessage", "StatusChange")]


async def test_session_life_publishes_the_documented_notifications(
    simulator: Simulator, make_peer: MakePeer
) -> None:
    """Create, Accept, SetDisposition and Complete publish gws-api.md §1.3's sequence."""
    peer = await make_peer()
    await peer.open(SMS)
    session_id = simulator.world.create_session("agent1", "Invited")
    url = f"{simulator.base_url}/api/v2/me/smssessions/{session_id}"
    for operation in (
        {"operationName": "Accept"},
        {"operationName": "SetDisposition", "disposition": "Sold"},
        {"operationName": "Complete"},
    ):
        async with peer.http.post(url, json=operation, headers=peer.headers) as response:
            assert (await response.json())["statusCode"] == 0
    _, replies = await peer.connect(advice={"timeout": 0})
    state, log = "SMSsessionStateChangeMessage", "MessageLogUpdated"
    assert kinds(replies) == [
        (state, "StatusChange"),
        (state, "StatusChange"),
        (state, "ParticipantsUpdated"),
        (log, "NewMessages"),
        (state, "PropertiesUpdated"),
        (state, "ParticipantsUpdated"),
        (log, "NewMessages"),
        (state, "StatusChange"),
        (log, "NewMessages"),
    ]
    final = events(replies)[-2]["smssession"]
    assert (final["id"], final["state"], final["participants"]) == (session_id, "Completed", [])
    assert events(replies)[4]["smssession"]["userData"] == {"DispositionCode": "Sold"}


async def test_message_notification_carries_what_the_messages_endpoint_serves(
    simulator: Simulator, make_peer: MakePeer
) -> None:
    """`MessageLogUpdated` holds the new message as rendered by /messages, plus URI and path."""
    peer = await make_peer()
    await peer.open(SMS)
    session_id = simulator.world.create_session("agent1")
    simulator.world.append_message(session_id, "Text", text="hello")
    _, replies = await peer.connect(advice={"timeout": 0})
    notification = events(replies)[-1]
    url = f"{simulator.base_url}/api/v2/me/smssessions/{session_id}/messages"
    async with peer.http.get(url, headers=peer.headers) as response:
        served = (await response.json())["messages"]
    assert notification["messages"] == served
    assert notification["smssessionUri"] == f"{simulator.base_url}/api/v2/smssessions/{session_id}"
    assert notification["smssessionPath"] == f"/smssessions/{session_id}"


async def test_transfer_tells_both_agents(simulator: Simulator, make_peer: MakePeer) -> None:
    """A transfer shows the old owner a Revoked session and the new owner a StatusChange."""
    old, new = await make_peer("agent1"), await make_peer("agent2")
    await old.open(SMS)
    await new.open(SMS)
    session_id = simulator.world.create_session("agent1")
    url = f"{simulator.base_url}/api/v2/me/smssessions/{session_id}"
    transfer = {"operationName": "Transfer", "targetPath": "/users/agent2"}
    async with old.http.post(url, json=transfer, headers=old.headers) as response:
        assert (await response.json())["statusCode"] == 0
    _, replies = await old.connect(advice={"timeout": 0})
    left = events(replies)[-1]
    assert (left["notificationType"], left["smssession"]["state"]) == ("StatusChange", "Revoked")
    _, replies = await new.connect(advice={"timeout": 0})
    assert kinds(replies)[0] == ("SMSsessionStateChangeMessage", "StatusChange")
    assert events(replies)[0]["smssession"]["id"] == session_id


async def test_conference_tells_every_viewer(simulator: Simulator, make_peer: MakePeer) -> None:
    """Both accounts of a conference hear its messages, each its own view's state changes."""
    owner, guest = await make_peer("agent1"), await make_peer("agent2")
    await owner.open(SMS)
    await guest.open(SMS)
    session_id = simulator.world.create_session("agent1")
    url = f"{simulator.base_url}/api/v2/me/smssessions/{session_id}"
    invite = {"operationName": "Invite", "targetPath": "/users/agent2"}
    async with owner.http.post(url, json=invite, headers=owner.headers) as response:
        assert (await response.json())["statusCode"] == 0
    await owner.connect(advice={"timeout": 0})
    await guest.connect(advice={"timeout": 0})
    simulator.world.append_message(session_id, "Text", text="hello both")
    for peer in (owner, guest):
        _, replies = await peer.connect(advice={"timeout": 0})
        assert [data["messages"][0]["text"] for data in events(replies)] == ["hello both"]
    async with guest.http.post(url, json={"operationName": "Leave"}, headers=guest.headers) as r:
        assert (await r.json())["statusCode"] == 0
    _, replies = await guest.connect(advice={"timeout": 0})
    assert events(replies)[-1]["smssession"]["state"] == "Completed"
    _, replies = await owner.connect(advice={"timeout": 0})
    assert {data.get("smssession", {}).get("state") for data in events(replies)} <= {
        "Chatting",
        None,
    }


async def test_quirks_mode_uses_both_spellings_in_valid_json(make_peer: MakePeer) -> None:
    """In quirks mode some notifications say `smsession…`; every response still parses."""
    async with Simulator(SimulatorOptions(agents=1, quirks=True)) as sim:
        peer = await make_peer(sim=sim)
        await peer.open(SMS)
        for _ in range(10):
            session_id = sim.world.create_session("agent1")
            for number in range(4):
                sim.world.append_message(session_id, "Text", text=f"m{number}")
            sim.world.end_session(session_id)
        _, replies = await peer.connect(advice={"timeout": 0})
    keys = {key for data in events(replies) for key in data if key.startswith("sms")}
    assert keys == {
        "smssession",
        "smsession",
        "smssessionUri",
        "smsessionUri",
        "smssessionPath",
        "smsessionPath",
    }
    assert all(
        isinstance(message["timestampSeconds"], int)
        for data in events(replies)
        for message in data.get("messages", [])
    )


async def test_notification_faults_drop_and_duplicate_at_their_rates(
    make_peer: MakePeer,
) -> None:
    """drop_notification and duplicate_notification hit about their share; stats count them."""
    faults = FaultRates(drop_notification=0.3, duplicate_notification=0.3)
    async with Simulator(SimulatorOptions(agents=1, faults=faults, seed=3)) as sim:
        peer = await make_peer(sim=sim)
        await peer.open(SMS)
        session_id = sim.world.create_session("agent1")
        for number in range(999):
            sim.world.append_message(session_id, "Text", text=str(number))
        _, replies = await peer.connect(advice={"timeout": 0})
        stats = sim.stats()
    delivered = events(replies)
    dropped = stats["faults"]["drop_notification"]
    duplicated = stats["faults"]["duplicate_notification"]
    assert stats["bayeux"]["notifications_published"] == 1000
    assert (
        len(delivered) == 1000 - dropped + duplicated == stats["bayeux"]["notifications_delivered"]
    )
    assert 250 <= dropped <= 350
    assert 170 <= duplicated <= 250
    # A duplicate follows its original; distinct notifications never compare equal.
    assert sum(1 for a, b in itertools.pairwise(delivered) if a == b) == duplicated


async def test_nothing_is_rendered_while_nobody_listens(
    simulator: Simulator, make_peer: MakePeer
) -> None:
    """Without a subscriber, changes publish nothing and leave the session's wire form unbuilt."""
    peer = await make_peer()
    await peer.open()
    session_id = simulator.world.create_session("agent1")
    simulator.world.append_message(session_id, "ParticipantJoined", sender="Customer")
    simulator.world.end_session(session_id)
    assert all(view.body is None for view in simulator.world.sessions[session_id].views.values())
    assert "notifications_published" not in simulator.stats()["bayeux"]


async def test_expiry_answers_the_held_connect_with_402(
    simulator: Simulator, make_peer: MakePeer
) -> None:
    """`expire()` ends a held connect at once with 402 and handshake advice."""
    peer = await make_peer()
    await peer.open(SMS)
    held = asyncio.create_task(peer.connect())
    await asyncio.sleep(0.1)
    assert simulator.bayeux.expire("agent1") == 1
    _, replies = await held
    assert replies[0]["error"] == "402::Unknown client"
    assert replies[0]["advice"] == {"reconnect": "handshake", "interval": 0}


async def test_admin_lists_and_expires_clients(simulator: Simulator, make_peer: MakePeer) -> None:
    """GET /_sim/bayeux lists clients; POST /_sim/bayeux/expire forgets one account's."""
    first, second = await make_peer("agent1"), await make_peer("agent2")
    await first.open(SMS)
    await second.open()
    admin = f"{simulator.base_url}/_sim/bayeux"
    async with first.http.get(admin) as response:
        clients = (await response.json())["clients"]
    assert sorted((c["account"], c["subscriptions"], c["held"]) for c in clients) == [
        ("agent1", [SMS], False),
        ("agent2", [], False),
    ]
    async with first.http.post(f"{admin}/expire", json={"account": "agent1"}) as response:
        assert await response.json() == {"expired": 1}
    async with first.http.post(f"{admin}/expire", json={"account": "nobody"}) as response:
        assert response.status == 400
    _, replies = await first.connect()
    assert replies[0]["error"] == "402::Unknown client"
    assert simulator.stats()["bayeux"]["clients_expired_forced"] == 1


async def test_disconnect_ends_the_held_connect(simulator: Simulator, make_peer: MakePeer) -> None:
    """`/meta/disconnect` answers a held connect with advice `none` and forgets the client."""
    peer = await make_peer()
    await peer.open(SMS)
    held = asyncio.create_task(peer.connect())
    await asyncio.sleep(0.1)
    _, replies = await peer.post([peer.message("/meta/disconnect")])
    assert replies[0]["successful"] is True
    _, connect = await held
    assert connect[-1]["advice"] == {"reconnect": "none"}
    assert simulator.bayeux.clients() == []


async def test_close_answers_held_connects_promptly(make_peer: MakePeer) -> None:
    """Closing the simulator ends held connects instead of waiting for their timeout."""
    options = SimulatorOptions(agents=1, bayeux_timeout_s=30.0)
    sim = Simulator(options)
    await sim.start()
    peer = await make_peer(sim=sim)
    await peer.open(SMS)
    held = asyncio.create_task(peer.connect())
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await sim.close()
    status, _ = await held
    assert status == 200
    assert time.monotonic() - started < 1.0


def test_cli_maps_bayeux_options() -> None:
    """`--bayeux-timeout`, `--bayeux-max-interval` and the notification faults reach the options."""
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(
        [
            "--bayeux-timeout=2.5",
            "--bayeux-max-interval=4",
            "--faults=drop_notification=0.1,duplicate_notification=0.2",
        ]
    )
    options = cli.options_from(args)
    assert (options.bayeux_timeout_s, options.bayeux_max_interval_s) == (2.5, 4.0)
    assert options.faults == FaultRates(drop_notification=0.1, duplicate_notification=0.2)
    with pytest.raises(ValueError, match="bayeux"):
        cli.options_from(parser.parse_args(["--bayeux-max-interval=0"]))
