"""Read-only access to the archive, safe beside the running writer (WAL, separate connection)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import aiosqlite

from archiver.errors import StoreError
from archiver.events import Event, event_from_row
from archiver.lifecycle import Resource
from archiver.store.db import connect_async


class ArchiveReader(Resource):
    """A read-only connection to an archive file; an async context manager."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: aiosqlite.Connection | None = None
        self._closed = False

    async def open(self) -> None:
        """Open the archive read-only; it must exist."""
        if self._closed:
            raise StoreError("the archive reader is closed")
        if not self.path.exists():
            raise StoreError(f"no archive at {self.path}")
        try:
            self._conn = await connect_async(self.path)
        except Exception as exc:
            raise StoreError(f"cannot open the archive {self.path}: {exc}") from exc

    async def close(self) -> None:
        """Close the connection; safe to call twice."""
        self._closed = True
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    @property
    def conn(self) -> aiosqlite.Connection:
        """The open connection (raises if closed)."""
        if self._conn is None:
            raise StoreError("the archive reader is not open")
        return self._conn

    async def events_after(
        self,
        seq: int,
        *,
        limit: int = 500,
        types: Sequence[str] = (),
        session_id: str | None = None,
    ) -> list[Event]:
        """Committed events with ``seq`` greater than ``seq``, oldest first."""
        where, params = _event_conditions(types, session_id)
        sql = f"{_EVENT_SELECT} WHERE seq > ? {where} ORDER BY seq LIMIT ?"
        async with self.conn.execute(sql, [seq, *params, limit]) as cursor:
            return [event_from_row(*row) for row in await cursor.fetchall()]

    async def last_events(
        self, limit: int, *, types: Sequence[str] = (), session_id: str | None = None
    ) -> list[Event]:
        """The newest ``limit`` committed events (matching the filters), oldest first."""
        where, params = _event_conditions(types, session_id)
        sql = f"{_EVENT_SELECT} WHERE 1 {where} ORDER BY seq DESC LIMIT ?"
        async with self.conn.execute(sql, [*params, limit]) as cursor:
            rows = await cursor.fetchall()
        return [event_from_row(*row) for row in reversed(list(rows))]

    async def last_seq(self) -> int:
        """The newest committed event's ``seq`` (0 for an empty archive)."""
        async with self.conn.execute("SELECT coalesce(max(seq), 0) FROM events") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0


_EVENT_SELECT = "SELECT seq, event_id, type, session_id, occurred_at, payload_json FROM events"


def _event_conditions(types: Sequence[str], session_id: str | None) -> tuple[str, list[object]]:
    """Extra ``AND`` conditions (and their parameters) on the events table."""
    sql = ""
    params: list[object] = []
    if types:
        sql += f" AND type IN ({','.join('?' * len(types))})"
        params.extend(types)
    if session_id is not None:
        sql += " AND session_id = ?"
        params.append(session_id)
    return sql, params
