"""Fault injection for `/api/v2` requests, decided with a seeded RNG.

At most one *exclusive* fault hits a request, drawn from one uniform number against the
cumulative rates, so each kind happens at its own rate (their sum must stay <= 1):
HTTP 500 (an HTML error page), 502, 503, 504 (proxy pages), 429 with `Retry-After` in seconds,
429 with `Retry-After` as an HTTP date, HTTP 500 with `statusCode` 4 (internal error),
connection reset (RST, no response), hang (no response until `hang_s` or shutdown),
truncated body (full `Content-Length`, half the bytes, then the connection closes) and
malformed JSON (a complete body that does not parse).

Independent of those: added latency (`latency` rate, `latency_s` seconds) before handling;
short pages (a messages read answered with a shorter, still contiguous prefix) and vanishing
sessions (one listed session hidden from its account's list for `vanish_s`), both applied by
the handlers. Faults never change the world: a faulted POST is not carried out, and truncated
or malformed GET bodies are corrupted copies of the real answer.

The CometD endpoint `/api/v2/notifications` is an `/api/v2` route like the others, so the
request faults hit it too. On top, each notification bound for a subscribed client is lost
(`drop_notification`) or delivered twice (`duplicate_notification`) at its own rate.

Interaction History (`ucs.py`) answers arrive as notifications; each request's one is
published late (`ucs_late`, after `ucs_late_s`), never (`ucs_missing`) or as an error
(`ucs_error`), at most one of the three per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import socket
import struct
import time
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from gws_simulator.stats import STATS_KEY, injected_fault

_EXCLUSIVE = (
    "http_500",
    "http_502",
    "http_503",
    "http_504",
    "rate_limit",
    "rate_limit_date",
    "internal_error",
    "reset",
    "hang",
    "truncate",
    "malformed",
)
_UCS = ("ucs_error", "ucs_missing", "ucs_late")
_PAGES = {
    500: "Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
INJECTOR_KEY: web.AppKey[FaultInjector] = web.AppKey("faults")


@dataclass(frozen=True, slots=True)
class FaultRates:
    """Probability (0..1) of each fault per `/api/v2` request, and the faults' parameters.

    The exclusive rates (`http_500` ... `malformed`) must add up to at most 1. `vanish` is
    per session-list request, `short_page` per messages request, `drop_notification` and
    `duplicate_notification` per notification and subscribed client, `ucs_late`,
    `ucs_missing` and `ucs_error` per Interaction History request.
    """

    http_500: float = 0.0
    http_502: float = 0.0
    http_503: float = 0.0
    http_504: float = 0.0
    rate_limit: float = 0.0
    rate_limit_date: float = 0.0
    internal_error: float = 0.0
    reset: float = 0.0
    hang: float = 0.0
    truncate: float = 0.0
    malformed: float = 0.0
    latency: float = 0.0
    short_page: float = 0.0
    vanish: float = 0.0
    drop_notification: float = 0.0
    duplicate_notification: float = 0.0
    ucs_late: float = 0.0
    ucs_missing: float = 0.0
    ucs_error: float = 0.0
    retry_after_s: int = 1
    hang_s: float = 60.0
    latency_s: float = 0.2
    vanish_s: float = 5.0
    ucs_late_s: float = 5.0

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if spec.name.endswith("_s"):
                if value < 0:
                    raise ValueError(f"{spec.name} must be >= 0")
            elif not 0.0 <= value <= 1.0:
                raise ValueError(f"{spec.name} must be within 0..1")
        if sum(getattr(self, name) for name in _EXCLUSIVE) > 1.0 + 1e-9:
            raise ValueError(f"the exclusive fault rates {_EXCLUSIVE} add up to more than 1")
        if sum(getattr(self, name) for name in _UCS) > 1.0 + 1e-9:
            raise ValueError(f"the fault rates {_UCS} add up to more than 1")

    def replace(self, changes: dict[str, Any]) -> FaultRates:
        """A copy with `changes` (field name -> number) applied; unknown names raise."""
        names = {spec.name for spec in dataclasses.fields(self)}
        unknown = set(changes) - names
        if unknown:
            raise ValueError(f"unknown fault names: {sorted(unknown)}")
        for name, value in changes.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number")
        retry = changes.get("retry_after_s")
        if retry is not None:
            changes = {**changes, "retry_after_s": int(retry)}
        return dataclasses.replace(self, **changes)

    @classmethod
    def parse(cls, spec: str) -> FaultRates:
        """Rates from `name=value,...`, e.g. `http_503=0.05,reset=0.01,latency_s=0.5`."""
        changes: dict[str, Any] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"expected name=value, got {item!r}")
            changes[name.strip()] = float(value)
        return cls().replace(changes)


class FaultInjector:
    """Holds the current rates and the seeded RNG; decides and injects faults."""

    def __init__(self, rates: FaultRates, seed: int) -> None:
        self.rates = rates
        self._rng = random.Random(f"faults/{seed}")
        self.closing = asyncio.Event()

    def draw(self) -> str | None:
        """The exclusive fault for one request, or None."""
        return self._draw_among(_EXCLUSIVE)

    def draw_ucs(self) -> str | None:
        """The fault of one Interaction History answer (`ucs_late` ...), or None."""
        if not any(getattr(self.rates, name) for name in _UCS):
            return None
        return self._draw_among(_UCS)

    def _draw_among(self, names: tuple[str, ...]) -> str | None:
        point = self._rng.random()
        for name in names:
            point -= getattr(self.rates, name)
            if point < 0:
                return name
        return None

    def chance(self, rate: float) -> bool:
        """True with probability `rate`."""
        return rate > 0 and self._rng.random() < rate

    def short_limit(self, available: int) -> int | None:
        """A shorter page length (1..available-1) when the short-page fault hits."""
        if available > 1 and self.chance(self.rates.short_page):
            return self._rng.randint(1, available - 1)
        return None

    def pick(self, count: int) -> int:
        """A random position below `count`."""
        return self._rng.randrange(count)

    async def pause(self, seconds: float) -> None:
        """Sleep, cut short when the simulator shuts down."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closing.wait(), seconds)


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Inject the configured faults into `/api/v2` requests."""
    if not request.path.startswith("/api/v2/"):
        return await handler(request)
    injector = request.app[INJECTOR_KEY]
    faults = request.app[STATS_KEY].faults
    if injector.chance(injector.rates.latency):
        faults["latency"] += 1
        await injector.pause(injector.rates.latency_s)
    kind = injector.draw()
    if kind is None:
        return await handler(request)
    faults[kind] += 1
    injected_fault.set(kind)
    if kind in ("reset", "hang"):
        if kind == "hang":
            await injector.pause(injector.rates.hang_s)
        _reset(request)
        return web.Response()
    if kind in ("truncate", "malformed"):
        return await _corrupt(request, handler, injector, kind)
    return _error_response(kind, injector.rates.retry_after_s)


def _error_response(kind: str, retry_after_s: int) -> web.Response:
    if kind == "internal_error":
        body = b'{"statusCode":4,"statusMessage":"Internal error"}'
        return web.Response(status=500, body=body, content_type="application/json")
    if kind.startswith("rate_limit"):
        retry_after = str(retry_after_s)
        if kind == "rate_limit_date":
            retry_after = formatdate(time.time() + retry_after_s, usegmt=True)
        return web.Response(
            status=429, text="Too Many Requests", headers={"Retry-After": retry_after}
        )
    status = int(kind.removeprefix("http_"))
    html = f"<html><body><h1>{status} {_PAGES[status]}</h1></body></html>"
    return web.Response(status=status, text=html, content_type="text/html")


def _reset(request: web.Request) -> None:
    """Close the connection with a TCP RST and no response."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def _corrupt(
    request: web.Request, handler: Handler, injector: FaultInjector, kind: str
) -> web.StreamResponse:
    """Answer with a broken body; GETs break the real answer, other methods are not run."""
    real: web.StreamResponse = web.Response(body=b'{"statusCode":0}')
    if request.method == "GET":
        real = await handler(request)
    body = real.body if isinstance(real, web.Response) else None
    if not isinstance(body, bytes):
        body = b'{"statusCode":0}'
    headers = {k: v for k, v in real.headers.items() if k.lower() != "content-length"}
    response: web.StreamResponse
    if kind == "malformed":
        # A trailing comma before the closing brace: the shape of the docs' invalid samples.
        response = web.Response(status=real.status, body=body[:-1] + b",}", headers=headers)
    else:
        response = web.StreamResponse(status=real.status, headers=headers)
        response.content_length = len(body)
    response.content_type = "application/json"
    for name, morsel in real.cookies.items():
        response.cookies[name] = morsel
    if kind == "truncate":
        await response.prepare(request)
        await response.write(body[: injector.pick(len(body) - 1) + 1])
        _reset(request)
    return response
