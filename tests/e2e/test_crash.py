"""Crash safety: ``gws-archiver run`` SIGKILLed at random moments, restarted, loses nothing."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from pathlib import Path

from archiver.store.db import ArchiveLocation
from gws_simulator import FaultRates, Scenario, Simulator, SimulatorOptions
from tests.support import (
    compare,
    config_toml,
    ended_sessions,
    query,
    run_started,
    start_daemon,
    wait_for,
)

KILLS = 6


async def test_sigkill_during_ingest_loses_and_duplicates_nothing(
    archive: ArchiveLocation, tmp_path: Path
) -> None:
    """Guarantee 4: after repeated kill -9 and restarts the archive equals the truth."""
    config = tmp_path / "config.toml"
    log = tmp_path / "daemon.log"
    rng = random.Random(2024)
    # Completed sessions stay listed long enough for a restarted daemon to drain them.
    scenario = Scenario(
        sessions=30, concurrent_per_agent=3, messages=(60, 90), interval_s=0.05, linger_s=120
    )
    async with Simulator(SimulatorOptions(agents=3, seed=5, scenario=scenario)) as sim:
        config.write_text(config_toml(sim.base_url, archive))
        for _ in range(KILLS):
            daemon = await start_daemon(config, log)
            await asyncio.sleep(rng.uniform(0.8, 1.8))
            daemon.send_signal(signal.SIGKILL)
            assert await daemon.wait() == -signal.SIGKILL
        assert not sim.is_scenario_finished(), "the kills should land during ingest"
        daemon = await start_daemon(config, log)
        await wait_for(lambda: run_started(archive, daemon.pid))
        try:
            await sim.scenario_finished()
            await wait_for(lambda: ended_sessions(archive) == scenario.sessions, timeout_s=90)
        finally:
            daemon.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(daemon.wait(), 5) == 0
        truth = sim.truth()

    assert query(archive, "SELECT count(*) FROM messages")[0][0] == len(truth)
    result = compare(archive, truth)
    assert result.exact, result
    lifecycle = query(
        archive,
        "SELECT type, count(*), count(DISTINCT session_id) FROM events"
        " WHERE type IN ('SessionStarted', 'SessionEnded') GROUP BY type ORDER BY type",
    )
    assert lifecycle == [
        ("SessionEnded", scenario.sessions, scenario.sessions),
        ("SessionStarted", scenario.sessions, scenario.sessions),
    ]


async def test_sigterm_with_requests_in_flight_exits_0_within_5_s(
    archive: ArchiveLocation, tmp_path: Path
) -> None:
    """Graceful shutdown: in-flight requests are abandoned, exit 0 well inside 5 s."""
    config = tmp_path / "config.toml"
    log = tmp_path / "daemon.log"
    options = SimulatorOptions(agents=3, seed=1, scenario=None, faults=FaultRates(hang=1.0))
    async with Simulator(options) as sim:
        config.write_text(config_toml(sim.base_url, archive))
        daemon = await start_daemon(config, log)
        await wait_for(lambda: "daemon_started" in log.read_text())
        await asyncio.sleep(0.5)
        assert sim.stats()["faults"].get("hang", 0) >= 3
        started = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(daemon.wait(), 5) == 0
        assert time.monotonic() - started < 5
    assert "daemon_stopped" in log.read_text()
