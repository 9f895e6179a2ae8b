"""``gws-archiver demo``: the simulator, the daemon and a live view of events, in one process."""

from __future__ import annotations

import asyncio
import random
import shutil
import sys
from contextlib import suppress
from pathlib import Path
from typing import TextIO

from archiver.config import (
    Account,
    ArchiveConfig,
    Config,
    GwsConfig,
    PollConfig,
    Secret,
    ServerConfig,
)
from archiver.daemon import Daemon
from archiver.errors import ArchiverError
from archiver.events import (
    Event,
    MessageEvent,
    SessionEnded,
    SessionEvent,
    SessionReconciled,
    SessionUpdated,
    ViewEnded,
)
from gws_simulator import Scenario, Simulator, SimulatorOptions

DEMO_PASSWORD = "password"
_DIM, _BOLD, _RESET = "\033[2m", "\033[1m", "\033[0m"
_QUIET_TYPES = frozenset({"TypingStarted", "TypingStopped"})


def demo_config(base_url: str, agents: int, archive: Path, port: int = 0) -> Config:
    """The daemon's configuration for the demo: every simulated agent, brisk polling, and the
    web view on loopback (``port`` 0: a free one)."""
    accounts = tuple(
        Account(username=f"agent{n}", password=Secret(DEMO_PASSWORD)) for n in range(1, agents + 1)
    )
    return Config(
        gws=GwsConfig(base_url=base_url, accounts=accounts),
        poll=PollConfig(min_interval_s=0.3, max_interval_s=2.0, sessions_interval_s=1.0),
        archive=ArchiveConfig(path=archive),
        server=ServerConfig(listen=f"127.0.0.1:{port}"),
        source="<demo>",
    )


def command_prefix() -> str:
    """How to run gws-archiver again from here when it is not on PATH (say, from make demo)."""
    script = Path(sys.argv[0])
    return str(script) if script.name == "gws-archiver" else f"{sys.executable} -m archiver"


def remove_archive(path: Path) -> None:
    """Delete an archive file with its WAL and shared-memory companions."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


class LiveView:
    """Prints one readable line per event: time, session, account, who, type, text."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.color = out.isatty()
        self.messages = 0
        self.sessions: set[str] = set()

    def header(self) -> None:
        """The column titles."""
        self._print(
            f"{'time':<12} {'session':<16} {'account':<8} {'who':<22} {'type':<19} text", _BOLD
        )

    def announce(self, words: str) -> None:
        """A line of the demo's own among the events (the web view's address)."""
        self._print(words, _BOLD)

    def show(self, event: Event) -> None:
        """Print ``event`` as one line."""
        self.sessions.add(event.session_id)
        clock = event.occurred_at[11:23]
        if isinstance(event, MessageEvent):
            self.messages += 1
            who = " ".join(filter(None, (event.from_type, event.from_nickname)))
            words = event.text or event.url or ""
            if event.visibility == "Agents":
                words = f"[agents only] {words}"
            style = _DIM if event.type in _QUIET_TYPES else ""
            account = event.account
        elif isinstance(event, SessionEvent):
            who, style, account = "", _BOLD, event.account
            words = f"state {event.state}"
            if isinstance(event, SessionUpdated):
                words = f"{', '.join(event.changed)} changed; {words}"
            elif isinstance(event, SessionEnded):
                words += f" ({event.reason})"
            elif isinstance(event, ViewEnded):
                words += f" ({event.reason}: {event.account} no longer sees it)"
            elif isinstance(event, SessionReconciled):
                words = f"checked against Interaction History: {event.status}"
        else:
            who, style, account, words = "", "", "", ""
        line = f"{clock:<12} {event.session_id:<16} {account:<8} {who[:22]:<22} {event.type:<19} "
        self._print(line + words.replace("\n", " "), style)

    def _print(self, line: str, style: str = "") -> None:
        if self.color and style:
            line = f"{style}{line}{_RESET}"
        print(line, file=self.out, flush=True)


async def run_demo(
    *,
    archive: str,
    agents: int,
    seed: int | None,
    duration_s: float | None,
    out: TextIO | None = None,
    port: int = 0,
) -> None:
    """Run the demo until cancelled (Ctrl-C) or for ``duration_s`` seconds; the web view
    listens on 127.0.0.1:``port`` (0: a free port) and its live page's address is printed."""
    out = out or sys.stdout
    path = Path(archive)
    await asyncio.to_thread(remove_archive, path)
    # Some conversations move as in a contact centre: transferred, conferenced, consulted.
    scenario = Scenario(
        sessions=None,
        concurrent_per_agent=2,
        messages=(8, 20),
        interval_s=1.5,
        transfer_share=0.15,
        conference_share=0.1,
        consult_share=0.1,
    )
    options = SimulatorOptions(
        agents=agents, seed=seed if seed is not None else random.randrange(2**31), scenario=scenario
    )
    view = LiveView(out)
    async with Simulator(options) as sim:
        daemon = Daemon(demo_config(sim.base_url, agents, path, port))
        daemon.subscribe(view.show)
        print(
            f"GWS simulator at {sim.base_url} with agents agent1..agent{agents}; "
            f"archiving into {path}. Ctrl-C stops.",
            file=out,
            flush=True,
        )
        view.header()
        try:
            with suppress(TimeoutError):
                async with asyncio.timeout(duration_s):
                    await _run_announced(daemon, view)
        finally:
            program = "gws-archiver" if shutil.which("gws-archiver") else command_prefix()
            print(
                f"\n{view.messages} messages in {len(view.sessions)} sessions archived. Try:\n"
                f"  {program} sessions --archive {path}\n"
                f"  {program} transcript --archive {path} SESSION_ID",
                file=out,
                flush=True,
            )


async def _run_announced(daemon: Daemon, view: LiveView) -> None:
    """Run the daemon; once its server listens, print the live page's address."""
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(daemon.run(), name="daemon")
            await daemon.started()
            assert daemon.server is not None
            view.announce(f"Watch the conversations live at {daemon.server.url}/live")
    except* ArchiverError as failed:
        raise failed.exceptions[0] from None  # one line from the CLI, as without the group
