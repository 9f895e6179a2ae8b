"""Counts over the whole archive: ``gws-archiver stats`` and ``Archive.stats()``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from archiver.store.db import ReadConnection
from archiver.store.queries import fetch_rows


@dataclass(frozen=True, slots=True)
class ArchiveStats:
    """Counts over the whole archive (``None`` state or day is keyed ``"(none)"``)."""

    sessions: int
    held_sessions: int
    messages: int
    events: int
    conflicts: int
    malformed: int
    first_message_at: str | None
    last_message_at: str | None
    messages_by_type: dict[str, int]
    sessions_by_state: dict[str, int]
    messages_by_day: dict[str, int]
    sessions_by_reconciliation: dict[str, int]  # ended sessions; "(none)": not checked yet
    unverified_tails: int  # ended sessions whose log end could not be read nor checked

    def to_json(self) -> dict[str, Any]:
        """The counts as one JSON object."""
        return {
            "sessions": self.sessions,
            "held_sessions": self.held_sessions,
            "messages": self.messages,
            "events": self.events,
            "conflicts": self.conflicts,
            "malformed": self.malformed,
            "first_message_at": self.first_message_at,
            "last_message_at": self.last_message_at,
            "messages_by_type": self.messages_by_type,
            "sessions_by_state": self.sessions_by_state,
            "messages_by_day": self.messages_by_day,
            "sessions_by_reconciliation": self.sessions_by_reconciliation,
            "unverified_tails": self.unverified_tails,
        }


async def archive_stats(conn: ReadConnection) -> ArchiveStats:
    """Counts per message type, session state and day (UTC, by ``sent_at``)."""

    async def counts(sql: str) -> dict[str, int]:
        return {
            "(none)" if key is None else str(key): count
            for key, count in await fetch_rows(conn, sql)
        }

    rows = await fetch_rows(
        conn,
        "SELECT (SELECT count(*) FROM sessions),"
        " (SELECT count(*) FROM sessions WHERE legal_hold = 1),"
        " (SELECT count(*) FROM messages), (SELECT count(*) FROM events),"
        " (SELECT count(*) FROM conflicts), (SELECT count(*) FROM malformed),"
        " (SELECT min(sent_at) FROM messages), (SELECT max(sent_at) FROM messages)",
    )
    sessions, held, messages, events, conflicts, malformed, first, last = rows[0]
    return ArchiveStats(
        sessions=sessions,
        held_sessions=held,
        messages=messages,
        events=events,
        conflicts=conflicts,
        malformed=malformed,
        first_message_at=first,
        last_message_at=last,
        messages_by_type=await counts(
            "SELECT type, count(*) FROM messages GROUP BY type ORDER BY count(*) DESC, type"
        ),
        sessions_by_state=await counts(
            "SELECT state, count(*) FROM sessions GROUP BY state ORDER BY count(*) DESC, state"
        ),
        messages_by_day=await counts(
            "SELECT substr(sent_at, 1, 10) AS day, count(*) FROM messages GROUP BY day ORDER BY day"
        ),
        sessions_by_reconciliation=await counts(
            "SELECT r.status, count(*) FROM sessions s LEFT JOIN reconciliations r"
            " USING (session_id) WHERE s.ended_at IS NOT NULL GROUP BY r.status"
            " ORDER BY count(*) DESC, r.status"
        ),
        unverified_tails=(
            await fetch_rows(
                conn,
                "SELECT count(*) FROM sessions s LEFT JOIN reconciliations r USING (session_id)"
                " WHERE s.tail = 'unverified'"
                " AND coalesce(r.status, '') NOT IN ('verified', 'filled', 'different')",
            )
        )[0][0],
    )
