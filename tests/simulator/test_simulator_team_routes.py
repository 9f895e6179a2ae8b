"""Team mode's surroundings: contacts, logout, the request log, faults, CometD, scenarios."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from gws_simulator import FaultRates, Scenario, Simulator, SimulatorOptions
from gws_simulator.stats import RecordedRequest
from gws_simulator.supervision import Watch

SMS = "/v2/me/smssessions"


def basic(account: str) -> dict[str, str]:
    token = base64.b64encode(f"{account}:password".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    async with Simulator(SimulatorOptions(agents=3, supervisors=1, seed=6)) as sim:
        yield sim


async def get(
    http: aiohttp.ClientSession, url: str, account: str | None = "supervisor1"
) -> tuple[int, Any]:
    headers = basic(account) if account else {}
    async with http.get(url, headers=headers) as response:
        return response.status, await response.json()


async def post(
    http: aiohttp.ClientSession, url: str, body: Any, account: str | None = "supervisor1"
) -> tuple[int, Any]:
    headers = basic(account) if account else {}
    async with http.post(url, json=body, headers=headers) as response:
        return response.status, await response.json(content_type=None)


async def monitor(http: aiohttp.ClientSession, sim: Simulator, agent: str) -> int:
    user_id = sim.world.accounts[agent].user_id
    url = f"{sim.base_url}/api/v2/users/{user_id}/channels/smssession"
    _, body = await post(http, url, {"operationName": "Monitor"})
    return int(body["statusCode"])


async def test_contacts_find_users_by_exact_name(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """`name=a,b` finds exactly those users; their ids are the ones `GET /me` gives."""
    url = f"{simulator.base_url}/api/v2/contacts?name=agent2,supervisor1,agent&type=User"
    status, body = await get(http, url, "agent1")
    assert (status, body["statusCode"], body["totalCount"]) == (200, 0, 2)
    by_name = {contact["userName"]: contact for contact in body["contacts"]}
    assert set(by_name) == {"agent2", "supervisor1"}
    _, me = await get(http, f"{simulator.base_url}/api/v2/me", "agent2")
    contact = by_name["agent2"]
    assert contact["id"] == me["user"]["id"]
    assert (contact["name"], contact["type"], contact["roles"]) == (
        "agent2",
        "User",
        ["ROLE_AGENT"],
    )
    assert contact["path"] == f"/contacts/{contact['id']}"
    assert by_name["supervisor1"]["roles"] == ["ROLE_SUPERVISOR"]


async def test_contacts_without_name_page_through_every_user(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """Without `name` every user is listed, `offset`/`limit` paging, `totalCount` the whole."""
    base = f"{simulator.base_url}/api/v2/contacts?type=User"
    _, everyone = await get(http, base)
    assert [c["userName"] for c in everyone["contacts"]] == [
        "agent1",
        "agent2",
        "agent3",
        "supervisor1",
    ]
    _, page = await get(http, f"{base}&offset=1&limit=2")
    assert (page["totalCount"], [c["userName"] for c in page["contacts"]]) == (
        4,
        ["agent2", "agent3"],
    )
    status, bad = await get(http, f"{base}&limit=-1")
    assert (status, bad["statusCode"]) == (400, 10)


async def test_logout_ends_monitoring(simulator: Simulator, http: aiohttp.ClientSession) -> None:
    """EndContactCenterSession: monitoring is over, the views already given stay."""
    assert await monitor(http, simulator, "agent1") == 0
    seen = simulator.world.create_session("agent1")
    url = f"{simulator.base_url}/api/v2/me"
    _, body = await post(http, url, {"operationName": "EndContactCenterSession"})
    assert body == {"statusCode": 0}
    assert simulator.world.monitoring("supervisor1") == {}
    unseen = simulator.world.create_session("agent1")
    _, listed = await get(http, f"{url}/smssessions?fields=id,state")
    assert listed["smssessions"] == [{"id": seen, "state": "Chatting"}]
    assert "supervisor1" not in simulator.world.interactions[unseen].viewers


async def test_http_session_expiry_ends_monitoring_and_the_cookie(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """`/_sim/http-sessions/expire`: the JSESSIONID stops working and monitoring ends."""
    assert await monitor(http, simulator, "agent1") == 0
    me = f"{simulator.base_url}/api/v2/me"
    assert (await get(http, me, account=None))[0] == 200  # the cookie alone logs in
    status, body = await post(
        http, f"{simulator.base_url}/_sim/http-sessions/expire", {"account": "supervisor1"}, None
    )
    assert (status, body["expired"] >= 1) == (200, True)
    assert (await get(http, me, account=None))[0] == 401
    assert simulator.world.monitoring("supervisor1") == {}
    _, admin = await get(http, f"{simulator.base_url}/_sim/monitoring", None)
    assert admin == {"monitoring": {"supervisor1": []}}
    assert await monitor(http, simulator, "agent1") == 0  # a new login monitors again
    _, admin = await get(http, f"{simulator.base_url}/_sim/monitoring", None)
    assert [entry["agent"] for entry in admin["monitoring"]["supervisor1"]] == ["agent1"]


async def test_request_log_records_accounts_paths_and_operation_names(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """Every /api/v2 request is kept as (account, method, path, operationName), and counted."""
    await monitor(http, simulator, "agent2")
    user_id = simulator.world.accounts["agent2"].user_id
    channel = f"/api/v2/users/{user_id}/channels/smssession"
    await post(http, simulator.base_url + channel, {"operationName": "CancelSupervisorMonitoring"})
    await get(http, f"{simulator.base_url}/api/v2/me", account=None)
    http.cookie_jar.clear()
    await get(http, f"{simulator.base_url}/api/v2/me", account=None)
    assert simulator.requests == [
        RecordedRequest("supervisor1", "POST", channel, "Monitor"),
        RecordedRequest("supervisor1", "POST", channel, "CancelSupervisorMonitoring"),
        RecordedRequest("supervisor1", "GET", "/api/v2/me", None),
        RecordedRequest(None, "GET", "/api/v2/me", None),
    ]
    assert simulator.stats()["operations"] == {"CancelSupervisorMonitoring": 1, "Monitor": 1}
    _, logged = await get(http, f"{simulator.base_url}/_sim/requests", None)
    assert logged["requests"][0] == {
        "account": "supervisor1",
        "method": "POST",
        "path": channel,
        "operation": "Monitor",
    }


async def test_faults_hit_the_supervisor_routes_and_are_logged(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """A faulted Monitor answers 503, is not carried out, and is still in the request log."""
    simulator.faults.rates = FaultRates(http_503=1.0)
    user_id = simulator.world.accounts["agent1"].user_id
    url = f"{simulator.base_url}/api/v2/users/{user_id}/channels/smssession"
    async with http.post(url, json={"operationName": "Monitor"}, headers=basic("supervisor1")) as r:
        assert r.status == 503
    simulator.faults.rates = FaultRates()
    assert simulator.world.monitoring("supervisor1") == {}
    assert simulator.requests[-1].operation == "Monitor"
    assert simulator.stats()["faults"] == {"http_503": 1}


async def test_supervisor_hears_of_monitored_sessions_on_cometd(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """A monitored session's opening and messages are published to the supervisor's client."""
    url = f"{simulator.base_url}/api/v2/notifications"
    handshake = {
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": ["long-polling"],
    }
    _, replies = await post(http, url, [handshake])
    client_id = replies[0]["clientId"]
    subscribe = {"channel": "/meta/subscribe", "clientId": client_id, "subscription": "/v2/me/*"}
    await post(http, url, [subscribe])
    await monitor(http, simulator, "agent1")
    session_id = simulator.world.create_session("agent1")
    simulator.world.append_message(session_id, "Text", text="hello")
    connect = {
        "channel": "/meta/connect",
        "clientId": client_id,
        "connectionType": "long-polling",
        "advice": {"timeout": 0},
    }
    _, replies = await post(http, url, [connect])
    events = [reply["data"] for reply in replies if reply["channel"] == SMS]
    kinds = [(event["messageType"], event["notificationType"]) for event in events]
    state, log = "SMSsessionStateChangeMessage", "MessageLogUpdated"
    assert kinds == [
        (state, "StatusChange"),
        (state, "ParticipantsUpdated"),
        (log, "NewMessages"),
        (log, "NewMessages"),
    ]
    assert {event["smssession"]["id"] for event in events[:2]} == {session_id}
    assert events[-1]["messages"][0]["text"] == "hello"


async def test_scripted_sessions_go_to_agents_and_reach_the_monitoring_supervisor() -> None:
    """With every kind of handoff: sessions go to agents only; each agent1 was in reaches the
    supervisor, whose view ends Revoked."""
    scenario = Scenario(
        sessions=24,
        messages=(4, 8),
        interval_s=0.002,
        linger_s=60,
        transfer_share=0.25,
        conference_share=0.2,
        consult_share=0.2,
        queue_share=0.25,
        queue_wait_s=0.01,
    )
    sim = Simulator(SimulatorOptions(agents=3, supervisors=1, seed=7, scenario=scenario))
    sim.world.supervision.monitor("supervisor1", "agent1", Watch("Monitor"))
    async with sim:
        await asyncio.wait_for(sim.scenario_finished(), 30)
        sessions = list(sim.world.interactions.values())
        assert len(sessions) == 24
        assert all(sim.world.accounts[s.account].is_agent for s in sessions)
        watched = [s for s in sessions if "agent1" in s.viewers]
        assert watched
        assert all("supervisor1" in s.viewers for s in watched)
        assert {s.views["supervisor1"].state for s in watched if "supervisor1" in s.views} == {
            "Revoked"
        }
