"""Read-only SQL over the archive: sessions, transcripts, full-text search, export pages, stats.

Every function takes an open read-only ReadConnection and runs short statements: long
listings are read in keyset pages, so no read transaction stays open while the caller works
and the writer's WAL checkpoints are never held back for long.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from archiver.errors import StoreError
from archiver.instants import format_instant
from archiver.store.db import DATABASE_ERRORS, ReadConnection
from archiver.store.postgres import is_postgres

# The schema version the read side needs (views and reconciliation arrive in 006).
READ_SCHEMA_VERSION = 6
# Typing previews repeat the words of the message that follows; search skips them by default.
TYPING_TYPES = ("TypingStarted", "TypingStopped")
MESSAGE_COLUMNS = (
    "session_id",
    "message_index",
    "type",
    "text",
    "url",
    "from_type",
    "from_nickname",
    "from_participant_id",
    "visibility",
    "sent_at",
    "raw_json",
    "archived_at",
)
MESSAGE_SELECT = ", ".join(f"m.{name}" for name in MESSAGE_COLUMNS)
_SESSION_COLUMNS = (
    "s.session_id, s.account, s.state, s.participants_json, s.user_data_json,"
    " s.first_seen_at, s.last_seen_at, s.ended_at, s.legal_hold, s.tail,"
    " (SELECT r.status FROM reconciliations r WHERE r.session_id = s.session_id)"
    " AS reconciliation,"
)
_ACCOUNTS = (
    " FROM (SELECT account, min(serial) AS first"
    "  FROM session_views WHERE session_id = s.session_id GROUP BY account ORDER BY first) v)"
    " AS accounts"
)
_SESSION_SELECT = f"{_SESSION_COLUMNS} (SELECT json_group_array(v.account){_ACCOUNTS}"
_PG_SESSION_SELECT = (
    f"{_SESSION_COLUMNS} (SELECT coalesce(json_agg(v.account ORDER BY v.first), '[]')::text"
    f"{_ACCOUNTS}"
)


class InvalidQueryError(StoreError):
    """Raised when a full-text search query is not valid FTS5 syntax."""


@dataclass(frozen=True, slots=True)
class SessionFilter:
    """Which sessions a query covers; a field left empty matches every session.

    ``since``/``until`` keep sessions with a message sent in ``[since, until)`` (for search,
    the matching message itself must be in that window); ``participant`` is a nickname,
    compared without regard to case, among the session's participants or message senders.
    """

    account: str | None = None
    state: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    participant: str | None = None
    held: bool | None = None
    session_ids: tuple[str, ...] = ()
    ended: bool | None = None  # True: ended sessions only; False: those not ended yet


@dataclass(frozen=True, slots=True)
class ArchivedMessage:
    """One row of the ``messages`` table, column for column."""

    session_id: str
    message_index: int
    type: str
    text: str | None
    url: str | None
    from_type: str | None
    from_nickname: str | None
    from_participant_id: str | None
    visibility: str | None
    sent_at: str | None
    raw_json: str
    archived_at: str

    @property
    def agents_only(self) -> bool:
        """True if only agents could see this message (GWS ``visibility: Agents``)."""
        return self.visibility == "Agents"

    def to_json(self) -> dict[str, Any]:
        """The row as a JSON object (the export format; ``raw_json`` stays a string)."""
        return {name: getattr(self, name) for name in MESSAGE_COLUMNS}


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A ``sessions`` row plus what its messages say about it."""

    session_id: str
    account: str
    state: str | None
    participants: list[Any]
    user_data: dict[str, Any]
    first_seen_at: str
    last_seen_at: str
    ended_at: str | None
    legal_hold: bool
    message_count: int
    first_message_at: str | None
    last_message_at: str | None
    tail: str | None = None  # how the end of its log is known: drained, unverified, history
    reconciliation: str | None = None  # the check against Interaction History (README)
    accounts: tuple[str, ...] = ()  # every configured account that saw it, in order

    @property
    def nicknames(self) -> list[str]:
        """The participants' nicknames, in GWS order."""
        return [
            str(p["nickname"]) for p in self.participants if isinstance(p, dict) and "nickname" in p
        ]

    def to_json(self) -> dict[str, Any]:
        """The session as a JSON object."""
        return {
            "session_id": self.session_id,
            "account": self.account,
            "state": self.state,
            "participants": self.participants,
            "user_data": self.user_data,
            "first_seen_at": self.first_seen_at,
            "last_seen_at": self.last_seen_at,
            "ended_at": self.ended_at,
            "legal_hold": self.legal_hold,
            "message_count": self.message_count,
            "first_message_at": self.first_message_at,
            "last_message_at": self.last_message_at,
            "accounts": list(self.accounts),
            "tail": self.tail,
            "reconciliation": self.reconciliation,
        }


@dataclass(frozen=True, slots=True)
class SessionView:
    """One account's sight of a session (a ``session_views`` row)."""

    serial: int
    account: str
    appeared_at: str
    first_state: str | None
    last_state: str | None
    left_at: str | None
    left_reason: str | None


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A message that matched a search; ``score`` is the negated bm25 (higher is better)."""

    message: ArchivedMessage
    account: str
    state: str | None
    snippet: str
    score: float

    def to_json(self) -> dict[str, Any]:
        """The hit as a JSON object: the message row plus account, state, snippet, score."""
        return self.message.to_json() | {
            "account": self.account,
            "state": self.state,
            "snippet": self.snippet,
            "score": self.score,
        }


def instant(value: datetime) -> str:
    """A datetime as the archive writes instants (naive values are taken as UTC)."""
    return format_instant(value if value.tzinfo else value.replace(tzinfo=UTC))


def marks(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))


def session_conditions(
    conn: ReadConnection, filters: SessionFilter, *, message_window: bool
) -> tuple[list[str], list[object]]:
    """SQL conditions on ``sessions s`` (and ``messages m`` if ``message_window``)."""
    pg = is_postgres(conn)
    where: list[str] = []
    params: list[object] = []
    if filters.account is not None:
        where.append(
            "(s.account = ? OR EXISTS (SELECT 1 FROM session_views v"
            " WHERE v.session_id = s.session_id AND v.account = ?))"
        )
        params.extend([filters.account, filters.account])
    if filters.state is not None:
        where.append("lower(s.state) = lower(?)" if pg else "s.state = ? COLLATE NOCASE")
        params.append(filters.state)
    if filters.held is not None:
        where.append("s.legal_hold = ?")
        params.append(int(filters.held))
    if filters.ended is not None:
        where.append(f"s.ended_at IS {'NOT ' if filters.ended else ''}NULL")
    if filters.session_ids:
        where.append(f"s.session_id IN ({marks(filters.session_ids)})")
        params.extend(filters.session_ids)
    if filters.participant is not None:
        where.append(_PG_PARTICIPANT if pg else _PARTICIPANT)
        params.extend([filters.participant, filters.participant])
    bounds = [
        (op, instant(value))
        for op, value in ((">=", filters.since), ("<", filters.until))
        if value is not None
    ]
    if bounds and message_window:
        where.extend(f"m.sent_at {op} ?" for op, _ in bounds)
        params.extend(value for _, value in bounds)
    elif bounds:
        window = " AND ".join(f"w.sent_at {op} ?" for op, _ in bounds)
        where.append(f"s.session_id IN (SELECT w.session_id FROM messages w WHERE {window})")
        params.extend(value for _, value in bounds)
    return where, params


_PARTICIPANT = (
    "(EXISTS (SELECT 1 FROM json_each(s.participants_json) p"
    "         WHERE json_extract(p.value, '$.nickname') = ? COLLATE NOCASE)"
    " OR EXISTS (SELECT 1 FROM messages n"
    "            WHERE n.session_id = s.session_id AND n.from_nickname = ? COLLATE NOCASE))"
)
_PG_PARTICIPANT = (
    "(EXISTS (SELECT 1 FROM jsonb_array_elements(s.participants_json::jsonb) p"
    "         WHERE jsonb_typeof(p) = 'object' AND lower(p ->> 'nickname') = lower(?))"
    " OR EXISTS (SELECT 1 FROM messages n"
    "            WHERE n.session_id = s.session_id AND lower(n.from_nickname) = lower(?)))"
)


def message_row(row: Sequence[Any]) -> ArchivedMessage:
    return ArchivedMessage(*row[:12])


def _session(row: Sequence[Any]) -> SessionRecord:
    return SessionRecord(
        session_id=row[0],
        account=row[1],
        state=row[2],
        participants=orjson.loads(row[3]),
        user_data=orjson.loads(row[4]),
        first_seen_at=row[5],
        last_seen_at=row[6],
        ended_at=row[7],
        legal_hold=bool(row[8]),
        tail=row[9],
        reconciliation=row[10],
        accounts=tuple(orjson.loads(row[11] or "[]")),
        message_count=row[12],
        first_message_at=row[13],
        last_message_at=row[14],
    )


async def fetch_rows(conn: ReadConnection, sql: str, params: Sequence[object] = ()) -> list[Any]:
    try:
        return list(await conn.execute_fetchall(sql, params))
    except DATABASE_ERRORS as exc:
        raise StoreError(f"reading the archive failed: {exc}") from exc


async def schema_version(conn: ReadConnection) -> int | None:
    """The archive's schema version, or None if the file is not a gws-archiver archive."""
    try:
        rows = await conn.execute_fetchall("SELECT max(version) FROM schema_migrations")
    except DATABASE_ERRORS:
        return None
    return next((int(row[0] or 0) for row in rows), 0)


async def session_page(
    conn: ReadConnection,
    filters: SessionFilter,
    *,
    before: tuple[str, str] | None,
    limit: int,
) -> list[SessionRecord]:
    """Up to ``limit`` matching sessions, newest first, after the keyset ``before``."""
    where, params = session_conditions(conn, filters, message_window=False)
    if before is not None:
        where.append("(s.first_seen_at, s.session_id) < (?, ?)")
        params.extend(before)
    pg = is_postgres(conn)
    sql = (
        f"WITH picked AS (SELECT {_PG_SESSION_SELECT if pg else _SESSION_SELECT} FROM sessions s"
        f" {'WHERE ' + ' AND '.join(where) if where else ''}"
        " ORDER BY s.first_seen_at DESC, s.session_id DESC LIMIT ?)"
        " SELECT p.*, count(m.message_index), min(m.sent_at), max(m.sent_at)"
        " FROM picked p LEFT JOIN messages m ON m.session_id = p.session_id"
        # PostgreSQL does not know a CTE's rows are one per session: group by every column.
        f" GROUP BY {'1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12' if pg else 'p.session_id'}"
        " ORDER BY p.first_seen_at DESC, p.session_id DESC"
    )
    return [_session(row) for row in await fetch_rows(conn, sql, [*params, limit])]


async def session_ids_page(
    conn: ReadConnection, filters: SessionFilter, *, after: str, limit: int
) -> list[str]:
    """Up to ``limit`` matching session ids greater than ``after``, in id order."""
    where, params = session_conditions(conn, filters, message_window=False)
    where.append("s.session_id > ?")
    sql = (
        f"SELECT s.session_id FROM sessions s WHERE {' AND '.join(where)}"
        " ORDER BY s.session_id LIMIT ?"
    )
    return [row[0] for row in await fetch_rows(conn, sql, [*params, after, limit])]


async def message_page(
    conn: ReadConnection,
    session_ids: Sequence[str],
    *,
    after: tuple[str, int] | None,
    limit: int,
) -> list[ArchivedMessage]:
    """Up to ``limit`` messages of ``session_ids`` (sorted), in key order, after ``after``.

    Only the sessions from ``after``'s on are named: PostgreSQL walks the index once per id
    in the list, so naming those already read would make each page cost more than the last.
    """
    start = after if after is not None else (session_ids[0], -(2**62))
    remaining = session_ids[bisect.bisect_left(session_ids, start[0]) :]
    if not remaining:
        return []
    sql = (
        f"SELECT {MESSAGE_SELECT} FROM messages m"
        " WHERE (m.session_id, m.message_index) > (?, ?) AND m.session_id <= ?"
        f" AND m.session_id IN ({marks(remaining)})"
        " ORDER BY m.session_id, m.message_index LIMIT ?"
    )
    params = [*start, remaining[-1], *remaining, limit]
    return [message_row(row) for row in await fetch_rows(conn, sql, params)]


async def session_views(conn: ReadConnection, session_id: str) -> list[SessionView]:
    """Every account's sight of a session, in the order they began."""
    sql = (
        "SELECT serial, account, appeared_at, first_state, last_state, left_at, left_reason"
        " FROM session_views WHERE session_id = ? ORDER BY serial"
    )
    return [SessionView(*row) for row in await fetch_rows(conn, sql, [session_id])]


async def filled_indices(conn: ReadConnection, session_id: str) -> frozenset[int]:
    """The indices of a session's messages that Interaction History supplied."""
    sql = "SELECT message_index FROM messages WHERE session_id = ? AND source = 'history'"
    return frozenset(row[0] for row in await fetch_rows(conn, sql, [session_id]))


async def session_messages(conn: ReadConnection, session_id: str) -> list[ArchivedMessage]:
    """Every message of a session in log order (``TranscriptSaveDone``, index -1, last)."""
    sql = (
        f"SELECT {MESSAGE_SELECT} FROM messages m WHERE m.session_id = ?"
        " ORDER BY m.message_index = -1, m.message_index"
    )
    return [message_row(row) for row in await fetch_rows(conn, sql, [session_id])]


async def recent_messages(
    conn: ReadConnection, session_ids: Sequence[str], per_session: int
) -> list[ArchivedMessage]:
    """The last ``per_session`` numbered messages of each session, by session id then index."""
    if not session_ids:
        return []
    sql = (
        "WITH last AS (SELECT session_id, max(message_index) AS top FROM messages"
        f" WHERE session_id IN ({marks(session_ids)}) GROUP BY session_id)"
        f" SELECT {MESSAGE_SELECT} FROM last JOIN messages m ON m.session_id = last.session_id"
        f" AND m.message_index > {'greatest' if is_postgres(conn) else 'max'}(last.top - ?, 0)"
        " ORDER BY m.session_id, m.message_index"
    )
    return [message_row(row) for row in await fetch_rows(conn, sql, [*session_ids, per_session])]
