"""The statements of one page's transaction that both storing and reconciling run.

:class:`Txn` is one page's context (its connection, its instant, the event rows gathered so
far); the functions here insert new messages with their search rows and events, keep the views
of a session (``session_views``), record conflicts and add lifecycle events.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from archiver.events import (
    EventRow,
    SessionEvent,
    ViewEnded,
    ViewStarted,
    message_event_row,
    session_event_row,
)
from archiver.gws.models import TRANSCRIPT_SAVE_DONE_INDEX, Message
from archiver.store.db import Connection
from archiver.store.postgres import is_postgres
from archiver.store.sessions import SessionState

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class ViewChange:
    """What one account's list showed of a session: in view (``left`` None) or why it left it."""

    account: str
    state: str | None
    left: str | None = None  # 'revoked', 'completed', 'gone'


@dataclass(slots=True)
class Txn:
    """One page's statements: its connection, its instant, and the event rows gathered."""

    conn: Connection
    now: str
    last_seq: int  # the seq of the newest event stored before this page
    events: list[EventRow] = field(default_factory=list)

    def next_seq(self) -> int:
        return (self.events[-1].seq if self.events else self.last_seq) + 1


def insert_fresh(
    txn: Txn, state: SessionState, fresh: list[Message], source: str | None = None
) -> None:
    """Insert messages not stored before and their events; move the cursor.

    Messages of a session already ended get no events: none may follow ``SessionEnded``.
    Their search rows are added once per batch (:func:`index_for_search`).
    """
    conn = txn.conn
    conn.executemany(
        "INSERT INTO messages (session_id, message_index, type, text, url, from_type,"
        " from_nickname, from_participant_id, visibility, sent_at, raw_json, archived_at,"
        f" source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, {'?' if source else 'NULL'})"
        " ON CONFLICT DO NOTHING",
        [
            (
                state.session_id,
                m.index,
                m.type,
                m.text,
                m.url,
                m.from_type,
                m.from_nickname,
                m.from_participant_id,
                m.visibility,
                m.sent_at,
                m.raw_json,
                txn.now,
                *((source,) if source else ()),
            )
            for m in fresh
        ],
    )
    # A silent supervisor's own entries (visibility Supervisors) do not make it a handler.
    senders = {
        m.from_user_id
        for m in fresh
        if m.from_user_id is not None and m.visibility != "Supervisors"
    }
    if senders:
        record_agents(conn, [(state.session_id, a) for a in senders], txn.now, "message")
    for message in fresh:
        if state.ended_at is None:
            row = message_event_row(
                txn.next_seq(), state.session_id, state.account, message, txn.now
            )
            txn.events.append(row)
        if message.index == TRANSCRIPT_SAVE_DONE_INDEX:
            state.has_transcript_saved = True
        else:
            state.next_index = max(state.next_index, message.index + 1)


def newest_message(conn: Connection) -> int | None:
    """SQLite: the newest message's rowid, from which :func:`index_for_search` goes on."""
    if is_postgres(conn):
        return None  # PostgreSQL's search index is a generated column
    (rowid,) = conn.execute("SELECT coalesce(max(rowid), 0) FROM messages").fetchone()
    return int(rowid)


def index_for_search(conn: Connection, after_rowid: int | None) -> None:
    """SQLite: add the search rows of the messages inserted since ``newest_message`` said
    ``after_rowid``, in one statement (those of pages rolled back are gone by then)."""
    if after_rowid is not None:
        conn.execute(
            "INSERT INTO messages_fts (rowid, text) SELECT rowid, text FROM messages"
            " WHERE rowid > ?",
            (after_rowid,),
        )


def change_view(txn: Txn, state: SessionState, change: ViewChange) -> None:
    """Open, update or close one account's view; events for all but the first and the last."""
    if state.ended_at is not None:
        late_view(txn, state, change)
        return
    serial = state.views.get(change.account)
    if change.left is None and serial is not None:
        txn.conn.execute(
            "UPDATE session_views SET last_state = ? WHERE session_id = ? AND serial = ?",
            (change.state, state.session_id, serial),
        )
        return
    if serial is None:
        # A new view; one first seen already closed (Revoked at once) opens and closes here.
        state.view_count += 1
        serial = state.views[change.account] = state.view_count
        state.account = change.account
        txn.conn.execute(
            "INSERT INTO session_views (session_id, serial, account, appeared_at, first_state,"
            " last_state) VALUES (?, ?, ?, ?, ?, ?)",
            (state.session_id, serial, change.account, txn.now, change.state, change.state),
        )
        if serial > 1:
            add_session_event(txn, ViewStarted, state, f"view_{serial}_started", view=serial)
        if change.left is None:
            return
    del state.views[change.account]
    txn.conn.execute(
        "UPDATE session_views SET left_at = ?, left_reason = ?,"
        " last_state = coalesce(?, last_state) WHERE session_id = ? AND serial = ?",
        (txn.now, change.left, change.state, state.session_id, serial),
    )
    if change.left != "ended":
        # Told with the account that left it; then who handles it now: the newest open view.
        state.account = change.account
        kind = f"view_{serial}_ended"
        add_session_event(txn, ViewEnded, state, kind, view=serial, reason=change.left)
    if state.views:
        state.account = max(state.views, key=state.views.__getitem__)


def late_view(txn: Txn, state: SessionState, change: ViewChange) -> None:
    """An account seen with the session only after it ended: recorded (once), without events."""
    (known,) = txn.conn.execute(
        "SELECT count(*) FROM session_views WHERE session_id = ? AND account = ?",
        (state.session_id, change.account),
    ).fetchone()
    if known:
        return
    state.view_count += 1
    txn.conn.execute(
        "INSERT INTO session_views (session_id, serial, account, appeared_at, first_state,"
        " last_state, left_at, left_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            state.session_id,
            state.view_count,
            change.account,
            txn.now,
            change.state,
            change.state,
            txn.now,
            change.left or "ended",
        ),
    )


def unviewed(conn: Connection, account: str, session_ids: Sequence[str]) -> list[str]:
    """Those sessions ``account`` has no recorded view of."""
    seen: set[str] = set()
    for start in range(0, len(session_ids), 500):
        chunk = session_ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT session_id FROM session_views WHERE account = ? AND session_id IN ({marks})",
            (account, *chunk),
        )
        seen.update(row[0] for row in rows)
    return [session_id for session_id in session_ids if session_id not in seen]


def record_conflict(txn: Txn, state: SessionState, message: Message) -> None:
    txn.conn.execute(
        "INSERT INTO conflicts (session_id, message_index, raw_json, detected_at)"
        " VALUES (?, ?, ?, ?)",
        (state.session_id, message.index, message.raw_json, txn.now),
    )
    log.warning("message_conflict", session_id=state.session_id, message_index=message.index)


def add_session_event(
    txn: Txn, cls: type[SessionEvent], state: SessionState, kind: str, **extra: Any
) -> None:
    row = session_event_row(
        cls, txn.next_seq(), kind, txn.now, state.account, state.snapshot(), **extra
    )
    txn.events.append(row)


def record_agents(
    conn: Connection, handled: Iterable[tuple[str, str]], now: str, source: str
) -> None:
    """Record (session id, agent id) pairs: the agent handled the session, seen via ``source``."""
    conn.executemany(
        "INSERT INTO session_agents (session_id, agent_id, first_seen_at, last_seen_at, source)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (session_id, agent_id)"
        " DO UPDATE SET last_seen_at = excluded.last_seen_at",
        [(session_id, agent_id, now, now, source) for session_id, agent_id in sorted(handled)],
    )
