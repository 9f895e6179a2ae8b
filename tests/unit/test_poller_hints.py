"""Push hints in the poller: immediate, debounced polls; at most one in flight per session."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from archiver.accounts import AccountPoller
from archiver.config import PollConfig, PushConfig
from archiver.gws.client import GwsClient
from archiver.gws.notifications import Hint
from archiver.gws.transport import GwsHost
from archiver.pacing import Pacing
from archiver.state import PollStats
from archiver.store.writer import ArchiveWriter
from gws_simulator import FaultRates, Simulator, SimulatorOptions
from tests.support import archived_messages, daemon_config, wait_for

MESSAGES_ROUTE = "GET /api/v2/me/{collection}/{session_id}/messages"
# Slow enough that only hints (and the first poll) cause polls during a test.
SLOW_POLL = PollConfig(min_interval_s=60, max_interval_s=60, sessions_interval_s=60, jitter=0)
PUSH = PushConfig(enabled=True, debounce_s=0.05, safety_interval_s=60)


def message_reads(sim: Simulator) -> int:
    return sum(sim.stats()["requests"].get(MESSAGES_ROUTE, {}).values())


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(SimulatorOptions(agents=1, seed=3, scenario=None)) as simulator:
        yield simulator


@pytest.fixture
async def account(sim: Simulator, tmp_path: Path) -> AsyncIterator[AccountPoller]:
    config = daemon_config(sim.base_url, tmp_path / "archive.sqlite3", agents=1)
    host = GwsHost(config.gws)
    async with (
        ArchiveWriter(config.archive.path) as writer,
        GwsClient(host, config.gws.accounts[0]) as client,
    ):
        poller = AccountPoller(
            client=client,
            writer=writer,
            pacing=Pacing(SLOW_POLL, PUSH, push_healthy=True),
            stats=PollStats(),
            rng=random.Random(1),
        )
        task = asyncio.create_task(poller.run())
        yield poller
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await host.close()


async def settled(sim: Simulator, seconds: float = 0.4) -> int:
    await asyncio.sleep(seconds)
    return message_reads(sim)


async def first_poll_done(sim: Simulator, account: AccountPoller, session_id: str) -> None:
    await wait_for(lambda: session_id in account.pollers and message_reads(sim) >= 1)


async def test_a_burst_of_hints_makes_at_most_two_polls(
    sim: Simulator, account: AccountPoller
) -> None:
    """100 hints for one session within 50 ms cause one poll (two if the burst straddles it)."""
    session_id = sim.world.create_session("agent1")
    await first_poll_done(sim, account, session_id)
    before = await settled(sim)
    start = time.monotonic()
    for _ in range(100):
        account.hint(Hint(session_id, False, time.monotonic()))
        await asyncio.sleep(max(0.0, start + 0.045 - time.monotonic()) / 100)
    # On a loaded machine the burst may outlast the 50 ms window: each window adds one poll.
    windows = int((time.monotonic() - start) / PUSH.debounce_s)
    assert 1 <= await settled(sim) - before <= 2 + windows
    assert account.stats.hints_coalesced >= 98


async def test_a_hint_during_a_poll_causes_exactly_one_more(
    sim: Simulator, account: AccountPoller
) -> None:
    """Hints landing while the session is being read make exactly one follow-up poll."""
    session_id = sim.world.create_session("agent1")
    await first_poll_done(sim, account, session_id)
    before = await settled(sim)
    sim.faults.rates = FaultRates(latency=1.0, latency_s=0.4)
    account.hint(Hint(session_id, False, time.monotonic()))
    await asyncio.sleep(0.2)  # the hinted poll is now waiting for its answer
    for _ in range(5):
        account.hint(Hint(session_id, False, time.monotonic()))
    assert await settled(sim, 1.5) - before == 2


async def test_a_hint_archives_new_messages_at_once(sim: Simulator, account: AccountPoller) -> None:
    """With 60 s intervals, a hinted message is archived within a fraction of a second."""
    session_id = sim.world.create_session("agent1")
    await first_poll_done(sim, account, session_id)
    archive = account.writer.path
    sim.world.append_message(session_id, "Text", text="ping")
    started = time.monotonic()
    account.hint(Hint(session_id, False, started))
    await wait_for(lambda: archived_messages(archive) == 1, timeout_s=2)
    assert account.stats.hint_polls >= 1


async def test_a_hint_for_an_unknown_session_reads_the_list(
    sim: Simulator, account: AccountPoller
) -> None:
    """A notification about a session not yet listed makes the account re-list at once."""
    await wait_for(lambda: account.stats.list_results["ok"] >= 1)
    session_id = sim.world.create_session("agent1")
    sim.world.append_message(session_id, "Text", text="new")
    account.hint(Hint(session_id, True, time.monotonic()))
    await wait_for(lambda: archived_messages(account.writer.path) == 1, timeout_s=2)


def test_pacing_relaxes_only_while_push_is_healthy() -> None:
    """Push healthy: the safety interval; push down: adaptive between min and max again."""
    pacing = Pacing(PollConfig(min_interval_s=0.5, max_interval_s=4), PUSH, push_healthy=True)
    interval: Callable[[float, bool], float] = pacing.next_interval
    assert interval(0.5, True) == interval(0.5, False) == 60
    pacing.push_healthy = False
    assert interval(3.0, True) == 1.5
    assert interval(0.6, True) == 0.5
    assert interval(3.0, False) == 4
    assert Pacing(PollConfig()).list_interval() == 2.0
