"""The simulator and the daemon as child processes, and what they cost (CPU seconds, RSS).

Each child is `python -m archiver ...` with its output in a log file in the bench's work
folder. The simulator listens on a free port and says which in its first line; the daemon
says `daemon_started` once its archive is open. Both stop on SIGTERM.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import psutil

from archiver.store.db import ArchiveLocation
from archiver.store.postgres import PostgresArchive

PASSWORD = "password"
_SIMULATOR_URL = re.compile(r"GWS simulator on (http://\S+)")
_POLL_S = 0.02


class BenchError(RuntimeError):
    """Raised when a bench step cannot go on (a child died, a wait timed out)."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of a process: when (wall clock), CPU seconds so far, resident bytes."""

    wall_s: float
    cpu_s: float
    rss_bytes: int


class Meter:
    """Reads a process's CPU time (user + system, all threads) and memory."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._process = psutil.Process(pid)
        self._max_rss = 0

    def sample(self) -> Sample:
        """CPU seconds and resident bytes now."""
        with self._process.oneshot():
            times = self._process.cpu_times()
            rss = int(self._process.memory_info().rss)
        self._max_rss = max(self._max_rss, rss)
        return Sample(time.time(), times.user + times.system, rss)

    def peak_rss_bytes(self) -> int:
        """The peak resident set: the kernel's high-water mark where Linux keeps one."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return self._max_rss
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        return int(match.group(1)) * 1024 if match else self._max_rss


class ChildProcess:
    """`python -m MODULE ARGS` (the CLI by default) with stdout and stderr in `log_path`."""

    def __init__(self, args: list[str], log_path: Path, module: str = "archiver") -> None:
        self.args = args
        self.log_path = log_path
        self.module = module
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._meter: Meter | None = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        """The child's process id."""
        if self._process is None:
            raise BenchError("the process was not started")
        return self._process.pid

    @property
    def meter(self) -> Meter:
        """The child's CPU and memory readings."""
        if self._meter is None:
            raise BenchError("the process was not started")
        return self._meter

    def start(self) -> None:
        """Spawn the child."""
        self._log = self.log_path.open("wb")
        self._process = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self._meter = Meter(self._process.pid)

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout_s`; the exit status. Safe to call twice."""
        process, self._process = self._process, None
        code = None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def check_alive(self) -> None:
        """Raise BenchError, with the end of the log, if the child has exited."""
        if self._process is not None and self._process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            what = self.args[0] if self.module == "archiver" else self.module
            raise BenchError(f"`{what}` exited: {tail}")

    def wait_exit(self, timeout_s: float) -> int:
        """Wait for the child to exit on its own; its exit status (BenchError on timeout)."""
        if self._process is None:
            raise BenchError("the process was not started")
        try:
            return self._process.wait(timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"{self.log_path.name}: still running after {timeout_s} s") from exc

    def wait_for_log(self, pattern: re.Pattern[str], timeout_s: float) -> re.Match[str]:
        """Wait until a line of the log matches `pattern`; return the match."""
        deadline = time.monotonic() + timeout_s
        while True:
            match = pattern.search(self.log_path.read_text(errors="replace"))
            if match:
                return match
            self.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(f"{self.log_path.name}: no {pattern.pattern!r} in {timeout_s} s")
            time.sleep(_POLL_S)


class SimulatorProcess(ChildProcess):
    """`gws-archiver simulate` on a free loopback port, writing its truth file."""

    def __init__(self, options: list[str], truth_path: Path, log_path: Path) -> None:
        args = ["simulate", "--port", "0", "--truth", str(truth_path), *options]
        super().__init__(args, log_path)
        self.truth_path = truth_path
        self.base_url = ""

    def wait_ready(self, timeout_s: float) -> str:
        """Wait for the banner (printed once any backlog exists); return the base URL."""
        self.base_url = self.wait_for_log(_SIMULATOR_URL, timeout_s).group(1)
        return self.base_url

    def status(self) -> dict[str, Any]:
        """`GET /_sim/status`."""
        return self._admin("GET", "status")

    def stats(self) -> dict[str, Any]:
        """`GET /_sim/stats`: request counters by route."""
        return self._admin("GET", "stats")

    def stop_scenario(self) -> dict[str, Any]:
        """Freeze the simulated world; returns the status with the final message count."""
        return self._admin("POST", "scenario/stop")

    def _admin(self, method: str, path: str) -> dict[str, Any]:
        request = urllib.request.Request(f"{self.base_url}/_sim/{path}", method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            payload: dict[str, Any] = json.loads(response.read())
        return payload


def message_requests(stats: dict[str, Any]) -> int:
    """How many message-log reads the simulator answered, whatever their outcome."""
    return sum(
        sum(outcomes.values())
        for route, outcomes in stats["requests"].items()
        if route.endswith("/messages")
    )


class DaemonProcess(ChildProcess):
    """`gws-archiver run` with a generated configuration."""

    def __init__(self, config_path: Path, log_path: Path) -> None:
        super().__init__(["run", "--config", str(config_path)], log_path)

    def wait_started(self, timeout_s: float) -> float:
        """Wait for `daemon_started`; return its wall-clock time (epoch seconds)."""
        line = self.wait_for_log(re.compile(r"^.*daemon_started.*$", re.MULTILINE), timeout_s)
        stamp = json.loads(line.group(0))["timestamp"]
        return datetime.fromisoformat(stamp).timestamp()


def write_daemon_config(
    path: Path, base_url: str, agents: int, archive: ArchiveLocation, *, push: bool = False
) -> Path:
    """A daemon configuration with every default but the accounts, GWS and archive paths
    (and push mode, when asked for)."""
    lines = [f"[gws]\nbase_url = {json.dumps(base_url)}\n"]
    for number in range(1, agents + 1):
        lines.append(f'[[gws.accounts]]\nusername = "agent{number}"\npassword = "{PASSWORD}"\n')
    where = (
        f"url = {json.dumps(archive.url)}"
        if isinstance(archive, PostgresArchive)
        else f"path = {json.dumps(str(archive))}"
    )
    lines.append(f'[archive]\n{where}\n[log]\nformat = "json"\n')
    if push:
        lines.append("[push]\nenabled = true\n")
    path.write_text("\n".join(lines))
    return path
