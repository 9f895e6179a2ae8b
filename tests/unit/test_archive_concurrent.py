"""Reading while the daemon writes: search, transcript and export see only whole pages."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

from archiver import Archive
from archiver.store.writer import ArchiveWriter
from gws_bench.archive_factory import GeneratedArchive, generate_session, session_id_of

NEW_SESSIONS = range(1000, 1040)
PAGE_SIZE = 25


async def write_more(path: Path) -> None:
    """Store 40 more sessions, 25 messages per page, yielding between pages."""
    async with ArchiveWriter(path) as writer:
        for number in NEW_SESSIONS:
            _, pages = generate_session(number, 100, PAGE_SIZE)
            for page in pages:
                await writer.store_page(page)
                await asyncio.sleep(0.002)


async def test_reads_during_writes_are_consistent(
    big_archive: GeneratedArchive, tmp_path: Path
) -> None:
    """While pages are stored, reads see whole pages, in order, and never fail."""
    path = tmp_path / "archive.sqlite3"
    shutil.copyfile(big_archive.path, path)
    before = big_archive.message_count
    writer = asyncio.create_task(write_more(path))
    rounds = 0
    async with Archive(path) as archive:
        top = [h.message.session_id for h in await archive.search("zebra")]
        while not writer.done():
            rounds += 1
            hits = await archive.search("zebra")
            assert [h.message.session_id for h in hits] == top
            [newest] = [s async for s in archive.sessions(limit=1)]
            transcript = await archive.transcript(newest.session_id)
            assert transcript is not None
            indices = [m.message_index for m in transcript.messages if m.message_index > 0]
            assert indices == list(range(1, len(indices) + 1))
            assert len(transcript.messages) % PAGE_SIZE in (0, 1)
            keys = [(m.session_id, m.message_index) async for m in archive.messages()]
            assert keys == sorted(set(keys))
            assert len(keys) >= before
        await writer
        final = [m async for m in archive.messages()]
        newest_ids = [s.session_id async for s in archive.sessions(limit=len(NEW_SESSIONS))]
    assert rounds >= 2
    assert set(newest_ids) == {session_id_of(n) for n in NEW_SESSIONS}
    with sqlite3.connect(path) as conn:
        assert len(final) == conn.execute("SELECT count(*) FROM messages").fetchone()[0]
        conn.execute("INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')")
