"""The one place that opens SQLite connections to the archive, with one policy.

Every connection is in autocommit mode (transactions are explicit: ``BEGIN IMMEDIATE``), waits
``busy_timeout_s`` for a lock held by another connection, and uses ``synchronous = NORMAL``
(safe with WAL). A writing connection also sets WAL (the archive's journal mode, kept in the
file) when asked; a reading one opens the file read-only through a URI, so it can never write
and never creates a missing archive.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

import aiosqlite

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
