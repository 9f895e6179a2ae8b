"""The archive writer: one transaction per page, no duplicates, conflicts kept, migrations."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from archiver.errors import SchemaTooNewError, StoreError
from archiver.gws.models import parse_message, parse_session
from archiver.store.migrate import Migration, load_migrations, migrate
from archiver.store.writer import ArchiveWriter, Malformed, Page

SESSION = parse_session({"id": "S1", "state": "Chatting", "participants": [], "userData": {}})


def message(index: int, text: str | None = None, msg_type: str = "Text") -> Any:
    return parse_message(
        {
            "index": index,
            "type": msg_type,
            "text": text if text is not None else f"message {index}",
            "from": {"type": "Customer", "nickname": "Pat", "participantId": "00AA"},
            "visibility": "All",
            "timestampSeconds": 1700000000000 + index,
        }
    )


def page(*indices: int, session: Any = SESSION, end: str | None = None) -> Page:
    return Page("agent1", session, [message(i) for i in indices], end_reason=end)


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[ArchiveWriter]:
    async with ArchiveWriter(tmp_path / "archive.sqlite3") as archive_writer:
        yield archive_writer


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


async def test_first_page_starts_session_and_emits_one_event_per_message(
    writer: ArchiveWriter,
) -> None:
    """A new session gets SessionStarted, then one event per message, in seq order."""
    result = await writer.store_page(page(1, 2, 3))
    assert [e.type for e in result.events] == ["SessionStarted", "Text", "Text", "Text"]
    assert [e.seq for e in result.events] == [1, 2, 3, 4]
    assert result.next_index == 4
    assert writer.last_seq == 4


async def test_overlapping_and_repeated_pages_are_harmless(writer: ArchiveWriter) -> None:
    """Guarantee 2: re-reading messages stores nothing twice and emits no event twice."""
    await writer.store_page(page(1, 2, 3))
    result = await writer.store_page(page(2, 3, 4, 5))
    again = await writer.store_page(page(1, 2, 3, 4, 5))
    assert [e.event_id for e in result.events] == ["evt_S1_4", "evt_S1_5"]
    assert again.events == []
    assert again.duplicates == 5
    indices = rows(writer.path, "SELECT message_index FROM messages ORDER BY 1")
    assert indices == [(1,), (2,), (3,), (4,), (5,)]
    assert rows(writer.path, "SELECT count(*) FROM events WHERE message_index IS NOT NULL") == [
        (5,)
    ]


async def test_reread_with_different_content_is_a_conflict(writer: ArchiveWriter) -> None:
    """Guarantee 3: the first version stays, the differing one lands in conflicts."""
    await writer.store_page(page(1, 2))
    changed = Page("agent1", SESSION, [message(2, text="edited")])
    result = await writer.store_page(changed)
    assert result.conflicts == 1
    assert result.events == []
    assert rows(writer.path, "SELECT text FROM messages WHERE message_index = 2") == [
        ("message 2",)
    ]
    (conflict,) = rows(writer.path, "SELECT message_index, raw_json FROM conflicts")
    assert conflict[0] == 2
    assert "edited" in conflict[1]


async def test_transcript_save_done_is_stored_once_and_not_a_cursor(writer: ArchiveWriter) -> None:
    """TranscriptSaveDone (index -1) is stored once, even when it comes on every read."""
    done = message(-1, msg_type="TranscriptSaveDone")
    first = await writer.store_page(Page("agent1", SESSION, [message(1), done]))
    second = await writer.store_page(Page("agent1", SESSION, [done]))
    assert [e.type for e in first.events][-1] == "TranscriptSaveDone"
    assert first.next_index == 2
    assert second.events == []
    assert rows(writer.path, "SELECT count(*) FROM messages WHERE message_index = -1") == [(1,)]


async def test_session_changes_and_end_emit_lifecycle_events_once(writer: ArchiveWriter) -> None:
    """SessionUpdated on a state change; exactly one SessionEnded, even if ended twice."""
    await writer.store_page(page(1))
    done = parse_session({"id": "S1", "state": "Completed", "participants": [], "userData": {}})
    ended = await writer.store_page(page(2, session=done, end="final_state"))
    again = await writer.store_page(page(session=done, end="final_state"))
    assert [e.type for e in ended.events] == ["SessionUpdated", "Text", "SessionEnded"]
    assert again.events == []
    assert rows(writer.path, "SELECT ended_at IS NOT NULL, state FROM sessions") == [
        (1, "Completed")
    ]


async def test_unknown_type_becomes_unknown_event_with_raw(writer: ArchiveWriter) -> None:
    """Unknown message types are archived and announced as ``Unknown`` with the raw JSON."""
    odd = parse_message({"index": 1, "type": "IdleControlAlert", "text": "idle"})
    result = await writer.store_page(Page("agent1", SESSION, [odd]))
    event = result.events[-1].typed()
    assert event.type == "Unknown"
    assert event.data()["gws_type"] == "IdleControlAlert"
    assert event.data()["raw"]["text"] == "idle"


async def test_state_survives_reopen(tmp_path: Path) -> None:
    """Cursors and seq continue from the file after a restart."""
    path = tmp_path / "archive.sqlite3"
    async with ArchiveWriter(path) as first:
        await first.store_page(page(1, 2, 3))
    async with ArchiveWriter(path) as second:
        state = (await second.session_states(["S1"]))["S1"]
        assert state.next_index == 4
        assert second.last_seq == 4
        result = await second.store_page(page(3, 4))
        assert [e.seq for e in result.events] == [5]


async def test_writer_rejects_use_after_close(tmp_path: Path) -> None:
    """Use after close raises a clear error; close twice is fine."""
    writer = ArchiveWriter(tmp_path / "a.sqlite3")
    await writer.open()
    await writer.close()
    await writer.close()
    with pytest.raises(StoreError, match="not open"):
        await writer.store_page(page(1))


def test_archive_newer_than_code_is_refused(tmp_path: Path) -> None:
    """A database at a schema version this code does not know is refused, untouched."""
    conn = sqlite3.connect(tmp_path / "a.sqlite3", isolation_level=None)
    version = migrate(conn)
    conn.execute("INSERT INTO schema_migrations VALUES (?, 'future.sql', 'now')", (version + 1,))
    with pytest.raises(SchemaTooNewError):
        migrate(conn)
    conn.close()


def test_failing_migration_leaves_database_as_it_was(tmp_path: Path) -> None:
    """Each migration applies atomically with its version record."""
    conn = sqlite3.connect(tmp_path / "a.sqlite3", isolation_level=None)
    good = load_migrations()
    broken = Migration(len(good) + 1, "999_broken.sql", "CREATE TABLE t (x); SELECT nope();")
    with pytest.raises(StoreError, match="999_broken"):
        migrate(conn, [*good, broken])
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "t" not in tables
    assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] == len(good)
    conn.close()


async def test_pages_committed_together_still_stand_or_fall_alone(writer: ArchiveWriter) -> None:
    """Pages queued while the writer is busy share a commit; a failing one fails alone."""
    other = parse_session({"id": "S2", "state": "Chatting"})
    third = parse_session({"id": "S3", "state": "Chatting"})
    broken = Page("agent1", other, [message(1)], [Malformed("bad", None)])  # type: ignore[arg-type]
    results = await asyncio.gather(
        writer.store_page(page(1, 2)),
        writer.store_page(broken),
        writer.store_page(page(1, session=third)),
        return_exceptions=True,
    )
    assert isinstance(results[1], StoreError)
    assert rows(writer.path, "SELECT session_id, count(*) FROM messages GROUP BY 1") == [
        ("S1", 2),
        ("S3", 1),
    ]
    seqs = rows(writer.path, "SELECT seq FROM events ORDER BY seq")
    assert [s for (s,) in seqs] == list(range(1, len(seqs) + 1))
    # The batch's search rows: the stored messages', none of the failed page's.
    indexed = "SELECT rowid, text FROM messages_fts ORDER BY rowid"
    assert rows(writer.path, indexed) == rows(
        writer.path, "SELECT rowid, text FROM messages ORDER BY rowid"
    )
