"""Per-account views over real HTTP: transfer, queue and pick-up, conference, consult, leave."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from gws_simulator import Simulator, SimulatorOptions

REVOKED_S = 0.3


def auth(account: str) -> dict[str, str]:
    """An HTTP Basic header for an agent account."""
    token = base64.b64encode(f"{account}:password".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class Desk:
    """One agent's HTTP view of the simulator."""

    def __init__(self, http: aiohttp.ClientSession, sim: Simulator, account: str) -> None:
        self.http = http
        self.base = f"{sim.base_url}/api/v2/me/smssessions"
        self.headers = auth(account)

    async def get(self, path: str = "") -> tuple[int, Any]:
        async with self.http.get(self.base + path, headers=self.headers) as response:
            return response.status, await response.json()

    async def states(self) -> dict[str, str]:
        """Session id -> state, as this agent's list shows them."""
        _, body = await self.get("?fields=id,state")
        return {item["id"]: item["state"] for item in body["smssessions"]}

    async def state(self, session_id: str) -> str:
        status, body = await self.get(f"/{session_id}")
        assert status == 200, body
        state: str = body["smssession"]["state"]
        return state

    async def messages(self, session_id: str) -> list[dict[str, Any]]:
        status, body = await self.get(f"/{session_id}/messages")
        assert status == 200, body
        messages: list[dict[str, Any]] = body["messages"]
        return messages

    async def do(self, session_id: str, **operation: Any) -> dict[str, Any]:
        url = f"{self.base}/{session_id}"
        async with self.http.post(url, json=operation, headers=self.headers) as response:
            body: dict[str, Any] = await response.json()
            return body

    async def gone(self, session_id: str) -> bool:
        """Whether the session answers 404 / statusCode 6 everywhere and is not listed."""
        answers = [await self.get(f"/{session_id}"), await self.get(f"/{session_id}/messages")]
        unlisted = session_id not in await self.states()
        return unlisted and all(
            status == 404 and body["statusCode"] == 6 for status, body in answers
        )


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    async with Simulator(SimulatorOptions(agents=3, seed=4, revoked_s=REVOKED_S)) as sim:
        yield sim


def chatting(sim: Simulator, account: str = "agent1", texts: int = 2) -> str:
    """A Chatting session of `account` with both joins and a few customer texts."""
    session_id = sim.world.create_session(account)
    sim.world.append_message(session_id, "ParticipantJoined", sender="Customer")
    sim.world.append_message(session_id, "ParticipantJoined", sender="Agent")
    for number in range(texts):
        sim.world.append_message(session_id, "Text", text=f"line {number}")
    return session_id


async def admin(
    http: aiohttp.ClientSession, sim: Simulator, path: str, body: Any = None
) -> tuple[int, Any]:
    url = f"{sim.base_url}/_sim/{path}"
    if body is None:
        async with http.get(url) as response:
            return response.status, await response.json()
    async with http.post(url, json=body) as response:
        return response.status, await response.json()


async def test_transfer_revokes_the_old_view_then_forgets_it(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """The old agent sees Revoked (readable) for revoked_s, then 404; the new one has the log."""
    old, new = Desk(http, simulator, "agent1"), Desk(http, simulator, "agent2")
    session_id = chatting(simulator)
    assert await old.do(session_id, operationName="Transfer", targetPath="/users/agent2") == {
        "statusCode": 0
    }
    assert await old.states() == {session_id: "Revoked"}
    assert await new.states() == {session_id: "Chatting"}
    log = await new.messages(session_id)
    assert [(m["index"], m["type"]) for m in log] == [
        (1, "ParticipantJoined"),
        (2, "ParticipantJoined"),
        (3, "Text"),
        (4, "Text"),
        (5, "ParticipantLeft"),
        (6, "ParticipantJoined"),
    ]
    assert log[-1]["from"]["nickname"] == simulator.world.accounts["agent2"].first_name
    assert await old.messages(session_id) == log
    await asyncio.sleep(REVOKED_S + 0.1)
    assert await old.gone(session_id)
    assert await new.state(session_id) == "Chatting"


async def test_gone_after_leave_forgets_at_once(http: aiohttp.ClientSession) -> None:
    """With gone_after_leave the old agent gets 404 at once, and a Completed view vanishes."""
    options = SimulatorOptions(agents=2, gone_after_leave=True)
    async with Simulator(options) as sim:
        old, new = Desk(http, sim, "agent1"), Desk(http, sim, "agent2")
        session_id = chatting(sim)
        await old.do(session_id, operationName="Transfer", targetPath="/users/agent2")
        assert await old.gone(session_id)
        assert await new.state(session_id) == "Chatting"
        assert (await new.do(session_id, operationName="Complete"))["statusCode"] == 0
        assert await new.gone(session_id)


async def test_completed_views_linger_by_default(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """Without gone_after_leave a Completed session stays listed and readable."""
    desk = Desk(http, simulator, "agent1")
    session_id = chatting(simulator)
    await desk.do(session_id, operationName="Complete")
    await asyncio.sleep(REVOKED_S + 0.1)
    assert await desk.states() == {session_id: "Completed"}
    assert (await desk.messages(session_id))[-1]["type"] == "TranscriptSaveDone"


async def test_conference_shows_the_session_to_both_until_the_guest_leaves(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """Invite lists it for both; the guest's Leave gives it Completed while the owner goes on."""
    owner, guest = Desk(http, simulator, "agent1"), Desk(http, simulator, "agent2")
    session_id = chatting(simulator)
    reply = await owner.do(session_id, operationName="Invite", targetPath="/users/agent2")
    assert reply["statusCode"] == 0
    assert await owner.states() == await guest.states() == {session_id: "Chatting"}
    await guest.do(session_id, operationName="SendMessage", text="hello from the guest")
    assert await owner.messages(session_id) == await guest.messages(session_id)
    assert (await guest.do(session_id, operationName="Leave"))["statusCode"] == 0
    assert await guest.state(session_id) == "Completed"
    assert await owner.state(session_id) == "Chatting"
    await owner.do(session_id, operationName="SendMessage", text="still here")
    log = await owner.messages(session_id)
    assert [(m["type"], m["visibility"], m.get("text")) for m in log[4:]] == [
        ("ParticipantJoined", "All", None),
        ("Text", "All", "hello from the guest"),
        ("ParticipantLeft", "All", None),
        ("Text", "All", "still here"),
    ]


async def test_consult_is_for_agents_only(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """A consultant's join, messages and leave are agents-only; its leave ends only its view."""
    owner, consultant = Desk(http, simulator, "agent1"), Desk(http, simulator, "agent3")
    session_id = chatting(simulator)
    await owner.do(session_id, operationName="Consult", targetPath="/users/agent3")
    assert await consultant.states() == {session_id: "Chatting"}
    await consultant.do(session_id, operationName="SendMessage", text="refund is fine")
    await consultant.do(session_id, operationName="Leave")
    log = await owner.messages(session_id)
    assert [(m["type"], m["visibility"]) for m in log[4:]] == [
        ("ParticipantJoined", "Agents"),
        ("Text", "Agents"),
        ("ParticipantLeft", "Agents"),
    ]
    assert (await consultant.state(session_id), await owner.state(session_id)) == (
        "Completed",
        "Chatting",
    )


async def test_complete_by_a_guest_ends_it_for_everyone(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """Complete by any agent: every view Completed, TranscriptSaveDone at the end."""
    owner, guest = Desk(http, simulator, "agent1"), Desk(http, simulator, "agent2")
    session_id = chatting(simulator)
    await owner.do(session_id, operationName="Invite", targetPath="/users/agent2")
    assert (await guest.do(session_id, operationName="Complete"))["statusCode"] == 0
    assert (await owner.state(session_id), await guest.state(session_id)) == (
        "Completed",
        "Completed",
    )
    assert (await owner.messages(session_id))[-1]["type"] == "TranscriptSaveDone"


async def test_queue_then_pickup_continues_the_same_session(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """Queued: in no list (after Revoked); picked up: the new agent's, same id, indices go on."""
    desks = [Desk(http, simulator, f"agent{number}") for number in (1, 2, 3)]
    session_id = chatting(simulator)
    await desks[0].do(session_id, operationName="Transfer", queueName="Billing")
    assert await desks[0].states() == {session_id: "Revoked"}
    await asyncio.sleep(REVOKED_S + 0.1)
    for desk in desks:
        assert await desk.gone(session_id)
    _, views = await admin(http, simulator, "views")
    assert views["sessions"] == [
        {"session_id": session_id, "accounts": ["agent1"], "ended": False, "queued": True}
    ]
    status, entry = await admin(http, simulator, f"sessions/{session_id}/pickup", {"to": "agent3"})
    assert (status, entry["accounts"], entry["queued"]) == (200, ["agent1", "agent3"], False)
    assert await desks[2].states() == {session_id: "Chatting"}
    log = await desks[2].messages(session_id)
    assert [m["index"] for m in log] == list(range(1, 7))
    assert [m["type"] for m in log[4:]] == ["ParticipantLeft", "ParticipantJoined"]


async def test_admin_moves_sessions_and_lists_views(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """The /_sim move routes do what the operations do; /_sim/views names every viewer."""
    session_id = chatting(simulator)
    moves: list[tuple[str, dict[str, str]]] = [
        ("conference", {"to": "agent2"}),
        ("leave", {"account": "agent2"}),
        ("consult", {"to": "agent3"}),
        ("leave", {"account": "agent3"}),
        ("transfer", {"to": "agent2"}),
    ]
    for move, body in moves:
        status, _ = await admin(http, simulator, f"sessions/{session_id}/{move}", body)
        assert status == 200, move
    states = [await Desk(http, simulator, f"agent{n}").states() for n in (1, 2, 3)]
    assert states == [
        {session_id: "Revoked"},
        {session_id: "Chatting"},
        {session_id: "Completed"},
    ]
    await admin(http, simulator, f"sessions/{session_id}/end", {})
    _, views = await admin(http, simulator, "views")
    assert views["sessions"] == [
        {
            "session_id": session_id,
            "accounts": ["agent1", "agent2", "agent3"],
            "ended": True,
            "queued": False,
        }
    ]


@pytest.mark.parametrize(
    ("move", "body", "status"),
    [
        ("transfer", {"to": "nobody"}, 400),
        ("transfer", {"to": "agent1"}, 400),
        ("conference", {}, 400),
        ("leave", {"account": "agent2"}, 400),
        ("pickup", {"to": "agent2"}, 400),
    ],
)
async def test_admin_refuses_impossible_moves(
    simulator: Simulator, http: aiohttp.ClientSession, move: str, body: Any, status: int
) -> None:
    """Unknown or present targets, absent viewers and unqueued pick-ups answer 400, no change."""
    session_id = chatting(simulator)
    before = simulator.truth()
    answer, reply = await admin(http, simulator, f"sessions/{session_id}/{move}", body)
    assert (answer, set(reply)) == (status, {"error"})
    assert simulator.truth() == before
    answer, _ = await admin(http, simulator, f"sessions/0000NOPE00000000/{move}", body)
    assert answer == 404


async def test_consult_then_transfer_hands_it_to_the_consultant(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """Transfer to a consultant already chatting: it takes over without joining twice."""
    owner, consultant = Desk(http, simulator, "agent1"), Desk(http, simulator, "agent2")
    session_id = chatting(simulator)
    await owner.do(session_id, operationName="Consult", targetPath="/users/agent2")
    assert await owner.do(session_id, operationName="Transfer", targetPath="/users/agent2") == {
        "statusCode": 0
    }
    assert (await owner.state(session_id), await consultant.state(session_id)) == (
        "Revoked",
        "Chatting",
    )
    await consultant.do(session_id, operationName="SendMessage", text="I can help")
    log = await consultant.messages(session_id)
    assert [(m["type"], m["visibility"]) for m in log[4:]] == [
        ("ParticipantJoined", "Agents"),
        ("ParticipantLeft", "All"),
        ("Text", "All"),
    ]
    assert (await owner.do(session_id, operationName="SendMessage", text="x"))["statusCode"] == 2
