"""What a bench run does: which scenarios, at what sizes, where it keeps its files."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from archiver.store.db import ArchiveLocation
from archiver.store.postgres import PostgresArchive

if TYPE_CHECKING:
    from gws_bench.profile import Profiler

SCENARIOS = ("ingest", "live", "storage", "webhooks")

# Called with one line of progress at a time (the command line prints them on stderr).
Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class BenchSettings:
    """Sizes and timings of a bench run; the defaults are the issue's full-size run.

    Attributes:
        scenarios: which of `SCENARIOS` to run, in that order.
        backlog_sessions, backlog_messages: the ingest and storage backlog.
        live_sessions: sessions open at once in the live run, spread over `agents`.
        agents: agent accounts of the simulated GWS (and of the daemon).
        duration_s: how long the live scenario creates messages.
        interval_s: mean gap between two messages of one live session.
        live_messages: messages per live session (it then ends and another starts).
        linger_s: how long a completed live session stays listed.
        settle_s, window_s: after the live run is archived, wait `settle_s` for every poll
            interval to grow to its idle value, then measure idle polling for `window_s`.
        start_timeout_s, finish_timeout_s: how long a child may take to start, and how long
            the archive may take to catch up before the bench reports what is missing.
        stall_s: the live archive is taken as caught up (what is missing stays missing) when
            it has not grown for this long after the scenario stopped.
        seed: seed of the simulated contact centre.
        push: run the live scenario with push mode on (CometD notifications as poll hints).
        peers: run the plain peers (`gws_bench.peers`) beside the daemon in ingest and live;
            live then plays its scenario twice, once for the daemon and once for the peer.
        webhook_rate, webhook_s: events committed per second, and for how long, in the
            webhook scenario.
        postgres: the daemon archives into PostgreSQL (a throwaway cluster) instead of SQLite,
            in ingest and live (the ceilings and peers keep their SQLite files).
    """

    scenarios: tuple[str, ...] = SCENARIOS
    backlog_sessions: int = 1000
    backlog_messages: int = 200
    live_sessions: int = 10_000
    agents: int = 10
    duration_s: float = 180.0
    interval_s: float = 10.0
    live_messages: tuple[int, int] = (10, 40)
    linger_s: float = 30.0
    settle_s: float = 15.0
    window_s: float = 15.0
    start_timeout_s: float = 120.0
    finish_timeout_s: float = 600.0
    stall_s: float = 30.0
    seed: int = 1
    push: bool = False
    peers: bool = True
    webhook_rate: float = 1000.0
    webhook_s: float = 60.0
    postgres: bool = False

    @property
    def sessions_per_agent(self) -> int:
        """Live sessions each agent holds at once."""
        return math.ceil(self.live_sessions / self.agents)


# A smoke run of every scenario in seconds: only checks that the bench works.
TINY = BenchSettings(
    backlog_sessions=40,
    backlog_messages=50,
    live_sessions=60,
    agents=3,
    duration_s=3.0,
    interval_s=0.5,
    live_messages=(5, 10),
    linger_s=10.0,
    settle_s=1.0,
    window_s=1.5,
    finish_timeout_s=30.0,
    stall_s=10.0,
    webhook_rate=100.0,
    webhook_s=1.5,
)


@dataclass(frozen=True, slots=True)
class BenchContext:
    """Where a scenario keeps its files, how it reports progress, and the optional profiler."""

    workdir: Path
    progress: Progress
    profiler: Profiler | None = None
    create_database: Callable[[str], str] | None = None  # set when the daemon uses PostgreSQL

    def archive(self, name: str) -> ArchiveLocation:
        """The daemon's archive ``name``: a file in the work folder, or a fresh database."""
        if self.create_database is not None:
            return PostgresArchive(self.create_database(name.replace("-", "_")))
        return self.workdir / f"{name}.sqlite3"
