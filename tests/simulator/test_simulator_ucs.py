"""Interaction History (UCS) over real HTTP and Bayeux: content, agent history and their faults."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from test_simulator_bayeux import Peer, basic

from gws_simulator import FaultRates, Simulator, SimulatorOptions

UCS = "/v2/ucs/interactions"
GWS_DATE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\+0200")

OpenPeer = Callable[..., Awaitable[Peer]]


async def start(**options: Any) -> Simulator:
    sim = Simulator(SimulatorOptions(agents=2, utc_offset_minutes=120, **options))
    await sim.start()
    return sim


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    sim = await start()
    yield sim
    await sim.close()


@pytest.fixture
async def open_peer(simulator: Simulator) -> AsyncIterator[OpenPeer]:
    """A peer of `account`, handshaken and subscribed to /v2/ucs/interactions."""
    async with AsyncExitStack() as stack:

        async def make(account: str = "agent2", sim: Simulator | None = None) -> Peer:
            jar = aiohttp.CookieJar(unsafe=True)
            http = await stack.enter_async_context(aiohttp.ClientSession(cookie_jar=jar))
            peer = Peer(http, (sim or simulator).base_url, account)
            await peer.open(UCS)
            return peer

        yield make


async def ask(peer: Peer, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST an Interaction History request as the peer's account."""
    url = peer.url.replace("/notifications", f"/ucs/interactions{path}")
    async with peer.http.post(url, json=body, headers=peer.headers) as response:
        reply: dict[str, Any] = await response.json()
        return response.status, reply


async def answers(peer: Peer) -> list[dict[str, Any]]:
    """The UCS notifications delivered to the peer now."""
    _, replies = await peer.connect(advice={"timeout": 0})
    return [reply["data"] for reply in replies if reply["channel"] == UCS]


async def content(peer: Peer, session_id: str) -> dict[str, Any]:
    """GetInteractionContent for `session_id`: the one notification answering it."""
    status, reply = await ask(peer, f"/{session_id}", {"operationName": "GetInteractionContent"})
    assert (status, set(reply)) == (200, {"statusCode", "referenceId"})
    [answer] = await answers(peer)
    assert (answer["messageType"], answer["referenceId"]) == (
        "GetInteractionContentMessage",
        reply["referenceId"],
    )
    return answer


def conversation(sim: Simulator, account: str = "agent1") -> str:
    session_id = sim.world.create_session(account)
    sim.world.append_message(session_id, "ParticipantJoined", sender="Customer")
    sim.world.append_message(session_id, "ParticipantJoined", sender="Agent")
    sim.world.append_message(session_id, "Text", text="héllo", sender="Customer")
    sim.world.append_message(session_id, "Text", text="psst", visibility="Agents", sender="Agent")
    return session_id


async def served_messages(peer: Peer, sim: Simulator, session_id: str, account: str) -> bytes:
    """The raw `[...]` of what /messages serves the session's account."""
    url = f"{sim.base_url}/api/v2/me/smssessions/{session_id}/messages"
    async with peer.http.get(url, headers=basic(account)) as response:
        body = await response.read()
    return body[len(b'{"statusCode":0,"messages":') : -1]


async def test_content_of_an_active_session(simulator: Simulator, open_peer: OpenPeer) -> None:
    """Any account reads an InProcess interaction; its messages are the /messages bytes."""
    peer = await open_peer("agent2")
    session_id = conversation(simulator)
    raw = await served_messages(peer, simulator, session_id, "agent1")
    _, before = await ask(peer, f"/{session_id}", {"operationName": "GetInteractionContent"})
    async with peer.http.post(
        peer.url, json=[peer.message("/meta/connect", connectionType="long-polling")]
    ) as response:
        delivered = await response.read()
    assert b'"messages":' + raw + b"}" in delivered
    assert str(before["referenceId"]).encode() in delivered
    answer = await content(peer, session_id)
    interaction = answer["interaction"]
    owner = simulator.world.accounts["agent1"]
    assert {key: interaction[key] for key in ("id", "mediaType", "typeId", "state")} == {
        "id": session_id,
        "mediaType": "smssession",
        "typeId": "Inbound",
        "state": "InProcess",
    }
    assert interaction["uri"].endswith(f"/api/v2/ucs/interactions/{session_id}")
    assert interaction["path"] == f"/ucs/interactions/{session_id}"
    assert GWS_DATE.fullmatch(interaction["startDate"])
    assert (interaction["endDate"], interaction["subject"]) == (None, None)
    assert isinstance(interaction["contactId"], str)
    assert interaction["ownerInformation"] == {
        "userName": "agent1",
        "firstName": owner.first_name,
        "lastName": owner.last_name,
        "id": owner.user_id,
    }
    assert [m["index"] for m in answer["messages"]] == [1, 2, 3, 4]


async def test_content_of_an_ended_and_removed_session(
    simulator: Simulator, open_peer: OpenPeer
) -> None:
    """A session gone from every list is still Stopped history, TranscriptSaveDone included."""
    peer = await open_peer("agent1")
    session_id = conversation(simulator)
    simulator.world.end_session(session_id)
    raw = await served_messages(peer, simulator, session_id, "agent1")
    simulator.world.remove_session(session_id)
    await ask(peer, f"/{session_id}", {"operationName": "GetInteractionContent", "source": "main"})
    async with peer.http.post(
        peer.url, json=[peer.message("/meta/connect", connectionType="long-polling")]
    ) as response:
        delivered = await response.read()
    assert b'"messages":' + raw + b"}" in delivered
    answer = await content(peer, session_id)
    assert answer["interaction"]["state"] == "Stopped"
    assert GWS_DATE.fullmatch(answer["interaction"]["endDate"])
    assert [m["index"] for m in answer["messages"]] == [1, 2, 3, 4, -1]


async def test_unknown_interaction_carries_an_error(
    simulator: Simulator, open_peer: OpenPeer
) -> None:
    """An unknown id still answers statusCode 0; the notification says it was not found."""
    peer = await open_peer()
    answer = await content(peer, "0000NOPE00000000")
    assert answer["errorMessage"] == "Interaction 0000NOPE00000000 not found"
    assert "interaction" not in answer
    assert "messages" not in answer


@pytest.mark.parametrize(
    ("body", "code"),
    [({}, 1), ({"operationName": "Nope"}, 2), ({"operationName": "RetrieveAgentHistory"}, 2)],
)
async def test_bad_content_requests_are_refused(
    simulator: Simulator, open_peer: OpenPeer, body: dict[str, Any], code: int
) -> None:
    """A missing operationName answers 1, another operation 2, and nothing is published."""
    peer = await open_peer()
    status, reply = await ask(peer, f"/{conversation(simulator)}", body)
    assert (status, reply["statusCode"]) == (400, code)
    assert await answers(peer) == []


async def test_late_answer_arrives_after_ucs_late_s(open_peer: OpenPeer) -> None:
    """ucs_late: nothing at first, the whole answer after ucs_late_s; counted in stats."""
    sim = await start(faults=FaultRates(ucs_late=1.0, ucs_late_s=0.3))
    try:
        peer = await open_peer(sim=sim)
        session_id = conversation(sim)
        await ask(peer, f"/{session_id}", {"operationName": "GetInteractionContent"})
        assert await answers(peer) == []
        await asyncio.sleep(0.4)
        [answer] = await answers(peer)
        assert answer["interaction"]["id"] == session_id
        assert sim.stats()["faults"]["ucs_late"] == 1
    finally:
        await sim.close()


@pytest.mark.parametrize("fault", ["ucs_missing", "ucs_error"])
async def test_missing_and_error_answers(open_peer: OpenPeer, fault: str) -> None:
    """ucs_missing publishes nothing; ucs_error publishes an Internal error; both counted."""
    sim = await start(faults=FaultRates(**{fault: 1.0}, ucs_late_s=0.1))
    try:
        peer = await open_peer(sim=sim)
        status, reply = await ask(
            peer, f"/{conversation(sim)}", {"operationName": "GetInteractionContent"}
        )
        assert (status, reply["statusCode"]) == (200, 0)
        await asyncio.sleep(0.2)
        delivered = await answers(peer)
        if fault == "ucs_missing":
            assert delivered == []
        else:
            assert delivered == [
                {
                    "messageType": "GetInteractionContentMessage",
                    "referenceId": reply["referenceId"],
                    "errorMessage": "Internal error",
                }
            ]
        assert sim.stats()["faults"][fault] == 1
    finally:
        await sim.close()


async def history(peer: Peer, sim: Simulator, account: str, **dates: str) -> list[str]:
    """The interaction ids RetrieveAgentHistory lists for `account`."""
    user_id = sim.world.accounts[account].user_id
    body = {"operationName": "RetrieveAgentHistory", "userId": user_id, **dates}
    status, reply = await ask(peer, "", body)
    assert status == 200
    [answer] = await answers(peer)
    assert (answer["messageType"], answer["referenceId"]) == (
        "GetInteractionsHistoryMessage",
        reply["referenceId"],
    )
    return [interaction["id"] for interaction in answer["interactions"]]


async def test_agent_history_includes_transferred_sessions_for_both(
    simulator: Simulator, open_peer: OpenPeer
) -> None:
    """RetrieveAgentHistory lists every session the agent ever had a view of, in a date range."""
    peer = await open_peer("agent1")
    transferred, mine, theirs = (
        conversation(simulator),
        conversation(simulator),
        conversation(simulator, "agent2"),
    )
    url = f"{simulator.base_url}/api/v2/me/smssessions/{transferred}"
    operation = {"operationName": "Transfer", "targetPath": "/users/agent2"}
    async with peer.http.post(url, json=operation, headers=peer.headers) as response:
        assert (await response.json())["statusCode"] == 0
    simulator.world.end_session(mine)
    simulator.world.remove_session(mine)
    assert await history(peer, simulator, "agent1") == [transferred, mine]
    assert await history(peer, simulator, "agent2") == [transferred, theirs]
    started_ms = simulator.world.interactions[mine].started_ms
    stamp = datetime.fromtimestamp(started_ms / 1000, UTC).strftime("%Y-%m-%d")
    assert await history(peer, simulator, "agent1", fromDate=stamp, toDate=stamp) == [
        transferred,
        mine,
    ]
    assert await history(peer, simulator, "agent1", toDate="2001-01-01") == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"operationName": "RetrieveAgentHistory"}, 1),
        ({"operationName": "RetrieveAgentHistory", "userId": "x", "fromDate": "01/02/2020"}, 10),
        ({"operationName": "GetInteractionContent"}, 2),
    ],
)
async def test_bad_history_requests_are_refused(
    simulator: Simulator, open_peer: OpenPeer, body: dict[str, Any], code: int
) -> None:
    """No userId answers 1, a malformed date 10, another operation 2."""
    peer = await open_peer()
    status, reply = await ask(peer, "", body)
    assert (status, reply["statusCode"]) == (400, code)


async def test_ucs_faults_are_set_through_the_admin_api(
    simulator: Simulator, open_peer: OpenPeer
) -> None:
    """POST /_sim/faults takes the UCS fault names like any other."""
    peer = await open_peer()
    url = f"{simulator.base_url}/_sim/faults"
    async with peer.http.post(url, json={"ucs_error": 1.0}) as response:
        assert (await response.json())["ucs_error"] == 1.0
    answer = await content(peer, conversation(simulator))
    assert answer["errorMessage"] == "Internal error"
