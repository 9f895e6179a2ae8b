"""Storage ceiling: the archive writer against plain `executemany` of the very same rows.

A backlog is made in-process with the simulator's world and parsed by the GWS client's own
functions into pages, so no HTTP is involved. `ArchiveWriter` stores them page by page; then
the rows it wrote (sessions, messages, events) are inserted again with `executemany` into new
archives: all in one transaction, a transaction per page, and (messages and events only) a
transaction per page in the bare schema of the minimal pipeline. Together they show what the
writer's Python costs, what a transaction per page costs and what the schema (indexes, the
full-text index) costs.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from archiver.gws.client import parse_messages_body
from archiver.gws.models import parse_session
from archiver.gws.wire import decode_json
from archiver.store.migrate import migrate
from archiver.store.queries import MESSAGE_COLUMNS
from archiver.store.writer import ArchiveWriter, Page
from gws_bench.ceilings import (
    EVENT_COLUMNS,
    INSERT_EVENT,
    INSERT_MESSAGE,
    open_bare_archive,
)
from gws_bench.report import ScenarioResult
from gws_bench.settings import BenchContext, BenchSettings
from gws_simulator.scenario import Scenario, ScenarioDriver
from gws_simulator.wire import envelope
from gws_simulator.world import World

Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Rows:
    """The rows of one archive, per session: what a page of that session wrote."""

    columns: dict[str, list[str]]
    by_session: dict[str, dict[str, list[Row]]]  # session id -> table -> rows


def build_pages(sessions: int, messages: int, agents: int, seed: int) -> list[Page]:
    """A backlog from the simulator's world, parsed as the daemon parses what it reads."""
    world = World(agents=agents, seed=seed)
    ScenarioDriver(world, Scenario(sessions=0, backlog=(sessions, messages)), seed).open_backlog()
    pages = []
    for session in world.sessions.values():
        url = f"{world.base_url}/api/v2/me/smssessions/{session.id}/messages"
        body = envelope("messages", [message.body for message in session.messages])
        page = parse_messages_body(decode_json(body, url), url)
        snapshot = parse_session(orjson.loads(world.session_json(session)))
        pages.append(Page(session.account, snapshot, page.messages))
    world.close()
    return pages


async def store_with_writer(pages: Sequence[Page], archive: Path) -> float:
    """Seconds `ArchiveWriter` takes to store the pages one by one (opening excluded)."""
    async with ArchiveWriter(archive) as writer:
        started = time.perf_counter()
        for page in pages:
            await writer.store_page(page)
        return time.perf_counter() - started


def read_rows(archive: Path) -> Rows:
    """The sessions, messages and events rows of an archive, grouped by session."""
    conn = sqlite3.connect(archive)
    columns: dict[str, list[str]] = {}
    by_session: dict[str, dict[str, list[Row]]] = defaultdict(lambda: defaultdict(list))
    try:
        for table in ("sessions", "messages", "events"):
            cursor = conn.execute(f"SELECT * FROM {table}")
            columns[table] = [d[0] for d in cursor.description]
            position = columns[table].index("session_id")
            for row in cursor:
                by_session[row[position]][table].append(row)
    finally:
        conn.close()
    return Rows(columns, by_session)


@contextmanager
def _fresh_archive(path: Path) -> Iterator[sqlite3.Connection]:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        migrate(conn)
        yield conn
    finally:
        conn.close()


def insert_rows(rows: Rows, path: Path, *, per_page: bool) -> float:
    """Seconds to insert every row into a new archive: one transaction, or one per page."""
    statements = {
        table: f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        for table, names in rows.columns.items()
    }
    groups = list(rows.by_session.values())
    with _fresh_archive(path) as conn:
        started = time.perf_counter()
        batches = [[group] for group in groups] if per_page else [groups]
        for batch in batches:
            conn.execute("BEGIN IMMEDIATE")
            for table, statement in statements.items():
                conn.executemany(statement, [row for group in batch for row in group[table]])
            conn.execute("COMMIT")
        return time.perf_counter() - started


def insert_bare(rows: Rows, path: Path) -> float:
    """Seconds to insert the message and event rows, a transaction per page, bare schema."""
    pick_message = _picker(rows.columns["messages"], MESSAGE_COLUMNS)
    pick_event = _picker(rows.columns["events"], EVENT_COLUMNS)
    pages = [
        (
            [pick_message(row) for row in group["messages"]],
            [pick_event(row) for row in group["events"]],
        )
        for group in rows.by_session.values()
    ]
    conn = open_bare_archive(path)
    try:
        started = time.perf_counter()
        for messages, events in pages:
            conn.execute("BEGIN")
            conn.executemany(INSERT_MESSAGE, messages)
            conn.executemany(INSERT_EVENT, events)
            conn.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        conn.close()


def _picker(columns: list[str], wanted: Sequence[str]) -> Callable[[Row], Row]:
    """A function taking the `wanted` columns, in that order, out of a row of `columns`."""
    positions = [columns.index(name) for name in wanted]
    return lambda row: tuple(row[n] for n in positions)


def run_storage(settings: BenchSettings, context: BenchContext) -> ScenarioResult:
    """Run the storage scenario."""
    workdir, say = context.workdir, context.progress
    sessions, per_session = settings.backlog_sessions, settings.backlog_messages
    say(f"storage: {sessions} pages of {per_session} messages")
    pages = build_pages(sessions, per_session, settings.agents, settings.seed)
    total = sum(len(page.messages) for page in pages)
    wire_bytes = sum(len(m.raw_json.encode()) for page in pages for m in page.messages)
    archive = workdir / "storage-writer.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{archive}{suffix}").unlink(missing_ok=True)
    writer_s = asyncio.run(store_with_writer(pages, archive))
    archive_bytes = sum(
        Path(f"{archive}{suffix}").stat().st_size
        for suffix in ("", "-wal")
        if Path(f"{archive}{suffix}").exists()
    )
    rows = read_rows(archive)
    one_txn_s = insert_rows(rows, workdir / "storage-one-transaction.sqlite3", per_page=False)
    per_page_s = insert_rows(rows, workdir / "storage-per-page.sqlite3", per_page=True)
    bare_s = insert_bare(rows, workdir / "storage-bare.sqlite3")
    result = ScenarioResult("storage")
    result.add("messages", "messages stored", total, "msg")
    result.add("writer_rate", "ArchiveWriter.store_page", total / writer_s, "msg/s")
    result.add("one_txn_rate", "executemany, one transaction", total / one_txn_s, "msg/s")
    result.add("per_page_rate", "executemany, a transaction per page", total / per_page_s, "msg/s")
    result.add(
        "bare_per_page_rate", "same, bare schema (keys only, no FTS)", total / bare_s, "msg/s"
    )
    result.add(
        "ratio_one_txn", "writer / executemany in one transaction", one_txn_s / writer_s, "x", 2
    )
    result.add("bytes_per_message", "archive bytes per message", archive_bytes / total, "B")
    result.add(
        "wire_bytes_per_message", "JSON bytes per message as received", wire_bytes / total, "B"
    )
    return result
