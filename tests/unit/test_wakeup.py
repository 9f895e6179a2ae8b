"""The pollers' wake-up: set before, during, or never within the wait."""

from __future__ import annotations

import asyncio

from archiver.pacing import Wakeup


async def test_a_wakeup_set_before_the_wait_returns_at_once() -> None:
    wakeup = Wakeup()
    wakeup.set()
    assert await asyncio.wait_for(wakeup.wait(3600), 1)


async def test_a_wakeup_set_during_the_wait_ends_it() -> None:
    wakeup = Wakeup()
    waiting = asyncio.create_task(wakeup.wait(3600))
    await asyncio.sleep(0)
    wakeup.set()
    assert await asyncio.wait_for(waiting, 1)


async def test_an_unset_wakeup_waits_out_its_time_and_stays_clear_once_cleared() -> None:
    wakeup = Wakeup()
    assert not await wakeup.wait(0.01)
    wakeup.set()
    wakeup.clear()
    assert not wakeup.is_set()
    assert not await wakeup.wait(0)
