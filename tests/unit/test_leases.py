"""Leases dividing a shared archive's work: fair shares, rebalancing as daemons come and go,
and never one piece of work on two daemons at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from itertools import pairwise
from typing import Any

import pytest

from archiver.cluster import LeaseKeeper, Work
from archiver.errors import StoreError
from archiver.store.postgres import PostgresArchive
from archiver.store.writer import ArchiveWriter
from tests.support import wait_for

pytestmark = pytest.mark.postgres

NAMES = [f"account:agent{n}" for n in range(1, 7)]
LEASE_S = 3.0
SLOW_STOP_S = 0.4  # below the wait for work given back to stop (0.2 x lease_s)

Run = list[Any]  # [start, end or None while it runs, who]
Intervals = dict[str, list[Run]]  # per lease, every run of its work


def recorder(intervals: Intervals, name: str, who: str, stop_s: float) -> Work:
    """Work that runs until cancelled, takes ``stop_s`` to stop, and records when it ran."""

    async def work() -> None:
        run: Run = [time.monotonic(), None, who]
        intervals.setdefault(name, []).append(run)
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(stop_s)  # a lease given back before this would show overlap
            run[1] = time.monotonic()

    return work


@asynccontextmanager
async def daemon(
    archive: PostgresArchive, who: str, intervals: Intervals, stop_s: float = 0.0
) -> AsyncIterator[LeaseKeeper]:
    """A keeper running every lease's work while it holds it; it leaves cleanly at the end."""
    async with LeaseKeeper(
        archive, NAMES, lease_s=LEASE_S, on_committed=lambda seq: None
    ) as keeper:
        tasks = [asyncio.create_task(keeper.run())]
        tasks += [
            asyncio.create_task(keeper.run_held(name, recorder(intervals, name, who, stop_s)))
            for name in NAMES
        ]
        try:
            yield keeper
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def working(intervals: Intervals, *who: str) -> Callable[[], list[int]]:
    """How many leases' work each of ``who`` is running now."""
    return lambda: [
        sum(run[1] is None and run[2] == one for runs in intervals.values() for run in runs)
        for one in who
    ]


def overlaps(intervals: Intervals) -> list[str]:
    """Leases whose work ran on two keepers at once."""
    found = []
    for name, runs in intervals.items():
        ordered = sorted(runs, key=lambda run: run[0])
        for (_, end, who), (start, _, other) in pairwise(ordered):
            if end is None or start < end:
                found.append(f"{name}: {who} until {end}, {other} from {start:.3f}")
    return found


async def test_work_is_divided_and_rebalanced_as_daemons_come_and_go(postgres_url: str) -> None:
    archive = PostgresArchive(postgres_url)
    async with ArchiveWriter(archive):
        pass  # the schema
    intervals: Intervals = {}
    async with daemon(archive, "a", intervals, SLOW_STOP_S):
        await wait_for(lambda: working(intervals, "a")() == [6], 30)
        async with daemon(archive, "b", intervals, SLOW_STOP_S):
            await wait_for(lambda: working(intervals, "a", "b")() == [3, 3], 30)
            async with daemon(archive, "c", intervals, SLOW_STOP_S):
                await wait_for(lambda: working(intervals, "a", "b", "c")() == [2, 2, 2], 30)
            # c left cleanly: its leases are free at once and taken in the next round.
            await wait_for(lambda: working(intervals, "a", "b")() == [3, 3], 30)
        await wait_for(lambda: working(intervals, "a")() == [6], 30)
    assert overlaps(intervals) == []


async def test_a_daemon_cut_off_stops_its_work_before_another_takes_it(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = PostgresArchive(postgres_url)
    async with ArchiveWriter(archive):
        pass
    intervals: Intervals = {}
    async with daemon(archive, "a", intervals) as cut_off, daemon(archive, "b", intervals):
        await wait_for(lambda: working(intervals, "a", "b")() == [3, 3], 30)

        async def unreachable(*args: object, **kwargs: object) -> None:
            raise StoreError("the server cannot be reached")

        # a is cut off from PostgreSQL: every round fails from now on.
        monkeypatch.setattr(cut_off._db, "run", unreachable)
        await wait_for(lambda: working(intervals, "a", "b")() == [0, 6], 30)
        assert cut_off.lost == 3
    assert overlaps(intervals) == []
