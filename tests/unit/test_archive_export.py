"""Exports: JSON lines, CSV, text and HTML transcripts round-trip; streaming stays small."""

from __future__ import annotations

import argparse
import csv
import re
import tracemalloc
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import orjson
import pytest

from archiver import Archive
from archiver.archive import DISCREET_TYPES, MESSAGE_COLUMNS
from archiver.cli.read import add_read_commands
from archiver.store.db import ArchiveLocation
from gws_bench.archive_factory import GeneratedArchive
from tests.support import query

_LINE = re.compile(r"(\d\d:\d\d:\d\d|--:--:--)  (.+?)( \[agents only\])?: (.*)")


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_read_commands(parser.add_subparsers())
    args = parser.parse_args(argv)
    return int(args.handler(args))


def rows(
    path: ArchiveLocation, where: str = "TRUE", params: tuple[Any, ...] = ()
) -> list[dict[str, Any]]:
    """The messages table as dicts, in export order."""
    found = query(
        path,
        f"SELECT {', '.join(MESSAGE_COLUMNS)} FROM messages WHERE {where}"
        " ORDER BY session_id, message_index",
        params,
    )
    return [dict(zip(MESSAGE_COLUMNS, row, strict=True)) for row in found]


def shown_body(row: dict[str, Any]) -> str:
    """What a transcript shows as a message's words."""
    if row["type"] == "PushUrl":
        return " ".join(part for part in (row["url"], row["text"]) if part)
    if row["type"] in ("Notice", "CustomNotice"):
        return f"(notice) {row['text']}"
    return str(row["text"])


def by_session(all_rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in all_rows:
        grouped.setdefault(row["session_id"], []).append(row)
    return grouped


@pytest.fixture(scope="module")
def exported(
    big_archives: GeneratedArchive, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Every format exported once into its own directory."""
    dirs = {}
    for fmt in ("jsonl", "csv", "text", "html"):
        out = tmp_path_factory.mktemp(fmt)
        assert (
            cli("export", "--archive", str(big_archives.path), "--format", fmt, "--out", str(out))
            == 0
        )
        dirs[fmt] = out
    return dirs


def test_jsonl_round_trips_to_the_same_rows(
    big_archives: GeneratedArchive, exported: dict[str, Path]
) -> None:
    """JSON lines parse back to exactly the messages table, row for row."""
    lines = (exported["jsonl"] / "messages.jsonl").read_bytes().splitlines()
    assert [orjson.loads(line) for line in lines] == rows(big_archives.path)


def test_csv_round_trips_to_the_same_rows(
    big_archives: GeneratedArchive, exported: dict[str, Path]
) -> None:
    """CSV parses back to the same rows (empty fields read as NULL, indices as integers)."""
    with open(exported["csv"] / "messages.csv", newline="", encoding="utf-8") as fh:
        parsed = [
            {k: (int(v) if k == "message_index" else v or None) for k, v in record.items()}
            for record in csv.DictReader(fh)
        ]
    assert parsed == rows(big_archives.path)


def test_text_transcripts_round_trip_speaker_and_words(
    big_archives: GeneratedArchive, exported: dict[str, Path]
) -> None:
    """Each session's .txt shows every message: time, speaker, agents-only mark, words."""
    files = sorted(exported["text"].glob("*.txt"))
    assert [f.stem for f in files] == sorted(p.session_id for p in big_archives.sessions)
    for session_id, session_rows in by_session(rows(big_archives.path)).items():
        parsed: list[tuple[str, str, bool, str]] = []
        for line in (exported["text"] / f"{session_id}.txt").read_text("utf-8").splitlines():
            if line.startswith(" " * 10) and parsed:
                clock, who, agents_only, body = parsed[-1]
                parsed[-1] = (clock, who, agents_only, f"{body}\n{line[10:]}")
            elif match := _LINE.fullmatch(line):
                parsed.append((match[1], match[2], bool(match[3]), match[4]))
        expected = [
            (
                row["sent_at"][11:19],
                row["from_nickname"],
                row["visibility"] == "Agents",
                shown_body(row),
            )
            for row in session_rows
            if row["type"] not in DISCREET_TYPES
        ]
        assert parsed == expected


class _TranscriptParser(HTMLParser):
    """Collects (index, type, classes, who, text) for each <li> of an HTML transcript."""

    def __init__(self) -> None:
        super().__init__()
        self.items: list[dict[str, Any]] = []
        self.field: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "li":
            self.items.append(
                {
                    "index": int(attributes["data-index"] or 0),
                    "type": attributes["data-type"],
                    "classes": set((attributes["class"] or "").split()),
                    "who": "",
                    "text": "",
                }
            )
        elif tag == "span" and self.items:
            self.field = {"who": "who", "text": "text"}.get(attributes.get("class") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "span":
            self.field = None

    def handle_data(self, data: str) -> None:
        if self.field is not None:
            self.items[-1][self.field] += data


def test_html_transcripts_round_trip_every_message(
    big_archives: GeneratedArchive, exported: dict[str, Path]
) -> None:
    """Each session's .html lists every message with its index, type, speaker and words."""
    grouped = by_session(rows(big_archives.path))
    assert len(list(exported["html"].glob("*.html"))) == len(grouped)
    for session_id, session_rows in list(grouped.items())[::10]:
        parser = _TranscriptParser()
        parser.feed((exported["html"] / f"{session_id}.html").read_text("utf-8"))
        in_log_order = sorted(
            session_rows, key=lambda r: (r["message_index"] == -1, r["message_index"])
        )
        assert [(i["index"], i["type"]) for i in parser.items] == [
            (r["message_index"], r["type"]) for r in in_log_order
        ]
        messages = [i for i in parser.items if "message" in i["classes"]]
        assert [(i["who"], i["text"], "agents-only" in i["classes"]) for i in messages] == [
            (r["from_nickname"], shown_body(r), r["visibility"] == "Agents")
            for r in in_log_order
            if r["type"] not in DISCREET_TYPES
        ]


def test_filtered_export_holds_only_matching_sessions(
    big_archives: GeneratedArchive, tmp_path: Path
) -> None:
    """export --account streams exactly that account's messages."""
    assert (
        cli(
            "export",
            "--archive",
            str(big_archives.path),
            "--account",
            "agent3",
            "--out",
            str(tmp_path),
        )
        == 0
    )
    lines = (tmp_path / "messages.jsonl").read_bytes().splitlines()
    expected = rows(
        big_archives.path,
        "session_id IN (SELECT session_id FROM sessions WHERE account = ?)",
        ("agent3",),
    )
    assert [orjson.loads(line) for line in lines] == expected


def test_text_export_can_hide_events(big_archives: GeneratedArchive, tmp_path: Path) -> None:
    """--hide-events leaves typing and join/leave lines out of exported transcripts."""
    session_id = big_archives.sessions[0].session_id
    argv = ["export", "--archive", str(big_archives.path), "--format", "text"]
    assert cli(*argv, "--session", session_id, "--hide-events", "--out", str(tmp_path)) == 0
    text = (tmp_path / f"{session_id}.txt").read_text("utf-8")
    assert "joined" not in text
    assert "is typing" not in text


async def test_message_stream_memory_stays_bounded(big_archives: GeneratedArchive) -> None:
    """Streaming all 100,000 messages peaks far below what holding them would take."""
    async with Archive(big_archives.path) as archive:
        tracemalloc.start()
        try:
            count = 0
            raw_bytes = 0
            async for message in archive.messages():
                count += 1
                raw_bytes += len(message.raw_json)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert count == big_archives.message_count
    assert raw_bytes > 20_000_000
    assert peak < 10_000_000
