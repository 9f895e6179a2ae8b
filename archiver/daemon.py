"""The daemon: wires config, GWS clients, pollers, the archive writer and the event feed.

It fills in one :class:`~archiver.state.DaemonState` as its parts come up; the status server
and the run record read that state, never the daemon.

Lifetimes are composed with an AsyncExitStack and every task belongs to one TaskGroup; the
daemon stops by cancellation (the entry point turns SIGTERM/SIGINT into it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from archiver import __version__
from archiver.accounts import AccountPoller, SessionDirectory
from archiver.cluster import LeaseKeeper
from archiver.config import Config
from archiver.config_dump import config_digest
from archiver.errors import ArchiverError, TeamRefusedError
from archiver.feed import EventFeed, EventHandler
from archiver.gws.client import GwsClient
from archiver.gws.history import HistoryClient
from archiver.gws.push import PushClient
from archiver.gws.transport import GwsHost
from archiver.hooks.dispatcher import HookDispatcher
from archiver.instance_lock import InstanceLock
from archiver.pacing import SLOTS_PER_CONNECTION, Pacing, PageSlots
from archiver.reconcile import HistoryReader, Reconciler, history_clients
from archiver.state import DaemonState, FailureState
from archiver.store.reader import ArchiveReader
from archiver.store.retention import purge_expired
from archiver.store.runs import RunRecorder
from archiver.store.writer import ArchiveWriter
from archiver.team import TeamMonitor

if TYPE_CHECKING:
    from archiver.server import StatusServer

log = structlog.get_logger()

# The one lease of a shared (PostgreSQL) archive: its holder archives, the others stand by.
ARCHIVE_LEASE = "archive"


@dataclass(frozen=True, slots=True)
class Subscription:
    """An in-process subscriber: a callback and the events it wants."""

    handler: EventHandler
    types: Sequence[str] = ()
    session_id: str | None = None


class Daemon:
    """One archiver process: every configured account, one archive."""

    def __init__(self, config: Config, *, seed: int | None = None) -> None:
        self.config = config
        self.state = DaemonState(config)
        self.stats = self.state.stats
        self.accounts: list[AccountPoller] = []
        self.pushes: list[PushClient] = []
        self.server: StatusServer | None = None
        self.team: TeamMonitor | None = None
        self.directory: SessionDirectory | None = None
        self._subscriptions: list[Subscription] = []
        self._rng = random.Random(seed)
        self._started = asyncio.Event()

    def subscribe(
        self, handler: EventHandler, *, types: Sequence[str] = (), session_id: str | None = None
    ) -> None:
        """Have ``handler`` called for every event committed after start (before ``run``)."""
        self._subscriptions.append(Subscription(handler, tuple(types), session_id))

    async def started(self) -> None:
        """Return once the archive is open and polling has begun."""
        await self._started.wait()

    async def run(self) -> None:
        """Archive until cancelled."""
        config = self.config
        async with AsyncExitStack() as stack:
            if isinstance(config.archive.location, Path):
                await stack.enter_async_context(InstanceLock(config.archive.location))
            writer = await stack.enter_async_context(
                ArchiveWriter(config.archive.location, busy_timeout_s=config.archive.busy_timeout_s)
            )
            self.state.last_seq = lambda: writer.last_seq
            reader = await stack.enter_async_context(ArchiveReader(config.archive.location))
            feed = EventFeed(reader, writer.last_seq)
            writer.on_commit = feed.committed
            self.state.feed = feed
            if config.server.listen is not None:
                # Imported only when configured: the server is the product's one aiohttp.web user.
                from archiver.server import StatusServer

                self.server = await stack.enter_async_context(
                    StatusServer(self.state, config.server)
                )
            location = config.archive.location
            if isinstance(location, Path):
                await self._archive(writer, feed)
                return
            # Several daemons may share this archive: archive while holding its lease.
            keeper = await stack.enter_async_context(
                LeaseKeeper(
                    location, [ARCHIVE_LEASE], lease_s=config.archive.lease_s,
                    on_committed=feed.committed,
                )
            )  # fmt: skip
            self.state.leases = keeper
            log.info("daemon_standing_by", daemon=keeper.daemon_id, archive=str(location))
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(keeper.run(), name="leases")
                tasks.create_task(
                    keeper.run_held(ARCHIVE_LEASE, lambda: self._archive(writer, feed)),
                    name="archive",
                )

    async def _archive(self, writer: ArchiveWriter, feed: EventFeed) -> None:
        """Log in, poll, deliver hooks and keep the run's record, until cancelled."""
        config = self.config
        async with AsyncExitStack() as stack:
            hooks = await stack.enter_async_context(
                HookDispatcher(
                    config.archive.location,
                    feed,
                    config.hooks,
                    source=config.source,
                    busy_timeout_s=config.archive.busy_timeout_s,
                )
            )
            listening = config.push.enabled or config.reconcile.enabled
            held = len(config.accounts) if listening else 0
            host = GwsHost(config.gws, reserved_connections=held)
            self.state.host = host
            stack.push_async_callback(host.close)
            clients = []
            for account in config.accounts:
                clients.append(await stack.enter_async_context(GwsClient(host, account)))
            push = config.push if config.push.enabled else None
            reconcile = config.reconcile if config.reconcile.enabled else None
            histories = history_clients(clients, reconcile) if reconcile else {}
            history = HistoryReader(histories) if reconcile is not None else None
            directory = self.directory = SessionDirectory(
                writer=writer,
                stats=self.stats,
                rng=random.Random(self._rng.random()),
                page_slots=PageSlots(SLOTS_PER_CONNECTION * config.gws.max_concurrent_requests),
                reconcile=reconcile,
                read_history=history.at_end if history is not None else None,
            )
            team = self._team(clients[-1], writer, directory) if config.team else None
            if team is not None:
                try:
                    await team.start()
                except TeamRefusedError:
                    raise
                except ArchiverError as exc:  # GWS not answering yet: team.run tries again
                    log.warning("team_start_failed", supervisor=team.supervisor, error=str(exc))
            await stack.enter_async_context(
                RunRecorder(
                    config.archive.location,
                    version=__version__,
                    config_hash=config_digest(config),
                    totals=self.stats,
                    last_seq=lambda: writer.last_seq,
                    busy_timeout_s=config.archive.busy_timeout_s,
                )
            )
            log.info(
                "daemon_started",
                version=__version__,
                archive=str(config.archive.location),
                accounts=[client.account.username for client in clients],
                base_url=config.gws.base_url,
            )
            try:
                async with asyncio.TaskGroup() as tasks:
                    for sub in self._subscriptions:
                        tasks.create_task(
                            feed.subscribe(sub.handler, types=sub.types, session_id=sub.session_id)
                        )
                    self.accounts = [
                        AccountPoller(
                            client=client,
                            writer=writer,
                            pacing=Pacing(config.poll, push),
                            stats=self.stats,
                            directory=directory,
                            on_listed=team.listed if team and client is clients[-1] else None,
                        )
                        for client in clients
                    ]
                    if team is not None:
                        tasks.create_task(team.run(), name="team")
                    self.state.accounts.extend(self.accounts)
                    tasks.create_task(directory.run(), name="sessions")
                    for poller in self.accounts:
                        tasks.create_task(poller.run(), name=f"account-{poller.account}")
                        if push is not None or reconcile is not None:
                            listener = cometd_listener(
                                poller.client,
                                config,
                                account=poller,
                                history=histories.get(poller.account),
                            )
                            self.pushes.append(listener)
                            self.state.pushes.append(self.pushes[-1])
                            tasks.create_task(self.pushes[-1].run(), name=f"push-{poller.account}")
                    if history is not None and reconcile is not None:
                        sweep_team = (
                            (lambda: (team.supervisor, team.monitored_ids())) if team else None
                        )
                        reconciler = Reconciler(
                            writer, history, reconcile, self.stats, team=sweep_team
                        )
                        tasks.create_task(reconciler.run(), name="reconciler")
                    tasks.create_task(hooks.run(), name="hooks")
                    if config.archive.retain_days is not None:
                        retention = self._retain(config.archive.retain_days)
                        tasks.create_task(retention, name="retention")
                    self._started.set()
            finally:
                # A lost lease ends this work, not the daemon: what it showed is not current.
                self.state.accounts.clear()
                self.state.pushes.clear()
                log.info("daemon_stopped", **self.stats.fields())

    def _team(
        self, supervisor: GwsClient, writer: ArchiveWriter, directory: SessionDirectory
    ) -> TeamMonitor:
        """Team mode's monitor on the supervisor's client (the last one)."""
        config = self.config
        assert config.team is not None
        # A session the supervisor was given shows in its list within a list read or two.
        grace_s = 2 * Pacing(config.poll).list_interval() + 1.0
        self.team = TeamMonitor(
            supervisor,
            config.team,
            writer=writer,
            directory=directory,
            stats=self.stats,
            grace_s=grace_s,
        )
        return self.team

    async def _retain(self, retain_days: float) -> None:
        """Purge expired sessions now and every ``retention_interval_s``; failures are retried."""
        archive = self.config.archive
        health = FailureState("retention")
        while True:
            try:
                result = await purge_expired(
                    archive.location, retain_days, busy_timeout_s=archive.busy_timeout_s
                )
            except Exception as exc:  # retried next round, whatever it was
                health.failed(exc)
            else:
                health.succeeded()
                if result.sessions:
                    log.info("retention_purged", **dataclasses.asdict(result))
            await asyncio.sleep(archive.retention_interval_s)


def cometd_listener(
    client: GwsClient,
    config: Config,
    *,
    account: AccountPoller | None = None,
    history: HistoryClient | None = None,
) -> PushClient:
    """One account's CometD listener: push hints for its poller (``account``, in push mode) and
    the Interaction History results its history client waits for (``history``)."""
    push = account if config.push.enabled else None
    channels = list(config.push.channels) if push is not None else []
    if history is not None:
        channels.append(config.reconcile.channel)
    listener = PushClient(
        client,
        dataclasses.replace(config.push, channels=tuple(channels)),
        on_hint=push.hint if push is not None else _ignore,
        on_subscribed=push.push_up if push is not None else _nothing,
        on_down=push.push_down if push is not None else _ignore,
        on_history=history.notification if history is not None else None,
    )
    if history is not None:
        history.listen(listener)
    return listener


def _ignore(_: object) -> None:
    """A listener callback for what history-only CometD does not act on."""


def _nothing() -> None:
    """A listener callback for what history-only CometD does not act on."""
