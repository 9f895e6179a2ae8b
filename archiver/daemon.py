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
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from archiver import __version__
from archiver.accounts import AccountPoller, SessionDirectory
from archiver.cluster import (
    ACCOUNT_LEASE_PREFIX,
    HOOK_LEASE_PREFIX,
    MAINTENANCE_LEASE,
    Hold,
    LeaseKeeper,
    Work,
    run_now,
)
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
            hooks = await stack.enter_async_context(
                HookDispatcher(
                    config.archive.location,
                    feed,
                    config.hooks,
                    source=config.source,
                    busy_timeout_s=config.archive.busy_timeout_s,
                )
            )
            keeper = None
            location = config.archive.location
            if not isinstance(location, Path):
                # Several daemons may share this archive: each piece of work under its lease.
                names = self._lease_names([s.hook.name for s in hooks.subscribers])
                keeper = await stack.enter_async_context(
                    LeaseKeeper(
                        location, names, lease_s=config.archive.lease_s,
                        on_committed=feed.committed,
                    )
                )  # fmt: skip
                self.state.leases = keeper
                log.info("daemon_joined", daemon=keeper.daemon_id, archive=str(location))
            await self._archive(stack, writer, feed, hooks, keeper)

    def _lease_names(self, subscribers: Sequence[str]) -> list[str]:
        """The leases of the work a shared archive divides between its daemons."""
        config = self.config
        names = [ACCOUNT_LEASE_PREFIX + account.username for account in config.accounts]
        names += [HOOK_LEASE_PREFIX + name for name in subscribers]
        if config.reconcile.enabled or config.archive.retain_days is not None:
            names.append(MAINTENANCE_LEASE)
        return names

    async def _archive(
        self,
        stack: AsyncExitStack,
        writer: ArchiveWriter,
        feed: EventFeed,
        hooks: HookDispatcher,
        keeper: LeaseKeeper | None,
    ) -> None:
        """Log in, poll, deliver hooks and keep the run's record, until cancelled; each piece
        of work while ``keeper`` holds its lease (always, without one)."""
        config = self.config
        listening = config.push.enabled or config.reconcile.enabled
        host = GwsHost(config.gws, reserved_connections=len(config.accounts) if listening else 0)
        self.state.host = host
        stack.push_async_callback(host.close)
        clients = []
        for account in config.accounts:
            clients.append(await stack.enter_async_context(GwsClient(host, account)))
        push = config.push if config.push.enabled else None
        reconcile = config.reconcile if config.reconcile.enabled else None
        histories = history_clients(clients, reconcile) if reconcile else {}
        history = None
        if reconcile is not None:
            history = HistoryReader(
                histories,
                usable=lambda a: keeper is None or keeper.holds(ACCOUNT_LEASE_PREFIX + a),
            )
        directory = self.directory = SessionDirectory(
            writer=writer,
            stats=self.stats,
            rng=random.Random(self._rng.random()),
            page_slots=PageSlots(SLOTS_PER_CONNECTION * config.gws.max_concurrent_requests),
            reconcile=reconcile,
            read_history=history.at_end if history is not None else None,
        )
        team = self._team(clients[-1], writer, directory) if config.team else None
        if team is not None and keeper is None:
            await _start_team(team)  # refused: one line and exit 2, before anything runs
        reconciler = None
        if history is not None:
            sweep_team = (lambda: (team.supervisor, team.monitored_ids())) if team else None
            reconciler = Reconciler(writer, history, config.reconcile, self.stats, team=sweep_team)
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
        hold: Hold = keeper.run_held if keeper is not None else run_now
        try:
            async with asyncio.TaskGroup() as tasks:
                if keeper is not None:
                    tasks.create_task(keeper.run(), name="leases")
                for sub in self._subscriptions:
                    tasks.create_task(
                        feed.subscribe(sub.handler, types=sub.types, session_id=sub.session_id)
                    )
                tasks.create_task(directory.run(), name="sessions")
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
                for poller in self.accounts:
                    listener = None
                    if push is not None or reconcile is not None:
                        listener = cometd_listener(
                            poller.client,
                            config,
                            account=poller,
                            history=histories.get(poller.account),
                        )
                    supervising = team if poller is self.accounts[-1] else None
                    work = partial(self._account, poller, listener, supervising, reconciler)
                    lease = ACCOUNT_LEASE_PREFIX + poller.account
                    tasks.create_task(hold(lease, work), name=lease)
                tasks.create_task(hooks.run(hold), name="hooks")
                maintenance = self._maintenance(reconciler)
                if maintenance is not None:
                    tasks.create_task(hold(MAINTENANCE_LEASE, maintenance), name="maintenance")
                self._started.set()
        except* TeamRefusedError as refused:
            raise _first(refused) from None
        finally:
            log.info("daemon_stopped", **self.stats.fields())

    async def _account(
        self,
        poller: AccountPoller,
        listener: PushClient | None,
        team: TeamMonitor | None,
        reconciler: Reconciler | None,
    ) -> None:
        """One account's work: its lists and sessions, its CometD, its history sweep and (the
        supervisor's) the team; what it shows is current only while it runs."""
        if team is not None and not team.started:
            await _start_team(team)
        self.state.accounts.append(poller)
        if listener is not None:
            self.pushes.append(listener)
            self.state.pushes.append(listener)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(poller.run(), name=f"account-{poller.account}")
                if listener is not None:
                    tasks.create_task(listener.run(), name=f"push-{poller.account}")
                if team is not None:
                    tasks.create_task(team.run(), name="team")
                if reconciler is not None:
                    tasks.create_task(reconciler.sweep_every(poller.account), name="sweep")
        finally:
            self.state.accounts.remove(poller)
            if listener is not None:
                self.pushes.remove(listener)
                self.state.pushes.remove(listener)

    def _maintenance(self, reconciler: Reconciler | None) -> Work | None:
        """Retention and the reconciler's due checks, as one piece of work (None when neither
        is on)."""
        config = self.config
        jobs: list[Work] = []
        if reconciler is not None:
            jobs.append(reconciler.run)
        if config.archive.retain_days is not None:
            jobs.append(partial(self._retain, config.archive.retain_days))
        if not jobs:
            return None

        async def work() -> None:
            async with asyncio.TaskGroup() as tasks:
                for job in jobs:
                    tasks.create_task(job())

        return work

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


async def _start_team(team: TeamMonitor) -> None:
    """Start team mode; a refusal is fatal, GWS not answering is tried again by ``team.run``."""
    try:
        await team.start()
    except TeamRefusedError:
        raise
    except ArchiverError as exc:
        log.warning("team_start_failed", supervisor=team.supervisor, error=str(exc))


def _first(group: BaseExceptionGroup[TeamRefusedError]) -> BaseException:
    """The first exception of a (nested) group."""
    found: BaseException = group
    while isinstance(found, BaseExceptionGroup):
        found = found.exceptions[0]
    return found


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
