"""The shape every resource shares, and the event loop the daemon runs on.

:class:`Resource` is an async context manager over ``open()`` and ``close()``; :func:`run` runs
a coroutine on uvloop (libuv), which costs about half of asyncio's own loop per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

import uvloop

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to the end on a new uvloop event loop (the daemon's, and the bench's)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


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
