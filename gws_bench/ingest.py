"""Ingest: a backlog already at the simulator, archived by the daemon, against two ceilings.

The simulator starts with every backlog message in place. The two ceilings (see `ceilings`)
read it first, in this process; then the daemon, in its own process with its default
configuration, archives it. Its time runs from `daemon_started` (archive open, nothing read
yet) to the newest `archived_at`; CPU seconds and requests are interpolated to that instant
from samples taken every 50 ms.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from gws_bench import ceilings
from gws_bench.processes import (
    BenchError,
    DaemonProcess,
    SimulatorProcess,
    write_daemon_config,
)
from gws_bench.report import ScenarioResult
from gws_bench.settings import BenchContext, BenchSettings
from gws_bench.truth import ArchiveProbe, check_archive, read_truth

SAMPLE_S = 0.05
MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Point:
    """The daemon at one instant: wall clock, its CPU seconds, requests the simulator saw."""

    wall_s: float
    cpu_s: float
    requests: int


def interpolate(points: list[Point], wall_s: float) -> Point:
    """The straight-line estimate of a point at `wall_s` between the samples around it."""
    before = max((p for p in points if p.wall_s <= wall_s), key=lambda p: p.wall_s, default=None)
    after = min((p for p in points if p.wall_s >= wall_s), key=lambda p: p.wall_s, default=None)
    if before is None or after is None:
        return before or after or Point(wall_s, 0.0, 0)
    span = after.wall_s - before.wall_s
    share = (wall_s - before.wall_s) / span if span else 0.0
    return Point(
        wall_s,
        before.cpu_s + share * (after.cpu_s - before.cpu_s),
        round(before.requests + share * (after.requests - before.requests)),
    )


def run_ingest(settings: BenchSettings, context: BenchContext) -> ScenarioResult:
    """Run the ingest scenario and its ceilings."""
    sessions, per_session = settings.backlog_sessions, settings.backlog_messages
    total = sessions * per_session
    workdir, say = context.workdir, context.progress
    truth_path = workdir / "ingest-truth.jsonl"
    archive = workdir / "ingest-archive.sqlite3"
    options = ["--agents", str(settings.agents), "--seed", str(settings.seed)]
    options += ["--sessions", "0", "--backlog", f"{sessions}:{per_session}"]
    say(f"ingest: simulator with {sessions} sessions x {per_session} messages")
    with SimulatorProcess(options, truth_path, workdir / "ingest-simulator.log") as simulator:
        base_url = simulator.wait_ready(settings.start_timeout_s)
        say("ingest: fetch-only ceiling")
        fetch = asyncio.run(ceilings.fetch_only(base_url, settings.agents, per_session))
        say("ingest: minimal-pipeline ceiling")
        minimal = asyncio.run(
            ceilings.minimal_pipeline(
                base_url, settings.agents, per_session, workdir / "ingest-minimal.sqlite3"
            )
        )
        say("ingest: the daemon")
        config = write_daemon_config(
            workdir / "ingest-config.toml", base_url, settings.agents, archive
        )
        requests_before = simulator.stats()["total_requests"]
        with DaemonProcess(config, workdir / "ingest-daemon.log") as daemon:
            started_s = daemon.wait_started(settings.start_timeout_s)
            profiling = (
                context.profiler.record(daemon.pid, "ingest-daemon")
                if context.profiler
                else nullcontext()
            )
            with profiling:
                points, done_s = _follow(daemon, simulator, archive, total, settings)
            peak_rss = daemon.meter.peak_rss_bytes()
    first, last = interpolate(points, started_s), interpolate(points, done_s)
    check = check_archive(archive, read_truth(truth_path))
    elapsed = done_s - started_s
    rate = total / elapsed
    result = ScenarioResult("ingest")
    result.add("sessions", "sessions in the backlog", sessions, "sessions")
    result.add("messages", "messages in the backlog", total, "msg")
    result.add("time_s", "time to archive everything", elapsed, "s", 2)
    result.add("rate", "archive rate (daemon)", rate, "msg/s")
    result.add(
        "requests_per_s", "requests (daemon)", (last.requests - requests_before) / elapsed, "req/s"
    )
    result.add(
        "cpu_per_10k_s",
        "daemon CPU per 10,000 messages",
        (last.cpu_s - first.cpu_s) / total * 10_000,
        "s",
        3,
    )
    result.add("peak_rss_mb", "daemon peak RSS", peak_rss / MB, "MB", 1)
    result.add("minimal_rate", "minimal pipeline (ceiling)", minimal.rate, "msg/s")
    result.add(
        "minimal_cpu_per_10k_s",
        "minimal pipeline CPU per 10,000 messages",
        minimal.cpu_s / total * 10_000,
        "s",
        3,
    )
    result.add("fetch_only_rate", "fetch-only (ceiling)", fetch.rate, "msg/s")
    result.add("ratio_minimal", "daemon / minimal pipeline", rate / minimal.rate, "x", 2)
    result.add("ratio_fetch_only", "daemon / fetch-only", rate / fetch.rate, "x", 3)
    result.add("missing", "messages missing from the archive", check.missing, "msg")
    result.add("extra", "messages in the archive not created", check.extra, "msg")
    return result


def _follow(
    daemon: DaemonProcess,
    simulator: SimulatorProcess,
    archive_path: Path,
    total: int,
    settings: BenchSettings,
) -> tuple[list[Point], float]:
    """Sample the daemon until `total` messages are archived; the points and the last instant."""
    meter = daemon.meter
    probe = ArchiveProbe(archive_path)
    points: list[Point] = []
    deadline = time.monotonic() + settings.finish_timeout_s
    try:
        while True:
            sample = meter.sample()
            requests = simulator.stats()["total_requests"]
            points.append(Point(sample.wall_s, sample.cpu_s, requests))
            if probe.message_count() >= total:
                break
            daemon.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(f"ingest: the daemon did not archive {total} messages in time")
            time.sleep(SAMPLE_S)
        # One more sample after the end, so the end lies between two samples.
        time.sleep(SAMPLE_S)
        sample = meter.sample()
        points.append(Point(sample.wall_s, sample.cpu_s, simulator.stats()["total_requests"]))
        return points, probe.last_archived_s()
    finally:
        probe.close()
