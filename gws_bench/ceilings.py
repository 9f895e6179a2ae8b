"""Ingest ceilings: the least any Python + SQLite archiver must do with the same backlog.

Both are the bench's own code and share nothing with the daemon but the simulator they read
(so this module, not only the GWS client, speaks aiohttp):

- *fetch-only*: a bare aiohttp loop reading every message log once and dropping the bytes;
- *minimal pipeline*: the same reads, each page parsed with `json.loads` and stored with one
  `executemany` for its message rows and one for its event rows, one transaction per page, in
  a bare WAL database (the two tables with their keys; no session rows, no extra indexes).
  A message row keeps the message's fields and its JSON re-serialised, as the archive does;
  an event row carries that JSON as its payload. Nothing is normalised.

Both read as the daemon does by default: pages of 500, at most 32 requests in flight over one
keep-alive pool, a cookie jar per account (so the simulator does the same work per request).
The sizes of the logs are known (the simulator's backlog), so both read exactly those pages.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from archiver.store.queries import MESSAGE_COLUMNS
from gws_bench.processes import PASSWORD, BenchError

PAGE_SIZE = 500
IN_FLIGHT = 32

BARE_SCHEMA = """
CREATE TABLE messages (
    session_id TEXT NOT NULL, message_index INTEGER NOT NULL, type TEXT NOT NULL, text TEXT,
    url TEXT, from_type TEXT, from_nickname TEXT, from_participant_id TEXT, visibility TEXT,
    sent_at TEXT, raw_json TEXT NOT NULL, archived_at TEXT NOT NULL,
    PRIMARY KEY (session_id, message_index)
);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,
    session_id TEXT NOT NULL, message_index INTEGER, occurred_at TEXT NOT NULL,
    payload_json TEXT NOT NULL
);
"""
EVENT_COLUMNS = ("event_id", "type", "session_id", "message_index", "occurred_at", "payload_json")
INSERT_MESSAGE = (
    f"INSERT INTO messages ({', '.join(MESSAGE_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(MESSAGE_COLUMNS))}) ON CONFLICT DO NOTHING"
)
INSERT_EVENT = (
    f"INSERT INTO events ({', '.join(EVENT_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
)
_IDS = {"fields": "id"}


@dataclass(frozen=True, slots=True)
class CeilingResult:
    """One ceiling run: messages handled, requests made, wall and CPU seconds."""

    messages: int
    requests: int
    elapsed_s: float
    cpu_s: float

    @property
    def rate(self) -> float:
        """Messages per second."""
        return self.messages / self.elapsed_s if self.elapsed_s else 0.0


def open_bare_archive(path: Path) -> sqlite3.Connection:
    """A new WAL database with the bare schema, in autocommit mode."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.executescript(BARE_SCHEMA)
    return conn


def store_page(conn: sqlite3.Connection, session_id: str, body: bytes) -> int:
    """Parse one messages page and store it in one transaction; return the messages stored."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    rows, events = [], []
    for message in json.loads(body)["messages"]:
        raw = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
        sender = message.get("from") or {}
        index, kind = message["index"], message["type"]
        rows.append(
            (
                session_id,
                index,
                kind,
                message.get("text"),
                message.get("url"),
                sender.get("type"),
                sender.get("nickname"),
                sender.get("participantId"),
                message.get("visibility"),
                message.get("timestamp"),
                raw,
                now,
            )
        )
        events.append((f"evt_{session_id}_{index}", kind, session_id, index, now, raw))
    conn.execute("BEGIN")
    conn.executemany(INSERT_MESSAGE, rows)
    conn.executemany(INSERT_EVENT, events)
    conn.execute("COMMIT")
    return len(rows)


async def fetch_only(base_url: str, agents: int, messages_per_session: int) -> CeilingResult:
    """Read every log once and drop the bytes."""
    return await _read_all(base_url, agents, messages_per_session, lambda _sid, _body: None)


async def minimal_pipeline(
    base_url: str, agents: int, messages_per_session: int, archive: Path
) -> CeilingResult:
    """Read every log once, storing each page as it arrives (json.loads, 2 executemany)."""
    conn = open_bare_archive(archive)
    try:
        result = await _read_all(
            base_url, agents, messages_per_session, lambda sid, body: store_page(conn, sid, body)
        )
        stored = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    finally:
        conn.close()
    if stored != result.messages:
        raise BenchError(f"minimal pipeline stored {stored} of {result.messages} messages")
    return result


async def _read_all(
    base_url: str, agents: int, messages_per_session: int, sink: Callable[[str, bytes], Any]
) -> CeilingResult:
    """Read every page of every account's sessions, at most IN_FLIGHT at a time."""
    connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
    clients = [_client(connector, number) for number in range(1, agents + 1)]
    started, cpu_started = time.perf_counter(), time.process_time()
    work: asyncio.Queue[tuple[aiohttp.ClientSession, str, int]] = asyncio.Queue()
    sessions = 0

    async def worker() -> None:
        while not work.empty():
            client, session_id, start = work.get_nowait()
            url = f"{base_url}/api/v2/me/smssessions/{session_id}/messages"
            params = {"startIndex": str(start), "count": str(PAGE_SIZE)}
            sink(session_id, await _get(client, url, params))

    try:
        for client in clients:
            listing = json.loads(await _get(client, f"{base_url}/api/v2/me/smssessions", _IDS))
            for session in listing["smssessions"]:
                sessions += 1
                for start in range(1, messages_per_session + 1, PAGE_SIZE):
                    work.put_nowait((client, session["id"], start))
        pages = work.qsize()
        async with asyncio.TaskGroup() as tasks:
            for _ in range(IN_FLIGHT):
                tasks.create_task(worker())
    finally:
        for client in clients:
            await client.close()
        await connector.close()
    return CeilingResult(
        messages=sessions * messages_per_session,
        requests=len(clients) + pages,
        elapsed_s=time.perf_counter() - started,
        cpu_s=time.process_time() - cpu_started,
    )


def _client(connector: aiohttp.TCPConnector, number: int) -> aiohttp.ClientSession:
    token = base64.b64encode(f"agent{number}:{PASSWORD}".encode()).decode()
    return aiohttp.ClientSession(
        connector=connector,
        connector_owner=False,
        cookie_jar=aiohttp.CookieJar(unsafe=True),
        headers={"Authorization": f"Basic {token}", "Accept": "application/json"},
        timeout=aiohttp.ClientTimeout(total=60),
    )


async def _get(client: aiohttp.ClientSession, url: str, params: dict[str, str]) -> bytes:
    async with client.get(url, params=params) as response:
        body = await response.read()
        if response.status != 200:
            raise BenchError(f"GET {url} answered {response.status}: {body[:200]!r}")
        return body
