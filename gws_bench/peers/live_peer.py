"""The plain live peer: an asyncio poller with one task per SMS session.

What a contact-centre engineer would write with aiohttp and sqlite3: per agent account, a
client session (cookie jar for GWS's JSESSIONID, Basic header) and a task re-reading the
account's session list every `--list-interval` seconds. Each new session gets its own task,
which reads the session's log from the next index every `--interval` seconds (those of the
first list start after a random delay, so that they do not poll in step), stores each page in
one transaction (`INSERT OR IGNORE` on session and index, stamped `archived_at`) and stops
after one last read once its account lists the session as Completed or no longer lists it.
Any failed request is retried after `--retry` seconds, as it is. Only GETs, which GWS serves
without a CSRF token.

It prints JSON lines on stdout: `peer_started` (archive open, nothing read yet), the first few
failures, and on SIGTERM `peer_stopped` with the requests made and failures seen.

Usage: python -m gws_bench.peers.live_peer BASE_URL ARCHIVE --agents 10 --interval 3
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import signal
import sqlite3
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

import aiohttp

from gws_bench.peers.ingest_peer import message_rows

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY, account TEXT NOT NULL, first_seen_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    session_id TEXT NOT NULL, message_index INTEGER NOT NULL, type TEXT NOT NULL, text TEXT,
    visibility TEXT, sent_at TEXT, raw_json TEXT NOT NULL, archived_at TEXT NOT NULL,
    PRIMARY KEY (session_id, message_index)
);
"""
INSERT_SESSION = "INSERT OR IGNORE INTO sessions VALUES (?, ?, ?)"
INSERT_MESSAGE = "INSERT OR IGNORE INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
FAILURES_LOGGED = 20


class SessionGone(Exception):
    """Raised when GWS answers 404: the session is no longer there to read."""


class Stopped(Exception):
    """Raised to end the peer on SIGTERM or SIGINT."""


def now_iso() -> str:
    """The current UTC instant with milliseconds, as the archive stamps it."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def say(event: str, **values: Any) -> None:
    """One JSON line on stdout."""
    print(json.dumps({"event": event, **values}), flush=True)


class Peer:
    """Every account's list watcher and every session's poller, writing one SQLite file."""

    def __init__(self, args: argparse.Namespace, db: sqlite3.Connection) -> None:
        self.args = args
        self.db = db
        self.followed: dict[str, str] = {}  # session id -> the account whose view is read
        self.ended: set[str] = set()
        self.requests = 0
        self.failures = 0

    async def run(self) -> None:
        """Poll until SIGTERM."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        async with AsyncExitStack() as stack:
            clients = {}
            for number in range(1, self.args.agents + 1):
                account = f"agent{number}"
                clients[account] = await stack.enter_async_context(self.client(account))
            try:
                async with asyncio.TaskGroup() as tasks:
                    for account, client in clients.items():
                        tasks.create_task(self.watch_list(tasks, account, client))
                    await stop.wait()
                    raise Stopped
            except* Stopped:
                pass
        say("peer_stopped", requests=self.requests, failures=self.failures)

    def client(self, account: str) -> aiohttp.ClientSession:
        """An account's HTTP session: its own cookie jar and the Basic header."""
        token = base64.b64encode(f"{account}:{self.args.password}".encode()).decode()
        return aiohttp.ClientSession(
            base_url=self.args.base_url,
            cookie_jar=aiohttp.CookieJar(unsafe=True),  # unsafe: a jar that accepts IP hosts
            headers={"Authorization": f"Basic {token}", "Accept": "application/json"},
            timeout=aiohttp.ClientTimeout(total=30),
        )

    async def get_json(
        self, client: aiohttp.ClientSession, path: str, params: dict[str, str]
    ) -> Any:
        """GET a path of the API and return its JSON; 404 raises SessionGone."""
        self.requests += 1
        async with client.get(path, params=params) as response:
            if response.status == 404:
                raise SessionGone(path)
            response.raise_for_status()
            return await response.json()

    async def watch_list(
        self, tasks: asyncio.TaskGroup, account: str, client: aiohttp.ClientSession
    ) -> None:
        """Re-read the account's session list: start new sessions' tasks, mark ended ones."""
        spread_s = self.args.interval  # the first list's sessions start at random instants
        while True:
            try:
                listing = await self.get_json(client, "/api/v2/me/smssessions", {"fields": "*"})
            except Exception as exc:
                self.failed("list", account, exc)
                await asyncio.sleep(self.args.retry)
                continue
            listed = set()
            found = []
            for session in listing["smssessions"]:
                session_id = session["id"]
                listed.add(session_id)
                if session_id not in self.followed:
                    self.followed[session_id] = account
                    found.append((session_id, account, now_iso()))
                    delay_s = random.uniform(0, spread_s)
                    tasks.create_task(self.follow(client, session_id, delay_s))
                if self.followed[session_id] == account and session["state"] == "Completed":
                    self.ended.add(session_id)
            for session_id, reader in self.followed.items():
                if reader == account and session_id not in listed:
                    self.ended.add(session_id)
            if found:
                with self.db:
                    self.db.executemany(INSERT_SESSION, found)
            spread_s = 0.0
            await asyncio.sleep(self.args.list_interval)

    async def follow(self, client: aiohttp.ClientSession, session_id: str, delay_s: float) -> None:
        """Poll one session's log until it has ended and been read once more."""
        await asyncio.sleep(delay_s)
        path = f"/api/v2/me/smssessions/{session_id}/messages"
        next_index = 1
        while True:
            last_read = session_id in self.ended
            params = {"startIndex": str(next_index), "count": str(self.args.page_size)}
            try:
                messages = (await self.get_json(client, path, params))["messages"]
            except SessionGone:
                return
            except Exception as exc:
                self.failed("messages", session_id, exc)
                await asyncio.sleep(self.args.retry)
                continue
            if messages:
                self.store(session_id, messages)
            numbered = [m for m in messages if m["index"] > 0]  # TranscriptSaveDone has -1
            next_index += len(numbered)
            if len(numbered) == self.args.page_size:
                continue  # a full page: there may be more right now
            if last_read:
                return
            await asyncio.sleep(self.args.interval)

    def store(self, session_id: str, messages: list[dict[str, Any]]) -> None:
        """Store one page in one transaction."""
        with self.db:
            self.db.executemany(INSERT_MESSAGE, message_rows(session_id, messages))

    def failed(self, what: str, key: str, exc: Exception) -> None:
        """Count a failed request; log the first few."""
        self.failures += 1
        if self.failures <= FAILURES_LOGGED:
            say("request_failed", what=what, key=key, error=repr(exc))


def main() -> None:
    """Open the archive, say `peer_started`, poll until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_url")
    parser.add_argument("archive")
    parser.add_argument("--agents", type=int, default=1)
    parser.add_argument("--password", default="password")
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between polls")
    parser.add_argument("--list-interval", type=float, default=2.0, help="seconds between lists")
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--retry", type=float, default=1.0, help="seconds before a retry")
    args = parser.parse_args()
    db = sqlite3.connect(args.archive)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.executescript(SCHEMA)
    say("peer_started", at=time.time())
    try:
        asyncio.run(Peer(args, db).run())
    finally:
        db.close()


if __name__ == "__main__":
    main()
