"""The ``runs`` table: one row per daemon process, written at start and updated at stop.

A row still ``running`` whose process is gone was a crash: the next start on the same host marks
it ``crashed`` and fills in what the archive's events tell about it. Every statement runs on a
short-lived connection in a worker thread, so the event loop never waits on SQLite.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

import structlog

from archiver.errors import StoreError
from archiver.instants import utc_now
from archiver.store.db import (
    DATABASE_ERRORS,
    DEFAULT_BUSY_TIMEOUT_S,
    ArchiveLocation,
    Connection,
    connect,
    has_table,
    transaction,
)

log = structlog.get_logger()

RUN_STATUSES = ("running", "clean", "failed", "crashed")
_COLUMNS = (
    "run_id, started_at, stopped_at, status, version, config_hash, hostname, pid, first_seq,"
    " last_seq, messages_archived, duplicates, conflicts, malformed, errors, sessions_ended, error"
)


class RunTotals(Protocol):
    """The counters a daemon keeps for the run (archiver.state.PollStats provides them)."""

    messages_archived: int
    duplicates: int
    conflicts: int
    malformed: int
    errors: int
    sessions_ended: int


@dataclass(frozen=True, slots=True)
class Run:
    """One ``runs`` row; counts are None where they are not known (a crash, a running run)."""

    run_id: int
    started_at: str
    stopped_at: str | None
    status: str
    version: str
    config_hash: str
    hostname: str
    pid: int
    first_seq: int
    last_seq: int | None
    messages_archived: int | None
    duplicates: int | None
    conflicts: int | None
    malformed: int | None
    errors: int | None
    sessions_ended: int | None
    error: str | None

    @property
    def events(self) -> int | None:
        """Events the run committed, when its last seq is known."""
        return None if self.last_seq is None else self.last_seq - self.first_seq

    @property
    def gone(self) -> bool:
        """A ``running`` row on this host whose process no longer exists (not yet marked)."""
        return (
            self.status == "running"
            and self.hostname == socket.gethostname()
            and not process_alive(self.pid)
        )


class RunRecorder:
    """Records this process's run: a row on enter, its outcome on exit (an async context manager).

    Exit by cancellation (SIGTERM, SIGINT) or normally is ``clean``; by an exception, ``failed``.
    """

    def __init__(
        self,
        path: ArchiveLocation,
        *,
        version: str,
        config_hash: str,
        totals: RunTotals,
        last_seq: Callable[[], int],
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
    ) -> None:
        self.path = path
        self.version = version
        self.config_hash = config_hash
        self.totals = totals
        self.last_seq = last_seq
        self.busy_timeout_s = busy_timeout_s
        self.run_id: int | None = None

    async def __aenter__(self) -> RunRecorder:
        self.run_id = await asyncio.to_thread(
            start_run,
            self.path,
            self.version,
            self.config_hash,
            self.last_seq(),
            busy_timeout_s=self.busy_timeout_s,
        )
        log.info("run_started", run_id=self.run_id, config_hash=self.config_hash)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.run_id is None:
            return
        clean = exc_type is None or issubclass(exc_type, asyncio.CancelledError)
        error = None if clean else f"{type(exc).__name__}: {exc}"
        try:
            await asyncio.to_thread(
                stop_run,
                self.path,
                self.run_id,
                self.totals,
                self.last_seq(),
                error,
                busy_timeout_s=self.busy_timeout_s,
            )
        except StoreError as failure:
            # The run itself is over; a missing stop record must not hide why it ended.
            log.warning("run_record_failed", run_id=self.run_id, error=str(failure))
        else:
            log.info("run_stopped", run_id=self.run_id, status="clean" if clean else "failed")


def start_run(
    path: ArchiveLocation,
    version: str,
    config_hash: str,
    first_seq: int,
    *,
    busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
) -> int:
    """Mark this host's dead ``running`` rows as crashed, then insert this run; return its id."""
    with closing(_connect(path, busy_timeout_s)) as conn:
        try:
            return transaction(conn, _insert_run, version, config_hash, first_seq)
        except DATABASE_ERRORS as exc:
            raise StoreError(f"cannot record the run in {path}: {exc}") from exc


def stop_run(
    path: ArchiveLocation,
    run_id: int,
    totals: RunTotals,
    last_seq: int,
    error: str | None = None,
    *,
    busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
) -> None:
    """Record the end of run ``run_id``: ``clean``, or ``failed`` with ``error``."""
    with closing(_connect(path, busy_timeout_s)) as conn:
        try:
            conn.execute(
                "UPDATE runs SET stopped_at = ?, status = ?, last_seq = ?, messages_archived = ?,"
                " duplicates = ?, conflicts = ?, malformed = ?, errors = ?, sessions_ended = ?,"
                " error = ? WHERE run_id = ?",
                (
                    utc_now(),
                    "clean" if error is None else "failed",
                    last_seq,
                    totals.messages_archived,
                    totals.duplicates,
                    totals.conflicts,
                    totals.malformed,
                    totals.errors,
                    totals.sessions_ended,
                    error,
                    run_id,
                ),
            )
        except DATABASE_ERRORS as exc:
            raise StoreError(f"cannot record the end of run {run_id} in {path}: {exc}") from exc


def recent_runs(path: ArchiveLocation, limit: int = 5) -> list[Run]:
    """The newest ``limit`` runs, newest first, through a read-only connection."""
    try:
        with closing(connect(path, read_only=True)) as conn:
            if not has_table(conn, "runs"):
                return []  # written by a version before runs were recorded
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM runs ORDER BY run_id DESC LIMIT ?", (limit,)
            ).fetchall()
    except DATABASE_ERRORS as exc:
        raise StoreError(f"cannot read the runs of {path}: {exc}") from exc
    return [Run(*row) for row in rows]


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def _connect(path: ArchiveLocation, busy_timeout_s: float) -> Connection:
    try:
        conn = connect(path, busy_timeout_s=busy_timeout_s)
    except DATABASE_ERRORS as exc:
        raise StoreError(f"cannot open the archive {path}: {exc}") from exc
    return conn


def _insert_run(conn: Connection, version: str, config_hash: str, first_seq: int) -> int:
    """Mark this host's dead runs crashed and insert this one (inside one transaction)."""
    _mark_crashed(conn)
    (run_id,) = conn.execute(
        "INSERT INTO runs (started_at, status, version, config_hash, hostname, pid,"
        " first_seq) VALUES (?, 'running', ?, ?, ?, ?, ?) RETURNING run_id",
        (utc_now(), version, config_hash, socket.gethostname(), os.getpid(), first_seq),
    ).fetchone()
    return int(run_id)


def _mark_crashed(conn: Connection) -> None:
    """Close the rows of this host's runs whose process is gone, from what their events say."""
    host, me = socket.gethostname(), os.getpid()
    rows = conn.execute(
        "SELECT run_id, pid, first_seq FROM runs WHERE status = 'running' AND hostname = ?",
        (host,),
    ).fetchall()
    for run_id, pid, first_seq in rows:
        # Our own pid on an old row means a previous run in this process or container.
        if pid != me and process_alive(pid):
            continue
        (last_seq,) = conn.execute(
            "SELECT coalesce((SELECT min(first_seq) FROM runs WHERE run_id > ?),"
            " (SELECT coalesce(max(seq), 0) FROM events))",
            (run_id,),
        ).fetchone()
        (messages, ended) = conn.execute(
            "SELECT count(message_index), count(CASE WHEN type = 'SessionEnded' THEN 1 END)"
            " FROM events WHERE seq > ? AND seq <= ?",
            (first_seq, last_seq),
        ).fetchone()
        conn.execute(
            "UPDATE runs SET status = 'crashed', last_seq = ?, messages_archived = ?,"
            " sessions_ended = ? WHERE run_id = ?",
            (last_seq, messages, ended, run_id),
        )
        log.warning("run_crashed", run_id=run_id, pid=pid, events=last_seq - first_seq)
