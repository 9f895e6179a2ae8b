"""The bench's plain peers archive exactly what the simulator created (against its truth)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from gws_bench.peers.harness import LivePeerProcess, check_peer_archive, run_ingest_peer
from gws_bench.processes import SimulatorProcess
from gws_bench.truth import ArchiveProbe, read_truth

START_TIMEOUT_S = 30.0


def test_ingest_peer_archives_the_backlog_exactly(tmp_path: Path) -> None:
    """The sync peer reads every log page by page (23 messages, pages of 10): nothing lost."""
    truth_path = tmp_path / "truth.jsonl"
    options = ["--agents", "2", "--sessions", "0", "--backlog", "6:23"]
    with SimulatorProcess(options, truth_path, tmp_path / "simulator.log") as simulator:
        base_url = simulator.wait_ready(START_TIMEOUT_S)
        truth = read_truth(truth_path)
        result = run_ingest_peer(base_url, 2, 10, tmp_path / "peer.sqlite3", truth, 60.0)
        requests = simulator.stats()["total_requests"]
    assert len(truth) == 6 * 23
    assert result.check.exact, result.check
    assert (result.messages, result.check.archived) == (len(truth), len(truth))
    # Two lists, then three pages per log (10, 10, 3): one log at a time, no re-reads.
    assert result.requests == requests == 2 + 6 * 3


def test_live_peer_archives_a_live_scenario_exactly(tmp_path: Path) -> None:
    """The asyncio peer follows sessions that talk, end and vanish: every message, once."""
    truth_path = tmp_path / "truth.jsonl"
    archive = tmp_path / "peer.sqlite3"
    options = ["--agents", "2", "--concurrent", "4", "--interval", "0.1"]
    options += ["--messages", "3-6", "--linger", "1"]
    with SimulatorProcess(options, truth_path, tmp_path / "simulator.log") as simulator:
        base_url = simulator.wait_ready(START_TIMEOUT_S)
        peer = LivePeerProcess(
            base_url, 2, archive, interval_s=0.2, list_interval_s=0.2, page_size=500
        )
        with peer:
            started_s = peer.wait_started(START_TIMEOUT_S)
            time.sleep(3.0)
            created = simulator.stop_scenario()["messages"]
            _wait_for_count(archive, created, peer)
        failures = peer.failures()
    truth = read_truth(truth_path)
    check = check_peer_archive(archive, truth, fresh_after_s=started_s)
    ended = {record["session_id"] for record in truth if record["type"] == "TranscriptSaveDone"}
    assert ended, "no session ended during the run: the test would not cover endings"
    assert check.exact, check
    assert check.archived == len(truth) == created
    assert check.freshness_s, "no message created after peer_started was measured"
    assert failures == 0


def test_a_message_the_peer_did_not_keep_counts_as_missing(tmp_path: Path) -> None:
    """The peers' check fails when a row is lost or altered (so the two tests above can fail)."""
    truth_path = tmp_path / "truth.jsonl"
    archive = tmp_path / "peer.sqlite3"
    options = ["--agents", "1", "--sessions", "0", "--backlog", "2:5"]
    with SimulatorProcess(options, truth_path, tmp_path / "simulator.log") as simulator:
        base_url = simulator.wait_ready(START_TIMEOUT_S)
        truth = read_truth(truth_path)
        run_ingest_peer(base_url, 1, 500, archive, truth, 60.0)
    with sqlite3.connect(archive) as conn:
        conn.execute("DELETE FROM messages WHERE message_index = 1")
        conn.execute("UPDATE messages SET text = 'changed' WHERE message_index = 2")
    conn.close()
    check = check_peer_archive(archive, truth)
    assert (check.missing, check.extra, check.missing_sessions) == (4, 2, 2)
    assert not check.exact


def _wait_for_count(archive: Path, expected: int, peer: LivePeerProcess) -> None:
    """Wait until the peer's file holds `expected` messages (the test fails after 30 s)."""
    deadline = time.monotonic() + 30.0
    probe = ArchiveProbe(archive)
    try:
        while probe.message_count() < expected:
            peer.check_alive()
            assert time.monotonic() < deadline, f"{probe.message_count()} of {expected} stored"
            time.sleep(0.05)
    finally:
        probe.close()
