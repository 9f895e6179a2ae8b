"""What every kind of subscriber implements: deliver one event, say how it went."""

from __future__ import annotations

import abc
from dataclasses import dataclass

from archiver.events import Event
from archiver.lifecycle import Resource


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


class Sink(Resource, abc.ABC):
    """A subscriber's way of receiving events; ``open`` acquires what deliveries need."""

    @abc.abstractmethod
    async def deliver(self, event: Event) -> Outcome:
        """Try once to hand ``event`` over; failures are outcomes, not exceptions."""
