"""Which session to read next, and when.

Per account, :class:`AccountPoller` reads the session list every ``sessions_interval_s`` and
keeps one :class:`SessionPoller` task per open session. A session poller reads its message log
from its cursor until caught up, one stored page at a time; its interval halves (down to
``min_interval_s``) after each poll that found messages and grows 1.5x towards
``max_interval_s`` after each that found none. A
session that reaches a final state or leaves the list for good gets one last drain, then ends.

With push mode on, GWS notifications arrive as hints (:meth:`AccountPoller.hint`): the session
named is polled at once (hints within ``debounce_s`` coalesce; a hint during a poll causes one
more poll after it), a new or changed session is read on its own, and while push is healthy
the intervals relax to ``safety_interval_s``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import structlog

from archiver.config import PollConfig, PushConfig
from archiver.errors import ArchiverError, NotFoundError
from archiver.gws.client import GwsClient, MessagePage
from archiver.gws.models import SmsSession
from archiver.gws.notifications import Hint
from archiver.state import AccountReport, FailureState, PollStats
from archiver.store.writer import ArchiveWriter, Page

log = structlog.get_logger()

GROWTH = 1.5
DEFAULT_PAGE_SLOTS = 32


@dataclass(slots=True)
class Pacing:
    """How often one account's sessions and list are read: adaptive, or relaxed under push."""

    poll: PollConfig
    push: PushConfig | None = None
    push_healthy: bool = False

    def next_interval(self, current_s: float, stored: bool) -> float:
        """The wait before a session's next poll, after one that stored (or not) something."""
        if self.push is not None and self.push_healthy:
            return self.push.safety_interval_s
        if stored:
            # Halve rather than reset: a session that talks every few seconds settles near
            # its own pace instead of paying a burst of empty polls after every message.
            return max(self.poll.min_interval_s, current_s / 2)
        return min(self.poll.max_interval_s, current_s * GROWTH)

    def list_interval(self) -> float:
        """The wait before the account's next session-list read."""
        if self.push is not None and self.push_healthy:
            return max(self.poll.sessions_interval_s, self.push.safety_interval_s)
        return self.poll.sessions_interval_s

    def debounce(self) -> float:
        """How long a hinted poll waits for more hints of the same session."""
        return self.push.debounce_s if self.push is not None else 0.0


class SessionPoller:
    """Reads one session's message log into the archive."""

    def __init__(
        self,
        *,
        account: str,
        client: GwsClient,
        writer: ArchiveWriter,
        pacing: Pacing,
        session: SmsSession,
        next_index: int,
        stats: PollStats,
        rng: random.Random,
        page_slots: asyncio.Semaphore,
    ) -> None:
        self.account = account
        self.page_slots = page_slots
        self.client = client
        self.writer = writer
        self.pacing = pacing
        self.session = session
        self.next_index = next_index
        self.stats = stats
        self.rng = rng
        self.interval_s = pacing.poll.min_interval_s
        self.end_reason: str | None = None
        self.ended = False
        self._stored_session: SmsSession | None = None
        self._wakeup = asyncio.Event()
        self._hinted_at: float | None = None  # when the oldest hint not yet polled arrived
        self.started_at = time.time()
        self.health = FailureState("session_poll", session_id=session.id, account=account)

    def update(self, session: SmsSession) -> None:
        """The session list showed this session (perhaps changed): poll it soon if it changed."""
        if session != self.session:
            self.session = session
            self.interval_s = self.pacing.poll.min_interval_s
            self._wakeup.set()
        if session.final:
            self.request_end("final_state")

    def hint(self, received_at: float) -> None:
        """A notification says this session changed: poll it now (coalescing with others)."""
        if self._hinted_at is not None or self._wakeup.is_set():
            self.stats.hints_coalesced += 1
        if self._hinted_at is None:
            self._hinted_at = received_at
        self._wakeup.set()

    def request_end(self, reason: str) -> None:
        """Drain this session one last time, then end it."""
        if self.end_reason is None:
            self.end_reason = reason
            self._wakeup.set()

    async def run(self) -> None:
        """Poll until the session has ended."""
        context = {"session_id": self.session.id, "account": self.account}
        with structlog.contextvars.bound_contextvars(**context):
            while not self.ended:
                try:
                    stored = await self.poll_once()
                except Exception as exc:
                    # One session's trouble, of whatever kind, stays that session's: it is
                    # retried at the idle pace, and every other session goes on.
                    if not isinstance(exc, ArchiverError):
                        log.exception("session_poll_crashed")
                    self.stats.errors += 1
                    self.stats.poll_results["error"] += 1
                    self.health.failed(exc)
                    self.interval_s = self.pacing.next_interval(self.interval_s, stored=False)
                else:
                    self.health.succeeded()
                    self.stats.poll_results["archived" if stored else "idle"] += 1
                    self.interval_s = self.pacing.next_interval(self.interval_s, stored > 0)
                if not self.ended:
                    await self._pause()

    async def poll_once(self) -> int:
        """Read from the cursor until caught up (ending the session if asked); return stored."""
        self.stats.polls += 1
        if self._hinted_at is not None:
            latency = time.monotonic() - self._hinted_at
            self._hinted_at = None
            self.stats.hint_polls += 1
            self.stats.hint_latency_s_total += latency
            self.stats.hint_latency_s_max = max(self.stats.hint_latency_s_max, latency)
        ending = self.end_reason
        stored = 0
        while True:
            # A slot covers the fetch and the store: parsed pages waiting for the writer are
            # bounded by the slots, not by the number of sessions.
            async with self.page_slots:
                try:
                    page = await self.client.fetch_messages(self.session.id, self.next_index)
                except NotFoundError:
                    # GWS no longer knows the session: what was readable is archived; end it.
                    self.request_end("not_found")
                    ending = self.end_reason
                    page = MessagePage([], [], 0)
                # A short page usually means "caught up", but GWS may legally answer short: the
                # last drain of an ending session reads on until a page brings nothing at all.
                limit = 1 if ending is not None else self.client.page_size
                # A page that cannot move the cursor (all of it unusable) would repeat forever.
                advances = (page.next_index or 0) > self.next_index
                caught_up = page.received < limit or not advances
                end_reason = ending if caught_up else None
                if page.messages or page.rejected or end_reason or self._session_changed():
                    stored += await self._store(page, end_reason)
                if caught_up or self.ended:
                    break
        if ending is not None and not self.ended:
            self.ended = True
            self.stats.sessions_ended += 1
            log.info("session_ended", session_id=self.session.id, reason=ending)
        return stored

    def _session_changed(self) -> bool:
        return self._stored_session != self.session

    async def _store(self, page: MessagePage, end_reason: str | None) -> int:
        result = await self.writer.store_page(
            Page(self.account, self.session, page.messages, page.rejected, end_reason)
        )
        if result.purged:
            # Retention deleted this session: it is not archived again while GWS lists it.
            log.info("session_purged_skipped", session_id=self.session.id)
            self.ended = True
            return 0
        if result.malformed_new:
            for rejected in page.rejected:
                log.warning(
                    "malformed_message",
                    session_id=self.session.id,
                    problem=rejected.problem,
                    message_index=rejected.index,
                )
        self._stored_session = self.session
        self.next_index = result.next_index
        new_messages = len(page.messages) - result.duplicates - result.conflicts
        self.stats.pages_stored += 1
        for event in result.events:
            if event.message_index is not None:
                self.stats.by_type[event.type] += 1
        self.stats.messages_archived += new_messages
        self.stats.duplicates += result.duplicates
        self.stats.conflicts += result.conflicts
        self.stats.malformed += result.malformed_new
        return new_messages

    async def _pause(self) -> None:
        """Wait out the interval, or less if woken; a hinted wake waits ``debounce`` for more."""
        jitter = self.pacing.poll.jitter
        delay = self.interval_s * self.rng.uniform(1 - jitter, 1 + jitter)
        try:
            async with asyncio.timeout(delay):
                await self._wakeup.wait()
        except TimeoutError:
            pass
        else:
            if self._hinted_at is not None and (debounce := self.pacing.debounce()) > 0:
                await asyncio.sleep(debounce)
        # Cleared only now: a hint that lands during the poll below wakes the next pause at once.
        self._wakeup.clear()


class AccountPoller:
    """Keeps one SessionPoller per open session of one account."""

    def __init__(
        self,
        *,
        client: GwsClient,
        writer: ArchiveWriter,
        pacing: Pacing,
        stats: PollStats,
        rng: random.Random | None = None,
        page_slots: asyncio.Semaphore | None = None,
    ) -> None:
        self.client = client
        # Pages being fetched or stored at once, shared by every session (of every account).
        self.page_slots = page_slots or asyncio.Semaphore(DEFAULT_PAGE_SLOTS)
        self.account = client.account.username
        self.writer = writer
        self.pacing = pacing
        self.stats = stats
        self.rng = rng or random.Random()
        self.pollers: dict[str, SessionPoller] = {}
        self._tasks: asyncio.TaskGroup | None = None
        self._refresh_now = asyncio.Event()
        self._looking_up: set[str] = set()  # sessions being read one by one from GWS
        self._look_again: set[str] = set()  # ... and asked for again meanwhile
        self.health = FailureState("session_list", account=self.account)

    async def run(self) -> None:
        """Resume archived open sessions, then read the session list forever."""
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            for state in await self.writer.open_sessions(self.account):
                self._spawn(state.snapshot(), state.next_index)
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
        open_pollers = [p for p in self.pollers.values() if not p.ended]
        ages = [now - (p.health.last_success_at or p.started_at) for p in open_pollers]
        return AccountReport(self.account, self.health, len(open_pollers), max(ages, default=0.0))

    def hint(self, hint: Hint) -> None:
        """A push notification: poll that session now; a new or changed one is also looked up."""
        if hint.session_id is None:
            self.stats.hints["all"] += 1
            self.poll_everything()
            return
        self.stats.hints["session"] += 1
        poller = self.pollers.get(hint.session_id)
        if poller is not None and not poller.ended:
            poller.hint(hint.received_at)
        if poller is None or poller.ended or hint.state_changed:
            # One session, not the whole list: state changes come by the hundred per second.
            self.stats.hints["lookup"] += 1
            self._look_up_soon(hint.session_id)

    def poll_everything(self) -> None:
        """Read the session list and every open session now (after push (re)connects)."""
        self._refresh_now.set()
        for poller in self.pollers.values():
            if not poller.ended:
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
        """Read the session list once: start new sessions, update known ones, end lost ones."""
        listing = await self.client.list_sessions()
        if listing.rejected:
            # Kept, counted and logged once: the same entries come back on every list read.
            new = await self.writer.record_malformed(self.account, listing.rejected)
            self.stats.malformed += new
            if new:
                for rejected in listing.rejected:
                    log.warning("malformed_session", account=self.account, problem=rejected.problem)
        listed = {session.id: session for session in listing.sessions}
        starting = []
        for session in listing.sessions:
            poller = self.pollers.get(session.id)
            if poller is not None and not poller.ended:
                poller.update(session)
            elif poller is None or not session.final:
                starting.append(session)
        if starting:
            await self._start(starting)
        for session_id, poller in list(self.pollers.items()):
            if poller.ended:
                if session_id not in listed:
                    del self.pollers[session_id]
            elif session_id not in listed:
                self._look_up_soon(session_id)

    async def _start(self, sessions: list[SmsSession]) -> None:
        """Start polling sessions new to this run, from their stored cursors if archived."""
        # One writer hop for all of them: discovery must not queue up behind itself.
        stored = await self.writer.session_states([s.id for s in sessions])
        for session in sessions:
            state = stored.get(session.id)
            if state is not None and state.purged:
                continue
            if state is not None and state.ended_at is not None and session.final:
                continue
            self._spawn(session, state.next_index if state else 1)

    def _spawn(self, session: SmsSession, next_index: int) -> None:
        poller = SessionPoller(
            account=self.account,
            client=self.client,
            writer=self.writer,
            pacing=self.pacing,
            session=session,
            next_index=next_index,
            stats=self.stats,
            rng=self.rng,
            page_slots=self.page_slots,
        )
        self.pollers[session.id] = poller
        if session.final:
            poller.request_end("final_state")
        self._spawn_task(poller.run(), f"session-{session.id}")

    def _spawn_task(self, work: Coroutine[Any, Any, None], name: str) -> None:
        if self._tasks is not None:
            self._tasks.create_task(work, name=name)
        else:
            work.close()

    def _look_up_soon(self, session_id: str) -> None:
        """Read one session from GWS; asked again while a look-up runs, it runs once more."""
        if session_id in self._looking_up:
            self._look_again.add(session_id)
            return
        self._looking_up.add(session_id)
        self._spawn_task(self._look_up(session_id), f"look-up-{session_id}")

    async def _look_up(self, session_id: str) -> None:
        """Start a session new to us, update a known one, end one GWS no longer knows."""
        try:
            while True:
                self._look_again.discard(session_id)
                await self._look_up_once(session_id)
                if session_id not in self._look_again:
                    return
        finally:
            self._looking_up.discard(session_id)

    async def _look_up_once(self, session_id: str) -> None:
        poller = self.pollers.get(session_id)
        try:
            session = await self.client.get_session(session_id)
        except NotFoundError:
            if poller is not None and not poller.ended:
                poller.request_end("not_found")
            return
        except Exception as exc:
            # Unknown for now: the next list read (or notification) asks again.
            log.debug("session_look_up_failed", session_id=session_id, error=repr(exc))
            return
        if poller is not None and not poller.ended:
            poller.update(session)
        elif not session.final or poller is None:
            await self._start([session])
