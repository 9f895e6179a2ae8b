"""Read-only access to the archive, safe beside the running writer (WAL, separate connection).

A PostgreSQL archive is read through an asynchronous psycopg connection whose transactions
are read-only; a broken one is opened again on the next read (see PgAsyncConnection).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from archiver.errors import StoreError
from archiver.events import Event, event_from_row
from archiver.lifecycle import Resource
from archiver.store import postgres
from archiver.store.db import ArchiveLocation, ReadConnection, connect_async


class ArchiveReader(Resource):
    """A read-only connection to an archive; an async context manager."""

    def __init__(self, path: ArchiveLocation) -> None:
        self.path = path
        self._conn: ReadConnection | None = None
        self._closed = False

    async def open(self) -> None:
        """Open the archive read-only; it must exist."""
        if self._closed:
            raise StoreError("the archive reader is closed")
        if isinstance(self.path, Path) and not self.path.exists():
            raise StoreError(f"no archive at {self.path}")
        try:
            self._conn = await self._connect()
        except Exception as exc:
            raise StoreError(f"cannot open the archive {self.path}: {exc}") from exc

    async def _connect(self) -> ReadConnection:
        if isinstance(self.path, Path):
            return await connect_async(self.path)
        return await postgres.connect_async(self.path)

    async def close(self) -> None:
        """Close the connection; safe to call twice."""
        self._closed = True
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    @property
    def conn(self) -> ReadConnection:
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
        rows = await self.conn.execute_fetchall(sql, [seq, *params, limit])
        return [event_from_row(*row) for row in rows]

    async def last_events(
        self, limit: int, *, types: Sequence[str] = (), session_id: str | None = None
    ) -> list[Event]:
        """The newest ``limit`` committed events (matching the filters), oldest first."""
        where, params = _event_conditions(types, session_id)
        sql = f"{_EVENT_SELECT} WHERE TRUE {where} ORDER BY seq DESC LIMIT ?"
        rows = await self.conn.execute_fetchall(sql, [*params, limit])
        return [event_from_row(*row) for row in reversed(list(rows))]

    async def last_seq(self) -> int:
        """The newest committed event's ``seq`` (0 for an empty archive)."""
        rows = await self.conn.execute_fetchall("SELECT coalesce(max(seq), 0) FROM events")
        return int(next(iter(rows))[0])


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
