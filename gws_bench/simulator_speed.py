"""How fast the GWS simulator serves message reads with 10,000 sessions open.

Starts `gws-archiver simulate` with the live-scale world (10 agents x 1,000 sessions, a
message every ~10 s each) pinned to one core, and this script on the other. Measures:

- the scenario driver's own CPU share (no requests);
- the time to serve one messages read, one request in flight (client-observed, so it includes
  this script's aiohttp client): an idle read (an empty page) and a read of a whole log;
- the simulator's CPU per request and the requests/s one core can serve (requests / CPU
  seconds, the driver's share taken out), with 64 requests in flight for `--seconds`.

Usage: .venv/bin/python gws_bench/simulator_speed.py [--seconds 10] [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from gws_bench.processes import PASSWORD, Meter, SimulatorProcess

AGENTS = 10
PER_AGENT = 1000
IN_FLIGHT = 64


def client(connector: aiohttp.TCPConnector, agent: int) -> aiohttp.ClientSession:
    """An agent's HTTP session, as the daemon keeps one: Basic auth plus the cookie jar."""
    token = base64.b64encode(f"agent{agent}:{PASSWORD}".encode()).decode()
    return aiohttp.ClientSession(
        connector=connector,
        connector_owner=False,
        cookie_jar=aiohttp.CookieJar(unsafe=True),
        headers={"Authorization": f"Basic {token}"},
    )


async def read(http: aiohttp.ClientSession, url: str, start: int) -> None:
    """One messages read of up to 500 messages from `start`."""
    params = {"startIndex": str(start), "count": "500"}
    async with http.get(url, params=params) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"{url} answered {response.status}")


async def measure(base_url: str, meter: Meter, seconds: float, requests: int) -> None:
    """Run the three measurements against a ready simulator and print them."""
    connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
    sessions = {agent: client(connector, agent) for agent in range(1, AGENTS + 1)}
    try:
        targets = []
        for http in sessions.values():
            async with http.get(f"{base_url}/api/v2/me/smssessions?fields=id") as response:
                for session in (await response.json())["smssessions"]:
                    url = f"{base_url}/api/v2/me/smssessions/{session['id']}/messages"
                    targets.append((http, url))
        print(f"sessions open: {len(targets)}")

        before = meter.sample()
        await asyncio.sleep(5)
        after = meter.sample()
        driver_share = (after.cpu_s - before.cpu_s) / (after.wall_s - before.wall_s)
        print(f"scenario driver alone: {driver_share:.3f} cores")

        rng = random.Random(1)
        for label, start in (("idle read (empty page)", 10_000), ("whole log read", 1)):
            timings = []
            for _ in range(requests):
                http, url = rng.choice(targets)
                began = time.perf_counter()
                await read(http, url, start)
                timings.append(time.perf_counter() - began)
            timings.sort()
            median, p99 = statistics.median(timings), timings[int(len(timings) * 0.99)]
            print(f"{label}: median {median * 1e6:.0f} us, p99 {p99 * 1e6:.0f} us (1 in flight)")

        done = 0
        deadline = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                http, url = rng.choice(targets)
                await read(http, url, 10_000)
                done += 1

        before = meter.sample()
        async with asyncio.TaskGroup() as tasks:
            for _ in range(IN_FLIGHT):
                tasks.create_task(worker())
        after = meter.sample()
        wall = after.wall_s - before.wall_s
        serving_cpu = (after.cpu_s - before.cpu_s) - driver_share * wall
        print(
            f"idle reads, {IN_FLIGHT} in flight: {done / wall:.0f} req/s served using"
            f" {(after.cpu_s - before.cpu_s) / wall:.2f} cores;"
            f" {serving_cpu / done * 1e6:.0f} us of simulator CPU per request"
            f" -> {done / serving_cpu:.0f} req/s on one core"
        )
    finally:
        for http in sessions.values():
            await http.close()
        await connector.close()


def main() -> None:
    """Start the simulator on core 0, this script on core 1, and measure."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="throughput phase length")
    parser.add_argument("--requests", type=int, default=2000, help="requests per latency phase")
    args = parser.parse_args()
    options = ["--agents", str(AGENTS), "--concurrent", str(PER_AGENT), "--interval", "10"]
    options += ["--linger", "30"]
    with tempfile.TemporaryDirectory(prefix="gws-sim-bench-") as scratch:
        folder = Path(scratch)
        with SimulatorProcess(options, folder / "truth.jsonl", folder / "simulator.log") as sim:
            base_url = sim.wait_ready(60)
            cores = sorted(os.sched_getaffinity(0))
            if len(cores) > 1:
                os.sched_setaffinity(sim.pid, {cores[0]})
                os.sched_setaffinity(0, {cores[1]})
            # Every session opens within one message interval.
            time.sleep(11)
            asyncio.run(measure(base_url, sim.meter, args.seconds, args.requests))


if __name__ == "__main__":
    main()
