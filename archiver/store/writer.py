"""The archive's one writer: every page of messages stored atomically.

Each page is stored all or nothing: the session row, the new messages (``ON CONFLICT DO
NOTHING``), the cursor, and the event rows that describe them (a transactional outbox). The
writer runs its SQLite connection on one dedicated thread; pages that arrive while it is busy
go in the next ``BEGIN IMMEDIATE ... COMMIT`` together, each inside a savepoint of its own, so a
burst of one-message pages costs one commit and one hop off the event loop, not one each.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import structlog

from archiver.errors import StoreError
from archiver.events import (
    Event,
    SessionEnded,
    SessionEvent,
    SessionStarted,
    SessionUpdated,
    Unknown,
    event_from_row,
    lifecycle_event_id,
    message_event_id,
)
from archiver.gws.models import (
    TRANSCRIPT_SAVE_DONE_INDEX,
    Malformed,
    Message,
    SmsSession,
    format_instant,
)
from archiver.lifecycle import Resource
from archiver.store.db import connect
from archiver.store.files import create_private
from archiver.store.migrate import migrate

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class Page:
    """What one read of a session yielded, to be stored in one transaction."""

    account: str
    session: SmsSession
    messages: Sequence[Message] = ()
    malformed: Sequence[Malformed] = ()
    end_reason: str | None = None


class EventRow(NamedTuple):
    """One row of the ``events`` table, as the writer committed it."""

    seq: int
    event_id: str
    type: str
    session_id: str
    message_index: int | None
    occurred_at: str
    payload_json: str

    def typed(self) -> Event:
        """The typed event this row stores."""
        return event_from_row(
            self.seq, self.event_id, self.type, self.session_id, self.occurred_at, self.payload_json
        )


@dataclass(frozen=True, slots=True)
class PageResult:
    """What storing a page did; ``events`` are committed and carry their ``seq``."""

    events: list[EventRow]
    next_index: int
    duplicates: int
    conflicts: int
    malformed_new: int = 0  # malformed entries recorded now (not seen before)
    purged: bool = False  # the session was purged by retention: nothing was stored


@dataclass(slots=True)
class SessionState:
    """The writer's copy of one ``sessions`` row (the writer is its only changer)."""

    session_id: str
    account: str
    state: str | None
    participants_json: str
    user_data_json: str
    next_index: int
    update_count: int
    ended_at: str | None
    has_transcript_saved: bool = False
    purged: bool = False  # a tombstone: retention deleted it, it is never archived again

    def snapshot(self) -> SmsSession:
        """The session as last stored."""
        return SmsSession(self.session_id, self.state, self.participants_json, self.user_data_json)


@dataclass(slots=True)
class _Txn:
    """Rows gathered for one page's transaction."""

    now: str
    events: list[EventRow] = field(default_factory=list)


def _page_failed(page: Page, exc: Exception) -> StoreError:
    error = StoreError(f"storing a page of session {page.session.id} failed: {exc!r}")
    error.__cause__ = exc
    return error


def _transient(exc: Exception) -> bool:
    """True for trouble of the database (busy, locked, I/O), not of the page's content."""
    return isinstance(exc, sqlite3.OperationalError | sqlite3.InterfaceError)


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


def utc_now() -> str:
    """Now, as the archive writes instants."""
    return format_instant(datetime.now(UTC))


class ArchiveWriter(Resource):
    """Owns the write connection; every method is safe to await from the event loop."""

    def __init__(
        self,
        path: Path,
        on_commit: Callable[[int], None] | None = None,
        *,
        busy_timeout_s: float = 10.0,
    ) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        self.on_commit = on_commit
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._sessions: dict[str, SessionState] = {}
        self._last_seq = 0
        self._announced_seq = 0  # the newest seq on_commit was told about
        self._queue: list[tuple[Page, asyncio.Future[PageResult]]] = []
        self._flushing = False
        self._closed = False

    @property
    def last_seq(self) -> int:
        """The ``seq`` of the newest committed event."""
        return self._last_seq

    async def open(self) -> None:
        """Open (creating and migrating if needed) the archive file."""
        if self._closed:
            raise StoreError("the archive writer is closed")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="archive-writer")
        await self._run(self._open_sync)

    async def close(self) -> None:
        """Close the connection; safe to call twice."""
        if self._executor is None or self._closed:
            self._closed = True
            return
        self._closed = True
        executor = self._executor
        await asyncio.get_running_loop().run_in_executor(executor, self._close_sync)
        executor.shutdown(wait=True)

    async def store_page(self, page: Page) -> PageResult:
        """Store one page atomically and return the events it committed.

        Pages that arrive while the writer thread is busy are committed together: each page
        still stands or falls alone (a savepoint of its own); the batch shares one COMMIT.
        """
        waiter: asyncio.Future[PageResult] = asyncio.get_running_loop().create_future()
        self._queue.append((page, waiter))
        if not self._flushing:
            await self._flush(waiter)
        return await waiter

    async def _flush(self, own: asyncio.Future[PageResult]) -> None:
        """Store queued pages, batch after batch, until none is left (run by one caller)."""
        self._flushing = True
        batch: list[tuple[Page, asyncio.Future[PageResult]]] = []
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                outcomes = await self._run(self._store_pages_sync, [page for page, _ in batch])
                for (_, waiter), outcome in zip(batch, outcomes, strict=True):
                    if waiter.done():
                        continue
                    if isinstance(outcome, StoreError):
                        waiter.set_exception(outcome)
                    else:
                        waiter.set_result(outcome)
                if self.on_commit is not None and self._last_seq > self._announced_seq:
                    self._announced_seq = self._last_seq
                    self.on_commit(self._last_seq)
        except BaseException as exc:
            # Whoever waits must not wait forever: they read their pages again later.
            for _, waiter in (*batch, *self._queue):
                if waiter is own and not isinstance(exc, Exception):
                    waiter.cancel()
                elif not waiter.done():
                    waiter.set_exception(StoreError(f"the page was not stored: {exc!r}"))
            self._queue = []
            if not isinstance(exc, Exception):
                raise
        finally:
            self._flushing = False

    async def record_malformed(self, account: str, entries: Sequence[Malformed]) -> int:
        """Keep entries of a session list that name no usable session (``session_id`` '')."""
        new: int = await self._run(self._record_malformed_sync, account, list(entries))
        return new

    def _record_malformed_sync(self, account: str, entries: list[Malformed]) -> int:
        db = self._db
        now = utc_now()
        try:
            db.execute("BEGIN IMMEDIATE")
            new = 0
            for entry in entries:
                raw = _storable(entry.raw_json)
                new += db.execute(
                    "INSERT INTO malformed (session_id, problem, raw_json, received_at, account,"
                    " digest) VALUES ('', ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (entry.problem, raw, now, account, _digest(raw)),
                ).rowcount
            db.execute("COMMIT")
        except Exception:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return new

    async def session_states(self, session_ids: Sequence[str]) -> dict[str, SessionState]:
        """The stored states (copies) of those sessions that were ever archived, in one hop."""
        states: dict[str, SessionState] = await self._run(self._load_sessions, list(session_ids))
        return {session_id: replace(state) for session_id, state in states.items()}

    async def open_sessions(self, account: str) -> list[SessionState]:
        """Sessions of ``account`` archived and not yet ended (resumed after a restart)."""
        states: list[SessionState] = await self._run(self._open_sessions_sync, account)
        return states

    async def _run(self, fn: Any, *args: Any) -> Any:
        if self._executor is None or self._closed:
            raise StoreError("the archive writer is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as exc:
            raise StoreError(f"reading the archive {self.path} failed: {exc}") from exc

    def _open_sync(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            create_private(self.path)
            conn = connect(self.path, busy_timeout_s=self.busy_timeout_s, wal=True, threaded=True)
            migrate(conn)
            row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the archive {self.path}: {exc}") from exc
        self._last_seq = int(row[0]) if row else 0
        self._conn = conn

    def _close_sync(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the archive writer is not open")
        return self._conn

    def _load_sessions(self, session_ids: list[str]) -> dict[str, SessionState]:
        return {sid: state for sid in session_ids if (state := self._load_session(sid))}

    def _load_session(self, session_id: str) -> SessionState | None:
        cached = self._sessions.get(session_id)
        if cached is not None:
            return cached
        row = self._db.execute(
            "SELECT session_id, account, state, participants_json, user_data_json, next_index,"
            " update_count, ended_at,"
            " EXISTS (SELECT 1 FROM messages m"
            "         WHERE m.session_id = s.session_id AND m.message_index = -1)"
            " FROM sessions s WHERE session_id = ?",
            (session_id,),
        ).fetchone()
        if row is None:
            return self._tombstone(session_id)
        sid, account, state_name, participants, user_data, next_index, updates, ended = row[:8]
        state = SessionState(
            sid,
            account,
            state_name,
            participants,
            user_data,
            next_index,
            updates,
            ended,
            bool(row[8]),
        )
        self._sessions[session_id] = state
        return state

    def _tombstone(self, session_id: str) -> SessionState | None:
        row = self._db.execute(
            "SELECT purged_at FROM purged_sessions WHERE session_id = ?", (session_id,)
        ).fetchone()
        if row is None:
            return None
        return SessionState(session_id, "", None, "[]", "{}", 1, 0, row[0], purged=True)

    def _open_sessions_sync(self, account: str) -> list[SessionState]:
        ids = [
            row[0]
            for row in self._db.execute(
                "SELECT session_id FROM sessions WHERE account = ? AND ended_at IS NULL", (account,)
            )
        ]
        return [replace(state) for sid in ids if (state := self._load_session(sid)) is not None]

    def _store_pages_sync(self, pages: list[Page]) -> list[PageResult | StoreError]:
        """One transaction for the batch, one savepoint per page; a failing page fails alone."""
        db = self._db
        first_seq = self._last_seq
        outcomes: list[PageResult | StoreError] = []
        stored: list[SessionState] = []
        try:
            db.execute("BEGIN IMMEDIATE")
            for page in pages:
                try:
                    result, state = self._in_savepoint(page)
                except Exception as exc:
                    if _transient(exc) or not page.messages:
                        outcomes.append(_page_failed(page, exc))
                        continue
                    # Something in the page's content: store it message by message instead.
                    db.execute("SAVEPOINT isolated")
                    seq_before = self._last_seq
                    try:
                        result, state = self._store_isolated(page, exc)
                    except Exception as again:
                        db.execute("ROLLBACK TO isolated")
                        db.execute("RELEASE isolated")
                        self._last_seq = seq_before
                        self._sessions.pop(page.session.id, None)
                        outcomes.append(_page_failed(page, again))
                        continue
                    db.execute("RELEASE isolated")
                outcomes.append(result)
                stored.append(state)
            db.execute("COMMIT")
        except Exception as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            # Nothing of the batch is stored: forget cached rows it changed, and its seqs.
            self._last_seq = first_seq
            for page in pages:
                self._sessions.pop(page.session.id, None)
            return [_page_failed(page, exc) for page in pages]
        for state in stored:
            if state.ended_at is None:
                self._sessions[state.session_id] = state
            else:
                # Ended sessions are rarely written again: keep the cache to the open ones.
                self._sessions.pop(state.session_id, None)
        return outcomes

    def _in_savepoint(self, page: Page) -> tuple[PageResult, SessionState]:
        """Store one page in a savepoint of its own: it stands or falls alone."""
        db = self._db
        db.execute("SAVEPOINT page")
        try:
            outcome = self._store_page_sync(page)
        except BaseException:
            db.execute("ROLLBACK TO page")
            db.execute("RELEASE page")
            self._sessions.pop(page.session.id, None)
            raise
        db.execute("RELEASE page")
        # Later pages of this batch build on it; a failed batch forgets both (see below).
        result, state = outcome
        self._sessions[page.session.id] = state
        if result.events:
            self._last_seq = result.events[-1].seq
        return outcome

    def _store_isolated(self, page: Page, cause: Exception) -> tuple[PageResult, SessionState]:
        """Store a page that failed one message at a time; those that fail become malformed."""
        refused: list[Malformed] = []
        results: list[PageResult] = []
        for message in page.messages:
            try:
                result, _ = self._in_savepoint(replace(page, messages=[message], malformed=()))
                results.append(result)
            except Exception as exc:
                if _transient(exc):
                    raise
                # Not pinned to its index: an index that broke the store is no place to trust.
                problem = f"message {message.index} cannot be stored: {exc!r}"
                refused.append(Malformed(problem, message.raw_json))
        log.warning("page_stored_one_by_one", session_id=page.session.id, error=repr(cause))
        last, state = self._in_savepoint(
            replace(page, messages=(), malformed=[*page.malformed, *refused])
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

    def _store_page_sync(self, page: Page) -> tuple[PageResult, SessionState]:
        """The statements of one page, inside the batch's transaction."""
        db = self._db
        txn = _Txn(now=utc_now())
        stored = self._load_session(page.session.id)
        if stored is not None and stored.purged:
            return PageResult([], stored.next_index, 0, 0, purged=True), stored
        state = self._upsert_session(txn, page, stored)
        duplicates, conflicts = self._insert_messages(txn, page, state)
        malformed_new = self._insert_malformed(txn, page, state)
        if page.end_reason is not None and state.ended_at is None:
            state.ended_at = txn.now
            self._add_session_event(txn, SessionEnded, state, "ended", reason=page.end_reason)
        db.execute(
            "UPDATE sessions SET state = ?, participants_json = ?, user_data_json = ?,"
            " last_seen_at = ?, ended_at = ?, next_index = ?, update_count = ?"
            " WHERE session_id = ?",
            (
                state.state,
                state.participants_json,
                state.user_data_json,
                txn.now,
                state.ended_at,
                state.next_index,
                state.update_count,
                state.session_id,
            ),
        )
        if txn.events:
            db.executemany(
                "INSERT INTO events (seq, event_id, type, session_id, message_index,"
                " occurred_at, payload_json) VALUES (?, ?, ?, ?, ?, ?, ?)",
                txn.events,
            )
        result = PageResult(txn.events, state.next_index, duplicates, conflicts, malformed_new)
        return result, state

    def _insert_malformed(self, txn: _Txn, page: Page, state: SessionState) -> int:
        """Record each malformed entry once; one pinned to an index moves the cursor past it."""
        new = 0
        for entry in page.malformed:
            raw = _storable(entry.raw_json)
            (changed,) = self._db.execute(
                "INSERT INTO malformed (session_id, problem, raw_json, received_at,"
                " message_index, account, digest) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (session_id, digest) DO UPDATE"
                " SET message_index = coalesce(message_index, excluded.message_index)"
                " WHERE message_index IS NULL AND excluded.message_index IS NOT NULL"
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

    def _upsert_session(self, txn: _Txn, page: Page, stored: SessionState | None) -> SessionState:
        snapshot = page.session
        if stored is None:
            state = SessionState(
                session_id=snapshot.id,
                account=page.account,
                state=snapshot.state,
                participants_json=snapshot.participants_json,
                user_data_json=snapshot.user_data_json,
                next_index=1,
                update_count=0,
                ended_at=None,
            )
            self._db.execute(
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
            self._add_session_event(txn, SessionStarted, state, "started")
            return state
        state = replace(stored)
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
            self._add_session_event(txn, SessionUpdated, state, kind, changed=changed)
        return state

    def _insert_messages(self, txn: _Txn, page: Page, state: SessionState) -> tuple[int, int]:
        """Insert what is new; count re-reads; record differing re-reads as conflicts."""
        first: dict[int, Message] = {}
        repeats: list[Message] = []  # the same index again within this page
        for message in page.messages:
            if message.index in first:
                repeats.append(message)
            else:
                first[message.index] = message
        unique = sorted(
            first.values(), key=lambda m: (m.index == TRANSCRIPT_SAVE_DONE_INDEX, m.index)
        )
        seen = [m for m in unique if self._maybe_stored(state, m.index)]
        stored = self._stored_messages(state.session_id, seen)
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
                self._record_conflict(txn, state, message)
        for message in repeats:
            if first[message.index].same_content(message):
                duplicates += 1
            else:
                conflicts += 1
                self._record_conflict(txn, state, message)
        if fresh:
            (last_rowid,) = self._db.execute(
                "SELECT coalesce(max(rowid), 0) FROM messages"
            ).fetchone()
            self._db.executemany(
                "INSERT INTO messages (session_id, message_index, type, text, url, from_type,"
                " from_nickname, from_participant_id, visibility, sent_at, raw_json, archived_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
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
                    )
                    for m in fresh
                ],
            )
            self._db.execute(
                "INSERT INTO messages_fts (rowid, text)"
                " SELECT rowid, text FROM messages WHERE rowid > ?",
                (last_rowid,),
            )
            for message in fresh:
                self._add_message_event(txn, state, message)
                if message.index == TRANSCRIPT_SAVE_DONE_INDEX:
                    state.has_transcript_saved = True
                else:
                    state.next_index = max(state.next_index, message.index + 1)
        return duplicates, conflicts

    def _record_conflict(self, txn: _Txn, state: SessionState, message: Message) -> None:
        self._db.execute(
            "INSERT INTO conflicts (session_id, message_index, raw_json, detected_at)"
            " VALUES (?, ?, ?, ?)",
            (state.session_id, message.index, message.raw_json, txn.now),
        )
        log.warning("message_conflict", session_id=state.session_id, message_index=message.index)

    @staticmethod
    def _maybe_stored(state: SessionState, index: int) -> bool:
        if index == TRANSCRIPT_SAVE_DONE_INDEX:
            return state.has_transcript_saved
        return index < state.next_index

    def _stored_messages(self, session_id: str, messages: list[Message]) -> dict[int, Message]:
        if not messages:
            return {}
        marks = ",".join("?" * len(messages))
        rows = self._db.execute(
            "SELECT message_index, type, text, url, from_type, from_nickname,"
            " from_participant_id, visibility, sent_at, raw_json FROM messages"
            f" WHERE session_id = ? AND message_index IN ({marks})",
            (session_id, *(m.index for m in messages)),
        )
        return {row[0]: Message(*row) for row in rows}

    def _next_seq(self, txn: _Txn) -> int:
        return (txn.events[-1].seq if txn.events else self._last_seq) + 1

    def _add_session_event(
        self, txn: _Txn, cls: type[SessionEvent], state: SessionState, kind: str, **extra: Any
    ) -> None:
        event = cls(
            event_id=lifecycle_event_id(state.session_id, kind),
            seq=self._next_seq(txn),
            session_id=state.session_id,
            occurred_at=txn.now,
            account=state.account,
            state=state.state,
            participants=orjson.loads(state.participants_json),
            user_data=orjson.loads(state.user_data_json),
            **extra,
        )
        payload = orjson.dumps(event.data()).decode()
        txn.events.append(
            EventRow(event.seq, event.event_id, cls.TYPE, state.session_id, None, txn.now, payload)
        )

    def _add_message_event(self, txn: _Txn, state: SessionState, message: Message) -> None:
        # Built as the row itself, not as a typed event first: this runs once per message.
        # The payload's keys are exactly the MessageEvent fields, so event_from_row reads it.
        data: dict[str, Any] = {
            "account": state.account,
            "index": message.index,
            "text": message.text,
            "url": message.url,
            "from_type": message.from_type,
            "from_nickname": message.from_nickname,
            "from_participant_id": message.from_participant_id,
            "visibility": message.visibility,
            "sent_at": message.sent_at,
        }
        if message.known_type:
            event_type = message.type
        else:
            event_type = Unknown.TYPE
            data["gws_type"] = message.type
            data["raw"] = orjson.loads(message.raw_json)
        txn.events.append(
            EventRow(
                self._next_seq(txn),
                message_event_id(state.session_id, message.index),
                event_type,
                state.session_id,
                message.index,
                message.sent_at or txn.now,
                orjson.dumps(data).decode(),
            )
        )
