"""Team mode's rows: the monitored agents, who handled each session, and the known gaps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from archiver.store.db import Connection
from archiver.store.statements import record_agents

__all__ = ["GapRow", "agent_state", "known_gaps", "record_agents", "record_gap"]


@dataclass(frozen=True, slots=True)
class GapRow:
    """A session monitoring did not capture live."""

    session_id: str
    agent_id: str
    status: str  # gap, intruded
    detail: str | None


def agent_state(
    conn: Connection,
    agents: Sequence[tuple[str, str]],
    status: str,
    detail: str | None,
    now: str,
) -> None:
    """Record the monitoring status of these (agent id, user name) pairs."""
    conn.executemany(
        "INSERT INTO team_agents (agent_id, username, status, detail, updated_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (agent_id) DO UPDATE SET"
        " username = excluded.username, status = excluded.status, detail = excluded.detail,"
        " updated_at = excluded.updated_at",
        [(agent_id, username, status, detail, now) for agent_id, username in agents],
    )


def record_gap(conn: Connection, gap: GapRow, now: str) -> bool:
    """Record a gap (or a change of its status); True if the session was not recorded yet."""
    new = (
        conn.execute("SELECT 1 FROM team_gaps WHERE session_id = ?", (gap.session_id,)).fetchone()
        is None
    )
    conn.execute(
        "INSERT INTO team_gaps (session_id, agent_id, noticed_at, status, detail)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (session_id) DO UPDATE SET"
        " status = excluded.status, detail = excluded.detail",
        (gap.session_id, gap.agent_id, now, gap.status, gap.detail),
    )
    return new


def known_gaps(conn: Connection) -> list[GapRow]:
    """Every recorded gap, oldest first."""
    rows = conn.execute(
        "SELECT session_id, agent_id, status, detail FROM team_gaps ORDER BY noticed_at"
    ).fetchall()
    return [GapRow(*row) for row in rows]
