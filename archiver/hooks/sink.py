"""What every kind of subscriber implements: deliver one event, say how it went."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from archiver.events import Event


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one delivery attempt came to."""

    ok: bool
    error: str | None = None
    retry_after_s: float | None = None  # the receiver's wish (Retry-After), if it said one
    gone: bool = False  # the receiver asked never to be called again (HTTP 410)


DELIVERED = Outcome(ok=True)


def failed(error: str, *, retry_after_s: float | None = None, gone: bool = False) -> Outcome:
    """A failed attempt, retried later unless ``gone``."""
    return Outcome(ok=False, error=error, retry_after_s=retry_after_s, gone=gone)


class Sink(abc.ABC):
    """A subscriber's way of receiving events; an async context manager."""

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

    async def open(self) -> None:  # noqa: B027 - most sinks hold nothing to open
        """Acquire what deliveries need (an HTTP session, a thread pool)."""

    async def close(self) -> None:  # noqa: B027 - most sinks hold nothing to close
        """Release it; safe to call twice."""

    @abc.abstractmethod
    async def deliver(self, event: Event) -> Outcome:
        """Try once to hand ``event`` over; failures are outcomes, not exceptions."""
