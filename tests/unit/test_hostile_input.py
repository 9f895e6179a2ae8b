"""Guarantee 7 under attack: one bad message costs at most that message, and nothing stops.

Each test serves poison byte for byte from a GWS of the tests' own (``tests/raw_gws.py``) to the
real daemon over HTTP, then counts what reached the archive: every healthy message, each
poison entry kept once (as a message with the unreadable field empty, or raw in ``malformed``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from archiver.config import Config
from archiver.daemon import Daemon
from archiver.errors import StoreError
from archiver.gws.models import Message, parse_session
from archiver.gws.wire import decode_json, repair_java_longs
from archiver.retry_after import parse_retry_after
from archiver.store.retention import purge_expired
from archiver.store.writer import ArchiveWriter, Page
from tests.support import count, daemon_config, query, wait_for
from tests.support.raw_gws import RawGws, serving, text


@asynccontextmanager
async def archiving(config: Config) -> AsyncIterator[asyncio.Task[None]]:
    """The daemon running ``config`` for the block; the test fails if it stops by itself."""
    daemon = Daemon(config)
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.started(), 10)
        yield task
        assert not task.done(), "the daemon stopped by itself"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def config_for(gws: RawGws, archive: Path, agents: int = 2, **options: Any) -> Config:
    return daemon_config(gws.base_url, archive, agents=agents, **options)


def healthy(count_: int, start: int = 1) -> list[bytes]:
    return [text(i, f"healthy {i}") for i in range(start, start + count_)]


def messages(archive: Path, session_id: str) -> list[tuple[Any, ...]]:
    return query(
        archive,
        "SELECT message_index, text, sent_at FROM messages WHERE session_id = ?"
        " ORDER BY message_index",
        (session_id,),
    )


def malformed(archive: Path) -> list[tuple[Any, ...]]:
    return query(archive, "SELECT session_id, message_index, problem FROM malformed ORDER BY id")


async def test_an_offset_of_24_hours_costs_nothing(tmp_path: Path) -> None:
    """Item 1: +24:00 (and other unreadable fields) leave sent_at empty; every account goes on."""
    gws = RawGws()
    odd = text(2, "odd stamp", timestamp="2024-03-01T10:00:00.000+24:00")
    gws.add("agent1", "S1", [text(1, "before"), odd, text(3, "after")])
    gws.add("agent2", "S2", healthy(5))
    archive = tmp_path / "archive.sqlite3"
    async with serving(gws), archiving(config_for(gws, archive)):
        await wait_for(lambda: count(archive, "SELECT count(*) FROM messages") == 8)
    assert messages(archive, "S1")[1] == (2, "odd stamp", None)
    assert malformed(archive) == []


async def test_indices_that_no_integer_column_holds_are_kept_raw(tmp_path: Path) -> None:
    """Item 1: an index of 5,000 digits, or of 2**63, is malformed; its neighbours are archived."""
    gws = RawGws()
    digits = b'{"index":"' + b"9" * 5000 + b'","type":"Text","text":"x"}'
    huge = b'{"index":9223372036854775808,"type":"Text","text":"y"}'
    gws.add("agent1", "S1", [text(1, "one"), digits, text(3, "three"), huge, text(5, "five")])
    archive = tmp_path / "archive.sqlite3"
    async with serving(gws), archiving(config_for(gws, archive, agents=1)):
        await wait_for(lambda: count(archive, "SELECT count(*) FROM messages") == 3)
        await wait_for(lambda: len(malformed(archive)) == 2)
    assert [row[0] for row in messages(archive, "S1")] == [1, 3, 5]


def test_java_long_repair_never_touches_text() -> None:
    """Item 2: the ``L`` of an unquoted long goes; "2L," inside a string stays."""
    body = b'{"messages":[{"index":1,"text":"Please send 2L, thanks","timestampSeconds":13892L}]}'
    assert repair_java_longs(body) == body.replace(b"13892L", b"13892")
    assert decode_json(body, "u")["messages"][0]["text"] == "Please send 2L, thanks"


async def test_java_long_pages_archive_text_as_sent(tmp_path: Path) -> None:
    """Item 2, end to end: text and raw_json keep the customer's "2L," exactly."""
    gws = RawGws()
    element = (
        b'{"index":1,"type":"Text","text":"Please send 2L, thanks",'
        b'"timestampSeconds":1389261492035L}'
    )
    gws.add("agent1", "S1", [element])
    archive = tmp_path / "archive.sqlite3"
    async with serving(gws), archiving(config_for(gws, archive, agents=1)):
        await wait_for(lambda: count(archive, "SELECT count(*) FROM messages") == 1)
    ((words, raw, sent_at),) = query(archive, "SELECT text, raw_json, sent_at FROM messages")
    assert words == "Please send 2L, thanks"
    assert "2L, thanks" in raw
    assert sent_at == "2014-01-09T09:58:12.035Z"


async def test_a_page_that_cannot_be_stored_fails_alone(tmp_path: Path) -> None:
    """Item 3: a non-sqlite error in a shared commit costs only the message that caused it."""
    path = tmp_path / "archive.sqlite3"
    bad = Message(2**63, "Text", "x", None, None, None, None, None, None, '{"index":"big"}')
    good = Message(1, "Text", "fine", None, None, None, None, None, None, '{"index":1}')
    s1 = parse_session({"id": "S1", "state": "Chatting"})
    s2 = parse_session({"id": "S2", "state": "Chatting"})
    async with ArchiveWriter(path) as writer:
        results = await asyncio.gather(
            writer.store_page(Page("agent1", s1, [good, bad])),
            writer.store_page(Page("agent1", s2, [good])),
        )
        assert [result.next_index for result in results] == [2, 2]
        again = await writer.store_page(Page("agent1", s2, [dataclasses.replace(good, index=2)]))
        assert again.next_index == 3
    assert query(path, "SELECT session_id, message_index FROM messages ORDER BY 1, 2") == [
        ("S1", 1),
        ("S2", 1),
        ("S2", 2),
    ]
    assert len(query(path, "SELECT * FROM malformed WHERE session_id = 'S1'")) == 1
    seqs = [seq for (seq,) in query(path, "SELECT seq FROM events ORDER BY seq")]
    assert seqs == list(range(1, len(seqs) + 1))


async def test_an_index_far_ahead_does_not_move_the_cursor(tmp_path: Path) -> None:
    """Item 4: index 1389261492035 at place 5: messages 6-19 are still read, it is kept raw."""
    gws = RawGws()
    log = [*healthy(4), text(1389261492035, "liar"), *healthy(14, start=6)]
    gws.add("agent1", "S1", log)
    archive = tmp_path / "archive.sqlite3"
    async with serving(gws), archiving(config_for(gws, archive, agents=1)):
        await wait_for(lambda: count(archive, "SELECT count(*) FROM messages") == 18)
        gws.logs["agent1"]["S1"].append(text(20, "later"))
        await wait_for(lambda: count(archive, "SELECT count(*) FROM messages") == 19)
    assert [row[0] for row in messages(archive, "S1")] == [*range(1, 5), *range(6, 21)]
    ((_, _, problem),) = malformed(archive)
    assert "ahead" in problem


@pytest.mark.parametrize("value", ["inf", "nan", "-1", "1e309", "soon", "x" * 5000])
def test_unreadable_retry_after_is_ignored(value: str) -> None:
    """Item 5: Retry-After that is no number of seconds or date is ignored."""
    assert parse_retry_after(value, cap_s=300) is None


def test_retry_after_is_capped() -> None:
    """Item 5: a huge number, or a date far ahead, waits at most the cap."""
    assert parse_retry_after("99999999999999999999", cap_s=300) == 300
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", cap_s=300) == 300
    past = (datetime.now(UTC) - timedelta(days=1)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert parse_retry_after(past, cap_s=300) == 0


async def test_retry_after_inf_does_not_pause_the_host_for_good(tmp_path: Path) -> None:
    """Item 5, end to end: a 503 with Retry-After: inf; archiving goes on."""
    gws = RawGws()
    gws.add("agent1", "S1", healthy(3))
    gws.answers = [web.Response(status=503, headers={"Retry-After": h}) for h in ("inf", "1e99")]
    gws.answers.append(web.Response(status=429, headers={"Retry-After": "99999999"}))
    archive = tmp_path / "archive.sqlite3"
    async with serving(gws):
        config = config_for(gws, archive, agents=1, max_retry_after_s=0.2)
        async with archiving(config):
            await wait_for(lambda: count(archive, "SELECT count(*) FROM messages") == 3, 20)


async def test_undecodable_elements_are_isolated(tmp_path: Path) -> None:
    """Item 6: lone surrogates, invalid UTF-8, deep nesting: one message each, the rest kept."""
    gws = RawGws()
    surrogate = b'{"index":2,"type":"Text","text":"half \\ud83d emoji"}'
    bad_utf8 = b'{"index":3,"type":"Text","text":"bad \xff\xfe bytes"}'
    deep = b'{"index":4,"type":"Text","text":"deep","x":' + b"[" * 5000 + b"]" * 5000 + b"}"
    log = [text(1, "one"), surrogate, bad_utf8, deep, text(5, "five"), text(6, "six")]
    gws.add("agent1", "S1", log)
    gws.add("agent2", "S2", healthy(4))
    archive = tmp_path / "archive.sqlite3"
    async with serving(gws), archiving(config_for(gws, archive)):
        await wait_for(lambda: count(archive, "SELECT count(*) FROM messages") == 9)
        await wait_for(lambda: len(malformed(archive)) == 1)
    rows = messages(archive, "S1")
    assert [row[0] for row in rows] == [1, 2, 3, 5, 6]
    assert rows[1][1] == "half \ufffd emoji"
    assert rows[2][1] == "bad \ufffd\ufffd bytes"
    ((session_id, index, _),) = malformed(archive)
    assert (session_id, index) == ("S1", 4)
    (raw,) = query(archive, "SELECT raw_json FROM malformed")[0]
    assert raw.startswith('{"statusCode":0,"messages":[{"index":4')


async def test_a_repeated_index_with_other_content_is_a_conflict(tmp_path: Path) -> None:
    """Item 13: the same index twice in one page, differing: the first kept, the second recorded."""
    gws = RawGws()
    gws.add("agent1", "S1", [text(1, "one"), text(2, "first"), text(2, "second"), text(3, "3")])
    archive = tmp_path / "archive.sqlite3"
    async with serving(gws), archiving(config_for(gws, archive, agents=1)):
        await wait_for(lambda: count(archive, "SELECT count(*) FROM conflicts") == 1)
    assert messages(archive, "S1")[1][1] == "first"
    (raw,) = query(archive, "SELECT raw_json FROM conflicts")[0]
    assert "second" in raw


async def test_a_malformed_last_message_is_recorded_once(tmp_path: Path) -> None:
    """Item 13: a bad entry at the end of a log is kept once, however often the log is read."""
    gws = RawGws()
    gws.add("agent1", "S1", [text(1, "one"), b'{"index":2,"type":17}'])
    archive = tmp_path / "archive.sqlite3"
    async with serving(gws), archiving(config_for(gws, archive, agents=1)):
        await wait_for(lambda: len(malformed(archive)) == 1)
        reads = len(gws.requests)
        await wait_for(lambda: len(gws.requests) > reads + 20)
        gws.logs["agent1"]["S1"].append(text(3, "three"))
        await wait_for(lambda: count(archive, "SELECT count(*) FROM messages") == 2)
    assert malformed(archive)[0][:2] == ("S1", 2)
    assert len(malformed(archive)) == 1


async def test_an_oversized_body_is_read_in_smaller_pages(tmp_path: Path) -> None:
    """Item 13: max_body_bytes bounds what is held; the big message alone is kept raw."""
    gws = RawGws()
    gws.add("agent1", "S1", [*healthy(3), text(4, "x" * 20_000), *healthy(3, start=5)])
    archive = tmp_path / "archive.sqlite3"
    async with serving(gws), archiving(config_for(gws, archive, agents=1, max_body_bytes=4096)):
        await wait_for(lambda: count(archive, "SELECT count(*) FROM messages") == 6)
        await wait_for(lambda: len(malformed(archive)) == 1)
    assert malformed(archive)[0][:2] == ("S1", 4)


async def test_purged_sessions_stay_purged(tmp_path: Path) -> None:
    """Item 10: retention leaves a tombstone; a session GWS still lists is not archived again."""
    gws = RawGws()
    gws.add("agent1", "S1", healthy(3), state="Completed")
    archive = tmp_path / "archive.sqlite3"
    async with serving(gws):
        config = config_for(gws, archive, agents=1)
        async with archiving(config):
            await wait_for(
                lambda: count(archive, "SELECT count(*) FROM events WHERE type='SessionEnded'")
            )
        later = datetime.now(UTC) + timedelta(days=2)
        result = await purge_expired(archive, retain_days=1, now=later)
        assert result.sessions == 1
        reads = len(gws.requests)
        async with archiving(config):
            await wait_for(lambda: len(gws.requests) > reads + 10)
    assert count(archive, "SELECT count(*) FROM sessions") == 0
    assert count(archive, "SELECT count(*) FROM events") == 0


async def test_session_ids_cannot_leave_their_path(tmp_path: Path) -> None:
    """A session id with slashes or dots is one encoded path segment, never another endpoint."""
    gws = RawGws()
    gws.add("agent1", "../../x?y", healthy(2))
    archive = tmp_path / "archive.sqlite3"
    async with serving(gws), archiving(config_for(gws, archive, agents=1)):
        await wait_for(lambda: count(archive, "SELECT count(*) FROM messages") == 2)
    assert any("/smssessions/..%2F..%2Fx%3Fy/messages" in path for path in gws.requests)


async def test_store_read_errors_are_store_errors(tmp_path: Path) -> None:
    """Item 13: sqlite3 errors on the writer's read paths come out as StoreError."""
    path = tmp_path / "archive.sqlite3"
    async with ArchiveWriter(path) as writer:
        conn = sqlite3.connect(path)
        conn.execute("DROP TABLE purged_sessions")
        conn.commit()
        conn.close()
        with pytest.raises(StoreError):
            await writer.session_states(["nope"])
