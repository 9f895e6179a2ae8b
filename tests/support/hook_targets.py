"""Python hook targets the hooks tests configure as ``tests.support.hook_targets:NAME``.

They record into module-level lists, which the ``hook_calls`` fixture of each test resets.
"""

from __future__ import annotations

import time
from collections import Counter

from archiver.events import Event

RECEIVED: list[Event] = []
ASYNC_RECEIVED: list[Event] = []
PLUGIN_RECEIVED: list[Event] = []
SLOW_RECEIVED: list[Event] = []
ATTEMPTS: Counter[str] = Counter()


def reset() -> None:
    """Forget every call."""
    for calls in (RECEIVED, ASYNC_RECEIVED, PLUGIN_RECEIVED, SLOW_RECEIVED):
        calls.clear()
    ATTEMPTS.clear()


def record(event: Event) -> None:
    """A plain hook."""
    RECEIVED.append(event)


async def record_async(event: Event) -> None:
    """An async hook."""
    ASYNC_RECEIVED.append(event)


def record_plugin(event: Event) -> None:
    """The hook of a plugin installed through an entry point."""
    PLUGIN_RECEIVED.append(event)


def flaky(event: Event) -> None:
    """Raises on the first two attempts of every event, then records it."""
    ATTEMPTS[event.event_id] += 1
    if ATTEMPTS[event.event_id] <= 2:
        raise RuntimeError(f"attempt {ATTEMPTS[event.event_id]} of {event.event_id} fails")
    RECEIVED.append(event)


def always_raises(event: Event) -> None:
    """Never succeeds."""
    raise ValueError("this hook is broken")


def slow(event: Event) -> None:
    """Takes a second per event, blocking its thread (as careless hooks do)."""
    time.sleep(1.0)
    SLOW_RECEIVED.append(event)
