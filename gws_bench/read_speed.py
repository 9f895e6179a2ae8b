"""Read-side benchmark: search latency and export throughput over a generated archive.

Builds an archive of ``--sessions`` x 100 messages (default 10,000 sessions: 1,000,000 messages
plus a TranscriptSaveDone per completed session) through the real ArchiveWriter in a temporary
directory, then prints:

- search latency (median and p95 over repeated runs) for rare words, common words, phrases,
  prefixes and filtered queries, through ``Archive.search``;
- export throughput in messages/s for JSON lines, CSV and text transcripts, through the
  ``gws-archiver export`` command code, writing to files;
- the writer's cost of migration 002 (search triggers and the sent_at index): pages stored per
  second with and without them;
- the web view's pages (live, sessions, search, a conversation, their fragments), each asked
  for over HTTP from the real status server, median and p95 beside the 100 ms ceiling.

Run: ``.venv/bin/python gws_bench/read_speed.py`` (about two minutes on two cores).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from archiver import Archive
from archiver.archive import SessionFilter
from archiver.cli.read import add_read_commands
from archiver.config import Account, ArchiveConfig, Config, GwsConfig, Secret, ServerConfig
from archiver.server import StatusServer
from archiver.state import DaemonState
from archiver.store.writer import ArchiveWriter
from gws_bench.archive_factory import generate_session, write_archive

QUERIES = {
    "rare word": ["zebra", "refund", "café", "привет"],
    "common word": ["kaka", "lomi", "shiden", "ostpra"],
    "two words": ["kaka lomi", "mine pralo", "tavo gulka"],
    "phrase": ['"broken phone"', '"kaka lomi"', '"mine pralo"'],
    "prefix": ["kak*", "shid*", "pral*"],
}
FILTERED = SessionFilter(account="agent2", state="Completed")
PAGE_CEILING_MS = 100.0


async def bench_search(path: Path, repeats: int) -> None:
    """Print median and p95 latency of each query class, then overall."""
    everything: list[float] = []
    async with Archive(path) as archive:
        for label, queries in [*QUERIES.items(), ("common word + filters", QUERIES["common word"])]:
            filters = FILTERED if "filters" in label else None
            timings = []
            for _ in range(repeats):
                for query in queries:
                    start = time.perf_counter()
                    await archive.search(query, filters)
                    timings.append((time.perf_counter() - start) * 1000)
            everything.extend(timings)
            print(f"  {label:<24} {summary(timings)}")
    print(f"  {'all queries':<24} {summary(everything)}")


def summary(timings_ms: list[float]) -> str:
    median = statistics.median(timings_ms)
    p95 = statistics.quantiles(timings_ms, n=20)[-1]
    return f"median {median:7.2f} ms   p95 {p95:7.2f} ms"


def bench_export(path: Path, messages: int, out: Path) -> None:
    """Time the export command for each format."""
    parser = argparse.ArgumentParser()
    add_read_commands(parser.add_subparsers())
    for fmt in ("jsonl", "csv", "text"):
        target = out / fmt
        args = parser.parse_args(
            ["export", "--archive", str(path), "--format", fmt, "--out", str(target)]
        )
        start = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()):
            assert args.handler(args) == 0
        elapsed = time.perf_counter() - start
        size = sum(f.stat().st_size for f in target.iterdir()) / 1e6
        rate = messages / elapsed
        print(f"  {fmt:<6} {rate:>10,.0f} messages/s   ({elapsed:5.1f} s, {size:,.0f} MB)")


async def bench_ingest(directory: Path, sessions: int) -> None:
    """Pages stored per second into a fresh archive, with and without migration 002's parts."""
    for label, strip in (("with search triggers + index", False), ("without (001 only)", True)):
        path = directory / f"ingest-{int(strip)}.sqlite3"
        await write_archive(path, sessions=1, messages_per_session=10)
        if strip:
            with sqlite3.connect(path) as conn:
                for name in ("messages_fts_insert", "messages_fts_delete", "messages_fts_update"):
                    conn.execute(f"DROP TRIGGER {name}")
                conn.execute("DROP INDEX messages_sent_at")
        pages = [generate_session(n, 100, 100)[1] for n in range(1, sessions + 1)]
        count = sum(len(page.messages) for batch in pages for page in batch)
        async with ArchiveWriter(path) as writer:
            start = time.perf_counter()
            for batch in pages:
                for page in batch:
                    await writer.store_page(page)
            elapsed = time.perf_counter() - start
        print(f"  {label:<30} {count / elapsed:>10,.0f} messages/s   ({len(pages)} pages of 100)")


def web_pages(session_id: str, card_id: str) -> dict[str, str]:
    """The web view's pages and fragments to time, by label."""
    conversation = f"/conversation?session={session_id}"
    return {
        "live": "/live",
        "live card (fragment)": f"/live/card?session={card_id}",
        "sessions": "/sessions",
        "sessions, 20th page": "/sessions?before_at={before_at}&before_id={before_id}",
        "sessions + account, state": "/sessions?account=agent2&state=Completed",
        "sessions + participant": "/sessions?participant=Priya",
        "sessions + since, until": "/sessions?since=2024-03-02&until=2024-03-03",
        "search, rare word": "/search?q=refund",
        "search, common word": "/search?q=kaka",
        "search, phrase": "/search?q=%22kaka+lomi%22",
        "search, prefix": "/search?q=kak*",
        "search + filters": "/search?q=kaka&account=agent2&state=Completed",
        "conversation (101 lines)": conversation,
        "conversation lines (fragment)": f"{conversation.replace('?', '/lines?')}&after=90",
        "conversation export, CSV": f"/conversation/export?session={session_id}&format=csv",
    }


async def bench_pages(path: Path, repeats: int) -> None:
    """Time each page through the real status server (middlewares, headers, rendering)."""
    async with Archive(path) as archive:
        sessions = [s async for s in archive.sessions(limit=20 * 50)]
        active = [s async for s in archive.sessions(SessionFilter(ended=False), limit=1)]
    deep = sessions[-1]
    busiest = max(sessions, key=lambda s: s.message_count)
    config = Config(
        gws=GwsConfig(
            base_url="http://127.0.0.1:9", accounts=(Account("bench", Secret("unused")),)
        ),
        archive=ArchiveConfig(path=path),
        server=ServerConfig(listen="127.0.0.1:0"),
    )
    worst = 0.0
    async with (
        StatusServer(DaemonState(config), config.server) as server,
        aiohttp.ClientSession(server.url) as http,
    ):
        pages = web_pages(busiest.session_id, (active or sessions)[0].session_id)
        for label, page in pages.items():
            page = page.format(before_at=deep.first_seen_at, before_id=deep.session_id)
            timings = []
            for _ in range(repeats * 4):
                start = time.perf_counter()
                async with http.get(page) as response:
                    await response.read()
                    assert response.status == 200, (page, response.status)
                timings.append((time.perf_counter() - start) * 1000)
            worst = max(worst, statistics.quantiles(timings, n=20)[-1])
            print(f"  {label:<30} {summary(timings)}   (ceiling {PAGE_CEILING_MS:.0f} ms)")
    verdict = "within" if worst <= PAGE_CEILING_MS else "OVER"
    print(f"  {'slowest p95':<30} {worst:7.2f} ms, {verdict} the {PAGE_CEILING_MS:.0f} ms ceiling")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10_000, help="sessions of 100 messages")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each search query")
    parser.add_argument(
        "--parts",
        default="search,pages,export,ingest",
        help="what to measure, comma-separated (default: %(default)s)",
    )
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-read-") as tmp:
        directory = Path(tmp)
        path = directory / "archive.sqlite3"
        start = time.perf_counter()
        generated = await write_archive(path, sessions=options.sessions, messages_per_session=100)
        elapsed = time.perf_counter() - start
        messages = generated.message_count
        size = path.stat().st_size / 1e6
        python = sys.version.split()[0]
        print(f"machine: {os.cpu_count()} CPUs, Python {python}, SQLite {sqlite3.sqlite_version}")
        print(f"archive: {messages:,} messages, {options.sessions:,} sessions, {size:,.0f} MB")
        print(f"built in {elapsed:.1f} s through ArchiveWriter")
        parts = set(options.parts.split(","))
        if "search" in parts:
            print("search (limit 20, bm25 + snippet):")
            await bench_search(path, options.repeats)
        if "pages" in parts:
            print("web view pages (HTTP GET on loopback, whole answer read):")
            await bench_pages(path, options.repeats)
        if "export" in parts:
            print("export (to files):")
            # The command runs its own event loop, so it gets a thread of its own.
            await asyncio.to_thread(bench_export, path, messages, directory / "export")
        if "ingest" in parts:
            print("ingest, writer cost of migration 002:")
            await bench_ingest(directory, sessions=1000)


if __name__ == "__main__":
    asyncio.run(main())
