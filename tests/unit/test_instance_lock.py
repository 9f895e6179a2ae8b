"""One daemon per archive: a second `run` on the same archive refuses with one line, exit 2."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from archiver.daemon import Daemon
from archiver.errors import InstanceLockedError
from archiver.instance_lock import InstanceLock
from gws_simulator import Simulator, SimulatorOptions
from tests.support import config_toml, daemon_config


async def test_a_second_daemon_on_the_same_archive_refuses_to_start(tmp_path: Path) -> None:
    """While one daemon runs, `gws-archiver run` on its archive exits 2 naming its pid."""
    archive = tmp_path / "archive.sqlite3"
    async with Simulator(SimulatorOptions(agents=1, seed=3)) as sim:
        daemon = Daemon(daemon_config(sim.base_url, archive, agents=1))
        task = asyncio.create_task(daemon.run())
        try:
            await asyncio.wait_for(daemon.started(), 10)
            config = tmp_path / "config.toml"
            config.write_text(config_toml(sim.base_url, archive, agents=1))
            second = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "archiver", "run", "--config", str(config),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            _, err = await asyncio.wait_for(second.communicate(), 30)
            assert not task.done()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert second.returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1
    assert f"another gws-archiver is running on {archive}" in lines[0]
    assert f"(pid {os.getpid()})" in lines[0]


async def test_the_lock_is_released_on_close(tmp_path: Path) -> None:
    """After the holder closes, the next one takes it; while held, a second is refused."""
    archive = tmp_path / "archive.sqlite3"
    async with InstanceLock(archive):
        with pytest.raises(InstanceLockedError):
            async with InstanceLock(archive):
                pass
    async with InstanceLock(archive) as lock:
        assert (lock.path.stat().st_mode & 0o777) == 0o600
