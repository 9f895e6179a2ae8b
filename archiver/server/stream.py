"""``/events``: the archive's events as a Server-Sent Events stream.

Each event goes out as ``id: <seq>`` and ``data: <the event's JSON form>``. A client resumes
with ``Last-Event-ID`` (browsers send it on reconnect): the stream continues after that seq, read
from the archive through the EventFeed, never from a memory buffer, so a reconnecting client
misses nothing and sees nothing twice. Without it the stream starts at ``?after=SEQ``, else now.
Filters: ``?type=Text&type=SessionEnded`` (or ``type=Text,SessionEnded``) and ``?session=ID``.
A comment line every ``keepalive_s`` keeps proxies from closing an idle stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing, suppress
from dataclasses import dataclass
from typing import cast

from aiohttp import web

from archiver.events import EVENT_TYPES, Event
from archiver.feed import EventFeed

QUEUE_SIZE = 256  # events read ahead per client; a slow client holds the reader back, not memory
KEEPALIVE = b": keep-alive\n\n"


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """Where a stream starts and what it carries."""

    after_seq: int | None
    types: tuple[str, ...]
    session_id: str | None


def parse_stream_request(request: web.Request) -> StreamRequest:
    """Read ``Last-Event-ID``, ``after``, ``type`` and ``session``; HTTP 400 if one is bad."""
    start = request.headers.get("Last-Event-ID") or request.query.get("after")
    after_seq = None
    if start is not None:
        if not start.isdigit():
            raise web.HTTPBadRequest(text=f"the stream position must be a seq number: {start!r}\n")
        after_seq = int(start)
    types = tuple(
        name.strip()
        for value in request.query.getall("type", [])
        for name in value.split(",")
        if name.strip()
    )
    unknown = sorted(set(types) - set(EVENT_TYPES))
    if unknown:
        raise web.HTTPBadRequest(text=f"unknown event type: {', '.join(unknown)}\n")
    return StreamRequest(after_seq, types, request.query.get("session") or None)


def frame(event: Event) -> bytes:
    """One SSE message: the seq as its id, the JSON form as its data."""
    return b"id: %d\ndata: %s\n\n" % (event.seq, event.to_bytes())


async def stream_events(
    request: web.Request, feed: EventFeed, keepalive_s: float
) -> web.StreamResponse:
    """Send committed events until the client goes away or the server shuts down."""
    wanted = parse_stream_request(request)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx: pass events through unbuffered
        }
    )
    await response.prepare(request)
    queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_SIZE)
    async with asyncio.TaskGroup() as tasks:
        reader = tasks.create_task(_read_ahead(feed, wanted, queue), name="sse-read-ahead")
        with suppress(ConnectionError):  # the client went away: that is how streams end
            await _send(response, queue, keepalive_s)
        reader.cancel()
    return response


async def _read_ahead(feed: EventFeed, wanted: StreamRequest, queue: asyncio.Queue[Event]) -> None:
    # follow() is an async generator: close it here, not whenever it is garbage-collected.
    events = cast(
        AsyncGenerator[Event, None],
        feed.follow(wanted.after_seq, types=wanted.types, session_id=wanted.session_id),
    )
    async with aclosing(events):
        async for event in events:
            await queue.put(event)


async def _send(
    response: web.StreamResponse, queue: asyncio.Queue[Event], keepalive_s: float
) -> None:
    while True:
        try:
            async with asyncio.timeout(keepalive_s):
                event = await queue.get()
        except TimeoutError:
            await response.write(KEEPALIVE)
            continue
        await response.write(frame(event))
