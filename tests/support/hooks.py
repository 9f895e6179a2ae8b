"""Helpers for the hooks tests: a recording webhook receiver, an event source, hook targets.

The receiver is a real aiohttp server on 127.0.0.1 that verifies every request with the
official ``standardwebhooks`` package and answers as the test's ``respond`` function says. The
event source is a real archive written by the real ArchiveWriter, so the dispatcher under test
reads what the daemon would write.

Also a pytest plugin (``pytest_plugins = ["tests.support.hooks"]``) providing the ``source``,
``receiver`` and ``hook_calls`` fixtures.

PYTEST_DONT_REWRITE: test modules import helpers from here before pytest loads it as a plugin.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson
import pytest
from aiohttp import web
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from archiver.config import HooksConfig
from archiver.events import Event
from archiver.feed import EventFeed
from archiver.gws.models import parse_message, parse_session
from archiver.hooks.dispatcher import HookDispatcher
from archiver.store.db import ArchiveLocation
from archiver.store.reader import ArchiveReader
from archiver.store.writer import ArchiveWriter, Page
from tests.support import hook_targets, query

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_SECRET = "whsec_c2VjcmV0LW9mLWEtcm90YXRlZC1lbmRwb2ludA=="
FAST_RETRY: dict[str, Any] = {"retry_delays_s": (0.02, 0.05, 0.1), "retry_jitter": 0.2}


@dataclass(frozen=True, slots=True)
class Answer:
    """How the receiver answers one request."""

    status: int = 204
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Received:
    """One request as the receiver saw it."""

    webhook_id: str
    timestamp: str
    signature: str
    body: dict[str, Any]
    status: int
    arrived: float  # time.monotonic()
    verified: bool
    path: str

    @property
    def ok(self) -> bool:
        """Whether the receiver answered 2xx."""
        return 200 <= self.status < 300


Respond = Callable[["Received"], Answer]


class Receiver:
    """A webhook endpoint on 127.0.0.1 that records every request; an async context manager."""

    def __init__(self, respond: Respond | None = None, secret: str = SECRET) -> None:
        self.respond: Respond = respond or (lambda request: Answer())
        self.verifier = Webhook(secret)
        self.requests: list[Received] = []
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight = 0
        self.overlaps = 0  # requests for a session that already had one in progress
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._handle)
        sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        headers = dict(request.headers)
        try:
            self.verifier.verify(raw, headers)
            verified = True
        except WebhookVerificationError:
            verified = False
        seen = Received(
            webhook_id=headers.get("webhook-id", ""),
            timestamp=headers.get("webhook-timestamp", ""),
            signature=headers.get("webhook-signature", ""),
            body=orjson.loads(raw),
            status=0,
            arrived=time.monotonic(),
            verified=verified,
            path=request.path,
        )
        answer = self.respond(seen)
        session = seen.body["session_id"]
        # A request the client gave up on (a stall past its timeout) may overlap its retry.
        counted = answer.delay_s == 0
        if counted:
            self.overlaps += self.in_flight[session] > 0
            self.in_flight[session] += 1
            self.max_in_flight = max(self.max_in_flight, sum(self.in_flight.values()))
        self.requests.append(replace(seen, status=answer.status))
        try:
            await asyncio.sleep(answer.delay_s or 0.001)
        finally:
            if counted:
                self.in_flight[session] -= 1
        return web.Response(status=answer.status, headers=answer.headers)

    def delivered(self) -> list[Received]:
        """Requests answered 2xx, in arrival order."""
        return [r for r in self.requests if r.ok]

    def delivered_ids(self) -> set[str]:
        """Event ids answered 2xx at least once."""
        return {r.body["id"] for r in self.delivered()}


def message(index: int, text: str | None = None) -> Any:
    """A GWS text message with index ``index``."""
    return parse_message(
        {
            "index": index,
            "type": "Text",
            "text": text or f"message {index}",
            "from": {"type": "Customer", "nickname": "Pat", "participantId": "00AA"},
            "visibility": "All",
            "timestampSeconds": 1700000000000 + index,
        }
    )


class EventSource:
    """A real archive plus its writer and feed, to give the dispatcher events without GWS."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.next_index: Counter[str] = Counter()
        self._writer = ArchiveWriter(path)
        self._reader = ArchiveReader(path)
        self.feed: EventFeed | None = None

    async def __aenter__(self) -> EventSource:
        await self._writer.open()
        await self._reader.open()
        self.feed = EventFeed(self._reader, self._writer.last_seq)
        self._writer.on_commit = self.feed.committed
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._reader.close()
        await self._writer.close()

    async def add(
        self, session_id: str, count: int, *, account: str = "agent1", end: bool = False
    ) -> list[Event]:
        """Archive ``count`` more messages of a session; return the events committed."""
        first = self.next_index[session_id] + 1
        self.next_index[session_id] += count
        session = parse_session(
            {"id": session_id, "state": "Chatting", "participants": [], "userData": {}}
        )
        page = Page(
            account,
            session,
            [message(i) for i in range(first, first + count)],
            end_reason="completed" if end else None,
        )
        return [row.typed() for row in (await self._writer.store_page(page)).events]

    def event_ids(self) -> list[str]:
        """Every event id in the archive, in seq order."""
        return [row[0] for row in rows(self.path, "SELECT event_id FROM events ORDER BY seq")]


@asynccontextmanager
async def dispatching(source: EventSource, hooks: HooksConfig) -> AsyncIterator[HookDispatcher]:
    """Run a dispatcher over ``source`` until the block ends."""
    assert source.feed is not None
    async with HookDispatcher(source.path, source.feed, hooks) as dispatcher:
        task = asyncio.create_task(dispatcher.run())
        try:
            yield dispatcher
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def rows(path: ArchiveLocation, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows from the archive (SQLite or PostgreSQL), through a separate connection."""
    return query(path, sql, params)


def deliveries(path: ArchiveLocation, status: str) -> list[tuple[Any, ...]]:
    """(subscriber, event_id, attempts, last_error) of queued deliveries in ``status``."""
    return rows(
        path,
        "SELECT d.subscriber, e.event_id, d.attempts, d.last_error FROM hook_deliveries d"
        " JOIN events e ON e.seq = d.seq WHERE d.status = ? ORDER BY d.seq",
        (status,),
    )


def order_violations(requests: list[Received], seqs_by_session: dict[str, list[int]]) -> list[str]:
    """Deliveries that came before an earlier event of their session had been delivered."""
    delivered: dict[str, set[int]] = {}
    problems = []
    for request in requests:
        if not request.ok:
            continue
        session, seq = request.body["session_id"], request.body["seq"]
        done = delivered.setdefault(session, set())
        missing = [s for s in seqs_by_session[session] if s < seq and s not in done]
        if missing:
            problems.append(f"{request.body['id']} before seq {missing[0]}")
        done.add(seq)
    return problems


def seqs_by_session(path: ArchiveLocation) -> dict[str, list[int]]:
    """Every session's event seqs, ascending."""
    found: dict[str, list[int]] = {}
    for session_id, seq in rows(path, "SELECT session_id, seq FROM events ORDER BY seq"):
        found.setdefault(session_id, []).append(seq)
    return found


@pytest.fixture
async def source(tmp_path: Path) -> AsyncIterator[EventSource]:
    """An empty archive to add events to."""
    async with EventSource(tmp_path / "archive.sqlite3") as events:
        yield events


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A webhook receiver answering 204 until a test sets its ``respond``."""
    async with Receiver() as endpoint:
        yield endpoint


@pytest.fixture
def hook_calls() -> Iterator[None]:
    """Forget the calls the Python hook targets recorded, before and after the test."""
    hook_targets.reset()
    yield
    hook_targets.reset()
