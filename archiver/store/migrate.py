"""Schema migrations: numbered ``.sql`` files, each applied in one transaction with its version.

The files live in the top-level ``migrations/`` folder of the source tree; a wheel carries them
as ``archiver/migrations``. A database whose version is newer than the newest file is refused.

A PostgreSQL archive has its own files in ``migrations/postgresql/``, numbered by the same
versions: its first file creates the whole schema of the version it is named for (an archive
there began with that version), later ones follow SQLite's step for step. Daemons starting
together on one PostgreSQL archive migrate it once: each takes a transaction-level advisory lock
first and reads the version under it.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

import psycopg

from archiver.errors import SchemaTooNewError, StoreError
from archiver.instants import utc_now
from archiver.store.postgres import PgConnection

# pg_advisory_xact_lock's key for migrations ('gws-migr' as a number).
MIGRATION_LOCK = 0x67_77_73_2D_6D_69_67_72

_NAME = re.compile(r"(\d{3,})_[a-z0-9_]+\.sql")


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered schema change."""

    version: int
    name: str
    sql: str


def migrations_dir() -> Traversable:
    """Where the ``.sql`` files are: inside the installed package, else beside the source."""
    packaged = resources.files("archiver") / "migrations"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "migrations"


def load_migrations(folder: Traversable | None = None) -> list[Migration]:
    """All migrations, ordered by version; refuses gaps and duplicates."""
    folder = folder or migrations_dir()
    found = []
    for entry in folder.iterdir():
        match = _NAME.fullmatch(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    first = found[0].version if found and folder.name == "postgresql" else 1
    for expected, migration in enumerate(found, start=first):
        if migration.version != expected:
            raise StoreError(
                f"migration {migration.name} breaks the sequence (expected {expected})"
            )
    if not found:
        raise StoreError(f"no migrations found in {folder}")
    return found


def schema_version(conn: sqlite3.Connection | PgConnection) -> int:
    """The newest migration applied to this database (0 for a new file)."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)


def migrate(
    conn: sqlite3.Connection | PgConnection, migrations: list[Migration] | None = None
) -> int:
    """Apply every pending migration; return the version the database is at afterwards."""
    if isinstance(conn, PgConnection):
        return _migrate_postgres(conn, migrations or load_migrations(postgres_migrations_dir()))
    migrations = migrations if migrations is not None else load_migrations()
    current = schema_version(conn)
    newest = _check_version(current, migrations)
    for migration in migrations:
        if migration.version <= current:
            continue
        script = (
            "BEGIN IMMEDIATE;\n"
            f"{migration.sql}\n;"
            "INSERT INTO schema_migrations (version, name, applied_at)"
            f" VALUES ({migration.version}, '{migration.name}',"
            " strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));\n"
            "COMMIT;"
        )
        try:
            conn.executescript(script)
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.rollback()
            raise StoreError(f"migration {migration.name} failed: {exc}") from exc
    return max(current, newest)


def postgres_migrations_dir() -> Traversable:
    """The PostgreSQL archive's migration files."""
    return migrations_dir() / "postgresql"


def _check_version(current: int, migrations: list[Migration]) -> int:
    newest = migrations[-1].version
    if current > newest:
        raise SchemaTooNewError(
            f"the archive is at schema version {current}, newer than this gws-archiver knows "
            f"({newest}); upgrade gws-archiver"
        )
    return newest


def _migrate_postgres(conn: PgConnection, migrations: list[Migration]) -> int:
    try:
        current = _postgres_version(conn)
        newest = _check_version(current, migrations)
        if current == newest:
            return current
        conn.execute("BEGIN")
        conn.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
        current = schema_version(conn)  # another daemon may have migrated meanwhile
        for migration in migrations:
            if migration.version <= current:
                continue
            conn.executescript(migration.sql)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, utc_now()),
            )
        conn.execute("COMMIT")
    except psycopg.Error as exc:
        if conn.in_transaction and not conn.closed:
            conn.execute("ROLLBACK")
        raise StoreError(f"migrating the PostgreSQL archive failed: {exc}") from exc
    return max(current, newest)


def _postgres_version(conn: PgConnection) -> int:
    """The version, read without creating anything (that happens under the lock)."""
    (exists,) = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists:
        return 0
    (version,) = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return int(version or 0)
