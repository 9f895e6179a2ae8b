"""The ``hooks`` commands: ``status``, ``replay`` and ``enable``, over the archive's delivery state.

They work beside a running daemon: replayed events and a re-enabled subscriber are picked up by
its dispatcher within a second. The archive comes from ``--archive``, else ``--config``'s
``[archive] path``, else ``./archive.sqlite3``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from dataclasses import asdict
from typing import Any

import orjson

from archiver.cli.exit_codes import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from archiver.cli.read import archive_path
from archiver.errors import ArchiverError, ConfigError
from archiver.instants import format_instant, parse_instant
from archiver.store.deliveries import DeliveryStore, SubscriberStatus

Command = Callable[[argparse.Namespace, DeliveryStore], Coroutine[Any, Any, int]]


def add_hooks_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``hooks status``, ``hooks replay`` and ``hooks enable``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--archive", metavar="PATH|URL", help="the archive: an SQLite file or a postgresql:// URL"
    )
    common.add_argument("--config", metavar="PATH", help="read [archive] path from this file")
    hooks = subparsers.add_parser("hooks", help="event subscribers: delivery state and replay")
    commands = hooks.add_subparsers(dest="hooks_command", required=True, metavar="COMMAND")

    status = commands.add_parser(
        "status", parents=[common], help="per subscriber: lag, failures, dead letters, disabled"
    )
    status.add_argument("--json", action="store_true", help="print one JSON object per line")
    status.set_defaults(handler=_handler(_status))

    replay = commands.add_parser(
        "replay", parents=[common], help="send events to a subscriber again, with the same ids"
    )
    replay.add_argument("name", metavar="NAME", help="the subscriber (see hooks status)")
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--since",
        type=_since,
        metavar="SEQ|TIME",
        help="every event it gets from this seq, or this ISO-8601 time (UTC if bare), on",
    )
    which.add_argument("--event", metavar="ID", help="one event, by id (filters do not apply)")
    replay.set_defaults(handler=_handler(_replay))

    enable = commands.add_parser(
        "enable", parents=[common], help="resume a subscriber disabled by HTTP 410"
    )
    enable.add_argument("name", metavar="NAME")
    enable.set_defaults(handler=_handler(_enable))


def _handler(command: Command) -> Callable[[argparse.Namespace], int]:
    """Find the archive, open its delivery state, run ``command``; errors become exit codes."""

    def handle(args: argparse.Namespace) -> int:
        try:
            path = archive_path(args)

            async def run() -> int:
                async with DeliveryStore(path) as store:
                    return await command(args, store)

            return asyncio.run(run())
        except ConfigError as exc:
            return _fail(f"configuration error: {exc}", EXIT_USAGE)
        except ArchiverError as exc:
            return _fail(str(exc), EXIT_FAILURE)

    return handle


def _fail(message: str, code: int) -> int:
    print(f"gws-archiver: {message}", file=sys.stderr)
    return code


def _since(text: str) -> int | str:
    """A seq (digits) or an instant, as the archive writes instants."""
    if text.isdigit():
        return int(text)
    try:
        when = parse_instant(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a seq or an ISO-8601 time: {text!r}") from None
    return format_instant(when)


async def _status(args: argparse.Namespace, store: DeliveryStore) -> int:
    subscribers = await store.status()
    if args.json:
        for sub in subscribers:
            sys.stdout.write(orjson.dumps(asdict(sub) | {"lag": sub.lag}).decode() + "\n")
        return EXIT_OK
    if not subscribers:
        print("no subscribers yet: configure [[hooks.*]] and run the daemon")
        return EXIT_OK
    headers = ("NAME", "KIND", "LAG", "PENDING", "DEAD", "FAILED", "STATE", "LAST ERROR")
    rows = [_status_row(sub) for sub in subscribers]
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return EXIT_OK


def _status_row(sub: SubscriberStatus) -> tuple[str, ...]:
    state = f"disabled: {sub.disabled_reason}" if sub.disabled_reason else "active"
    return (
        sub.name,
        sub.kind,
        str(sub.lag),
        str(sub.pending),
        str(sub.dead),
        str(sub.failed_attempts),
        state,
        (sub.last_error or "-")[:60],
    )


async def _replay(args: argparse.Namespace, store: DeliveryStore) -> int:
    since = args.since
    queued = await store.replay(
        args.name,
        since_seq=since if isinstance(since, int) else None,
        since_time=since if isinstance(since, str) else None,
        event_id=args.event,
    )
    if args.event is not None and queued == 0:
        return _fail(f"no event {args.event!r}, or it is already queued for {args.name}", 1)
    print(f"queued {queued} event(s) for {args.name}")
    return EXIT_OK


async def _enable(args: argparse.Namespace, store: DeliveryStore) -> int:
    if not await store.enable(args.name):
        return _fail(f"no hook subscriber named {args.name!r}", EXIT_FAILURE)
    print(f"{args.name} enabled")
    return EXIT_OK
