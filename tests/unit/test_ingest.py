"""Storing pages without the writer's thread: Ingest on a plain connection to a real file."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from archiver.errors import StoreError
from archiver.gws.models import Malformed, Message, parse_message, parse_session
from archiver.store.db import connect
from archiver.store.ingest import Ingest, Page, PageResult, record_malformed
from archiver.store.migrate import migrate

SESSION = parse_session({"id": "S1", "state": "Chatting", "participants": [], "userData": {}})


def message(index: int, text: str | None = None) -> Message:
    return parse_message(
        {
            "index": index,
            "type": "Text",
            "text": text if text is not None else f"message {index}",
            "from": {"type": "Customer", "nickname": "Pat", "participantId": "00AA"},
            "timestampSeconds": 1700000000000 + index,
        }
    )


def page(*messages: Message, session: Any = SESSION) -> Page:
    return Page("agent1", session, messages)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = connect(tmp_path / "archive.sqlite3")
    migrate(connection)
    yield connection
    connection.close()


def store(ingest: Ingest, conn: sqlite3.Connection, one: Page) -> PageResult:
    (outcome,) = ingest.store_pages(conn, [one])
    assert isinstance(outcome, PageResult), outcome
    return outcome


def test_a_page_is_stored_with_its_events_and_cursor(conn: sqlite3.Connection) -> None:
    """The session row, the messages, the cursor and one event per message, in seq order."""
    ingest = Ingest()
    result = store(ingest, conn, page(message(1), message(2)))
    assert [(e.seq, e.type, e.message_index) for e in result.events] == [
        (1, "SessionStarted", None),
        (2, "Text", 1),
        (3, "Text", 2),
    ]
    assert (result.next_index, ingest.last_seq) == (3, 3)
    assert conn.execute("SELECT next_index FROM sessions").fetchall() == [(3,)]
    assert conn.execute("SELECT message_index FROM messages").fetchall() == [(1,), (2,)]
    assert conn.execute("SELECT count(*) FROM events").fetchone() == (3,)


def test_a_re_read_counts_as_duplicates(conn: sqlite3.Connection) -> None:
    """Messages read again unchanged are counted, not stored or announced again."""
    ingest = Ingest()
    store(ingest, conn, page(message(1), message(2)))
    again = store(ingest, conn, page(message(1), message(2), message(3)))
    assert (again.duplicates, again.conflicts) == (2, 0)
    assert [e.message_index for e in again.events] == [3]
    assert conn.execute("SELECT count(*) FROM messages").fetchone() == (3,)


def test_a_differing_re_read_is_recorded_as_a_conflict(conn: sqlite3.Connection) -> None:
    """A message read again with other content keeps the first; the second goes to conflicts."""
    ingest = Ingest()
    store(ingest, conn, page(message(1, "first")))
    again = store(ingest, conn, page(message(1, "second")))
    assert (again.duplicates, again.conflicts, again.events) == (0, 1, [])
    assert conn.execute("SELECT text FROM messages").fetchall() == [("first",)]
    (raw,) = conn.execute("SELECT raw_json FROM conflicts").fetchone()
    assert "second" in raw


def test_a_message_that_cannot_be_stored_is_isolated_into_malformed(
    conn: sqlite3.Connection,
) -> None:
    """An index no SQLite integer holds fails alone: its neighbours are stored, it is kept raw."""
    ingest = Ingest()
    bad = Message(2**63, "Text", "x", None, None, None, None, None, None, '{"index":"big"}')
    result = store(ingest, conn, page(message(1), bad, message(3)))
    assert [e.message_index for e in result.events if e.message_index] == [1, 3]
    assert conn.execute("SELECT message_index FROM messages").fetchall() == [(1,), (3,)]
    ((problem, raw),) = conn.execute("SELECT problem, raw_json FROM malformed").fetchall()
    assert problem.startswith(f"message {2**63} cannot be stored")
    assert raw == '{"index":"big"}'


def test_pages_of_one_batch_stand_or_fall_alone(conn: sqlite3.Connection) -> None:
    """A page that fails in a shared transaction costs only itself; seqs stay gapless."""
    ingest = Ingest()
    other = parse_session({"id": "S2", "state": "Chatting"})
    broken = Page("agent1", other, (), [Malformed("bad", None)])  # type: ignore[arg-type]
    outcomes = ingest.store_pages(conn, [broken, page(message(1))])
    assert isinstance(outcomes[0], StoreError)
    assert isinstance(outcomes[1], PageResult)
    assert conn.execute("SELECT session_id FROM sessions").fetchall() == [("S1",)]
    assert conn.execute("SELECT seq FROM events ORDER BY seq").fetchall() == [(1,), (2,)]


def test_a_purged_session_is_not_archived_again(conn: sqlite3.Connection) -> None:
    """A session with a tombstone stores nothing, whatever GWS still lists."""
    conn.execute("INSERT INTO purged_sessions VALUES ('S1', '2024-01-01T00:00:00.000Z')")
    result = store(Ingest(), conn, page(message(1)))
    assert (result.purged, result.events) == (True, [])
    assert conn.execute("SELECT count(*) FROM sessions").fetchone() == (0,)


def test_session_less_malformed_entries_are_kept_once(conn: sqlite3.Connection) -> None:
    """An entry of a session list that names no session is recorded once, however often read."""
    entries = [Malformed("no id", '{"state":"Chatting"}')]
    assert record_malformed(conn, "agent1", entries) == 1
    assert record_malformed(conn, "agent1", entries) == 0
    assert conn.execute("SELECT session_id, account FROM malformed").fetchall() == [("", "agent1")]
