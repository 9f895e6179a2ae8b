"""The GWS HTTP surface: `/api/v2` routes with Basic auth, JSESSIONID and optional CSRF.

Decisions where gws-api.md is silent: statusCodes 1, 2 and 10 come with HTTP 400, 6 with
404, 20 with 401; bad `startIndex`/`count` (negative or not an integer) answer statusCode 10
(input validation error); an unknown `operationName` answers 2 like any operation outside the
session's capabilities; the resource URI form `/api/v2/smssessions/{id}` (no `/me`) and the
single-s typo `smsessions` are served like the canonical `/api/v2/me/smssessions/{id}`.
An HTTP session ends on EndContactCenterSession or by the admin API, never by a timeout (past
50,000 the oldest are forgotten, ending nothing); its end ends the account's supervisor
monitoring (logout, team notes B.1), not its CometD clients.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets
import uuid
from collections import OrderedDict
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import CIMultiDict

from gws_simulator.accounts import Account
from gws_simulator.faults import INJECTOR_KEY, FaultInjector, fault_middleware
from gws_simulator.hostile import WAF_PAGE, OddResponse, render_listed, session_list_poison
from gws_simulator.operations import Outcome, perform
from gws_simulator.sessions import Session, View
from gws_simulator.stats import STATS_KEY, RecordedRequest, Stats, stats_middleware
from gws_simulator.wire import JSON_CONTENT_TYPE, envelope, status_body
from gws_simulator.world import World

VERSION = "8.5.200.50"
_SESSIONS = "{collection:smss?essions}"
_UNSAFE_METHODS = frozenset({"POST", "PUT", "DELETE", "PATCH"})
_MAX_HTTP_SESSIONS = 50_000
_ACCESS_DENIED = status_body(20, "Access denied")

WORLD_KEY: web.AppKey[World] = web.AppKey("world", World)


@dataclass(slots=True)
class HttpSession:
    """A servlet session: the JSESSIONID cookie, its user and its CSRF token."""

    id: str
    account: str
    csrf_token: str


class HttpSessions:
    """JSESSIONID store, oldest evicted first so cookie-less clients cannot grow it forever.

    `on_end` hears the account of each session invalidated (not of one evicted).
    """

    def __init__(self, on_end: Callable[[str], object] | None = None) -> None:
        self._sessions: OrderedDict[str, HttpSession] = OrderedDict()
        self._on_end = on_end

    def open(self, account: str) -> HttpSession:
        """A new session for `account`."""
        session = HttpSession(secrets.token_hex(16).upper(), account, str(uuid.uuid4()))
        self._sessions[session.id] = session
        if len(self._sessions) > _MAX_HTTP_SESSIONS:
            self._sessions.popitem(last=False)
        return session

    def find(self, session_id: str | None) -> HttpSession | None:
        """The live session with this id, if any."""
        if session_id is None:
            return None
        session = self._sessions.get(session_id)
        if session is not None:
            self._sessions.move_to_end(session_id)
        return session

    def invalidate(self, session_id: str) -> None:
        """End a session (EndContactCenterSession)."""
        session = self._sessions.pop(session_id, None)
        if session is not None and self._on_end is not None:
            self._on_end(session.account)

    def invalidate_account(self, account: str | None = None) -> int:
        """End every session of `account` (None: of everyone); how many ended."""
        ended = [s.id for s in self._sessions.values() if account in (None, s.account)]
        for session_id in ended:
            self.invalidate(session_id)
        return len(ended)


# The authenticated caller of the request being handled, set by `auth_middleware`; a context
# variable rather than request storage, whose typed keys differ across aiohttp 3.x releases.
_caller: ContextVar[tuple[Account, HttpSession]] = ContextVar("simulator_caller")
HTTP_SESSIONS_KEY: web.AppKey[HttpSessions] = web.AppKey("http_sessions", HttpSessions)
CSRF_KEY: web.AppKey[bool] = web.AppKey("csrf", bool)


def caller() -> Account:
    """The authenticated account of the `/api/v2` request being handled."""
    return _caller.get()[0]


def json_response(body: bytes, status: int = 200) -> web.Response:
    """A JSON response from ready bytes."""
    return web.Response(body=body, status=status, content_type=JSON_CONTENT_TYPE)


def build_app(
    world: World, injector: FaultInjector, stats: Stats, *, csrf: bool
) -> web.Application:
    """The aiohttp application with the GWS routes (admin routes are added by `admin`)."""
    app = web.Application(
        middlewares=[record_middleware, stats_middleware, fault_middleware, auth_middleware]
    )
    app[WORLD_KEY] = world
    app[INJECTOR_KEY] = injector
    app[STATS_KEY] = stats
    app[HTTP_SESSIONS_KEY] = HttpSessions(on_end=world.supervision.cancel_all)
    app[CSRF_KEY] = csrf
    router = app.router
    router.add_get("/api/v2/diagnostics/version", get_version)
    router.add_get("/api/v2/me", get_me)
    router.add_post("/api/v2/me", post_me)
    router.add_get(f"/api/v2/me/{_SESSIONS}", list_sessions)
    for prefix in ("/api/v2/me", "/api/v2"):
        router.add_get(f"{prefix}/{_SESSIONS}/{{session_id}}", get_session)
        router.add_post(f"{prefix}/{_SESSIONS}/{{session_id}}", post_session)
        router.add_get(f"{prefix}/{_SESSIONS}/{{session_id}}/messages", get_messages)
    return app


@web.middleware
async def record_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Record each `/api/v2` request, before any fault: account, method, path, operationName."""
    if request.path.startswith("/api/v2/"):
        account = _basic_account(request)
        if account is None and "Authorization" not in request.headers:
            http_session = request.app[HTTP_SESSIONS_KEY].find(request.cookies.get("JSESSIONID"))
            if http_session is not None:
                account = request.app[WORLD_KEY].accounts.get(http_session.account)
        operation = await _operation_name(request)
        username = account.username if account is not None else None
        record = RecordedRequest(username, request.method, request.path, operation)
        request.app[STATS_KEY].record(record)
    return await handler(request)


async def _operation_name(request: web.Request) -> str | None:
    """The `operationName` of a JSON object body, if any (the body stays readable).

    A body without a length, or over the size limit, is left for the handler to refuse.
    """
    size = request.content_length
    if not request.can_read_body or size is None or size > request.client_max_size:
        return None
    body = await request.read()
    if not body.lstrip().startswith(b"{"):
        return None
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    name = payload.get("operationName") if isinstance(payload, dict) else None
    return name if isinstance(name, str) else None


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Basic auth or a live JSESSIONID; CSRF check on unsafe methods; CSRF headers on GETs."""
    if not request.path.startswith("/api/v2/"):
        return await handler(request)
    sessions = request.app[HTTP_SESSIONS_KEY]
    csrf = request.app[CSRF_KEY]
    http_session = sessions.find(request.cookies.get("JSESSIONID"))
    # Spring's CSRF filter runs before authentication, so a bad token wins over bad credentials.
    if (
        csrf
        and request.method in _UNSAFE_METHODS
        and (http_session is None or request.headers.get("X-CSRF-TOKEN") != http_session.csrf_token)
    ):
        return web.Response(status=403, text="Missing or invalid Csrf token")
    new_cookie = False
    if request.path != "/api/v2/diagnostics/version":
        account = _basic_account(request)
        if account is None and "Authorization" not in request.headers and http_session:
            account = request.app[WORLD_KEY].accounts.get(http_session.account)
        if account is None:
            denied = json_response(_ACCESS_DENIED, status=401)
            denied.headers["WWW-Authenticate"] = 'Basic realm="GWS"'
            return denied
        if http_session is None or http_session.account != account.username:
            http_session = sessions.open(account.username)
            new_cookie = True
        token = _caller.set((account, http_session))
        try:
            response = await handler(request)
        finally:
            _caller.reset(token)
    else:
        response = await handler(request)
    if http_session is None or sessions.find(http_session.id) is None:
        return response
    if new_cookie:
        response.set_cookie("JSESSIONID", http_session.id, path="/", httponly=True)
    if csrf and request.method == "GET":
        response.headers["X-CSRF-HEADER"] = "X-CSRF-TOKEN"
        response.headers["X-CSRF-TOKEN"] = http_session.csrf_token
    return response


def _basic_account(request: web.Request) -> Account | None:
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, _, password = decoded.partition(":")
    return request.app[WORLD_KEY].authenticate(username, password)


async def get_version(request: web.Request) -> web.Response:
    """`GET /api/v2/diagnostics/version` (no auth)."""
    return json_response(b'{"statusCode":0,"version":"' + VERSION.encode() + b'"}')


async def get_me(request: web.Request) -> web.Response:
    """`GET /api/v2/me`: the logged-in user."""
    world = request.app[WORLD_KEY]
    user = _caller.get()[0].user_json(world.base_url)
    return json_response(orjson.dumps({"statusCode": 0, "user": user}))


async def post_me(request: web.Request) -> web.Response:
    """`POST /api/v2/me`: StartContactCenterSession / EndContactCenterSession."""
    payload = await read_payload(request)
    if isinstance(payload, Outcome):
        return outcome_response(payload)
    name = payload.get("operationName")
    if not isinstance(name, str) or not name:
        return outcome_response(Outcome(1, "Missing parameter: operationName"))
    if name == "StartContactCenterSession":
        channels = payload.get("channels", [])
        if not isinstance(channels, list):
            return outcome_response(Outcome(10, "Invalid parameter: channels must be a list"))
        return outcome_response(Outcome(0))
    if name == "EndContactCenterSession":
        http_session = _caller.get()[1]
        request.app[HTTP_SESSIONS_KEY].invalidate(http_session.id)
        response = outcome_response(Outcome(0))
        response.del_cookie("JSESSIONID", path="/")
        return response
    return outcome_response(Outcome(2, f"Operation {name} is not valid"))


async def list_sessions(request: web.Request) -> web.Response:
    """`GET /api/v2/me/smssessions[?fields=...]`: the agent's sessions, or their URIs.

    Each session shows as the caller's view of it: that view's state and capabilities.
    """
    world = request.app[WORLD_KEY]
    account = _caller.get()[0]
    now = asyncio.get_running_loop().time()
    listed = list(world.listed_sessions(account.username, now))
    injector = request.app[INJECTOR_KEY]
    if listed and injector.chance(injector.rates.vanish):
        request.app[STATS_KEY].faults["vanish"] += 1
        _, hidden = listed.pop(injector.pick(len(listed)))
        hidden.hidden_until = now + injector.rates.vanish_s
    fields = request.query.get("fields")
    if fields is None:
        uris = [f"{world.base_url}/api/v2/smssessions/{s.id}" for s, _ in listed]
        return json_response(orjson.dumps({"statusCode": 0, "uris": uris}))
    if fields.strip() == "*":
        if world.poisoner is None:
            items = [world.session_json(session, view) for session, view in listed]
            return json_response(envelope("smssessions", items))
        items = []
        for session, view in listed:
            poison = world.poisoner.listed()
            if poison is None:
                items.append(world.session_json(session, view))
            else:
                request.app[STATS_KEY].hostile[f"listed:{poison.name}"] += 1
                items.append(render_listed(world.session_dict(session, view), poison))
        items += session_list_poison(account.username)
        return _maybe_odd(request, "smssessions", items)
    wanted = [name.strip() for name in fields.split(",") if name.strip()]
    items = []
    for session, view in listed:
        full = world.session_dict(session, view)
        items.append(orjson.dumps({name: full[name] for name in wanted if name in full}))
    return json_response(envelope("smssessions", items))


def _find_session(request: web.Request) -> tuple[Session, View] | None:
    """The requested session and the caller's view of it, while the caller may read it."""
    world = request.app[WORLD_KEY]
    return world.find(_caller.get()[0].username, request.match_info["session_id"])


def _not_found(request: web.Request) -> web.Response:
    message = f"SMS session {request.match_info['session_id']} not found"
    return json_response(status_body(6, message), status=404)


async def get_session(request: web.Request) -> web.Response:
    """`GET /api/v2/me/smssessions/{id}`: one session (`smsession` key half the time in quirks)."""
    world = request.app[WORLD_KEY]
    found = _find_session(request)
    if found is None:
        return _not_found(request)
    key = b"smssession"
    if world.quirks and request.app[INJECTOR_KEY].chance(0.5):
        key = b"smsession"
    body = world.session_json(*found)
    return json_response(b'{"statusCode":0,"' + key + b'":' + body + b"}")


def count_param(request: web.Request, name: str, default: int) -> int | None:
    """A non-negative integer query parameter, `default` when absent; None when malformed."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value >= 0 else None


async def get_messages(request: web.Request) -> web.Response:
    """`GET .../{id}/messages?startIndex=&count=`: a contiguous slice of the transcript."""
    found = _find_session(request)
    if found is None:
        return _not_found(request)
    session = found[0]
    start = count_param(request, "startIndex", 1)
    count = count_param(request, "count", 0)
    if start is None or count is None:
        message = "Invalid parameter: startIndex and count must be non-negative integers"
        return json_response(status_body(10, message), status=400)
    first = max(start, 1) - 1
    available = len(session.messages)
    end = available if count == 0 else min(available, first + count)
    limit = request.app[INJECTOR_KEY].short_limit(end - first) if end > first else None
    if limit is not None:
        request.app[STATS_KEY].faults["short_page"] += 1
        end = first + limit
    items = [message.body for message in session.messages[first:end]]
    # TranscriptSaveDone rides along with any read that reaches the end of the log.
    if session.transcript is not None and end >= available:
        items.append(session.transcript.body)
    return _maybe_odd(request, "messages", items)


def _maybe_odd(request: web.Request, key: str, items: list[bytes]) -> web.Response:
    """The `key` envelope of `items`, or in hostile mode now and then an odd response to it."""
    poisoner = request.app[WORLD_KEY].poisoner
    odd = poisoner.odd_response() if poisoner is not None else None
    if odd is None:
        return json_response(envelope(key, items))
    request.app[STATS_KEY].hostile[f"response:{odd.name}"] += 1
    return odd_response(odd, key, items)


def odd_response(odd: OddResponse, key: str, items: list[bytes]) -> web.Response:
    """The response `odd` describes, for the `key` envelope of `items`."""
    real = envelope(key, items)
    body = {
        "status": status_body(1, "hostile"),
        "html": WAF_PAGE,
        "empty": b"",
        "bom": b"\xef\xbb\xbf" + real,
        "null_items": b'{"statusCode":0,"' + key.encode() + b'":null}',
    }.get(odd.body, real)
    headers: CIMultiDict[str] = CIMultiDict()
    if not any(name.lower() == "content-type" for name, _ in odd.headers):
        headers.add("Content-Type", JSON_CONTENT_TYPE)
    for name, value in odd.headers:
        headers.add(name, value)
    return web.Response(body=body, status=odd.status, headers=headers)


async def post_session(request: web.Request) -> web.Response:
    """`POST /api/v2/me/smssessions/{id}`: an agent operation."""
    found = _find_session(request)
    if found is None:
        return _not_found(request)
    payload = await read_payload(request)
    if isinstance(payload, Outcome):
        return outcome_response(payload)
    world = request.app[WORLD_KEY]
    outcome = perform(world, *found, payload)
    world.flush()
    return outcome_response(outcome)


async def read_payload(request: web.Request) -> dict[str, Any] | Outcome:
    """The request's JSON object body, or the statusCode 10 outcome refusing it."""
    try:
        payload = orjson.loads(await request.read() or b"{}")
    except orjson.JSONDecodeError:
        return Outcome(10, "Invalid JSON body")
    if not isinstance(payload, dict):
        return Outcome(10, "The body must be a JSON object")
    return payload


def outcome_response(outcome: Outcome) -> web.Response:
    """The HTTP response carrying an operation's outcome."""
    return json_response(outcome.body(), status=outcome.http_status)
