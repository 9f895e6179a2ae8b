"""The plain ingest peer: a synchronous stdlib poller archiving every SMS session once.

What a contact-centre engineer would write in an afternoon: for each agent account, an
opener with a cookie jar (GWS's JSESSIONID) and a Basic header, the session list
(`GET /api/v2/me/smssessions?fields=*`), then each session's log read page by page, one log at
a time, each page stored in one transaction with `INSERT OR IGNORE` on (session, index). Only
GETs, which GWS serves without the CSRF token. When done it prints one JSON line: messages
stored, requests made, and the wall and CPU seconds from the first request to the last commit.

Usage: python -m gws_bench.peers.ingest_peer BASE_URL ARCHIVE --agents 10
"""

from __future__ import annotations

import argparse
import base64
import http.cookiejar
import json
import sqlite3
import time
import urllib.request
from datetime import UTC, datetime
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    session_id TEXT NOT NULL, message_index INTEGER NOT NULL, type TEXT NOT NULL, text TEXT,
    visibility TEXT, sent_at TEXT, raw_json TEXT NOT NULL, archived_at TEXT NOT NULL,
    PRIMARY KEY (session_id, message_index)
);
"""
INSERT = "INSERT OR IGNORE INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


class Agent:
    """One agent account's HTTP session: the cookie jar and the Basic header."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base_url = base_url
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        self.opener.addheaders = [
            ("Authorization", f"Basic {token}"),
            ("Accept", "application/json"),
        ]
        self.requests = 0

    def get(self, path: str) -> Any:
        """GET a path of the API and return its JSON (an HTTP error raises)."""
        self.requests += 1
        with self.opener.open(self.base_url + path, timeout=60) as response:
            return json.loads(response.read())


def message_rows(session_id: str, messages: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The rows of one page of messages, stamped now (the live peer builds them the same way)."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    return [
        (
            session_id,
            m["index"],
            m["type"],
            m.get("text", m.get("noticeText", m.get("url"))),
            m.get("visibility"),
            m.get("timestamp"),
            json.dumps(m),
            now,
        )
        for m in messages
    ]


def store(db: sqlite3.Connection, session_id: str, messages: list[dict[str, Any]]) -> None:
    """Store one page of messages in one transaction."""
    with db:
        db.executemany(INSERT, message_rows(session_id, messages))


def archive_session(agent: Agent, db: sqlite3.Connection, session_id: str, count: int) -> None:
    """Read one session's log page by page until a page comes back short."""
    start = 1
    while True:
        path = f"/api/v2/me/smssessions/{session_id}/messages?startIndex={start}&count={count}"
        messages = agent.get(path)["messages"]
        store(db, session_id, messages)
        numbered = [m for m in messages if m["index"] > 0]  # TranscriptSaveDone has index -1
        if len(numbered) < count:
            return
        start += len(numbered)


def main() -> None:
    """Archive every session of agent1..agentN, then print the summary line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_url")
    parser.add_argument("archive")
    parser.add_argument("--agents", type=int, default=1)
    parser.add_argument("--password", default="password")
    parser.add_argument("--page-size", type=int, default=500)
    args = parser.parse_args()
    db = sqlite3.connect(args.archive)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.executescript(SCHEMA)
    started, cpu_started = time.perf_counter(), time.process_time()
    requests = 0
    for number in range(1, args.agents + 1):
        agent = Agent(args.base_url, f"agent{number}", args.password)
        for session in agent.get("/api/v2/me/smssessions?fields=*")["smssessions"]:
            archive_session(agent, db, session["id"], args.page_size)
        requests += agent.requests
    elapsed_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    stored = db.execute("SELECT count(*) FROM messages").fetchone()[0]
    db.close()
    summary = {"messages": stored, "requests": requests, "elapsed_s": elapsed_s, "cpu_s": cpu_s}
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
