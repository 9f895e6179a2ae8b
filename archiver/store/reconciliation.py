"""Reconciliation in the archive: Interaction History's log of a session compared with it.

Run inside a page's transaction (:mod:`archiver.store.ingest`): saved messages the archive lacks
are inserted (``source = 'history'``), differing ones recorded in ``conflicts``, and the outcome
kept in ``reconciliations``; a final outcome also becomes a ``SessionReconciled`` event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from archiver.events import SessionReconciled, message_event_data
from archiver.gws.models import Message
from archiver.store.db import TRANSIENT_ERRORS, Connection
from archiver.store.sessions import SessionState
from archiver.store.statements import Txn, add_session_event, insert_fresh, record_conflict

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class HistoryCheck:
    """Interaction History's copy of a session's log, or why it could not be had.

    ``messages`` None means not checked: the check is ``pending`` until ``retry_at`` (an
    instant), or ``unchecked`` for good when ``retry_at`` is None.
    """

    messages: Sequence[Message] | None
    entries: int | None = None  # entries history gave, unparseable ones included
    detail: str | None = None
    retry_at: str | None = None
    attempted: bool = True  # False: reconciliation is off (recorded, no event)


def due_reconciliations(conn: Connection, now: str, limit: int) -> list[str]:
    """Sessions whose pending check against Interaction History is due at ``now``."""
    rows = conn.execute(
        "SELECT session_id FROM reconciliations WHERE status = 'pending' AND next_attempt_at <= ?"
        " ORDER BY next_attempt_at LIMIT ?",
        (now, limit),
    )
    return [row[0] for row in rows]


def unreconciled(conn: Connection, since: str | None) -> list[str]:
    """Ended sessions (since ``since``) not yet checked against Interaction History for good."""
    rows = conn.execute(
        "SELECT s.session_id FROM sessions s LEFT JOIN reconciliations r USING (session_id)"
        " WHERE s.ended_at IS NOT NULL AND (r.status IS NULL OR r.status IN ('pending',"
        " 'unchecked')) AND (? IS NULL OR s.ended_at >= ?) ORDER BY s.ended_at",
        (since, since),
    )
    return [row[0] for row in rows]


def reconcile(txn: Txn, state: SessionState, check: HistoryCheck) -> int:
    """Compare Interaction History's log with the archive; fill what is missing. Conflicts."""
    if check.messages is None:
        status = "pending" if check.retry_at is not None else "unchecked"
        record_reconciliation(txn, state, check, status, [], [])
        return 0
    # Indices run 1..n in a whole log: one beyond the entries history gave is not believed, as
    # the live reads do not believe one ahead of its place; nor is a place the archive knows
    # holds a malformed entry.
    entries = check.entries if check.entries is not None else len(check.messages)
    pinned = malformed_places(txn.conn, state.session_id)
    history = {
        message.index: message
        for message in check.messages
        if (message.index == -1 or 1 <= message.index <= entries) and message.index not in pinned
    }
    stored = session_messages(txn.conn, state.session_id)
    fresh: list[Message] = []
    differing: list[int] = []
    for index, message in sorted(history.items()):
        previous = stored.get(index)
        if previous is None:
            fresh.append(message)
        elif not previous.same_content(message):
            differing.append(index)
            record_conflict(txn, state, message)
    filled = [message for message in fresh if _fill(txn, state, message)]
    if filled:
        indices = [message.index for message in filled]
        log.warning("history_filled", session_id=state.session_id, indices=indices)
    status = "different" if differing else "filled" if filled else "verified"
    record_reconciliation(txn, state, check, status, filled, differing)
    return len(differing)


def _fill(txn: Txn, state: SessionState, message: Message) -> bool:
    """Insert one message history supplied, alone: one that cannot be stored is skipped."""
    txn.conn.execute("SAVEPOINT fill")
    events = len(txn.events)
    try:
        insert_fresh(txn, state, [message], source="history")
    except TRANSIENT_ERRORS:
        raise
    except Exception as exc:  # the message's content, not the database: skip that message
        txn.conn.execute("ROLLBACK TO fill")
        txn.conn.execute("RELEASE fill")
        del txn.events[events:]
        log.warning(
            "history_message_unstorable",
            session_id=state.session_id,
            message_index=message.index,
            error=repr(exc),
        )
        return False
    txn.conn.execute("RELEASE fill")
    return True


def malformed_places(conn: Connection, session_id: str) -> set[int]:
    """The indices at which the archive keeps a malformed entry of the session."""
    rows = conn.execute(
        "SELECT message_index FROM malformed WHERE session_id = ? AND message_index IS NOT NULL",
        (session_id,),
    )
    return {row[0] for row in rows}


def record_reconciliation(
    txn: Txn,
    state: SessionState,
    check: HistoryCheck,
    status: str,
    filled: list[Message],
    differing: list[int],
) -> None:
    """Keep the check's outcome; a final one (not pending, not 'off') also becomes an event."""
    history_messages = None if check.messages is None else len(check.messages)
    (attempts,) = txn.conn.execute(
        "INSERT INTO reconciliations (session_id, status, attempts, next_attempt_at,"
        " checked_at, history_messages, filled, differing, detail)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (session_id) DO UPDATE SET status = excluded.status,"
        " attempts = reconciliations.attempts + excluded.attempts,"
        " next_attempt_at = excluded.next_attempt_at,"
        " checked_at = excluded.checked_at, history_messages = excluded.history_messages,"
        " filled = reconciliations.filled + excluded.filled, differing = excluded.differing,"
        " detail = excluded.detail"
        " RETURNING attempts",
        (
            state.session_id,
            status,
            int(check.attempted),
            check.retry_at,
            txn.now,
            history_messages,
            len(filled),
            len(differing),
            check.detail,
        ),
    ).fetchone()
    if status == "pending" or not check.attempted:
        return
    late = state.ended_at is not None
    add_session_event(
        txn,
        SessionReconciled,
        state,
        f"reconciled_{attempts}",
        status=status,
        history_messages=history_messages,
        filled=[message.index for message in filled],
        differing=differing,
        filled_messages=[
            {"type": m.type, **message_event_data(state.account, m)} for m in filled if late
        ],
        detail=check.detail,
    )


def session_messages(conn: Connection, session_id: str) -> dict[int, Message]:
    rows = conn.execute(
        "SELECT message_index, type, text, url, from_type, from_nickname,"
        " from_participant_id, visibility, sent_at, raw_json FROM messages"
        " WHERE session_id = ?",
        (session_id,),
    )
    return {row[0]: Message(*row) for row in rows}
