"""``export``: messages (JSON lines, CSV) or transcripts (text, HTML), to stdout or files.

Export files are created private (0600, directories 0700). CSV cells that a spreadsheet would
run as formulas are defused (OWASP: a leading ``'``) unless ``--raw-csv``; every cell is quoted.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import re
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, TextIO

import orjson

from archiver.archive import (
    MESSAGE_COLUMNS,
    Archive,
    ArchivedMessage,
    SessionFilter,
    Transcript,
    html_page,
)
from archiver.store.db import ArchiveLocation

FORMATS = ("jsonl", "csv", "text", "html")
# OWASP CSV injection: a cell starting with one of these is a formula to a spreadsheet.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Export files and directories: the archive's contents are private.
_FILE_MODE, _DIR_MODE = 0o600, 0o700


async def export_archive(
    args: argparse.Namespace, path: ArchiveLocation, filters: SessionFilter
) -> None:
    """``export``: messages as JSON lines or CSV, or transcripts as text or HTML."""
    fmt = args.format
    if args.out is not None:
        args.out.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
    async with Archive(path) as archive:
        if fmt in ("jsonl", "csv"):
            count = await _export_rows(archive, args, filters, fmt)
            what = "messages"
        else:
            count = await _export_transcripts(archive, args, filters, fmt)
            what = "transcripts"
    if args.out is not None:
        print(f"exported {count} {what} to {args.out}", file=sys.stderr)


async def _export_rows(
    archive: Archive, args: argparse.Namespace, filters: SessionFilter, fmt: str
) -> int:
    count = 0
    target = args.out / f"messages.{fmt}" if args.out is not None else None
    with _output(target) as out:
        write = message_writer(out, fmt, raw_csv=args.raw_csv)
        async for message in archive.messages(filters):
            write(message)
            count += 1
    return count


def message_writer(
    out: TextIO, fmt: str, *, raw_csv: bool = False
) -> Callable[[ArchivedMessage], object]:
    """A function writing one message to ``out`` as a JSON line, or as a CSV row after a header."""
    if fmt == "jsonl":
        return lambda message: out.write(orjson.dumps(message.to_json()).decode() + "\n")
    # Every cell quoted (as OWASP asks), also with --raw-csv: the csv module does not quote
    # a lone CR, which readers take for the end of the row.
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(MESSAGE_COLUMNS)

    def write_row(message: ArchivedMessage) -> object:
        cells = message.to_json().values()
        return writer.writerow(cells if raw_csv else [csv_cell(cell) for cell in cells])

    return write_row


async def _export_transcripts(
    archive: Archive, args: argparse.Namespace, filters: SessionFilter, fmt: str
) -> int:
    count = 0
    head, tail = html_page("gws-archiver transcripts")
    if args.out is None and fmt == "html":
        sys.stdout.write(head)
    async for transcript in archive.transcripts(filters):
        name = file_name(transcript.session.session_id)
        target = args.out / f"{name}.{'txt' if fmt == 'text' else 'html'}" if args.out else None
        with _output(target) as out:
            out.write(
                render_transcript(transcript, fmt, args.hide_events, standalone=target is not None)
            )
        count += 1
    if args.out is None and fmt == "html":
        sys.stdout.write(tail)
    return count


def render_transcript(
    transcript: Transcript, fmt: str, hide_events: bool, *, standalone: bool
) -> str:
    """One transcript as ``text`` or ``html`` (a whole page if ``standalone``, else a section)."""
    if fmt == "text":
        return "\n".join(transcript.text_lines(hide_events=hide_events)) + "\n\n"
    section = transcript.html_section(hide_events=hide_events)
    if not standalone:
        return section
    head, tail = html_page(f"Session {transcript.session.session_id}")
    return head + section + tail


def file_name(session_id: str) -> str:
    """A safe file name for a session; a hash keeps altered ids from colliding."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", session_id)
    if safe != session_id or safe.startswith("."):
        safe = f"{safe}-{hashlib.sha256(session_id.encode()).hexdigest()[:10]}"
    return safe


def csv_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: a leading ``'`` if it would start a formula.

    Only strings are defused (OWASP's rule); numbers such as ``message_index`` -1 stay numbers.
    """
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _output(target: Path | None) -> AbstractContextManager[TextIO]:
    """Standard output (left open), or a UTF-8 file at ``target`` that only its owner can read.

    The file is created 0600 (never readable by others, not even while it is written); an
    existing file is truncated and made 0600 before anything is written to it.
    """
    if target is None:
        return nullcontext(sys.stdout)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, _FILE_MODE)
    try:
        os.fchmod(fd, _FILE_MODE)
        return open(fd, "w", encoding="utf-8", newline="")
    except BaseException:
        os.close(fd)
        raise
