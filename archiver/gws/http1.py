"""Keep-alive HTTP/1.1 requests for the daemon's hot paths, parsed by httptools (llhttp).

The daemon sends thousands of small GETs a second (message reads, most of them answered by an
empty page, and session lists) and, to a webhook receiver, up to a thousand POSTs a second.
aiohttp's client spends about 70 µs of CPU on each even on uvloop (request and response
objects, cookie filtering, a stream reader, timers); this path writes one prepared request and
parses the answer with llhttp, for about a third of that. CometD's held requests and GWS's
POSTs go through aiohttp as before, and so does the mapping of GWS's answers onto errors:
:class:`~archiver.gws.transport.Transport` uses this pool and treats what it returns exactly as
an aiohttp answer.

What it does is on purpose narrow: a request prepared whole by its caller, no redirects, no
proxies; it asks for no compression, but decodes gzip and deflate should a proxy compress
anyway. A connection the server closed while it sat idle is noticed on the next use and that
request is sent once more on a new connection (a GET is safe to repeat; a webhook receiver
drops a repeated ``webhook-id``).
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections import deque
from dataclasses import dataclass
from typing import cast

import httptools
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from archiver.errors import UndecodableError
from archiver.gws.wire import KEPT_BODY_BYTES

__all__ = ["Connection", "Http1Pool", "RawAnswer", "StaleConnection"]


@dataclass(frozen=True, slots=True)
class RawAnswer:
    """A complete HTTP answer: status, headers, body."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


class StaleConnection(ConnectionResetError):
    """A kept-alive connection was closed before any byte of the answer came back."""


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: one request at a time, answers parsed as they arrive.

    A body longer than ``limit`` fails the request, or with ``cut`` (the caller wants only the
    status and headers) completes the answer with what was read and closes the connection.
    """

    def __init__(self, url: str, limit: int, *, cut: bool = False) -> None:
        self.url = url  # of the request in flight, for errors
        self.limit = limit
        self.cut = cut
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[RawAnswer] | None = None
        self._reused = False
        self._reset()

    def _reset(self) -> None:
        self._headers: CIMultiDict[str] = CIMultiDict()
        self._body: list[bytes] = []
        self._size = 0
        self._received = False
        self._headers_done = False
        self._keep_alive = False

    def request(self, data: bytes, url: str, timeout_s: float) -> asyncio.Future[RawAnswer]:
        """Send one request; the future resolves with its answer or fails."""
        assert self.transport is not None
        assert self._waiter is None
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        self.url = url
        self._reset()
        timer = loop.call_later(timeout_s, self._fail, TimeoutError(f"no answer in {timeout_s}s"))
        waiter.add_done_callback(lambda _: timer.cancel())
        self.transport.write(data)
        return waiter

    def release(self) -> bool:
        """After an answer: True if the connection can carry another request."""
        self._reused = True
        return not self.closed and self._keep_alive

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, but behave as one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"malformed HTTP answer: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is None or self._waiter.done():
            return
        if self._headers_done and not self._framed():
            self.on_message_complete()  # a body delimited by the end of the connection
        elif not self._received and self._reused:
            self._fail(StaleConnection("the kept-alive connection was closed"))
        else:
            self._fail(ConnectionResetError(f"connection closed mid-answer: {exc or 'EOF'}"))

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.add(name.decode("latin-1"), value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        self._headers_done = True
        self._keep_alive = self._parser.should_keep_alive()
        length = self._headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.limit and not self.cut:
            self._fail(
                UndecodableError(
                    f"body of {length} bytes exceeds max_body_bytes ({self.limit})",
                    url=self.url,
                    body=b"",
                    truncated=True,
                )
            )

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self.limit and self.cut:
            self._keep_alive = False
            self.on_message_complete()
            self.close()
            return
        if self._size > self.limit:
            head = b"".join(self._body)[:KEPT_BODY_BYTES]
            error = f"body exceeds max_body_bytes ({self.limit})"
            self._fail(UndecodableError(error, url=self.url, body=head, truncated=True))
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        body = b"".join(self._body)
        encoding = self._headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity") and not self.cut:
            # Not asked for, but a proxy may compress anyway: decoded here, never taken for
            # a malformed body (which would be kept as poison), and bounded like any body.
            try:
                body = _decompressed(encoding, body, self.limit)
            except (ValueError, zlib.error) as exc:
                self._fail(ConnectionError(f"Content-Encoding {encoding}: {exc}"))
                return
        self._waiter = None
        status = self._parser.get_status_code()
        waiter.set_result(RawAnswer(status, CIMultiDictProxy(self._headers), body))

    def _framed(self) -> bool:
        headers = self._headers
        return "Content-Length" in headers or "chunked" in headers.get("Transfer-Encoding", "")

    def _fail(self, exc: BaseException) -> None:
        """The request in flight fails; the connection is not used again."""
        waiter, self._waiter = self._waiter, None
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


def _decompressed(encoding: str, body: bytes, limit: int) -> bytes:
    """``body`` decoded from gzip or deflate; ValueError for another coding or over ``limit``."""
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise ValueError("not supported")
    decoder = zlib.decompressobj(wbits=zlib.MAX_WBITS | 32)  # gzip or zlib, by its header
    data = decoder.decompress(body, limit + 1)
    if len(data) > limit:
        raise ValueError(f"decoded body exceeds max_body_bytes ({limit})")
    return data


class Http1Pool:
    """Kept-alive connections to one server, at most ``limit`` open at once.

    ``cut_bodies``: answers' bodies matter only up to ``max_body_bytes`` (see Connection).
    """

    def __init__(
        self,
        base_url: str,
        *,
        limit: int,
        verify_tls: bool,
        connect_timeout_s: float,
        max_body_bytes: int,
        cut_bodies: bool = False,
    ) -> None:
        url = URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"not an http(s) URL: {base_url}")
        self._address = (url.host, url.port or (443 if url.scheme == "https" else 80))
        self.host_header = url.host_port_subcomponent or ""  # user info stays out of Host
        self._origin = f"{url.scheme}://{url.raw_authority}"
        self._ssl: ssl.SSLContext | None = None
        if url.scheme == "https":
            self._ssl = ssl.create_default_context()
            if not verify_tls:
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE
        self._limit = limit
        self._connect_timeout_s = connect_timeout_s
        self._max_body_bytes = max_body_bytes
        self._cut_bodies = cut_bodies
        self._idle: list[Connection] = []
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    def target(self, url: str) -> str:
        """The request target of ``url`` (already percent-encoded), a URL of this server."""
        if not url.startswith(self._origin):
            raise ValueError(f"{url} is not on {self._origin}")
        return url[len(self._origin) :] or "/"

    async def send(self, data: bytes, url: str, timeout_s: float) -> RawAnswer:
        """Send a prepared request (``data``, safe to repeat) and return its whole answer."""
        for _ in range(2):
            connection = await self._take()
            try:
                answer = await connection.request(data, url, timeout_s)
            except StaleConnection:
                continue
            except BaseException:
                connection.close()
                raise
            finally:
                self._give_back(connection)
            return answer
        raise ConnectionResetError("two kept-alive connections in a row were closed")

    async def _take(self) -> Connection:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection
            self._open -= 1
        while self._open >= self._limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # woken as it was cancelled: pass the turn on
                raise
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
            if self._idle:
                return await self._take()
        self._open += 1
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                _, connection = await asyncio.get_running_loop().create_connection(
                    lambda: Connection("", self._max_body_bytes, cut=self._cut_bodies),
                    *self._address,
                    ssl=self._ssl,
                )
        except BaseException:
            self._open -= 1
            self._wake()
            raise
        return connection

    def _give_back(self, connection: Connection) -> None:
        if connection.release():
            self._idle.append(connection)
        else:
            connection.close()
            self._open -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        """Close every idle connection (those in use close when their answer is in)."""
        for connection in self._idle:
            connection.close()
        self._open -= len(self._idle)
        self._idle = []
