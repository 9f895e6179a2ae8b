"""``gws-archiver migrate-archive``: an SQLite archive copied into PostgreSQL, exactly, or not
at all.

The source is written by the real ArchiveWriter (``write_archive``), then given the rows a
long-lived archive has and the writer of these tests cannot make on demand: hostile text
(U+0000, a lone surrogate kept as its code units, invalid UTF-8 as a BLOB), hook subscribers
and deliveries, runs, conflicts, malformed payloads, reconciliations, team rows, a tombstone,
and AUTOINCREMENT counters ahead of the largest id. The copy is checked by hand, table by
table, then through ``archiver.Archive`` on both sides, then by a writer going on with it.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg
import pytest

from archiver import Archive
from archiver.cli import main
from archiver.instance_lock import InstanceLock
from archiver.store import transfer
from archiver.store.db import open_postgres
from archiver.store.migrate import migrate
from archiver.store.postgres import PgConnection, PostgresArchive
from gws_bench.archive_factory import write_archive

HOSTILE = "00HOSTILE0A1B2C3D4"
T = "2024-03-05T10:00:00.000Z"
LONE_RAW = '{"index":1,"type":"Text","text":"half \ud83d"}'.encode("utf-8", "surrogatepass")
LONE_TEXT = "half \ud83d".encode("utf-8", "surrogatepass")
NOT_UTF8 = b'\xff\xfe{"index":"x"}'
# Values PostgreSQL's text cannot hold: two BLOBs and a NUL in messages, one each in the others.
REPLACED = 5
NOWHERE = "postgresql://postgres@127.0.0.1:1/nothing"
ROOT = Path(__file__).resolve().parents[2]


def add_long_lived_rows(conn: sqlite3.Connection) -> None:
    """What months of a daemon leave behind, beside the generated sessions."""
    (first,) = conn.execute("SELECT min(session_id) FROM sessions").fetchone()
    conn.executescript("BEGIN")
    conn.execute(
        "INSERT INTO sessions (session_id, account, state, first_seen_at, last_seen_at,"
        " next_index, legal_hold, view_count) VALUES (?, 'agent1', 'Accepted', ?, ?, 4, 1, 1)",
        (HOSTILE, T, T),
    )
    messages = [
        (1, "Text", LONE_TEXT, LONE_RAW, None),
        (2, "Text", "nul\x00inside", '{"text":"nul\\u0000inside"}', None),
        (3, "Notice", "tab\tnew\nline \\N back\\slash\r", '{"text":"..."}', "history"),
    ]
    conn.executemany(
        "INSERT INTO messages (session_id, message_index, type, text, from_type, from_nickname,"
        " visibility, sent_at, raw_json, archived_at, source)"
        " VALUES (?, ?, ?, ?, 'Customer', 'Cust∞', 'All', ?, ?, ?, ?)",
        [(HOSTILE, i, kind, text, T, raw, T, src) for i, kind, text, raw, src in messages],
    )
    rows: dict[str, list[tuple[Any, ...]]] = {
        "session_views": [(HOSTILE, 1, "agent1", T, "Accepted", "Accepted", None, None)],
        "conflicts": [(None, HOSTILE, 2, NOT_UTF8, T)],
        "malformed": [
            (None, HOSTILE, "index ahead", NOT_UTF8, T, 9, "agent1", "d1"),
            (None, "", "no usable session", '{"id":null}', T, None, "agent2", "d2"),
        ],
        "hook_subscribers": [
            ("audit", "webhook", 40, '{"types":["Text"]}', None, None, 39, 2, "HTTP 503", T, T, T),
            ("gone", "command", 5, "{}", T, "HTTP 410 Gone", 5, 0, None, None, T, T),
        ],
        "hook_deliveries": [
            (None, "audit", 41, first, "pending", 0, T, None, None, T),
            (None, "audit", 42, first, "dead", 8, None, T, "HTTP 500", T),
            (None, "gone", 6, first, "pending", 1, T, T, "timeout", T),
        ],
        "runs": [
            (1, T, T, "clean", "0.1.0", "c0ffee", "host-a", 4242, 0, 40, 400, 1, 0, 0, 0, 3, None),
            (2, T, None, "crashed", "0.1.0", "c0ffee", "host-a", 4243, 40, None, *[None] * 6, None),
            (3, T, T, "failed", "0.1.0", "beef", "host-b", 7, 41, 41, 0, 0, 0, 0, 2, 0, "GWS 401"),
        ],
        "purged_sessions": [("00PURGED0A1B2C3D4", T)],
        "reconciliations": [
            (first, "verified", 1, None, T, 30, 0, 0, None),
            (HOSTILE, "pending", 2, T, None, None, 0, 0, "history busy"),
        ],
        "team_agents": [
            ("A-1", "agent1", "monitoring", None, T),
            ("A-2", "x", "refused", "403", T),
        ],
        "session_agents": [(HOSTILE, "A-1", T, T, "message"), (first, "A-2", T, T, "history")],
        "team_gaps": [(HOSTILE, "A-2", T, "gap", None)],
    }
    for table, values in rows.items():
        marks = ", ".join("?" * len(values[0]))
        conn.executemany(f"INSERT INTO {table} VALUES ({marks})", values)
    # Deleted rows: AUTOINCREMENT counters stay ahead of the largest id left.
    conn.execute("DELETE FROM hook_deliveries WHERE id = 3")
    conn.execute("DELETE FROM events WHERE seq = (SELECT max(seq) FROM events)")
    conn.execute("INSERT INTO messages_fts (rowid, text) SELECT rowid, text FROM messages"
                 " WHERE session_id = ? AND message_index = 3", (HOSTILE,))  # fmt: skip
    conn.execute("COMMIT")


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "archive.sqlite3"
    asyncio.run(write_archive(path, sessions=12, messages_per_session=30))
    with closing(sqlite3.connect(path)) as conn:
        add_long_lived_rows(conn)
    return path


def migrate_cli(source: Path, target: str, *extra: str) -> int:
    return main(["migrate-archive", "--from", str(source), "--to", target, *extra])


def last_error(err: str) -> str:
    """The one ``gws-archiver:`` line a failure ends with."""
    line = err.strip().splitlines()[-1]
    assert line.startswith("gws-archiver: ")
    return line


def pg_count(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
        if not exists or not exists[0]:
            return 0
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(row[0]) if row else 0


def as_postgres(value: object) -> object:
    """What PostgreSQL's text holds for an SQLite value (written independently of the code)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


COPIED = (
    "sessions", "messages", "events", "conflicts", "malformed", "hook_subscribers",
    "hook_deliveries", "runs", "purged_sessions", "session_views", "reconciliations",
    "team_agents", "session_agents", "team_gaps",
)  # fmt: skip


def assert_tables_equal(source: Path, url: str) -> None:
    """Every row of every table, every column, by hand."""
    with closing(sqlite3.connect(source)) as lite, psycopg.connect(url) as pg:
        for table in COPIED:
            info = lite.execute(f"PRAGMA table_info({table})").fetchall()
            columns = ["rowid"] * (table == "messages") + [row[1] for row in info]
            keys = ["rowid"] if table == "messages" else [r[1] for r in info if r[5]]
            listed = ", ".join(columns)
            mine = lite.execute(f"SELECT {listed} FROM {table} ORDER BY {', '.join(keys)}")
            text = {
                name
                for name, kind in pg.execute(
                    "SELECT column_name, data_type FROM information_schema.columns"
                    " WHERE table_name = %s",
                    (table,),
                ).fetchall()
                if kind == "text"
            }
            order = ", ".join(f'{key} COLLATE "C"' if key in text else key for key in keys)
            theirs = pg.execute(f"SELECT {listed} FROM {table} ORDER BY {order}").fetchall()
            expected = [tuple(as_postgres(v) for v in row) for row in mine]
            assert theirs == expected, table
            assert expected, f"{table} has rows to copy"


def test_copies_every_row_and_the_counters(
    source: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert migrate_cli(source, postgres_url, "--batch", "7") == 0
    out, err = capsys.readouterr()
    with closing(sqlite3.connect(source)) as lite:
        total = sum(lite.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in COPIED)
        counters = dict(lite.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
        (messages,) = lite.execute("SELECT count(*) FROM messages").fetchone()
    summary = out.strip()
    assert summary.startswith(f"copied {total:,} rows in 14 tables from {source} to ")
    assert summary.endswith("; every row equal")
    assert re.search(rf"^  messages +{messages:,} rows +\d+\.\d s$", err, re.MULTILINE)
    assert all(f"\n  {table} " in err for table in COPIED)
    assert f"every row equal ({total:,} rows, 14 tables" in err
    assert f"{REPLACED} values of text PostgreSQL cannot hold" in err
    assert_tables_equal(source, postgres_url)
    with psycopg.connect(postgres_url) as pg:
        assert pg.execute("SELECT value FROM archive_counters").fetchall() == [
            (counters["events"],)
        ]
        (seq_max,) = pg.execute("SELECT max(seq) FROM events").fetchone() or (0,)
        assert counters["events"] == seq_max + 1  # the deleted newest event's seq stays used
        (text,) = pg.execute(
            "SELECT text FROM messages WHERE session_id = %s AND message_index = 2", (HOSTILE,)
        ).fetchone() or ("",)
        assert text == "nul\ufffdinside"
        (version,) = pg.execute("SELECT max(version) FROM schema_migrations").fetchone() or (0,)
        assert version == 7


def test_a_writer_goes_on_where_the_source_stopped(source: Path, postgres_url: str) -> None:
    """New events, messages and ids follow the copied ones, never reuse them."""
    assert migrate_cli(source, postgres_url) == 0
    with psycopg.connect(postgres_url) as pg:
        (last_seq,) = pg.execute("SELECT value FROM archive_counters").fetchone() or (0,)
        (last_rowid,) = pg.execute("SELECT max(rowid) FROM messages").fetchone() or (0,)
    asyncio.run(write_archive(PostgresArchive(postgres_url), 2, 10, first=700))
    with psycopg.connect(postgres_url) as pg:
        new = pg.execute(
            "SELECT min(seq), min(m.rowid) FROM events e JOIN messages m USING (session_id)"
            " WHERE session_id >= '00000700'"
        ).fetchone()
        assert new == (last_seq + 1, last_rowid + 1)
        fresh = {
            # AUTOINCREMENT's counter (3) is ahead of the largest id left (2)
            "hook_deliveries": "(subscriber, seq, session_id, queued_at) VALUES ('a', 1, 'b', 'c')"
            " RETURNING id",
            "runs": "(started_at, version, config_hash, hostname, pid, first_seq)"
            " VALUES ('a', 'b', 'c', 'd', 1, 0) RETURNING run_id",
            "conflicts": "(session_id, message_index, raw_json, detected_at)"
            " VALUES ('a', 1, 'b', 'c') RETURNING id",
            "malformed": "(session_id, problem, raw_json, received_at) VALUES ('a', 'b', 'c', 'd')"
            " RETURNING id",
        }
        ids = {table: pg.execute(f"INSERT INTO {table} {values}").fetchone() for table, values
               in fresh.items()}  # fmt: skip
        pg.rollback()
    assert ids == {"hook_deliveries": (4,), "runs": (4,), "conflicts": (2,), "malformed": (3,)}


def test_the_archive_reads_the_same_on_both_sides(source: Path, postgres_url: str) -> None:
    assert migrate_cli(source, postgres_url) == 0

    async def compare() -> None:
        async with Archive(source) as lite, Archive(postgres_url) as pg:
            assert (await pg.stats()).to_json() == (await lite.stats()).to_json()
            listed = [s.to_json() async for s in lite.sessions()]
            assert [s.to_json() async for s in pg.sessions()] == listed
            for session in listed:
                if session["session_id"] == HOSTILE:
                    continue
                mine = await lite.transcript(session["session_id"])
                theirs = await pg.transcript(session["session_id"])
                assert mine is not None
                assert theirs is not None
                assert list(theirs.text_lines()) == list(mine.text_lines())
                assert [m.to_json() for m in theirs.messages] == [
                    m.to_json() for m in mine.messages
                ]
            hostile = await pg.transcript(HOSTILE)
            assert hostile is not None
            assert [m.text for m in hostile.messages][1] == "nul\ufffdinside"
            for query in ("zebra", '"broken phone"', "refund", "kaka", "new line"):
                found = {(h.message.session_id, h.message.message_index)
                         for h in await pg.search(query, limit=1000)}  # fmt: skip
                expected = {(h.message.session_id, h.message.message_index)
                            for h in await lite.search(query, limit=1000)}  # fmt: skip
                assert found == expected, query
                assert found or query == "kaka", query
            assert await pg.last_seq() == await lite.last_seq()

    asyncio.run(compare())


def test_refuses_a_source_a_daemon_is_running_on(
    source: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    lock = InstanceLock(source)
    asyncio.run(lock.open())
    try:
        assert migrate_cli(source, postgres_url) == 2
    finally:
        asyncio.run(lock.close())
    error = last_error(capsys.readouterr().err)
    assert f"another gws-archiver is running on {source} (pid {os.getpid()})" in error
    assert "stop it before migrating" in error
    assert pg_count(postgres_url, "sessions") == 0


def test_refuses_a_target_that_is_not_empty(
    source: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert migrate_cli(source, postgres_url) == 0
    before = pg_count(postgres_url, "messages")
    capsys.readouterr()
    assert migrate_cli(source, postgres_url) == 2
    error = last_error(capsys.readouterr().err)
    assert "is not empty (sessions: 13, messages: " in error
    assert "copies into an empty PostgreSQL archive only" in error
    assert pg_count(postgres_url, "messages") == before


def _daemon_row(url: str, expires: str) -> None:
    conn = open_postgres(PostgresArchive(url))
    try:
        migrate(conn)
        conn.execute(
            "INSERT INTO daemons VALUES ('d1', 'host-z', 99, now(), now(), now() + ?::interval)",
            (expires,),
        )
    finally:
        conn.close()


def test_refuses_a_target_a_daemon_is_running_on(
    source: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _daemon_row(postgres_url, "1 minute")
    assert migrate_cli(source, postgres_url) == 2
    error = last_error(capsys.readouterr().err)
    assert "a gws-archiver daemon is running on the target" in error
    assert "(pid 99 on host-z); stop it first" in error
    assert pg_count(postgres_url, "sessions") == 0


def test_a_daemon_gone_from_the_target_does_not_stop_the_copy(
    source: Path, postgres_url: str
) -> None:
    _daemon_row(postgres_url, "-1 minute")
    assert migrate_cli(source, postgres_url) == 0


@pytest.mark.parametrize(
    ("target", "setup", "expected"),
    [
        pytest.param("archive.db", None, "--to must be a postgresql:// URL", id="not-a-url"),
        pytest.param(NOWHERE, "missing", "no archive at ", id="missing-source"),
        pytest.param(NOWHERE, "garbage", "is not a gws-archiver archive", id="not-sqlite"),
        pytest.param(NOWHERE, "other", "is not a gws-archiver archive", id="other-database"),
        pytest.param(NOWHERE, "old", "at schema version 6, not 7: run this", id="old-schema"),
        pytest.param(NOWHERE, "new", "newer than this gws-archiver knows (7)", id="new-schema"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    source: Path,
    target: str,
    setup: str | None,
    expected: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if setup == "missing":
        source.unlink()
    elif setup == "garbage":
        source.write_bytes(b"not a database at all" * 100)
    elif setup == "other":
        source.unlink()
        with closing(sqlite3.connect(source)) as conn:
            conn.execute("CREATE TABLE notes (body TEXT)")
    elif setup in ("old", "new"):
        with closing(sqlite3.connect(source)) as conn, conn:
            if setup == "old":
                conn.execute("DELETE FROM schema_migrations WHERE version = 7")
            else:
                conn.execute("INSERT INTO schema_migrations VALUES (8, '008_next.sql', 'now')")
    capsys.readouterr()
    assert migrate_cli(source, target) == 2
    err = capsys.readouterr().err
    assert expected in last_error(err)
    if setup == "old":
        assert "(gws-archiver run) on it once" in err


def test_missing_arguments_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["migrate-archive", "--to", NOWHERE])
    assert exited.value.code == 2
    assert "--from" in capsys.readouterr().err


def test_an_unreachable_target_is_refused_as_run_refuses_it(
    source: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert migrate_cli(source, NOWHERE) == 2
    error = last_error(capsys.readouterr().err)
    assert "cannot open the archive postgresql://postgres@127.0.0.1:1/nothing" in error


def _after_copy(
    monkeypatch: pytest.MonkeyPatch, table: str, then: Callable[[PgConnection], None]
) -> None:
    """Run ``then`` on the target's connection right after ``table`` is copied."""
    copy_table = transfer.copy_table

    def copy_and_then(src: sqlite3.Connection, pg: PgConnection, *args: Any) -> int:
        rows = copy_table(src, pg, *args)
        if args[0].name == table:
            then(pg)
        return rows

    monkeypatch.setattr(transfer, "copy_table", copy_and_then)


def test_a_difference_fails_the_copy_and_commits_nothing(
    source: Path,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def tamper(pg: PgConnection) -> None:
        pg.execute("UPDATE messages SET text = 'tampered' WHERE rowid = 5")

    _after_copy(monkeypatch, "messages", tamper)
    assert migrate_cli(source, postgres_url) == 1
    error = last_error(capsys.readouterr().err)
    assert "verification failed: messages (rowid=5): text is 'tampered' in PostgreSQL" in error
    assert error.endswith(f"; nothing was committed to {postgres_url}")
    assert all(pg_count(postgres_url, table) == 0 for table in COPIED)


def test_a_missing_row_fails_the_copy(
    source: Path,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _after_copy(monkeypatch, "runs", lambda pg: pg.execute("DELETE FROM runs WHERE run_id = 3"))
    assert migrate_cli(source, postgres_url) == 1
    assert "runs has more rows in SQLite (from row 3)" in last_error(capsys.readouterr().err)
    assert pg_count(postgres_url, "runs") == 0


def test_a_row_postgresql_refuses_rolls_everything_back(
    source: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """SQLite does not enforce foreign keys: an orphan message fails the copy, clearly."""
    with closing(sqlite3.connect(source)) as conn, conn:
        conn.execute(
            "INSERT INTO messages (session_id, message_index, type, raw_json, archived_at)"
            " VALUES ('00ORPHAN', 1, 'Text', '{}', ?)",
            (T,),
        )
    assert migrate_cli(source, postgres_url) == 1
    error = last_error(capsys.readouterr().err)
    assert f"copying into {postgres_url} failed: insert or update on table" in error
    assert "messages_session_id_fkey" in error
    assert all(pg_count(postgres_url, table) == 0 for table in COPIED)


def test_ctrl_c_commits_nothing(
    source: Path,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def interrupt(pg: PgConnection) -> None:
        raise KeyboardInterrupt

    _after_copy(monkeypatch, "events", interrupt)
    assert migrate_cli(source, postgres_url) == 130
    assert "interrupted; nothing was committed" in last_error(capsys.readouterr().err)
    assert pg_count(postgres_url, "messages") == 0
    # The source's lock was released: a daemon (or this copy) may take it again.
    monkeypatch.undo()
    assert migrate_cli(source, postgres_url) == 0


def test_the_command_as_a_process(source: Path, postgres_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "archiver", "migrate-archive", "--from", str(source),
         "--to", postgres_url],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1
    assert "every row equal" in done.stdout
    assert_tables_equal(source, postgres_url)


def test_a_connection_lost_at_the_commit_is_reported_as_such(
    source: Path,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The one moment the outcome is not known: the message says so, and what to do."""
    verify_table = transfer.verify_table

    def verify_then_lose(src: sqlite3.Connection, pg: PgConnection, *args: Any) -> int:
        replaced = verify_table(src, pg, *args)
        if args[0].name == "team_gaps":  # the last table: the commit comes next
            (pid,) = pg.execute("SELECT pg_backend_pid()").fetchone()
            with psycopg.connect(postgres_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        return replaced

    monkeypatch.setattr(transfer, "verify_table", verify_then_lose)
    assert migrate_cli(source, postgres_url) == 1
    error = last_error(capsys.readouterr().err)
    assert "failed while committing the verified copy" in error
    assert "holds either all of it or none of it" in error
    assert "nothing was committed" not in error
    assert pg_count(postgres_url, "sessions") == 0
