"""`gws-archiver bench`: a tiny run prints every measure and archives exactly (the daemon's
archive and the plain peers' files); its helpers."""

from __future__ import annotations

import math
import time
from pathlib import Path

import orjson
import pytest

from archiver.cli import build_parser, main
from gws_bench.cli import command_line, settings_from
from gws_bench.ingest import Point, interpolate
from gws_bench.peers.harness import check_peer_archive
from gws_bench.profile import summarize
from gws_bench.truth import percentile, read_truth
from tests.support import compare

EXPECTED = {
    "ingest": {
        "sessions",
        "messages",
        "time_s",
        "rate",
        "requests_per_s",
        "cpu_per_10k_s",
        "peak_rss_mb",
        "simulator_cpu_share",
        "minimal_rate",
        "minimal_cpu_per_10k_s",
        "minimal_simulator_cpu_share",
        "fetch_only_rate",
        "ratio_minimal",
        "ratio_fetch_only",
        "missing",
        "extra",
        "peer_time_s",
        "peer_rate",
        "peer_requests_per_s",
        "peer_cpu_per_10k_s",
        "peer_simulator_cpu_share",
        "peer_missing",
        "peer_extra",
        "ratio_peer",
    },
    "live": {
        "sessions",
        "duration_s",
        "messages",
        "missing",
        "missing_sessions",
        "extra",
        "freshness_p50_s",
        "freshness_p99_s",
        "freshness_max_s",
        "discovery_p99_s",
        "cpu_share",
        "peak_rss_mb",
        "requests_per_s",
        "drain_s",
        "idle_cpu_share",
        "idle_poll_us",
        "simulator_cpu_share",
        "peer_messages",
        "peer_missing",
        "peer_extra",
        "peer_freshness_p50_s",
        "peer_freshness_p99_s",
        "peer_freshness_max_s",
        "peer_cpu_share",
        "peer_peak_rss_mb",
        "peer_requests_per_s",
        "peer_failures",
        "peer_idle_poll_us",
        "peer_simulator_cpu_share",
        "ratio_p99_peer",
        "ratio_cpu_peer",
    },
    "storage": {
        "messages",
        "writer_rate",
        "one_txn_rate",
        "per_page_rate",
        "bare_per_page_rate",
        "ratio_one_txn",
        "bytes_per_message",
        "wire_bytes_per_message",
    },
    "webhooks": {
        f"{mode}_{key}"
        for mode in ("healthy", "flaky")
        for key in ("events", "rate", "lag_p50", "lag_p99", "lag_max", "cpu", "order")
    },
}
# Measures that a working run can only have positive.
POSITIVE = {
    "ingest": {
        "rate",
        "requests_per_s",
        "cpu_per_10k_s",
        "minimal_rate",
        "fetch_only_rate",
        "peer_rate",
        "peer_requests_per_s",
        "simulator_cpu_share",
        "ratio_peer",
    },
    "live": {
        "messages",
        "freshness_p50_s",
        "cpu_share",
        "peak_rss_mb",
        "idle_poll_us",
        "peer_messages",
        "peer_freshness_p50_s",
        "peer_cpu_share",
        "peer_requests_per_s",
        "peer_simulator_cpu_share",
    },
    "storage": {"writer_rate", "one_txn_rate", "bytes_per_message"},
    "webhooks": {"healthy_events", "healthy_rate", "flaky_events", "flaky_rate"},
}


def test_tiny_bench_is_complete_and_its_archives_are_exact(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`bench --tiny` finishes in seconds; every row, column and number is there; no loss."""
    started = time.monotonic()
    assert main(["bench", "--tiny", "--workdir", str(tmp_path)]) == 0
    assert time.monotonic() - started < 90  # live plays twice: the daemon, then the peer
    out = capsys.readouterr().out
    measures_table, _, comparison = out.partition("\n\n| work |")
    rows = [
        line for line in measures_table.splitlines() if line.startswith("| ") and "---" not in line
    ]
    cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]
    assert cells[0] == ["scenario", "measure", "value", "unit"]
    body = cells[1:]
    assert all(len(row) == 4 and all(row) for row in body)
    assert all(math.isfinite(float(row[2])) for row in body)
    assert [row[0] for row in body] == [
        name for name, keys in EXPECTED.items() for _ in range(len(keys))
    ]

    report = orjson.loads((tmp_path / "report.json").read_bytes())
    assert report["command"] == "gws-archiver bench --tiny"
    for scenario, keys in EXPECTED.items():
        measures = report["scenarios"][scenario]
        assert set(measures) == keys
        assert all(isinstance(value, float) for value in measures.values())
        assert all(measures[key] > 0 for key in POSITIVE[scenario]), measures
        if "missing" in measures:
            assert measures["missing"] == measures["extra"] == 0
        if "peer_missing" in measures:
            assert measures["peer_missing"] == measures["peer_extra"] == 0
    assert report["scenarios"]["webhooks"]["healthy_order"] == 0
    assert report["scenarios"]["webhooks"]["flaky_order"] == 0
    for scenario in ("ingest", "live"):
        truth = read_truth(tmp_path / f"{scenario}-truth.jsonl")
        result = compare(tmp_path / f"{scenario}-archive.sqlite3", truth)
        assert result.exact, result
        assert len(truth) == report["scenarios"][scenario]["messages"]
    peer_files = {"ingest": ("ingest", "ingest-peer"), "live": ("live-peer", "live-peer-archive")}
    for scenario, (truth_name, archive_name) in peer_files.items():
        truth = read_truth(tmp_path / f"{truth_name}-truth.jsonl")
        check = check_peer_archive(tmp_path / f"{archive_name}.sqlite3", truth)
        assert check.exact, check
        assert check.archived == len(truth)
        assert check.created == report["scenarios"][scenario].get("peer_messages", len(truth))
    # The side-by-side table: one row each for ingest and live, every cell filled.
    side = [line for line in comparison.splitlines() if line.startswith("| ") and "---" not in line]
    assert [line.split(" | ")[0] for line in side] == [
        "| ingest, 40 sessions × 50",
        "| 60 live sessions for 3 s, polling only",
    ]


def test_options_override_the_preset_and_make_the_command() -> None:
    """Given options win over --tiny; the report's command repeats exactly what was given."""
    args = build_parser("bench").parse_args(
        ["bench", "--tiny", "--scenario", "live", "--live-sessions", "500", "--duration", "7.5"]
    )
    settings = settings_from(args)
    assert settings.scenarios == ("live",)
    assert (settings.live_sessions, settings.duration_s, settings.agents) == (500, 7.5, 3)
    assert command_line(args) == (
        "gws-archiver bench --scenario live --tiny --live-sessions 500 --duration 7.5"
    )
    full = settings_from(build_parser("bench").parse_args(["bench"]))
    assert (full.backlog_sessions, full.backlog_messages, full.live_sessions) == (1000, 200, 10_000)
    assert full.sessions_per_agent == 1000
    assert full.peers


def test_no_peers_turns_the_plain_peers_off_and_is_in_the_command() -> None:
    """--no-peers skips the plain peers; the report's command says so."""
    args = build_parser("bench").parse_args(["bench", "--scenario", "ingest", "--no-peers"])
    assert not settings_from(args).peers
    assert command_line(args) == "gws-archiver bench --scenario ingest --no-peers"


def test_percentile_is_nearest_rank() -> None:
    """p50 of 1..10 is 5, p99 is the largest, p0 the smallest; no values give 0."""
    values = [float(n) for n in range(1, 11)]
    assert (percentile(values, 0.5), percentile(values, 0.99)) == (5.0, 10.0)
    assert (percentile(values, 0.0), percentile([], 0.5)) == (1.0, 0.0)


def test_interpolate_between_samples() -> None:
    """A point between two samples lies on the line between them; outside, the nearest."""
    points = [Point(10.0, 1.0, 100), Point(12.0, 2.0, 300)]
    assert interpolate(points, 11.5) == Point(11.5, 1.75, 250)
    assert interpolate(points, 13.0) == points[1]


def test_profile_summary_ranks_areas_lines_and_functions(tmp_path: Path) -> None:
    """Collapsed stacks become shares by area, by line (self) and by archiver function (total)."""
    root = "/work/.venv/lib/python3.11/site-packages"
    loop = "_run_once (/usr/lib/python3.11/asyncio/base_events.py:1922)"
    poll = "SessionPoller.poll_once (/src/archiver/poller.py:131)"
    decode = "decode_json (/src/archiver/gws/client.py:412)"
    send = f"ClientSession._request ({root}/aiohttp/client.py:700)"
    stacks = tmp_path / "live-daemon.txt"
    idle = "_worker (/usr/lib/python3.11/concurrent/futures/thread.py:83)"
    stacks.write_text(
        f"{loop};{poll};{decode} 3\n{loop};{poll};{send} 1\n{loop} 4\nThread.run;{idle} 5\n"
    )
    profile = summarize(stacks)
    assert (profile.samples, profile.waiting) == (8, 5)
    assert dict(profile.areas) == {
        "asyncio scheduling": 0.5,
        "JSON decoding (orjson/json, in the client)": 0.375,
        "aiohttp (HTTP client or server)": 0.125,
    }
    assert profile.self_time[0] == ("_run_once (asyncio/base_events.py:1922)", 0.5)
    assert dict(profile.total_time) == {
        "SessionPoller.poll_once (archiver/poller.py)": 0.5,
        "decode_json (archiver/gws/client.py)": 0.375,
    }
    assert "live-daemon: 8 samples" in profile.text()


@pytest.mark.postgres
def test_tiny_bench_against_postgresql_archives_exactly(tmp_path: Path) -> None:
    """`bench --postgres`: the daemon's ingest and live archives, in PostgreSQL, equal the truth."""
    argv = ["bench", "--tiny", "--postgres", "--no-peers", "--workdir", str(tmp_path)]
    assert main([*argv, "--scenario", "ingest"]) == 0
    report = orjson.loads((tmp_path / "report.json").read_bytes())
    assert report["command"] == "gws-archiver bench --scenario ingest --tiny --no-peers --postgres"
    ingest = report["scenarios"]["ingest"]
    assert ingest["missing"] == ingest["extra"] == 0
    assert ingest["messages"] == len(read_truth(tmp_path / "ingest-truth.jsonl"))
    assert main([*argv, "--scenario", "live"]) == 0
    live = orjson.loads((tmp_path / "report.json").read_bytes())["scenarios"]["live"]
    assert live["missing"] == live["extra"] == 0
    assert live["messages"] == len(read_truth(tmp_path / "live-truth.jsonl")) > 0
    assert not list(tmp_path.glob("*-archive.sqlite3"))  # the daemon's archives were elsewhere
