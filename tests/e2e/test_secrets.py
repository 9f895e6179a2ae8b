"""Guarantee 8: passwords never appear in logs, errors or reprs."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
from pathlib import Path

from archiver.config import Account, Secret
from archiver.daemon import Daemon
from archiver.logs import configure_logging
from gws_simulator import Simulator, SimulatorOptions
from tests.support import daemon_config


async def test_passwords_never_reach_the_logs(tmp_path: Path) -> None:
    """A daemon with one good and one refused password logs neither password."""
    stream = io.StringIO()
    configure_logging("debug", "json", stream=stream)
    async with Simulator(SimulatorOptions(agents=2, seed=1, scenario=None)) as sim:
        sim.world.create_session("agent1")
        config = daemon_config(sim.base_url, tmp_path / "archive.sqlite3", agents=2)
        wrong = Account("agent2", Secret("Wr0ng-Secret-Pass"))
        config = dataclasses.replace(
            config, gws=dataclasses.replace(config.gws, accounts=(config.gws.accounts[0], wrong))
        )
        daemon = Daemon(config)
        task = asyncio.create_task(daemon.run())
        await asyncio.sleep(1.5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    lines = stream.getvalue().splitlines()
    assert any('"session_list_failing"' in line and "agent2" in line for line in lines)
    assert any('"daemon_started"' in line for line in lines)
    basic_headers = [
        base64.b64encode(f"{account.username}:{account.password.reveal()}".encode()).decode()
        for account in config.gws.accounts
    ]
    for secret in ("Wr0ng-Secret-Pass", '"password"', *basic_headers):
        assert not [line for line in lines if secret in line], secret
    assert "Wr0ng-Secret-Pass" not in repr(config)
