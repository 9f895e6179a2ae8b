"""Retention: purge exactly the ended sessions older than N days, never those on legal hold."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from archiver import Archive
from archiver.daemon import Daemon
from archiver.errors import StoreError
from archiver.gws.models import parse_message
from archiver.store.retention import PurgeResult, purge_expired, set_legal_hold
from archiver.store.writer import ArchiveWriter, Malformed, Page
from gws_bench.archive_factory import (
    GeneratedArchive,
    generate_session,
    session_id_of,
    write_archive,
)
from gws_simulator import Simulator, SimulatorOptions
from tests.support import archived_messages, daemon_config, ended_sessions, query, wait_for

NOW = datetime(2024, 6, 30, tzinfo=UTC)
# ended_at per session number: two are past a 30-day retention, one is just inside it.
ENDED_AT = {
    0: "2024-05-01T00:00:00.000Z",
    1: "2024-05-30T23:59:59.999Z",
    2: "2024-05-31T00:00:01.000Z",
    3: "2024-04-01T00:00:00.000Z",
}
TABLES = ("sessions", "messages", "events", "conflicts", "malformed", "session_views")


SESSION_COLUMN = {
    "sessions": 0,
    "messages": 0,
    "events": 3,
    "conflicts": 1,
    "malformed": 1,
    "session_views": 0,
}


def session_of(table: str, row: tuple[Any, ...]) -> str:
    """The session id of a row of ``table``."""
    return str(row[SESSION_COLUMN[table]])


def dump(path: Path, table: str) -> set[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return set(conn.execute(f"SELECT * FROM {table}"))


def sessions_in(path: Path, table: str) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute(f"SELECT DISTINCT session_id FROM {table}")}


async def add_conflict_and_malformed(path: Path, number: int) -> None:
    """Give a session a conflict (index 3 re-read with new text) and a malformed payload."""
    _, pages = generate_session(number, 10, 100)
    changed = {"index": 3, "type": "Text", "text": "changed", "from": {"nickname": "x"}}
    page = Page(
        pages[0].account,
        pages[0].session,
        [parse_message(changed)],
        malformed=[Malformed("no index", '{"type": "Text"}')],
    )
    async with ArchiveWriter(path) as writer:
        await writer.store_page(page)


@pytest.fixture
async def small(tmp_path: Path) -> GeneratedArchive:
    """Ten sessions (0..3 ended at known dates, 4 open), each with conflicts and malformed."""
    archive = await write_archive(
        tmp_path / "archive.sqlite3", sessions=10, messages_per_session=10
    )
    for number in range(10):
        await add_conflict_and_malformed(archive.path, number)
    with sqlite3.connect(archive.path) as conn:
        conn.execute("UPDATE sessions SET ended_at = NULL")
        for number, ended_at in ENDED_AT.items():
            conn.execute(
                "UPDATE sessions SET ended_at = ? WHERE session_id = ?",
                (ended_at, session_id_of(number)),
            )
    return archive


async def test_purges_exactly_the_expired_sessions(small: GeneratedArchive) -> None:
    """Sessions ended before now - N days lose every row; all other rows stay as they were."""
    expired = {session_id_of(0), session_id_of(1), session_id_of(3)}
    kept_before = {
        table: {row for row in dump(small.path, table) if session_of(table, row) not in expired}
        for table in TABLES
    }
    result = await purge_expired(small.path, 30, now=NOW)
    for table in TABLES:
        assert not expired & sessions_in(small.path, table), table
        assert dump(small.path, table) == kept_before[table], table
    assert result.sessions == 3
    assert result.messages == sum(small.sessions[n].message_count for n in (0, 1, 3))


async def test_result_counts_every_deleted_row(small: GeneratedArchive) -> None:
    """PurgeResult adds up to the rows that disappeared from each table."""
    before = {table: len(dump(small.path, table)) for table in TABLES}
    result = await purge_expired(small.path, 30, now=NOW)
    after = {table: len(dump(small.path, table)) for table in TABLES}
    assert PurgeResult(**{t: before[t] - after[t] for t in TABLES}) == result
    assert result.conflicts == result.malformed == 3


async def test_search_rows_go_with_their_messages(small: GeneratedArchive) -> None:
    """The search index stays in step: purged text is no longer found, the index checks out."""
    async with Archive(small.path) as archive:
        before = {h.message.session_id for h in await archive.search("zebra")}
    await purge_expired(small.path, 30, now=NOW)
    async with Archive(small.path) as archive:
        after = [h.message.session_id for h in await archive.search("zebra")]
    assert before == {session_id_of(3), session_id_of(5)}
    assert after == [session_id_of(5)]
    with sqlite3.connect(small.path) as conn:
        conn.execute("INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')")
        indexed = conn.execute("SELECT count(*) FROM messages_fts_docsize").fetchone()[0]
        assert indexed == conn.execute("SELECT count(*) FROM messages").fetchone()[0]


async def test_legal_hold_keeps_an_expired_session_whole(small: GeneratedArchive) -> None:
    """A held session older than the retention keeps every row, in every table."""
    held = session_id_of(0)
    before = {t: dump(small.path, t) for t in TABLES}
    assert await set_legal_hold(small.path, held, held=True)
    await purge_expired(small.path, 30, now=NOW)
    for table in TABLES:
        held_rows = {row for row in before[table] if session_of(table, row) == held}
        after = {row for row in dump(small.path, table) if session_of(table, row) == held}
        assert held_rows, table
        assert len(after) == len(held_rows), table


async def test_released_hold_lets_the_next_purge_remove_it(small: GeneratedArchive) -> None:
    """Lifting the hold makes the session expire like any other."""
    held = session_id_of(0)
    await set_legal_hold(small.path, held, held=True)
    await purge_expired(small.path, 30, now=NOW)
    await set_legal_hold(small.path, held, held=False)
    result = await purge_expired(small.path, 30, now=NOW)
    assert result.sessions == 1
    assert held not in sessions_in(small.path, "sessions")


async def test_open_sessions_are_never_purged(small: GeneratedArchive) -> None:
    """A session without ended_at stays, however old its messages are."""
    await purge_expired(small.path, 0, now=datetime(2100, 1, 1, tzinfo=UTC))
    assert sessions_in(small.path, "sessions") == {session_id_of(n) for n in range(4, 10)}


async def test_small_batches_purge_the_same_rows(small: GeneratedArchive) -> None:
    """batch=3 deletes exactly what one large batch would."""
    result = await purge_expired(small.path, 30, batch=3, now=NOW)
    assert result.sessions == 3
    assert sessions_in(small.path, "messages") == {session_id_of(n) for n in (2, *range(4, 10))}


async def test_second_purge_finds_nothing(small: GeneratedArchive) -> None:
    """Purging is idempotent: a repeat deletes nothing."""
    await purge_expired(small.path, 30, now=NOW)
    assert await purge_expired(small.path, 30, now=NOW) == PurgeResult()


async def test_hold_on_unknown_session_reports_false(small: GeneratedArchive) -> None:
    """set_legal_hold returns False for an id the archive does not hold."""
    assert not await set_legal_hold(small.path, "nope", held=True)


async def test_purge_of_missing_archive_fails_without_creating_it(tmp_path: Path) -> None:
    """A wrong path is an error, not a new empty archive."""
    path = tmp_path / "absent.sqlite3"
    with pytest.raises(StoreError, match="no archive"):
        await purge_expired(path, 30)
    assert not path.exists()


async def test_purge_commits_in_small_steps_while_the_writer_keeps_going(
    tmp_path: Path,
) -> None:
    """Deletions show up batch by batch, and the writer stores a page before the purge ends."""
    big = await write_archive(tmp_path / "archive.sqlite3", sessions=150, messages_per_session=100)
    total = big.message_count
    purge = asyncio.create_task(
        purge_expired(big.path, 0, batch=20, now=datetime(2100, 1, 1, tzinfo=UTC))
    )
    with sqlite3.connect(big.path) as conn:
        deadline = time.monotonic() + 30
        while conn.execute("SELECT count(*) FROM messages").fetchone()[0] == total:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.001)
    _, pages = generate_session(5000, 100, 100)
    async with ArchiveWriter(big.path) as writer:
        await writer.store_page(pages[0])
    assert not purge.done()
    result = await purge
    assert result.sessions == sum(p.ended for p in big.sessions)
    assert session_id_of(5000) in sessions_in(big.path, "messages")


async def test_daemon_applies_configured_retention(tmp_path: Path) -> None:
    """With ``[archive] retain_days`` the daemon purges expired ended sessions by itself."""
    archive = tmp_path / "archive.sqlite3"
    async with Simulator(SimulatorOptions(agents=1, seed=2, scenario=None)) as sim:
        old = sim.world.create_session("agent1")
        sim.world.append_message(old, "Text", text="old news")
        sim.world.end_session(old)
        config = daemon_config(sim.base_url, archive, agents=1)
        task = asyncio.create_task(Daemon(config).run())
        await wait_for(lambda: ended_sessions(archive) == 1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        sim.world.remove_session(old)
        live = sim.world.create_session("agent1")
        sim.world.append_message(live, "Text", text="fresh")
        short = dataclasses.replace(config.archive, retain_days=1e-6, retention_interval_s=0.2)
        task = asyncio.create_task(Daemon(dataclasses.replace(config, archive=short)).run())
        await wait_for(lambda: archived_messages(archive) == 1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert query(archive, "SELECT session_id FROM sessions") == [(live,)]
