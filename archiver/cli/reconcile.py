"""``gws-archiver reconcile``: check the archive against Interaction History, and backfill it.

Without options it checks every ended session whose check is not final (never made, pending or
unchecked). ``--session ID`` checks that session, or archives it from history if the archive
never saw it. ``--since WHEN`` limits the check to sessions ended since then, and also asks
history which SMS sessions each configured account's agent had since then, archiving those the
archive lacks. It writes to the archive, so it runs while the daemon is stopped (the running
daemon reconciles ended sessions itself).
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

import orjson

from archiver.cli.exit_codes import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from archiver.config import Config, load_config
from archiver.daemon import cometd_listener
from archiver.gws.client import GwsClient, GwsHost
from archiver.gws.history import HistoryClient
from archiver.instance_lock import InstanceLock
from archiver.instants import format_instant, parse_instant
from archiver.logs import configure_logging
from archiver.reconcile import (
    HistoryReader,
    Outcome,
    history_clients,
    history_since,
    reconcile_sessions,
)
from archiver.store.writer import ArchiveWriter


def add_reconcile_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``reconcile`` on the ``gws-archiver`` command tree."""
    command = subparsers.add_parser(
        "reconcile", help="check ended sessions against Interaction History; backfill missing ones"
    )
    command.add_argument("--config", required=True, metavar="PATH", help="the TOML configuration")
    command.add_argument(
        "--session", action="append", default=[], metavar="ID", help="this session (repeatable)"
    )
    command.add_argument(
        "--since", type=_instant, metavar="WHEN", help="sessions ended since (ISO date or time)"
    )
    command.add_argument("--json", action="store_true", help="one JSON object per session")
    command.set_defaults(handler=cmd_reconcile)


def cmd_reconcile(args: argparse.Namespace) -> int:
    """Check, print one line per session and a summary; exit 1 if a check could not be made."""
    config = load_config(args.config)
    configure_logging("warning", config.log.format)
    if not config.reconcile.enabled:
        print("gws-archiver reconcile: [reconcile] enabled is false in the configuration")
        return EXIT_USAGE
    outcomes = asyncio.run(_reconcile(config, args.session, args.since))
    for outcome in outcomes:
        if args.json:
            print(orjson.dumps(_as_json(outcome)).decode())
        else:
            detail = f"  ({outcome.detail})" if outcome.detail else ""
            print(f"{outcome.session_id}  {outcome.status}{detail}")
    totals = Counter(outcome.status for outcome in outcomes)
    if not args.json:
        summary = ", ".join(f"{count} {status}" for status, count in sorted(totals.items()))
        print(f"reconciled {len(outcomes)} sessions: {summary or 'nothing to do'}")
    return EXIT_FAILURE if totals["unchecked"] else EXIT_OK


async def _reconcile(
    config: Config, session_ids: list[str], since: datetime | None
) -> list[Outcome]:
    async with AsyncExitStack() as stack:
        if isinstance(config.archive.location, Path):
            await stack.enter_async_context(InstanceLock(config.archive.location))
        writer = await stack.enter_async_context(
            ArchiveWriter(config.archive.location, busy_timeout_s=config.archive.busy_timeout_s)
        )
        host = GwsHost(config.gws, reserved_connections=len(config.accounts))
        stack.push_async_callback(host.close)
        histories: dict[str, HistoryClient] = {}
        user_ids: dict[str, str] = {}
        listeners: list[asyncio.Task[None]] = []
        try:
            for account in config.accounts:
                client = await stack.enter_async_context(GwsClient(host, account))
                user_ids[account.username] = await client.user_id()
                (history,) = history_clients([client], config.reconcile).values()
                histories[account.username] = history
                listener = cometd_listener(client, config, history=history)
                listeners.append(asyncio.create_task(listener.run()))
            reader = HistoryReader(histories)
            wanted = list(session_ids)
            if not wanted:
                wanted = await writer.unreconciled(format_instant(since) if since else None)
            if since is not None and not session_ids:
                backfill = await history_since(reader, user_ids, since.date())
                wanted += [found for found in backfill if found not in wanted]
            return await reconcile_sessions(writer, reader, config.reconcile, wanted)
        finally:
            for task in listeners:
                task.cancel()
            await asyncio.gather(*listeners, return_exceptions=True)


def _instant(text: str) -> datetime:
    try:
        value = parse_instant(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date or time: {text!r}") from None
    return value.astimezone(UTC)


def _as_json(outcome: Outcome) -> dict[str, object]:
    return {"session_id": outcome.session_id, "status": outcome.status, "detail": outcome.detail}
