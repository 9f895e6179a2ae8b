"""Push mode end to end: the daemon's Bayeux client against the simulator's CometD endpoint."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from archiver.config import Config, PollConfig, PushConfig, ReconcileConfig, ServerConfig
from archiver.daemon import Daemon
from gws_simulator import FaultRates, Scenario, Simulator, SimulatorOptions
from tests.support import (
    archived_messages,
    compare,
    daemon_config,
    daemon_running,
    ended_sessions,
    query,
    wait_for,
)

CHANNEL = "/v2/me/smssessions"
# Without a hint nothing would be read for a minute: what arrives fast came by push.
SLOW_POLL = PollConfig(min_interval_s=60, max_interval_s=60, sessions_interval_s=60)


def push_config(base_url: str, archive: Path, *, safety_interval_s: float = 60) -> Config:
    config = daemon_config(base_url, archive, agents=2)
    push = PushConfig(enabled=True, safety_interval_s=safety_interval_s, network_delay_s=2)
    server = ServerConfig(listen="127.0.0.1:0")
    # Results of history look-ups ride on the same lossy notifications: wait 2 s for each.
    reconcile = ReconcileConfig(wait_s=2.0, retry_s=1.0)
    return dataclasses.replace(
        config, poll=SLOW_POLL, push=push, server=server, reconcile=reconcile
    )


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[Simulator, Daemon]]:
    options = SimulatorOptions(agents=2, seed=9, scenario=None, bayeux_timeout_s=2)
    async with Simulator(options) as sim:
        daemon = Daemon(push_config(sim.base_url, tmp_path / "archive.sqlite3"))
        async with daemon_running(daemon):
            await asyncio.wait_for(sim.bayeux.wait_listening("agent1", CHANNEL), 10)
            await wait_for(lambda: all(p.healthy for p in daemon.pushes))
            yield sim, daemon


def freshness_s(archive: Path, created_at: str, index: int) -> float:
    (archived_at,) = query(
        archive, "SELECT archived_at FROM messages WHERE message_index = ?", [index]
    )[0]
    parse = datetime.fromisoformat
    return (parse(archived_at) - parse(created_at)).total_seconds()


async def test_pushed_messages_are_archived_within_milliseconds(
    running: tuple[Simulator, Daemon], tmp_path: Path
) -> None:
    """With minute-long poll intervals, each message still lands within a fraction of a second."""
    sim, daemon = running
    archive = tmp_path / "archive.sqlite3"
    session_id = sim.world.create_session("agent1")
    for n in range(1, 6):
        sim.world.append_message(session_id, "Text", text=f"line {n}")
        await wait_for(lambda n=n: archived_messages(archive) == n, timeout_s=2)
    created = {r["index"]: r["created_at"] for r in sim.truth()}
    assert max(freshness_s(archive, created[i], i) for i in created) < 0.5
    metrics = await scrape(daemon)
    assert metrics["gws_archiver_push_up", (("account", "agent1"),)] == 1
    assert metrics["gws_archiver_push_handshakes_total", (("account", "agent1"),)] == 1
    assert metrics["gws_archiver_push_hints_total", (("kind", "session"),)] >= 5
    assert metrics["gws_archiver_push_hint_poll_latency_seconds_count", ()] >= 4


async def scrape(daemon: Daemon) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The daemon's /metrics, parsed by prometheus-client."""
    assert daemon.server is not None
    async with aiohttp.ClientSession() as http, http.get(f"{daemon.server.url}/metrics") as answer:
        text = await answer.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_forced_expiry_rehandshakes_and_catches_up(
    running: tuple[Simulator, Daemon], tmp_path: Path
) -> None:
    """The server forgets the client: re-handshake, resubscribe, full poll, nothing missed."""
    sim, daemon = running
    archive = tmp_path / "archive.sqlite3"
    session_id = sim.world.create_session("agent2")
    await wait_for(lambda: session_id in daemon.accounts[1].pollers)
    sim.faults.rates = FaultRates(drop_notification=1.0)
    sim.world.append_message(session_id, "Text", text="said while push was deaf")
    sim.bayeux.expire("agent2")
    sim.faults.rates = FaultRates()
    await wait_for(lambda: archived_messages(archive) == 1, timeout_s=5)
    assert sum(daemon.pushes[1].stats.rehandshakes.values()) >= 1


async def test_lost_and_repeated_notifications_lose_nothing(tmp_path: Path) -> None:
    """Notifications dropped and duplicated at random: the archive still equals the truth."""
    archive = tmp_path / "archive.sqlite3"
    scenario = Scenario(sessions=16, concurrent_per_agent=4, messages=(20, 30), interval_s=0.01)
    faults = FaultRates(drop_notification=0.3, duplicate_notification=0.3)
    options = SimulatorOptions(
        agents=2, seed=21, scenario=scenario, faults=faults, bayeux_timeout_s=2
    )
    async with Simulator(options) as sim:
        config = push_config(sim.base_url, archive, safety_interval_s=0.5)
        daemon = Daemon(config)
        task = asyncio.create_task(daemon.run())
        started = time.monotonic()
        try:
            await sim.scenario_finished()
            await wait_for(lambda: ended_sessions(archive) == scenario.sessions)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        truth, stats = sim.truth(), sim.stats()
    assert time.monotonic() - started < 60
    assert stats["faults"]["drop_notification"] > 10
    assert stats["faults"]["duplicate_notification"] > 10
    assert compare(archive, truth).exact
    assert daemon.stats.hints["session"] > 0
