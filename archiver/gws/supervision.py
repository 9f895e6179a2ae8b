"""Supervisor operations of team mode, as documented for SMS (gws-push-and-team.md part B).

Every write here is one of the silent operations :data:`archiver.gws.client.ALLOWED_OPERATIONS`
permits: ``Monitor`` in ``AllChats`` mode, ``CancelSupervisorMonitoring``, ``Intrude`` with
``Monitor`` visibility, ``Accept`` and ``Leave``. Reads: the contacts look-up (user names to
ids), the supervisor's roles, and an agent's active SMS sessions (``GetAgentInteractions``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from archiver.errors import ProtocolError
from archiver.gws.client import API, GwsClient

CONTACTS_PAGE = 100
NAMES_PER_LOOK_UP = 50
SUPERVISOR_ROLE = "ROLE_SUPERVISOR"
AGENT_ROLE = "ROLE_AGENT"


@dataclass(frozen=True, slots=True)
class Agent:
    """A monitored agent: its GWS user id and user name."""

    id: str
    username: str


async def roles(client: GwsClient) -> list[str] | None:
    """The account's GWS roles (``GET /api/v2/me``), or None when GWS does not say."""
    body = await client.call("GET", f"{API}/me")
    user = body.get("user") if isinstance(body, Mapping) else None
    found = user.get("roles") if isinstance(user, Mapping) else None
    if not isinstance(found, list):
        return None
    return [str(role) for role in found]


async def agents_named(client: GwsClient, names: Iterable[str]) -> dict[str, Agent]:
    """The User contacts with these user names, by user name (missing names are left out)."""
    wanted = list(names)
    found: dict[str, Agent] = {}
    for start in range(0, len(wanted), NAMES_PER_LOOK_UP):
        batch = wanted[start : start + NAMES_PER_LOOK_UP]
        for contact in await _contacts(client, {"name": ",".join(batch), "type": "User"}):
            agent = _agent(contact)
            if agent is not None and agent.username in batch:
                found[agent.username] = agent
    return found


async def all_agents(client: GwsClient) -> list[Agent]:
    """Every User contact with the agent role (or no roles shown), as the supervisor sees them."""
    agents = []
    for contact in await _contacts(client, {"type": "User"}):
        shown = contact.get("roles")
        if isinstance(shown, list) and AGENT_ROLE not in shown:
            continue
        agent = _agent(contact)
        if agent is not None:
            agents.append(agent)
    return agents


async def monitor(client: GwsClient, agent_id: str, nickname: str | None) -> None:
    """Monitor the agent silently, every next session (``AllChats``)."""
    body: dict[str, Any] = {"operationName": "Monitor", "supervisorMonitoringMode": "AllChats"}
    if nickname:
        body["nickname"] = nickname
    await client.call("POST", _channel(agent_id), json=body)


async def cancel_monitoring(client: GwsClient, agent_id: str) -> None:
    """Stop monitoring the agent; sessions the supervisor is in are not left by this."""
    body = {"operationName": "CancelSupervisorMonitoring"}
    await client.call("POST", _channel(agent_id), json=body)


async def agent_sessions(client: GwsClient, agent_id: str) -> list[str]:
    """The ids of the agent's active SMS sessions (``GetAgentInteractions``)."""
    path = f"{API}/users/{quote(agent_id, safe='')}"
    body = await client.call("GET", path, params={"subresources": "smssessions"})
    user = body.get("user") if isinstance(body, Mapping) else None
    sessions = user.get("smssessions", []) if isinstance(user, Mapping) else None
    if not isinstance(sessions, list):
        raise ProtocolError("GetAgentInteractions gave no smssessions", url=client.base_url + path)
    ids = [entry.get("id") for entry in sessions if isinstance(entry, Mapping)]
    return [str(session_id) for session_id in ids if isinstance(session_id, str) and session_id]


async def intrude(client: GwsClient, agent_id: str, session_id: str) -> None:
    """Join an agent's running session as a silent monitor (it shows ``Invited`` next)."""
    path = f"{API}/users/{quote(agent_id, safe='')}/smssessions/{quote(session_id, safe='')}"
    body = {"operationName": "Intrude", "supervisorVisibilityMode": "Monitor"}
    await client.call("POST", path, json=body)


async def accept(client: GwsClient, session_id: str) -> None:
    """Accept a session the supervisor was invited into (after Intrude, or by Monitor)."""
    await _own_session(client, session_id, "Accept")


async def leave(client: GwsClient, session_id: str) -> None:
    """Leave a session; it goes on for the agent and the customer."""
    await _own_session(client, session_id, "Leave")


async def _own_session(client: GwsClient, session_id: str, operation: str) -> None:
    path = f"{API}/me/smssessions/{quote(session_id, safe='')}"
    await client.call("POST", path, json={"operationName": operation})


def _channel(agent_id: str) -> str:
    return f"{API}/users/{quote(agent_id, safe='')}/channels/smssession"


async def _contacts(client: GwsClient, query: Mapping[str, str]) -> list[Mapping[str, Any]]:
    """Every contact the query matches, page by page (``offset``/``limit``)."""
    found: list[Mapping[str, Any]] = []
    url = client.base_url + f"{API}/contacts"
    while True:
        params = {**query, "offset": str(len(found)), "limit": str(CONTACTS_PAGE)}
        body = await client.call("GET", f"{API}/contacts", params=params)
        page = body.get("contacts") if isinstance(body, Mapping) else None
        if not isinstance(page, list):
            raise ProtocolError("the contacts look-up gave no contacts array", url=url)
        found.extend(entry for entry in page if isinstance(entry, Mapping))
        total = body.get("totalCount")
        if len(page) < CONTACTS_PAGE or (isinstance(total, int) and len(found) >= total):
            return found


def _agent(contact: Mapping[str, Any]) -> Agent | None:
    user_id, name = contact.get("id"), contact.get("userName") or contact.get("name")
    if not isinstance(user_id, str) or not user_id or not isinstance(name, str):
        return None
    return Agent(user_id, name)
