"""The shape every resource shares: an async context manager over ``open()`` and ``close()``."""

from __future__ import annotations

from types import TracebackType
from typing import Self


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
