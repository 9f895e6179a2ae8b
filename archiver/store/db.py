"""The one place that opens SQLite connections to the archive, with one policy.

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

from archiver.errors import StoreError
from archiver.lifecycle import Resource
from archiver.store.files import create_private
from archiver.store.migrate import migrate

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_BUSY_TIMEOUT_S = 10.0


def read_only_uri(path: Path) -> str:
    """The ``file:`` URI that opens ``path`` read-only."""
    return f"file:{quote(str(path.absolute()))}?mode=ro"


def connect(
    path: Path,
    *,
    busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
    read_only: bool = False,
    wal: bool = False,
    threaded: bool = False,
) -> sqlite3.Connection:
    """A connection under the archive's policy; ``threaded`` lets a worker thread use it."""
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


def transaction(
    conn: sqlite3.Connection,
    fn: Callable[Concatenate[sqlite3.Connection, P], T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """Run ``fn(conn, *args)`` inside ``BEGIN IMMEDIATE ... COMMIT``; any failure rolls it back."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        result = fn(conn, *args, **kwargs)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
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
        path: Path,
        *,
        name: str,
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
        create: bool = False,
        migrated: bool = False,
        on_open: Callable[[sqlite3.Connection], None] | None = None,
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
        self._conn: sqlite3.Connection | None = None  # set and used on the thread only
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
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
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
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        if self._conn is None:
            raise StoreError(f"the {self.name} is not open")
        try:
            return fn(self._conn, *args, **kwargs)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.failure}: {exc}") from exc

    def _open_sync(self) -> None:
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
        try:
            if self.migrated:
                migrate(conn)
            if self.on_open is not None:
                self.on_open(conn)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"cannot open the archive {path}: {exc}") from exc
            raise
        self._conn = conn

    def _close_sync(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
