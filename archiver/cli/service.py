"""Commands for running the daemon as a service: ``status`` and ``config check``.

``status`` reads the archive (never the running daemon): the last runs from the ``runs`` table,
how far the archive has got, and the recent ingest lag (GWS ``sent_at`` to our ``archived_at``).
``config check`` validates a configuration file and prints it as the daemon would use it, every
default filled in and every secret masked.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import orjson

from archiver.cli.exit_codes import EXIT_FAILURE, EXIT_OK
from archiver.cli.read import archive_path
from archiver.config import load_config
from archiver.config_dump import effective_config, render_toml
from archiver.store.db import ArchiveLocation, DatabaseThread, missing
from archiver.store.leases import Lease, leases
from archiver.store.postgres import PostgresArchive
from archiver.store.runs import Run, recent_runs
from archiver.store.vitals import ArchiveSummary, archive_bytes, summarize


def add_service_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``status`` and ``config check`` on the ``gws-archiver`` command tree."""
    status = subparsers.add_parser("status", help="the last runs, archive progress and lag")
    status.add_argument(
        "--archive", metavar="PATH|URL", help="the archive: an SQLite file or a postgresql:// URL"
    )
    status.add_argument("--config", metavar="PATH", help="read [archive] path from this file")
    status.add_argument("--runs", type=_positive, default=5, metavar="N", help="show N runs (5)")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(handler=cmd_status)

    config = subparsers.add_parser("config", help="work with configuration files")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser(
        "check", help="validate a configuration and print it in effect, secrets masked"
    )
    check.add_argument("--config", required=True, metavar="PATH", help="the TOML configuration")
    check.set_defaults(handler=cmd_config_check)


def cmd_config_check(args: argparse.Namespace) -> int:
    """``config check --config PATH``: exit 0 and print the effective config, or exit 2."""
    config = load_config(args.config)
    print(f"# {config.source}: valid. Effective configuration, secrets masked:")
    print(render_toml(effective_config(config)), end="")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    """``status``: the newest runs, archive progress and recent ingest lag."""
    path = archive_path(args)
    if missing(path):
        print(f"gws-archiver: no archive at {path}", file=sys.stderr)
        return EXIT_FAILURE
    summary, runs, sizes = asyncio.run(_gather(path, args.runs))
    report = status_report(path, summary, runs, sizes, now=datetime.now(UTC))
    if isinstance(path, PostgresArchive):
        report["leases"] = [asdict(lease) for lease in asyncio.run(_leases(path))]
    if args.json:
        sys.stdout.write(orjson.dumps(report).decode() + "\n")
    else:
        _print_report(report)
    return EXIT_OK


async def _gather(
    path: ArchiveLocation, limit: int
) -> tuple[ArchiveSummary, list[Run], dict[str, int]]:
    # SQLite work runs in threads, as everywhere else; the three reads are independent.
    return await asyncio.gather(
        asyncio.to_thread(summarize, path),
        asyncio.to_thread(recent_runs, path, limit),
        asyncio.to_thread(archive_bytes, path),
    )


async def _leases(path: PostgresArchive) -> list[Lease]:
    async with DatabaseThread(path, name="status") as db:
        return await db.run(leases)


def status_report(
    path: ArchiveLocation,
    summary: ArchiveSummary,
    runs: list[Run],
    sizes: dict[str, int],
    *,
    now: datetime,
) -> dict[str, Any]:
    """The status as plain data (the ``--json`` form)."""
    last = summary.last_archived_at
    return {
        "archive": {"path": str(path), "bytes": sizes},
        "events": summary.last_seq,
        "open_sessions": summary.open_sessions,
        "last_archived_at": last,
        "last_archived_age_s": None if last is None else round(_age_s(last, now), 3),
        "ingest_lag_s": {
            "median": summary.ingest_lag_median_s,
            "max": summary.ingest_lag_max_s,
            "messages": summary.lag_sample,
        },
        "runs": [_run_json(run) for run in runs],
    }


def _run_json(run: Run) -> dict[str, Any]:
    data = asdict(run)
    # A "running" row whose process has vanished is a crash the next start will record.
    data["status"] = "crashed" if run.gone else run.status
    data["events"] = run.events
    return data


def _print_report(report: dict[str, Any]) -> None:
    sizes = report["archive"]["bytes"]
    print(f"archive   {report['archive']['path']}")
    print(f"size      {_mib(sizes['main'])} + WAL {_mib(sizes.get('wal', 0))}")
    for lease in report.get("leases", []):
        held = (
            f"held by {lease['holder']} for {lease['expires_in_s']:.1f} s more"
            if lease["holder"] and (lease["expires_in_s"] or 0) > 0
            else "free (no daemon holds it)"
        )
        print(f"lease     {lease['name']}: {held}, {lease['takeovers']} takeovers")
    age = report["last_archived_age_s"]
    newest = "nothing archived yet" if age is None else f"newest message archived {age:.0f} s ago"
    print(f"events    {report['events']} ({newest})")
    print(f"sessions  {report['open_sessions']} open")
    lag = report["ingest_lag_s"]
    if lag["messages"]:
        print(
            f"lag       sent -> archived over the last {lag['messages']} messages:"
            f" median {lag['median']:.2f} s, max {lag['max']:.2f} s"
        )
    print()
    if not report["runs"]:
        print("no runs recorded")
        return
    headers = ("RUN", "STATUS", "STARTED", "STOPPED", "VERSION", "CONFIG", "PID", "EVENTS", "MSGS")
    rows = [
        (
            str(run["run_id"]),
            run["status"],
            _when(run["started_at"]),
            _when(run["stopped_at"]),
            run["version"],
            run["config_hash"],
            str(run["pid"]),
            _number(run["events"]),
            _number(run["messages_archived"]),
        )
        for run in report["runs"]
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for row in (headers, *rows):
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    for run in report["runs"]:
        if run["error"]:
            print(f"run {run['run_id']} failed: {run['error']}")


def _age_s(stamp: str, now: datetime) -> float:
    return (now - datetime.fromisoformat(stamp.replace("Z", "+00:00"))).total_seconds()


def _when(stamp: str | None) -> str:
    return stamp[:19].replace("T", " ") if stamp else "-"


def _number(value: int | None) -> str:
    return "-" if value is None else str(value)


def _mib(size: int) -> str:
    return f"{size / 1048576:.1f} MiB"


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return int(text)
