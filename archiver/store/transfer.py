"""Copying an SQLite archive into an empty PostgreSQL archive, exactly (``migrate-archive``).

The copy is one PostgreSQL transaction: the target's tables are locked against writers, checked
empty and free of live daemons, filled table by table (``COPY ... FROM STDIN``, streamed from
one read transaction on the SQLite file in batches), renumbered (the identity sequences past the
copied ids, ``archive_counters.events`` at SQLite's last event seq), then read back and compared
with the source row for row, in key order, before the commit. Any failure, a difference
included, rolls it all back: the target is left as it was, empty.

What is copied: every column of every table of the SQLite archive but SQLite's own
(``sqlite_*``, the FTS5 index ``messages_fts`` and its shadow tables, which PostgreSQL replaces
with ``messages.search``), and ``schema_migrations``, which records each database's own
schema. A message's SQLite ``rowid`` becomes its PostgreSQL ``rowid`` (the order of arrival).

Values go through the archive connection's own dumpers, so they are stored as a PostgreSQL
daemon stores them: text PostgreSQL cannot hold (U+0000, lone surrogates kept as their code
units, invalid UTF-8 in a BLOB) has U+FFFD in their place. The comparison counts those values
(``replaced``) and checks each against that same rendering; every other value must be equal.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any

import psycopg
from psycopg import abc, sql
from psycopg.adapt import PyFormat, Transformer

from archiver.errors import ArchiverError, SchemaTooNewError, StoreError
from archiver.store.db import connect, open_postgres
from archiver.store.migrate import load_migrations, migrate
from archiver.store.postgres import PgConnection, PostgresArchive

BATCH_ROWS = 10_000
# How long the copy waits for a writer of the target to finish before refusing.
LOCK_TIMEOUT_S = 10
PROGRESS_EVERY_S = 10.0
# Each database's record of its own schema: PostgreSQL's was made by its own migration files.
OWN_TABLES = frozenset({"schema_migrations"})
ARCHIVE_TABLES = frozenset({"schema_migrations", "sessions", "messages", "events"})
FTS_SHADOWS = ("_data", "_idx", "_content", "_docsize", "_config")

Progress = Callable[[str], None]


class TransferRefused(ArchiverError):
    """The source or the target is not one this copy may run on (a usage error, exit 2)."""


class VerificationError(StoreError):
    """A copied row differs from its source: nothing was committed."""


class CommitUnknownError(StoreError):
    """The connection failed during the commit: the target holds all of the copy or none."""


@dataclass(frozen=True, slots=True)
class Table:
    """One table to copy: its columns in SQLite's order and the order both sides are read in."""

    name: str
    columns: tuple[str, ...]  # ``rowid`` first when PostgreSQL keeps SQLite's rowid
    key: tuple[str, ...]
    text: frozenset[str]  # columns PostgreSQL stores as text

    def select(self, *, postgres: bool) -> str:
        """The query reading the whole table in key order (byte order for text, as SQLite)."""
        columns = ", ".join(_quote(c) for c in self.columns)
        order = ", ".join(
            f'{_quote(c)} COLLATE "C"' if postgres and c in self.text else _quote(c)
            for c in self.key
        )
        return f"SELECT {columns} FROM {_quote(self.name)} ORDER BY {order}"


@dataclass(slots=True)
class TransferResult:
    """What the copy did: rows per table, the seconds it took, values stored as PostgreSQL can."""

    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    verify_seconds: float = 0.0
    replaced: int = 0
    last_seq: int = 0

    @property
    def total_rows(self) -> int:
        """Rows copied over every table."""
        return sum(self.rows.values())


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quiet(_: str) -> None:
    pass


def migrate_archive(
    source: Path,
    target: PostgresArchive,
    *,
    batch: int = BATCH_ROWS,
    progress: Progress = _quiet,
) -> TransferResult:
    """Copy the archive at ``source`` into the empty PostgreSQL archive ``target``, verified.

    The caller keeps daemons off ``source`` (its instance lock); the target's are refused here.
    """
    started = time.perf_counter()
    with _source(source) as src, _target(target) as pg:
        result = TransferResult()
        try:
            tables = plan_tables(src, pg)
            pg.execute("BEGIN")
            _claim(pg, tables, target)
            for table in tables:
                result.rows[table.name] = copy_table(src, pg, table, batch, progress)
            result.last_seq = _renumber(src, pg, tables)
            checked = time.perf_counter()
            for table in tables:
                result.replaced += verify_table(src, pg, table, batch)
            result.verify_seconds = time.perf_counter() - checked
        except BaseException as exc:
            _roll_back(pg)
            if isinstance(exc, psycopg.Error):
                raise StoreError(f"copying into {target} failed: {_first_line(exc)}") from exc
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"reading {source} failed: {exc}") from exc
            raise
        _commit(pg, target)
    result.seconds = time.perf_counter() - started
    return result


def _commit(pg: PgConnection, target: PostgresArchive) -> None:
    """Commit the verified copy; a connection lost meanwhile leaves the outcome unknown."""
    try:
        pg.execute("COMMIT")
    except psycopg.Error as exc:
        raise CommitUnknownError(
            f"the connection to {target} failed while committing the verified copy"
            f" ({_first_line(exc)}): the target holds either all of it or none of it; run"
            " migrate-archive again, which copies into an empty target or refuses a full one"
        ) from exc


def _roll_back(pg: PgConnection) -> None:
    """Undo the copy; a connection already lost has nothing left to undo."""
    try:
        if pg.in_transaction and not pg.closed:
            pg.execute("ROLLBACK")
    except psycopg.Error:
        pg.close()


@contextmanager
def _source(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection holding one snapshot of the archive, at the newest schema."""
    if not path.is_file():
        raise TransferRefused(f"no archive at {path}")
    try:
        conn = connect(path, read_only=True)
    except sqlite3.Error as exc:
        raise TransferRefused(f"cannot open {path} as an SQLite archive: {exc}") from exc
    assert isinstance(conn, sqlite3.Connection)
    try:
        try:
            conn.execute("BEGIN")
            names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
            version = None
            if names >= ARCHIVE_TABLES:
                (version,) = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
        except sqlite3.Error as exc:
            raise TransferRefused(f"{path} is not a gws-archiver archive: {exc}") from exc
        if version is None:
            raise TransferRefused(f"{path} is not a gws-archiver archive")
        newest = load_migrations()[-1].version
        if version < newest:
            raise TransferRefused(
                f"the archive {path} is at schema version {version}, not {newest}: run this"
                " gws-archiver's daemon (gws-archiver run) on it once, which upgrades it, then"
                " migrate it"
            )
        if version > newest:
            raise TransferRefused(
                f"the archive {path} is at schema version {version}, newer than this"
                f" gws-archiver knows ({newest}); upgrade gws-archiver"
            )
        yield conn
    finally:
        conn.close()


@contextmanager
def _target(target: PostgresArchive) -> Iterator[PgConnection]:
    """A connection to the target, its schema created or brought up to date."""
    conn = open_postgres(target)
    try:
        try:
            migrate(conn)
        except SchemaTooNewError as exc:
            raise TransferRefused(f"the target {target}: {exc}") from exc
        yield conn
    finally:
        conn.close()


def plan_tables(src: sqlite3.Connection, pg: PgConnection) -> list[Table]:
    """The tables to copy, in creation order (a referenced table before its references)."""
    entries = src.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY rowid"
    ).fetchall()
    virtual = [name for name, text in entries if (text or "").upper().startswith("CREATE VIRTUAL")]
    shadows = {f"{name}{suffix}" for name in virtual for suffix in FTS_SHADOWS}
    tables = []
    for name, _ in entries:
        if name.startswith("sqlite_") or name in OWN_TABLES or name in virtual or name in shadows:
            continue
        tables.append(_table(src, pg, name))
    return tables


def _table(src: sqlite3.Connection, pg: PgConnection, name: str) -> Table:
    info = src.execute(f"PRAGMA table_info({_quote(name)})").fetchall()
    columns = tuple(row[1] for row in info)
    key = tuple(row[1] for row in sorted((r for r in info if r[5]), key=lambda r: r[5]))
    found = pg.execute(
        "SELECT column_name, data_type, is_identity, is_generated FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
        (name,),
    ).fetchall()
    if not found:
        raise StoreError(f"the PostgreSQL schema has no table {name} (SQLite's archive has one)")
    target = {row[0]: row for row in found}
    missing = [column for column in columns if column not in target]
    if missing:
        raise StoreError(f"the PostgreSQL table {name} lacks the columns {', '.join(missing)}")
    extra = [row for row in found if row[0] not in columns and row[3] != "ALWAYS"]
    if [row[0] for row in extra] == ["rowid"] and extra[0][2] == "YES":
        columns, key = ("rowid", *columns), ("rowid",)  # the order of arrival, kept
    elif extra:
        unknown = ", ".join(row[0] for row in extra)
        raise StoreError(f"the PostgreSQL table {name} has columns SQLite's lacks: {unknown}")
    text = frozenset(column for column in columns if target[column][1] == "text")
    return Table(name, columns, key or ("rowid",), text)


def _claim(pg: PgConnection, tables: Sequence[Table], target: PostgresArchive) -> None:
    """Lock the target's tables against writers; refuse a live daemon or any row already there."""
    names = [table.name for table in tables] + ["archive_counters", "daemons"]
    pg.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_S}s'")
    try:
        pg.execute(f"LOCK TABLE {', '.join(_quote(n) for n in names)} IN EXCLUSIVE MODE")
    except psycopg.errors.LockNotAvailable:
        raise TransferRefused(
            f"the target {target} is being written to (its tables stayed locked for"
            f" {LOCK_TIMEOUT_S} s); stop its daemons first"
        ) from None
    live = pg.execute(
        "SELECT hostname, pid FROM daemons WHERE expires_at > now() ORDER BY started_at"
    ).fetchall()
    if live:
        who = ", ".join(f"pid {pid} on {host}" for host, pid in live)
        raise TransferRefused(
            f"a gws-archiver daemon is running on the target {target} ({who}); stop it first"
        )
    held = []
    for table in tables:
        (count,) = pg.execute(f"SELECT count(*) FROM {_quote(table.name)}").fetchone()
        if count:
            held.append(f"{table.name}: {count:,}")
    if held:
        raise TransferRefused(
            f"the target {target} is not empty ({', '.join(held)}); migrate-archive copies into"
            " an empty PostgreSQL archive only"
        )


def copy_table(
    src: sqlite3.Connection, pg: PgConnection, table: Table, batch: int, progress: Progress
) -> int:
    """Stream ``table`` from SQLite into PostgreSQL with one ``COPY``; the rows copied."""
    started = last_report = time.perf_counter()
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, table.columns))
    )
    rows = src.execute(table.select(postgres=False))
    count = 0
    with pg.raw.cursor() as cursor, cursor.copy(statement) as copy:
        while chunk := rows.fetchmany(batch):
            for row in chunk:
                copy.write_row(row)
            count += len(chunk)
            if time.perf_counter() - last_report >= PROGRESS_EVERY_S:
                last_report = time.perf_counter()
                progress(f"  {table.name:<18} {count:>12,} rows so far")
    progress(f"  {table.name:<18} {count:>12,} rows {time.perf_counter() - started:8.1f} s")
    return count


def _renumber(src: sqlite3.Connection, pg: PgConnection, tables: Sequence[Table]) -> int:
    """Set the identity sequences past the copied ids and the event counter; the last seq.

    SQLite's ``sqlite_sequence`` remembers ids of deleted rows (AUTOINCREMENT), which are
    never used again: a sequence starts past the larger of it and the table's largest id.
    """
    used = dict(src.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
    copied = {table.name for table in tables}
    identities = pg.execute(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND is_identity = 'YES'"
    ).fetchall()
    for name, column in identities:
        if name not in copied:
            continue
        (largest,) = pg.execute(f"SELECT max({_quote(column)}) FROM {_quote(name)}").fetchone()
        last = max(int(largest or 0), int(used.get(name) or 0))
        pg.execute(
            "SELECT setval(pg_get_serial_sequence(?, ?), ?, ?)",
            (_quote(name), column, max(last, 1), last > 0),
        )
    (largest_seq,) = src.execute("SELECT max(seq) FROM events").fetchone()
    last_seq = max(int(largest_seq or 0), int(used.get("events") or 0))
    pg.execute("UPDATE archive_counters SET value = ? WHERE name = 'events'", (last_seq,))
    return last_seq


def verify_table(src: sqlite3.Connection, pg: PgConnection, table: Table, batch: int) -> int:
    """Compare ``table`` on both sides row for row, in key order; values stored as PostgreSQL
    can hold them (counted and returned) must be what the connection's dumpers make of them.
    Raises :class:`VerificationError` at the first difference."""
    mine = src.execute(table.select(postgres=False))
    rendering = Transformer.from_context(pg.raw)
    seen = replaced = 0
    with pg.raw.cursor(name=f"verify_{table.name}") as theirs:
        theirs.execute(table.select(postgres=True))
        while True:
            expected, found = mine.fetchmany(batch), theirs.fetchmany(batch)
            if not expected and not found:
                return replaced
            if expected != found:
                for offset, (want, got) in enumerate(zip_longest(expected, found)):
                    if want != got:
                        replaced += _compare(table, want, got, seen + offset, rendering)
            seen += len(expected)


def _compare(
    table: Table,
    want: tuple[Any, ...] | None,
    got: tuple[Any, ...] | None,
    at: int,
    tx: abc.Transformer,
) -> int:
    """How many values of a differing row PostgreSQL holds as its dumpers render them."""
    if want is None or got is None:
        which = "PostgreSQL" if want is None else "SQLite"
        raise VerificationError(
            f"verification failed: {table.name} has more rows in {which} (from row {at + 1})"
        )
    replaced = 0
    for column, value, stored in zip(table.columns, want, got, strict=True):
        if value == stored:
            continue
        if column in table.text and value is not None and as_stored(value, tx) == stored:
            replaced += 1
            continue
        key = ", ".join(f"{c}={v!r}" for c, v in zip(table.columns, want, strict=True)
                        if c in table.key)  # fmt: skip
        raise VerificationError(
            f"verification failed: {table.name} ({key}): {column} is {_short(stored)} in"
            f" PostgreSQL, {_short(value)} in SQLite"
        )
    return replaced


def as_stored(value: object, tx: abc.Transformer) -> str | None:
    """The text PostgreSQL holds for ``value``: what the connection's text dumper writes."""
    dumped = tx.get_dumper(value, PyFormat.TEXT).dump(value)
    return None if dumped is None else bytes(dumped).decode()


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}..."


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
