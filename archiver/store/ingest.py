"""Storing pages: the statements of the writer's transactions, on one plain Connection.

A batch of pages is stored in one ``BEGIN IMMEDIATE ... COMMIT``, each page inside a savepoint
of its own, so a page stands or falls alone. A page is all or nothing: its session row (with a
``SessionStarted`` or ``SessionUpdated`` event when it is new or changed), its new messages
(``ON CONFLICT DO NOTHING``), its malformed entries, the cursor, and one event row per new
message (a transactional outbox); SQLite's search rows for the whole batch are added by one
statement at its end. Re-read messages are compared with what is stored: identical
ones count as duplicates, differing ones are recorded in ``conflicts``. A page whose content
cannot be stored is stored again message by message; the messages that fail are kept raw in
``malformed``. Everything here is synchronous: the writer runs it on its database thread.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

import structlog

from archiver.errors import StoreError
from archiver.events import (
    EventRow,
    SessionEnded,
    SessionStarted,
    SessionUpdated,
)
from archiver.gws.models import (
    TRANSCRIPT_SAVE_DONE_INDEX,
    Malformed,
    Message,
    SmsSession,
    participant_agents,
)
from archiver.instants import utc_now
from archiver.store.db import TRANSIENT_ERRORS, Connection, transaction
from archiver.store.postgres import is_postgres
from archiver.store.reconciliation import HistoryCheck, reconcile
from archiver.store.sessions import SessionCache, SessionState
from archiver.store.statements import (
    Txn,
    ViewChange,
    add_session_event,
    change_view,
    index_for_search,
    insert_fresh,
    newest_message,
    record_agents,
    record_conflict,
)

log = structlog.get_logger()

# pg_advisory_xact_lock's key for numbering events ('gws-evts' as a number).
EVENTS_LOCK = 0x67_77_73_2D_65_76_74_73


@dataclass(frozen=True, slots=True)
class Page:
    """What one read of a session yielded, to be stored in one transaction.

    ``views`` come first, then messages, then ``history`` (Interaction History's log, compared
    with the archive), and last the end: ``end_reason`` with ``tail`` (how the end of the log is
    known, 'drained' or 'unverified').
    """

    account: str
    session: SmsSession
    messages: Sequence[Message] = ()
    malformed: Sequence[Malformed] = ()
    end_reason: str | None = None
    views: Sequence[ViewChange] = ()
    history: HistoryCheck | None = None
    tail: str = "drained"
    # Accounts another daemon may hold: the end waits while one of them has the session open.
    held_elsewhere: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class PageResult:
    """What storing a page did; ``events`` are committed and carry their ``seq``."""

    events: list[EventRow]
    next_index: int
    duplicates: int
    conflicts: int
    malformed_new: int = 0  # malformed entries recorded now (not seen before)
    purged: bool = False  # the session was purged by retention: nothing was stored
    handed_over: bool = False  # not ended: an account held elsewhere has it open


class Ingest:
    """Stores pages; keeps what later pages build on: session states and the newest ``seq``."""

    def __init__(self, sessions: SessionCache | None = None, last_seq: int = 0) -> None:
        self.sessions = sessions or SessionCache()
        self.last_seq = last_seq  # the seq of the newest event stored (committed, after a batch)

    def resume(self, conn: Connection) -> None:
        """Continue the archive's event numbering (the writer does it when it opens)."""
        if is_postgres(conn):
            sql = "SELECT value FROM archive_counters WHERE name = 'events'"
        else:
            sql = "SELECT seq FROM sqlite_sequence WHERE name = 'events'"
        row = conn.execute(sql).fetchone()
        self.last_seq = int(row[0]) if row else 0

    def store_pages(self, conn: Connection, pages: Sequence[Page]) -> list[PageResult | StoreError]:
        """One transaction for the batch, one savepoint per page; a failing page fails alone."""
        first_seq = self.last_seq
        try:
            outcomes, stored = transaction(conn, self._store_batch, pages)
        except BaseException as exc:
            # Nothing of the batch is stored: forget cached rows it changed, and its seqs.
            self.last_seq = first_seq
            for page in pages:
                self.sessions.forget(page.session.id)
            if not isinstance(exc, Exception):
                raise
            return [_page_failed(page, exc) for page in pages]
        self.sessions.committed(stored)
        return outcomes

    def _store_batch(
        self, conn: Connection, pages: Sequence[Page]
    ) -> tuple[list[PageResult | StoreError], list[SessionState]]:
        outcomes: list[PageResult | StoreError] = []
        stored: list[SessionState] = []
        shared = is_postgres(conn)
        if shared:
            # Other daemons write this archive too: one batch at a time takes the next seqs
            # (so events commit in seq order, which subscribers' cursors rely on), and the
            # sessions are read afresh, as another daemon may have stored pages of them.
            conn.execute("SELECT pg_advisory_xact_lock(?)", (EVENTS_LOCK,))
            self.resume(conn)
            self.sessions.clear()
        indexed_up_to = newest_message(conn)
        for page in pages:
            try:
                result, state = self._in_savepoint(conn, page)
            except Exception as exc:
                if _transient(exc) or not page.messages:
                    outcomes.append(_page_failed(page, exc))
                    continue
                # Something in the page's content: store it message by message instead.
                conn.execute("SAVEPOINT isolated")
                seq_before = self.last_seq
                try:
                    result, state = self._store_isolated(conn, page, exc)
                except Exception as again:
                    conn.execute("ROLLBACK TO isolated")
                    conn.execute("RELEASE isolated")
                    self.last_seq = seq_before
                    self.sessions.forget(page.session.id)
                    outcomes.append(_page_failed(page, again))
                    continue
                conn.execute("RELEASE isolated")
            outcomes.append(result)
            stored.append(state)
        index_for_search(conn, indexed_up_to)
        if shared:
            conn.execute(
                "UPDATE archive_counters SET value = ? WHERE name = 'events'", (self.last_seq,)
            )
        return outcomes, stored

    def _in_savepoint(self, conn: Connection, page: Page) -> tuple[PageResult, SessionState]:
        """Store one page in a savepoint of its own: it stands or falls alone."""
        conn.execute("SAVEPOINT page")
        try:
            result, state = self._store_page(conn, page)
        except BaseException:
            conn.execute("ROLLBACK TO page")
            conn.execute("RELEASE page")
            self.sessions.forget(page.session.id)
            raise
        conn.execute("RELEASE page")
        # Later pages of this batch build on it; a failed batch forgets both (see store_pages).
        self.sessions.keep(state)
        if result.events:
            self.last_seq = result.events[-1].seq
        return result, state

    def _store_isolated(
        self, conn: Connection, page: Page, cause: Exception
    ) -> tuple[PageResult, SessionState]:
        """Store a page that failed one message at a time; those that fail become malformed."""
        refused: list[Malformed] = []
        results: list[PageResult] = []
        for message in page.messages:
            try:
                one = replace(
                    page, messages=[message], malformed=(), views=(), history=None, end_reason=None
                )
                result, _ = self._in_savepoint(conn, one)
                results.append(result)
            except Exception as exc:
                if _transient(exc):
                    raise
                # Not pinned to its index: an index that broke the store is no place to trust.
                problem = f"message {message.index} cannot be stored: {exc!r}"
                refused.append(Malformed(problem, message.raw_json))
        log.warning("page_stored_one_by_one", session_id=page.session.id, error=repr(cause))
        last, state = self._in_savepoint(
            conn, replace(page, messages=(), malformed=[*page.malformed, *refused])
        )
        results.append(last)
        combined = PageResult(
            events=[event for result in results for event in result.events],
            next_index=last.next_index,
            duplicates=sum(result.duplicates for result in results),
            conflicts=sum(result.conflicts for result in results),
            malformed_new=last.malformed_new,
        )
        return combined, state

    def _store_page(self, conn: Connection, page: Page) -> tuple[PageResult, SessionState]:
        """The statements of one page, inside the batch's transaction."""
        stored = self.sessions.load(conn, page.session.id)
        if stored is not None and stored.purged:
            return PageResult([], stored.next_index, 0, 0, purged=True), stored
        txn = Txn(conn, utc_now(), self.last_seq)
        state = _upsert_session(txn, page, stored)
        views = page.views
        if stored is None and not any(change.account == page.account for change in views):
            views = [ViewChange(page.account, page.session.state), *views]
        for change in views:
            change_view(txn, state, change)
        duplicates, conflicts = _insert_messages(txn, page, state)
        malformed_new = _insert_malformed(txn, page, state)
        if page.history is not None:
            conflicts += reconcile(txn, state, page.history)
        handed_over = bool(page.end_reason and state.views.keys() & page.held_elsewhere)
        if page.end_reason is not None and state.ended_at is None and not handed_over:
            for account in list(state.views):
                change_view(txn, state, ViewChange(account, state.state, "ended"))
            state.ended_at = txn.now
            state.tail = page.tail
            add_session_event(txn, SessionEnded, state, "ended", reason=page.end_reason)
        conn.execute(
            "UPDATE sessions SET account = ?, state = ?, participants_json = ?,"
            " user_data_json = ?, last_seen_at = ?, ended_at = ?, next_index = ?,"
            " update_count = ?, view_count = ?, tail = ? WHERE session_id = ?",
            (
                state.account,
                state.state,
                state.participants_json,
                state.user_data_json,
                txn.now,
                state.ended_at,
                state.next_index,
                state.update_count,
                state.view_count,
                state.tail,
                state.session_id,
            ),
        )
        if txn.events:
            conn.executemany(
                "INSERT INTO events (seq, event_id, type, session_id, message_index,"
                " occurred_at, payload_json) VALUES (?, ?, ?, ?, ?, ?, ?)",
                txn.events,
            )
        result = PageResult(
            txn.events, state.next_index, duplicates, conflicts, malformed_new,
            handed_over=handed_over,
        )  # fmt: skip
        return result, state


def record_malformed(conn: Connection, account: str, entries: Sequence[Malformed]) -> int:
    """Keep entries of a session list that name no usable session (``session_id`` '')."""
    now = utc_now()

    def insert(db: Connection) -> int:
        new = 0
        for entry in entries:
            raw = _storable(entry.raw_json)
            new += db.execute(
                "INSERT INTO malformed (session_id, problem, raw_json, received_at, account,"
                " digest) VALUES ('', ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (entry.problem, raw, now, account, _digest(raw)),
            ).rowcount
        return new

    return transaction(conn, insert)


def _upsert_session(txn: Txn, page: Page, stored: SessionState | None) -> SessionState:
    snapshot = page.session
    if stored is None:
        state = SessionState.first_seen(page.account, snapshot)
        txn.conn.execute(
            "INSERT INTO sessions (session_id, account, state, participants_json,"
            " user_data_json, first_seen_at, last_seen_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                snapshot.id,
                page.account,
                snapshot.state,
                snapshot.participants_json,
                snapshot.user_data_json,
                txn.now,
                txn.now,
            ),
        )
        add_session_event(txn, SessionStarted, state, "started")
        _record_participants(txn, state)
        return state
    state = stored.copy()
    changed = [
        name
        for name, before, after in (
            ("state", state.state, snapshot.state),
            ("participants", state.participants_json, snapshot.participants_json),
            ("user_data", state.user_data_json, snapshot.user_data_json),
        )
        if before != after
    ]
    if changed:
        state.state = snapshot.state
        state.participants_json = snapshot.participants_json
        state.user_data_json = snapshot.user_data_json
        state.update_count += 1
        kind = f"updated_{state.update_count}"
        add_session_event(txn, SessionUpdated, state, kind, changed=changed)
        if "participants" in changed:
            _record_participants(txn, state)
    return state


def _record_participants(txn: Txn, state: SessionState) -> None:
    agents = participant_agents(state.participants_json)
    if agents:
        handled = [(state.session_id, agent_id) for agent_id in agents]
        record_agents(txn.conn, handled, txn.now, "participants")


def _insert_messages(txn: Txn, page: Page, state: SessionState) -> tuple[int, int]:
    """Insert what is new; count re-reads; record differing re-reads as conflicts."""
    first: dict[int, Message] = {}
    repeats: list[Message] = []  # the same index again within this page
    for message in page.messages:
        if message.index in first:
            repeats.append(message)
        else:
            first[message.index] = message
    unique = sorted(first.values(), key=lambda m: (m.index == TRANSCRIPT_SAVE_DONE_INDEX, m.index))
    seen = [m for m in unique if _maybe_stored(state, m.index)]
    stored = _stored_messages(txn.conn, state.session_id, seen)
    duplicates = conflicts = 0
    fresh: list[Message] = []
    for message in unique:
        previous = stored.get(message.index)
        if previous is None:
            fresh.append(message)
        elif previous.same_content(message):
            duplicates += 1
        else:
            conflicts += 1
            record_conflict(txn, state, message)
    for message in repeats:
        if first[message.index].same_content(message):
            duplicates += 1
        else:
            conflicts += 1
            record_conflict(txn, state, message)
    if fresh:
        insert_fresh(txn, state, fresh)
    return duplicates, conflicts


def _insert_malformed(txn: Txn, page: Page, state: SessionState) -> int:
    """Record each malformed entry once; one pinned to an index moves the cursor past it."""
    new = 0
    for entry in page.malformed:
        raw = _storable(entry.raw_json)
        (changed,) = txn.conn.execute(
            "INSERT INTO malformed (session_id, problem, raw_json, received_at,"
            " message_index, account, digest) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (session_id, digest) DO UPDATE"
            " SET message_index = coalesce(malformed.message_index, excluded.message_index)"
            " WHERE malformed.message_index IS NULL AND excluded.message_index IS NOT NULL"
            " RETURNING received_at = ?",
            (
                page.session.id,
                entry.problem,
                raw,
                txn.now,
                entry.index,
                page.account,
                _digest(raw),
                txn.now,
            ),
        ).fetchone() or (0,)
        new += bool(changed)
        if entry.index is not None and entry.index >= state.next_index:
            state.next_index = entry.index + 1
    return new


def _maybe_stored(state: SessionState, index: int) -> bool:
    if index == TRANSCRIPT_SAVE_DONE_INDEX:
        return state.has_transcript_saved
    return index < state.next_index


def _stored_messages(
    conn: Connection, session_id: str, messages: list[Message]
) -> dict[int, Message]:
    if not messages:
        return {}
    marks = ",".join("?" * len(messages))
    rows = conn.execute(
        "SELECT message_index, type, text, url, from_type, from_nickname,"
        " from_participant_id, visibility, sent_at, raw_json FROM messages"
        f" WHERE session_id = ? AND message_index IN ({marks})",
        (session_id, *(m.index for m in messages)),
    )
    return {row[0]: Message(*row) for row in rows}


def _page_failed(page: Page, exc: BaseException) -> StoreError:
    error = StoreError(f"storing a page of session {page.session.id} failed: {exc!r}")
    error.__cause__ = exc
    return error


def _transient(exc: Exception) -> bool:
    """True for trouble of the database (busy, locked, I/O, gone), not of the page's content."""
    return isinstance(exc, TRANSIENT_ERRORS)


def _storable(raw: str | bytes) -> str | bytes:
    """Raw text SQLite can hold: a string with lone surrogates is kept as its exact code units."""
    if isinstance(raw, str):
        try:
            raw.encode("utf-8")
        except UnicodeEncodeError:
            return raw.encode("utf-8", "surrogatepass")
    return raw


def _digest(raw: str | bytes) -> str:
    return hashlib.sha256(raw if isinstance(raw, bytes) else raw.encode("utf-8")).hexdigest()
