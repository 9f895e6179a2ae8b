"""The GWS client: the REST API as one agent account sees it.

One :class:`GwsClient` per agent account holds its :class:`~archiver.gws.transport.Transport`
(Basic header, cookie jar with JSESSIONID) and its CSRF token; the transport sends, and maps
every failure onto the error tree in :mod:`archiver.errors`. Failed requests are retried as
:mod:`archiver.gws.backoff` says, and an authentication failure re-logs in once per burst.
"""

from __future__ import annotations

import asyncio
import base64
import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, quote_plus

import orjson
import structlog

from archiver.config import Account
from archiver.errors import (
    AuthError,
    ForbiddenOperationError,
    GwsError,
    ProtocolError,
    UndecodableError,
)
from archiver.gws.backoff import retryable, retrying
from archiver.gws.models import (
    Malformed,
    MalformedPayload,
    Message,
    SmsSession,
    dumps,
    parse_message,
    parse_session,
    session_objects,
)
from archiver.gws.transport import GwsHost, Transport, endpoint_name, status_error
from archiver.gws.wire import KEPT_BODY_BYTES
from archiver.lifecycle import Resource

# GwsHost is re-exported: callers build the host and the clients on it from here.
__all__ = [
    "GwsClient",
    "GwsHost",
    "MessagePage",
    "SessionList",
    "parse_each",
    "parse_messages_body",
    "raw_text",
]

log = structlog.get_logger()

T = TypeVar("T")

API = "/api/v2"

# Every operation gws-archiver may send (README, "Read-only by construction"): team mode's
# silent supervision, the contact-centre session where a site needs one, and Interaction History
# reads. Anything else is refused before it is sent, whatever code path asks for it.
ALLOWED_OPERATIONS = frozenset(
    {
        "Monitor",
        "CancelSupervisorMonitoring",
        "Intrude",
        "Accept",
        "Leave",
        "StartContactCenterSession",
        "GetInteractionContent",
        "RetrieveAgentHistory",
    }
)
# Monitoring and intrusion stay silent: never Coach or BargeIn visibility.
SILENT_MODES = {
    "Monitor": ("supervisorMonitoringMode", ("AllChats", "NextChat")),
    "Intrude": ("supervisorVisibilityMode", ("Monitor",)),
}


def check_operation(body: object) -> None:
    """Raise ForbiddenOperationError unless ``body`` is an allowed, silent operation."""
    operation = body.get("operationName") if isinstance(body, Mapping) else None
    if operation not in ALLOWED_OPERATIONS:
        raise ForbiddenOperationError(f"refused to send operation {operation!r}")
    assert isinstance(body, Mapping)
    if operation in SILENT_MODES:
        key, silent = SILENT_MODES[operation]
        if body.get(key) not in silent:
            shown = body.get(key)
            raise ForbiddenOperationError(f"refused to send {operation} with {key} {shown!r}")


@dataclass(frozen=True, slots=True)
class SessionList:
    """The sessions an account has now, and any entries that could not be parsed."""

    sessions: list[SmsSession]
    rejected: list[Malformed]


@dataclass(frozen=True, slots=True)
class MessagePage:
    """One read of a session's message log."""

    messages: list[Message]
    rejected: list[Malformed]
    received: int  # entries in the response, parsed or not, TranscriptSaveDone excluded

    @property
    def next_index(self) -> int | None:
        """The cursor after this page: past its highest message or pinned entry (None: none)."""
        positions = [m.index for m in self.messages if m.index >= 1]
        positions += [r.index for r in self.rejected if r.index is not None]
        return max(positions) + 1 if positions else None


class GwsClient(Resource):
    """The GWS API as one agent sees it; an async context manager.

    ``transport`` is the account's HTTP identity, shared with its push client; ``login`` and
    ``csrf_headers`` are what push needs besides it.
    """

    def __init__(self, host: GwsHost, account: Account) -> None:
        self.host = host
        self.account = account
        self.base_url = host.config.base_url
        self.page_size = host.config.page_size
        authorization = "Basic " + base64.b64encode(
            f"{account.username}:{account.password.reveal()}".encode()
        ).decode("ascii")
        self.transport = Transport(host, authorization=authorization)
        self._csrf: tuple[str, str] | None = None
        # Re-login once per burst of auth failures: a failure seen under an older generation
        # was already handled by whoever re-logged in since.
        self._auth_generation = 0
        self._auth_lock = asyncio.Lock()
        # Called after every re-login: a new HTTP session (team mode monitors again then).
        self.on_renewed: Callable[[], None] | None = None
        # The last list read, by session id: (resource as JSON bytes, parsed). An entry equal to
        # the one before is not parsed again (most of a list is unchanged from read to read).
        # Bytes, not the decoded dicts: holding those until the next read would move tens of
        # thousands of objects a second into the collector's oldest generation, and every full
        # collection that follows costs more than the parsing saved.
        self._listed: dict[str, tuple[bytes, SmsSession]] = {}

    def __repr__(self) -> str:
        return f"GwsClient({self.base_url!r}, account={self.account.username!r})"

    async def close(self) -> None:
        """Close this account's HTTP session (not the shared pool); safe to call twice."""
        await self.transport.close()

    async def login(self) -> None:
        """Authenticate: GET /api/v2/me, keeping the JSESSIONID cookie and the CSRF token."""
        await self._request("GET", f"{API}/me")

    async def user_id(self) -> str:
        """The account's GWS user id (``GET /api/v2/me``), as history look-ups name agents."""
        body = await self.call("GET", f"{API}/me")
        user = body.get("user") if isinstance(body, Mapping) else None
        user_id = user.get("id") if isinstance(user, Mapping) else None
        if not isinstance(user_id, str | int) or isinstance(user_id, bool):
            raise ProtocolError("GET /api/v2/me gave no user id", url=f"{self.base_url}{API}/me")
        return str(user_id)

    async def list_sessions(self) -> SessionList:
        """The account's SMS sessions with all fields (``?fields=*``)."""
        body = await self.call("GET", f"{API}/me/smssessions", params={"fields": "*"})
        try:
            objects = session_objects(body)
        except MalformedPayload as exc:
            raise ProtocolError(str(exc), url=f"{self.base_url}{API}/me/smssessions") from exc
        before, listed = self._listed, {}
        sessions: list[SmsSession] = []
        rejected: list[Malformed] = []
        for obj in objects:
            key = obj.get("id") if isinstance(obj, dict) else None
            known = before.get(key) if isinstance(key, str) else None
            text = _entry_bytes(obj)
            if known is None or not text or known[0] != text:
                try:
                    known = (text, parse_session(obj))
                except MalformedPayload as exc:
                    rejected.append(Malformed(str(exc), raw_text(obj)))
                    continue
            listed[known[1].id] = known
            sessions.append(known[1])
        self._listed = listed
        return SessionList(sessions, rejected)

    async def get_session(self, session_id: str) -> SmsSession:
        """One session; raises NotFoundError when GWS no longer knows it."""
        path = f"{API}/me/smssessions/{quote(session_id, safe='')}"
        body = await self.call("GET", path)
        try:
            objects = session_objects(body)
            return parse_session(objects[0])
        except (MalformedPayload, IndexError) as exc:
            raise ProtocolError(f"session {session_id}: {exc}", url=self.base_url + path) from exc

    async def fetch_messages(self, session_id: str, start_index: int) -> MessagePage:
        """Up to ``page_size`` messages of a session from ``start_index`` on.

        A page that cannot be decoded as a whole is read again in halves, down to one message:
        the one that still cannot be decoded is pinned to its index and kept raw, and the
        healthy messages around it are read. A page whose unparseable entries would hold the
        cursor back is followed by a one-message read that pins the first of them.
        """
        page = await self._read_messages(session_id, start_index, self.page_size)
        cursor = page.next_index or start_index
        beyond_cursor = page.received - max(0, cursor - start_index)
        if beyond_cursor > 0 and any(r.index is None for r in page.rejected):
            # Unparseable entries after the last message would be read again on every poll.
            pinned = await self._read_messages(session_id, cursor, 1)
            if pinned.rejected and not pinned.messages:
                raws = {r.raw_json for r in pinned.rejected}
                others = [r for r in page.rejected if r.raw_json not in raws]
                return MessagePage(page.messages, others + pinned.rejected, page.received)
        return page

    async def _read_messages(self, session_id: str, start_index: int, count: int) -> MessagePage:
        path = messages_path(session_id)
        url = self.base_url + path
        while True:
            params = {"startIndex": str(start_index), "count": str(count)}
            try:
                body = await self.call("GET", path, params=params)
            except UndecodableError as exc:
                if count > 1:
                    count //= 2
                    continue
                return await self._pin_undecodable(path, params, exc)
            return parse_messages_body(body, url, start_index=start_index, count=count)

    async def _pin_undecodable(
        self, path: str, params: Mapping[str, str], first: UndecodableError
    ) -> MessagePage:
        """One message that cannot be decoded: read it once more; the same bytes pin it."""
        try:
            await self.call("GET", path, params=params)
        except UndecodableError as again:
            # A body that differs between reads (or an HTML error page) is trouble in transit,
            # not the message: the poll fails and is tried again later.
            looks_like_json = first.body.lstrip()[:1] in (b"{", b"[") or first.truncated
            if again.body != first.body or not looks_like_json:
                raise
        else:
            raise ProtocolError("a message read could not be decoded once", url=first.url)
        index = int(params["startIndex"])
        raw = first.body[:KEPT_BODY_BYTES]
        return MessagePage([], [Malformed(str(first), _text_or_bytes(raw), index)], 1)

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: object = None,
    ) -> Any:
        """One request with retries (tenacity) and one re-login per burst of auth failures.

        ``json``, when given, is sent as the JSON body; every attempt sends it again, so only
        requests that are safe to repeat may carry one here, and only an operation
        :func:`check_operation` allows.
        """
        if json is not None:
            check_operation(json)
        body = None if json is None else orjson.dumps(json)
        try:
            return await self._attempt(method, path, params, body)
        except GwsError as exc:
            if not retryable(exc):
                raise
            first_failure: GwsError | None = exc
        # Only a failed request pays for tenacity: its first attempt is the failure above, so
        # the backoff (and any Retry-After) applies before the request is sent again.
        async for attempt in retrying(self.host.retry, self.host.sleep):
            with attempt:
                if first_failure is not None:
                    failure, first_failure = first_failure, None
                    raise failure
                return await self._attempt(method, path, params, body)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _attempt(
        self, method: str, path: str, params: Mapping[str, str] | None, body: bytes | None
    ) -> Any:
        """One request; an authentication failure re-logs in once, then sends it again."""
        generation = self._auth_generation
        try:
            return await self._request(method, path, params=params, body=body)
        except AuthError:
            await self._relogin(generation)
            return await self._request(method, path, params=params, body=body)

    async def _relogin(self, failed_generation: int) -> None:
        """Start a new HTTP session (cookies, CSRF token), unless another request just did."""
        async with self._auth_lock:
            if self._auth_generation != failed_generation:
                return
            log.debug("gws_reauthenticating", account=self.account.username)
            self._csrf = None
            self.transport.forget_cookies()
            await self._request("GET", f"{API}/me")
            self._auth_generation += 1
            if self.on_renewed is not None:
                self.on_renewed()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> Any:
        """One HTTP exchange through the transport, then a check of ``statusCode``."""
        # Encoded once here, sent as it is: aiohttp would otherwise re-quote it on every request.
        url = f"{self.base_url}{path}" + (f"?{query(params)}" if params else "")
        headers = self.csrf_headers() if method != "GET" else {}
        if body is not None:
            headers["Content-Type"] = "application/json"
        answer = await self.transport.send(
            method,
            url,
            endpoint=_endpoint(path),
            headers=headers,
            data=body,
            on_headers=self._remember_csrf,
        )
        payload = answer.payload
        status_code = payload.get("statusCode", 0) if isinstance(payload, Mapping) else 0
        if status_code not in (0, None):
            raise status_error(answer.status, payload, url)
        return payload

    def csrf_headers(self) -> dict[str, str]:
        """The CSRF header to send on a modifying request, once a GET has revealed the token."""
        return {} if self._csrf is None else {self._csrf[0]: self._csrf[1]}

    def _remember_csrf(self, headers: Mapping[str, str]) -> None:
        token = headers.get("X-CSRF-TOKEN")
        if token:
            self._csrf = (headers.get("X-CSRF-HEADER", "X-CSRF-TOKEN"), token)


def parse_messages_body(
    body: object, url: str, *, start_index: int = 1, count: int = 0
) -> MessagePage:
    """Split a messages response into usable messages and rejected entries.

    The cursor rule (README, "Hostile input"): a page read from ``start_index`` holding ``n``
    entries can only hold indices up to ``start_index + n - 1``; an index beyond that is not
    believed (it would make the cursor skip messages never read) and the entry is rejected. A
    one-message read (``count`` 1) that yields one rejected entry pins it to ``start_index``.
    """
    entries = body.get("messages") if isinstance(body, Mapping) else None
    if not isinstance(entries, list):
        raise ProtocolError("response has no messages array", url=url)
    highest = max(start_index, 1) + len(entries) - 1
    messages, rejected = [], []
    received = 0
    for obj in entries:
        try:
            message = parse_message(obj)
            if message.index > highest:
                raise MalformedPayload(
                    f"message index {message.index} is ahead of its place (a page read from"
                    f" {start_index} with {len(entries)} entries ends by {highest})"
                )
        except MalformedPayload as exc:
            rejected.append(Malformed(str(exc), raw_text(obj)))
            received += 1
            continue
        messages.append(message)
        received += message.index >= 1
    if count == 1 and received == 1 and len(rejected) == 1 and not messages:
        rejected = [Malformed(rejected[0].problem, rejected[0].raw_json, start_index)]
    return MessagePage(messages, rejected, received)


def parse_each(
    parse: Callable[[object], T], objects: Iterable[object]
) -> tuple[list[T], list[Malformed]]:
    """Every object parsed, or kept raw with the reason ``parse`` gave (MalformedPayload)."""
    parsed, rejected = [], []
    for obj in objects:
        try:
            parsed.append(parse(obj))
        except MalformedPayload as exc:
            rejected.append(Malformed(str(exc), raw_text(obj)))
    return parsed, rejected


def raw_text(obj: object) -> str | bytes:
    """What to keep of an element that could not be parsed: its JSON text, whatever it holds."""
    try:
        return dumps(obj)
    except (RecursionError, TypeError, ValueError) as exc:
        return f"<not serialisable: {type(exc).__name__}>"


def _entry_bytes(obj: object) -> bytes:
    """A list entry as compact JSON, to tell whether it changed (b"": cannot tell, parse it)."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        return b""


@functools.lru_cache(maxsize=16384)
def messages_path(session_id: str) -> str:
    """The message log's path of a session (quoted once: every poll of it asks again)."""
    return f"{API}/me/smssessions/{quote(session_id, safe='')}/messages"


def query(params: Mapping[str, str]) -> str:
    """``params`` as a query string; plain ASCII words and digits (and ``*``) need no quoting."""
    return "&".join(f"{_quoted(key)}={_quoted(value)}" for key, value in params.items())


def _quoted(text: str) -> str:
    plain = text.isascii() and (text.isalnum() or text == "*")
    return text if plain else quote_plus(text)


def _endpoint(path: str) -> str:
    """The metrics label of ``path``: one label for every interaction's UCS content, not its id."""
    return "interaction" if "/ucs/interactions/" in path else endpoint_name(path)


def _text_or_bytes(raw: bytes) -> str | bytes:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw
