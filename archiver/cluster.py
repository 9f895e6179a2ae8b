"""Sharing the work between daemons on one PostgreSQL archive, through leases.

:class:`LeaseKeeper` claims leases every ``lease_s / 3`` seconds (see
:mod:`archiver.store.leases`) and runs each piece of work only while this daemon holds its
lease: :meth:`LeaseKeeper.run_held` starts the work when the lease is won and cancels it when the
lease is lost or given back. A lease counts as held here only until ``lease_s`` minus a margin
after the start of the last round that renewed it, so a daemon cut off from PostgreSQL stops
its work before the server lets another daemon take it: never two daemons on one account.
Another daemon takes a dead one's work within ``lease_s`` plus one round (``4/3 * lease_s``:
about 13 s with the default 10 s).

Leases are named after their work: ``account:<username>`` (the account's lists, sessions,
push and, for the team-mode supervisor, the team), ``hook:<subscriber>`` (one subscriber's
deliveries) and ``maintenance`` (retention and the reconciler). A lease held beyond the fair
share is given back only once its work has stopped, so no two daemons do one piece at once.

The keeper also tells the event feed about events other daemons committed (every
``FEED_INTERVAL_S``), so hooks and the live stream see the whole archive's events.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import structlog

from archiver.errors import StoreError
from archiver.lifecycle import Resource
from archiver.store.db import DatabaseThread
from archiver.store.leases import claim, committed_seq, leave, release
from archiver.store.postgres import PostgresArchive

log = structlog.get_logger()

FEED_INTERVAL_S = 0.5
# A lease is given up locally this long before the server would let another daemon take it.
MARGIN_FRACTION = 0.2

ACCOUNT_LEASE_PREFIX = "account:"
HOOK_LEASE_PREFIX = "hook:"
MAINTENANCE_LEASE = "maintenance"
# How long a round waits for the work it gives back to stop, as a fraction of lease_s.
STOP_WAIT_FRACTION = 0.2

Work = Callable[[], Coroutine[Any, Any, None]]
Hold = Callable[[str, Work], Coroutine[Any, Any, None]]


async def run_now(name: str, work: Work) -> None:
    """A :data:`Hold` for an archive only this daemon uses: every lease is always held."""
    await work()


class LeaseKeeper(Resource):
    """Claims the leases of ``names`` for this daemon and runs their work while it holds them."""

    def __init__(
        self,
        archive: PostgresArchive,
        names: Sequence[str],
        *,
        lease_s: float,
        on_committed: Callable[[int], None],
    ) -> None:
        self.names = list(names)
        self.lease_s = lease_s
        self.daemon_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._on_committed = on_committed
        self._db = DatabaseThread(archive, name="lease keeper", failure=f"leases on {archive}")
        self._held: set[str] = set()
        self._working: set[str] = set()  # leases whose work is running (or stopping)
        self._valid_until = 0.0  # monotonic: the held leases count until then
        self._changed = asyncio.Event()
        self.lost = 0  # leases lost (not given back by choice) since start

    async def open(self) -> None:
        await self._db.open()
        await self._round()

    async def close(self) -> None:
        try:
            await self._db.run(leave, self.daemon_id)
        except StoreError as exc:
            log.warning("leases_not_released", error=str(exc))
        await self._db.close()

    def holds(self, name: str) -> bool:
        """Whether this daemon may do ``name``'s work now."""
        return name in self._held and time.monotonic() < self._valid_until

    def held(self) -> list[str]:
        """The leases held now, by name."""
        return sorted(name for name in self._held if self.holds(name))

    async def run(self) -> None:
        """Claim every ``lease_s / 3`` and follow the archive's events, until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._follow_events())
            while True:
                await asyncio.sleep(self.lease_s / 3)
                await self._round()

    async def run_held(self, name: str, work: Work) -> None:
        """Run ``work`` whenever this daemon holds ``name``; cancel it when the lease goes."""
        while True:
            while not self.holds(name):
                await self._wait_change()
            log.info("lease_won", lease=name, daemon=self.daemon_id)
            self._working.add(name)
            task = asyncio.create_task(work(), name=f"held-{name}")
            try:
                while self.holds(name) and not task.done():
                    waiting = asyncio.create_task(self._wait_change())
                    await asyncio.wait(
                        {task, waiting}, timeout=self._remaining(), return_when="FIRST_COMPLETED"
                    )
                    waiting.cancel()
            finally:
                if not task.done():
                    task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                self._working.discard(name)
                self._signal()
            if not task.cancelled():
                task.result()  # the work's failure is the daemon's
            log.warning("lease_left", lease=name, daemon=self.daemon_id)

    def _remaining(self) -> float:
        return max(self._valid_until - time.monotonic(), 0.0) + 0.01

    async def _wait_change(self) -> None:
        await self._changed.wait()

    async def _round(self) -> None:
        started = time.monotonic()
        try:
            held, share = await self._db.run(
                claim, self.daemon_id, socket.gethostname(), os.getpid(), self.names, self.lease_s
            )
        except StoreError as exc:
            log.warning("lease_round_failed", error=str(exc), held=sorted(self._held))
            if time.monotonic() >= self._valid_until and self._held:
                self.lost += len(self._held)
                self._held = set()
                self._signal()
            return
        gone = self._held - held
        if gone:
            self.lost += len(gone)
            log.warning("leases_lost", leases=sorted(gone))
        excess = set(sorted(held)[share:])
        self._held = held - excess
        self._valid_until = started + self.lease_s * (1 - MARGIN_FRACTION)
        self._signal()
        if excess:
            await self._give_back(excess)

    async def _give_back(self, names: set[str]) -> None:
        """Release ``names`` once their work has stopped (else the next round tries again)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.lease_s * STOP_WAIT_FRACTION):
                while names & self._working:
                    await self._wait_change()
        stopped = sorted(names - self._working)
        try:
            await self._db.run(release, self.daemon_id, stopped)
        except StoreError as exc:
            log.warning("leases_not_released", error=str(exc))
            return
        log.info("leases_given_back", leases=stopped)

    def _signal(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _follow_events(self) -> None:
        while True:
            try:
                self._on_committed(await self._db.run(committed_seq))
            except StoreError as exc:
                log.debug("events_follow_failed", error=str(exc))
            await asyncio.sleep(FEED_INTERVAL_S)
