"""Hook delivery state: each subscriber's cursor over the events table, and its delivery queue.

The only code that touches ``hook_subscribers`` and ``hook_deliveries`` (migration 003). It has a
connection of its own, on a thread of its own (a :class:`DatabaseThread`), and every method is
one short transaction: the archive writer never waits for a subscriber, only, at worst, for one
of these to commit.

A subscriber's cursor means: every event up to it is queued in ``hook_deliveries``, delivered, or
filtered out. Queueing events and advancing the cursor happen in one transaction, so a crash can
neither skip an event nor queue it twice; a delivered event's row is deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import orjson

from archiver.config import HookFilters
from archiver.errors import StoreError
from archiver.events import Event, event_from_row
from archiver.instants import from_epoch, to_epoch, utc_now
from archiver.lifecycle import Resource
from archiver.store.db import (
    DATABASE_ERRORS,
    DEFAULT_BUSY_TIMEOUT_S,
    ArchiveLocation,
    Connection,
    DatabaseThread,
    has_table,
    transaction,
)
from archiver.store.postgres import is_postgres

T = TypeVar("T")

PENDING, DEAD = "pending", "dead"


@dataclass(slots=True)
class QueuedDelivery:
    """One pending delivery; the dispatcher updates ``attempts`` and ``due_at`` in memory."""

    row_id: int
    event: Event
    attempts: int
    due_at: float  # epoch seconds; 0 when due at once


@dataclass(frozen=True, slots=True)
class Settled:
    """The outcome of one attempt, to be recorded: delivered, to retry at ``due_at``, or dead."""

    row_id: int
    result: Literal["delivered", "retry", "dead"]
    attempts: int
    at: float
    due_at: float | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class SubscriberStatus:
    """A subscriber's row plus its queue, as ``hooks status`` shows it."""

    name: str
    kind: str
    cursor_seq: int
    filters: HookFilters
    disabled_at: str | None
    disabled_reason: str | None
    delivered: int
    failed_attempts: int
    last_error: str | None
    last_error_at: str | None
    last_delivered_at: str | None
    pending: int
    dead: int
    unscanned: int  # events after the cursor (an upper bound: filters are not applied)

    @property
    def lag(self) -> int:
        """Events not yet delivered: queued ones plus those after the cursor."""
        return self.pending + self.unscanned


class DeliveryStore(Resource):
    """Delivery state in the archive; an async context manager."""

    def __init__(
        self, path: ArchiveLocation, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S
    ) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        self._db = DatabaseThread(
            path, name="delivery store", busy_timeout_s=busy_timeout_s, on_open=self._has_hook_state
        )

    async def open(self) -> None:
        """Open the archive, which must exist and be migrated (the daemon's writer does that)."""
        await self._db.open()

    async def close(self) -> None:
        """Close the connection; safe to call twice."""
        await self._db.close()

    async def register(
        self, subscribers: Sequence[tuple[str, str, HookFilters]], start_seq: int
    ) -> dict[str, SubscriberStatus]:
        """Add new subscribers (name, kind, filters) at ``start_seq``; update known ones."""
        return await self._db.run(_register, subscribers, start_seq)

    async def status(self, name: str | None = None) -> list[SubscriberStatus]:
        """Every subscriber's state (or just ``name``'s), by name."""
        return await self._db.run(_status, name)

    async def enqueue(self, name: str, filters: HookFilters, room: int) -> tuple[int, int]:
        """Queue up to ``room`` matching events after the cursor; return (cursor, queued)."""
        return await self._db.run(_enqueue, name, filters, room)

    async def load(self, name: str, after_id: int, limit: int) -> list[QueuedDelivery]:
        """Pending deliveries with a row id above ``after_id``, in queue order."""
        return await self._db.run(_load, name, after_id, limit)

    async def settle(self, name: str, outcomes: Sequence[Settled]) -> None:
        """Record attempt outcomes and the subscriber's counters, in one transaction."""
        await self._db.run(_settle, name, outcomes)

    async def disable(self, name: str, reason: str) -> None:
        """Stop deliveries to ``name`` (its endpoint answered 410 Gone)."""
        await self._db.run(
            _write,
            "UPDATE hook_subscribers SET disabled_at = ?, disabled_reason = ? WHERE name = ?",
            (utc_now(), reason, name),
        )

    async def enable(self, name: str) -> bool:
        """Resume deliveries to ``name``; False if there is no such subscriber."""
        changed = await self._db.run(
            _write,
            "UPDATE hook_subscribers SET disabled_at = NULL, disabled_reason = NULL WHERE name = ?",
            (name,),
        )
        return changed > 0

    async def replay(
        self,
        name: str,
        *,
        since_seq: int | None = None,
        since_time: str | None = None,
        event_id: str | None = None,
    ) -> int:
        """Queue events again for ``name`` (same ids); return how many were queued.

        ``event_id`` picks one event, whatever the filters; ``since_seq`` or ``since_time``
        pick every matching event from there up to the cursor (later ones come anyway).
        """
        return await self._db.run(_replay, name, since_seq, since_time, event_id)

    def _has_hook_state(self, conn: Connection) -> None:
        if not has_table(conn, "hook_deliveries"):
            raise StoreError(
                f"the archive {self.path} has no hook state yet: run the daemon on it once"
            )


def _update(conn: Connection, work: Callable[[Connection], T]) -> T:
    """``work(conn)`` in one short write transaction; an SQLite failure is a StoreError."""
    try:
        return transaction(conn, work)
    except DATABASE_ERRORS as exc:
        raise StoreError(f"hook state update failed: {exc}") from exc


def _write(conn: Connection, sql: str, params: tuple[Any, ...]) -> int:
    return _update(conn, lambda db: int(db.execute(sql, params).rowcount))


def _register(
    conn: Connection, subscribers: Sequence[tuple[str, str, HookFilters]], start_seq: int
) -> dict[str, SubscriberStatus]:
    now = utc_now()
    _update(
        conn,
        lambda db: db.executemany(
            "INSERT INTO hook_subscribers (name, kind, cursor_seq, filters_json, created_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE"
            " SET kind = excluded.kind, filters_json = excluded.filters_json",
            [
                (name, kind, start_seq, _filters_json(filters), now)
                for name, kind, filters in subscribers
            ],
        ),
    )
    names = {name for name, _, _ in subscribers}
    return {s.name: s for s in _status(conn, None) if s.name in names}


def _status(conn: Connection, name: str | None) -> list[SubscriberStatus]:
    sql = (
        "SELECT s.name, s.kind, s.cursor_seq, s.filters_json, s.disabled_at,"
        " s.disabled_reason, s.delivered, s.failed_attempts, s.last_error, s.last_error_at,"
        " s.last_delivered_at,"
        " (SELECT count(*) FROM hook_deliveries d"
        "  WHERE d.subscriber = s.name AND d.status = 'pending'),"
        " (SELECT count(*) FROM hook_deliveries d"
        "  WHERE d.subscriber = s.name AND d.status = 'dead'),"
        " (SELECT coalesce(max(seq), 0) FROM events) - s.cursor_seq"
        " FROM hook_subscribers s"
    )
    params: tuple[str, ...] = ()
    if name is not None:
        sql += " WHERE s.name = ?"
        params = (name,)
    try:
        rows = conn.execute(sql + " ORDER BY s.name", params).fetchall()
    except DATABASE_ERRORS as exc:
        raise StoreError(f"reading hook state failed: {exc}") from exc
    return [
        SubscriberStatus(
            row[0],
            row[1],
            row[2],
            _filters_from_json(row[3]),
            row[4],
            row[5],
            row[6],
            row[7],
            row[8],
            row[9],
            row[10],
            row[11],
            row[12],
            max(0, row[13]),
        )
        for row in rows
    ]


def _enqueue(conn: Connection, name: str, filters: HookFilters, room: int) -> tuple[int, int]:
    where, params = _event_filter(conn, filters)

    def work(db: Connection) -> tuple[int, int]:
        row = db.execute("SELECT cursor_seq FROM hook_subscribers WHERE name = ?", (name,))
        found = row.fetchone()
        if found is None:
            raise StoreError(f"no hook subscriber named {name!r}")
        cursor = int(found[0])
        # The room-th matching event bounds this batch; with fewer, take all committed.
        last = db.execute(
            f"SELECT e.seq FROM events e WHERE e.seq > ? {where} ORDER BY e.seq LIMIT 1 OFFSET ?",
            (cursor, *params, room - 1),
        ).fetchone()
        if last is None:
            last = db.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
        upto = max(cursor, int(last[0]))
        if upto == cursor:
            return cursor, 0
        queued = db.execute(
            "INSERT INTO hook_deliveries (subscriber, seq, session_id, queued_at)"
            f" SELECT ?, e.seq, e.session_id, ? FROM events e"
            f" WHERE e.seq > ? AND e.seq <= ? {where} ORDER BY e.seq ON CONFLICT DO NOTHING",
            (name, utc_now(), cursor, upto, *params),
        ).rowcount
        db.execute("UPDATE hook_subscribers SET cursor_seq = ? WHERE name = ?", (upto, name))
        return upto, queued

    return _update(conn, work)


def _load(conn: Connection, name: str, after_id: int, limit: int) -> list[QueuedDelivery]:
    try:
        rows = conn.execute(
            "SELECT d.id, d.attempts, d.next_attempt_at, e.seq, e.event_id, e.type,"
            " e.session_id, e.occurred_at, e.payload_json"
            " FROM hook_deliveries d JOIN events e ON e.seq = d.seq"
            " WHERE d.subscriber = ? AND d.status = 'pending' AND d.id > ?"
            " ORDER BY d.id LIMIT ?",
            (name, after_id, limit),
        ).fetchall()
    except DATABASE_ERRORS as exc:
        raise StoreError(f"reading the hook queue failed: {exc}") from exc
    return [
        QueuedDelivery(
            row_id=row[0],
            event=event_from_row(*row[3:]),
            attempts=row[1],
            due_at=to_epoch(row[2]) if row[2] else 0.0,
        )
        for row in rows
    ]


def _settle(conn: Connection, name: str, outcomes: Sequence[Settled]) -> None:
    delivered = [o for o in outcomes if o.result == "delivered"]
    failed = [o for o in outcomes if o.result != "delivered"]

    def work(db: Connection) -> None:
        db.executemany("DELETE FROM hook_deliveries WHERE id = ?", [(o.row_id,) for o in delivered])
        db.executemany(
            "UPDATE hook_deliveries SET status = ?, attempts = ?, next_attempt_at = ?,"
            " last_attempt_at = ?, last_error = ? WHERE id = ?",
            [
                (
                    DEAD if o.result == "dead" else PENDING,
                    o.attempts,
                    None if o.due_at is None else from_epoch(o.due_at),
                    from_epoch(o.at),
                    o.error,
                    o.row_id,
                )
                for o in failed
            ],
        )
        db.execute(
            "UPDATE hook_subscribers SET delivered = delivered + ?,"
            " failed_attempts = failed_attempts + ?,"
            " last_delivered_at = coalesce(?, last_delivered_at),"
            " last_error = coalesce(?, last_error), last_error_at = coalesce(?, last_error_at)"
            " WHERE name = ?",
            (
                len(delivered),
                len(failed),
                from_epoch(delivered[-1].at) if delivered else None,
                failed[-1].error if failed else None,
                from_epoch(failed[-1].at) if failed else None,
                name,
            ),
        )

    _update(conn, work)


def _replay(
    conn: Connection,
    name: str,
    since_seq: int | None,
    since_time: str | None,
    event_id: str | None,
) -> int:
    def work(db: Connection) -> int:
        found = db.execute(
            "SELECT cursor_seq, filters_json FROM hook_subscribers WHERE name = ?", (name,)
        ).fetchone()
        if found is None:
            raise StoreError(f"no hook subscriber named {name!r}")
        params: list[object]
        if event_id is not None:
            where, params = "e.event_id = ?", [event_id]
        else:
            extra, params = _event_filter(db, _filters_from_json(found[1]))
            column = "e.seq" if since_seq is not None else "e.occurred_at"
            where = f"{column} >= ? AND e.seq <= ? {extra}"
            params = [since_seq if since_seq is not None else since_time, found[0], *params]
        # A dead letter is queued afresh; an event still pending is left where it is.
        db.execute(
            "DELETE FROM hook_deliveries WHERE subscriber = ? AND status = 'dead'"
            f" AND seq IN (SELECT e.seq FROM events e WHERE {where})",
            (name, *params),
        )
        return int(
            db.execute(
                "INSERT INTO hook_deliveries (subscriber, seq, session_id, queued_at)"
                f" SELECT ?, e.seq, e.session_id, ? FROM events e WHERE {where}"
                " ORDER BY e.seq ON CONFLICT DO NOTHING",
                (name, utc_now(), *params),
            ).rowcount
        )

    return _update(conn, work)


def _event_filter(conn: Connection, filters: HookFilters) -> tuple[str, list[object]]:
    """Extra ``AND`` conditions on ``events e`` for a subscriber's filters."""
    sql = ""
    params: list[object] = []
    if is_postgres(conn):
        account = "(e.payload_json::jsonb ->> 'account')"
    else:
        account = "json_extract(e.payload_json, '$.account')"
    for column, values in (
        ("e.type", filters.types),
        ("e.session_id", filters.sessions),
        (account, filters.accounts),
    ):
        if values:
            sql += f" AND {column} IN ({','.join('?' * len(values))})"
            params.extend(values)
    return sql, params


def _filters_json(filters: HookFilters) -> str:
    return orjson.dumps(
        {"types": filters.types, "accounts": filters.accounts, "sessions": filters.sessions}
    ).decode()


def _filters_from_json(text: str) -> HookFilters:
    data = orjson.loads(text)
    return HookFilters(
        types=tuple(data.get("types", ())),
        accounts=tuple(data.get("accounts", ())),
        sessions=tuple(data.get("sessions", ())),
    )
