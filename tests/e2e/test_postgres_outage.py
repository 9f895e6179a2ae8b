"""PostgreSQL going away while the daemon runs: pages are retried until it is back, none lost."""

from __future__ import annotations

import pytest

from archiver.daemon import Daemon
from archiver.server.health import check_readiness
from archiver.server.metrics import render_metrics
from archiver.store.postgres import PostgresArchive
from gws_simulator import Scenario, Simulator, SimulatorOptions
from tests.support import (
    archived_messages,
    compare,
    daemon_config,
    daemon_running,
    ended_sessions,
    wait_for,
)
from tests.support.postgres import PostgresCluster

pytestmark = pytest.mark.postgres


async def test_server_restart_mid_run_loses_nothing(
    postgres_cluster: PostgresCluster, postgres_url: str
) -> None:
    archive = PostgresArchive(postgres_url)
    scenario = Scenario(
        sessions=30, concurrent_per_agent=5, messages=(60, 90), interval_s=0.03, linger_s=600
    )
    async with Simulator(SimulatorOptions(agents=3, seed=5, scenario=scenario)) as sim:
        daemon = Daemon(daemon_config(sim.base_url, archive))
        async with daemon_running(daemon):
            await wait_for(lambda: archived_messages(archive) > 200)
            scrape, _ = await render_metrics(daemon.state, sse_clients=0, accept=None)
            assert b'gws_archiver_lease_held{daemon="' in scrape
            assert b'lease="account:agent1"} 1.0' in scrape
            assert (await check_readiness(daemon.state)).leases == {
                "daemon": daemon.state.leases.daemon_id if daemon.state.leases else None,
                "held": ["account:agent1", "account:agent2", "account:agent3", "maintenance"],
                "lost": 0,
            }
            errors = daemon.stats.errors
            postgres_cluster.stop_server()
            # The daemon meets the outage (pages fail and are read again later)...
            await wait_for(lambda: daemon.stats.errors > errors + 5)
            postgres_cluster.start_server()
            # ...and carries on once the server is back, from the cursors it committed.
            await sim.scenario_finished()
            await wait_for(lambda: ended_sessions(archive) == scenario.sessions, 120)
        truth = sim.truth()
    result = compare(archive, truth)
    assert result.exact, result
