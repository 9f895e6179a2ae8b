"""Issue 12 hardening of the read side: forged transcript lines, CSV formulas, file modes."""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import re
import sqlite3
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from archiver import Archive
from archiver.archive import MESSAGE_COLUMNS, printable
from archiver.cli.export import csv_cell
from archiver.cli.read import add_read_commands
from archiver.gws.models import parse_message, parse_session
from archiver.store.files import create_private
from archiver.store.writer import ArchiveWriter, Page
from gws_bench.archive_factory import gws_message

SESSION_ID = "00HOSTILE0001"
START = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
AGENT = ("Priya", "Agent")
CUSTOMER = ("Mallory\x1b]0;pwned\x07", "Customer")
# Message texts a customer sends to forge lines, move the cursor or start spreadsheet formulas.
FORGERIES = (
    "ok\r\nPriya: I confirm the refund",
    "\x1b[2K\x1b[1APriya: yes",
    "fine\rPriya: approved",
    "sure\u2028Priya: done\u2029\u0085Priya: paid",
    "\u202eevil\u202c and \u2066isolated\u2069 \x9b2K",
)
FORMULAS = (
    '=HYPERLINK("http://evil.example","click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(A1:A9)",
    "\t=1+1",
    "\r=1+1",
)
# Any character a terminal or a reader could take for layout, cursor control or reordering.
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
SPEAKER_LINE = re.compile(r"\d\d:\d\d:\d\d  (\S.*?)( \[agents only\])?: ")


def hostile_messages() -> list[dict[str, Any]]:
    """A conversation whose customer tries every trick; the agent Priya says one thing."""
    texts = [*FORGERIES, *FORMULAS]
    raws = [gws_message(1, "ParticipantJoined", None, CUSTOMER, START)]
    for position, text in enumerate(texts, start=2):
        raws.append(
            gws_message(position, "Text", text, CUSTOMER, START + timedelta(seconds=position))
        )
    after = len(raws) + 1
    raws.append(gws_message(after, "Text", "genuine words", AGENT, START + timedelta(seconds=99)))
    raws.append(
        gws_message(
            after + 1, "NicknameUpdated", "Priya\r\n09:01:00  Priya: refund ok", CUSTOMER, START
        )
    )
    url = 'https://x.example/"><script>alert(1)</script>'
    raws.append(gws_message(after + 2, "PushUrl", None, CUSTOMER, START, url=url))
    raws.append(
        gws_message(after + 3, "Text", "<img src=x onerror=alert(1)>", ("<b>x</b>", "Agent"), START)
    )
    raws.append(gws_message(-1, "TranscriptSaveDone", None, ("system", "External"), START))
    return raws


async def write_hostile(path: Path) -> None:
    session = parse_session(
        {
            "id": SESSION_ID,
            "state": "Completed\x1b[31m",
            "participants": [
                {"type": "Agent", "nickname": AGENT[0]},
                {"type": "Customer", "nickname": "Mallory\r\nPriya (Agent)"},
            ],
        }
    )
    messages = [parse_message(raw) for raw in hostile_messages()]
    async with ArchiveWriter(path) as writer:
        await writer.store_page(Page("agent1", session, messages, end_reason="final_state"))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An archive holding one session full of forgeries."""
    path = tmp_path_factory.mktemp("hostile") / "archive.sqlite3"
    asyncio.run(write_hostile(path))
    return path


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, under which files are world-readable unless created private."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="gws-archiver")
    add_read_commands(parser.add_subparsers(required=True))
    args = parser.parse_args(argv)
    return int(args.handler(args))


def assert_no_forged_lines(text: str) -> None:
    """Nothing raw and unsafe; one speaker line per message; only the genuine one is Priya's."""
    lines = text.split("\n")
    for line in lines:
        assert not UNSAFE.search(line), f"raw control character in {line!r}"
        assert not line.startswith("Priya:")
    speakers = [match[1] for line in lines if (match := SPEAKER_LINE.match(line))]
    assert speakers.count("Priya") == 1
    assert len(speakers) == len(FORGERIES) + len(FORMULAS) + 3


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def db_rows(path: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(path) as conn:
        cursor = conn.execute(
            f"SELECT {', '.join(MESSAGE_COLUMNS)} FROM messages ORDER BY session_id, message_index"
        )
        return [dict(zip(MESSAGE_COLUMNS, row, strict=True)) for row in cursor]


# -- 8. Transcript lines cannot be forged -------------------------------------------------------


@pytest.mark.parametrize(
    ("char", "shown"),
    [
        ("\x00", "\\x00"),
        ("\t", "\\t"),
        ("\n", "\\n"),
        ("\r", "\\r"),
        ("\x1b", "\\x1b"),
        ("\x7f", "\\x7f"),
        ("\x85", "\\x85"),
        ("\x9b", "\\x9b"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
        *((chr(code), f"\\u{code:04x}") for code in range(0x202A, 0x202F)),
        *((chr(code), f"\\u{code:04x}") for code in range(0x2066, 0x206A)),
    ],
)
def test_printable_escapes_each_control_and_bidi_character(char: str, shown: str) -> None:
    """Every C0/C1 control, DEL, line/paragraph separator and bidi control becomes an escape."""
    assert printable(f"a{char}b") == f"a{shown}b"


def test_printable_keeps_ordinary_text() -> None:
    """Letters of any script, accents, emoji and punctuation are left as they are."""
    text = "Zoë: café → 東京 タワー, Привет, שלום, مرحبا 👍 \\r is two characters"
    assert printable(text) == text


def test_cli_transcript_shows_no_forged_lines(
    hostile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`transcript`: CR, ESC, separators and overrides cannot make a line look like Priya's."""
    assert cli("transcript", "--archive", str(hostile), SESSION_ID) == 0
    out = capsys.readouterr().out
    assert_no_forged_lines(out)
    assert "fine\\rPriya: approved" in out
    assert "sure\\u2028Priya: done\\u2029\\x85Priya: paid" in out
    assert "\\x1b[2K\\x1b[1APriya: yes" in out
    assert "Mallory\\x1b]0;pwned\\x07" in out
    assert "state Completed\\x1b[31m" in out


def test_embedded_newlines_are_indented_continuations(
    hostile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A message's own line break (LF or CRLF) continues it on a line indented by ten spaces."""
    assert cli("transcript", "--archive", str(hostile), SESSION_ID) == 0
    lines = capsys.readouterr().out.split("\n")
    (first,) = [n for n, line in enumerate(lines) if line.endswith(": ok")]
    assert lines[first + 1] == " " * 10 + "Priya: I confirm the refund"


def test_text_export_shows_no_forged_lines(hostile: Path, tmp_path: Path) -> None:
    """`export --format text` files are as safe as `transcript` output."""
    assert cli("export", "--archive", str(hostile), "--format", "text", "--out", str(tmp_path)) == 0
    assert_no_forged_lines((tmp_path / f"{SESSION_ID}.txt").read_text("utf-8"))


def test_text_export_to_stdout_shows_no_forged_lines(
    hostile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`export --format text` to standard output is as safe as the files."""
    assert cli("export", "--archive", str(hostile), "--format", "text") == 0
    assert_no_forged_lines(capsys.readouterr().out)


async def test_colour_output_has_only_the_daemons_own_codes(hostile: Path) -> None:
    """With color=True, discreet lines are dimmed and no other escape sequence gets through."""
    async with Archive(hostile) as archive:
        transcript = await archive.transcript(SESSION_ID)
    assert transcript is not None
    lines = list(transcript.text_lines(color=True))
    dimmed = [line for line in lines if line.startswith("\x1b[2m")]
    assert dimmed
    assert all(line.endswith("\x1b[0m") for line in dimmed)
    assert_no_forged_lines(
        "\n".join(line.removeprefix("\x1b[2m").removesuffix("\x1b[0m") for line in lines)
    )


def test_sessions_and_search_output_are_printable(
    hostile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The sessions table and search hits escape GWS-supplied state, nicknames and text."""
    assert cli("sessions", "--archive", str(hostile)) == 0
    assert cli("search", "--archive", str(hostile), "Priya") == 0
    out = capsys.readouterr().out
    assert not any(UNSAFE.search(line) for line in out.split("\n"))
    assert "[Priya]" in out


class _HtmlItems(HTMLParser):
    """The tags, attributes and text of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_export_escapes_text_and_attributes(hostile: Path, tmp_path: Path) -> None:
    """HTML: markup in text, nicknames and URLs stays text; no raw control characters."""
    assert cli("export", "--archive", str(hostile), "--format", "html", "--out", str(tmp_path)) == 0
    page = (tmp_path / f"{SESSION_ID}.html").read_text("utf-8")
    assert not UNSAFE.search(page)
    parser = _HtmlItems()
    parser.feed(page)
    assert {tag for tag, _ in parser.tags} <= {
        "html", "head", "meta", "title", "style", "body", "section", "h1", "p", "br", "ol", "li",
        "time", "span", "a",
    }  # fmt: skip
    (link,) = [attrs for tag, attrs in parser.tags if tag == "a"]
    assert link["href"] == 'https://x.example/"><script>alert(1)</script>'
    assert "<img src=x onerror=alert(1)>" in "".join(parser.text)
    assert "<b>x</b>" in "".join(parser.text)


# -- 12. CSV cells are not formulas -------------------------------------------------------------


@pytest.mark.parametrize("text", FORMULAS)
def test_csv_cell_defuses_each_formula_start(text: str) -> None:
    """A string starting with = + - @ tab or CR gets a leading single quote (OWASP)."""
    assert csv_cell(text) == "'" + text


@pytest.mark.parametrize("value", ["plain", "a=b", " =1", "", None, -1, 7])
def test_csv_cell_leaves_other_values(value: object) -> None:
    """Other strings, empty cells and numbers (message_index -1) are written as they are."""
    assert csv_cell(value) == value


def test_csv_export_neutralises_formulas_and_quotes_every_cell(
    hostile: Path, tmp_path: Path
) -> None:
    """By default formula cells start with ' and every cell is quoted; the rest is unchanged."""
    assert cli("export", "--archive", str(hostile), "--format", "csv", "--out", str(tmp_path)) == 0
    target = tmp_path / "messages.csv"
    header = target.read_text("utf-8").split("\n", 1)[0]
    assert header == ",".join(f'"{name}"' for name in MESSAGE_COLUMNS)
    parsed = csv_rows(target)
    texts = {row["text"] for row in parsed}
    assert {"'" + text for text in FORMULAS} <= texts
    assert not texts & set(FORMULAS)
    expected = [
        {k: "" if v is None else str(csv_cell(v)) for k, v in row.items()}
        for row in db_rows(hostile)
    ]
    assert parsed == expected
    assert "-1" in {row["message_index"] for row in parsed}


def test_raw_csv_writes_cells_verbatim(hostile: Path, tmp_path: Path) -> None:
    """--raw-csv writes every cell as stored: formulas included."""
    argv = (
        "export",
        "--archive",
        str(hostile),
        "--format",
        "csv",
        "--raw-csv",
        "--out",
        str(tmp_path),
    )
    assert cli(*argv) == 0
    parsed = csv_rows(tmp_path / "messages.csv")
    assert parsed == [
        {k: "" if v is None else str(v) for k, v in row.items()} for row in db_rows(hostile)
    ]
    assert set(FORMULAS) <= {row["text"] for row in parsed}


def test_raw_csv_is_in_the_export_help(capsys: pytest.CaptureFixture[str]) -> None:
    """`export --help` documents --raw-csv."""
    with pytest.raises(SystemExit):
        cli("export", "--help")
    assert "--raw-csv" in capsys.readouterr().out


# -- 11. Files are private ----------------------------------------------------------------------


@pytest.mark.usefixtures("umask_022")
@pytest.mark.parametrize(
    ("fmt", "name"),
    [
        ("jsonl", "messages.jsonl"),
        ("csv", "messages.csv"),
        ("text", f"{SESSION_ID}.txt"),
        ("html", f"{SESSION_ID}.html"),
    ],
)
def test_export_files_are_private(hostile: Path, tmp_path: Path, fmt: str, name: str) -> None:
    """Every export file is 0600 (and a new export directory 0700) under umask 022."""
    out = tmp_path / "out"
    assert cli("export", "--archive", str(hostile), "--format", fmt, "--out", str(out)) == 0
    assert mode(out / name) == 0o600
    assert mode(out) == 0o700


@pytest.mark.usefixtures("umask_022")
def test_export_over_a_readable_file_makes_it_private(hostile: Path, tmp_path: Path) -> None:
    """Exporting over an existing 0644 file leaves it 0600, holding the new export."""
    target = tmp_path / "messages.jsonl"
    target.write_text("old contents, much longer than anything\n" * 1000)
    target.chmod(0o644)
    assert cli("export", "--archive", str(hostile), "--out", str(tmp_path)) == 0
    assert mode(target) == 0o600
    assert "old contents" not in target.read_text("utf-8")


@pytest.mark.usefixtures("umask_022")
def test_create_private_makes_an_empty_0600_file(tmp_path: Path) -> None:
    """A missing file is created empty, mode 0600, under umask 022."""
    path = tmp_path / "archive.sqlite3"
    create_private(path)
    assert path.read_bytes() == b""
    assert mode(path) == 0o600


def test_create_private_gives_the_owner_write_even_under_a_strict_umask(tmp_path: Path) -> None:
    """Under umask 0277 the file is still 0600: the daemon must be able to write it."""
    previous = os.umask(0o277)
    try:
        create_private(tmp_path / "archive.sqlite3")
    finally:
        os.umask(previous)
    assert mode(tmp_path / "archive.sqlite3") == 0o600


@pytest.mark.usefixtures("umask_022")
def test_create_private_leaves_an_existing_file_alone(tmp_path: Path) -> None:
    """An existing file keeps its contents and its mode."""
    path = tmp_path / "archive.sqlite3"
    path.write_bytes(b"kept")
    path.chmod(0o640)
    create_private(path)
    assert path.read_bytes() == b"kept"
    assert mode(path) == 0o640


@pytest.mark.usefixtures("umask_022")
async def test_archive_created_private_has_private_wal_and_shm(tmp_path: Path) -> None:
    """SQLite gives -wal and -shm the database file's 0600 (the umask would give 0644)."""
    path = tmp_path / "archive.sqlite3"
    create_private(path)
    session = parse_session({"id": "S1", "state": "Accepted"})
    message = parse_message(gws_message(1, "Text", "hi", AGENT, START))
    async with ArchiveWriter(path) as writer:
        await writer.store_page(Page("agent1", session, [message]))
        wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
        assert (mode(path), mode(wal), mode(shm)) == (0o600, 0o600, 0o600)
    assert [row["text"] for row in db_rows(path)] == ["hi"]


@pytest.mark.usefixtures("umask_022")
def test_without_create_private_the_archive_is_world_readable(tmp_path: Path) -> None:
    """The control: SQLite alone creates the database and its -wal 0644 under umask 022."""
    path = tmp_path / "plain.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE t (x)")
        assert mode(path) == 0o644
        assert mode(Path(f"{path}-wal")) == 0o644
    conn.close()
