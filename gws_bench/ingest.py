"""Ingest: a backlog already at the simulator, archived by the daemon, against two ceilings.

The simulator starts with every backlog message in place. The two ceilings (see `ceilings`)
read it first, in this process; then the plain ingest peer (`peers.ingest_peer`, synchronous
stdlib, one log at a time) in its own process, unless peers are off; then the daemon, in its
own process with its default configuration, archives it. Its time runs from `daemon_started`
(archive open, nothing read yet) to the newest `archived_at`; CPU seconds (its own and the
simulator's) and requests are interpolated to that instant from samples taken every 50 ms.
The peer times itself, from its first request to its last commit. Both files are checked
against the truth.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import nullcontext
from dataclasses import dataclass

from archiver.store.db import ArchiveLocation
from gws_bench import ceilings
from gws_bench.peers.harness import IngestPeerResult, run_ingest_peer
from gws_bench.processes import (
    BenchError,
    DaemonProcess,
    Sample,
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
    """The daemon at one instant: wall clock, its CPU seconds, requests the simulator saw,
    and the simulator's CPU seconds."""

    wall_s: float
    cpu_s: float
    requests: int
    simulator_cpu_s: float = 0.0


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
        before.simulator_cpu_s + share * (after.simulator_cpu_s - before.simulator_cpu_s),
    )


def run_ingest(settings: BenchSettings, context: BenchContext) -> ScenarioResult:
    """Run the ingest scenario, its ceilings and (unless peers are off) the plain peer."""
    sessions, per_session = settings.backlog_sessions, settings.backlog_messages
    total = sessions * per_session
    workdir, say = context.workdir, context.progress
    truth_path = workdir / "ingest-truth.jsonl"
    archive = context.archive("ingest-archive")
    options = ["--agents", str(settings.agents), "--seed", str(settings.seed)]
    options += ["--sessions", "0", "--backlog", f"{sessions}:{per_session}"]
    say(f"ingest: simulator with {sessions} sessions x {per_session} messages")
    with SimulatorProcess(options, truth_path, workdir / "ingest-simulator.log") as simulator:
        base_url = simulator.wait_ready(settings.start_timeout_s)
        say("ingest: fetch-only ceiling")
        fetch = asyncio.run(ceilings.fetch_only(base_url, settings.agents, per_session))
        say("ingest: minimal-pipeline ceiling")
        before = simulator.meter.sample()
        minimal = asyncio.run(
            ceilings.minimal_pipeline(
                base_url, settings.agents, per_session, workdir / "ingest-minimal.sqlite3"
            )
        )
        minimal_simulator = _share(before, simulator.meter.sample(), minimal.elapsed_s)
        peer, peer_simulator = None, 0.0
        if settings.peers:
            say("ingest: plain peer (sync stdlib)")
            before = simulator.meter.sample()
            peer = run_ingest_peer(
                base_url,
                settings.agents,
                ceilings.PAGE_SIZE,
                workdir / "ingest-peer.sqlite3",
                read_truth(truth_path),
                settings.finish_timeout_s,
            )
            peer_simulator = _share(before, simulator.meter.sample(), peer.elapsed_s)
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
    result.add(
        "simulator_cpu_share",
        "simulator CPU (daemon)",
        (last.simulator_cpu_s - first.simulator_cpu_s) / elapsed,
        "cores",
        3,
    )
    result.add("minimal_rate", "minimal pipeline (ceiling)", minimal.rate, "msg/s")
    result.add(
        "minimal_cpu_per_10k_s",
        "minimal pipeline CPU per 10,000 messages",
        minimal.cpu_s / total * 10_000,
        "s",
        3,
    )
    result.add(
        "minimal_simulator_cpu_share",
        "simulator CPU (minimal pipeline)",
        minimal_simulator,
        "cores",
        3,
    )
    result.add("fetch_only_rate", "fetch-only (ceiling)", fetch.rate, "msg/s")
    result.add("ratio_minimal", "daemon / minimal pipeline", rate / minimal.rate, "x", 2)
    result.add("ratio_fetch_only", "daemon / fetch-only", rate / fetch.rate, "x", 3)
    result.add("missing", "messages missing from the archive", check.missing, "msg")
    result.add("extra", "messages in the archive not created", check.extra, "msg")
    if peer is not None:
        _add_peer(result, peer, peer_simulator, total, rate)
    return result


def _add_peer(
    result: ScenarioResult, peer: IngestPeerResult, simulator_share: float, total: int, rate: float
) -> None:
    """The plain peer's rows, and the daemon's rate over the peer's."""
    label = "plain peer (sync stdlib)"
    result.add("peer_time_s", f"{label}: time to archive everything", peer.elapsed_s, "s", 2)
    result.add("peer_rate", f"{label}: archive rate", peer.rate, "msg/s")
    result.add("peer_requests_per_s", f"{label}: requests", peer.requests / peer.elapsed_s, "req/s")
    result.add(
        "peer_cpu_per_10k_s",
        f"{label}: CPU per 10,000 messages",
        peer.cpu_s / total * 10_000,
        "s",
        3,
    )
    result.add("peer_simulator_cpu_share", f"{label}: simulator CPU", simulator_share, "cores", 3)
    result.add("peer_missing", f"{label}: messages missing", peer.check.missing, "msg")
    result.add("peer_extra", f"{label}: messages not created", peer.check.extra, "msg")
    result.add("ratio_peer", "daemon / plain peer", rate / peer.rate if peer.rate else 0.0, "x", 2)


def _share(start: Sample, end: Sample, elapsed_s: float) -> float:
    """CPU seconds between two samples per second of `elapsed_s`."""
    return (end.cpu_s - start.cpu_s) / max(1e-9, elapsed_s)


def _follow(
    daemon: DaemonProcess,
    simulator: SimulatorProcess,
    archive_path: ArchiveLocation,
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
            points.append(_point(meter.sample(), simulator))
            if probe.message_count() >= total:
                break
            daemon.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(f"ingest: the daemon did not archive {total} messages in time")
            time.sleep(SAMPLE_S)
        # One more sample after the end, so the end lies between two samples.
        time.sleep(SAMPLE_S)
        points.append(_point(meter.sample(), simulator))
        return points, probe.last_archived_s()
    finally:
        probe.close()


def _point(sample: Sample, simulator: SimulatorProcess) -> Point:
    """The daemon's `sample` with the simulator's request count and CPU seconds now."""
    requests = simulator.stats()["total_requests"]
    return Point(sample.wall_s, sample.cpu_s, requests, simulator.meter.sample().cpu_s)
