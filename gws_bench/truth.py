"""The archive checked against the simulator's truth file: exactness and freshness.

The truth file has one JSON line per message the simulator created, with its `created_at`;
the archive stamps every message with `archived_at`, taken as its page's transaction begins.
Both are UTC with milliseconds, from the same machine clock. `check_archive` reads the
daemon's archive; `compare` takes rows from any archiver (the plain peers' files, too).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from archiver.store.db import ArchiveLocation, connect

Key = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Check:
    """How an archive compares with the truth, and how fresh its messages were."""

    created: int
    archived: int
    missing: int
    missing_sessions: int  # sessions with at least one message missing
    extra: int
    duplicated_events: int
    freshness_s: list[float]  # archived_at - created_at, sorted, for the messages measured
    discovery_s: list[float]  # first_seen_at - first message's created_at, sorted, per session

    @property
    def exact(self) -> bool:
        """Every created message archived once, with its content, and nothing else."""
        return not (self.missing or self.extra or self.duplicated_events)


def epoch_s(instant: str) -> float:
    """Seconds since the epoch of an ISO-8601 instant such as `2026-01-02T03:04:05.678Z`."""
    return datetime.fromisoformat(instant).timestamp()


def read_truth(path: Path) -> list[dict[str, Any]]:
    """The truth records of a simulator run, in creation order."""
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]


def truth_key(record: dict[str, Any]) -> Key:
    """What the archive must hold for one truth record."""
    return (
        record["session_id"],
        record["index"],
        record["type"],
        record["text"],
        record["visibility"],
    )


def check_archive(
    archive: ArchiveLocation, truth: Sequence[dict[str, Any]], *, fresh_after_s: float | None = None
) -> Check:
    """Compare the daemon's archive and the truth (see `compare`), events included."""
    conn = connect(archive, read_only=True)
    try:
        rows = conn.execute(
            "SELECT session_id, message_index, type,"
            " CASE WHEN type = 'PushUrl' THEN url ELSE text END, visibility, archived_at"
            " FROM messages"
        ).fetchall()
        first_seen = dict(conn.execute("SELECT session_id, first_seen_at FROM sessions"))
        duplicated = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM events WHERE message_index IS NOT NULL"
            " GROUP BY session_id, message_index HAVING count(*) > 1) AS repeated"
        ).fetchone()[0]
    finally:
        conn.close()
    return compare(
        rows,
        truth,
        first_seen=first_seen,
        duplicated_events=duplicated,
        fresh_after_s=fresh_after_s,
    )


def compare(
    rows: Sequence[Key],
    truth: Sequence[dict[str, Any]],
    *,
    first_seen: dict[str, str] | None = None,
    duplicated_events: int = 0,
    fresh_after_s: float | None = None,
) -> Check:
    """Compare archived rows, `truth_key` fields then `archived_at`, with the truth.

    For messages created after `fresh_after_s`, also their freshness, and for sessions whose
    first message came after it, how long the archiver took to find them (`first_seen`, when
    it records that: session id -> first_seen_at).
    """
    first_seen = first_seen or {}
    archived_at = {tuple(row[:5]): row[5] for row in rows}
    expected = Counter(truth_key(record) for record in truth)
    actual = Counter(tuple(row[:5]) for row in rows)
    missing = expected - actual
    freshness, discovery = [], []
    if fresh_after_s is not None:
        opened: set[str] = set()
        for record in truth:
            created = epoch_s(record["created_at"])
            session_id = record["session_id"]
            first = session_id not in opened
            opened.add(session_id)
            if created < fresh_after_s:
                continue
            stored = archived_at.get(truth_key(record))
            if stored is not None:
                freshness.append(epoch_s(stored) - created)
            if first and session_id in first_seen:
                discovery.append(epoch_s(first_seen[session_id]) - created)
    freshness.sort()
    discovery.sort()
    return Check(
        created=len(truth),
        archived=len(rows),
        missing=sum(missing.values()),
        missing_sessions=len({key[0] for key in missing}),
        extra=sum((actual - expected).values()),
        duplicated_events=int(duplicated_events),
        freshness_s=freshness,
        discovery_s=discovery,
    )


def percentile(ordered: Sequence[float], share: float) -> float:
    """The `share` quantile (0..1) of sorted values, nearest rank; 0 when there are none."""
    if not ordered:
        return 0.0
    rank = min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))
    return ordered[rank]


class ArchiveProbe:
    """Cheap reads of an archive the daemon is writing: how many messages, and since when."""

    def __init__(self, archive: ArchiveLocation) -> None:
        self._conn = connect(archive, read_only=True)

    def close(self) -> None:
        """Close the read connection."""
        self._conn.close()

    def message_count(self) -> int:
        """Messages archived so far (rowids grow by one per insert and nothing is deleted)."""
        row = self._conn.execute("SELECT max(rowid) FROM messages").fetchone()
        return int(row[0] or 0)

    def last_archived_s(self) -> float:
        """The newest `archived_at`, as epoch seconds."""
        row = self._conn.execute("SELECT max(archived_at) FROM messages").fetchone()
        return epoch_s(row[0])
