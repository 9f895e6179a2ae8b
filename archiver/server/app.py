"""The optional local HTTP server: ``/healthz``, ``/readyz``, ``/metrics``, ``/events`` and
the web view's pages (:mod:`archiver.server.web`).

It only reads: the daemon's state (:class:`archiver.state.DaemonState`) and the archive. It
binds where ``server.listen`` says (loopback unless configured otherwise; the config refuses a
wider bind without a token) and, when a token is configured, every route wants ``Authorization:
Bearer <token>`` (or, from a browser, the cookie the web view's ``/login`` form sets).

Without a token, every request must name this server in its ``Host`` header (the listen address,
for loopback also ``localhost``, ``127.0.0.1`` and ``[::1]``, or a name in
``server.allowed_hosts``), else it gets 421, and a browser's cross-site request gets 403: a web
page that rebinds its own DNS name to 127.0.0.1 cannot read ``/events`` from the operator's
browser. With a token, the token is the guard (a rebinding page cannot send it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from archiver import __version__
from archiver.config import ServerConfig
from archiver.config.model import is_loopback
from archiver.errors import ArchiverError
from archiver.lifecycle import Resource
from archiver.server.health import check_readiness
from archiver.server.metrics import render_metrics
from archiver.server.stream import stream_events
from archiver.server.web import (
    OPEN_PREFIXES,
    WebView,
    add_security_headers,
    is_page,
    login_response,
    offers_token,
)
from archiver.state import DaemonState

log = structlog.get_logger()

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class StatusServer(Resource):
    """Serves one daemon's health, metrics and event stream; an async context manager."""

    def __init__(self, state: DaemonState, config: ServerConfig) -> None:
        self.state = state
        self.config = config
        self.started_at = time.time()
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._streams: set[asyncio.Task[object]] = set()
        self._web: WebView | None = None
        self._closed = False

    async def open(self) -> None:
        """Bind and serve; ``url`` then holds the real address (port 0 picks a free one)."""
        if self._closed or self._runner is not None:
            raise ArchiverError("the status server can start only once")
        host, port = self.config.address
        self._web = WebView(
            self.state.config.archive.location, self.config.token, self.state.committed_seq
        )
        await self._web.open()
        app = web.Application(middlewares=[self._check_host, self._authorize])
        app.on_response_prepare.append(add_security_headers)
        self._web.add_routes(app)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/events", self._events)
        app.on_shutdown.append(self._end_streams)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await self.close()
            raise ArchiverError(
                f"server.listen: cannot bind {host}:{port}: {exc.strerror}"
            ) from exc
        bound_host, bound_port = self._runner.addresses[0][:2]
        self.url = f"http://{_url_host(bound_host)}:{bound_port}"
        log.info("server_listening", url=self.url, token=self.config.token is not None)

    async def close(self) -> None:
        """End every stream and stop serving; safe to call twice."""
        self._closed = True
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        if self._web is not None:
            await self._web.close()

    @web.middleware
    async def _check_host(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        # With a token, a rebinding page has no token to send; without one, Host must match.
        if self.config.token is None:
            if not self._host_allowed(request.headers.get("Host", "")):
                raise web.HTTPMisdirectedRequest(text="this server does not answer to that Host\n")
            if request.headers.get("Sec-Fetch-Site") == "cross-site":
                raise web.HTTPForbidden(text="cross-site requests need the server token\n")
        return await handler(request)

    def _host_allowed(self, header: str) -> bool:
        """True if ``Host`` names this server (its address, loopback names, allowed_hosts)."""
        host, port = _split_host(header.strip().lower())
        if host is None:
            return False
        bound_port = self.url.rsplit(":", 1)[-1]
        if port is not None and port != bound_port:
            return False
        listen_host = self.config.address[0].lower().strip("[]")
        names = {listen_host, *self.config.allowed_hosts}
        if is_loopback(listen_host):
            names |= LOOPBACK_NAMES
        return host in names

    @web.middleware
    async def _authorize(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        # The bearer token, or the web view's sign-in cookie; the sign-in form itself is open.
        token = self.config.token
        open_route = request.path.startswith(OPEN_PREFIXES)
        if token is not None and not open_route and not offers_token(request, token):
            if is_page(request):
                return login_response(request)
            raise web.HTTPUnauthorized(
                text="a bearer token is required\n", headers={"WWW-Authenticate": "Bearer"}
            )
        return await handler(request)

    async def _healthz(self, request: web.Request) -> web.Response:
        """Liveness: the process answers."""
        uptime_s = round(time.time() - self.started_at, 3)
        return web.json_response({"status": "ok", "version": __version__, "uptime_s": uptime_s})

    async def _readyz(self, request: web.Request) -> web.Response:
        """Readiness, with reasons; 503 while not ready."""
        readiness = await check_readiness(self.state)
        return web.json_response(readiness.to_json(), status=200 if readiness.ready else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        """Prometheus exposition of the daemon's state now."""
        body, content_type = await render_metrics(
            self.state, sse_clients=len(self._streams), accept=request.headers.get("Accept")
        )
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        """The live event stream (SSE), resumable with Last-Event-ID."""
        feed = self.state.feed
        if feed is None:
            raise web.HTTPServiceUnavailable(text="the archive is not open yet\n")
        task = asyncio.current_task()
        assert task is not None
        self._streams.add(task)
        try:
            return await stream_events(request, feed, self.config.keepalive_s)
        finally:
            self._streams.discard(task)

    async def _end_streams(self, app: web.Application) -> None:
        """On shutdown, end the open streams at once instead of waiting for their clients."""
        streams = list(self._streams)
        for task in streams:
            task.cancel()
        await asyncio.gather(*streams, return_exceptions=True)


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def _split_host(header: str) -> tuple[str | None, str | None]:
    """``host[:port]`` or ``[v6][:port]`` as (host, port); (None, None) if unreadable."""
    if header.startswith("["):
        host, bracket, rest = header[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None, None
        return host, rest[1:] or None
    host, _, port = header.partition(":")
    if not host or ":" in port:
        return None, None
    return host, port or None


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
