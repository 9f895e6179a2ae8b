"""Chaos: faults of every kind, and kill -9 in a loop; the archive must still equal the truth."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

from archiver.daemon import Daemon
from archiver.store.db import ArchiveLocation
from gws_simulator import FaultRates, Scenario, Simulator, SimulatorOptions
from tests.support import (
    compare,
    config_toml,
    daemon_config,
    daemon_process,
    daemon_running,
    ended_sessions,
    kill_repeatedly,
    query,
    wait_for,
)

# About 20% of requests meet a fault: every exclusive kind, plus latency and short pages
# (vanishing sessions are drawn per session-list read).
KILLS = 20
CHAOS = FaultRates(
    http_500=0.02,
    http_502=0.015,
    http_503=0.015,
    http_504=0.015,
    rate_limit=0.008,
    rate_limit_date=0.008,
    internal_error=0.015,
    reset=0.015,
    hang=0.008,
    truncate=0.015,
    malformed=0.02,
    latency=0.04,
    latency_s=0.05,
    short_page=0.2,
    vanish=0.05,
    vanish_s=1.0,
    hang_s=30.0,
)


def lifecycle_counts(archive: Path) -> list[tuple[Any, ...]]:
    return query(
        archive,
        "SELECT type, count(*), count(DISTINCT session_id) FROM events"
        " WHERE type IN ('SessionStarted', 'SessionEnded') GROUP BY type ORDER BY type",
    )


async def test_chaos_run_loses_and_duplicates_nothing(archive: ArchiveLocation) -> None:
    """Guarantees 1-7 under 20% faults: 0 lost, 0 duplicated, 0 mismatched, events once."""
    scenario = Scenario(
        sessions=200, concurrent_per_agent=10, messages=(95, 110), interval_s=0.004, linger_s=300
    )
    options = SimulatorOptions(agents=4, seed=99, scenario=scenario, faults=CHAOS)
    async with Simulator(options) as sim:
        config = daemon_config(sim.base_url, archive, agents=4, page_size=20, request_timeout_s=1.0)
        daemon = Daemon(config)
        async with daemon_running(daemon):
            await sim.scenario_finished()
            await wait_for(lambda: ended_sessions(archive) == scenario.sessions, timeout_s=240)
        truth = sim.truth()
        stats = sim.stats()

    assert len(truth) >= 20_000
    injected = {
        name for name, rate in dataclasses.asdict(CHAOS).items() if rate and "_s" not in name
    }
    assert set(stats["faults"]) >= injected
    assert sum(stats["faults"].values()) >= 0.2 * stats["total_requests"]
    assert stats["total_requests"] >= 1500  # enough for every kind to be drawn
    result = compare(archive, truth)
    assert result.exact, result
    assert lifecycle_counts(archive) == [
        ("SessionEnded", scenario.sessions, scenario.sessions),
        ("SessionStarted", scenario.sessions, scenario.sessions),
    ]
    assert daemon.stats.malformed == 0  # a malformed body is retried, never half-stored


async def test_crash_loop_under_chaos_loses_nothing(
    archive: ArchiveLocation, tmp_path: Path
) -> None:
    """Guarantee 4 under faults: 20 SIGKILLs at random moments, then the archive equals truth."""
    config = tmp_path / "config.toml"
    log = tmp_path / "daemon.log"
    rng = random.Random(77)
    scenario = Scenario(
        sessions=60, concurrent_per_agent=4, messages=(80, 120), interval_s=0.06, linger_s=600
    )
    options = SimulatorOptions(agents=3, seed=8, scenario=scenario, faults=CHAOS)
    async with Simulator(options) as sim:
        config.write_text(
            config_toml(sim.base_url, archive).replace(
                "page_size = 50", "page_size = 50\nrequest_timeout_s = 1.0"
            )
        )
        await kill_repeatedly(config, log, KILLS, lambda: rng.uniform(0.6, 1.6))
        assert not sim.is_scenario_finished(), "the kills should land during ingest"
        async with daemon_process(config, log, archive):
            await sim.scenario_finished()
            await wait_for(lambda: ended_sessions(archive) == scenario.sessions, 180)
        truth = sim.truth()

    result = compare(archive, truth)
    assert result.exact, result
    assert lifecycle_counts(archive) == [
        ("SessionEnded", scenario.sessions, scenario.sessions),
        ("SessionStarted", scenario.sessions, scenario.sessions),
    ]
