"""Hooks end to end: the daemon, the simulator, real receivers, a kill -9 and a slow subscriber."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from archiver.config import CommandHook, HooksConfig, PythonHook
from archiver.daemon import Daemon
from gws_simulator import Scenario, Simulator, SimulatorOptions
from tests.support import (
    compare,
    config_toml,
    daemon_config,
    daemon_running,
    ended_sessions,
    hook_targets,
    query,
    start_daemon,
    wait_for,
)
from tests.support.hooks import (
    FAST_RETRY,
    SECRET,
    Answer,
    Received,
    Receiver,
    deliveries,
    order_violations,
    seqs_by_session,
)

pytest_plugins = ["tests.support.hooks"]

WEBHOOK_TOML = """
[[hooks.webhooks]]
name = "chaos"
url = "{url}"
secret = "{secret}"
timeout_s = 0.25
max_in_flight = 8
max_attempts = 50
retry_delays_s = [0.02, 0.05, 0.1]
"""


def event_ids(archive: Path) -> set[str]:
    return {row[0] for row in query(archive, "SELECT event_id FROM events")}


def chaos(rng: random.Random) -> Any:
    """Fails about half of all attempts: 500s, stalls past the timeout, 429 with Retry-After."""

    def respond(request: Received) -> Answer:
        roll = rng.random()
        if roll < 0.38:
            return Answer(500)
        if roll < 0.44:
            return Answer(500, delay_s=1.0)
        if roll < 0.50:
            return Answer(429, headers={"Retry-After": "1"})
        return Answer(200)

    return respond


async def test_chaotic_receiver_and_sigkill_lose_nothing(tmp_path: Path) -> None:
    """Guarantee 5: through failures and a kill -9, every event arrives, in session order."""
    archive, config, log = tmp_path / "archive.sqlite3", tmp_path / "c.toml", tmp_path / "d.log"
    scenario = Scenario(
        sessions=10, concurrent_per_agent=2, messages=(15, 25), interval_s=0.02, linger_s=60
    )
    options = SimulatorOptions(agents=3, seed=9, scenario=scenario)
    async with Receiver(chaos(random.Random(5))) as receiver, Simulator(options) as sim:
        config.write_text(
            config_toml(sim.base_url, archive)
            + WEBHOOK_TOML.format(url=receiver.url, secret=SECRET)
        )
        daemon = await start_daemon(config, log)
        try:
            await wait_for(lambda: len(receiver.delivered()) >= 40, timeout_s=30)
        finally:
            daemon.send_signal(signal.SIGKILL)
            await daemon.wait()
        before_kill = receiver.delivered_ids()
        daemon = await start_daemon(config, log)
        try:
            await sim.scenario_finished()
            await wait_for(lambda: ended_sessions(archive) == scenario.sessions, timeout_s=60)
            await wait_for(lambda: receiver.delivered_ids() >= event_ids(archive), timeout_s=60)
        finally:
            daemon.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(daemon.wait(), 10) == 0
        truth = sim.truth()

    assert compare(archive, truth).exact
    assert len(before_kill) < len(event_ids(archive)), "the kill should land mid-run"
    requests = receiver.requests
    assert 0.35 < sum(not r.ok for r in requests) / len(requests) < 0.65
    assert all(r.verified for r in requests)
    bodies: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for request in requests:
        assert request.webhook_id == request.body["id"]
        bodies[request.webhook_id].append(request.body)
    assert any(len(sent) > 1 for sent in bodies.values())
    assert all(all(body == sent[0] for body in sent) for sent in bodies.values())
    assert order_violations(requests, seqs_by_session(archive)) == []
    assert receiver.overlaps == 0
    assert deliveries(archive, "dead") == []


async def archive_scenario(tmp_path: Path, name: str, hooks: HooksConfig) -> float:
    """Seconds from the daemon's start until the simulator's whole scenario is archived."""
    archive = tmp_path / f"{name}.sqlite3"
    scenario = Scenario(
        sessions=12, concurrent_per_agent=2, messages=(30, 40), interval_s=0.02, linger_s=30
    )
    async with Simulator(SimulatorOptions(agents=3, seed=21, scenario=scenario)) as sim:
        daemon = Daemon(replace(daemon_config(sim.base_url, archive), hooks=hooks))
        started = time.monotonic()
        async with daemon_running(daemon):
            await sim.scenario_finished()
            await wait_for(lambda: ended_sessions(archive) == scenario.sessions, timeout_s=60)
            elapsed = time.monotonic() - started
        assert compare(archive, sim.truth()).exact
    return elapsed


@pytest.mark.usefixtures("hook_calls")
async def test_slow_subscriber_does_not_slow_archiving(tmp_path: Path) -> None:
    """Guarantee 5: a hook taking 1 s per event lags on its cursor; archiving keeps its pace."""
    without = await archive_scenario(tmp_path, "without", HooksConfig())
    slow = PythonHook(name="slow", target="tests.support.hook_targets:slow")
    with_slow = await archive_scenario(tmp_path, "with", HooksConfig(python=(slow,)))
    archived = len(event_ids(tmp_path / "with.sqlite3"))
    assert len(hook_targets.SLOW_RECEIVED) < archived / 10
    assert with_slow < without * 1.5 + 1.0


@pytest.mark.usefixtures("hook_calls")
async def test_daemon_feeds_python_and_command_hooks(tmp_path: Path) -> None:
    """Python and command hooks get every event; failing ones are isolated from the daemon."""
    archive, out = tmp_path / "archive.sqlite3", tmp_path / "events.jsonl"
    append = ("/bin/sh", "-c", 'cat >> "$1"', "sh", str(out))
    failing = FAST_RETRY | {"max_attempts": 2}
    hooks = HooksConfig(
        commands=(
            CommandHook(name="append", argv=append, **FAST_RETRY),
            CommandHook(name="exits-1", argv=("/bin/sh", "-c", "exit 1"), **failing),
        ),
        python=(
            PythonHook(name="record", target="tests.support.hook_targets:record", **FAST_RETRY),
            PythonHook(name="raises", target="tests.support.hook_targets:always_raises", **failing),
        ),
    )
    scenario = Scenario(sessions=4, concurrent_per_agent=2, messages=(5, 10), interval_s=0.005)
    async with Simulator(SimulatorOptions(agents=2, seed=4, scenario=scenario)) as sim:
        daemon = Daemon(replace(daemon_config(sim.base_url, archive, agents=2), hooks=hooks))
        async with daemon_running(daemon):
            await sim.scenario_finished()
            await wait_for(lambda: ended_sessions(archive) == scenario.sessions, timeout_s=30)
            total = len(event_ids(archive))
            await wait_for(lambda: len(hook_targets.RECEIVED) == total, timeout_s=30)
            await wait_for(lambda: len(out.read_text().splitlines()) == total, timeout_s=30)
            await wait_for(lambda: len(deliveries(archive, "dead")) == 2 * total, timeout_s=30)
        assert compare(archive, sim.truth()).exact
    commanded = [orjson.loads(line) for line in out.read_text().splitlines()]
    for session_id, seqs in seqs_by_session(archive).items():
        assert [e.seq for e in hook_targets.RECEIVED if e.session_id == session_id] == seqs
        assert [e["seq"] for e in commanded if e["session_id"] == session_id] == seqs
    dead = {(name, attempts) for name, _, attempts, _ in deliveries(archive, "dead")}
    assert dead == {("exits-1", 2), ("raises", 2)}
