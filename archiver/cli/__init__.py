"""The ``gws-archiver`` command line: argument parsing, wiring and exit codes.

Exit status: 0 on success, 2 on bad usage or configuration, 1 on any other failure.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from archiver import __version__, lifecycle
from archiver.cli.exit_codes import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from archiver.cli.hooks import add_hooks_commands
from archiver.cli.migrate_archive import add_migrate_archive_command
from archiver.cli.read import add_read_commands
from archiver.cli.reconcile import add_reconcile_command
from archiver.cli.service import add_service_commands
from archiver.config import load_config
from archiver.daemon import Daemon
from archiver.errors import (
    ArchiverError,
    ArchiveUnreachableError,
    ConfigError,
    InstanceLockedError,
    SchemaTooNewError,
    TeamRefusedError,
)
from archiver.logs import configure_logging

# Commands served by the packages beside the product, imported only when they are run.
_HARNESSES = {
    "simulate": ("gws_simulator.cli", "run the GWS simulator alone", "run"),
    "bench": (
        "gws_bench.cli",
        "measure ingest, live freshness and storage against their ceilings",
        "cmd_bench",
    ),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command tree; ``command``'s harness (simulator, bench) is loaded if named."""
    parser = argparse.ArgumentParser(
        prog="gws-archiver",
        description="Archive Genesys Web Services SMS sessions into SQLite and stream events.",
    )
    parser.add_argument("--version", action="version", version=f"gws-archiver {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the daemon against GWS (foreground)")
    run.add_argument("--config", required=True, metavar="PATH", help="the TOML configuration")
    run.set_defaults(handler=cmd_run)

    demo = commands.add_parser(
        "demo", help="the built-in GWS simulator, the daemon and a live view, zero configuration"
    )
    demo.add_argument(
        "--archive",
        default="demo-archive.sqlite3",
        metavar="PATH",
        help="archive file, recreated on each demo (default: %(default)s)",
    )
    demo.add_argument("--agents", type=int, default=3, help="simulated agents (default: 3)")
    demo.add_argument("--seed", type=int, default=None, help="scenario seed (default: random)")
    demo.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop after this long (default: until Ctrl-C)",
    )
    demo.add_argument(
        "--port",
        type=int,
        default=0,
        help="the web view's port on 127.0.0.1 (default: a free one, printed at start)",
    )
    demo.set_defaults(handler=cmd_demo)

    for name, (module_name, help_text, handler) in _HARNESSES.items():
        harness = commands.add_parser(name, help=help_text)
        if name == command:
            module = _harness(module_name, name)
            module.add_arguments(harness)
            harness.set_defaults(handler=getattr(module, handler))

    add_read_commands(commands)
    add_hooks_commands(commands)
    add_service_commands(commands)
    add_reconcile_command(commands)
    add_migrate_archive_command(commands)
    return parser


def _harness(module_name: str, command: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        print(
            f"gws-archiver {command}: {exc}; install it with: pip install 'gws-archiver[bench]'",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_USAGE) from exc


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``gws-archiver`` and ``python -m archiver``."""
    words = list(sys.argv[1:] if argv is None else argv)
    named = next((word for word in words if not word.startswith("-")), None)
    args = build_parser(named).parse_args(words)
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        print(f"gws-archiver: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (
        InstanceLockedError,
        TeamRefusedError,
        ArchiveUnreachableError,
        SchemaTooNewError,
    ) as exc:
        print(f"gws-archiver: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ArchiverError as exc:
        print(f"gws-archiver: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def cmd_run(args: argparse.Namespace) -> int:
    """``run --config PATH``: the daemon, until SIGTERM or SIGINT."""
    config = load_config(args.config)
    configure_logging(config.log.level, config.log.format)
    return run_until_signalled(Daemon(config).run())


def cmd_demo(args: argparse.Namespace) -> int:
    """``demo``: simulator, daemon and live view in one process."""
    from archiver.cli.demo import run_demo

    configure_logging("warning", "auto")
    return run_until_signalled(
        run_demo(
            archive=args.archive,
            agents=args.agents,
            seed=args.seed,
            duration_s=args.duration,
            port=args.port,
        )
    )


def run_until_signalled(work: Coroutine[Any, Any, Any]) -> int:
    """Run ``work`` until it returns or SIGTERM/SIGINT cancels it; both exit 0."""

    async def supervise() -> None:
        task = asyncio.create_task(work)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            if not task.cancelled():
                raise
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)

    lifecycle.run(supervise())
    return EXIT_OK
