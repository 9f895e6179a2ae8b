"""The hook dispatcher: delivers committed events to each subscriber from its own cursor.

Per subscriber, in a loop: move the events after its cursor into its queue in the archive (one
short transaction that also advances the cursor), deliver them with one event in flight per
session and up to ``max_in_flight`` sessions at once, retry failures on the subscriber's
schedule, dead-letter what never succeeds, and record outcomes in batches. The queue in memory
mirrors the archive's and is bounded, so a slow or failing subscriber lags on its cursor while
polling goes on: the dispatcher reads and writes through its own connection and never waits for
the archive writer, nor makes it wait beyond one of its own short transactions.

At least once: a delivery is recorded after it succeeded, so a crash in between sends it again,
with the same ``webhook-id``. In order within a session: a session's next event is attempted
only once the one before it was delivered or dead-lettered.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Literal

import structlog
from structlog.contextvars import bound_contextvars

from archiver.cluster import HOOK_LEASE_PREFIX, Hold, run_now
from archiver.config import HookConfig, HooksConfig
from archiver.errors import ArchiverError, ConfigError
from archiver.feed import EventFeed
from archiver.hooks.command import CommandSink
from archiver.hooks.python import PythonSink, discover_plugins, load_target
from archiver.hooks.retry import retry_delay
from archiver.hooks.sink import Outcome, Sink, failed
from archiver.hooks.webhook import WebhookSink
from archiver.store.db import ArchiveLocation
from archiver.store.deliveries import DeliveryStore, QueuedDelivery, Settled, SubscriberStatus

log = structlog.get_logger()

# An attempt in flight this long no longer holds a slot of max_in_flight (see _due) ...
SLOW_AFTER_S = 1.0
# ... but every subscriber keeps at most this many times max_in_flight attempts in flight.
HUNG_FACTOR = 4


@dataclass(frozen=True, slots=True)
class Subscriber:
    """A configured subscriber and the sink that reaches it."""

    hook: HookConfig
    kind: str  # webhook, command, python or plugin
    sink: Sink


def build_subscribers(hooks: HooksConfig, source: str) -> list[Subscriber]:
    """A sink per configured subscriber and per plugin; a target that cannot load is fatal."""
    subscribers: list[Subscriber] = [
        Subscriber(h, "webhook", WebhookSink(h, connections=h.max_in_flight * HUNG_FACTOR))
        for h in hooks.webhooks
    ]
    subscribers += [Subscriber(h, "command", CommandSink(h)) for h in hooks.commands]
    for position, hook in enumerate(hooks.python):
        try:
            function = load_target(hook.target)
        except Exception as exc:
            raise ConfigError(
                source, f"hooks.python[{position}].target", f"cannot be loaded: {exc!r}"
            ) from None
        subscribers.append(Subscriber(hook, "python", PythonSink(hook, function)))
    if hooks.plugins:
        names = {s.hook.name for s in subscribers}
        for plugin in discover_plugins():
            try:
                function = load_target(plugin.target)
            except Exception as exc:
                # A broken plugin package must not stop archiving.
                log.error("hook_plugin_unloadable", hook=plugin.name, error=repr(exc))
                continue
            if plugin.name not in names:
                subscribers.append(Subscriber(plugin, "plugin", PythonSink(plugin, function)))
    return subscribers


class HookDispatcher:
    """Every subscriber's delivery loop; enter it, then ``run()`` it in the daemon's TaskGroup."""

    def __init__(
        self,
        archive: ArchiveLocation,
        feed: EventFeed,
        hooks: HooksConfig,
        *,
        source: str = "<config>",
        busy_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.archive = archive
        self.feed = feed
        self.subscribers = build_subscribers(hooks, source)
        self.runners: list[SubscriberRunner] = []
        self._busy_timeout_s = busy_timeout_s
        self._clock = clock
        self._rng = rng or random.Random()
        self._stack = AsyncExitStack()
        self._store: DeliveryStore | None = None

    async def __aenter__(self) -> HookDispatcher:
        if not self.subscribers:
            return self
        # Subscribers seen for the first time start with the events committed from now on.
        start_seq = self.feed.committed_seq
        try:
            store = await self._stack.enter_async_context(
                DeliveryStore(self.archive, busy_timeout_s=self._busy_timeout_s)
            )
            for subscriber in self.subscribers:
                await self._stack.enter_async_context(subscriber.sink)
            states = await store.register(
                [(s.hook.name, s.kind, s.hook.filters) for s in self.subscribers], start_seq
            )
        except BaseException:
            await self._stack.aclose()
            raise
        self._store = store
        self.runners = [self._runner(s, states[s.hook.name]) for s in self.subscribers]
        log.info("hooks_started", subscribers=[s.hook.name for s in self.subscribers])
        return self

    def _runner(self, subscriber: Subscriber, state: SubscriberStatus) -> SubscriberRunner:
        assert self._store is not None
        return SubscriberRunner(
            subscriber,
            self._store,
            state,
            committed=lambda: self.feed.committed_seq,
            clock=self._clock,
            rng=random.Random(self._rng.random()),
        )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    async def run(self, hold: Hold = run_now) -> None:
        """Deliver until cancelled (returns at once if nobody subscribed); each subscriber
        whenever ``hold`` runs it (a shared archive's lease ``hook:<name>``), from the cursor
        and queue the archive holds for it then (another daemon may have moved them)."""
        async with asyncio.TaskGroup() as tasks:
            for position, runner in enumerate(self.runners):
                lease = f"{HOOK_LEASE_PREFIX}{runner.name}"
                tasks.create_task(hold(lease, partial(self._deliver, position)), name=lease)

    async def _deliver(self, position: int) -> None:
        runner = self.runners[position]
        if runner.started:
            assert self._store is not None
            (state,) = await self._store.status(runner.name)
            runner = self.runners[position] = self._runner(self.subscribers[position], state)
        await runner.run()


class SubscriberRunner:
    """One subscriber's queue, in flight deliveries, retries and outcomes."""

    def __init__(
        self,
        subscriber: Subscriber,
        store: DeliveryStore,
        state: SubscriberStatus,
        *,
        committed: Callable[[], int],
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        window: int = 1000,
        idle_s: float = 0.05,
        refresh_s: float = 1.0,
        flush_s: float = 0.1,
    ) -> None:
        self.name = subscriber.hook.name
        self.hook = subscriber.hook
        self.sink = subscriber.sink
        self._store = store
        self._committed = committed
        self._clock = clock
        self._rng = rng or random.Random()
        self._window = window  # events held in memory (and queued in the archive) at most
        self._idle_s = idle_s  # how often the committed watermark is looked at
        self._refresh_s = refresh_s  # how often the archive is read for `hooks` CLI changes
        self._flush_s = flush_s  # outcomes are recorded in batches at most this far apart
        self._last_flush = 0.0
        self._cursor = state.cursor_seq
        self._disabled = state.disabled_reason is not None
        self._lanes: dict[str, deque[QueuedDelivery]] = {}
        self._busy: dict[str, float] = {}  # sessions with an attempt in flight: since when
        self._queued = 0
        self._loaded_id = 0
        self._backlog = True  # the archive may hold pending rows not loaded yet
        self._settled: list[Settled] = []
        self.delivered = 0  # events delivered by this runner (this run)
        self.started = False  # run once already: its memory is not the archive's any more
        self._gone: str | None = None
        self._retrying: set[int] = set()  # deliveries waiting to be tried again
        self._next_due = 0.0
        self._next_refresh = 0.0
        self._wakeup = asyncio.Event()

    async def run(self) -> None:
        """Deliver until cancelled; a failing cycle is logged and retried, never fatal."""
        self.started = True
        with bound_contextvars(subscriber=self.name):
            await self._run()

    async def _run(self) -> None:
        try:
            async with asyncio.TaskGroup() as attempts:
                while True:
                    try:
                        for queued in await self.run_once():
                            attempts.create_task(self._attempt(queued))
                    except Exception:
                        log.exception("hook_cycle_failed", hook=self.name)
                        await asyncio.sleep(self._refresh_s)
                    await self._wait()
        finally:
            # Record what finished before the stop, so it is not sent again at the next start.
            try:
                await self._flush()
            except ArchiverError as exc:
                log.warning("hook_flush_failed", hook=self.name, error=str(exc))

    async def run_once(self) -> list[QueuedDelivery]:
        """One cycle: record outcomes, refill the queue, return the deliveries to start now.

        While deliveries are in flight, outcomes are recorded every ``flush_s`` (or when many
        are waiting), not after every delivery: one transaction per batch, not per event. A
        crash in between sends those events again, with the same ``webhook-id`` (at least once).
        """
        now = self._clock()
        quiet = not self._busy  # nothing in flight: record at once, nothing to batch with
        if (
            quiet
            or now - self._last_flush >= self._flush_s
            or len(self._settled) >= self._window // 2
        ):
            await self._flush()
            self._last_flush = now
        if now >= self._next_refresh:
            await self._refresh()
            self._next_refresh = now + self._refresh_s
        if self._disabled:
            return []
        await self._fill()
        return self._due(now)

    async def _flush(self) -> None:
        if self._settled:
            batch = list(self._settled)
            await self._store.settle(self.name, batch)
            del self._settled[: len(batch)]
        if self._gone is not None and not self._disabled:
            await self._store.disable(self.name, self._gone)
            self._disabled = True
            log.warning("hook_disabled", hook=self.name, reason=self._gone)

    async def _refresh(self) -> None:
        """Notice ``hooks enable`` and ``hooks replay`` run from the command line."""
        (state,) = await self._store.status(self.name)
        disabled = state.disabled_reason is not None
        if self._disabled and not disabled:
            log.info("hook_enabled", hook=self.name)
            self._gone = None
        self._disabled = disabled
        self._backlog = True
        self._next_due = 0.0

    async def _fill(self) -> None:
        """Load pending rows, then queue new events, while the window has room."""
        for _ in range(2):
            room = self._window - self._queued
            if room <= 0:
                return
            if not self._backlog:
                # Only once memory holds the whole archived queue, so the queue stays bounded.
                if self._committed() <= self._cursor:
                    return
                self._cursor, queued = await self._store.enqueue(self.name, self.hook.filters, room)
                if not queued:
                    return
            rows = await self._store.load(self.name, self._loaded_id, room)
            for row in rows:
                self._lanes.setdefault(row.event.session_id, deque()).append(row)
                self._loaded_id = max(self._loaded_id, row.row_id)
            self._queued += len(rows)
            self._backlog = len(rows) == room
            self._next_due = 0.0

    def _due(self, now: float) -> list[QueuedDelivery]:
        """Heads of idle sessions whose time has come, up to the in-flight bound.

        An attempt in flight for longer than ``SLOW_AFTER_S`` (a receiver hanging on it) stops
        counting towards ``max_in_flight``, so the sessions not waiting on it go on; all in
        flight stay within ``HUNG_FACTOR`` times the bound.
        """
        if now < self._next_due:
            return []
        picked: list[QueuedDelivery] = []
        next_due = math.inf
        active = sum(1 for since in self._busy.values() if now - since < SLOW_AFTER_S)
        limit = self.hook.max_in_flight
        for session_id, lane in self._lanes.items():
            if active >= limit or len(self._busy) >= limit * HUNG_FACTOR:
                next_due = self._next_hung(now)
                break
            if session_id in self._busy:
                continue
            head = lane[0]
            if head.due_at <= now:
                picked.append(head)
                self._busy[session_id] = now
                active += 1
            else:
                next_due = min(next_due, head.due_at)
        self._next_due = next_due
        return picked

    def _next_hung(self, now: float) -> float:
        """When the next attempt in flight counts as hung (a delivery ending looks sooner)."""
        if len(self._busy) >= self.hook.max_in_flight * HUNG_FACTOR:
            return math.inf
        slow = [since for since in self._busy.values() if now - since < SLOW_AFTER_S]
        return min(slow, default=now) + SLOW_AFTER_S

    async def _attempt(self, queued: QueuedDelivery) -> None:
        try:
            outcome = await self.sink.deliver(queued.event)
        except Exception as exc:  # a sink's bug fails this attempt, not the subscriber
            log.exception("hook_sink_error", hook=self.name, event_id=queued.event.event_id)
            outcome = failed(f"{type(exc).__name__}: {exc}")
        self._settle(queued, outcome)
        self._wakeup.set()

    def _settle(self, queued: QueuedDelivery, outcome: Outcome) -> None:
        """Apply an outcome in memory and note it for the next flush."""
        now = self._clock()
        event = queued.event
        self._busy.pop(event.session_id, None)
        lane = self._lanes.pop(event.session_id)
        queued.attempts += 1
        was_failing = bool(self._retrying)
        if outcome.gone:
            self._gone = outcome.error
        # A 410 keeps its event pending: it is retried once the subscriber is enabled again.
        dead = not outcome.ok and not outcome.gone and queued.attempts >= self.hook.max_attempts
        if outcome.ok or dead:
            self.delivered += outcome.ok
            lane.popleft()
            self._queued -= 1
            self._retrying.discard(queued.row_id)
            result: Literal["delivered", "dead"] = "delivered" if outcome.ok else "dead"
            self._settled.append(
                Settled(queued.row_id, result, queued.attempts, now, None, outcome.error)
            )
            if dead:
                log.warning(
                    "hook_dead_letter", hook=self.name, event_id=event.event_id, error=outcome.error
                )
        else:
            self._retrying.add(queued.row_id)
            delay = retry_delay(self.hook.retry, queued.attempts, outcome.retry_after_s, self._rng)
            queued.due_at = now + delay
            self._settled.append(
                Settled(queued.row_id, "retry", queued.attempts, now, queued.due_at, outcome.error)
            )
        # One log line per transition between healthy and failing, not one per attempt.
        if self._retrying and not was_failing:
            log.warning(
                "hook_failing", hook=self.name, event_id=event.event_id, error=outcome.error
            )
        elif was_failing and not self._retrying:
            log.info("hook_recovered", hook=self.name)
        if lane:
            # Back of the line: sessions take turns at the in-flight slots.
            self._lanes[event.session_id] = lane
        self._next_due = 0.0

    async def _wait(self) -> None:
        """Sleep until a delivery ends, the next retry is due, or it is time to look again."""
        timeout = self._refresh_s if self._disabled else self._idle_s
        timeout = max(0.0, min(timeout, self._next_due - self._clock()))
        try:
            async with asyncio.timeout(timeout):
                await self._wakeup.wait()
        except TimeoutError:
            pass
        self._wakeup.clear()
