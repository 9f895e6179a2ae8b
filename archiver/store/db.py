"""The one place that opens connections to the archive (SQLite or PostgreSQL), with one policy.

Every connection is in autocommit mode (transactions are explicit: ``BEGIN IMMEDIATE``), waits
``busy_timeout_s`` for a lock held by another connection, and uses ``synchronous = NORMAL``
(safe with WAL). A writing connection also sets WAL (the archive's journal mode, kept in the
file) when asked; a reading one opens the file read-only through a URI, so it can never write
and never creates a missing archive.

Work on a connection that lives longer than one call goes through :class:`DatabaseThread`: one
connection on one worker thread of its own, and every use a function of that connection,
``await db.run(fn, *args)`` (datasette's ``execute_write_fn``). The writer, the delivery store
and retention each hold one; :func:`transaction` is their ``BEGIN IMMEDIATE ... COMMIT``.
Opening one with ``migrated`` is the one place the schema is brought up to date.

An archive is an :data:`ArchiveLocation`: an SQLite file's ``Path`` (the default) or a
:class:`~archiver.store.postgres.PostgresArchive`. A PostgreSQL connection has the same face
(:class:`~archiver.store.postgres.PgConnection`); a broken one is opened again on the next call,
so a server that went away and came back costs the calls made meanwhile, never the thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar
from urllib.parse import quote

import aiosqlite
import psycopg

from archiver.errors import ArchiveUnreachableError, StoreError
from archiver.lifecycle import Resource
from archiver.store import postgres
from archiver.store.files import create_private
from archiver.store.migrate import migrate
from archiver.store.postgres import PgAsyncConnection, PgConnection, PostgresArchive

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_BUSY_TIMEOUT_S = 10.0

ArchiveLocation = Path | PostgresArchive
Connection = sqlite3.Connection | PgConnection
ReadConnection = aiosqlite.Connection | PgAsyncConnection
# What a failing statement raises, whichever the engine.
DATABASE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error)
# Trouble of the database (busy, locked, I/O, gone), not of what was being stored.
TRANSIENT_ERRORS = (
    sqlite3.OperationalError,
    sqlite3.InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg.errors.SerializationFailure,
    psycopg.errors.DeadlockDetected,
    psycopg.errors.AdminShutdown,
)


def read_only_uri(path: Path) -> str:
    """The ``file:`` URI that opens ``path`` read-only."""
    return f"file:{quote(str(path.absolute()))}?mode=ro"


def connect(
    path: ArchiveLocation,
    *,
    busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
    read_only: bool = False,
    wal: bool = False,
    threaded: bool = False,
) -> Connection:
    """A connection under the archive's policy; ``threaded`` lets a worker thread use it."""
    if isinstance(path, PostgresArchive):
        pg = open_postgres(path)
        if read_only:
            pg.execute("SET default_transaction_read_only = on")
        return pg
    if read_only:
        conn = sqlite3.connect(
            read_only_uri(path),
            uri=True,
            isolation_level=None,
            timeout=busy_timeout_s,
            check_same_thread=not threaded,
        )
    else:
        conn = sqlite3.connect(
            path, isolation_level=None, timeout=busy_timeout_s, check_same_thread=not threaded
        )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        if wal:
            conn.execute("PRAGMA journal_mode = WAL")
        if not read_only:
            conn.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn


def open_postgres(archive: PostgresArchive) -> PgConnection:
    """A connection to a PostgreSQL archive; an unreachable server is a StoreError."""
    try:
        return postgres.connect(archive)
    except psycopg.Error as exc:
        problem = _first_line(exc)
        raise ArchiveUnreachableError(f"cannot open the archive {archive}: {problem}") from exc


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


async def connect_async(
    path: Path, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S
) -> aiosqlite.Connection:
    """A read-only aiosqlite connection under the same policy (the async read paths)."""
    conn = await aiosqlite.connect(read_only_uri(path), uri=True, timeout=busy_timeout_s)
    try:
        await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
    except BaseException:
        await conn.close()
        raise
    return conn


def location_of(value: str | Path) -> ArchiveLocation:
    """A ``postgresql://`` URL or an SQLite file's path, as the store's location."""
    if isinstance(value, str) and postgres.is_url(value):
        return PostgresArchive(value)
    return Path(value)


def missing(location: ArchiveLocation) -> bool:
    """Whether an SQLite archive's file is absent (a PostgreSQL one is known only by opening)."""
    return isinstance(location, Path) and not location.is_file()


def has_table(conn: Connection, name: str) -> bool:
    """Whether the archive has the table ``name`` (an older schema may not)."""
    if isinstance(conn, PgConnection):
        return bool(conn.execute("SELECT to_regclass(?) IS NOT NULL", (name,)).fetchone()[0])
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return found is not None


def transaction(
    conn: Connection,
    fn: Callable[Concatenate[Connection, P], T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """Run ``fn(conn, *args)`` inside ``BEGIN IMMEDIATE ... COMMIT``; any failure rolls it back."""
    try:
        conn.execute("BEGIN" if isinstance(conn, PgConnection) else "BEGIN IMMEDIATE")
        result = fn(conn, *args, **kwargs)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction and not getattr(conn, "closed", False):
            conn.execute("ROLLBACK")
        raise
    return result


class DatabaseThread(Resource):
    """One connection to the archive on one worker thread of its own; an async context manager.

    Calls run one at a time, in the order they were made. ``create`` makes a missing archive
    (its folder too, the file 0600) and keeps it in WAL mode; without it the archive must exist.
    ``migrated`` brings its schema up to date on open, ``on_open(conn)`` checks or reads what
    its owner needs. An ``sqlite3`` error becomes a :class:`StoreError`: on open, "cannot open
    the archive"; in ``run``, ``failure`` (by default naming ``name`` and the path).
    """

    def __init__(
        self,
        path: ArchiveLocation,
        *,
        name: str,
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
        create: bool = False,
        migrated: bool = False,
        on_open: Callable[[Connection], None] | None = None,
        failure: str | None = None,
    ) -> None:
        self.path = path
        self.name = name
        self.busy_timeout_s = busy_timeout_s
        self.create = create
        self.migrated = migrated
        self.on_open = on_open
        self.failure = failure or f"the {name} failed on {path}"
        self._executor: ThreadPoolExecutor | None = None
        self._conn: Connection | None = None  # set and used on the thread only
        self._closed = False

    async def open(self) -> None:
        """Start the thread and open the connection on it."""
        if self._closed:
            raise StoreError(f"the {self.name} is closed")
        if self._executor is not None:
            return
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name.replace(" ", "-"))
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._open_sync)
        except BaseException as exc:
            # Cancelled, the open may still be running: the close queued behind it undoes it.
            executor.submit(self._close_sync)
            executor.shutdown(wait=isinstance(exc, Exception))
            raise
        self._executor = executor

    async def close(self) -> None:
        """Close the connection (after the calls already made) and end the thread; safe twice."""
        self._closed = True
        executor, self._executor = self._executor, None
        if executor is None:
            return
        closed = executor.submit(self._close_sync)
        executor.shutdown(wait=False)
        # Shielded: a second cancellation must not leave the connection open.
        await asyncio.shield(asyncio.wrap_future(closed))

    async def run(
        self,
        fn: Callable[Concatenate[Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``fn(conn, *args)`` on the thread and return what it returns."""
        if self._executor is None or self._closed:
            raise StoreError(f"the {self.name} is not open")
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, lambda: self._call_sync(fn, *args, **kwargs)
        )

    def _call_sync(
        self,
        fn: Callable[Concatenate[Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        conn = self._conn
        if isinstance(self.path, PostgresArchive) and (
            conn is None or (isinstance(conn, PgConnection) and conn.closed)
        ):
            # Broken, or not reopened yet (the server was away): try again now.
            self._close_sync()
            self._open_sync()
        if self._conn is None:
            raise StoreError(f"the {self.name} is not open")
        try:
            return fn(self._conn, *args, **kwargs)
        except DATABASE_ERRORS as exc:
            raise StoreError(f"{self.failure}: {exc}") from exc

    def _open_sync(self) -> None:
        if isinstance(self.path, PostgresArchive):
            self._conn = self._prepared(open_postgres(self.path), self.path)
            return
        path = self.path
        try:
            if self.create:
                path.parent.mkdir(parents=True, exist_ok=True)
                create_private(path)
            elif not path.is_file():
                raise StoreError(f"no archive at {path}")
            conn = connect(path, busy_timeout_s=self.busy_timeout_s, wal=self.create, threaded=True)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the archive {path}: {exc}") from exc
        self._conn = self._prepared(conn, path)

    def _prepared(self, conn: Connection, location: ArchiveLocation) -> Connection:
        """``conn`` migrated and checked as asked; closed if that fails."""
        try:
            if self.migrated:
                migrate(conn)
            if self.on_open is not None:
                self.on_open(conn)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, DATABASE_ERRORS):
                raise StoreError(f"cannot open the archive {location}: {exc}") from exc
            raise
        return conn

    def _close_sync(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
