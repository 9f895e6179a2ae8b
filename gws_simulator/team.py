"""The supervisor's HTTP surface (team notes B.1, B.3): contacts, users and monitoring.

Routes (all under `/api/v2`, so auth, CSRF, faults and stats apply as everywhere):
    GET  /contacts?name=a,b&type=User&offset=&limit=   users by exact `userName` (all without
                                                        `name`), `limit` 100 by default
    GET  /users/{userId}[?subresources=smssessions]     the user; with `smssessions`, its active
                                                        sessions (GetAgentInteractions)
    POST /users/{userId}/channels/smssession            Monitor, Coach, BargeIn,
                                                        CancelSupervisorMonitoring
    POST /users/{userId}/smssessions/{id}               Intrude

`{userId}` is the user id `GET /api/v2/me` gives (a user name is accepted too). Refusals follow
gws-api.md §5.5: 5 for a caller without the supervisor role, 6 for an unknown user or session,
3 for a target that is no agent or is not monitored, 2 for a state the request does not fit,
1 for a missing parameter, 10 for a malformed one, each with HTTP 400 (404 for 6) as the
agent operations answer. Decisions where the docs are silent: the contacts answer carries
`totalCount` and one `contacts` entry per user (`Account.contact_json`); a `type` other than
`User` finds nobody; an unknown `operationName` answers 2.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from gws_simulator.accounts import find_user
from gws_simulator.app import (
    WORLD_KEY,
    caller,
    count_param,
    json_response,
    outcome_response,
    read_payload,
)
from gws_simulator.operations import Outcome
from gws_simulator.supervision import MODES, SCOPES, SupervisionError, Watch
from gws_simulator.wire import format_timestamp, status_body
from gws_simulator.world import World

_DEFAULT_LIMIT = 100


def add_team_routes(app: web.Application) -> None:
    """Register the contacts, users and supervisor routes on the GWS application."""
    router = app.router
    router.add_get("/api/v2/contacts", get_contacts)
    router.add_get("/api/v2/users/{user_id}", get_user)
    router.add_post("/api/v2/users/{user_id}/channels/smssession", post_channel)
    router.add_post("/api/v2/users/{user_id}/{collection:smss?essions}/{session_id}", intrude)


def _refusal(status_code: int, message: str) -> web.Response:
    return outcome_response(Outcome(status_code, message))


async def get_contacts(request: web.Request) -> web.Response:
    """`GET /api/v2/contacts`: users matching `name` (a comma-separated list), a page of them."""
    world = request.app[WORLD_KEY]
    offset, limit = count_param(request, "offset", 0), count_param(request, "limit", _DEFAULT_LIMIT)
    if offset is None or limit is None:
        return _refusal(10, "Invalid parameter: offset and limit must be non-negative integers")
    users = list(world.accounts.values()) if request.query.get("type", "User") == "User" else []
    names = request.query.get("name")
    if names is not None:
        wanted = {name.strip() for name in names.split(",") if name.strip()}
        users = [user for user in users if user.username in wanted]
    page = [user.contact_json(world.base_url) for user in users[offset : offset + limit]]
    body = {"statusCode": 0, "totalCount": len(users), "contacts": page}
    return json_response(orjson.dumps(body))


async def get_user(request: web.Request) -> web.Response:
    """`GET /api/v2/users/{userId}`: the user, with `smssessions` for a supervisor asking."""
    world = request.app[WORLD_KEY]
    user_id = request.match_info["user_id"]
    account = find_user(world.accounts, user_id)
    if account is None:
        return json_response(status_body(6, f"User {user_id} not found"), status=404)
    user = account.user_json(world.base_url)
    wanted = {name.strip() for name in request.query.get("subresources", "").split(",")}
    if wanted & {"smssessions", "*"}:
        try:
            world.supervision.target(caller(), user_id)
        except SupervisionError as exc:
            return _refusal(exc.status_code, str(exc))
        user["smssessions"] = _active_sessions(world, account.username)
    return json_response(orjson.dumps({"statusCode": 0, "user": user}))


def _active_sessions(world: World, agent: str) -> list[dict[str, Any]]:
    """GetAgentInteractions' entries: the sessions `agent` has an open view of."""
    now = asyncio.get_running_loop().time()
    return [
        {
            "id": session.id,
            "receivedDate": format_timestamp(session.started_ms, world.utc_offset_minutes),
            "userData": session.user_data,
            "capabilities": [],
        }
        for session, view in world.listed_sessions(agent, now)
        if view.is_open()
    ]


def _optional_string(payload: dict[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is not None and not isinstance(value, str):
        raise SupervisionError(10, f"Invalid parameter: {key} must be a string")
    return value


async def _operation(request: web.Request) -> tuple[str, dict[str, Any]] | web.Response:
    """The request's operationName and body, or the response refusing it."""
    payload = await read_payload(request)
    if isinstance(payload, Outcome):
        return outcome_response(payload)
    name = payload.get("operationName")
    if not isinstance(name, str) or not name:
        return _refusal(1, "Missing parameter: operationName")
    return name, payload


async def post_channel(request: web.Request) -> web.Response:
    """`POST /api/v2/users/{userId}/channels/smssession`: start or cancel monitoring."""
    parsed = await _operation(request)
    if isinstance(parsed, web.Response):
        return parsed
    name, payload = parsed
    supervision = request.app[WORLD_KEY].supervision
    supervisor = caller()
    try:
        agent = supervision.target(supervisor, request.match_info["user_id"])
        if name in MODES:
            scope = _optional_string(payload, "supervisorMonitoringMode") or "AllChats"
            if scope not in SCOPES:
                raise SupervisionError(10, f"Invalid parameter: supervisorMonitoringMode {scope}")
            nickname = _optional_string(payload, "nickname") or None
            supervision.monitor(supervisor.username, agent.username, Watch(name, scope, nickname))
        elif name == "CancelSupervisorMonitoring":
            supervision.cancel(supervisor.username, agent.username)
        else:
            raise SupervisionError(2, f"Operation {name} is not valid")
    except SupervisionError as exc:
        return _refusal(exc.status_code, str(exc))
    return outcome_response(Outcome(0))


async def intrude(request: web.Request) -> web.Response:
    """`POST /api/v2/users/{userId}/smssessions/{id}` `Intrude`: join a running session."""
    parsed = await _operation(request)
    if isinstance(parsed, web.Response):
        return parsed
    name, payload = parsed
    world = request.app[WORLD_KEY]
    supervisor = caller()
    try:
        agent = world.supervision.target(supervisor, request.match_info["user_id"])
        if name != "Intrude":
            raise SupervisionError(2, f"Operation {name} is not valid")
        mode = _optional_string(payload, "supervisorVisibilityMode")
        session_id = request.match_info["session_id"]
        world.supervision.intrude(supervisor.username, agent.username, session_id, mode)
    except SupervisionError as exc:
        return _refusal(exc.status_code, str(exc))
    world.flush()
    return outcome_response(Outcome(0))
