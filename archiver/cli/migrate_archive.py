"""``gws-archiver migrate-archive --from PATH --to URL``: an SQLite archive into PostgreSQL.

Copies every row of the SQLite archive into an empty PostgreSQL archive in one transaction,
compares both row for row, and commits only if every row is equal (see
:mod:`archiver.store.transfer`). The source's daemon must be stopped: the command holds the
archive's instance lock for the whole copy, so no daemon can start on it meanwhile.

Progress goes to stderr, one line per table; the summary to stdout. Exit status: 0 when copied
and verified; 2 on bad usage or a refusal (a daemon on either side, a target not empty or
unreachable, a source that is not an archive at the newest schema version; the same status
``run`` gives an unreachable PostgreSQL); 1 when the copy or its verification failed (nothing
is committed then); 130 on Ctrl-C (nothing is committed either).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from archiver.cli.exit_codes import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from archiver.errors import ArchiverError, ArchiveUnreachableError, InstanceLockedError
from archiver.instance_lock import InstanceLock
from archiver.store.postgres import PostgresArchive, is_url
from archiver.store.transfer import (
    BATCH_ROWS,
    CommitUnknownError,
    Progress,
    TransferRefused,
    TransferResult,
    migrate_archive,
)


def add_migrate_archive_command(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Register ``migrate-archive`` on the ``gws-archiver`` command tree."""
    command = subparsers.add_parser(
        "migrate-archive",
        help="copy an SQLite archive into an empty PostgreSQL archive, verified row for row",
    )
    command.add_argument(
        "--from", dest="source", required=True, type=Path, metavar="PATH",
        help="the SQLite archive (its daemon stopped)",
    )  # fmt: skip
    command.add_argument(
        "--to", dest="target", required=True, metavar="URL",
        help="the PostgreSQL archive, postgresql://...; empty (its schema is created if need be)",
    )  # fmt: skip
    command.add_argument(
        "--batch", type=_positive, default=BATCH_ROWS, metavar="ROWS",
        help="rows read from SQLite at a time (default: %(default)s)",
    )  # fmt: skip
    command.set_defaults(handler=cmd_migrate_archive)


def cmd_migrate_archive(args: argparse.Namespace) -> int:
    """Copy, verify, print the summary; one ``gws-archiver:`` line on stderr if it fails."""
    if not is_url(args.target):
        return _fail(f"--to must be a postgresql:// URL, not {args.target!r}", EXIT_USAGE)
    target = PostgresArchive(args.target)
    _stderr(f"copying {args.source} into {target}")
    try:
        result = locked_migration(args.source, target, batch=args.batch, progress=_stderr)
    except (TransferRefused, InstanceLockedError, ArchiveUnreachableError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    except ArchiverError as exc:
        tail = "" if isinstance(exc, CommitUnknownError) else f"; nothing was committed to {target}"
        return _fail(f"{exc}{tail}", EXIT_FAILURE)
    except KeyboardInterrupt:
        return _fail(f"interrupted; nothing was committed to {target}", EXIT_INTERRUPTED)
    tables = len(result.rows)
    replaced = (
        f" ({result.replaced:,} values of text PostgreSQL cannot hold stored with U+FFFD, as"
        " a PostgreSQL daemon stores them)"
        if result.replaced
        else ""
    )
    _stderr(
        f"  verified: every row equal ({result.total_rows:,} rows, {tables} tables,"
        f" {result.verify_seconds:.1f} s){replaced}; last event seq {result.last_seq:,}"
    )
    print(
        f"copied {result.total_rows:,} rows in {tables} tables from {args.source} to {target}"
        f" in {result.seconds:.1f} s; every row equal"
    )
    return EXIT_OK


def locked_migration(
    source: Path, target: PostgresArchive, *, batch: int = BATCH_ROWS, progress: Progress
) -> TransferResult:
    """:func:`migrate_archive` holding the source's instance lock: no daemon runs on it."""
    if not source.is_file():
        raise TransferRefused(f"no archive at {source}")
    lock = InstanceLock(source)
    try:
        asyncio.run(lock.open())
    except InstanceLockedError as exc:
        raise InstanceLockedError(f"{exc}; stop it before migrating the archive") from None
    try:
        return migrate_archive(source, target, batch=batch, progress=progress)
    finally:
        asyncio.run(lock.close())


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _fail(message: str, status: int) -> int:
    print(f"gws-archiver: {message}", file=sys.stderr)
    return status


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a positive number of rows: {text!r}")
    return value
