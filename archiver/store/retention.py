"""Retention: purge ended sessions older than ``retain_days``; legal hold exempts a session.

A purge deletes, for each expired session, its undelivered hook deliveries, its messages (their
search rows go with them, by trigger), events, conflicts, malformed payloads, views and
reconciliation record, then the session row itself, leaving a tombstone in ``purged_sessions``
so that a session GWS still lists is not archived (and its events sent) again. It runs on its
own write connection in short ``BEGIN IMMEDIATE`` transactions of at most ``batch`` rows, so the
daemon's writer never waits longer than one small batch. Every batch re-checks, inside its
transaction, that the session is still expired and not under legal hold: a hold placed while a
purge runs stops it for that session at the next batch. Both commands migrate an archive of an
older schema first: they also run without a daemon.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from archiver.instants import format_instant, utc_now
from archiver.store.db import (
    DEFAULT_BUSY_TIMEOUT_S,
    ArchiveLocation,
    Connection,
    DatabaseThread,
    transaction,
)
from archiver.store.postgres import is_postgres

# Sessions picked per round; their rows are then deleted ``batch`` at a time.
SESSIONS_PER_ROUND = 50
# Undelivered hook deliveries of purged events go first: nothing could deliver them any more.
_CHILD_TABLES = (
    "hook_deliveries",
    "messages",
    "events",
    "conflicts",
    "malformed",
    "session_views",
    "reconciliations",
)
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
    session_views: int = 0
    reconciliations: int = 0


async def purge_expired(
    path: ArchiveLocation,
    retain_days: float,
    *,
    batch: int = 500,
    now: datetime | None = None,
    busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
) -> PurgeResult:
    """Delete every ended session whose ``ended_at`` is more than ``retain_days`` before now."""
    cutoff = format_instant((now or datetime.now(UTC)) - timedelta(days=retain_days))
    counts = dict.fromkeys(("sessions", *_CHILD_TABLES), 0)
    async with _connection(path, busy_timeout_s) as conn:
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


async def set_legal_hold(
    path: ArchiveLocation,
    session_id: str,
    *,
    held: bool,
    busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
) -> bool:
    """Place (or lift) a legal hold on a session; False if the archive does not hold it."""
    async with _connection(path, busy_timeout_s) as conn:
        return await conn.run(_set_hold, session_id, held)


def _connection(path: ArchiveLocation, busy_timeout_s: float) -> DatabaseThread:
    """A write connection of retention's own, to an archive that must exist."""
    return DatabaseThread(
        path,
        name="archive retention",
        busy_timeout_s=busy_timeout_s,
        migrated=True,
        failure=f"retention failed on {path}",
    )


def _write(conn: Connection, sql: str, params: list[object]) -> int:
    """One statement in its own short write transaction; the number of rows it changed."""
    return transaction(conn, lambda db: int(db.execute(sql, params).rowcount))


def _expired_sessions(conn: Connection, cutoff: str) -> list[str]:
    rows = conn.execute(
        f"SELECT s.session_id FROM sessions s WHERE {_EXPIRED}"
        " ORDER BY s.ended_at, s.session_id LIMIT ?",
        (cutoff, SESSIONS_PER_ROUND),
    )
    return [row[0] for row in rows]


def _delete_rows(
    conn: Connection, table: str, session_ids: list[str], cutoff: str, batch: int
) -> int:
    if not session_ids:
        return 0
    marks = ",".join("?" * len(session_ids))
    rowid = "ctid" if is_postgres(conn) else "rowid"
    return _write(
        conn,
        f"DELETE FROM {table} WHERE {rowid} IN ("
        f" SELECT t.{rowid} FROM {table} t JOIN sessions s ON s.session_id = t.session_id"
        f" WHERE t.session_id IN ({marks}) AND {_EXPIRED} LIMIT ?)",
        [*session_ids, cutoff, batch],
    )


def _delete_sessions(conn: Connection, session_ids: list[str], cutoff: str) -> int:
    """Delete the emptied session rows, leaving a tombstone each: GWS may still list them."""
    if not session_ids:
        return 0
    marks = ",".join("?" * len(session_ids))
    emptied = (
        f"s.session_id IN ({marks}) AND {_EXPIRED}"
        " AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.session_id = s.session_id)"
    )
    params = [*session_ids, cutoff]

    def tombstone_and_delete(db: Connection) -> int:
        db.execute(
            "INSERT INTO purged_sessions (session_id, purged_at)"
            f" SELECT s.session_id, ? FROM sessions s WHERE {emptied} ON CONFLICT DO NOTHING",
            [utc_now(), *params],
        )
        return int(db.execute(f"DELETE FROM sessions AS s WHERE {emptied}", params).rowcount)

    return transaction(conn, tombstone_and_delete)


def _set_hold(conn: Connection, session_id: str, held: bool) -> bool:
    changed = _write(
        conn, "UPDATE sessions SET legal_hold = ? WHERE session_id = ?", [int(held), session_id]
    )
    return changed == 1
