"""Three daemons dividing one PostgreSQL archive's work (five accounts whose sessions are
transferred, conferenced, consulted and queued between them, a webhook, maintenance), one of
them SIGKILLed every 20 s and replaced: the others take its leases within the bound, the
replacement gets a share, nothing is lost or archived twice, every session starts and ends once,
and every event reaches the webhook in per-session order."""

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
from gws_simulator import FaultRates, Simulator, SimulatorOptions
from tests.e2e.test_views_end_to_end import (
    chaos_toml,
    handled_by,
    handoff_scenario,
    lifecycle_problems,
    recorded_accounts,
)
from tests.support import compare, ended_sessions, log_tail, query, start_daemon, wait_for
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
AGENTS = 5
LEASES = AGENTS + 2  # the accounts, hook:audit and maintenance
KILL_EVERY_S = 20.0
LEASE_S = 6.0


def holders(archive: PostgresArchive) -> dict[str, int]:
    """Per lease held now, the pid of its holder."""
    sql = "SELECT name, holder FROM leases WHERE holder IS NOT NULL AND expires_at > now()"
    try:
        rows = query(archive, sql)
    except psycopg.errors.UndefinedTable:
        return {}  # the first daemon is still creating the schema
    return {name: int(holder.split(":")[1]) for name, holder in rows}


def held_by(archive: PostgresArchive, pid: int) -> set[str]:
    """The leases ``pid`` holds now."""
    return {name for name, holder in holders(archive).items() if holder == pid}


def divided(archive: PostgresArchive, daemons: set[int]) -> Callable[[], bool]:
    """Whether every lease is held, by ``daemons`` only, and each of them holds some."""
    return lambda: len(found := holders(archive)) == LEASES and set(found.values()) == daemons


def taken_over(archive: PostgresArchive, leases: set[str], victim: int) -> Callable[[], bool]:
    """Whether every one of ``leases`` is held by a daemon other than ``victim``."""
    return lambda: all(holders(archive).get(name) not in (None, victim) for name in leases)


@pytest.mark.timeout(600)  # the scenario runs ~90 s, with four kills and takeovers in it
async def test_three_daemons_divide_the_work_and_one_killed_every_20_s_loses_nothing(
    postgres_url: str, tmp_path: Path
) -> None:
    archive = PostgresArchive(postgres_url)
    config = tmp_path / "config.toml"
    log = tmp_path / "daemons.log"
    scenario = handoff_scenario(80, 3, 0.4)
    options = SimulatorOptions(agents=AGENTS, seed=17, scenario=scenario, faults=FAULTS)
    takeovers: list[float] = []
    async with Simulator(options) as sim, Receiver() as receiver:
        text = chaos_toml(sim.base_url, archive, agents=AGENTS)
        config.write_text(
            text.replace("[archive]\n", f"[archive]\nlease_s = {LEASE_S}\n")
            + WEBHOOK_TOML.format(url=receiver.url, secret=SECRET)
        )
        daemons = {(d := await start_daemon(config, log)).pid: d for _ in range(3)}
        try:
            while not sim.is_scenario_finished():
                await wait_for(divided(archive, set(daemons)), 60)
                await asyncio.sleep(KILL_EVERY_S)
                if sim.is_scenario_finished():
                    break
                # In turn, the daemon delivering the webhook and one that does not.
                hook = holders(archive).get("hook:audit")
                others = [pid for pid in daemons if pid != hook]
                victim = hook if len(takeovers) % 2 == 0 and hook in daemons else others[0]
                leases = held_by(archive, victim)
                daemons.pop(victim).send_signal(signal.SIGKILL)
                killed_at = time.monotonic()
                await wait_for(taken_over(archive, leases, victim), 30)
                takeovers.append(time.monotonic() - killed_at)
                replacement = await start_daemon(config, log)
                daemons[replacement.pid] = replacement
            await wait_for(lambda: ended_sessions(archive) == scenario.sessions, 180)
            handled = await handled_by(sim)
            await wait_for(lambda: recorded_accounts(archive) == handled, 60)
            events = {row[0] for row in query(archive, "SELECT event_id FROM events")}
            await wait_for(lambda: receiver.delivered_ids() >= events, 120)
        finally:
            for daemon in daemons.values():
                daemon.send_signal(signal.SIGTERM)
            for daemon in daemons.values():
                await asyncio.wait_for(daemon.wait(), 15)
        truth = sim.truth()

    assert len(takeovers) >= 3, log_tail(log)
    print(
        f"takeover after SIGKILL: p50 {statistics.median(takeovers):.1f} s,"
        f" max {max(takeovers):.1f} s over {len(takeovers)} kills"
    )
    assert max(takeovers) <= LEASE_S * 4 / 3 + 2
    result = compare(archive, truth)
    assert result.exact, result
    assert lifecycle_problems(archive) == []
    assert recorded_accounts(archive) == handled
    assert sum(len(accounts) > 1 for accounts in handled.values()) >= 10
    assert order_violations(receiver.requests, seqs_by_session(archive)) == []
    status = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "archiver", "status", "--archive", archive.url,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    printed = (await status.communicate())[0].decode()
    assert status.returncode == 0
    assert "lease     account:agent1: free" in printed, printed
    assert "lease     hook:audit: free" in printed, printed
