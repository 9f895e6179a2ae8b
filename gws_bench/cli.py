"""`gws-archiver bench`: run the benchmark scenarios and print their table (or JSON)."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import signal
import sys
import tempfile
from pathlib import Path

import orjson

from gws_bench.settings import SCENARIOS, TINY, BenchSettings

# Option name -> BenchSettings field; a given option overrides the preset (full size or --tiny).
_SIZES = {
    "sessions": "backlog_sessions",
    "messages": "backlog_messages",
    "live_sessions": "live_sessions",
    "agents": "agents",
    "duration": "duration_s",
    "interval": "interval_s",
    "seed": "seed",
}


def add_arguments(bench: argparse.ArgumentParser) -> None:
    """The options of `gws-archiver bench`."""
    bench.add_argument(
        "--scenario",
        choices=[*SCENARIOS, "all"],
        default="all",
        help="which scenario to run (default: all)",
    )
    bench.add_argument(
        "--sessions", type=int, metavar="N", help="backlog sessions for ingest and storage (1000)"
    )
    bench.add_argument(
        "--messages", type=int, metavar="N", help="messages per backlog session (200)"
    )
    bench.add_argument(
        "--live-sessions", type=int, metavar="N", help="sessions open at once in live (10000)"
    )
    bench.add_argument("--agents", type=int, metavar="N", help="simulated agent accounts (10)")
    bench.add_argument("--duration", type=float, metavar="SECONDS", help="live run time (180)")
    bench.add_argument(
        "--interval",
        type=float,
        metavar="SECONDS",
        help="mean gap between a live session's messages (10)",
    )
    bench.add_argument(
        "--seed", type=int, metavar="N", help="seed of the simulated contact centre (1)"
    )
    bench.add_argument(
        "--push", action="store_true", help="live scenario with push mode on (CometD hints)"
    )
    bench.add_argument(
        "--no-peers",
        action="store_true",
        help="skip the plain peers beside the daemon (live then takes about half as long)",
    )
    bench.add_argument(
        "--postgres",
        action="store_true",
        help="the daemon archives into a throwaway PostgreSQL cluster (Debian's server)",
    )
    bench.add_argument("--tiny", action="store_true", help="a smoke run of a few seconds")
    bench.add_argument(
        "--workdir",
        type=Path,
        metavar="DIR",
        help="keep archives, truth files and logs here (default: discard)",
    )
    bench.add_argument(
        "--profile", type=Path, metavar="DIR", help="py-spy profiles of the children"
    )
    bench.add_argument("--json", action="store_true", help="print JSON instead of the table")


def settings_from(args: argparse.Namespace) -> BenchSettings:
    """The preset (`--tiny` or full size) with every given option applied."""
    changes = {field: getattr(args, option) for option, field in _SIZES.items()}
    settings = dataclasses.replace(
        TINY if args.tiny else BenchSettings(),
        **{field: value for field, value in changes.items() if value is not None},
    )
    if args.scenario != "all":
        settings = dataclasses.replace(settings, scenarios=(args.scenario,))
    if args.push:
        settings = dataclasses.replace(settings, push=True)
    if args.no_peers:
        settings = dataclasses.replace(settings, peers=False)
    if args.postgres:
        settings = dataclasses.replace(settings, postgres=True)
    return settings


def command_line(args: argparse.Namespace) -> str:
    """The command as given, for the report (paths kept, so it can be run again)."""
    words = ["gws-archiver", "bench"]
    if args.scenario != "all":
        words += ["--scenario", args.scenario]
    if args.tiny:
        words.append("--tiny")
    if args.push:
        words.append("--push")
    if args.no_peers:
        words.append("--no-peers")
    if args.postgres:
        words.append("--postgres")
    for option in _SIZES:
        value = getattr(args, option)
        if value is not None:
            words += [
                f"--{option.replace('_', '-')}",
                f"{value:g}" if isinstance(value, float) else str(value),
            ]
    if args.profile is not None:
        words += ["--profile", str(args.profile)]
    return shlex.join(words)


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the bench; exit 0 when it completed, 1 when a step failed."""
    # Imported here so that other commands do not load the bench (psutil, the ceilings).
    from gws_bench.processes import BenchError
    from gws_bench.runner import run_bench
    from gws_bench.summary import side_by_side

    settings = settings_from(args)
    sizes = (settings.backlog_sessions, settings.backlog_messages, settings.live_sessions)
    if min(*sizes, settings.agents) < 1:
        print("gws-archiver bench: sizes must be at least 1", file=sys.stderr)
        return 2
    # SIGTERM unwinds like Ctrl-C, so the simulator and the daemon are stopped too.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with tempfile.TemporaryDirectory(prefix="gws-bench-") as scratch:
        workdir = args.workdir or Path(scratch)
        try:
            report = run_bench(
                settings,
                workdir,
                lambda line: print(line, file=sys.stderr, flush=True),
                command=command_line(args),
                profile_dir=args.profile,
            )
        except BenchError as exc:
            print(f"gws-archiver bench: {exc}", file=sys.stderr)
            return 1
        finally:
            signal.signal(signal.SIGTERM, previous)
        document = orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2)
        (workdir / "report.json").write_bytes(document)
    if args.json:
        print(document.decode())
    else:
        print(report.header())
        print(f"command: {report.command}")
        print()
        print(report.table())
        if comparison := side_by_side(report):
            print()
            print(comparison)
    return 0


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)
