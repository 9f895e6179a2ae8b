"""Storage faults: a locked archive delays pages without losing them; a bad path stops start-up."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from archiver.cli import main
from archiver.daemon import Daemon
from gws_simulator import Scenario, Simulator, SimulatorOptions
from tests.support import (
    archived_messages,
    compare,
    config_toml,
    daemon_config,
    daemon_running,
    ended_sessions,
    wait_for,
)


async def test_locked_archive_delays_pages_and_loses_nothing(tmp_path: Path) -> None:
    """While another program holds the write lock, pages fail and are read again later."""
    archive = tmp_path / "archive.sqlite3"
    scenario = Scenario(sessions=12, concurrent_per_agent=2, messages=(30, 40), interval_s=0.03)
    async with Simulator(SimulatorOptions(agents=2, seed=4, scenario=scenario)) as sim:
        config = daemon_config(sim.base_url, archive, agents=2)
        config = dataclasses.replace(
            config, archive=dataclasses.replace(config.archive, busy_timeout_s=0.05)
        )
        daemon = Daemon(config)
        with capture_logs() as logs:
            async with daemon_running(daemon):
                await wait_for(lambda: archived_messages(archive) > 50)
                blocker = sqlite3.connect(archive, isolation_level=None)
                blocker.execute("BEGIN EXCLUSIVE")
                await asyncio.sleep(1.5)
                blocker.execute("COMMIT")
                blocker.close()
                await sim.scenario_finished()
                await wait_for(lambda: ended_sessions(archive) == scenario.sessions)
        truth = sim.truth()
    assert daemon.stats.errors > 0
    assert compare(archive, truth).exact
    failing = [e for e in logs if e["event"] == "session_poll_failing"]
    assert failing
    assert all("database is locked" in e["error"] for e in failing)
    recovered = {e["session_id"] for e in logs if e["event"] == "session_poll_recovered"}
    assert {e["session_id"] for e in failing} <= recovered


def test_unusable_archive_path_exits_1_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An archive that cannot be created is a clear error at start-up, not a traceback."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    config = tmp_path / "config.toml"
    config.write_text(config_toml("http://127.0.0.1:9", blocker / "archive.sqlite3", agents=1))
    assert main(["run", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "cannot open the archive" in err
