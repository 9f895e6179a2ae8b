"""The PostgreSQL archive: where it is, and connections that speak the store's SQL.

The store's statements are written once, in the SQL both engines share (``?`` placeholders,
``ON CONFLICT``, ``RETURNING``, row values); the few that differ ask :func:`is_postgres`.
:class:`PgConnection` gives a psycopg connection the face of an ``sqlite3.Connection`` that
the store's functions use (``execute``, ``executemany``, ``in_transaction``), turning ``?``
into psycopg's ``%s`` once per distinct statement; :class:`PgAsyncConnection` gives an async
one the face of an ``aiosqlite.Connection`` (``execute_fetchall``) for the read paths.

Both run in autocommit mode, like the SQLite connections: transactions are explicit
(``BEGIN ... COMMIT``, savepoints inside). Text is stored as PostgreSQL ``text``, which cannot
hold U+0000 or lone surrogates: :class:`_SafeText` writes those as U+FFFD (the exact payload
stays in ``raw_json``, where JSON escapes them).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import TransactionStatus

URL_SCHEMES = ("postgresql", "postgres")
# Any connection the store opens gives up on an unreachable server after this long.
CONNECT_TIMEOUT_S = 10


@dataclass(frozen=True, slots=True)
class PostgresArchive:
    """An archive in a PostgreSQL database, by its ``postgresql://`` URL."""

    url: str

    def __str__(self) -> str:
        """The URL with its password masked (for messages and logs)."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def is_url(value: str) -> bool:
    """Whether ``value`` names a PostgreSQL archive rather than an SQLite file."""
    return value.split("://", 1)[0] in URL_SCHEMES and "://" in value


def is_postgres(conn: object) -> bool:
    """Whether a store connection is PostgreSQL's."""
    return isinstance(conn, PgConnection | PgAsyncConnection)


_REPLACEMENT = "\ufffd".encode()
_TOKENS = re.compile(r"'(?:[^']|'')*'|\?|%")


@functools.lru_cache(maxsize=1024)
def to_psycopg(sql: str) -> str:
    """``?`` placeholders as ``%s`` and a literal ``%`` as ``%%``; quoted strings untouched."""

    def swap(match: re.Match[str]) -> str:
        token = match.group(0)
        return "%s" if token == "?" else "%%" if token == "%" else token

    return _TOKENS.sub(swap, sql)


class _SafeText(Dumper):
    """A ``str`` as UTF-8 text PostgreSQL accepts: NUL and lone surrogates become U+FFFD."""

    oid = psycopg.adapters.types["text"].oid

    def dump(self, obj: str) -> bytes:
        try:
            data = obj.encode("utf-8")
        except UnicodeEncodeError:
            data = obj.encode("utf-8", "surrogatepass").decode("utf-8", "replace").encode()
        return _without_nul(data)


class _SafeBytes(Dumper):
    """``bytes`` (raw text kept as its code units) as text: decoded, the undecodable replaced."""

    oid = psycopg.adapters.types["text"].oid

    def dump(self, obj: bytes) -> bytes:
        return _without_nul(bytes(obj).decode("utf-8", "replace").encode())


def _without_nul(data: bytes) -> bytes:
    return data.replace(b"\x00", _REPLACEMENT) if b"\x00" in data else data


def _configure(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    conn.adapters.register_dumper(str, _SafeText)
    conn.adapters.register_dumper(bytes, _SafeBytes)


def connect(archive: PostgresArchive) -> PgConnection:
    """A synchronous connection in autocommit mode (the store's threads use these)."""
    conn = psycopg.connect(archive.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
    _configure(conn)
    return PgConnection(conn)


async def connect_async(archive: PostgresArchive) -> PgAsyncConnection:
    """An asynchronous, read-only connection in autocommit mode (the read paths use these)."""
    conn = PgAsyncConnection(archive)
    await conn.open()
    return conn


class PgConnection:
    """A psycopg connection with the ``sqlite3.Connection`` methods the store calls."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.raw = conn

    # Typed Any, like sqlite3's rows: a cursor's rows are whatever the statement selects.
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.raw.execute(to_psycopg(sql), params or None)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        cursor = self.raw.cursor()
        cursor.executemany(to_psycopg(sql), rows)
        return cursor

    def executescript(self, sql: str) -> None:
        """Several statements without parameters, as one simple query."""
        self.raw.execute(sql.encode())

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != TransactionStatus.IDLE

    @property
    def closed(self) -> bool:
        return self.raw.closed or self.raw.broken

    def close(self) -> None:
        self.raw.close()


class PgAsyncConnection:
    """A read-only psycopg async connection with the ``aiosqlite.Connection`` method the reads
    call; one that broke (the server restarted, the network failed) is opened again by the
    next read, so a reader outlives the outage that failed its reads meanwhile."""

    def __init__(self, archive: PostgresArchive) -> None:
        self.archive = archive
        self._raw: psycopg.AsyncConnection[Any] | None = None

    async def open(self) -> None:
        raw = await psycopg.AsyncConnection.connect(
            self.archive.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
        )
        try:
            _configure(raw)
            await raw.execute("SET default_transaction_read_only = on")
        except BaseException:
            await raw.close()
            raise
        self._raw = raw

    async def execute_fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        if self._raw is None or self._raw.broken or self._raw.closed:
            await self.close()
            await self.open()
        assert self._raw is not None
        cursor = await self._raw.execute(to_psycopg(sql), params or None)
        return await cursor.fetchall() if cursor.description is not None else []

    async def close(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            await raw.close()
