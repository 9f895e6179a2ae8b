"""How often sessions and lists are read, and how many pages are fetched or stored at once.

:class:`Pacing` is one account's: adaptive intervals, relaxed while push is healthy.
:class:`PageSlots` is shared by every session of every account; drains take slots first.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from archiver.config import PollConfig, PushConfig

GROWTH = 1.5
DEFAULT_PAGE_SLOTS = 32
# A page slot covers a page's fetch and its wait for the writer's commit, and under load the
# wait is most of it: with one slot per connection, one-message pages (push hints, live
# sessions) queued behind commits (push p50 5.2 s; with four, 1.5 s). Fetches stay bounded by
# the connections; parsed pages in memory by the slots (ingest peak RSS 76 -> 104 MB).
SLOTS_PER_CONNECTION = 4


class Wakeup:
    """An event with a timed wait that costs one future and one timer handle.

    ``asyncio.timeout`` around ``Event.wait`` ends every quiet wait by cancelling the task and
    turning the CancelledError into a TimeoutError: thousands of sessions waiting out their
    intervals pay that on every idle poll. Here the timer just resolves the future.
    """

    __slots__ = ("_flag", "_waiter")

    def __init__(self) -> None:
        self._flag = False
        self._waiter: asyncio.Future[None] | None = None

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        self._flag = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def clear(self) -> None:
        self._flag = False

    async def wait(self, timeout_s: float) -> bool:
        """Wait until set or ``timeout_s`` passed; True if set."""
        if self._flag:
            return True
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(timeout_s, _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        return self._flag


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


@dataclass(slots=True)
class Pacing:
    """How often one account's sessions and list are read: adaptive, or relaxed under push."""

    poll: PollConfig
    push: PushConfig | None = None
    push_healthy: bool = False

    def next_interval(self, current_s: float, stored: bool) -> float:
        """The wait before a session's next poll, after one that stored (or not) something."""
        if self.push is not None and self.push_healthy:
            return self.push.safety_interval_s
        if stored:
            # Halve rather than reset: a session that talks every few seconds settles near
            # its own pace instead of paying a burst of empty polls after every message.
            return max(self.poll.min_interval_s, current_s / 2)
        return min(self.poll.max_interval_s, current_s * GROWTH)

    def list_interval(self) -> float:
        """The wait before the account's next session-list read."""
        if self.push is not None and self.push_healthy:
            return max(self.poll.sessions_interval_s, self.push.safety_interval_s)
        return self.poll.sessions_interval_s

    def debounce(self) -> float:
        """How long a hinted poll waits for more hints of the same session."""
        return self.push.debounce_s if self.push is not None else 0.0


class PageSlots:
    """Pages fetched or stored at once, shared by every session; drains go first.

    A session whose end is near (GWS keeps it readable for a short while only) takes the next
    free slot ahead of every routine poll waiting for one.
    """

    def __init__(self, size: int) -> None:
        self._free = size
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._routine: deque[asyncio.Future[None]] = deque()

    async def take(self, *, urgent: bool = False) -> None:
        """Wait for a slot and hold it; give it back with :meth:`release`.

        (Not a context manager: a generator-based one costs more than the whole bookkeeping,
        once per poll of every session.)
        """
        if self._free > 0 and not self._urgent and not self._routine:
            self._free -= 1
            return
        waiter = asyncio.get_running_loop().create_future()
        (self._urgent if urgent else self._routine).append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot as it was cancelled: pass it on
            raise

    def release(self) -> None:
        """Give a slot back: to the first drain waiting, else the first routine poll."""
        for queue in (self._urgent, self._routine):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return
        self._free += 1
