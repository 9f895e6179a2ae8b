"""Live scale: many sessions open at once, each getting a message every few seconds.

The simulator plays an endless scenario (sessions end and others take their place) while the
daemon, in its own process with its default poll configuration, archives it. After
`duration_s` the scenario stops; the bench waits until the archive holds every message, then
measures idle polling (every session silent, every poll interval grown to its maximum).
Messages that never arrive (a session that ended and vanished before the daemon read it) are
waited for until the archive has not grown for `stall_s`, then reported as missing.

Freshness is `archived_at - created_at` of each message created after `daemon_started`.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path

from gws_bench.processes import (
    DaemonProcess,
    Sample,
    SimulatorProcess,
    message_requests,
    write_daemon_config,
)
from gws_bench.report import ScenarioResult
from gws_bench.settings import BenchContext, BenchSettings
from gws_bench.truth import ArchiveProbe, check_archive, percentile, read_truth

TICK_S = 1.0
MB = 1024 * 1024


def run_live(settings: BenchSettings, context: BenchContext) -> ScenarioResult:
    """Run the live-scale scenario."""
    workdir, say = context.workdir, context.progress
    truth_path = workdir / "live-truth.jsonl"
    archive = workdir / "live-archive.sqlite3"
    low, high = settings.live_messages
    sessions = settings.sessions_per_agent * settings.agents
    options = ["--agents", str(settings.agents), "--seed", str(settings.seed)]
    options += ["--concurrent", str(settings.sessions_per_agent)]
    options += ["--interval", str(settings.interval_s), "--messages", f"{low}-{high}"]
    options += ["--linger", str(settings.linger_s)]
    mode = "push mode" if settings.push else "polling only"
    say(f"live: {sessions} sessions, a message every ~{settings.interval_s:g} s each, {mode}")
    with ExitStack() as stack:
        simulator = stack.enter_context(
            SimulatorProcess(options, truth_path, workdir / "live-simulator.log")
        )
        base_url = simulator.wait_ready(settings.start_timeout_s)
        config = write_daemon_config(
            workdir / "live-config.toml", base_url, settings.agents, archive, push=settings.push
        )
        daemon = stack.enter_context(DaemonProcess(config, workdir / "live-daemon.log"))
        started_s = daemon.wait_started(settings.start_timeout_s)
        if context.profiler is not None:
            stack.enter_context(context.profiler.record(daemon.pid, "live-daemon"))
            stack.enter_context(context.profiler.record(simulator.pid, "live-simulator"))
        daemon_at_start, simulator_at_start = daemon.meter.sample(), simulator.meter.sample()
        requests_at_start = simulator.stats()["total_requests"]
        say(f"live: running for {settings.duration_s:g} s")
        _run_until(started_s + settings.duration_s, daemon, simulator)
        created = simulator.stop_scenario()["messages"]
        daemon_at_stop, simulator_at_stop = daemon.meter.sample(), simulator.meter.sample()
        requests_at_stop = simulator.stats()["total_requests"]
        say(f"live: stopped at {created} messages; waiting for the archive to catch up")
        drain_s = _drain(archive, created, daemon, settings)
        say("live: measuring idle polls")
        time.sleep(settings.settle_s)
        idle_start, idle_polls_start = daemon.meter.sample(), message_requests(simulator.stats())
        time.sleep(settings.window_s)
        idle_end, idle_polls_end = daemon.meter.sample(), message_requests(simulator.stats())
        peak_rss = daemon.meter.peak_rss_bytes()
    check = check_archive(archive, read_truth(truth_path), fresh_after_s=started_s)
    live_s = daemon_at_stop.wall_s - daemon_at_start.wall_s
    idle_polls = max(1, idle_polls_end - idle_polls_start)
    result = ScenarioResult("live+push" if settings.push else "live")
    result.add("sessions", "sessions open at once", sessions, "sessions")
    result.add("duration_s", "run time", live_s, "s", 1)
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
    result.add("cpu_share", "daemon CPU", _share(daemon_at_start, daemon_at_stop), "cores", 3)
    result.add("peak_rss_mb", "daemon peak RSS", peak_rss / MB, "MB", 1)
    result.add(
        "requests_per_s",
        "requests (daemon)",
        (requests_at_stop - requests_at_start) / live_s,
        "req/s",
    )
    result.add("drain_s", "catch-up after the last message", drain_s, "s", 2)
    result.add(
        "idle_cpu_share", "daemon CPU, every session idle", _share(idle_start, idle_end), "cores", 3
    )
    result.add(
        "idle_poll_us",
        "daemon CPU per idle poll",
        (idle_end.cpu_s - idle_start.cpu_s) / idle_polls * 1e6,
        "us",
    )
    result.add(
        "simulator_cpu_share",
        "simulator CPU",
        _share(simulator_at_start, simulator_at_stop),
        "cores",
        3,
    )
    return result


def _share(start: Sample, end: Sample) -> float:
    """CPU seconds per wall second between two samples."""
    return (end.cpu_s - start.cpu_s) / max(1e-9, end.wall_s - start.wall_s)


def _run_until(until_s: float, daemon: DaemonProcess, simulator: SimulatorProcess) -> None:
    """Let the scenario play until the wall clock reaches `until_s`, checking both children."""
    while (left := until_s - time.time()) > 0:
        time.sleep(min(TICK_S, left))
        daemon.check_alive()
        simulator.check_alive()
        daemon.meter.sample()


def _drain(archive: Path, created: int, daemon: DaemonProcess, settings: BenchSettings) -> float:
    """Seconds until the archive holds `created` messages, or stops growing for `stall_s`."""
    started = last_growth = time.monotonic()
    probe = ArchiveProbe(archive)
    try:
        archived = probe.message_count()
        while archived < created:
            now = time.monotonic()
            if now - last_growth > settings.stall_s or now - started > settings.finish_timeout_s:
                break
            daemon.check_alive()
            time.sleep(0.05)
            count = probe.message_count()
            if count > archived:
                archived, last_growth = count, time.monotonic()
    finally:
        probe.close()
    return last_growth - started
