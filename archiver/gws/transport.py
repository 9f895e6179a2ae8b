"""The HTTP transport to GWS: the only module that sends requests with aiohttp's client.

One :class:`GwsHost` per GWS server holds the shared connection pool, the host-wide throttle
and the request counts; one :class:`Transport` per agent account holds its HTTP identity (the
Basic header and a cookie jar for JSESSIONID and ``BAYEUX_BROWSER``). ``Transport.send`` is the
one request path of the REST client and of push mode alike: it waits its turn, sends, reads the
bounded body, counts the answer and maps every failure onto :mod:`archiver.errors` once
(:func:`map_exceptions` for aiohttp's and the OS's errors, :func:`http_error` for HTTP errors).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any

import aiohttp
import orjson
import structlog
from aiolimiter import AsyncLimiter
from yarl import URL

from archiver.config import GwsConfig
from archiver.errors import (
    AuthError,
    GwsError,
    GwsStatusError,
    NotFoundError,
    ThrottledError,
    TransportError,
)
from archiver.gws.backoff import RequestRetry
from archiver.gws.http1 import Http1Pool
from archiver.gws.wire import decode_json, read_body
from archiver.lifecycle import Resource
from archiver.retry_after import parse_retry_after

log = structlog.get_logger()

CSRF_FAILURE = "csrf"
THROTTLE_SPELL_S = 60.0

Requests = Counter[tuple[str, str]]  # (endpoint, HTTP status or error name) -> requests


@dataclass(frozen=True, slots=True)
class Answer:
    """A successful (2xx) answer: its HTTP status and its body, decoded from JSON."""

    status: int
    payload: Any


class GwsHost:
    """One GWS server: a shared connection pool and a host-wide pause after 429/503."""

    def __init__(
        self,
        config: GwsConfig,
        *,
        retry: RequestRetry | None = None,
        reserved_connections: int = 0,
        keepalive_gets: bool = True,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.config = config
        self.retry = retry or RequestRetry()
        # Connections beyond max_concurrent_requests, for requests the server holds open
        # (one long-poll per account in push mode), so they never starve the polling.
        self.reserved_connections = reserved_connections
        self.clock = clock
        self.sleep = sleep
        self.timeout = aiohttp.ClientTimeout(
            total=config.request_timeout_s, connect=config.connect_timeout_s
        )
        self._connector: aiohttp.TCPConnector | None = None
        # Plain GETs (message and list reads) take the lean kept-alive path; False sends every
        # request through aiohttp (the HTTP error-mapping unit tests mock aiohttp's client).
        self.pool: Http1Pool | None = None
        if keepalive_gets:
            self.pool = Http1Pool(
                config.base_url,
                limit=config.max_concurrent_requests,
                verify_tls=config.verify_tls,
                connect_timeout_s=config.connect_timeout_s,
                max_body_bytes=config.max_body_bytes,
            )
        self._paused_until = 0.0
        self.requests: Requests = Counter()
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
        if self.pool is not None:
            self.pool.close()
        if self._connector is not None:
            connector, self._connector = self._connector, None
            await connector.close()


class Transport(Resource):
    """One account's HTTP identity on a :class:`GwsHost`; its requests go through ``send``.

    The REST client and the account's push client share one transport, hence one cookie jar:
    the session cookie a REST login renews is the one the Bayeux requests carry.
    """

    def __init__(self, host: GwsHost, *, authorization: str) -> None:
        self.host = host
        self._authorization = authorization
        self._identity = f"Authorization: {authorization}\r\nAccept: application/json"
        self._http: aiohttp.ClientSession | None = None
        self._closed = False
        # The Cookie header of the pool's GETs, and the cookies it was made from.
        self._cookies_held: tuple[tuple[str, str, str, str], ...] | None = None
        self._cookies_sent = ""

    async def close(self) -> None:
        """Close this account's HTTP session (not the shared pool); safe to call twice."""
        self._closed = True
        if self._http is not None:
            http, self._http = self._http, None
            await http.close()

    @property
    def _session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise GwsError("the GWS client is closed")
        if self._http is None:
            self._http = aiohttp.ClientSession(
                connector=self.host.connector,
                connector_owner=False,
                cookie_jar=aiohttp.CookieJar(unsafe=True),
                timeout=self.host.timeout,
                headers={"Authorization": self._authorization, "Accept": "application/json"},
            )
        return self._http

    def session_cookie(self) -> str | None:
        """The server's HTTP session id (JSESSIONID) held now, if any."""
        if self._http is None:
            return None
        return next((c.value for c in self._http.cookie_jar if c.key.upper() == "JSESSIONID"), None)

    def forget_cookies(self) -> None:
        """Drop the session cookies, so the next request starts a new server session."""
        if self._http is not None:
            self._http.cookie_jar.clear()

    async def send(
        self,
        method: str,
        url: str,
        *,
        endpoint: str,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
        total_timeout_s: float | None = None,
        on_headers: Callable[[Mapping[str, str]], None] | None = None,
    ) -> Answer:
        """One HTTP exchange: a 2xx answer with its JSON body decoded, or an error of the tree.

        ``url`` is already percent-encoded (it is sent as it is). ``endpoint`` labels the
        exchange in ``host.requests``; ``total_timeout_s`` replaces the configured request
        timeout (for requests the server holds); ``on_headers`` sees the answer's headers.
        Plain GETs go through the host's kept-alive pool (:mod:`archiver.gws.http1`), the rest
        through aiohttp; both answers are read the same way.
        """
        host = self.host
        await host.wait_turn()
        with map_exceptions(url, host.requests, endpoint):
            if host.pool is not None and method == "GET" and total_timeout_s is None:
                status, answer_headers, body = await self._get(url, headers)
            else:
                status, answer_headers, body = await self._exchange(
                    method, url, headers, data, total_timeout_s
                )
        if on_headers is not None:
            on_headers(answer_headers)
        host.requests[endpoint, str(status)] += 1
        if status >= 400:
            wait_s = None
            if status in (429, 503):
                retry_after = answer_headers.get("Retry-After")
                wait_s = parse_retry_after(retry_after, cap_s=host.config.max_retry_after_s)
                if wait_s is not None:
                    host.pause(wait_s)
            raise http_error(status, body, url, retry_after_s=wait_s)
        return Answer(status, decode_json(body, url))

    async def _exchange(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        data: bytes | None,
        total_timeout_s: float | None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One exchange through aiohttp's client."""
        host = self.host
        timeout = host.timeout  # never None: aiohttp reads None as "no timeout at all"
        if total_timeout_s is not None:
            timeout = aiohttp.ClientTimeout(
                total=total_timeout_s, connect=host.config.connect_timeout_s
            )
        async with self._session.request(
            method, URL(url, encoded=True), headers=headers, data=data, timeout=timeout
        ) as response:
            body = await read_body(response, host.config.max_body_bytes, url)
            return response.status, response.headers, body

    async def _get(
        self, url: str, headers: Mapping[str, str] | None
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One GET through the kept-alive pool, with this account's identity and cookies."""
        host = self.host
        assert host.pool is not None
        jar = self._session.cookie_jar
        lines = [
            f"GET {host.pool.target(url)} HTTP/1.1",
            f"Host: {host.pool.host_header}",
            self._identity,
        ]
        cookies = self._cookie_header(jar, url)
        if cookies:
            lines.append(f"Cookie: {cookies}")
        lines.extend(f"{name}: {value}" for name, value in (headers or {}).items())
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        answer = await host.pool.send(request, url, host.config.request_timeout_s)
        set_cookies = answer.headers.getall("Set-Cookie", ())
        if set_cookies:
            received: SimpleCookie = SimpleCookie()
            for header in set_cookies:
                received.load(header)  # skips what it cannot read (tests/unit/test_http1.py)
            jar.update_cookies(received, URL(url, encoded=True))
        return answer.status, answer.headers, answer.body

    def _cookie_header(self, jar: aiohttp.abc.AbstractCookieJar, url: str) -> str:
        """The Cookie header for ``url``; worked out again only when the jar changes.

        Session cookies (JSESSIONID, BAYEUX_BROWSER) are set for the whole API; when every
        cookie held is, the header is the same for every request and is kept.
        """
        held = tuple((c.key, c.value, c["path"], c["domain"]) for c in jar)
        if held == self._cookies_held:
            return self._cookies_sent
        filtered = jar.filter_cookies(URL(url, encoded=True))
        header = "; ".join(f"{key}={morsel.value}" for key, morsel in filtered.items())
        if all(path in ("", "/") for _, _, path, _ in held):
            self._cookies_held, self._cookies_sent = held, header
        return header


@contextmanager
def map_exceptions(url: str, requests: Requests, endpoint: str) -> Iterator[None]:
    """Translate aiohttp's and the OS's failures into TransportError, counting each by name."""
    try:
        yield
    except (OSError, aiohttp.ClientError) as exc:  # TimeoutError and resets are OSErrors
        requests[endpoint, type(exc).__name__] += 1
        raise TransportError(f"{type(exc).__name__}: {exc}".rstrip(": "), url=url) from exc


def http_error(
    status: int, body: bytes, url: str, *, retry_after_s: float | None = None
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
        return ThrottledError(
            f"HTTP {status}",
            url=url,
            status=status,
            retry_after_s=retry_after_s,
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


def status_error(status: int, payload: Mapping[str, Any], url: str) -> GwsStatusError:
    """Map an HTTP status and GWS ``statusCode`` onto the error tree."""
    code = payload.get("statusCode")
    message = f"HTTP {status}, statusCode {code}: {payload.get('statusMessage', '')}".rstrip(": ")
    if status == 401 or code == 20:
        return AuthError(message, url=url, status=status, status_code=code)
    if status == 404 or code == 6:
        return NotFoundError(message, url=url, status=status, status_code=code)
    return GwsStatusError(message, url=url, status=status, status_code=code)


def endpoint_name(path: str) -> str:
    """A short, bounded name for a GWS path (a metrics label): me, sessions, session, messages."""
    if path.endswith("/messages"):
        return "messages"
    if "/users/" in path:
        return "supervision"  # team mode: monitoring, an agent's sessions, Intrude
    if path.endswith("/smssessions"):
        return "sessions"
    if "/smssessions/" in path:
        return "session"
    return path.rsplit("/", 1)[-1] or "root"
