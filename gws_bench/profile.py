"""Sampling profiles of the bench's child processes with py-spy, and what they say.

`Profiler.record(pid, name)` runs `py-spy record` on a process for the length of a `with`
block and keeps the collapsed stacks (`<name>.txt`, one `frame;frame;... count` line per
distinct stack; load them in speedscope or flamegraph.pl to see them). `summarize()` reads
them back: where self time goes by area (JSON, models, events, SQLite, aiohttp, asyncio ...),
and the functions with the most self and total time.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gws_bench.processes import BenchError

RATE_HZ = 100
TOP = 12
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
# Paths are shortened to what follows the last of these (a package's or the stdlib's root).
_ROOTS = re.compile(r"^.*(?:/site-packages/|/lib/python3\.\d+/|/(?=archiver/))")
# Where a sample's innermost frame lives says what the process was doing. First match wins.
AREAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("JSON decoding (orjson/json, in the client)", ("decode_json", "json/")),
    ("model parsing", ("archiver/gws/models.py",)),
    ("event building", ("archiver/events.py", "_add_message_event", "_append_event")),
    ("SQLite and the writer", ("archiver/store/", "sqlite3/")),
    ("GWS client and retries", ("archiver/gws/", "tenacity/", "aiolimiter/")),
    ("poller", ("archiver/poller.py",)),
    ("logging", ("structlog/", "logging/")),
    ("aiohttp (HTTP client or server)", ("aiohttp/", "yarl/", "multidict/", "http/cookies")),
    ("asyncio scheduling", ("asyncio/", "selectors.py")),
    ("threads (executor hand-off)", ("concurrent/futures", "threading.py", "queue.py")),
    ("simulator", ("gws_simulator/",)),
    ("dates and times", ("datetime", "_strptime")),
)


# Innermost frames of threads waiting for work (an executor's queue, an event loop's epoll).
# py-spy often misses that such a thread is idle; these samples are dropped, not counted as
# work (a busy loop's non-blocking epoll calls go with them: a small, real cost).
WAITS = frozenset(
    {
        ("_worker", "concurrent/futures/thread.py"),
        ("_connection_worker_thread", "aiosqlite/core.py"),
        ("Condition.wait", "threading.py"),
        ("EpollSelector.select", "selectors.py"),
    }
)


# Command-line frames hold every sample of the main thread; their total time says nothing.
ENTRY_POINTS = ("archiver/cli/", "archiver/__", "gws_simulator/cli.py")


@dataclass(frozen=True, slots=True)
class Profile:
    """What one recording found; shares are of the samples kept (about CPU time)."""

    name: str
    samples: int
    waiting: int  # samples dropped as a thread waiting for work
    areas: list[tuple[str, float]]
    self_time: list[tuple[str, float]]
    total_time: list[tuple[str, float]]

    def to_json(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "samples": self.samples,
            "waiting_samples_dropped": self.waiting,
            "rate_hz": RATE_HZ,
            "areas": dict(self.areas),
            "self": dict(self.self_time),
            "total": dict(self.total_time),
        }

    def text(self) -> str:
        """A readable summary."""
        lines = [
            f"profile {self.name}: {self.samples} samples at {RATE_HZ} Hz"
            f" ({self.waiting} of idle threads dropped)"
        ]
        for title, rows in (
            ("self time by area", self.areas),
            ("lines by self time", self.self_time),
            ("archiver functions by total time", self.total_time),
        ):
            lines.append(f"  {title}:")
            lines += [f"    {share * 100:5.1f}%  {what}" for what, share in rows]
        return "\n".join(lines)


class Profiler:
    """Records py-spy profiles into `folder`."""

    def __init__(self, folder: Path) -> None:
        # A virtual environment's scripts sit beside its interpreter, on PATH or not.
        search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        executable = shutil.which("py-spy", path=search)
        if executable is None:
            raise BenchError("--profile needs py-spy on PATH (pip install py-spy)")
        self.executable = executable
        self.folder = folder
        self.recorded: list[Path] = []
        folder.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def record(self, pid: int, name: str) -> Iterator[None]:
        """Sample process `pid` while the block runs; stacks go to `<folder>/<name>.txt`."""
        output = self.folder / f"{name}.txt"
        spy = subprocess.Popen(
            [
                self.executable,
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(RATE_HZ),
                "--format",
                "raw",
                "--full-filenames",
                "--output",
                str(output),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            yield
        finally:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        self.recorded.append(output)

    def summaries(self) -> list[Profile]:
        """A summary of every recording made so far."""
        return [summarize(path) for path in self.recorded if path.exists()]


def summarize(path: Path) -> Profile:
    """Read collapsed stacks and rank areas, lines (self time) and functions (total time)."""
    areas: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = waiting = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(text) for text in stack.split(";")]
        function, file, number = frames[-1]
        if (function, file) in WAITS:
            waiting += count
            continue
        samples += count
        # Self time by line: time in a C call (SQLite, orjson) shows as its calling line.
        own[f"{function} ({file}:{number})"] += count
        areas[_area(f"{function} ({file})")] += count
        for function, file, _ in set(frames):
            if file.startswith("archiver/") and not file.startswith(ENTRY_POINTS):
                total[f"{function} ({file})"] += count
    return Profile(
        name=path.stem,
        samples=samples,
        waiting=waiting,
        areas=_shares(areas, samples, len(AREAS) + 1),
        self_time=_shares(own, samples, TOP),
        total_time=_shares(total, samples, TOP),
    )


def _frame(text: str) -> tuple[str, str, str]:
    """`function (path:line)` as (function, shortened path, line)."""
    match = _FRAME.match(text)
    if match is None:
        return text, "", ""
    return match["function"], _ROOTS.sub("", match["file"]), match["line"] or ""


def _area(frame: str) -> str:
    for area, markers in AREAS:
        if any(marker in frame for marker in markers):
            return area
    return "other"


def _shares(counts: Counter[str], samples: int, top: int) -> list[tuple[str, float]]:
    return [(what, round(count / max(1, samples), 4)) for what, count in counts.most_common(top)]
