"""Which sessions exist, as the configured accounts' lists show them: one poller per session.

Per account, :class:`AccountPoller` reads the session list every ``sessions_interval_s`` and
tells the :class:`SessionDirectory` what it saw; the directory keeps exactly one
:class:`~archiver.poller.SessionPoller` per session, whatever number of accounts see it, and
gives it each account's view. A session that was in an account's list and is no longer there is
looked up through that account alone: found, its view is updated; 404, that view is gone.

An account's sessions are polled only while it is *attached* (always, with one daemon; while
this daemon holds its lease, on a shared archive): attaching resumes the archived sessions it
has open (or had last, when no configured account has them open); detaching drops its views and
stops the pollers left with none, their sessions not ended (the account's new holder resumes
them). A session no attached account has open is not ended while an account held elsewhere
has it open in the archive: that daemon reads on and ends it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import structlog

from archiver.config import ReconcileConfig
from archiver.errors import ArchiverError, NotFoundError
from archiver.gws.client import GwsClient
from archiver.gws.models import SmsSession
from archiver.gws.notifications import Hint
from archiver.pacing import DEFAULT_PAGE_SLOTS, Pacing, PageSlots
from archiver.poller import ReadHistory, SessionPoller, Viewer, closing_reason
from archiver.state import AccountReport, FailureState, PollStats
from archiver.store.writer import ArchiveWriter, Page, ViewChange

log = structlog.get_logger()


class SessionDirectory:
    """One SessionPoller per session, shared by every account; runs their tasks."""

    def __init__(
        self,
        *,
        writer: ArchiveWriter,
        stats: PollStats,
        rng: random.Random | None = None,
        page_slots: PageSlots | None = None,
        reconcile: ReconcileConfig | None = None,
        read_history: ReadHistory | None = None,
    ) -> None:
        self.writer = writer
        self.stats = stats
        self.rng = rng or random.Random()
        self.page_slots = page_slots or PageSlots(DEFAULT_PAGE_SLOTS)
        self.reconcile = reconcile
        self.read_history = read_history
        self.pollers: dict[str, SessionPoller] = {}
        self.viewers: dict[str, Viewer] = {}
        self._tasks: asyncio.TaskGroup | None = None
        self._ready = asyncio.Event()
        self._listed_by: dict[str, set[str]] = {}  # per account, what its last list showed
        self._finished: set[str] = set()  # sessions whose poller has ended, still kept
        self._late_seen: set[tuple[str, str]] = set()  # (session, account) seen after the end
        self.attached: set[str] = set()  # the accounts whose sessions are polled here now
        self._running: dict[str, asyncio.Task[None]] = {}  # per session, its poller's task

    def register(self, viewer: Viewer) -> None:
        """An account whose lists will feed the directory (before ``run``)."""
        self.viewers[viewer.account] = viewer

    async def ready(self) -> None:
        """Return once the directory runs (and accounts can attach)."""
        await self._ready.wait()

    async def run(self) -> None:
        """Resume the unfinished sessions no configured account has (or had last): they
        settle; then run the pollers until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            for state in await self.writer.open_sessions(self.viewers, None):
                self._spawn(state.snapshot(), state.next_index)
            self._ready.set()
            await asyncio.Event().wait()

    async def attach(self, viewer: Viewer) -> None:
        """Poll ``viewer``'s sessions from now on, starting with those archived and not ended."""
        await self.ready()
        self.attached.add(viewer.account)
        for state in await self.writer.open_sessions(self.viewers, viewer.account):
            poller = self.live(state.session_id)
            if poller is None:
                poller = self._spawn(state.snapshot(), state.next_index)
            elif viewer.account in poller.views:
                continue
            if viewer.account in state.views:
                poller.seen(viewer, state.snapshot())
                poller.views[viewer.account].recorded = True

    def detach(self, account: str) -> None:
        """Stop polling ``account``'s sessions here; those no attached account has stop too."""
        self.attached.discard(account)
        self._listed_by.pop(account, None)
        for session_id, poller in list(self.pollers.items()):
            if poller.drop_view(account) and not poller.views:
                task = self._running.pop(session_id, None)
                if task is not None:
                    task.cancel()
                self._finished.discard(session_id)
                del self.pollers[session_id]

    def elsewhere(self) -> frozenset[str]:
        """The configured accounts not attached here (another daemon may hold them)."""
        return frozenset(self.viewers.keys() - self.attached)

    def open_pollers(self) -> list[SessionPoller]:
        """The pollers of sessions not yet ended."""
        return [poller for poller in self.pollers.values() if not poller.ended]

    def live(self, session_id: str) -> SessionPoller | None:
        """The poller of a session being polled (not ended), if any."""
        poller = self.pollers.get(session_id)
        return poller if poller is not None and not poller.ended else None

    async def listed(self, viewer: Viewer, sessions: Sequence[SmsSession]) -> None:
        """``viewer`` lists (or looked up) these sessions: route each to its poller."""
        if viewer.account not in self.attached:
            return  # a look-up that outlived its account's detaching
        starting = []
        for session in sessions:
            poller = self.live(session.id)
            if poller is not None:
                poller.seen(viewer, session)
            elif session.id not in self.pollers or closing_reason(session.state) is None:
                starting.append(session)
            else:
                await self._late_view(viewer, session, self.pollers[session.id].session)
        if not starting:
            return
        # One writer hop for all of them: discovery must not queue up behind itself.
        stored = await self.writer.session_states([s.id for s in starting])
        for session in starting:
            state = stored.get(session.id)
            if state is not None and state.purged:
                continue
            if state is not None and state.ended_at is not None and closing_reason(session.state):
                await self._late_view(viewer, session, state.snapshot())
                continue
            # Another account may have started it while the writer answered.
            poller = self.live(session.id) or self._spawn(session, state.next_index if state else 1)
            poller.seen(viewer, session)

    async def _late_view(self, viewer: Viewer, session: SmsSession, stored: SmsSession) -> None:
        """An ended session in an account's list: that account handled it too (once a run)."""
        key = (session.id, viewer.account)
        if key in self._late_seen:
            return
        self._late_seen.add(key)
        left = closing_reason(session.state) or "ended"
        change = ViewChange(viewer.account, session.state, left)
        await self.writer.store_page(Page(viewer.account, stored, views=[change]))

    def _spawn(self, session: SmsSession, next_index: int) -> SessionPoller:
        poller = SessionPoller(
            writer=self.writer,
            poll=next(iter(self.viewers.values())).pacing.poll,
            session=session,
            next_index=next_index,
            stats=self.stats,
            rng=random.Random(self.rng.random()),
            page_slots=self.page_slots,
            reconcile=self.reconcile,
            read_history=self.read_history,
            elsewhere=self.elsewhere,
        )
        self.pollers[session.id] = poller
        self._finished.discard(session.id)
        task = self.spawn_task(self._poll(poller), f"session-{session.id}")
        if task is not None:
            self._running[session.id] = task
        return poller

    async def _poll(self, poller: SessionPoller) -> None:
        try:
            await poller.run()
        finally:
            if self.pollers.get(poller.session.id) is poller:
                self._finished.add(poller.session.id)
                self._running.pop(poller.session.id, None)

    def spawn_task(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None] | None:
        """Run ``work`` among the directory's tasks (closed unrun before ``run``)."""
        if self._tasks is not None:
            return self._tasks.create_task(work, name=name)
        work.close()
        return None

    def list_read(self, account: str, listed: set[str]) -> None:
        """``account``'s list now shows ``listed``: drop ended pollers that no list shows.

        An ended session kept while listed is not started again by the next list read.
        """
        self._listed_by[account] = listed
        lists = self._listed_by.values()
        for session_id in [sid for sid in self._finished if not any(sid in s for s in lists)]:
            self._finished.discard(session_id)
            del self.pollers[session_id]
        if self._late_seen:
            self._late_seen = {key for key in self._late_seen if any(key[0] in s for s in lists)}


class AccountPoller:
    """Reads one account's session list and feeds the directory."""

    def __init__(
        self,
        *,
        client: GwsClient,
        writer: ArchiveWriter,
        pacing: Pacing,
        stats: PollStats,
        rng: random.Random | None = None,
        page_slots: PageSlots | None = None,
        directory: SessionDirectory | None = None,
        on_listed: Callable[[Sequence[SmsSession]], None] | None = None,
    ) -> None:
        self.client = client
        self.on_listed = on_listed  # told of every list read (team mode accepts invitations)
        self.account = client.account.username
        self.writer = writer
        self.pacing = pacing
        self.stats = stats
        self.viewer = Viewer(self.account, client, pacing)
        self._owns_directory = directory is None
        self.directory = directory or SessionDirectory(
            writer=writer, stats=stats, rng=rng, page_slots=page_slots
        )
        self.directory.register(self.viewer)
        self._listed: set[str] = set()  # what the last list read showed
        self._refresh_now = asyncio.Event()
        self._looking_up: set[str] = set()  # sessions being read one by one from GWS
        self._look_again: set[str] = set()  # ... and asked for again meanwhile
        self.health = FailureState("session_list", account=self.account)

    @property
    def pollers(self) -> dict[str, SessionPoller]:
        """Every session poller of the directory this account feeds."""
        return self.directory.pollers

    async def run(self) -> None:
        """Read the session list forever (running the directory too if it is this one's)."""
        async with asyncio.TaskGroup() as tasks:
            if self._owns_directory:
                tasks.create_task(self.directory.run(), name="sessions")
            await self.directory.attach(self.viewer)
            self._listed = {
                session_id
                for session_id, poller in self.directory.pollers.items()
                if self.account in poller.views
            }
            try:
                await self._read_lists()
            finally:
                self.directory.detach(self.account)

    async def _read_lists(self) -> None:
        """Read the list every list interval (or at once when asked), until cancelled."""
        while True:
            try:
                await self.refresh()
            except Exception as exc:
                if not isinstance(exc, ArchiverError):
                    log.exception("session_list_crashed", account=self.account)
                self.stats.errors += 1
                self.stats.list_results["error"] += 1
                self.health.failed(exc)
            else:
                self.stats.list_results["ok"] += 1
                self.health.succeeded()
            try:
                async with asyncio.timeout(self.pacing.list_interval()):
                    await self._refresh_now.wait()
            except TimeoutError:
                pass
            self._refresh_now.clear()

    def report(self, now: float) -> AccountReport:
        """The account's polling at ``now``, for health and metrics."""
        mine = [p for p in self.directory.open_pollers() if p.account == self.account]
        ages = [now - (p.health.last_success_at or p.started_at) for p in mine]
        return AccountReport(self.account, self.health, len(mine), max(ages, default=0.0))

    def hint(self, hint: Hint) -> None:
        """A push notification: poll that session now; a new or changed one is also looked up."""
        if hint.session_id is None:
            self.stats.hints["all"] += 1
            self.poll_everything()
            return
        self.stats.hints["session"] += 1
        poller = self.directory.live(hint.session_id)
        if poller is not None:
            poller.hint(hint.received_at)
        if poller is None or hint.state_changed:
            # One session, not the whole list: state changes come by the hundred per second.
            self.stats.hints["lookup"] += 1
            self._look_up_soon(hint.session_id)

    def poll_everything(self) -> None:
        """Read the list and every session this account sees now (after push (re)connects)."""
        self._refresh_now.set()
        for poller in self.directory.open_pollers():
            if self.account in poller.views:
                poller.hint(time.monotonic())

    def push_up(self) -> None:
        """Push is healthy (subscribed): relax the intervals and catch up on everything."""
        self.pacing.push_healthy = True
        self.poll_everything()

    def push_down(self, reason: str) -> None:
        """Push is not healthy: adaptive polling again, starting brisk."""
        self.pacing.push_healthy = False
        log.info("push_poll_only", account=self.account, reason=reason)
        self.poll_everything()

    async def refresh(self) -> None:
        """Read the session list once; look up the sessions that left it."""
        listing = await self.client.list_sessions()
        if listing.rejected:
            # Kept, counted and logged once: the same entries come back on every list read.
            new = await self.writer.record_malformed(self.account, listing.rejected)
            self.stats.malformed += new
            if new:
                for rejected in listing.rejected:
                    log.warning("malformed_session", account=self.account, problem=rejected.problem)
        listed = {session.id for session in listing.sessions}
        await self.directory.listed(self.viewer, listing.sessions)
        if self.on_listed is not None:
            self.on_listed(listing.sessions)
        for session_id in self._listed - listed:
            poller = self.directory.live(session_id)
            view = poller.views.get(self.account) if poller is not None else None
            if view is not None and view.readable:
                self._look_up_soon(session_id)
        self._listed = listed
        self.directory.list_read(self.account, listed)

    def _look_up_soon(self, session_id: str) -> None:
        """Read one session from GWS; asked again while a look-up runs, it runs once more."""
        if session_id in self._looking_up:
            self._look_again.add(session_id)
            return
        self._looking_up.add(session_id)
        self.directory.spawn_task(self._look_up(session_id), f"look-up-{session_id}")

    async def _look_up(self, session_id: str) -> None:
        try:
            while True:
                self._look_again.discard(session_id)
                await self._look_up_once(session_id)
                if session_id not in self._look_again:
                    return
        finally:
            self._looking_up.discard(session_id)

    async def _look_up_once(self, session_id: str) -> None:
        """Start a session new to us, update a known one, close this account's view on 404."""
        try:
            session = await self.client.get_session(session_id)
        except NotFoundError:
            poller = self.directory.live(session_id)
            if poller is not None:
                poller.gone(self.account)
            return
        except Exception as exc:
            # Unknown for now: the next list read (or notification) asks again.
            log.debug("session_look_up_failed", session_id=session_id, error=repr(exc))
            return
        await self.directory.listed(self.viewer, [session])
