"""Live scale: many sessions open at once, each getting a message every few seconds.

The simulator plays an endless scenario (sessions end and others take their place) while the
daemon, in its own process with its default poll configuration, archives it. After
`duration_s` the scenario stops; the bench waits until the archive holds every message, then
measures idle polling (every session silent, every poll interval grown to its maximum).
Messages that never arrive (a session that ended and vanished before the daemon read it) are
waited for until the archive has not grown for `stall_s`, then reported as missing.

Unless peers are off, the same scenario (same seed) is then played again, in a new simulator,
for the plain live peer (`peers.live_peer`: one asyncio task per session, polling at the
daemon's idle interval, lists re-read at the daemon's list interval), measured the same way.

Freshness is `archived_at - created_at` of each message created after the poller started
(`daemon_started`, `peer_started`). Requests per second are the simulator's count (the poller
is its only client) over the run; the simulator's CPU is measured over the same run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from archiver.config.model import PollConfig
from archiver.store.db import ArchiveLocation
from gws_bench.ceilings import PAGE_SIZE
from gws_bench.peers.harness import LivePeerProcess, check_peer_archive
from gws_bench.processes import (
    ChildProcess,
    DaemonProcess,
    Sample,
    SimulatorProcess,
    message_requests,
    write_daemon_config,
)
from gws_bench.report import ScenarioResult
from gws_bench.settings import BenchContext, BenchSettings
from gws_bench.truth import ArchiveProbe, Check, check_archive, percentile, read_truth

TICK_S = 1.0
MB = 1024 * 1024
PEER = "plain peer (asyncio)"

Poller = TypeVar("Poller", bound=ChildProcess)
# Starts a poller against the simulator at a base URL, writing an archive: it and its start.
Launch = Callable[[ExitStack, str, ArchiveLocation], tuple[Poller, float]]
CheckArchive = Callable[[ArchiveLocation, Sequence[dict[str, Any]], float], Check]


@dataclass(frozen=True, slots=True)
class LiveRun:
    """What one poller did in one play of the scenario, and what the simulator spent."""

    check: Check
    live_s: float
    cpu_share: float
    peak_rss_mb: float
    requests_per_s: float
    simulator_cpu_share: float
    drain_s: float
    idle_cpu_share: float
    idle_poll_us: float


def run_live(settings: BenchSettings, context: BenchContext) -> ScenarioResult:
    """Run the live-scale scenario for the daemon, then (unless peers are off) the peer."""
    sessions = settings.sessions_per_agent * settings.agents
    mode = "push mode" if settings.push else "polling only"
    context.progress(
        f"live: {sessions} sessions, a message every ~{settings.interval_s:g} s each, {mode}"
    )

    def launch_daemon(
        stack: ExitStack, base_url: str, archive: ArchiveLocation
    ) -> tuple[DaemonProcess, float]:
        config = write_daemon_config(
            context.workdir / "live-config.toml",
            base_url,
            settings.agents,
            archive,
            push=settings.push,
        )
        daemon = stack.enter_context(DaemonProcess(config, context.workdir / "live-daemon.log"))
        return daemon, daemon.wait_started(settings.start_timeout_s)

    daemon, _ = _play("live", "daemon", launch_daemon, _check_daemon, settings, context)
    result = ScenarioResult("live+push" if settings.push else "live")
    _add_daemon(result, sessions, daemon)
    if settings.peers:
        poll = PollConfig()

        def launch_peer(
            stack: ExitStack, base_url: str, archive: ArchiveLocation
        ) -> tuple[LivePeerProcess, float]:
            assert isinstance(archive, Path)  # the peer writes its own SQLite file
            process = LivePeerProcess(
                base_url,
                settings.agents,
                archive,
                interval_s=poll.max_interval_s,
                list_interval_s=poll.sessions_interval_s,
                page_size=PAGE_SIZE,
            )
            peer = stack.enter_context(process)
            return peer, peer.wait_started(settings.start_timeout_s)

        peer, process = _play("live-peer", "peer", launch_peer, _check_peer, settings, context)
        _add_peer(result, daemon, peer, process.failures())
    return result


def _add_daemon(result: ScenarioResult, sessions: int, run: LiveRun) -> None:
    """The daemon's rows."""
    check = run.check
    result.add("sessions", "sessions open at once", sessions, "sessions")
    result.add("duration_s", "run time", run.live_s, "s", 1)
    result.add("messages", "messages created", check.created, "msg")
    result.add("missing", "messages missing from the archive", check.missing, "msg")
    result.add(
        "missing_sessions", "sessions with messages missing", check.missing_sessions, "sessions"
    )
    result.add("extra", "messages in the archive not created", check.extra, "msg")
    result.add("freshness_p50_s", "freshness p50", percentile(check.freshness_s, 0.5), "s", 3)
    result.add("freshness_p99_s", "freshness p99", percentile(check.freshness_s, 0.99), "s", 3)
    result.add("freshness_max_s", "freshness max", percentile(check.freshness_s, 1.0), "s", 3)
    result.add(
        "discovery_p99_s",
        "new session found (first_seen_at), p99",
        percentile(check.discovery_s, 0.99),
        "s",
        3,
    )
    result.add("cpu_share", "daemon CPU", run.cpu_share, "cores", 3)
    result.add("peak_rss_mb", "daemon peak RSS", run.peak_rss_mb, "MB", 1)
    result.add("requests_per_s", "requests (daemon)", run.requests_per_s, "req/s")
    result.add("drain_s", "catch-up after the last message", run.drain_s, "s", 2)
    result.add("idle_cpu_share", "daemon CPU, every session idle", run.idle_cpu_share, "cores", 3)
    result.add("idle_poll_us", "daemon CPU per idle poll", run.idle_poll_us, "us")
    result.add("simulator_cpu_share", "simulator CPU", run.simulator_cpu_share, "cores", 3)


def _add_peer(result: ScenarioResult, daemon: LiveRun, peer: LiveRun, failures: int) -> None:
    """The peer's rows (its own play of the scenario), then daemon / peer."""
    check = peer.check
    p99 = percentile(check.freshness_s, 0.99)
    result.add("peer_messages", f"{PEER}: messages created", check.created, "msg")
    result.add("peer_missing", f"{PEER}: messages missing", check.missing, "msg")
    result.add("peer_extra", f"{PEER}: messages not created", check.extra, "msg")
    result.add(
        "peer_freshness_p50_s", f"{PEER}: freshness p50", percentile(check.freshness_s, 0.5), "s", 3
    )
    result.add("peer_freshness_p99_s", f"{PEER}: freshness p99", p99, "s", 3)
    result.add(
        "peer_freshness_max_s", f"{PEER}: freshness max", percentile(check.freshness_s, 1.0), "s", 3
    )
    result.add("peer_cpu_share", f"{PEER}: CPU", peer.cpu_share, "cores", 3)
    result.add("peer_peak_rss_mb", f"{PEER}: peak RSS", peer.peak_rss_mb, "MB", 1)
    result.add("peer_requests_per_s", f"{PEER}: requests", peer.requests_per_s, "req/s")
    result.add("peer_failures", f"{PEER}: failed requests (retried)", failures, "req")
    result.add("peer_idle_poll_us", f"{PEER}: CPU per idle poll", peer.idle_poll_us, "us")
    result.add(
        "peer_simulator_cpu_share", f"{PEER}: simulator CPU", peer.simulator_cpu_share, "cores", 3
    )
    daemon_p99 = percentile(daemon.check.freshness_s, 0.99)
    result.add(
        "ratio_p99_peer", "daemon / plain peer: freshness p99", _ratio(daemon_p99, p99), "x", 2
    )
    result.add(
        "ratio_cpu_peer",
        "daemon / plain peer: CPU",
        _ratio(daemon.cpu_share, peer.cpu_share),
        "x",
        2,
    )


def _check_daemon(
    archive: ArchiveLocation, truth: Sequence[dict[str, Any]], started_s: float
) -> Check:
    return check_archive(archive, truth, fresh_after_s=started_s)


def _check_peer(
    archive: ArchiveLocation, truth: Sequence[dict[str, Any]], started_s: float
) -> Check:
    assert isinstance(archive, Path)
    return check_peer_archive(archive, truth, fresh_after_s=started_s)


def _play(
    prefix: str,
    name: str,
    launch: Launch[Poller],
    check: CheckArchive,
    settings: BenchSettings,
    context: BenchContext,
) -> tuple[LiveRun, Poller]:
    """One play of the scenario in a new simulator, archived by the poller `launch` starts."""
    workdir, say = context.workdir, context.progress
    truth_path = workdir / f"{prefix}-truth.jsonl"
    archive = (
        context.archive(f"{prefix}-archive")
        if name == "daemon"
        else workdir / f"{prefix}-archive.sqlite3"
    )
    low, high = settings.live_messages
    options = ["--agents", str(settings.agents), "--seed", str(settings.seed)]
    options += ["--concurrent", str(settings.sessions_per_agent)]
    options += ["--interval", str(settings.interval_s), "--messages", f"{low}-{high}"]
    options += ["--linger", str(settings.linger_s)]
    with ExitStack() as stack:
        simulator = stack.enter_context(
            SimulatorProcess(options, truth_path, workdir / f"{prefix}-simulator.log")
        )
        base_url = simulator.wait_ready(settings.start_timeout_s)
        poller, started_s = launch(stack, base_url, archive)
        if context.profiler is not None:
            stack.enter_context(context.profiler.record(poller.pid, f"live-{name}"))
            stack.enter_context(context.profiler.record(simulator.pid, f"{prefix}-simulator"))
        poller_at_start, simulator_at_start = poller.meter.sample(), simulator.meter.sample()
        requests_at_start = simulator.stats()["total_requests"]
        say(f"live: the {name}, running for {settings.duration_s:g} s")
        _run_until(started_s + settings.duration_s, poller, simulator)
        created = simulator.stop_scenario()["messages"]
        poller_at_stop, simulator_at_stop = poller.meter.sample(), simulator.meter.sample()
        requests_at_stop = simulator.stats()["total_requests"]
        say(f"live: stopped at {created} messages; waiting for the {name} to catch up")
        drain_s = _drain(archive, created, poller, settings)
        say(f"live: measuring the {name}'s idle polls")
        time.sleep(settings.settle_s)
        idle_start, idle_polls_start = poller.meter.sample(), message_requests(simulator.stats())
        time.sleep(settings.window_s)
        idle_end, idle_polls_end = poller.meter.sample(), message_requests(simulator.stats())
        peak_rss = poller.meter.peak_rss_bytes()
    live_s = poller_at_stop.wall_s - poller_at_start.wall_s
    idle_polls = max(1, idle_polls_end - idle_polls_start)
    run = LiveRun(
        check=check(archive, read_truth(truth_path), started_s),
        live_s=live_s,
        cpu_share=_share(poller_at_start, poller_at_stop),
        peak_rss_mb=peak_rss / MB,
        requests_per_s=(requests_at_stop - requests_at_start) / live_s,
        simulator_cpu_share=_share(simulator_at_start, simulator_at_stop),
        drain_s=drain_s,
        idle_cpu_share=_share(idle_start, idle_end),
        idle_poll_us=(idle_end.cpu_s - idle_start.cpu_s) / idle_polls * 1e6,
    )
    return run, poller


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, or 0 when there is nothing to divide by."""
    return numerator / denominator if denominator else 0.0


def _share(start: Sample, end: Sample) -> float:
    """CPU seconds per wall second between two samples."""
    return (end.cpu_s - start.cpu_s) / max(1e-9, end.wall_s - start.wall_s)


def _run_until(until_s: float, poller: ChildProcess, simulator: SimulatorProcess) -> None:
    """Let the scenario play until the wall clock reaches `until_s`, checking both children."""
    while (left := until_s - time.time()) > 0:
        time.sleep(min(TICK_S, left))
        poller.check_alive()
        simulator.check_alive()
        poller.meter.sample()


def _drain(
    archive: ArchiveLocation, created: int, poller: ChildProcess, settings: BenchSettings
) -> float:
    """Seconds until the archive holds `created` messages, or stops growing for `stall_s`."""
    started = last_growth = time.monotonic()
    probe = ArchiveProbe(archive)
    try:
        archived = probe.message_count()
        while archived < created:
            now = time.monotonic()
            if now - last_growth > settings.stall_s or now - started > settings.finish_timeout_s:
                break
            poller.check_alive()
            time.sleep(0.05)
            count = probe.message_count()
            if count > archived:
                archived, last_growth = count, time.monotonic()
    finally:
        probe.close()
    return last_growth - started
