"""Leases in a PostgreSQL archive: which daemon holds which piece of work, for how long.

Each piece of work (an account's polling, the hook deliveries, the reconciler, retention) is
a row of ``leases`` held by at most one daemon until ``expires_at``; each daemon has a row of
``daemons`` saying it is alive until its own ``expires_at``. Both times are the server's
(``now()``), so the daemons' clocks need not agree. One :func:`claim` round, in one
transaction, renews this daemon's heartbeat and its leases and takes free or expired leases up
to its fair share (the work divided by the live daemons, rounded up); what it holds beyond that
share it gives back once that work has stopped, so that a daemon that joins gets work and one
that stops leaves its work to the others.

Lease rows rather than advisory locks: an advisory lock lives as long as the server believes
its connection does, which for a daemon cut off by the network is TCP's keep-alive time
(minutes or hours), while a lease row expires on the server's clock after ``ttl`` seconds
whatever happened to its holder; rows can also be read (``status``, ``/metrics``) and pass
through poolers in transaction mode.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from archiver.store.db import Connection, transaction


@dataclass(frozen=True, slots=True)
class Lease:
    """One lease row, as ``status`` shows it."""

    name: str
    holder: str | None
    expires_in_s: float | None  # None when free; negative once expired
    takeovers: int


def claim(
    conn: Connection,
    daemon_id: str,
    hostname: str,
    pid: int,
    names: Sequence[str],
    ttl_s: float,
) -> tuple[set[str], int]:
    """One round, in one transaction: heartbeat, renew, take up to the fair share; the leases
    held afterwards and the share (what is held beyond it, the caller gives back once its
    work has stopped: :func:`release`)."""
    return transaction(conn, lambda db: _claim(db, daemon_id, hostname, pid, names, ttl_s))


def _claim(
    conn: Connection, daemon_id: str, hostname: str, pid: int, names: Sequence[str], ttl_s: float
) -> tuple[set[str], int]:
    ttl = f"{ttl_s} seconds"
    conn.execute(
        "INSERT INTO daemons (daemon_id, hostname, pid, started_at, seen_at, expires_at)"
        " VALUES (?, ?, ?, now(), now(), now() + ?::interval) ON CONFLICT (daemon_id)"
        " DO UPDATE SET seen_at = now(), expires_at = excluded.expires_at",
        (daemon_id, hostname, pid, ttl),
    )
    # Daemons that died without leaving are forgotten a day later.
    conn.execute("DELETE FROM daemons WHERE expires_at < now() - interval '1 day'")
    conn.executemany(
        "INSERT INTO leases (name) VALUES (?) ON CONFLICT DO NOTHING", [(n,) for n in names]
    )
    held = {
        row[0]
        for row in conn.execute(
            "UPDATE leases SET expires_at = now() + ?::interval"
            " WHERE holder = ? AND name = ANY(?) AND expires_at > now() RETURNING name",
            (ttl, daemon_id, list(names)),
        )
    }
    (live,) = conn.execute("SELECT count(*) FROM daemons WHERE expires_at > now()").fetchone()
    share = math.ceil(len(names) / max(int(live), 1))
    if len(held) < share:
        taken = conn.execute(
            "UPDATE leases SET holder = ?, acquired_at = now(), expires_at = now() + ?::interval,"
            " takeovers = takeovers + (holder IS NOT NULL)::int"
            " WHERE name IN (SELECT name FROM leases WHERE name = ANY(?)"
            "  AND (holder IS NULL OR expires_at <= now())"
            "  ORDER BY name LIMIT ? FOR UPDATE SKIP LOCKED) RETURNING name",
            (daemon_id, ttl, list(names), share - len(held)),
        )
        held.update(row[0] for row in taken)
    return held, share


def release(conn: Connection, daemon_id: str, names: Sequence[str]) -> None:
    """Give leases back at once."""
    transaction(
        conn,
        lambda db: db.execute(
            "UPDATE leases SET holder = NULL, expires_at = NULL WHERE holder = ? AND name = ANY(?)",
            (daemon_id, list(names)),
        ),
    )


def leave(conn: Connection, daemon_id: str) -> None:
    """A clean stop: every lease given back and the daemon's row gone."""

    def work(db: Connection) -> None:
        db.execute(
            "UPDATE leases SET holder = NULL, expires_at = NULL WHERE holder = ?", (daemon_id,)
        )
        db.execute("DELETE FROM daemons WHERE daemon_id = ?", (daemon_id,))

    transaction(conn, work)


def committed_seq(conn: Connection) -> int:
    """The newest event seq any daemon committed."""
    (value,) = conn.execute("SELECT value FROM archive_counters WHERE name = 'events'").fetchone()
    return int(value)


def leases(conn: Connection) -> list[Lease]:
    """Every lease, by name."""
    rows = conn.execute(
        "SELECT name, holder, extract(epoch FROM expires_at - now())::float8, takeovers"
        " FROM leases ORDER BY name"
    ).fetchall()
    return [
        Lease(name, holder, expires, int(takeovers)) for name, holder, expires, takeovers in rows
    ]
