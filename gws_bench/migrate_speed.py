"""How fast ``gws-archiver migrate-archive`` copies an SQLite archive into PostgreSQL.

Builds an SQLite archive of ``--messages`` messages (sessions of 100, plus a TranscriptSaveDone
per completed session) through the real ArchiveWriter in a temporary directory, starts a
throwaway PostgreSQL cluster (``tests/support/postgres.py``, so from the source tree; or copies
into ``--to URL``, which must be an empty database), and times the command's own code: copy,
renumbering, the row-for-row verification and the commit. Prints the rows copied per table,
seconds, rows/s and whether every row was equal.

Run: ``.venv/bin/python -m gws_bench.migrate_speed --messages 1000000`` (several minutes on two
cores: the archive is built first).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import psycopg

from archiver.cli.migrate_archive import locked_migration
from archiver.store.postgres import PostgresArchive
from archiver.store.transfer import VerificationError
from gws_bench.archive_factory import write_archive
from gws_bench.postgres import throwaway_cluster

MESSAGES_PER_SESSION = 100


def _cluster(stack: ExitStack) -> str:
    """A fresh database on a throwaway cluster, stopped and removed with ``stack``."""
    return throwaway_cluster(stack, "pass --to URL")("migrate_speed")


def _server_version(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gws_bench.migrate_speed", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--messages", type=int, default=1_000_000, help="messages to copy")
    parser.add_argument("--to", metavar="URL", help="an empty PostgreSQL database (default: a"
                        " throwaway cluster)")  # fmt: skip
    parser.add_argument("--batch", type=int, default=10_000, help="rows read at a time")
    options = parser.parse_args()
    sessions = max(1, options.messages // MESSAGES_PER_SESSION)
    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-mig-")))
        source = directory / "archive.sqlite3"
        started = time.perf_counter()
        generated = asyncio.run(write_archive(source, sessions, MESSAGES_PER_SESSION))
        built = time.perf_counter() - started
        url = options.to or _cluster(stack)
        print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]},"
              f" SQLite {sqlite3.sqlite_version}, PostgreSQL {_server_version(url)}")  # fmt: skip
        size = source.stat().st_size / 1e6
        print(f"source: {generated.message_count:,} messages, {sessions:,} sessions,"
              f" {size:,.0f} MB, built in {built:.1f} s through ArchiveWriter")  # fmt: skip
        try:
            result = locked_migration(
                source, PostgresArchive(url), batch=options.batch, progress=print
            )
        except VerificationError as exc:
            print(f"every row equal: no ({exc})")
            return 1
        rate = result.total_rows / result.seconds
        print(f"rows copied: {result.total_rows:,} ({result.rows['messages']:,} messages)")
        print(f"seconds: {result.seconds:.1f} (verification {result.verify_seconds:.1f})")
        print(f"rows/s: {rate:,.0f} ({result.rows['messages'] / result.seconds:,.0f} messages/s)")
        print("every row equal: yes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
