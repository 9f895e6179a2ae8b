"""Retention: purge ended sessions older than ``retain_days``; legal hold exempts a session.

A purge deletes, for each expired session, its undelivered hook deliveries, its messages (their
search rows go with them, by trigger), events, conflicts and malformed payloads, then the
session row itself, leaving a tombstone in ``purged_sessions`` so that a session GWS still lists
is not archived (and its events sent) again. It runs on its own write connection in short
``BEGIN IMMEDIATE`` transactions of at most ``batch`` rows, so the daemon's writer never waits
longer than one small batch. Every batch re-checks, inside its transaction, that the session is
still expired and not under legal hold: a hold placed while a purge runs stops it for that
session at the next batch.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from archiver.errors import StoreError
from archiver.gws.models import format_instant
from archiver.store.db import connect
from archiver.store.migrate import migrate

T = TypeVar("T")

# Sessions picked per round; their rows are then deleted ``batch`` at a time.
SESSIONS_PER_ROUND = 50
# Undelivered hook deliveries of purged events go first: nothing could deliver them any more.
_CHILD_TABLES = ("hook_deliveries", "messages", "events", "conflicts", "malformed")
_EXPIRED = "s.ended_at IS NOT NULL AND s.ended_at < ? AND s.legal_hold = 0"


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """How many rows one purge deleted (search rows go with their messages)."""

    sessions: int = 0
    hook_deliveries: int = 0
    messages: int = 0
    events: int = 0
    conflicts: int = 0
    malformed: int = 0


async def purge_expired(
    path: Path, retain_days: float, *, batch: int = 500, now: datetime | None = None
) -> PurgeResult:
    """Delete every ended session whose ``ended_at`` is more than ``retain_days`` before now."""
    cutoff = format_instant((now or datetime.now(UTC)) - timedelta(days=retain_days))
    counts = dict.fromkeys(("sessions", *_CHILD_TABLES), 0)
    async with _Connection(path) as conn:
        while True:
            expired = await conn.run(_expired_sessions, cutoff)
            deleted = 0
            for table in _CHILD_TABLES:
                while rows := await conn.run(_delete_rows, table, expired, cutoff, batch):
                    counts[table] += rows
                    deleted += rows
            sessions = await conn.run(_delete_sessions, expired, cutoff)
            counts["sessions"] += sessions
            # A round that deleted nothing would repeat forever (rows the writer keeps adding).
            if len(expired) < SESSIONS_PER_ROUND or deleted + sessions == 0:
                break
    return PurgeResult(**counts)


async def set_legal_hold(path: Path, session_id: str, *, held: bool) -> bool:
    """Place (or lift) a legal hold on a session; False if the archive does not hold it."""
    async with _Connection(path) as conn:
        return await conn.run(_set_hold, session_id, held)


class _Connection:
    """A write connection of its own, used from one worker thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="archive-retention")
        self._conn: sqlite3.Connection | None = None

    async def __aenter__(self) -> _Connection:
        try:
            self._conn = await self._call(_connect, self.path)
        except BaseException:
            self._executor.shutdown(wait=True)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self._conn is not None:
                await self._call(self._conn.close)
        finally:
            self._executor.shutdown(wait=True)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(conn, *args)`` on the worker thread."""
        if self._conn is None:
            raise StoreError("the retention connection is not open")
        try:
            return await self._call(fn, self._conn, *args)
        except sqlite3.Error as exc:
            raise StoreError(f"retention failed on {self.path}: {exc}") from exc

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)


def _connect(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise StoreError(f"no archive at {path}")
    try:
        conn = connect(path, threaded=True)
        migrate(conn)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the archive {path}: {exc}") from exc
    return conn


def _write(conn: sqlite3.Connection, sql: str, params: list[object]) -> int:
    """One statement in its own short write transaction; the number of rows it changed."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        changed = conn.execute(sql, params).rowcount
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise StoreError(f"retention failed: {exc}") from exc
    return changed


def _expired_sessions(conn: sqlite3.Connection, cutoff: str) -> list[str]:
    rows = conn.execute(
        f"SELECT s.session_id FROM sessions s WHERE {_EXPIRED}"
        " ORDER BY s.ended_at, s.session_id LIMIT ?",
        (cutoff, SESSIONS_PER_ROUND),
    )
    return [row[0] for row in rows]


def _delete_rows(
    conn: sqlite3.Connection, table: str, session_ids: list[str], cutoff: str, batch: int
) -> int:
    if not session_ids:
        return 0
    marks = ",".join("?" * len(session_ids))
    return _write(
        conn,
        f"DELETE FROM {table} WHERE rowid IN ("
        f" SELECT t.rowid FROM {table} t JOIN sessions s ON s.session_id = t.session_id"
        f" WHERE t.session_id IN ({marks}) AND {_EXPIRED} LIMIT ?)",
        [*session_ids, cutoff, batch],
    )


def _delete_sessions(conn: sqlite3.Connection, session_ids: list[str], cutoff: str) -> int:
    """Delete the emptied session rows, leaving a tombstone each: GWS may still list them."""
    if not session_ids:
        return 0
    marks = ",".join("?" * len(session_ids))
    emptied = (
        f"s.session_id IN ({marks}) AND {_EXPIRED}"
        " AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.session_id = s.session_id)"
    )
    params = [*session_ids, cutoff]
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT OR IGNORE INTO purged_sessions (session_id, purged_at)"
            f" SELECT s.session_id, ? FROM sessions s WHERE {emptied}",
            [format_instant(datetime.now(UTC)), *params],
        )
        changed = conn.execute(f"DELETE FROM sessions AS s WHERE {emptied}", params).rowcount
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise StoreError(f"retention failed: {exc}") from exc
    return int(changed)


def _set_hold(conn: sqlite3.Connection, session_id: str, held: bool) -> bool:
    changed = _write(
        conn, "UPDATE sessions SET legal_hold = ? WHERE session_id = ?", [int(held), session_id]
    )
    return changed == 1
