"""The writer's view of the ``sessions`` rows: what a page is stored against.

The writer is the only code that changes a session row, so it keeps the rows of the sessions it
works on in memory (:class:`SessionCache`, used on the writer's thread only), and loads the rest
on first use. A session that retention purged has no row but a tombstone in ``purged_sessions``;
it loads as a state with ``purged`` set, and nothing of it is archived again.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace

from archiver.gws.models import SmsSession
from archiver.store.db import Connection


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
    view_count: int = 0  # views the session has had (serials 1..view_count)
    views: dict[str, int] = field(default_factory=dict)  # open views: account -> serial
    tail: str | None = None  # 'drained' or 'unverified' once ended

    @classmethod
    def first_seen(cls, account: str, session: SmsSession) -> SessionState:
        """The state of a session not archived before, as GWS lists it now."""
        return cls(
            session.id,
            account,
            session.state,
            session.participants_json,
            session.user_data_json,
            next_index=1,
            update_count=0,
            ended_at=None,
        )

    def snapshot(self) -> SmsSession:
        """The session as last stored."""
        return SmsSession(self.session_id, self.state, self.participants_json, self.user_data_json)

    def copy(self) -> SessionState:
        """A copy whose views can change without changing this state's."""
        return replace(self, views=dict(self.views))


class SessionCache:
    """Session states by id: those loaded, and those stored that are still open."""

    def __init__(self) -> None:
        self._states: dict[str, SessionState] = {}

    def load(self, conn: Connection, session_id: str) -> SessionState | None:
        """The state of a session (cached, else from its row or tombstone); None if never seen."""
        cached = self._states.get(session_id)
        if cached is not None:
            return cached
        state = _load_row(conn, session_id) or _load_tombstone(conn, session_id)
        if state is not None and not state.purged:
            self._states[session_id] = state
        return state

    def load_many(self, conn: Connection, session_ids: Sequence[str]) -> dict[str, SessionState]:
        """The states of those sessions that were ever archived."""
        return {sid: state for sid in session_ids if (state := self.load(conn, sid))}

    def open_sessions(
        self, conn: Connection, configured: Collection[str], account: str | None
    ) -> list[SessionState]:
        """Copies of the states of the sessions not yet ended that ``account`` has open, or
        that no ``configured`` account has open and ``account`` had last (``account`` None:
        that no configured account has open or had last); read afresh from the archive
        (another daemon may have changed them)."""
        open_by: dict[str, set[str | None]] = {}  # None: no view open
        last: dict[str, str] = {}
        rows = conn.execute(
            "SELECT s.session_id, s.account, v.account FROM sessions s LEFT JOIN session_views v"
            " ON v.session_id = s.session_id AND v.left_at IS NULL WHERE s.ended_at IS NULL"
        )
        for session_id, last_account, viewer in rows:
            last[session_id] = last_account
            open_by.setdefault(session_id, set()).add(viewer)
        known = set(configured)

        def held(session_id: str) -> bool:
            viewing = open_by[session_id] & known
            if viewing:
                return account in viewing
            return last[session_id] == account if account else last[session_id] not in known

        chosen = [session_id for session_id in open_by if held(session_id)]
        for session_id in chosen:
            self.forget(session_id)
        return [state.copy() for sid in chosen if (state := self.load(conn, sid)) is not None]

    def keep(self, state: SessionState) -> None:
        """Remember ``state`` as its session's current one."""
        self._states[state.session_id] = state

    def clear(self) -> None:
        """Forget every cached state (another writer may have changed their rows)."""
        self._states.clear()

    def forget(self, session_id: str) -> None:
        """Drop what is cached of a session (its row is read again when next needed)."""
        self._states.pop(session_id, None)

    def committed(self, states: Iterable[SessionState]) -> None:
        """Keep the states a commit stored, as far as their sessions are still open."""
        for state in states:
            if state.ended_at is None:
                self.keep(state)
            else:
                # Ended sessions are rarely written again: keep the cache to the open ones.
                self.forget(state.session_id)


def _load_row(conn: Connection, session_id: str) -> SessionState | None:
    row = conn.execute(
        "SELECT session_id, account, state, participants_json, user_data_json, next_index,"
        " update_count, ended_at,"
        " EXISTS (SELECT 1 FROM messages m"
        "         WHERE m.session_id = s.session_id AND m.message_index = -1),"
        " view_count, tail"
        " FROM sessions s WHERE session_id = ?",
        (session_id,),
    ).fetchone()
    if row is None:
        return None
    sid, account, state_name, participants, user_data, next_index, updates, ended = row[:8]
    views = dict(
        conn.execute(
            "SELECT account, serial FROM session_views"
            " WHERE session_id = ? AND left_at IS NULL ORDER BY serial",
            (session_id,),
        ).fetchall()
    )
    return SessionState(
        sid,
        account,
        state_name,
        participants,
        user_data,
        next_index,
        updates,
        ended,
        bool(row[8]),
        view_count=row[9],
        views=views,
        tail=row[10],
    )


def _load_tombstone(conn: Connection, session_id: str) -> SessionState | None:
    row = conn.execute(
        "SELECT purged_at FROM purged_sessions WHERE session_id = ?", (session_id,)
    ).fetchone()
    if row is None:
        return None
    return SessionState(session_id, "", None, "[]", "{}", 1, 0, row[0], purged=True)
