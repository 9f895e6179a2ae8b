"""Quick reads of the archive's condition, for readiness, metrics and ``gws-archiver status``.

Each function opens its own short-lived connection and is meant to run in a worker thread
(``asyncio.to_thread``), never on the event loop. None of them writes a row.
"""

from __future__ import annotations

import sqlite3
import statistics
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import psycopg

from archiver.errors import StoreError
from archiver.instants import parse_instant
from archiver.store.db import DATABASE_ERRORS, ArchiveLocation, connect
from archiver.store.postgres import PostgresArchive

WAL_SUFFIX = "-wal"


@dataclass(frozen=True, slots=True)
class ArchiveSummary:
    """How far the archive has got, as ``gws-archiver status`` shows it.

    ``ingest_lag_*`` are over the newest messages that carry a GWS send time: seconds from
    ``sent_at`` (GWS clock) to ``archived_at`` (ours), so clock skew shifts them.
    """

    last_seq: int
    last_archived_at: str | None
    open_sessions: int
    ingest_lag_median_s: float | None
    ingest_lag_max_s: float | None
    lag_sample: int


def archive_bytes(path: ArchiveLocation) -> dict[str, int]:
    """Sizes of the database file and its write-ahead log (0 for a file that is absent).

    A PostgreSQL archive has one size, its database's (``main``).
    """
    if isinstance(path, PostgresArchive):
        try:
            with closing(connect(path)) as conn:
                (size,) = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        except (StoreError, sqlite3.Error, psycopg.Error):
            size = 0
        return {"main": int(size)}
    sizes = {}
    for name, file in (("main", path), ("wal", Path(f"{path}{WAL_SUFFIX}"))):
        try:
            sizes[name] = file.stat().st_size
        except FileNotFoundError:
            sizes[name] = 0
    return sizes


def probe_writable(path: ArchiveLocation, timeout_s: float = 2.0) -> str | None:
    """None if a write transaction can begin on the archive now, else the reason it cannot.

    It takes the write lock (SQLite) or asks whether the server takes writes (PostgreSQL: a
    standby does not) and rolls back at once: nothing is written.
    """
    try:
        with closing(connect(path, busy_timeout_s=timeout_s)) as conn:
            if isinstance(path, PostgresArchive):
                (standby,) = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                return "the archive is not writable: its server is a standby" if standby else None
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
    except StoreError as exc:
        return f"the archive is not writable: {exc}"
    except DATABASE_ERRORS as exc:
        return f"the archive is not writable: {exc}"
    return None


def summarize(path: ArchiveLocation, sample: int = 200) -> ArchiveSummary:
    """The newest event, the open sessions and the recent ingest lag, read-only."""
    try:
        with closing(connect(path, read_only=True)) as conn:
            (last_seq,) = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
            (open_sessions,) = conn.execute(
                "SELECT count(*) FROM sessions WHERE ended_at IS NULL"
            ).fetchone()
            rows = conn.execute(
                "SELECT sent_at, archived_at FROM messages"
                " WHERE rowid > (SELECT coalesce(max(rowid), 0) FROM messages) - ?"
                " ORDER BY rowid",
                (sample,),
            ).fetchall()
    except DATABASE_ERRORS as exc:
        raise StoreError(f"cannot read {path}: {exc}") from exc
    lags = [_seconds_between(sent, archived) for sent, archived in rows if sent]
    return ArchiveSummary(
        last_seq=int(last_seq),
        last_archived_at=rows[-1][1] if rows else None,
        open_sessions=int(open_sessions),
        ingest_lag_median_s=statistics.median(lags) if lags else None,
        ingest_lag_max_s=max(lags) if lags else None,
        lag_sample=len(lags),
    )


def _seconds_between(start: str, end: str) -> float:
    return (parse_instant(end) - parse_instant(start)).total_seconds()
