"""The shape every resource shares, and the event loop the daemon runs on.

:class:`Resource` is an async context manager over ``open()`` and ``close()``; :func:`run` runs
a coroutine on uvloop (libuv), which costs about half of asyncio's own loop per request, with
the garbage collector's young generation sized for the daemon's (see ``GC_THRESHOLDS``).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

import uvloop

T = TypeVar("T")

# CPython's default collects the young generation every 700 new objects. The daemon always has
# thousands alive for a moment (a page's messages waiting for their commit, a list's entries,
# a poll's request): each collection scanned them, promoted them, and the promotions led to
# full collections over the whole heap (10,000 pollers' state). A young collection every
# 100,000 objects lets them die first. Measured with `gws-archiver bench`: ingest 0.46-0.58 ->
# 0.39-0.43 CPU-s per 10,000 messages; live 2,000-2,600 -> 3,600 requests/s at the same CPU.
GC_THRESHOLDS = (100_000, 20, 10)


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to the end on a new uvloop event loop (the daemon's, and the bench's)."""
    thresholds = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main)
    finally:
        gc.set_threshold(*thresholds)


class Resource:
    """``async with resource:`` opens it and always closes it; ``close()`` is safe twice."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Acquire what the resource holds (nothing, unless a subclass says otherwise)."""

    async def close(self) -> None:
        """Release what the resource holds."""
