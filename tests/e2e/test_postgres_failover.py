"""Three daemons on one PostgreSQL archive, the archiving one SIGKILLed every 20 s: another
takes over within the lease's bound, nothing is lost or archived twice, and every event reaches
a webhook in per-session order."""

from __future__ import annotations

import asyncio
import signal
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from archiver.store.postgres import PostgresArchive
from gws_simulator import FaultRates, Scenario, Simulator, SimulatorOptions
from tests.support import (
    compare,
    config_toml,
    ended_sessions,
    log_tail,
    query,
    start_daemon,
    wait_for,
)
from tests.support.hooks import SECRET, Receiver, order_violations, seqs_by_session

pytestmark = pytest.mark.postgres

FAULTS = FaultRates(http_500=0.03, http_503=0.02, reset=0.02, latency=0.05, latency_s=0.05)
WEBHOOK_TOML = """
[[hooks.webhooks]]
name = "audit"
url = "{url}"
secret = "{secret}"
timeout_s = 1.0
max_attempts = 50
retry_delays_s = [0.05, 0.1, 0.2]
"""
KILL_EVERY_S = 20.0
LEASE_S = 6.0


def holder_pid(archive: PostgresArchive) -> int | None:
    """The pid of the daemon holding the archive's lease now, if one does."""
    sql = "SELECT holder FROM leases WHERE name = 'archive' AND expires_at > now()"
    try:
        rows = query(archive, sql)
    except psycopg.errors.UndefinedTable:
        return None  # the first daemon is still creating the schema
    if not rows or rows[0][0] is None:
        return None
    return int(rows[0][0].split(":")[1])


def taken_over(archive: PostgresArchive, victim: int) -> Callable[[], bool]:
    """Whether a daemon other than ``victim`` holds the lease now."""
    return lambda: holder_pid(archive) not in (None, victim)


async def test_three_daemons_one_killed_every_20_s_lose_nothing(
    postgres_url: str, tmp_path: Path
) -> None:
    archive = PostgresArchive(postgres_url)
    config = tmp_path / "config.toml"
    log = tmp_path / "daemons.log"
    scenario = Scenario(
        sessions=80, concurrent_per_agent=4, messages=(40, 80), interval_s=0.25, linger_s=600
    )
    options = SimulatorOptions(agents=5, seed=17, scenario=scenario, faults=FAULTS)
    takeovers: list[float] = []
    async with Simulator(options) as sim, Receiver() as receiver:
        text = config_toml(sim.base_url, archive, agents=5).replace(
            "page_size = 50", "page_size = 50\nrequest_timeout_s = 1.0"
        )
        config.write_text(
            text.replace("[archive]\n", f"[archive]\nlease_s = {LEASE_S}\n")
            + WEBHOOK_TOML.format(url=receiver.url, secret=SECRET)
        )
        daemons = {(d := await start_daemon(config, log)).pid: d for _ in range(3)}
        try:
            while not sim.is_scenario_finished():
                await wait_for(lambda: holder_pid(archive) in daemons, 60)
                await asyncio.sleep(KILL_EVERY_S)
                victim = holder_pid(archive)
                if victim is None or sim.is_scenario_finished():
                    continue
                daemons.pop(victim).send_signal(signal.SIGKILL)
                killed_at = time.monotonic()
                await wait_for(taken_over(archive, victim), 30)
                takeovers.append(time.monotonic() - killed_at)
                replacement = await start_daemon(config, log)
                daemons[replacement.pid] = replacement
            await wait_for(lambda: ended_sessions(archive) == scenario.sessions, 180)
            events = {row[0] for row in query(archive, "SELECT event_id FROM events")}
            await wait_for(lambda: receiver.delivered_ids() >= events, 120)
        finally:
            for daemon in daemons.values():
                daemon.send_signal(signal.SIGTERM)
            for daemon in daemons.values():
                await asyncio.wait_for(daemon.wait(), 15)
        truth = sim.truth()

    assert len(takeovers) >= 2, log_tail(log)
    print(
        f"takeover after SIGKILL: p50 {statistics.median(takeovers):.1f} s,"
        f" max {max(takeovers):.1f} s over {len(takeovers)} kills"
    )
    assert max(takeovers) <= LEASE_S * 4 / 3 + 2
    result = compare(archive, truth)
    assert result.exact, result
    started = query(
        archive, "SELECT count(*), count(DISTINCT session_id) FROM events WHERE type = ?",
        ("SessionStarted",),
    )  # fmt: skip
    assert started == [(scenario.sessions, scenario.sessions)]
    assert order_violations(receiver.requests, seqs_by_session(archive)) == []
    status = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "archiver", "status", "--archive", archive.url,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    printed = (await status.communicate())[0].decode()
    assert status.returncode == 0
    assert "lease     archive: free" in printed, printed
