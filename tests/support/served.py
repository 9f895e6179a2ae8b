"""A daemon with its status server, against the in-process simulator, for the server tests."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from archiver.config import Config, HooksConfig, ServerConfig
from archiver.daemon import Daemon
from gws_simulator import Simulator, SimulatorOptions
from tests.support import daemon_config


@dataclass
class Served:
    """A running simulator, daemon (and its task) and an HTTP client for the daemon's server."""

    sim: Simulator
    daemon: Daemon
    task: asyncio.Task[None]
    http: aiohttp.ClientSession
    archive: Path

    @property
    def url(self) -> str:
        """The status server's base URL."""
        assert self.daemon.server is not None
        return self.daemon.server.url

    async def get_json(self, path: str) -> tuple[int, Any]:
        """GET ``path``: the status and the decoded JSON body."""
        async with self.http.get(self.url + path) as response:
            return response.status, await response.json()

    async def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """``/metrics`` parsed by prometheus-client: {(sample name, sorted labels): value}."""
        async with self.http.get(self.url + "/metrics") as response:
            assert response.status == 200
            text = await response.text()
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }


@asynccontextmanager
async def running(config: Config) -> AsyncIterator[tuple[Daemon, asyncio.Task[None]]]:
    """A daemon running ``config`` until the block ends (then cancelled, as SIGTERM does)."""
    daemon = Daemon(config)
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.started(), 10)
        yield daemon, task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def served_config(
    base_url: str,
    archive: Path,
    agents: int = 1,
    hooks: HooksConfig | None = None,
    **server: Any,
) -> Config:
    """The test daemon configuration with the server on a free loopback port."""
    return dataclasses.replace(
        daemon_config(base_url, archive, agents=agents),
        server=ServerConfig(**{"listen": "127.0.0.1:0", **server}),
        hooks=hooks or HooksConfig(plugins=False),
    )


@asynccontextmanager
async def served(
    tmp_path: Path,
    *,
    agents: int = 1,
    headers: dict[str, str] | None = None,
    hooks: HooksConfig | None = None,
    **server: Any,
) -> AsyncIterator[Served]:
    """Start a simulator (no scenario) and a daemon serving on 127.0.0.1 (a free port)."""
    archive = tmp_path / "archive.sqlite3"
    async with Simulator(SimulatorOptions(agents=agents, seed=7)) as sim:
        config = served_config(sim.base_url, archive, agents, hooks, **server)
        async with (
            running(config) as (daemon, task),
            aiohttp.ClientSession(headers=headers) as http,
        ):
            yield Served(sim, daemon, task, http, archive)


def sample(
    metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    """One sample's value (0 when absent, as Prometheus counters start)."""
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)
