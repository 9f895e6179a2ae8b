"""What the tests share: a daemon configuration for a simulator, archive-versus-truth checks,
waiting for what a test means (a row, a state), and running the daemon as a subprocess."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from archiver.config import Account, ArchiveConfig, Config, GwsConfig, PollConfig, Secret
from archiver.daemon import Daemon
from archiver.store.db import ArchiveLocation
from archiver.store.postgres import PostgresArchive, to_psycopg

FAST_POLL = PollConfig(min_interval_s=0.02, max_interval_s=0.2, sessions_interval_s=0.1)


def daemon_config(base_url: str, archive: ArchiveLocation, agents: int = 3, **gws: Any) -> Config:
    """A configuration for ``agents`` simulated agents with brisk polling."""
    accounts = tuple(
        Account(username=f"agent{n}", password=Secret("password")) for n in range(1, agents + 1)
    )
    return Config(
        gws=GwsConfig(base_url=base_url, accounts=accounts, **gws),
        poll=FAST_POLL,
        archive=archive_config(archive),
    )


def archive_config(archive: ArchiveLocation, **settings: Any) -> ArchiveConfig:
    """``[archive]`` for an SQLite file or a PostgreSQL database."""
    if isinstance(archive, PostgresArchive):
        return ArchiveConfig(url=archive.url, **settings)
    return ArchiveConfig(path=archive, **settings)


def archive_toml(archive: ArchiveLocation) -> str:
    """The ``[archive]`` table's text for an SQLite file or a PostgreSQL database."""
    if isinstance(archive, PostgresArchive):
        return f'[archive]\nurl = "{archive.url}"\n'
    return f'[archive]\npath = "{archive}"\n'


def config_toml(base_url: str, archive: ArchiveLocation, agents: int = 3) -> str:
    """The same configuration as a TOML file's text (for the daemon as a subprocess)."""
    lines = [f'[gws]\nbase_url = "{base_url}"\npage_size = 50\n']
    for n in range(1, agents + 1):
        lines.append(f'[[gws.accounts]]\nusername = "agent{n}"\npassword = "password"\n')
    lines.append(
        "[poll]\nmin_interval_s = 0.02\nmax_interval_s = 0.2\nsessions_interval_s = 0.1\n"
        f'{archive_toml(archive)}[log]\nformat = "json"\n'
    )
    return "\n".join(lines)


def query(path: ArchiveLocation, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows from the archive (SQLite or PostgreSQL), through a separate connection."""
    if isinstance(path, PostgresArchive):
        with psycopg.connect(path.url, autocommit=True) as pg:
            return pg.execute(to_psycopg(sql), tuple(params) or None).fetchall()
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, tuple(params)).fetchall()
    finally:
        conn.close()


def truth_key(record: dict[str, Any]) -> tuple[Any, ...]:
    """What the archive must hold for one simulator truth record."""
    return (
        record["session_id"],
        record["index"],
        record["type"],
        record["text"],
        record["visibility"],
    )


def archive_keys(path: ArchiveLocation) -> list[tuple[Any, ...]]:
    """The same fields for every archived message."""
    return query(
        path,
        "SELECT session_id, message_index, type,"
        " CASE WHEN type = 'PushUrl' THEN url ELSE text END, visibility FROM messages",
    )


@dataclass(frozen=True)
class Comparison:
    """How an archive differs from the simulator's truth."""

    missing: list[tuple[Any, ...]]
    extra: list[tuple[Any, ...]]
    duplicated_events: int

    @property
    def exact(self) -> bool:
        return not self.missing and not self.extra and not self.duplicated_events


def compare(path: ArchiveLocation, truth: list[dict[str, Any]]) -> Comparison:
    """Compare archive and truth message by message, and check one event per message."""
    expected = Counter(truth_key(r) for r in truth)
    actual = Counter(archive_keys(path))
    events = query(
        path,
        "SELECT session_id, message_index, count(*) FROM events"
        " WHERE message_index IS NOT NULL GROUP BY 1, 2 HAVING count(*) > 1",
    )
    return Comparison(
        missing=sorted((expected - actual).elements()),
        extra=sorted((actual - expected).elements()),
        duplicated_events=len(events),
    )


async def wait_for(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.05)


def count(path: ArchiveLocation, sql: str) -> int:
    """A count from the archive; 0 while the file or its tables do not exist yet."""
    if isinstance(path, Path) and not path.exists():
        return 0
    try:
        return int(query(path, sql)[0][0])
    except (sqlite3.OperationalError, psycopg.errors.UndefinedTable):
        return 0


def ended_sessions(path: ArchiveLocation) -> int:
    """How many SessionEnded events the archive holds."""
    return count(path, "SELECT count(*) FROM events WHERE type = 'SessionEnded'")


def archived_messages(path: ArchiveLocation) -> int:
    """How many messages the archive holds."""
    return count(path, "SELECT count(*) FROM messages")


async def start_daemon(config: Path, log: Path) -> asyncio.subprocess.Process:
    """``gws-archiver run --config`` as a child process, its output appended to ``log``."""
    with log.open("ab") as sink:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "archiver", "run", "--config", str(config),
            stdout=sink, stderr=sink,
        )  # fmt: skip


async def kill_repeatedly(
    config: Path, log: Path, kills: int, pause_s: Callable[[], float]
) -> None:
    """Start ``gws-archiver run`` and SIGKILL it ``kills`` times, each after ``pause_s()``."""
    for _ in range(kills):
        daemon = await start_daemon(config, log)
        await asyncio.sleep(pause_s())
        assert daemon.returncode is None, log_tail(log)
        daemon.send_signal(signal.SIGKILL)
        await daemon.wait()


def log_tail(log: Path) -> str:
    """The end of a daemon's log, to show with a failure."""
    return log.read_text()[-3000:]


@asynccontextmanager
async def daemon_process(config: Path, log: Path, archive: ArchiveLocation) -> AsyncIterator[None]:
    """``gws-archiver run`` archiving for the block, then SIGTERM: it must exit 0 within 10 s."""
    daemon = await start_daemon(config, log)
    await wait_for(lambda: run_started(archive, daemon.pid))
    try:
        yield
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(daemon.wait(), 10) == 0


def run_started(archive: ArchiveLocation, pid: int) -> bool:
    """True once the daemon with ``pid`` has recorded its run in the archive (it is archiving)."""
    if isinstance(archive, Path) and not archive.exists():
        return False
    try:
        return bool(query(archive, "SELECT count(*) FROM runs WHERE pid = ?", (pid,))[0][0])
    except (sqlite3.OperationalError, psycopg.errors.UndefinedTable):
        return False  # the archive is being created: no runs table yet


@asynccontextmanager
async def daemon_running(daemon: Daemon) -> AsyncIterator[None]:
    """``daemon`` runs until the block ends, then is cancelled (as SIGTERM does)."""
    task = asyncio.create_task(daemon.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
