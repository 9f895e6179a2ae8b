"""Team mode over real HTTP: supervisors monitor agents and get their own views of sessions."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import aiohttp
import pytest

from gws_simulator import Simulator, SimulatorOptions

REVOKED_S = 0.3
Supervised = Callable[..., AbstractAsyncContextManager[Simulator]]


class Client:
    """One account's HTTP access to the simulator (Basic auth on every request)."""

    def __init__(self, http: aiohttp.ClientSession, sim: Simulator, account: str) -> None:
        self.http = http
        self.api = f"{sim.base_url}/api/v2"
        self.account = account
        token = base64.b64encode(f"{account}:password".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}"}

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.http.get(self.api + path, headers=self.headers) as response:
            return response.status, await response.json()

    async def post(self, path: str, **body: Any) -> dict[str, Any]:
        async with self.http.post(self.api + path, json=body, headers=self.headers) as response:
            answer: dict[str, Any] = await response.json()
            return answer

    async def user_id(self, account: str | None = None) -> str:
        """The user id of `account` (default: this client's own, from `GET /me`)."""
        if account is None:
            _, body = await self.get("/me")
            return str(body["user"]["id"])
        _, body = await self.get(f"/contacts?name={account}&type=User")
        return str(body["contacts"][0]["id"])

    async def monitor(self, agent: str, operation: str = "Monitor", **params: Any) -> int:
        """Start monitoring `agent` (an account name); the statusCode."""
        path = f"/users/{await self.user_id(agent)}/channels/smssession"
        answer = await self.post(path, operationName=operation, **params)
        return int(answer["statusCode"])

    async def cancel(self, agent: str) -> int:
        return await self.monitor(agent, "CancelSupervisorMonitoring")

    async def sessions(self) -> dict[str, dict[str, Any]]:
        """Session id -> resource, as this account's list shows them."""
        status, body = await self.get("/me/smssessions?fields=*")
        assert status == 200, body
        return {item["id"]: item for item in body["smssessions"]}

    async def states(self) -> dict[str, str]:
        return {key: item["state"] for key, item in (await self.sessions()).items()}

    async def messages(self, session_id: str) -> list[dict[str, Any]]:
        status, body = await self.get(f"/me/smssessions/{session_id}/messages")
        assert status == 200, body
        messages: list[dict[str, Any]] = body["messages"]
        return messages

    async def do(self, session_id: str, operation: str, **params: Any) -> int:
        answer = await self.post(f"/me/smssessions/{session_id}", operationName=operation, **params)
        return int(answer["statusCode"])


@pytest.fixture
def supervised() -> Supervised:
    """A simulator with three agents and two supervisors; options may be overridden."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Simulator]:
        options = {"agents": 3, "supervisors": 2, "seed": 5, "revoked_s": REVOKED_S} | overrides
        async with Simulator(SimulatorOptions(**options)) as sim:
            yield sim

    return start


@pytest.fixture
async def simulator(supervised: Supervised) -> AsyncIterator[Simulator]:
    async with supervised() as sim:
        yield sim


def chatting(sim: Simulator, account: str = "agent1") -> str:
    """A new Chatting session of `account` with both joins and one customer text."""
    session_id = sim.world.create_session(account)
    sim.world.append_message(session_id, "ParticipantJoined", sender="Customer")
    sim.world.append_message(session_id, "ParticipantJoined", sender="Agent")
    sim.world.append_message(session_id, "Text", text="hello")
    return session_id


def viewers(sim: Simulator, session_id: str) -> list[str]:
    """Every account that had a view of the session (what `/_sim/views` lists)."""
    return list(sim.world.interactions[session_id].viewers)


async def test_me_answers_each_role(simulator: Simulator, http: aiohttp.ClientSession) -> None:
    """`GET /me` answers ROLE_AGENT for agents and ROLE_SUPERVISOR for supervisors."""
    for account, role in (("agent1", "ROLE_AGENT"), ("supervisor1", "ROLE_SUPERVISOR")):
        _, body = await Client(http, simulator, account).get("/me")
        assert body["user"]["roles"] == [role]


async def test_all_chats_gives_every_next_session_of_two_agents(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """AllChats on two agents: their three new sessions all reach the supervisor, Chatting."""
    boss = Client(http, simulator, "supervisor1")
    assert await boss.monitor("agent1") == 0
    assert await boss.monitor("agent2", supervisorMonitoringMode="AllChats") == 0
    sessions = [chatting(simulator, "agent1"), chatting(simulator, "agent2")]
    sessions.append(chatting(simulator, "agent1"))
    assert await boss.states() == dict.fromkeys(sessions, "Chatting")
    assert await Client(http, simulator, "agent1").states() == {
        sessions[0]: "Chatting",
        sessions[2]: "Chatting",
    }
    assert [viewers(simulator, s) for s in sessions] == [
        ["agent1", "supervisor1"],
        ["agent2", "supervisor1"],
        ["agent1", "supervisor1"],
    ]
    ids = [await boss.user_id(agent) for agent in ("agent1", "agent2")]
    assert simulator.world.monitoring("supervisor1") == dict.fromkeys(ids, "Monitor")


async def test_silent_join_is_logged_for_supervisors_only_in_participants(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """The supervisor's join (visibility Supervisors) is in the log; only it lists itself."""
    boss, agent = Client(http, simulator, "supervisor1"), Client(http, simulator, "agent1")
    await boss.monitor("agent1", nickname="Quality")
    session_id = chatting(simulator)
    log = await boss.messages(session_id)
    # The session was created with its agent chatting: the supervisor joined before anyone.
    assert [(m["index"], m["type"], m["visibility"]) for m in log] == [
        (1, "ParticipantJoined", "Supervisors"),
        (2, "ParticipantJoined", "All"),
        (3, "ParticipantJoined", "All"),
        (4, "Text", "All"),
    ]
    assert (log[0]["from"]["type"], log[0]["from"]["nickname"]) == ("Agent", "Quality")
    assert await agent.messages(session_id) == log
    mine = (await boss.sessions())[session_id]["participants"]
    theirs = (await agent.sessions())[session_id]["participants"]
    assert [(p["type"], p.get("visibility")) for p in mine] == [
        ("Agent", None),
        ("Customer", None),
        ("Agent", "Supervisors"),
    ]
    assert [p["type"] for p in theirs] == ["Agent", "Customer"]
    assert (await agent.sessions())[session_id]["capabilities"][0] == "Transfer"
    assert (await boss.sessions())[session_id]["capabilities"] == ["Leave"]


async def test_next_chat_stops_after_one_session(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """NextChat gives the agent's next session, then monitoring of that agent is over."""
    boss = Client(http, simulator, "supervisor1")
    assert await boss.monitor("agent1", supervisorMonitoringMode="NextChat") == 0
    first, second = chatting(simulator), chatting(simulator)
    assert await boss.states() == {first: "Chatting"}
    assert second not in await boss.states()
    assert simulator.world.monitoring("supervisor1") == {}


@pytest.mark.parametrize(
    ("account", "target", "status_code"),
    [
        ("agent2", "agent1", 5),  # an agent may not monitor
        ("supervisor1", "nobody", 6),  # unknown user
        ("supervisor1", "supervisor2", 3),  # not an agent
    ],
)
async def test_monitor_refusals(
    simulator: Simulator, http: aiohttp.ClientSession, account: str, target: str, status_code: int
) -> None:
    """Monitor answers 5 without the role, 6 for an unknown user, 3 for a non-agent."""
    client = Client(http, simulator, account)
    user_id = simulator.world.accounts[target].user_id if target != "nobody" else "0" * 32
    path = f"/users/{user_id}/channels/smssession"
    answer = await client.post(path, operationName="Monitor")
    assert answer["statusCode"] == status_code
    assert set(answer) == {"statusCode", "statusMessage"}
    assert simulator.world.monitoring("supervisor1") == {}


@pytest.mark.parametrize(("repeat", "status_code"), [("ok", 0), ("error", 2)])
async def test_monitor_again_answers_as_configured_and_keeps_monitoring(
    supervised: Supervised, http: aiohttp.ClientSession, repeat: str, status_code: int
) -> None:
    """A repeated Monitor answers 0 (`ok`) or 2 (`error`); monitoring goes on either way."""
    async with supervised(monitor_repeat=repeat) as sim:
        boss = Client(http, sim, "supervisor1")
        assert await boss.monitor("agent1") == 0
        assert await boss.monitor("agent1") == status_code
        session_id = chatting(sim)
        assert await boss.states() == {session_id: "Chatting"}


async def test_cancel_ends_new_views_but_keeps_the_current(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """After Cancel no new session arrives; the one already seen stays; Cancel again is 2."""
    boss = Client(http, simulator, "supervisor1")
    await boss.monitor("agent1")
    seen = chatting(simulator)
    assert await boss.cancel("agent1") == 0
    unseen = chatting(simulator)
    assert await boss.states() == {seen: "Chatting"}
    assert viewers(simulator, unseen) == ["agent1"]
    assert await boss.cancel("agent1") == 2


async def test_running_session_is_listed_and_can_be_intruded(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """A session older than Monitor: not given, listed by GetAgentInteractions, Intrude joins."""
    boss = Client(http, simulator, "supervisor1")
    running = chatting(simulator)
    simulator.world.sessions[running].user_data["topic"] = "billing"
    await boss.monitor("agent1")
    assert await boss.states() == {}
    agent_id = await boss.user_id("agent1")
    status, body = await boss.get(f"/users/{agent_id}?subresources=smssessions")
    assert status == 200
    (listed,) = body["user"]["smssessions"]
    assert (listed["id"], listed["userData"], listed["capabilities"]) == (
        running,
        {"topic": "billing"},
        [],
    )
    assert len(listed["receivedDate"]) == len("2015-11-09 15:20:04.000+0200")
    path = f"/users/{agent_id}/smssessions/{running}"
    assert (await boss.post(path, operationName="Intrude"))["statusCode"] == 0
    view = (await boss.sessions())[running]
    assert (view["state"], view["capabilities"]) == ("Invited", ["Accept", "Leave"])
    assert await boss.do(running, "Accept") == 0
    assert await boss.states() == {running: "Chatting"}
    last = (await boss.messages(running))[-1]
    assert (last["type"], last["visibility"]) == ("ParticipantJoined", "Supervisors")


async def test_intrude_refusals(simulator: Simulator, http: aiohttp.ClientSession) -> None:
    """Intrude: 1 without a mode and monitoring, 3 unmonitored, 6 unknown, 2 when inactive."""
    boss = Client(http, simulator, "supervisor1")
    running = chatting(simulator)
    agent_id = await boss.user_id("agent1")
    path = f"/users/{agent_id}/smssessions/{running}"
    assert (await boss.post(path, operationName="Intrude"))["statusCode"] == 1
    answer = await boss.post(path, operationName="Intrude", supervisorVisibilityMode="Monitor")
    assert answer["statusCode"] == 3
    await boss.monitor("agent1")
    unknown = f"/users/{agent_id}/smssessions/0000XX0000000000"
    assert (await boss.post(unknown, operationName="Intrude"))["statusCode"] == 6
    simulator.world.end_session(running)
    assert (await boss.post(path, operationName="Intrude"))["statusCode"] == 2
    agent = Client(http, simulator, "agent2")
    status, body = await agent.get(f"/users/{agent_id}?subresources=smssessions")
    assert (status, body["statusCode"]) == (400, 5)


async def test_monitor_accept_invites_the_supervisor_first(
    supervised: Supervised, http: aiohttp.ClientSession
) -> None:
    """With monitor_accept the supervisor sees Invited, and joins only when it Accepts."""
    async with supervised(monitor_accept=True) as sim:
        boss = Client(http, sim, "supervisor1")
        await boss.monitor("agent1")
        session_id = chatting(sim)
        view = (await boss.sessions())[session_id]
        assert (view["state"], view["capabilities"]) == ("Invited", ["Accept", "Leave"])
        assert all(m["visibility"] == "All" for m in await boss.messages(session_id))
        assert await boss.do(session_id, "Accept", nickname="QA") == 0
        assert await boss.states() == {session_id: "Chatting"}
        last = (await boss.messages(session_id))[-1]
        assert (last["type"], last["visibility"], last["from"]["nickname"]) == (
            "ParticipantJoined",
            "Supervisors",
            "QA",
        )


async def test_invited_agent_session_reaches_the_supervisor_on_accept(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """An Invited session of a monitored agent reaches the supervisor when the agent Accepts."""
    boss, agent = Client(http, simulator, "supervisor1"), Client(http, simulator, "agent1")
    await boss.monitor("agent1")
    session_id = simulator.world.create_session("agent1", "Invited")
    assert await boss.states() == {}
    assert await agent.do(session_id, "Accept") == 0
    assert await boss.states() == {session_id: "Chatting"}
    types = [(m["type"], m["visibility"]) for m in await boss.messages(session_id)]
    assert types == [("ParticipantJoined", "All"), ("ParticipantJoined", "Supervisors")]


@pytest.mark.parametrize("gone_after_leave", [False, True])
async def test_completion_revokes_the_supervisor_view(
    supervised: Supervised, http: aiohttp.ClientSession, gone_after_leave: bool
) -> None:
    """Complete: the supervisor's view shows Revoked for revoked_s (none with gone_after_leave)."""
    async with supervised(gone_after_leave=gone_after_leave) as sim:
        boss, agent = Client(http, sim, "supervisor1"), Client(http, sim, "agent1")
        await boss.monitor("agent1")
        session_id = chatting(sim)
        assert await agent.do(session_id, "Complete") == 0
        if not gone_after_leave:
            view = (await boss.sessions())[session_id]
            assert (view["state"], view["participants"]) == ("Revoked", [])
            assert (await boss.messages(session_id))[-1]["type"] == "TranscriptSaveDone"
            await asyncio.sleep(REVOKED_S + 0.1)
        assert await boss.states() == {}
        status, body = await boss.get(f"/me/smssessions/{session_id}/messages")
        assert (status, body["statusCode"]) == (404, 6)


async def test_queue_revokes_and_a_monitored_pick_up_gives_a_new_view(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """Queued: Revoked after the supervisor's leave; picked up by agent2 (monitored): Chatting."""
    boss, agent = Client(http, simulator, "supervisor1"), Client(http, simulator, "agent1")
    await boss.monitor("agent1")
    await boss.monitor("agent2")
    session_id = chatting(simulator)
    assert await agent.do(session_id, "Transfer", queueName="Sales") == 0
    assert await boss.states() == {session_id: "Revoked"}
    tail = [(m["type"], m["visibility"]) for m in (await boss.messages(session_id))[-2:]]
    assert tail == [("ParticipantLeft", "All"), ("ParticipantLeft", "Supervisors")]
    await asyncio.sleep(REVOKED_S + 0.1)
    assert await boss.states() == {}
    async with http.post(
        f"{simulator.base_url}/_sim/sessions/{session_id}/pickup", json={"to": "agent2"}
    ) as response:
        assert (await response.json())["accounts"] == ["agent1", "supervisor1", "agent2"]
    assert await boss.states() == {session_id: "Chatting"}


async def test_transfer_between_monitored_agents_keeps_one_supervisor_view(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """agent1 -> agent2, both monitored: the supervisor's one view goes on, no second join."""
    boss, agent = Client(http, simulator, "supervisor1"), Client(http, simulator, "agent1")
    await boss.monitor("agent1")
    await boss.monitor("agent2")
    session_id = chatting(simulator)
    target = await agent.user_id("agent2")
    assert await agent.do(session_id, "Transfer", targetUri=f"/users/{target}") == 0
    assert await boss.states() == {session_id: "Chatting"}
    joins = [m for m in await boss.messages(session_id) if m["visibility"] == "Supervisors"]
    assert len(joins) == 1
    assert viewers(simulator, session_id) == ["agent1", "supervisor1", "agent2"]
    participants = (await boss.sessions())[session_id]["participants"]
    assert [p["nickname"] for p in participants if p["type"] == "Agent"] == [
        simulator.world.accounts["agent2"].first_name,
        simulator.world.accounts["supervisor1"].first_name,
    ]


async def test_supervisor_leave_ends_only_its_own_view(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """A supervisor's Leave: its ParticipantLeft (Supervisors), its view Completed; chat goes on."""
    boss, agent = Client(http, simulator, "supervisor1"), Client(http, simulator, "agent1")
    await boss.monitor("agent1")
    session_id = chatting(simulator)
    assert await boss.do(session_id, "SendMessage", text="hi") == 2
    assert await boss.do(session_id, "Leave") == 0
    assert await boss.states() == {session_id: "Completed"}
    assert await agent.states() == {session_id: "Chatting"}
    last = (await agent.messages(session_id))[-1]
    assert (last["type"], last["visibility"]) == ("ParticipantLeft", "Supervisors")
    assert await agent.do(session_id, "SendMessage", text="still here") == 0


@pytest.mark.parametrize("mode", ["Coach", "BargeIn"])
async def test_coach_and_barge_in_join_visibly_to_agents(
    simulator: Simulator, http: aiohttp.ClientSession, mode: str
) -> None:
    """Coach joins with visibility Agents, BargeIn with All; the agent then lists the supervisor."""
    boss, agent = Client(http, simulator, "supervisor1"), Client(http, simulator, "agent1")
    assert await boss.monitor("agent1", mode) == 0
    session_id = chatting(simulator)
    visibility = {"Coach": "Agents", "BargeIn": "All"}[mode]
    join = (await boss.messages(session_id))[0]
    assert (join["type"], join["visibility"]) == ("ParticipantJoined", visibility)
    participants = (await agent.sessions())[session_id]["participants"]
    assert [p.get("visibility") for p in participants] == [None, None, visibility]
    assert simulator.world.monitoring("supervisor1") == {await boss.user_id("agent1"): mode}


async def test_sessions_are_never_given_to_supervisors(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """No session is created for, transferred to or conferenced with a supervisor."""
    with pytest.raises(ValueError, match="not an agent"):
        simulator.world.create_session("supervisor1")
    agent = Client(http, simulator, "agent1")
    session_id = chatting(simulator)
    target = await agent.user_id("supervisor1")
    for operation in ("Transfer", "Invite", "Consult"):
        assert await agent.do(session_id, operation, targetUri=f"/users/{target}") == 10
    assert viewers(simulator, session_id) == ["agent1"]
