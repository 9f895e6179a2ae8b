"""The in-process subscribe API: committed events, read back from the archive in order.

The writer reports "events up to seq N are committed"; followers read the rows after their own
position from the ``events`` table. Nothing is buffered in memory, so a slow follower only lags.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import structlog

from archiver.events import Event
from archiver.store.reader import ArchiveReader

log = structlog.get_logger()

EventHandler = Callable[[Event], Awaitable[None] | None]


class EventFeed:
    """Tells followers when new events are committed, and streams them from the archive."""

    def __init__(self, reader: ArchiveReader, committed_seq: int) -> None:
        self._reader = reader
        self._committed_seq = committed_seq
        self._wakeup = asyncio.Event()

    @property
    def committed_seq(self) -> int:
        """The newest event known to be committed."""
        return self._committed_seq

    def committed(self, seq: int) -> None:
        """Called by the writer after a commit: events up to ``seq`` are readable."""
        if seq > self._committed_seq:
            self._committed_seq = seq
            wakeup, self._wakeup = self._wakeup, asyncio.Event()
            wakeup.set()

    async def follow(
        self,
        after_seq: int | None = None,
        *,
        types: Sequence[str] = (),
        session_id: str | None = None,
    ) -> AsyncIterator[Event]:
        """Yield committed events after ``after_seq`` (default: from now on), forever, in order."""
        position = self._committed_seq if after_seq is None else after_seq
        while True:
            if position >= self._committed_seq:
                await self._wakeup.wait()
                continue
            watermark = self._committed_seq
            batch = await self._reader.events_after(
                position, types=types, session_id=session_id, limit=500
            )
            if not batch:
                # Filtered out: everything up to the watermark has been looked at.
                position = watermark
                continue
            for event in batch:
                yield event
            position = batch[-1].seq

    async def subscribe(
        self,
        handler: EventHandler,
        after_seq: int | None = None,
        *,
        types: Sequence[str] = (),
        session_id: str | None = None,
    ) -> None:
        """Call ``handler`` (sync or async) for each committed event, forever.

        A handler that raises is logged and skipped for that event; it never stops the feed.
        """
        async for event in self.follow(after_seq, types=types, session_id=session_id):
            try:
                result = handler(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("subscriber_failed", event_id=event.event_id, handler=repr(handler))
