"""``/healthz``, ``/readyz`` and the bearer token, against a daemon and the simulator."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from archiver.config import Secret, ServerConfig
from archiver.daemon import Daemon
from archiver.errors import ArchiverError
from gws_simulator import Simulator, SimulatorOptions
from tests.support.served import Served, served, served_config

TOKEN = "tok-3f9a1c7e"


async def test_healthz_answers_while_the_daemon_runs(tmp_path: Path) -> None:
    """Liveness: 200 with status ok and the version."""
    async with served(tmp_path) as s:
        status, body = await s.get_json("/healthz")
    assert status == 200
    assert body["status"] == "ok"
    assert body["version"]


async def test_readyz_is_ready_once_every_account_has_read_its_sessions(tmp_path: Path) -> None:
    """Ready (200) with no reasons when the archive is writable and both accounts answer."""
    async with served(tmp_path, agents=2) as s:
        await wait_ready(s)
        status, body = await s.get_json("/readyz")
    assert status == 200
    assert body["reasons"] == []
    assert set(body["accounts"]) == {"agent1", "agent2"}
    assert body["archive"]["ok"] is True


async def test_readyz_turns_unready_on_bad_credentials_and_ready_after_recovery(
    tmp_path: Path,
) -> None:
    """A password GWS rejects makes the account unready (503, reason); restoring it heals."""
    async with served(tmp_path, agents=2) as s:
        await wait_ready(s)
        account = s.sim.world.accounts["agent1"]
        account.password = "changed-on-the-server"
        unready = await poll_readyz(s, want=503)
        account.password = "password"
        ready = await poll_readyz(s, want=200)

    assert unready["accounts"]["agent1"]["ok"] is False
    assert unready["accounts"]["agent2"]["ok"] is True
    (reason,) = unready["reasons"]
    assert reason.startswith("account agent1: session list failing")
    assert "401" in reason
    assert ready["reasons"] == []


async def test_readyz_is_unready_while_the_archive_cannot_take_writes(tmp_path: Path) -> None:
    """Another program holding the write lock makes /readyz answer 503 naming the archive."""
    async with served(tmp_path) as s:
        await wait_ready(s)
        with closing(sqlite3.connect(s.archive, isolation_level=None)) as blocker:
            blocker.execute("BEGIN IMMEDIATE")
            status, body = await s.get_json("/readyz")
            blocker.execute("ROLLBACK")
    assert status == 503
    assert body["archive"]["ok"] is False
    assert "locked" in body["archive"]["reason"]


async def test_token_is_required_on_every_route_when_configured(tmp_path: Path) -> None:
    """Without the bearer token: 401; with it: 200."""
    async with served(tmp_path, token=Secret(TOKEN)) as s:
        async with s.http.get(s.url + "/healthz") as anonymous:
            anonymous_status = anonymous.status
        async with s.http.get(s.url + "/metrics", headers={"Authorization": "Bearer nope"}) as bad:
            wrong_status = bad.status
        async with s.http.get(
            s.url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
        ) as good:
            good_status = good.status
    assert (anonymous_status, wrong_status, good_status) == (401, 401, 200)


async def wait_ready(s: Served) -> None:
    """Wait until /readyz says 200."""
    await poll_readyz(s, want=200)


async def poll_readyz(s: Served, *, want: int, timeout_s: float = 20.0) -> Any:
    """Ask /readyz until it answers ``want``; return that body."""
    deadline = time.monotonic() + timeout_s
    while True:
        status, body = await s.get_json("/readyz")
        if status == want:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"/readyz never answered {want}; last {status}: {body}")
        await asyncio.sleep(0.05)


async def test_taken_port_stops_start_up_with_one_clear_error(tmp_path: Path) -> None:
    """A port another program holds: the daemon does not start, and the error names the key."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        async with Simulator(SimulatorOptions(agents=1, seed=1)) as sim:
            config = served_config(sim.base_url, tmp_path / "archive.sqlite3")
            config = dataclasses.replace(config, server=ServerConfig(listen=f"127.0.0.1:{port}"))
            with pytest.raises(ArchiverError, match=r"^server\.listen: cannot bind 127\.0\.0\.1"):
                await asyncio.wait_for(Daemon(config).run(), 10)
