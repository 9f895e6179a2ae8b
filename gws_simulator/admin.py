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
    DELETE /_sim/sessions/{id}               remove the session from the world
    POST   /_sim/faults                      {rate or parameter name: number} -> current rates
    GET    /_sim/bayeux                      {"clients": [{clientId, account, subscriptions,
                                              queued, held}]}
    POST   /_sim/bayeux/expire               {"account"?} -> {"expired": n}: forget the
                                              account's (or every) CometD client

Errors answer `{"error": "..."}` with HTTP 400 (bad input) or 404 (unknown session).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from gws_simulator.app import json_response

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
    router.add_post("/_sim/faults", set_faults)
    router.add_get("/_sim/bayeux", get_bayeux)
    router.add_post("/_sim/bayeux/expire", expire_bayeux)


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
    """Make a session disappear: it leaves the list and reads answer statusCode 6."""
    world = request.app[SIMULATOR_KEY].world
    session_id = request.match_info["session_id"]
    if session_id not in world.sessions:
        return _error(f"unknown session {session_id}", status=404)
    world.remove_session(session_id)
    return json_response(orjson.dumps({"removed": session_id}))


async def set_faults(request: web.Request) -> web.Response:
    """Change fault rates at run time; names are `FaultRates` fields."""
    faults = request.app[SIMULATOR_KEY].faults
    try:
        faults.rates = faults.rates.replace(await _payload(request))
    except (ValueError, TypeError) as exc:
        return _error(str(exc))
    return json_response(orjson.dumps(dataclasses.asdict(faults.rates)))


async def get_bayeux(request: web.Request) -> web.Response:
    """The live CometD clients."""
    clients = request.app[SIMULATOR_KEY].bayeux.clients()
    return json_response(orjson.dumps({"clients": clients}))


async def expire_bayeux(request: web.Request) -> web.Response:
    """Forget CometD clients: their next (or held) connect answers 402 with handshake advice."""
    simulator = request.app[SIMULATOR_KEY]
    try:
        payload = await _payload(request)
        account = payload.get("account")
        if account is not None and account not in simulator.world.accounts:
            raise ValueError(f"unknown account {account!r}")
    except ValueError as exc:
        return _error(str(exc))
    return json_response(orjson.dumps({"expired": simulator.bayeux.expire(account)}))
