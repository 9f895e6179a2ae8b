"""The admin API under `/_sim/` (no auth, never faulted): truth, stats, status, world changes.

Routes:
    GET    /_sim/truth                       truth records as JSON lines
    GET    /_sim/stats                       `Simulator.stats()`
    GET    /_sim/status                      {"scenario_finished", "sessions", "messages"}
    POST   /_sim/scenario/stop               freeze the world (serving goes on) -> status
    POST   /_sim/sessions                    {"account", "state"?} -> {"session_id"}
    POST   /_sim/sessions/{id}/messages      {"type", "text"?, "url"?, "noticeText"?,
                                              "visibility"?, "sender"?} -> {"index"}
    POST   /_sim/sessions/{id}/end           {"transcript"?: bool} -> {"state": "Completed"}
    DELETE /_sim/sessions/{id}               take the session off every list (its history stays)
    POST   /_sim/sessions/{id}/transfer      {"to": account}: the handling agent transfers it
    POST   /_sim/sessions/{id}/conference    {"to": account}: the account joins (Invite)
    POST   /_sim/sessions/{id}/consult       {"to": account}: the account joins, agents only
    POST   /_sim/sessions/{id}/leave         {"account": account}: that viewer Leaves
    POST   /_sim/sessions/{id}/queue         {}: every agent leaves, the session waits queued
    POST   /_sim/sessions/{id}/pickup        {"to": account}: the account takes it from the queue
                                             (each of these six answers the session's views
                                             entry, as below)
    GET    /_sim/views                       {"sessions": [{"session_id", "accounts" (every
                                              account that ever had a view, supervisors too, in
                                              order of first view), "ended", "queued"}]}, every
                                              session ever
    POST   /_sim/faults                      {rate or parameter name: number} -> current rates
    GET    /_sim/bayeux                      {"clients": [{clientId, account, subscriptions,
                                              queued, held}]}
    POST   /_sim/bayeux/expire               {"account"?} -> {"expired": n}: forget the
                                              account's (or every) CometD client
    POST   /_sim/http-sessions/expire        {"account"?} -> {"expired": n}: end the account's
                                              (or every) HTTP session, as a timeout would: its
                                              JSESSIONID stops working (Basic auth still logs
                                              in anew) and its supervisor monitoring ends
    GET    /_sim/monitoring                  {"monitoring": {supervisor: [{"agent", "user_id",
                                              "mode", "scope", "nickname"}]}}, every supervisor
    GET    /_sim/requests                    {"requests": [{"account", "method", "path",
                                              "operation"}]}: `Simulator.requests`

Errors answer `{"error": "..."}` with HTTP 400 (bad input) or 404 (unknown session).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from gws_simulator import handoffs
from gws_simulator.app import HTTP_SESSIONS_KEY, json_response
from gws_simulator.sessions import Session, View

if TYPE_CHECKING:
    from gws_simulator.server import Simulator

SIMULATOR_KEY: web.AppKey[Simulator] = web.AppKey("simulator")


def add_admin_routes(app: web.Application, simulator: Simulator) -> None:
    """Register the `/_sim/` routes on the simulator's application."""
    app[SIMULATOR_KEY] = simulator
    router = app.router
    router.add_get("/_sim/truth", get_truth)
    router.add_get("/_sim/stats", get_stats)
    router.add_get("/_sim/status", get_status)
    router.add_post("/_sim/scenario/stop", stop_scenario)
    router.add_post("/_sim/sessions", create_session)
    router.add_post("/_sim/sessions/{session_id}/messages", append_message)
    router.add_post("/_sim/sessions/{session_id}/end", end_session)
    router.add_delete("/_sim/sessions/{session_id}", remove_session)
    for move in ("transfer", "conference", "consult", "leave", "queue", "pickup"):
        router.add_post(f"/_sim/sessions/{{session_id}}/{move}", move_session)
    router.add_get("/_sim/views", get_views)
    router.add_post("/_sim/faults", set_faults)
    router.add_get("/_sim/bayeux", get_bayeux)
    router.add_post("/_sim/bayeux/expire", expire_bayeux)
    router.add_post("/_sim/http-sessions/expire", expire_http_sessions)
    router.add_get("/_sim/monitoring", get_monitoring)
    router.add_get("/_sim/requests", get_requests)


def _error(message: str, status: int = 400) -> web.Response:
    return json_response(orjson.dumps({"error": message}), status=status)


async def _payload(request: web.Request) -> dict[str, Any]:
    try:
        payload = orjson.loads(await request.read() or b"{}")
    except orjson.JSONDecodeError as exc:
        raise ValueError("body is not JSON") from exc
    if not isinstance(payload, dict):
        raise ValueError("body must be a JSON object")
    return payload


def _words(payload: dict[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    return value


async def get_truth(request: web.Request) -> web.Response:
    """Every message created so far, one JSON object per line."""
    truth = request.app[SIMULATOR_KEY].truth()
    body = b"".join(orjson.dumps(record) + b"\n" for record in truth)
    return web.Response(body=body, content_type="application/x-ndjson")


async def get_stats(request: web.Request) -> web.Response:
    """Request and fault counters."""
    return json_response(orjson.dumps(request.app[SIMULATOR_KEY].stats()))


async def get_status(request: web.Request) -> web.Response:
    """Whether the scenario finished, and how many sessions and messages exist."""
    return json_response(orjson.dumps(_status(request.app[SIMULATOR_KEY])))


async def stop_scenario(request: web.Request) -> web.Response:
    """Stop the scenario driver for good; the status then holds the final message count."""
    simulator = request.app[SIMULATOR_KEY]
    await simulator.stop_scenario()
    return json_response(orjson.dumps(_status(simulator)))


def _status(simulator: Simulator) -> dict[str, Any]:
    return {
        "scenario_finished": simulator.is_scenario_finished(),
        "sessions": len(simulator.world.sessions),
        "messages": simulator.world.message_count(),
    }


async def create_session(request: web.Request) -> web.Response:
    """Open a session for an account."""
    world = request.app[SIMULATOR_KEY].world
    try:
        payload = await _payload(request)
        account = payload.get("account")
        if account not in world.accounts:
            raise ValueError(f"unknown account {account!r}")
        session_id = world.create_session(str(account), str(payload.get("state", "Chatting")))
    except ValueError as exc:
        return _error(str(exc))
    return json_response(orjson.dumps({"session_id": session_id}), status=201)


async def append_message(request: web.Request) -> web.Response:
    """Append a message to a session's log."""
    world = request.app[SIMULATOR_KEY].world
    session_id = request.match_info["session_id"]
    if session_id not in world.sessions:
        return _error(f"unknown session {session_id}", status=404)
    try:
        payload = await _payload(request)
        index = world.append_message(
            session_id,
            str(payload.get("type", "Text")),
            text=_words(payload, "text"),
            url=_words(payload, "url"),
            notice_text=_words(payload, "noticeText"),
            visibility=str(payload.get("visibility", "All")),
            sender=str(payload.get("sender", "Customer")),
        )
    except ValueError as exc:
        return _error(str(exc))
    world.flush()
    return json_response(orjson.dumps({"index": index}), status=201)


async def end_session(request: web.Request) -> web.Response:
    """Complete a session, with TranscriptSaveDone unless `"transcript": false`."""
    world = request.app[SIMULATOR_KEY].world
    session_id = request.match_info["session_id"]
    if session_id not in world.sessions:
        return _error(f"unknown session {session_id}", status=404)
    try:
        payload = await _payload(request)
    except ValueError as exc:
        return _error(str(exc))
    world.end_session(session_id, transcript=bool(payload.get("transcript", True)))
    world.flush()
    return json_response(orjson.dumps({"state": "Completed"}))


async def remove_session(request: web.Request) -> web.Response:
    """Make a session disappear: it leaves every list and reads answer statusCode 6."""
    world = request.app[SIMULATOR_KEY].world
    session_id = request.match_info["session_id"]
    if session_id not in world.sessions:
        return _error(f"unknown session {session_id}", status=404)
    world.remove_session(session_id)
    return json_response(orjson.dumps({"removed": session_id}))


async def move_session(request: web.Request) -> web.Response:
    """Transfer, conference, consult, leave, queue or pick up a session (the path's last part)."""
    world = request.app[SIMULATOR_KEY].world
    session_id = request.match_info["session_id"]
    session = world.sessions.get(session_id)
    if session is None:
        return _error(f"unknown session {session_id}", status=404)
    move = request.path.rsplit("/", 1)[-1]
    try:
        payload = await _payload(request)
        if move == "transfer":
            handoffs.transfer(world, session, _handling_view(session), _account(payload, "to"))
        elif move in ("conference", "consult"):
            handoffs.add_agent(world, session, _account(payload, "to"), move)
        elif move == "leave":
            account = _account(payload, "account")
            view = session.views.get(account)
            if view is None or view.state != "Chatting":
                raise ValueError(f"{account} is not chatting in session {session_id}")
            handoffs.leave(world, session, view)
        elif move == "queue":
            _handling_view(session)
            handoffs.queue(world, session)
        else:
            handoffs.pick_up(world, session, _account(payload, "to"))
    except ValueError as exc:
        return _error(str(exc))
    world.flush()
    return json_response(orjson.dumps(_views_entry(session)))


def _account(payload: dict[str, Any], key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key} must name an account")
    return value


def _handling_view(session: Session) -> View:
    """The handling account's view, which must still take part."""
    view = session.views.get(session.account)
    if view is None or not view.is_open():
        raise ValueError(f"session {session.id} has no agent handling it")
    return view


def _views_entry(session: Session) -> dict[str, Any]:
    return {
        "session_id": session.id,
        "accounts": list(session.viewers),
        "ended": session.ended,
        "queued": session.queued,
    }


async def get_views(request: web.Request) -> web.Response:
    """Every session ever created, with the accounts that had a view of it."""
    interactions = request.app[SIMULATOR_KEY].world.interactions.values()
    sessions = [_views_entry(session) for session in interactions]
    return json_response(orjson.dumps({"sessions": sessions}))


async def set_faults(request: web.Request) -> web.Response:
    """Change fault rates at run time; names are `FaultRates` fields."""
    faults = request.app[SIMULATOR_KEY].faults
    try:
        faults.rates = faults.rates.replace(await _payload(request))
    except (ValueError, TypeError) as exc:
        return _error(str(exc))
    return json_response(orjson.dumps(dataclasses.asdict(faults.rates)))


async def _account_of(request: web.Request) -> str | None:
    """The optional `account` of an admin payload; ValueError if it names nobody."""
    account = (await _payload(request)).get("account")
    if account is not None and account not in request.app[SIMULATOR_KEY].world.accounts:
        raise ValueError(f"unknown account {account!r}")
    return account


async def get_bayeux(request: web.Request) -> web.Response:
    """The live CometD clients."""
    clients = request.app[SIMULATOR_KEY].bayeux.clients()
    return json_response(orjson.dumps({"clients": clients}))


async def expire_bayeux(request: web.Request) -> web.Response:
    """Forget CometD clients: their next (or held) connect answers 402 with handshake advice."""
    simulator = request.app[SIMULATOR_KEY]
    try:
        account = await _account_of(request)
    except ValueError as exc:
        return _error(str(exc))
    return json_response(orjson.dumps({"expired": simulator.bayeux.expire(account)}))


async def expire_http_sessions(request: web.Request) -> web.Response:
    """End HTTP sessions as a server-side timeout would; their monitoring ends with them."""
    simulator = request.app[SIMULATOR_KEY]
    try:
        account = await _account_of(request)
    except ValueError as exc:
        return _error(str(exc))
    expired = request.app[HTTP_SESSIONS_KEY].invalidate_account(account)
    if account is not None:
        # Also when no session was live: the account is logged out either way.
        simulator.world.supervision.cancel_all(account)
    return json_response(orjson.dumps({"expired": expired}))


async def get_monitoring(request: web.Request) -> web.Response:
    """Who each supervisor monitors, in order of Monitor."""
    world = request.app[SIMULATOR_KEY].world
    monitoring = {
        name: [
            {
                "agent": agent,
                "user_id": world.accounts[agent].user_id,
                "mode": watch.mode,
                "scope": watch.scope,
                "nickname": watch.nickname,
            }
            for agent, watch in world.supervision.watches(name).items()
        ]
        for name, account in world.accounts.items()
        if account.is_supervisor
    }
    return json_response(orjson.dumps({"monitoring": monitoring}))


async def get_requests(request: web.Request) -> web.Response:
    """The `/api/v2` requests received so far (the newest `request_log` of them)."""
    requests = [record._asdict() for record in request.app[SIMULATOR_KEY].requests]
    return json_response(orjson.dumps({"requests": requests}))
