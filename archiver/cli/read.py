"""The read commands (``sessions``, ``transcript``, ``search``, ``export``, ``stats``,
``events tail``) and the two retention commands (``purge``, ``hold``).

Each finds the archive from ``--archive``, else ``--config``'s ``[archive] path``, else
``./archive.sqlite3``. Output is a readable table or text by default; ``--json`` prints JSON
lines (one object per line: a session, a message, a hit, an event, or the one stats object).
Exit status: 0 on success, 2 on bad usage, configuration or search syntax, 1 otherwise.

Text output shows GWS-supplied strings through :func:`archiver.archive.printable`, so a customer
cannot forge lines or drive the terminal. Export files are created private (0600); CSV cells
that a spreadsheet would run as formulas are defused unless ``--raw-csv``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import orjson

from archiver.archive import (
    Archive,
    SessionFilter,
    printable,
)
from archiver.cli.exit_codes import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from archiver.cli.export import FORMATS, export_archive
from archiver.config import ArchiveConfig, load_config
from archiver.errors import ArchiverError, ConfigError
from archiver.events import EVENT_TYPES, Event, MessageEvent, SessionEvent
from archiver.instants import parse_instant
from archiver.store.db import ArchiveLocation, location_of, missing
from archiver.store.queries import InvalidQueryError
from archiver.store.retention import purge_expired, set_legal_hold

DEFAULT_ARCHIVE = Path("archive.sqlite3")
_BOLD, _RESET = "\x1b[1m", "\x1b[0m"
# Search highlight markers (private-use characters), turned into bold or brackets once the
# snippet is printable: the terminal codes must not be escaped with the customer's.
_MARK_START, _MARK_END = "\ue000", "\ue001"

Command = Callable[[argparse.Namespace, ArchiveLocation], Coroutine[Any, Any, int]]
Handler = Callable[[argparse.Namespace], int]


def add_read_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the read, purge and hold commands on the ``gws-archiver`` command tree."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--archive", metavar="PATH|URL", help="the archive: an SQLite file or a postgresql:// URL"
    )
    common.add_argument("--config", metavar="PATH", help="read [archive] path from this file")
    common.add_argument("--json", action="store_true", help="print JSON lines")
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--account", help="only sessions of this GWS account (username)")
    filters.add_argument("--state", help="only sessions in this state (e.g. Completed)")
    filters.add_argument("--since", type=_instant, metavar="WHEN", help="ISO-8601, UTC if bare")
    filters.add_argument("--until", type=_instant, metavar="WHEN", help="ISO-8601, exclusive")
    filters.add_argument("--participant", metavar="NICKNAME", help="a participant's nickname")
    filters.add_argument("--held", action="store_true", help="only sessions under legal hold")

    def add(
        name: str, command: Command, help_text: str, *parents: argparse.ArgumentParser
    ) -> argparse.ArgumentParser:
        parser = subparsers.add_parser(name, help=help_text, parents=[common, *parents])
        parser.set_defaults(handler=_handler(command))
        return parser

    sessions = add("sessions", _sessions, "list archived sessions, newest first", filters)
    sessions.add_argument("--limit", type=_count, default=50, help="at most N (0: all; 50)")
    transcript = add("transcript", _transcript, "one session's conversation")
    transcript.add_argument("session_id", metavar="ID")
    transcript.add_argument("--hide-events", action="store_true", help="no typing, join, leave")
    search = add("search", _search, "full-text search over message text", filters)
    search.add_argument("text", metavar="TEXT", help='FTS5 query: words, "a phrase", pre*, OR')
    search.add_argument("--phrase", action="store_true", help="take TEXT as one exact phrase")
    search.add_argument("--type", dest="types", action="extend", nargs="+", default=[])
    search.add_argument("--limit", type=_count, default=20, help="at most N hits (20)")
    export = add("export", _export, "stream messages or transcripts out", filters)
    export.add_argument("--format", choices=FORMATS, default="jsonl", help="(default: jsonl)")
    export.add_argument("--out", type=Path, metavar="DIR", help="write files here, not stdout")
    export.add_argument("--session", dest="session_ids", action="append", default=[])
    export.add_argument("--hide-events", action="store_true", help="text/html: no typing etc.")
    export.add_argument(
        "--raw-csv",
        action="store_true",
        help="csv: write cells verbatim (by default a cell starting with = + - @ tab or CR"
        " gets a leading ' so spreadsheets do not run it as a formula)",
    )
    add("stats", _stats, "counts per message type, session state and day")
    events = subparsers.add_parser("events", help="the archive's event log")
    events_commands = events.add_subparsers(dest="events_command", required=True)
    tail = events_commands.add_parser("tail", help="the newest events", parents=[common])
    tail.set_defaults(handler=_handler(_events_tail))
    tail.add_argument("-n", "--lines", type=_count, default=10, help="show the last N (10)")
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    tail.add_argument(
        "--type", dest="types", action="extend", nargs="+", default=[], choices=sorted(EVENT_TYPES)
    )
    tail.add_argument("--session", dest="session_id", metavar="ID")
    purge = add("purge", _purge, "delete ended sessions older than N days (not held ones)")
    purge.add_argument("--retain-days", type=_days, required=True, metavar="N")
    purge.add_argument("--batch", type=_positive, default=500, help="rows per transaction (500)")
    hold = add("hold", _hold, "put a session under legal hold (or --release it)")
    hold.add_argument("session_id", metavar="ID")
    hold.add_argument("--release", action="store_true", help="lift the hold")


def busy_timeout_s(args: argparse.Namespace) -> float:
    """The configuration's ``archive.busy_timeout_s`` (``--config``), else its default."""
    if args.archive is None and args.config is not None:
        return load_config(args.config).archive.busy_timeout_s
    return ArchiveConfig().busy_timeout_s


def archive_path(args: argparse.Namespace) -> ArchiveLocation:
    """``--archive`` (a file or a ``postgresql://`` URL), else the configuration's archive,
    else ./archive.sqlite3."""
    if args.archive is not None:
        return location_of(args.archive)
    if args.config is not None:
        return load_config(args.config).archive.location
    return DEFAULT_ARCHIVE


def _handler(command: Command) -> Handler:
    """Wrap a command: find the archive, run it, turn errors into one line and an exit code."""

    def handle(args: argparse.Namespace) -> int:
        try:
            path = archive_path(args)
            if missing(path):
                return _fail(f"no archive at {path}", EXIT_FAILURE)
            return asyncio.run(command(args, path))
        except ConfigError as exc:
            return _fail(f"configuration error: {exc}", EXIT_USAGE)
        except InvalidQueryError as exc:
            hint = ' (quote words with punctuation: "don\'t", or use --phrase)'
            return _fail(f"{exc}{hint}", EXIT_USAGE)
        except ArchiverError as exc:
            return _fail(str(exc), EXIT_FAILURE)
        except KeyboardInterrupt:
            # Ctrl-C is how ``events tail --follow`` is meant to end.
            return EXIT_OK if getattr(args, "follow", False) else EXIT_INTERRUPTED
        except BrokenPipeError:
            # The reader went away (``| head``): silence the final flush, then stop.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_FAILURE

    return handle


def _fail(message: str, code: int) -> int:
    print(f"gws-archiver: {message}", file=sys.stderr)
    return code


def _instant(text: str) -> datetime:
    try:
        return parse_instant(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 date or time: {text!r}") from None


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")
    return int(text)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return int(text)


def _days(text: str) -> float:
    try:
        days = float(text)
    except ValueError:
        days = -1.0
    if not days >= 0:
        raise argparse.ArgumentTypeError(f"not a number of days: {text!r}")
    return days


def _filters(args: argparse.Namespace) -> SessionFilter:
    return SessionFilter(
        account=args.account,
        state=args.state,
        since=args.since,
        until=args.until,
        participant=args.participant,
        held=True if args.held else None,
        session_ids=tuple(getattr(args, "session_ids", ())),
    )


def _color() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


def _print_json(value: Any, out: TextIO | None = None) -> None:
    (out or sys.stdout).write(orjson.dumps(value).decode() + "\n")


def _print_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    rows = list(rows)
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    for row in [headers, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def _when(stamp: str | None) -> str:
    return stamp[:19].replace("T", " ") if stamp else "-"


async def _sessions(args: argparse.Namespace, path: ArchiveLocation) -> int:
    async with Archive(path) as archive:
        found = archive.sessions(_filters(args), limit=args.limit or None)
        if args.json:
            async for session in found:
                _print_json(session.to_json())
            return EXIT_OK
        rows = [
            [
                session.session_id,
                session.account,
                session.state or "-",
                str(session.message_count),
                _when(session.first_message_at),
                _when(session.last_message_at),
                ("[held] " if session.legal_hold else "") + ", ".join(session.nicknames),
            ]
            async for session in found
        ]
    headers = ["SESSION", "ACCOUNT", "STATE", "MESSAGES", "FIRST (UTC)", "LAST (UTC)", "WHO"]
    _print_table(headers, [[printable(cell) for cell in row] for row in rows])
    return EXIT_OK


async def _transcript(args: argparse.Namespace, path: ArchiveLocation) -> int:
    async with Archive(path) as archive:
        transcript = await archive.transcript(args.session_id)
    if transcript is None:
        return _fail(f"no session {args.session_id!r} in {path}", EXIT_FAILURE)
    if args.json:
        for message in transcript.messages:
            _print_json(message.to_json())
    else:
        for line in transcript.text_lines(hide_events=args.hide_events, color=_color()):
            print(line)
    return EXIT_OK


async def _search(args: argparse.Namespace, path: ArchiveLocation) -> int:
    query = '"' + args.text.replace('"', '""') + '"' if args.phrase else args.text
    color = _color() and not args.json
    highlight = (_MARK_START, _MARK_END) if not args.json else ("[", "]")
    start, end = (_BOLD, _RESET) if color else ("[", "]")
    async with Archive(path) as archive:
        hits = await archive.search(
            query, _filters(args), types=args.types, limit=args.limit, highlight=highlight
        )
    for hit in hits:
        if args.json:
            _print_json(hit.to_json())
            continue
        message = hit.message
        where = (
            f"{message.session_id} #{message.message_index}  {_when(message.sent_at)}"
            f"  {message.from_nickname or message.from_type or '?'}"
            f" ({hit.account}, {hit.state or '-'}){' [agents only]' if message.agents_only else ''}"
        )
        snippet = printable(hit.snippet.replace("\r\n", " ").replace("\n", " "))
        print(printable(where))
        print("    " + snippet.replace(_MARK_START, start).replace(_MARK_END, end))
    if not hits and not args.json:
        print("no matches", file=sys.stderr)
    return EXIT_OK


async def _export(args: argparse.Namespace, path: ArchiveLocation) -> int:
    if args.json and args.format != "jsonl":
        return _fail(f"--json conflicts with --format {args.format}", EXIT_USAGE)
    await export_archive(args, path, _filters(args))
    return EXIT_OK


async def _stats(args: argparse.Namespace, path: ArchiveLocation) -> int:
    async with Archive(path) as archive:
        stats = await archive.stats()
    if args.json:
        _print_json(stats.to_json())
        return EXIT_OK
    print(f"sessions   {stats.sessions:>10}   ({stats.held_sessions} under legal hold)")
    for label, value in (
        ("messages", stats.messages),
        ("events", stats.events),
        ("conflicts", stats.conflicts),
        ("malformed", stats.malformed),
    ):
        print(f"{label:<10} {value:>10}")
    print(f"first message {_when(stats.first_message_at)}, last {_when(stats.last_message_at)}")
    for title, counts in (
        ("messages by type", stats.messages_by_type),
        ("sessions by state", stats.sessions_by_state),
        ("messages by day (UTC)", stats.messages_by_day),
        ("ended sessions by check against Interaction History", stats.sessions_by_reconciliation),
    ):
        print(f"\n{title}")
        for key, value in counts.items():
            print(f"  {printable(key):<20} {value:>10}")
    print(f"\nended sessions whose last messages could not be verified: {stats.unverified_tails}")
    return EXIT_OK


async def _events_tail(args: argparse.Namespace, path: ArchiveLocation) -> int:
    async with Archive(path) as archive:
        # Read the end first: whatever commits after it is picked up by the follow loop.
        newest = await archive.last_seq()
        recent = await archive.last_events(args.lines, types=args.types, session_id=args.session_id)
        for event in recent:
            _print_event(event, args.json)
        if args.follow:
            after = max(newest, recent[-1].seq if recent else 0)
            stream = archive.follow_events(after, types=args.types, session_id=args.session_id)
            async for event in stream:
                _print_event(event, args.json)
                sys.stdout.flush()
    return EXIT_OK


def _print_event(event: Event, as_json: bool) -> None:
    if as_json:
        _print_json(event.to_json())
        return
    if isinstance(event, MessageEvent):
        who = event.from_nickname or event.from_type or "?"
        words = event.text or event.url
        summary = f"#{event.index} {who}" + (f": {words}" if words else "")
    elif isinstance(event, SessionEvent):
        summary = f"{event.account} state={event.state}"
    else:
        summary = ""
    line = f"{event.seq:>8}  {event.occurred_at}  {event.type:<19} {event.session_id}  {summary}"
    print(printable(line))


async def _purge(args: argparse.Namespace, path: ArchiveLocation) -> int:
    result = await purge_expired(
        path, args.retain_days, batch=args.batch, busy_timeout_s=busy_timeout_s(args)
    )
    if args.json:
        _print_json(asdict(result))
    else:
        print(
            f"purged {result.sessions} sessions: {result.messages} messages, {result.events}"
            f" events, {result.conflicts} conflicts, {result.malformed} malformed"
        )
    return EXIT_OK


async def _hold(args: argparse.Namespace, path: ArchiveLocation) -> int:
    held = not args.release
    if not await set_legal_hold(
        path, args.session_id, held=held, busy_timeout_s=busy_timeout_s(args)
    ):
        return _fail(f"no session {args.session_id!r} in {path}", EXIT_FAILURE)
    if args.json:
        _print_json({"session_id": args.session_id, "legal_hold": held})
    else:
        print(f"session {args.session_id} {'is under legal hold' if held else 'is released'}")
    return EXIT_OK
