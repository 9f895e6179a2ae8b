"""The runs table: a row per daemon process; clean stops, failures and crashes told apart."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path

import pytest

from archiver.daemon import Daemon
from archiver.state import PollStats
from archiver.store.runs import RunRecorder, recent_runs, start_run
from archiver.store.writer import ArchiveWriter
from gws_simulator import Simulator, SimulatorOptions
from tests.support import (
    archived_messages,
    config_toml,
    daemon_config,
    query,
    start_daemon,
    wait_for,
)


@asynccontextmanager
async def subprocess_daemon(config: Path, log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """``gws-archiver run`` as a child process; killed at the end if still alive."""
    process = await start_daemon(config, log)
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def new_archive(path: Path) -> None:
    """Create an empty archive with every migration applied."""
    async with ArchiveWriter(path):
        pass


def statuses(archive: Path) -> list[str]:
    """Every run's status, oldest first."""
    return [row[0] for row in query(archive, "SELECT status FROM runs ORDER BY run_id")]


async def test_clean_stop_records_counts_that_match_the_archive(tmp_path: Path) -> None:
    """A cancelled daemon (SIGTERM's path) leaves a clean row with its stop time and counts."""
    archive = tmp_path / "archive.sqlite3"
    async with Simulator(SimulatorOptions(agents=1, seed=2)) as sim:
        session_id = sim.world.create_session("agent1")
        for n in range(12):
            sim.world.append_message(session_id, "Text", text=f"line {n}")
        task = asyncio.create_task(Daemon(daemon_config(sim.base_url, archive, agents=1)).run())
        await wait_for(lambda: archived_messages(archive) == 12)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    (run,) = recent_runs(archive)
    (last_seq,) = query(archive, "SELECT max(seq) FROM events")[0]
    assert run.status == "clean"
    assert run.stopped_at is not None
    assert (run.first_seq, run.last_seq, run.messages_archived) == (0, last_seq, 12)


async def test_sigkilled_run_is_marked_crashed_by_the_next_start(tmp_path: Path) -> None:
    """kill -9 leaves a 'running' row; the next start marks it crashed with its event count."""
    archive = tmp_path / "archive.sqlite3"
    config = tmp_path / "config.toml"
    async with Simulator(SimulatorOptions(agents=1, seed=2)) as sim:
        session_id = sim.world.create_session("agent1")
        for n in range(10):
            sim.world.append_message(session_id, "Text", text=f"line {n}")
        config.write_text(config_toml(sim.base_url, archive, agents=1))
        async with subprocess_daemon(config, tmp_path / "daemon.log") as process:
            await wait_for(lambda: archived_messages(archive) == 10, timeout_s=30)
            process.send_signal(signal.SIGKILL)
            assert await process.wait() == -signal.SIGKILL
        assert statuses(archive) == ["running"]
        async with subprocess_daemon(config, tmp_path / "daemon.log") as process:
            await wait_for(lambda: len(statuses(archive)) == 2, timeout_s=30)
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 10) == 0

    crashed, clean = recent_runs(archive)[::-1]
    (events,) = query(archive, "SELECT count(*) FROM events WHERE seq <= ?", [clean.first_seq])[0]
    assert (crashed.status, clean.status) == ("crashed", "clean")
    assert crashed.stopped_at is None
    assert (crashed.events, crashed.messages_archived) == (events, 10)


async def test_run_ending_in_an_exception_is_recorded_as_failed(tmp_path: Path) -> None:
    """Leaving the recorder with an error records 'failed' and the error's text."""
    archive = tmp_path / "archive.sqlite3"
    await new_archive(archive)
    recorder = RunRecorder(
        archive, version="test", config_hash="0" * 16, totals=PollStats(), last_seq=lambda: 0
    )
    with pytest.raises(RuntimeError):
        async with recorder:
            raise RuntimeError("disk on fire")

    (run,) = recent_runs(archive)
    assert (run.status, run.error) == ("failed", "RuntimeError: disk on fire")


async def test_running_row_of_a_live_process_is_left_alone(tmp_path: Path) -> None:
    """A run whose process still exists (another daemon) is not marked crashed."""
    archive = tmp_path / "archive.sqlite3"
    await new_archive(archive)
    other = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import time; time.sleep(60)"
    )
    try:
        first = start_run(archive, "test", "0" * 16, 0)
        with closing(sqlite3.connect(archive)) as conn, conn:
            conn.execute("UPDATE runs SET pid = ? WHERE run_id = ?", (other.pid, first))
        start_run(archive, "test", "0" * 16, 0)
    finally:
        other.kill()
        await other.wait()
    assert statuses(archive) == ["running", "running"]
