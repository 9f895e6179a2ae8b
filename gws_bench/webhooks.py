"""Webhook delivery at the live rate: one subscriber, a healthy and a flaky receiver.

Events are committed at `webhook_rate` per second (a tenth of it for the flaky receiver), one
message per page, spread over many sessions as a busy contact centre makes them, by the real
writer, and delivered by the real dispatcher, both in this process: this process's CPU less the
writer thread's (the pollers' side, measured by the other scenarios) is what delivery costs.
The receiver is a child process (:mod:`gws_bench.receiver`), its CPU not counted; the
subscriber gives an attempt 2 s and retries after 0.2 s, so the flaky receiver's hanging
attempts cost 2 s each. Measured per receiver: events per second delivered, the lag from commit
to the receiver (p50, p99, max), CPU, and order violations within a session (must be 0); every
event must arrive.
"""

from __future__ import annotations

import asyncio
import re
import resource
import threading
import time
from pathlib import Path

import psutil

from archiver import lifecycle
from archiver.config import HooksConfig, Secret
from archiver.config.model import WebhookHook
from archiver.feed import EventFeed
from archiver.hooks.dispatcher import HookDispatcher
from archiver.store.reader import ArchiveReader
from archiver.store.writer import ArchiveWriter, Page
from gws_bench.archive_factory import generate_session
from gws_bench.processes import BenchError, ChildProcess
from gws_bench.report import ScenarioResult
from gws_bench.settings import BenchContext, BenchSettings
from gws_bench.truth import percentile

SECRET = Secret("whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
LISTENING = re.compile(r"listening on (\d+)")
SESSIONS = 500  # sessions the committed events are spread over, at most
MESSAGES_PER_SESSION = 4  # at least
COMMIT_TICK_S = 0.02  # pages are committed in batches this far apart


def run_webhooks(settings: BenchSettings, context: BenchContext) -> ScenarioResult:
    """Both receivers, one after the other, each against a fresh archive."""
    result = ScenarioResult("webhooks")
    for mode, rate in (("healthy", settings.webhook_rate), ("flaky", settings.webhook_rate / 10)):
        context.progress(f"webhooks: {mode} receiver, {rate:g} events/s")
        workdir = context.workdir / f"webhooks-{mode}"
        workdir.mkdir(parents=True, exist_ok=True)
        figures = lifecycle.run(_one_run(settings, workdir, mode, rate))  # the daemon's loop
        for key, label, value, unit, decimals in figures:
            result.add(f"{mode}_{key}", f"{mode}: {label}", value, unit, decimals)
    return result


async def _one_run(
    settings: BenchSettings, workdir: Path, mode: str, rate: float
) -> list[tuple[str, str, float, str, int]]:
    received_log = workdir / "received.txt"
    receiver = ChildProcess(
        [mode, str(received_log)], workdir / "receiver.log", module="gws_bench.receiver"
    )
    with receiver:
        port = receiver.wait_for_log(LISTENING, settings.start_timeout_s)[1]
        hook = WebhookHook(
            name="bench",
            url=f"http://127.0.0.1:{port}/hook",
            secrets=(SECRET,),
            timeout_s=2.0,
            retry_delays_s=(0.2,),
            max_attempts=1000,
        )
        hooks = HooksConfig(webhooks=(hook,), plugins=False)
        committed, cpu_s, wall_s, total = await _deliver(
            settings, workdir / "archive.sqlite3", hooks, rate
        )
    arrivals = _first_arrivals(received_log)
    missing = total - len(arrivals)
    if missing:
        raise BenchError(f"webhooks ({mode}): {missing} of {total} events never arrived")
    ids = await _ids_by_seq(workdir / "archive.sqlite3")
    lags = sorted(arrivals[event_id] - committed[seq] for seq, event_id in ids.items())
    span = max(arrivals.values()) - min(committed.values())
    return [
        ("events", "events delivered", total, "events", 0),
        ("rate", "delivered per second", total / span, "events/s", 0),
        ("lag_p50", "lag, commit to receiver, p50", percentile(lags, 0.5), "s", 3),
        ("lag_p99", "lag p99", percentile(lags, 0.99), "s", 3),
        ("lag_max", "lag max", lags[-1], "s", 3),
        ("cpu", "CPU of delivery (the writer thread not counted)", cpu_s / wall_s, "cores", 2),
        (
            "order",
            "order violations within a session",
            _order_violations(arrivals, ids),
            "events",
            0,
        ),
    ]


async def _deliver(
    settings: BenchSettings, path: Path, hooks: HooksConfig, rate: float
) -> tuple[dict[int, float], float, float, int]:
    """Commit events at the rate while the dispatcher delivers them; wait until all are."""
    committed: dict[int, float] = {}
    async with ArchiveWriter(path) as writer, ArchiveReader(path) as reader:
        feed = EventFeed(reader, 0)
        async with HookDispatcher(path, feed, hooks) as dispatcher:

            def on_commit(seq: int) -> None:
                # Counted with the delivery's CPU, so constant per commit: the seqs noted so
                # far are 1 to len(committed).
                now = time.time()
                for number in range(len(committed) + 1, seq + 1):
                    committed[number] = now
                feed.committed(seq)

            writer.on_commit = on_commit
            pages = _pages(rate, settings.webhook_s)  # built before the CPU is counted
            started, cpu = time.time(), _delivery_cpu_s()
            task = asyncio.create_task(dispatcher.run())
            try:
                await _commit_at_rate(writer, pages, rate)
                total = writer.last_seq
                deadline = time.monotonic() + settings.finish_timeout_s
                while dispatcher.runners[0].delivered < total:
                    if time.monotonic() > deadline:
                        raise BenchError("webhooks: the receiver did not get every event in time")
                    await asyncio.sleep(0.2)
                wall_s, cpu_s = time.time() - started, _delivery_cpu_s() - cpu
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    return committed, cpu_s, wall_s, total


def _pages(rate: float, seconds: float) -> list[Page]:
    """One message per page, round robin over the sessions: `seconds` worth at `rate`."""
    total = int(rate * seconds)
    sessions = max(1, min(SESSIONS, total // MESSAGES_PER_SESSION))
    messages = max(MESSAGES_PER_SESSION, total // sessions)
    lanes = [generate_session(number, messages, 1)[1] for number in range(sessions)]
    return [lane[i] for i in range(messages) for lane in lanes if i < len(lane)]


async def _commit_at_rate(writer: ArchiveWriter, pages: list[Page], rate: float) -> None:
    """Store `rate` pages a second. Pages due together are stored together, as the daemon's
    pollers do: the writer then commits them in one transaction."""
    start = time.monotonic()
    done = 0
    while done < len(pages):
        await asyncio.sleep(COMMIT_TICK_S)
        due = min(len(pages), int((time.monotonic() - start) * rate) + 1)
        await asyncio.gather(*(writer.store_page(page) for page in pages[done:due]))
        done = due


def _first_arrivals(log: Path) -> dict[str, float]:
    arrivals: dict[str, float] = {}
    for line in log.read_text().splitlines():
        event_id, _, at = line.partition(" ")
        arrivals.setdefault(event_id, float(at))
    return arrivals


async def _ids_by_seq(path: Path) -> dict[int, str]:
    async with ArchiveReader(path) as reader:
        rows = await reader.conn.execute_fetchall("SELECT seq, event_id FROM events")
    return {int(seq): str(event_id) for seq, event_id in rows}


def _order_violations(arrivals: dict[str, float], ids: dict[int, str]) -> int:
    """Events that reached the receiver before an earlier event of their session."""
    latest: dict[str, float] = {}
    violations = 0
    for _, event_id in sorted(ids.items()):
        session = event_id.split("_")[1]
        at = arrivals[event_id]
        if at < latest.get(session, 0.0):
            violations += 1
        latest[session] = max(at, latest.get(session, 0.0))
    return violations


def _delivery_cpu_s() -> float:
    """This process's CPU seconds, less the archive writer thread's (it is not delivery)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    writers = {
        thread.native_id
        for thread in threading.enumerate()
        if thread.name.startswith("archive-writer")
    }
    writing = sum(
        t.user_time + t.system_time for t in psutil.Process().threads() if t.id in writers
    )
    return usage.ru_utime + usage.ru_stime - writing
