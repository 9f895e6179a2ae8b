"""The GWS client: the only code that speaks HTTP to GWS.

One :class:`GwsHost` per GWS server holds the shared connection pool and the host-wide throttle;
one :class:`GwsClient` per agent account holds its cookie jar (JSESSIONID) and CSRF token. Every
answer is mapped onto the error tree in :mod:`archiver.errors`; retries use tenacity.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import orjson
import structlog
from aiolimiter import AsyncLimiter
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)
from yarl import URL

from archiver.config import Account, GwsConfig
from archiver.errors import (
    AuthError,
    GwsError,
    GwsStatusError,
    NotFoundError,
    ProtocolError,
    ThrottledError,
    TransportError,
    UndecodableError,
)
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
from archiver.gws.wire import KEPT_BODY_BYTES, decode_json, parse_retry_after, read_body
from archiver.lifecycle import Resource

log = structlog.get_logger()

API = "/api/v2"
CSRF_FAILURE = "csrf"
THROTTLE_SPELL_S = 60.0


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


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long a failing request is tried again."""

    attempts: int = 5
    total_s: float = 60.0
    wait_max_s: float = 10.0
    wait_multiplier_s: float = 0.25


class GwsHost:
    """One GWS server: a shared connection pool and a host-wide pause after 429/503."""

    def __init__(
        self,
        config: GwsConfig,
        *,
        retry: RetryPolicy | None = None,
        reserved_connections: int = 0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.config = config
        self.retry = retry or RetryPolicy()
        # Connections beyond max_concurrent_requests, for requests the server holds open
        # (one long-poll per account in push mode), so they never starve the polling.
        self.reserved_connections = reserved_connections
        self.clock = clock
        self.sleep = sleep
        self.timeout = aiohttp.ClientTimeout(
            total=config.request_timeout_s, connect=config.connect_timeout_s
        )
        self._connector: aiohttp.TCPConnector | None = None
        self._paused_until = 0.0
        self.requests: Counter[tuple[str, str]] = Counter()  # (endpoint, HTTP status or error)
        self.pauses = 0
        rate = config.max_requests_per_s
        self._limiter = AsyncLimiter(rate, 1.0) if rate else None
        self._closed = False

    @property
    def connector(self) -> aiohttp.TCPConnector:
        """The shared pool, created on first use (it needs a running loop)."""
        if self._closed:
            raise GwsError("the GWS host is closed")
        if self._connector is None:
            self._connector = aiohttp.TCPConnector(
                limit=self.config.max_concurrent_requests + self.reserved_connections,
                ssl=self.config.verify_tls,
            )
        return self._connector

    def pause(self, seconds: float) -> None:
        """Hold every request to this host for ``seconds`` (a 429 or 503 said so)."""
        now = self.clock()
        until = now + seconds
        if until > self._paused_until:
            # One warning per throttled spell; the pauses inside it are counted, not logged.
            if self._paused_until < now - THROTTLE_SPELL_S:
                log.warning("gws_throttled", pause_s=round(seconds, 3), host=self.config.base_url)
            self._paused_until = until
            self.pauses += 1

    async def wait_turn(self) -> None:
        """Return once this host may be asked again (no pause, and under the rate ceiling)."""
        while (delay := self._paused_until - self.clock()) > 0:
            await self.sleep(delay)
        if self._limiter is not None:
            await self._limiter.acquire()

    async def close(self) -> None:
        """Close the pool; safe to call twice."""
        self._closed = True
        if self._connector is not None:
            connector, self._connector = self._connector, None
            await connector.close()


class GwsClient(Resource):
    """The GWS API as one agent sees it; an async context manager."""

    def __init__(self, host: GwsHost, account: Account) -> None:
        self.host = host
        self.account = account
        self.base_url = host.config.base_url
        self.page_size = host.config.page_size
        self._http: aiohttp.ClientSession | None = None
        self._csrf: tuple[str, str] | None = None
        # Re-login once per burst of auth failures: a failure seen under an older generation
        # was already handled by whoever re-logged in since.
        self._auth_generation = 0
        self._auth_lock = asyncio.Lock()
        self._auth = "Basic " + base64.b64encode(
            f"{account.username}:{account.password.reveal()}".encode()
        ).decode("ascii")
        self._closed = False

    def __repr__(self) -> str:
        return f"GwsClient({self.base_url!r}, account={self.account.username!r})"

    async def close(self) -> None:
        """Close this account's HTTP session (not the shared pool); safe to call twice."""
        self._closed = True
        if self._http is not None:
            http, self._http = self._http, None
            await http.close()

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._closed:
            raise GwsError("the GWS client is closed")
        if self._http is None:
            self._http = aiohttp.ClientSession(
                connector=self.host.connector,
                connector_owner=False,
                cookie_jar=aiohttp.CookieJar(unsafe=True),
                timeout=self.host.timeout,
                headers={"Authorization": self._auth, "Accept": "application/json"},
            )
        return self._http

    async def login(self) -> None:
        """Authenticate: GET /api/v2/me, keeping the JSESSIONID cookie and the CSRF token."""
        await self._request("GET", f"{API}/me")

    async def list_sessions(self) -> SessionList:
        """The account's SMS sessions with all fields (``?fields=*``)."""
        body = await self.call("GET", f"{API}/me/smssessions", params={"fields": "*"})
        try:
            objects = session_objects(body)
        except MalformedPayload as exc:
            raise ProtocolError(str(exc), url=f"{self.base_url}{API}/me/smssessions") from exc
        sessions, rejected = [], []
        for obj in objects:
            try:
                sessions.append(parse_session(obj))
            except MalformedPayload as exc:
                rejected.append(Malformed(str(exc), raw_text(obj)))
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
        path = f"{API}/me/smssessions/{quote(session_id, safe='')}/messages"
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

    async def call(self, method: str, path: str, *, params: Mapping[str, str] | None = None) -> Any:
        """One request with retries (tenacity) and one re-login per burst of auth failures."""
        try:
            return await self._attempt(method, path, params)
        except GwsError as exc:
            if not _retryable(exc):
                raise
            first_failure: GwsError | None = exc
        # Only a failed request pays for tenacity: its first attempt is the failure above, so
        # the backoff (and any Retry-After) applies before the request is sent again.
        policy = self.host.retry
        retrying = AsyncRetrying(
            retry=retry_if_exception(_retryable),
            stop=stop_after_attempt(policy.attempts) | stop_after_delay(policy.total_s),
            wait=_RetryAfterWait(policy),
            sleep=self.host.sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                if first_failure is not None:
                    failure, first_failure = first_failure, None
                    raise failure
                return await self._attempt(method, path, params)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _attempt(self, method: str, path: str, params: Mapping[str, str] | None) -> Any:
        """One request; an authentication failure re-logs in once, then sends it again."""
        generation = self._auth_generation
        try:
            return await self._request(method, path, params=params)
        except AuthError:
            await self._relogin(generation)
            return await self._request(method, path, params=params)

    async def _relogin(self, failed_generation: int) -> None:
        """Start a new HTTP session (cookies, CSRF token), unless another request just did."""
        async with self._auth_lock:
            if self._auth_generation != failed_generation:
                return
            log.debug("gws_reauthenticating", account=self.account.username)
            self._csrf = None
            if self._http is not None:
                self._http.cookie_jar.clear()
            await self._request("GET", f"{API}/me")
            self._auth_generation += 1

    async def _request(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None
    ) -> Any:
        """One HTTP exchange: send, map errors, decode JSON, check ``statusCode``."""
        # Encoded once here: aiohttp would otherwise re-parse and re-quote it on every request.
        url = f"{self.base_url}{path}" + (f"?{urlencode(params)}" if params else "")
        target = URL(url, encoded=True)
        headers = self.csrf_headers() if method != "GET" else {}
        endpoint = endpoint_name(path)
        await self.host.wait_turn()
        try:
            async with self.http.request(method, target, headers=headers) as response:
                self._remember_csrf(response.headers)
                status = response.status
                retry_after = response.headers.get("Retry-After")
                body = await read_body(response, self.host.config.max_body_bytes, url)
        except (TimeoutError, aiohttp.ClientError) as exc:
            self.host.requests[endpoint, type(exc).__name__] += 1
            raise TransportError(f"{type(exc).__name__}: {exc}".rstrip(": "), url=url) from exc
        self.host.requests[endpoint, str(status)] += 1
        if status >= 400:
            raise self.http_error(status, body, retry_after, url)
        payload = decode_json(body, url)
        status_code = payload.get("statusCode", 0) if isinstance(payload, Mapping) else 0
        if status_code not in (0, None):
            raise status_error(status, payload, url)
        return payload

    def csrf_headers(self) -> dict[str, str]:
        """The CSRF header to send on a modifying request, once a GET has revealed the token."""
        return {} if self._csrf is None else {self._csrf[0]: self._csrf[1]}

    def _remember_csrf(self, headers: Mapping[str, str]) -> None:
        token = headers.get("X-CSRF-TOKEN")
        if token:
            self._csrf = (headers.get("X-CSRF-HEADER", "X-CSRF-TOKEN"), token)

    def http_error(
        self, status: int, body: bytes, retry_after: str | None, url: str
    ) -> GwsStatusError:
        """Map an HTTP error answer onto the error tree (REST and the push transport alike)."""
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            payload = {}
        if not isinstance(payload, dict):
            payload = {}
        text = body[:200].decode("utf-8", "replace")
        if status in (429, 503):
            wait_s = parse_retry_after(retry_after, cap_s=self.host.config.max_retry_after_s)
            if wait_s is not None:
                self.host.pause(wait_s)
            return ThrottledError(
                f"HTTP {status}",
                url=url,
                status=status,
                retry_after_s=wait_s,
                status_code=payload.get("statusCode"),
            )
        if status == 403 and CSRF_FAILURE in text.lower():
            return AuthError("HTTP 403: CSRF token missing or invalid", url=url, status=status)
        if status in (401, 404) or payload.get("statusCode") in (6, 20):
            return status_error(status, payload, url)
        message = payload.get("statusMessage") or text.strip() or "no body"
        return GwsStatusError(
            f"HTTP {status}: {message}",
            url=url,
            status=status,
            status_code=payload.get("statusCode"),
        )


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


def raw_text(obj: object) -> str | bytes:
    """What to keep of an element that could not be parsed: its JSON text, whatever it holds."""
    try:
        return dumps(obj)
    except (RecursionError, TypeError, ValueError) as exc:
        return f"<not serialisable: {type(exc).__name__}>"


def _text_or_bytes(raw: bytes) -> str | bytes:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def endpoint_name(path: str) -> str:
    """A short, bounded name for a GWS path (a metrics label): me, sessions, session, messages."""
    if path.endswith("/messages"):
        return "messages"
    if path.endswith("/smssessions"):
        return "sessions"
    if "/smssessions/" in path:
        return "session"
    return path.rsplit("/", 1)[-1] or "root"


def status_error(status: int, payload: Mapping[str, Any], url: str) -> GwsStatusError:
    """Map an HTTP status and GWS ``statusCode`` onto the error tree."""
    code = payload.get("statusCode")
    message = f"HTTP {status}, statusCode {code}: {payload.get('statusMessage', '')}".rstrip(": ")
    if status == 401 or code == 20:
        return AuthError(message, url=url, status=status, status_code=code)
    if status == 404 or code == 6:
        return NotFoundError(message, url=url, status=status, status_code=code)
    return GwsStatusError(message, url=url, status=status, status_code=code)


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, UndecodableError):
        return False  # the same bytes again: read in smaller pages instead
    if isinstance(exc, TransportError | ProtocolError):
        return True
    return isinstance(exc, GwsStatusError) and exc.retryable


class _RetryAfterWait:
    """Full-jitter exponential backoff, but never shorter than the server's ``Retry-After``."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._jitter = wait_random_exponential(
            multiplier=policy.wait_multiplier_s, max=policy.wait_max_s
        )
        self._cap_s = policy.wait_max_s

    def __call__(self, state: RetryCallState) -> float:
        backoff = float(self._jitter(state))
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, GwsStatusError) and exc.retry_after_s is not None:
            return max(backoff, min(exc.retry_after_s, self._cap_s))
        return backoff
