"""Agent operations over real HTTP: capability checks, parameters, state transitions, effects."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from gws_simulator import Simulator, SimulatorOptions


def basic(username: str, password: str) -> str:
    """An HTTP Basic `Authorization` value."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


AGENT1 = {"Authorization": basic("agent1", "password")}
AGENT2 = {"Authorization": basic("agent2", "password")}
CONFERENCE_ONLY = (
    "SendToAgents",
    "SendStartTypingToAgentsNotification",
    "SendStopTypingToAgentsNotification",
    "SendCustomNoticeToAgents",
)


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    async with Simulator(SimulatorOptions(agents=2, seed=9)) as sim:
        yield sim


class Agent:
    """Talks to one session as agent1."""

    def __init__(self, sim: Simulator, http: aiohttp.ClientSession, session_id: str) -> None:
        self.sim = sim
        self.http = http
        self.url = f"{sim.base_url}/api/v2/me/smssessions/{session_id}"

    async def do(self, body: Any, headers: dict[str, str] = AGENT1) -> tuple[int, dict[str, Any]]:
        async with self.http.post(self.url, json=body, headers=headers) as response:
            return response.status, await response.json()

    async def session(self) -> dict[str, Any]:
        async with self.http.get(self.url, headers=AGENT1) as response:
            session: dict[str, Any] = (await response.json())["smssession"]
            return session

    async def messages(self) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.url}/messages", headers=AGENT1) as response:
            messages: list[dict[str, Any]] = (await response.json())["messages"]
            return messages


def chatting(sim: Simulator, http: aiohttp.ClientSession) -> Agent:
    session_id = sim.world.create_session("agent1")
    sim.world.append_message(session_id, "ParticipantJoined", sender="Customer")
    sim.world.append_message(session_id, "ParticipantJoined", sender="Agent")
    return Agent(sim, http, session_id)


async def test_accept_joins_the_agent(simulator: Simulator, http: aiohttp.ClientSession) -> None:
    """Invited offers Accept/Reject only; Accept makes it Chatting with the agent joined."""
    agent = Agent(simulator, http, simulator.world.create_session("agent1", state="Invited"))
    before = await agent.session()
    assert (before["state"], before["capabilities"]) == ("Invited", ["Accept", "Reject"])
    assert await agent.do({"operationName": "SendMessage", "text": "x"}) == (
        400,
        {"statusCode": 2, "statusMessage": "Operation SendMessage is not valid in state Invited"},
    )
    assert await agent.do({"operationName": "Accept", "nickname": "Ann"}) == (
        200,
        {"statusCode": 0},
    )
    after = await agent.session()
    assert after["state"] == "Chatting"
    assert {(p["type"], p["nickname"]) for p in after["participants"]} >= {("Agent", "Ann")}
    [joined] = await agent.messages()
    assert (joined["index"], joined["type"], joined["from"]["nickname"]) == (
        1,
        "ParticipantJoined",
        "Ann",
    )


async def test_reject_completes_without_participants(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """Reject turns an invitation Completed with empty participants and no messages."""
    agent = Agent(simulator, http, simulator.world.create_session("agent1", state="Invited"))
    assert (await agent.do({"operationName": "Reject"}))[1] == {"statusCode": 0}
    session = await agent.session()
    assert (session["state"], session["participants"], session["capabilities"]) == (
        "Completed",
        [],
        [],
    )
    assert await agent.messages() == []


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        ({"operationName": "SendMessage", "text": "Hello"}, ("Text", "text", "Hello", "All")),
        (
            {"operationName": "SendUrl", "url": "https://e.x/"},
            ("PushUrl", "url", "https://e.x/", "All"),
        ),
        ({"operationName": "SendStartTypingNotification"}, ("TypingStarted", None, None, "All")),
        ({"operationName": "SendStopTypingNotification"}, ("TypingStopped", None, None, "All")),
        (
            {"operationName": "SendCustomNotice", "noticeText": "Survey"},
            ("CustomNotice", "noticeText", "Survey", "All"),
        ),
    ],
)
async def test_send_operations_append_agent_messages(
    simulator: Simulator,
    http: aiohttp.ClientSession,
    operation: dict[str, str],
    expected: tuple[str, str | None, str | None, str],
) -> None:
    """Each send operation appends one message from the agent at the next index."""
    agent = chatting(simulator, http)
    assert await agent.do(operation) == (200, {"statusCode": 0})
    message = (await agent.messages())[-1]
    msg_type, key, words, visibility = expected
    assert (message["index"], message["type"], message["visibility"]) == (3, msg_type, visibility)
    assert message["from"]["type"] == "Agent"
    if key is not None:
        assert message[key] == words
    record = simulator.truth()[-1]
    assert (record["index"], record["type"], record["text"]) == (3, msg_type, words)


@pytest.mark.parametrize(
    ("operation", "code"),
    [
        ({}, 1),
        ({"operationName": "SendMessage"}, 1),
        ({"operationName": "SendMessage", "text": 5}, 10),
        ({"operationName": "SendUrl"}, 1),
        ({"operationName": "SendCustomNotice"}, 1),
        ({"operationName": "SetDisposition"}, 1),
        ({"operationName": "AttachUserData"}, 1),
        ({"operationName": "UpdateUserData", "userData": [1]}, 10),
        ({"operationName": "DeleteUserData"}, 1),
        ({"operationName": "DeleteUserData", "keys": [1]}, 10),
        ({"operationName": "Transfer"}, 1),
        ({"operationName": "Transfer", "queueName": "q", "messageType": "Text"}, 1),
        ({"operationName": "Transfer", "targetUri": "http://h/api/v2/users/nobody"}, 10),
        ({"operationName": "Invite"}, 1),
        ({"operationName": "Consult"}, 1),
        ({"operationName": "NoSuchOperation"}, 2),
        ({"operationName": "Accept"}, 2),
        *[({"operationName": name, "text": "t", "noticeText": "t"}, 2) for name in CONFERENCE_ONLY],
        ([1, 2], 10),
    ],
)
async def test_refused_operations_change_nothing(
    simulator: Simulator, http: aiohttp.ClientSession, operation: Any, code: int
) -> None:
    """Missing parameters answer 1, malformed ones 10, disallowed ones 2; nothing changes."""
    agent = chatting(simulator, http)
    session_before = await agent.session()
    status, body = await agent.do(operation)
    assert (status, body["statusCode"]) == (400, code)
    assert set(body) == {"statusCode", "statusMessage"}
    assert len(simulator.truth()) == 2
    assert await agent.session() == session_before


async def test_invalid_json_body_answers_10(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """A body that is not JSON answers statusCode 10."""
    agent = chatting(simulator, http)
    async with http.post(agent.url, data=b"{nope", headers=AGENT1) as response:
        assert response.status == 400
        assert (await response.json())["statusCode"] == 10


async def test_unknown_session_operation_answers_6(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """An operation on an unknown session answers 404 with statusCode 6."""
    agent = Agent(simulator, http, "0000ZZZZZZZZZZZZ")
    status, body = await agent.do({"operationName": "SendMessage", "text": "x"})
    assert (status, body["statusCode"]) == (404, 6)


async def test_consult_opens_agents_only_operations(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """Consult adds a hidden agent and a referenceId; the ...ToAgents operations then work."""
    agent = chatting(simulator, http)
    status, body = await agent.do({"operationName": "Consult", "targetPath": "/users/agent2"})
    assert status == 200
    assert set(body) == {"statusCode", "referenceId"}
    capabilities = (await agent.session())["capabilities"]
    assert set(CONFERENCE_ONLY) <= set(capabilities)
    for operation in (
        {"operationName": "SendToAgents", "text": "can I refund?"},
        {"operationName": "SendStartTypingToAgentsNotification"},
        {"operationName": "SendStopTypingToAgentNotification"},
        {"operationName": "SendCustomNoticeToAgents", "noticeText": "note"},
    ):
        assert (await agent.do(operation))[1] == {"statusCode": 0}
    messages = await agent.messages()
    assert [(m["type"], m["visibility"]) for m in messages[2:]] == [
        ("ParticipantJoined", "Agents"),
        ("Text", "Agents"),
        ("TypingStarted", "Agents"),
        ("TypingStopped", "Agents"),
        ("CustomNotice", "Agents"),
    ]
    assert messages[2]["from"]["nickname"] == simulator.world.accounts["agent2"].first_name


async def test_invite_is_visible_to_all_and_leave_in_conference_completes(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """Invite adds an agent visible to everyone; Leave in a conference ends it for this agent."""
    agent = chatting(simulator, http)
    user = simulator.world.accounts["agent2"]
    target = f"{simulator.base_url}/api/v2/users/{user.user_id}"
    status, body = await agent.do({"operationName": "Invite", "targetUri": target})
    assert (status, body["statusCode"]) == (200, 0)
    assert isinstance(body["referenceId"], int)
    assert (await agent.messages())[-1]["visibility"] == "All"
    assert (await agent.do({"operationName": "Leave"}))[1] == {"statusCode": 0}
    assert (await agent.session())["state"] == "Completed"


async def test_leave_alone_goes_to_left_chat_then_complete(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """Leave without a conference gives LeftChat; disposition still works; Complete ends it."""
    agent = chatting(simulator, http)
    assert (await agent.do({"operationName": "Leave"}))[1] == {"statusCode": 0}
    session = await agent.session()
    assert session["state"] == "LeftChat"
    assert session["capabilities"][:4] == ["Transfer", "Complete", "Leave", "InFocus"]
    assert (await agent.do({"operationName": "SendMessage", "text": "x"}))[1]["statusCode"] == 2
    assert (await agent.do({"operationName": "SetDisposition", "disposition": "Sold"}))[1] == {
        "statusCode": 0
    }
    assert (await agent.do({"operationName": "Complete"}))[1] == {"statusCode": 0}
    session = await agent.session()
    assert (session["state"], session["userData"]) == ("Completed", {"DispositionCode": "Sold"})
    types = [(m["index"], m["type"]) for m in await agent.messages()]
    assert types[-2:] == [(3, "ParticipantLeft"), (-1, "TranscriptSaveDone")]


@pytest.mark.parametrize("name", ["Complete", "LeaveAndComplete"])
async def test_complete_ends_with_transcript(
    simulator: Simulator, http: aiohttp.ClientSession, name: str
) -> None:
    """Complete and LeaveAndComplete: the agent leaves, Completed, TranscriptSaveDone at -1."""
    agent = chatting(simulator, http)
    assert (await agent.do({"operationName": name, "queueName": "Done"}))[1] == {"statusCode": 0}
    session = await agent.session()
    assert (session["state"], session["capabilities"], session["participants"]) == (
        "Completed",
        [],
        [],
    )
    messages = await agent.messages()
    assert [(m["index"], m["type"]) for m in messages[2:]] == [
        (3, "ParticipantLeft"),
        (-1, "TranscriptSaveDone"),
    ]
    assert (await agent.do({"operationName": "Complete"}))[1]["statusCode"] == 2


async def test_transfer_to_an_agent_moves_the_session(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """Transfer to a user hands the session to that account's list, same id and log; the old
    agent's list shows it Revoked."""
    agent = chatting(simulator, http)
    session_id = agent.url.rsplit("/", 1)[-1]
    user = simulator.world.accounts["agent2"]
    target = f"{simulator.base_url}/api/v2/users/{user.user_id}"
    assert (await agent.do({"operationName": "Transfer", "targetUri": target}))[1] == {
        "statusCode": 0
    }
    listing = f"{simulator.base_url}/api/v2/me/smssessions?fields=state"
    async with http.get(listing, headers=AGENT1) as response:
        assert (await response.json())["smssessions"] == [{"state": "Revoked"}]
    async with http.get(agent.url, headers=AGENT2) as response:
        assert (await response.json())["smssession"]["state"] == "Chatting"
    truth = simulator.truth()
    assert [(r["account"], r["index"], r["type"]) for r in truth[2:]] == [
        ("agent1", 3, "ParticipantLeft"),
        ("agent2", 4, "ParticipantJoined"),
    ]
    assert {r["session_id"] for r in truth} == {session_id}


async def test_transfer_to_a_queue_revokes_it_for_this_agent(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """Transfer to a queue leaves the session Revoked for the agent, with no capabilities."""
    agent = chatting(simulator, http)
    assert (await agent.do({"operationName": "Transfer", "queueName": "Billing"}))[1] == {
        "statusCode": 0
    }
    session = await agent.session()
    assert (session["state"], session["capabilities"]) == ("Revoked", [])
    assert (await agent.messages())[-1]["type"] == "ParticipantLeft"


async def test_user_data_operations(simulator: Simulator, http: aiohttp.ClientSession) -> None:
    """Attach and Update merge keys, Delete removes them, SetDisposition honours its key."""
    agent = chatting(simulator, http)
    steps: list[tuple[dict[str, Any], dict[str, Any]]] = [
        ({"operationName": "AttachUserData", "userData": {"a": 1, "b": "x"}}, {"a": 1, "b": "x"}),
        ({"operationName": "UpdateUserData", "userData": {"b": "y"}}, {"a": 1, "b": "y"}),
        ({"operationName": "DeleteUserData", "keys": ["a", "zz"]}, {"b": "y"}),
        (
            {
                "operationName": "SetDisposition",
                "disposition": "Sale",
                "dispositionKey": "DISP_KEY",
            },
            {"b": "y", "DISP_KEY": "Sale"},
        ),
        (
            {"operationName": "SetDisposition", "disposition": "Done"},
            {"b": "y", "DISP_KEY": "Sale", "DispositionCode": "Done"},
        ),
    ]
    for operation, user_data in steps:
        assert (await agent.do(operation))[1] == {"statusCode": 0}
        assert (await agent.session())["userData"] == user_data
    assert len(simulator.truth()) == 2


@pytest.mark.parametrize("name", ["InFocus", "SetInFocus"])
async def test_in_focus_is_accepted(
    simulator: Simulator, http: aiohttp.ClientSession, name: str
) -> None:
    """InFocus (and its SetInFocus spelling) succeed without changing anything."""
    agent = chatting(simulator, http)
    before = await agent.session()
    assert (await agent.do({"operationName": name}))[1] == {"statusCode": 0}
    assert await agent.session() == before
