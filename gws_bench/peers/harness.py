"""The plain peers as the scenarios run them: child processes, their summaries, their files.

`run_ingest_peer` runs the ingest peer to the end against a simulator already serving its
backlog; `LivePeerProcess` starts the live peer, which polls until it is stopped. Either
file is checked against the simulator's truth by `check_peer_archive`, with the same
comparison (and freshness) as the daemon's archive.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gws_bench.processes import PASSWORD, BenchError, ChildProcess
from gws_bench.truth import Check, compare

INGEST_MODULE = "gws_bench.peers.ingest_peer"
LIVE_MODULE = "gws_bench.peers.live_peer"
_STARTED = re.compile(r'^\{"event": "peer_started".*$', re.MULTILINE)
_ROWS = "SELECT session_id, message_index, type, text, visibility, archived_at FROM messages"


@dataclass(frozen=True, slots=True)
class IngestPeerResult:
    """One ingest peer run: messages stored, requests, wall and CPU seconds, the check."""

    messages: int
    requests: int
    elapsed_s: float
    cpu_s: float
    check: Check

    @property
    def rate(self) -> float:
        """Messages per second."""
        return self.messages / self.elapsed_s if self.elapsed_s else 0.0


def run_ingest_peer(
    base_url: str,
    agents: int,
    page_size: int,
    archive: Path,
    truth: Sequence[dict[str, Any]],
    timeout_s: float,
) -> IngestPeerResult:
    """Run the ingest peer until it has read every log once; its figures and its check."""
    _remove(archive)
    log_path = archive.with_suffix(".log")
    args = [base_url, str(archive), "--agents", str(agents), "--page-size", str(page_size)]
    args += ["--password", PASSWORD]
    with ChildProcess(args, log_path, module=INGEST_MODULE) as peer:
        code = peer.wait_exit(timeout_s)
    lines = log_path.read_text(errors="replace").splitlines()
    if code != 0 or not lines:
        raise BenchError(f"the ingest peer exited with {code}: {' '.join(lines[-20:])}")
    summary = json.loads(lines[-1])
    return IngestPeerResult(
        messages=int(summary["messages"]),
        requests=int(summary["requests"]),
        elapsed_s=float(summary["elapsed_s"]),
        cpu_s=float(summary["cpu_s"]),
        check=check_peer_archive(archive, truth),
    )


class LivePeerProcess(ChildProcess):
    """The live peer polling every `interval_s`, re-reading lists every `list_interval_s`."""

    def __init__(
        self,
        base_url: str,
        agents: int,
        archive: Path,
        *,
        interval_s: float,
        list_interval_s: float,
        page_size: int,
    ) -> None:
        _remove(archive)
        args = [base_url, str(archive), "--agents", str(agents), "--password", PASSWORD]
        args += ["--interval", f"{interval_s:g}", "--list-interval", f"{list_interval_s:g}"]
        args += ["--page-size", str(page_size)]
        super().__init__(args, archive.with_suffix(".log"), module=LIVE_MODULE)

    def wait_started(self, timeout_s: float) -> float:
        """Wait for `peer_started` (archive open, nothing read); its wall-clock time."""
        line = self.wait_for_log(_STARTED, timeout_s)
        return float(json.loads(line.group(0))["at"])

    def failures(self) -> int:
        """Failed requests the peer reported when it stopped (0 before it has)."""
        for line in reversed(self.log_path.read_text(errors="replace").splitlines()):
            if line.startswith('{"event": "peer_stopped"'):
                return int(json.loads(line)["failures"])
        return 0


def check_peer_archive(
    archive: Path, truth: Sequence[dict[str, Any]], *, fresh_after_s: float | None = None
) -> Check:
    """Compare a peer's file with the truth (its primary key leaves no room for duplicates)."""
    conn = sqlite3.connect(f"file:{archive}?mode=ro", uri=True)
    try:
        rows = conn.execute(_ROWS).fetchall()
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        first_seen = (
            dict(conn.execute("SELECT session_id, first_seen_at FROM sessions"))
            if "sessions" in tables
            else {}
        )
    finally:
        conn.close()
    return compare(rows, truth, first_seen=first_seen, fresh_after_s=fresh_after_s)


def _remove(archive: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{archive}{suffix}").unlink(missing_ok=True)
