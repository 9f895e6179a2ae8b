"""Command-line wiring for `gws-archiver simulate`: the fake GWS alone, until SIGINT/SIGTERM.

Options:
    --host HOST              listen address (127.0.0.1)
    --port PORT              listen port (8090; 0 picks a free one)
    --agents N               accounts agent1 … agentN, password `password` (3)
    --supervisors N          accounts supervisor1 … supervisorN, password `password` (0)
    --monitor-accept         monitored sessions reach supervisors Invited (they must Accept)
    --monitor-repeat ok|error  answer to Monitor for an agent already monitored (ok)
    --seed N                 seed of every random choice (1)
    --truth PATH             JSON lines, one per message created, complete at exit
    --csrf                   require CSRF tokens on POST/PUT/DELETE
    --quirks                 doc-quirks mode (glued timestamps, `L` suffixes, typo keys)
    --hostile                poison payloads among healthy sessions (see `hostile.py`)
    --utc-offset MINUTES     offset of message timestamps (default: local zone)
    --sessions N             total scripted sessions (default: endless)
    --no-scenario            an empty world, driven only through the API
    --concurrent N           sessions each agent holds at once (2)
    --messages MIN-MAX       messages per session between joins and leaves (10-40)
    --interval SECONDS       mean gap between messages of a session (1.5)
    --agents-only SHARE      share of agents-only turns (0.05)
    --transcript-share SHARE share of sessions ending with TranscriptSaveDone (0.9)
    --linger SECONDS         how long Completed sessions stay listed (10)
    --backlog SESSIONS:MESSAGES  sessions there from the start with all their messages, held
                             open and silent (e.g. 1000:200 for an ingest benchmark)
    --transfer-share SHARE   share of sessions transferred to another agent midway (0)
    --conference-share SHARE share of sessions where another agent joins for a while (0)
    --consult-share SHARE    share of sessions with an agents-only consultation (0)
    --queue-share SHARE      share of sessions sent to a queue and picked up again (0)
    --queue-wait SECONDS     how long a queued session waits for its pick-up (3)
    --revoked SECONDS        how long a transferred or queued session shows Revoked in the old
                             agent's list before it answers 404 (2)
    --gone-after-leave       a session answers 404 to an agent the moment it leaves that
                             agent's list: no Revoked phase, no linger
    --faults SPEC            fault rates as `name=value,...` using `FaultRates` field names,
                             e.g. `http_503=0.05,reset=0.01,latency=0.1,latency_s=0.5` or
                             `drop_notification=0.1,duplicate_notification=0.1` or
                             `ucs_late=0.2,ucs_late_s=1,ucs_missing=0.1,ucs_error=0.1`
    --bayeux-timeout SECONDS how long the CometD endpoint holds a /meta/connect (30)
    --bayeux-max-interval SECONDS  how long a CometD client may go without a connect
                             before it is dropped (10)
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from gws_simulator.faults import FaultRates
from gws_simulator.scenario import Scenario
from gws_simulator.server import Simulator, SimulatorOptions


def _message_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    try:
        bounds = (int(low), int(high if sep else low))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected N or MIN-MAX, got {text!r}") from exc
    if not 0 <= bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError(f"expected 0 <= MIN <= MAX, got {text!r}")
    return bounds


def _backlog(text: str) -> tuple[int, int]:
    sessions, sep, messages = text.partition(":")
    try:
        backlog = (int(sessions), int(messages))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected SESSIONS:MESSAGES, got {text!r}") from exc
    if not sep or min(backlog) < 0:
        raise argparse.ArgumentTypeError(f"expected SESSIONS:MESSAGES >= 0, got {text!r}")
    return backlog


def _fault_spec(text: str) -> FaultRates:
    try:
        return FaultRates.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a share within 0..1, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `simulate` options to `parser`."""
    parser.add_argument("--host", default="127.0.0.1", help="listen address (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8090, help="listen port (8090)")
    parser.add_argument("--agents", type=int, default=3, help="accounts agent1..agentN (3)")
    parser.add_argument(
        "--supervisors", type=int, default=0, help="accounts supervisor1..supervisorN (0)"
    )
    parser.add_argument(
        "--monitor-accept",
        action="store_true",
        help="monitored sessions reach supervisors Invited: they must Accept",
    )
    parser.add_argument(
        "--monitor-repeat",
        choices=("ok", "error"),
        default="ok",
        help="answer to Monitor for an agent already monitored (ok)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of every random choice (1)")
    parser.add_argument("--truth", type=Path, help="write the truth as JSON lines to PATH")
    parser.add_argument("--csrf", action="store_true", help="turn CSRF protection on")
    parser.add_argument("--quirks", action="store_true", help="emit the docs' odd shapes")
    parser.add_argument(
        "--hostile",
        action="store_true",
        help="serve a catalogue of poison payloads among healthy sessions (the truth marks them)",
    )
    parser.add_argument("--utc-offset", type=int, help="timestamp offset in minutes (local)")
    parser.add_argument(
        "--bayeux-timeout", type=float, default=30.0, help="CometD connect hold in seconds (30)"
    )
    parser.add_argument(
        "--bayeux-max-interval",
        type=float,
        default=10.0,
        help="seconds a CometD client may go without a connect (10)",
    )
    parser.add_argument(
        "--revoked", type=float, default=2.0, help="seconds a transferred session shows Revoked"
    )
    parser.add_argument(
        "--gone-after-leave",
        action="store_true",
        help="answer 404 the moment a session leaves an agent's list (no Revoked, no linger)",
    )
    scenario = parser.add_argument_group("scenario")
    scenario.add_argument("--sessions", type=int, help="total sessions (default: endless)")
    scenario.add_argument("--no-scenario", action="store_true", help="start an empty world")
    scenario.add_argument("--concurrent", type=int, default=2, help="sessions per agent (2)")
    scenario.add_argument(
        "--messages", type=_message_range, default=(10, 40), help="MIN-MAX per session (10-40)"
    )
    scenario.add_argument("--interval", type=float, default=1.5, help="seconds between messages")
    scenario.add_argument("--agents-only", type=_share, default=0.05, help="agents-only share")
    scenario.add_argument(
        "--transcript-share", type=_share, default=0.9, help="share ending in TranscriptSaveDone"
    )
    scenario.add_argument("--linger", type=float, default=10.0, help="seconds Completed stays")
    scenario.add_argument(
        "--backlog",
        type=_backlog,
        default=(0, 0),
        metavar="SESSIONS:MESSAGES",
        help="sessions present from the start with all their messages (0:0)",
    )
    for name, what in (
        ("transfer", "transferred to another agent"),
        ("conference", "joined by another agent for a while"),
        ("consult", "with an agents-only consultation"),
        ("queue", "sent to a queue and picked up"),
    ):
        scenario.add_argument(
            f"--{name}-share", type=_share, default=0.0, help=f"share of sessions {what} (0)"
        )
    scenario.add_argument(
        "--queue-wait", type=float, default=3.0, help="seconds a queued session waits (3)"
    )
    parser.add_argument(
        "--faults",
        type=_fault_spec,
        default=FaultRates(),
        help="fault rates, e.g. http_503=0.05,reset=0.01 (FaultRates field names)",
    )


def options_from(args: argparse.Namespace) -> SimulatorOptions:
    """Build `SimulatorOptions` from parsed arguments; raises ValueError on bad values."""
    scenario = None
    if not args.no_scenario:
        scenario = Scenario(
            sessions=args.sessions,
            concurrent_per_agent=args.concurrent,
            messages=args.messages,
            interval_s=args.interval,
            agents_only_share=args.agents_only,
            transcript_share=args.transcript_share,
            linger_s=args.linger,
            backlog=args.backlog,
            transfer_share=args.transfer_share,
            conference_share=args.conference_share,
            consult_share=args.consult_share,
            queue_share=args.queue_share,
            queue_wait_s=args.queue_wait,
        )
    if args.agents < 1:
        raise ValueError("--agents must be at least 1")
    if args.supervisors < 0:
        raise ValueError("--supervisors must not be negative")
    if args.bayeux_timeout < 0 or args.bayeux_max_interval <= 0:
        raise ValueError("--bayeux-timeout must be >= 0 and --bayeux-max-interval > 0")
    return SimulatorOptions(
        host=args.host,
        port=args.port,
        agents=args.agents,
        seed=args.seed,
        csrf=args.csrf,
        quirks=args.quirks,
        hostile=args.hostile,
        truth_path=args.truth,
        faults=args.faults,
        scenario=scenario,
        utc_offset_minutes=args.utc_offset,
        bayeux_timeout_s=args.bayeux_timeout,
        bayeux_max_interval_s=args.bayeux_max_interval,
        revoked_s=args.revoked,
        gone_after_leave=args.gone_after_leave,
        supervisors=args.supervisors,
        monitor_accept=args.monitor_accept,
        monitor_repeat=args.monitor_repeat,
    )


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM, then complete the truth file; the exit status."""
    try:
        options = options_from(args)
    except ValueError as exc:
        print(f"simulate: error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(options))
    except OSError as exc:
        print(
            f"simulate: error: cannot listen on {options.host}:{options.port}: {exc}",
            file=sys.stderr,
        )
        return 1
    return 0


async def _serve(options: SimulatorOptions) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with Simulator(options) as simulator:
        accounts = ", ".join(simulator.world.accounts)
        print(
            f"GWS simulator on {simulator.base_url} — accounts {accounts} (password 'password')",
            flush=True,
        )
        await stop.wait()
