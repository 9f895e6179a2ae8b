"""The read commands: archive path resolution, output formats, exit codes, tail --follow."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from archiver import Archive
from archiver.cli.read import add_read_commands
from archiver.store.writer import ArchiveWriter
from gws_bench.archive_factory import (
    GeneratedArchive,
    generate_session,
    session_id_of,
    write_archive,
)

# Runs the read commands alone (the full CLI lives in archiver.cli, owned elsewhere).
RUNNER = """
import argparse, sys
from archiver.cli.read import add_read_commands
parser = argparse.ArgumentParser(prog="gws-archiver")
add_read_commands(parser.add_subparsers(required=True))
args = parser.parse_args(sys.argv[1:])
sys.exit(args.handler(args))
"""


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="gws-archiver")
    add_read_commands(parser.add_subparsers(required=True))
    args = parser.parse_args(argv)
    return int(args.handler(args))


def json_lines(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def archive_arg(big_archive: GeneratedArchive) -> tuple[str, str]:
    return ("--archive", str(big_archive.path))


def test_sessions_json_lines_match_the_api(
    archive_arg: tuple[str, str], big_archive: GeneratedArchive, capsys: pytest.CaptureFixture[str]
) -> None:
    """sessions --json prints one JSON object per session, filters applied."""
    assert cli("sessions", *archive_arg, "--json", "--account", "agent1", "--limit", "0") == 0
    found = json_lines(capsys.readouterr().out)
    assert {s["session_id"] for s in found} == {
        p.session_id for p in big_archive.sessions if p.account == "agent1"
    }
    assert {s["account"] for s in found} == {"agent1"}


def test_sessions_table_has_a_header_and_limit_rows(
    archive_arg: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The default output is a table: a header, then --limit rows."""
    assert cli("sessions", *archive_arg, "--limit", "3") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["SESSION", "ACCOUNT", "STATE"]
    assert len(lines) == 4
    assert lines[1].startswith(session_id_of(999))


def test_sessions_bad_time_is_a_usage_error(
    archive_arg: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """An unparseable --since exits 2 through argparse."""
    with pytest.raises(SystemExit) as exit_info:
        cli("sessions", *archive_arg, "--since", "last tuesday")
    assert exit_info.value.code == 2
    assert "ISO-8601" in capsys.readouterr().err


def test_archive_path_comes_from_the_config_file(
    big_archive: GeneratedArchive, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --archive, --config's [archive] path is used."""
    config = tmp_path / "config.toml"
    config.write_text(
        '[gws]\nbase_url = "http://127.0.0.1:8090"\n'
        '[[gws.accounts]]\nusername = "agent1"\npassword = "pw"\n'
        f'[archive]\npath = "{big_archive.path}"\n'
    )
    assert cli("stats", "--config", str(config), "--json") == 0
    assert json_lines(capsys.readouterr().out)[0]["messages"] == big_archive.message_count


def test_archive_path_defaults_to_the_working_directory(
    big_archive: GeneratedArchive,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With neither flag, ./archive.sqlite3 is read."""
    (tmp_path / "archive.sqlite3").symlink_to(big_archive.path)
    monkeypatch.chdir(tmp_path)
    assert cli("stats", "--json") == 0
    assert json_lines(capsys.readouterr().out)[0]["sessions"] == len(big_archive.sessions)


def test_bad_config_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A configuration error is one line on stderr and exit code 2."""
    config = tmp_path / "config.toml"
    config.write_text("[archive]\npath = 3\n")
    assert cli("sessions", "--config", str(config)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "configuration error" in err


def test_missing_archive_exits_1_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A path with no archive is one clear line on stderr and exit code 1."""
    assert cli("transcript", "X", "--archive", str(tmp_path / "none.sqlite3")) == 1
    assert capsys.readouterr().err == f"gws-archiver: no archive at {tmp_path / 'none.sqlite3'}\n"


def test_transcript_prints_the_conversation(
    archive_arg: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """transcript ID prints a header, then time, speaker and words per line."""
    assert cli("transcript", session_id_of(3), *archive_arg) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Session {session_id_of(3)}\n")
    assert "02:09:35  Cust3: my broken phone needs a refund\n" in out
    assert "    · Cust3 joined\n" in out


def test_transcript_hide_events_drops_discreet_lines(
    archive_arg: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """--hide-events prints no typing or join/leave lines."""
    assert cli("transcript", session_id_of(3), *archive_arg, "--hide-events") == 0
    assert "· " not in capsys.readouterr().out


def test_transcript_json_lists_the_messages(
    archive_arg: tuple[str, str], big_archive: GeneratedArchive, capsys: pytest.CaptureFixture[str]
) -> None:
    """transcript --json prints one message row per line, in log order."""
    plan = big_archive.sessions[7]
    assert cli("transcript", plan.session_id, *archive_arg, "--json") == 0
    messages = json_lines(capsys.readouterr().out)
    assert len(messages) == plan.message_count
    assert messages[0]["message_index"] == 1


def test_transcript_of_unknown_session_exits_1(
    archive_arg: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown session id is exit code 1 and one line on stderr."""
    assert cli("transcript", "nope", *archive_arg) == 1
    assert "no session 'nope'" in capsys.readouterr().err


def test_search_prints_hits_with_highlighted_snippets(
    archive_arg: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """search prints a location line and a bracketed snippet per hit (not a terminal)."""
    assert cli("search", "broken phone", *archive_arg, "--phrase") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{session_id_of(3)} #")
    assert lines[1] == "    my [broken phone] needs a refund"


def test_search_json_and_filters(
    archive_arg: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """search --json prints hits as JSON lines; --state filters them."""
    assert cli("search", "zebra", *archive_arg, "--json", "--state", "Completed") == 0
    hits = json_lines(capsys.readouterr().out)
    assert [h["session_id"] for h in hits] == [session_id_of(5), session_id_of(11)]
    assert hits[0]["snippet"] == "[zebra] [zebra] [zebra] crossing"


def test_search_syntax_error_exits_2(
    archive_arg: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """An FTS5 syntax error is a clear line with a hint, and exit code 2."""
    assert cli("search", "don't", *archive_arg) == 2
    err = capsys.readouterr().err
    assert "invalid search query" in err
    assert "--phrase" in err


def test_export_jsonl_to_stdout_filters_by_session(
    archive_arg: tuple[str, str], big_archive: GeneratedArchive, capsys: pytest.CaptureFixture[str]
) -> None:
    """export --session ID streams that session's rows to stdout."""
    plan = big_archive.sessions[12]
    assert cli("export", *archive_arg, "--session", plan.session_id, "--json") == 0
    rows = json_lines(capsys.readouterr().out)
    assert len(rows) == plan.message_count
    assert {r["session_id"] for r in rows} == {plan.session_id}


def test_export_html_to_stdout_is_one_document(
    archive_arg: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """HTML to stdout is one document with a section per session."""
    sessions = ["--session", session_id_of(1), "--session", session_id_of(2)]
    assert cli("export", *archive_arg, "--format", "html", *sessions) == 0
    out = capsys.readouterr().out
    assert out.startswith("<!doctype html>")
    assert out.count("<html") == 1
    assert out.count('<section class="session"') == 2
    assert out.endswith("</html>\n")


def test_export_json_with_another_format_is_a_usage_error(
    archive_arg: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """--json means JSON lines; asking for CSV too is exit code 2."""
    assert cli("export", *archive_arg, "--json", "--format", "csv") == 2
    assert "conflicts" in capsys.readouterr().err


def test_stats_table_lists_every_section(
    archive_arg: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """stats prints totals and the per-type, per-state and per-day counts."""
    assert cli("stats", *archive_arg) == 0
    out = capsys.readouterr().out
    for title in ("messages by type", "sessions by state", "messages by day (UTC)"):
        assert f"\n{title}\n" in out
    assert "  2024-03-01 " in out


async def test_stats_json_matches_the_api(
    archive_arg: tuple[str, str], big_archive: GeneratedArchive, capsys: pytest.CaptureFixture[str]
) -> None:
    """stats --json is the API's ArchiveStats as one JSON object."""
    assert await asyncio.to_thread(cli, "stats", *archive_arg, "--json") == 0
    async with Archive(big_archive.path) as archive:
        expected = (await archive.stats()).to_json()
    assert json_lines(capsys.readouterr().out) == [expected]


def test_events_tail_prints_the_last_n_matching(
    archive_arg: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """events tail -n N --type T --session ID prints the newest N such events, oldest first."""
    session = session_id_of(999)
    argv = ["events", "tail", *archive_arg, "-n", "3", "--type", "Text", "--session", session]
    assert cli(*argv, "--json") == 0
    events = json_lines(capsys.readouterr().out)
    assert len(events) == 3
    assert {(e["type"], e["session_id"]) for e in events} == {("Text", session)}
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)


async def test_events_tail_follow_prints_new_events_until_ctrl_c(tmp_path: Path) -> None:
    """--follow prints events committed after it started, in order, and Ctrl-C exits 0."""
    small = await write_archive(tmp_path / "a.sqlite3", sessions=2, messages_per_session=5)
    argv = ["events", "tail", "--archive", str(small.path), "-n", "1", "--follow", "--json"]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        RUNNER,
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    assert process.stderr is not None
    try:
        # The one old event it prints first says the follower is running.
        first = orjson.loads(await asyncio.wait_for(process.stdout.readline(), 30))
        _, pages = generate_session(77, 5, 100)
        async with ArchiveWriter(small.path) as writer:
            stored = (await writer.store_page(pages[0])).events
        followed = [
            orjson.loads(await asyncio.wait_for(process.stdout.readline(), 30)) for _ in stored
        ]
    finally:
        process.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(process.wait(), 30)
        err = await process.stderr.read()
    assert code == 0, err
    assert first["seq"] < stored[0].seq
    assert followed == [event.typed().to_json() for event in stored]


def test_hold_and_purge_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """hold protects a session from purge --retain-days 0; --release lets it go."""
    small = asyncio.run(write_archive(tmp_path / "a.sqlite3", sessions=5, messages_per_session=5))
    archive = ("--archive", str(small.path))
    kept = session_id_of(0)
    assert cli("hold", kept, *archive) == 0
    assert cli("purge", *archive, "--retain-days", "0", "--json") == 0
    capsys.readouterr()
    assert cli("sessions", *archive, "--json", "--held") == 0
    assert [s["session_id"] for s in json_lines(capsys.readouterr().out)] == [kept]
    assert cli("hold", kept, "--release", *archive) == 0
    capsys.readouterr()
    assert cli("purge", *archive, "--retain-days", "0", "--json") == 0
    messages = small.sessions[0].message_count
    # Its events: SessionStarted, one per message, SessionEnded.
    assert json_lines(capsys.readouterr().out) == [
        {
            "sessions": 1,
            "hook_deliveries": 0,
            "messages": messages,
            "events": messages + 2,
            "conflicts": 0,
            "malformed": 0,
            "session_views": 1,
            "reconciliations": 0,
        }
    ]


def test_hold_of_unknown_session_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """hold on an id the archive does not hold is exit code 1."""
    small = asyncio.run(write_archive(tmp_path / "a.sqlite3", sessions=1, messages_per_session=3))
    assert cli("hold", "nope", "--archive", str(small.path)) == 1
    assert "no session 'nope'" in capsys.readouterr().err


def test_events_tail_rejects_an_unknown_type(
    archive_arg: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A misspelt --type is a usage error (exit 2), not a silent, empty tail."""
    with pytest.raises(SystemExit) as exit_info:
        cli("events", "tail", *archive_arg, "--type", "Txet")
    assert exit_info.value.code == 2
    assert "Txet" in capsys.readouterr().err
