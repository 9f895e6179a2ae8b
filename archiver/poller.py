"""Reading one session's message log into the archive, through whichever account can see it.

A session may be in several configured accounts' lists, at once (a conference, a consult) or
one after another (a transfer, a pick-up from a queue). Each account's sight of it is a
:class:`View`; one :class:`SessionPoller` per session reads through one view at a time and
switches when that view goes. Its interval halves (down to ``min_interval_s``) after each poll
that found messages and grows 1.5x towards ``max_interval_s`` after each that found none.

The end of a session (README, "Sessions, views and ends"): ``Completed`` or ``Revoked`` in a
list, or a session missing from a list that GWS then answers 404 for, closes that view and
drains the session at once, ahead of routine polls. Once no view is open and the log is read as
far as any view can read it, the session *settles*:

- it ends now when its last view showed ``Completed``, or when Interaction History says the
  interaction is over (its log is then compared with the archive in the same transaction);
- otherwise it is *away* (in a queue, with an agent not configured here): nothing to read, it
  waits to come back, asking Interaction History again every ``reconcile.retry_s``, and ends
  after ``poll.away_timeout_s`` with its tail unverified.

With push mode on, GWS notifications arrive as hints: the session named is polled at once
(hints within ``debounce_s`` coalesce), and while push is healthy intervals relax to
``safety_interval_s``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from archiver.config import PollConfig, ReconcileConfig
from archiver.errors import ArchiverError, NotFoundError
from archiver.gws.client import GwsClient, MessagePage
from archiver.gws.history import HistoryUnavailable, InteractionContent
from archiver.gws.models import SmsSession
from archiver.instants import utc_now
from archiver.pacing import Pacing, PageSlots, Wakeup
from archiver.state import FailureState, PollStats
from archiver.store.writer import ArchiveWriter, HistoryCheck, Page, PageResult, ViewChange

log = structlog.get_logger()

# States in a list that mean "this account's sight of the session is over", and how it ended.
CLOSING_STATES = {"completed": "completed", "revoked": "revoked"}
HISTORY_OFF = HistoryCheck(None, detail="reconciliation is off", attempted=False)

ReadHistory = Callable[[str, tuple[str, ...]], Awaitable[InteractionContent]]


def history_check(content: InteractionContent, detail: str | None = None) -> HistoryCheck:
    """Interaction History's log of a session, to compare with the archive."""
    entries = len(content.messages) + len(content.rejected)
    return HistoryCheck(content.messages, entries=entries, detail=detail)


def closing_reason(state: str | None) -> str | None:
    """Why a view whose list shows ``state`` is over (``completed``, ``revoked``), or None."""
    return CLOSING_STATES.get((state or "").lower())


@dataclass(slots=True)
class Viewer:
    """A configured account as a session poller reads through it."""

    account: str
    client: GwsClient
    pacing: Pacing


@dataclass(slots=True)
class View:
    """One account's sight of a session, as that account's list last showed it."""

    viewer: Viewer
    state: str | None
    left: str | None = None  # why it left the account's list ('revoked', 'completed', 'gone')
    readable: bool = True  # False once GWS answered 404 through it
    recorded: bool = False  # the archive holds the view as it stands now

    @property
    def open(self) -> bool:
        """The account still has the session (whatever it may do with it)."""
        return self.left is None

    def change(self) -> ViewChange:
        """The view as the archive records it."""
        return ViewChange(self.viewer.account, self.state, self.left)


class SessionPoller:
    """Reads one session's message log into the archive, through its views."""

    def __init__(
        self,
        *,
        writer: ArchiveWriter,
        poll: PollConfig,
        session: SmsSession,
        next_index: int,
        stats: PollStats,
        rng: random.Random,
        page_slots: PageSlots,
        reconcile: ReconcileConfig | None = None,
        read_history: ReadHistory | None = None,
        elsewhere: Callable[[], frozenset[str]] = frozenset,
    ) -> None:
        self.writer = writer
        self.elsewhere = elsewhere  # the configured accounts other daemons may hold now
        self.poll = poll
        self.session = session
        self.next_index = next_index
        self.stats = stats
        self.rng = rng
        self.page_slots = page_slots
        self.reconcile = reconcile
        self.read_history = read_history
        self.views: dict[str, View] = {}
        self.interval_s = poll.min_interval_s
        self.ended = False
        self.started_at = time.time()
        self.health = FailureState("session_poll", session_id=session.id)
        self._current: View | None = None  # the view read through last
        self._stored_session: SmsSession | None = None
        self._wakeup = Wakeup()
        self._hinted_at: float | None = None  # when the oldest hint not yet polled arrived
        self._closing = False  # a view closed since the last complete read
        self._drained = False  # read to the end after every view closed
        self._last_left: str | None = None  # how the most recently closed view ended
        self._away_since: float | None = None  # monotonic: when it left every view
        self._next_history_check = 0.0

    @property
    def account(self) -> str:
        """The account read through now (or last)."""
        view = self._reader() or self._current
        return view.viewer.account if view else ""

    @property
    def pacing(self) -> Pacing:
        """The pacing of the account read through (push relaxes it per account)."""
        view = self._reader() or self._current
        return view.viewer.pacing if view else Pacing(self.poll)

    @property
    def in_view(self) -> bool:
        """Some configured account has the session in its list now."""
        return any(view.open for view in self.views.values())

    def seen(self, viewer: Viewer, session: SmsSession) -> None:
        """``viewer``'s list (or a look-up) shows the session, in some state."""
        view = self.views.get(viewer.account)
        left = closing_reason(session.state)
        if view is None or (view.left is not None and left is None):
            # A new view, or the account has the session again (a transfer back, a pick-up).
            view = self.views[viewer.account] = View(viewer, session.state)
            self.stats.views["started"] += 1
            self._away_since = None
            self._wakeup.set()
        elif view.state != session.state:
            view.state = session.state
            view.recorded = False
        view.readable = True
        if left is not None and view.left is None:
            self._close(view, left)
        if (view.open or not self.in_view) and session != self.session:
            self.session = session
            self.interval_s = self.poll.min_interval_s
            self._wakeup.set()

    def gone(self, account: str) -> None:
        """GWS answered 404 for the session through ``account``: that view is over."""
        view = self.views.get(account)
        if view is None:
            return
        view.readable = False
        if view.open:
            self._close(view, "gone")

    def drop_view(self, account: str) -> bool:
        """Forget ``account``'s view (it is polled by another daemon now); whether it had one."""
        view = self.views.pop(account, None)
        if view is not None and view is self._current:
            self._current = None
        return view is not None

    def hint(self, received_at: float) -> None:
        """A notification says this session changed: poll it now (coalescing with others)."""
        if self._hinted_at is not None or self._wakeup.is_set():
            self.stats.hints_coalesced += 1
        if self._hinted_at is None:
            self._hinted_at = received_at
        self._wakeup.set()

    def _close(self, view: View, reason: str) -> None:
        view.left = reason
        view.recorded = False
        self.stats.views[reason] += 1
        self._last_left = reason
        self._closing = True
        self._drained = False
        self._wakeup.set()
        log.info(
            "view_ended", session_id=self.session.id, account=view.viewer.account, reason=reason
        )

    def _reader(self) -> View | None:
        """The view to read through: the current one while open, else the newest open one,
        else (for the last drain) any that still answers."""
        current = self._current
        if current is not None and current.left is None and current.readable:
            return current  # the common case, asked several times per poll
        readable = [view for view in self.views.values() if view.readable]
        open_views = [view for view in readable if view.open]
        if open_views:
            return open_views[-1]
        return readable[-1] if readable else None

    async def run(self) -> None:
        """Poll until the session has ended."""
        with structlog.contextvars.bound_contextvars(session_id=self.session.id):
            while not self.ended:
                failed = False
                try:
                    stored = await self.poll_once()
                except Exception as exc:
                    # One session's trouble, of whatever kind, stays that session's.
                    if not isinstance(exc, ArchiverError):
                        log.exception("session_poll_crashed")
                    failed = True
                    self.stats.errors += 1
                    self.stats.poll_results["error"] += 1
                    self.health.failed(exc)
                    self.interval_s = self.pacing.next_interval(self.interval_s, stored=False)
                else:
                    self.health.succeeded()
                    self.stats.poll_results["archived" if stored else "idle"] += 1
                    self.interval_s = self.pacing.next_interval(self.interval_s, stored > 0)
                if self.ended:
                    return
                # Settle once a drain began after the last view closed has read to the end, or
                # once nothing can be read any more.
                drained = not failed and not self._closing
                if not self.in_view and (drained or self._reader() is None):
                    try:
                        await self._settle()
                    except ArchiverError as exc:  # the end is stored again after the pause
                        self.stats.errors += 1
                        self.health.failed(exc)
                    if self.ended:
                        return
                await self._pause(urgent=self._closing or (failed and not self.in_view))

    async def poll_once(self) -> int:
        """Read from the cursor until caught up, through a view that can still read; stored."""
        self.stats.polls += 1
        if self._hinted_at is not None:
            latency = time.monotonic() - self._hinted_at
            self._hinted_at = None
            self.stats.hint_polls += 1
            self.stats.hint_latency_s_total += latency
            self.stats.hint_latency_s_max = max(self.stats.hint_latency_s_max, latency)
        closing = self._closing
        if closing:
            self.stats.drains += 1
        stored = 0
        while (view := self._reader()) is not None:
            if view is not self._current:
                structlog.contextvars.bind_contextvars(account=view.viewer.account)
            self._current = view
            # A short page usually means "caught up", but GWS may legally answer short: a drain
            # reads on until a page brings nothing at all.
            limit = 1 if closing else view.viewer.client.page_size
            await self.page_slots.take(urgent=closing)
            try:
                page = await view.viewer.client.fetch_messages(self.session.id, self.next_index)
            except NotFoundError:
                self.gone(view.viewer.account)
                closing = True
                continue
            else:
                # A page that cannot move the cursor (all of it unusable) would repeat forever.
                advances = (page.next_index or 0) > self.next_index
                caught_up = page.received < limit or not advances
                if page.messages or page.rejected or self._unrecorded():
                    stored += await self._store(view, page)
            finally:
                self.page_slots.release()
            if self.ended:
                return stored
            if caught_up:
                if self._closing and closing:
                    self._closing = False
                    self._drained = not self.in_view
                break
        if self._reader() is None:
            # Nothing can be read any more (every view gone): no drain is pending.
            self._closing = False
            if self._unrecorded() and (view := self._current or self._any_view()) is not None:
                # The views' ends are still recorded.
                stored += await self._store(view, MessagePage([], [], 0))
        return stored

    async def _settle(self) -> None:
        """No view is open: end the session now, or wait away from every view."""
        now = time.monotonic()
        if self._away_since is None:
            self._away_since = now
            self._next_history_check = now
            if self._last_left != "completed":
                self.stats.sessions_away += 1
                log.info("session_away", session_id=self.session.id, last=self._last_left)
        tail = "drained" if self._drained else "unverified"
        expired = now - self._away_since >= self.poll.away_timeout_s
        completed = self._last_left == "completed"
        if self.read_history is None or self.reconcile is None:
            if completed or expired:
                await self._end("final_state" if completed else "out_of_sight", HISTORY_OFF, tail)
            return
        if now < self._next_history_check and not (completed or expired):
            return
        accounts = tuple(view.viewer.account for view in reversed(self.views.values()))
        try:
            content = await self.read_history(self.session.id, accounts)
        except HistoryUnavailable as exc:
            self.stats.history_checks["unavailable"] += 1
            detail = str(exc)
        else:
            if content.over:
                self.stats.history_checks["over"] += 1
                reason = "final_state" if completed else "history_over"
                await self._end(reason, history_check(content), tail)
                return
            self.stats.history_checks["in_process"] += 1
            detail = f"Interaction History shows it {content.state or 'not over'}"
        # Counted from the answer (a look-up may wait wait_s): checks are retry_s apart.
        self._next_history_check = time.monotonic() + self.reconcile.retry_s
        if completed or expired:
            retry_at = utc_now(self.reconcile.retry_s)
            check = HistoryCheck(None, detail=detail, retry_at=retry_at)
            await self._end("final_state" if completed else "out_of_sight", check, tail)

    async def _end(self, reason: str, check: HistoryCheck, tail: str) -> None:
        view = self._current or self._any_view()
        account = view.viewer.account if view else self.account
        changes = [v.change() for v in self.views.values() if not v.recorded]
        page = Page(
            account,
            self.session,
            end_reason=reason,
            views=changes,
            history=check,
            tail=tail,
            held_elsewhere=self.elsewhere(),
        )
        result = await self._store_page(page)
        if result is not None and result.handed_over:
            # Another daemon's account has it open: that daemon reads on and ends it.
            self.ended = True
            self.stats.sessions_handed_over += 1
            log.info("session_left_to_other_daemon", session_id=self.session.id)
        if not self.ended:
            self.ended = True
            self.stats.sessions_ended += 1
            self.stats.ended_by[reason] += 1
            log.info("session_ended", session_id=self.session.id, reason=reason, tail=tail)

    def _any_view(self) -> View | None:
        return next(reversed(self.views.values()), None)

    def _unrecorded(self) -> bool:
        stored = self._stored_session
        return (stored is not self.session and stored != self.session) or any(
            not view.recorded for view in self.views.values()
        )

    async def _store(self, view: View, page: MessagePage) -> int:
        changes = [v.change() for v in self.views.values() if not v.recorded]
        stored = Page(
            view.viewer.account, self.session, page.messages, page.rejected, views=changes
        )
        result = await self._store_page(stored)
        if result is None:
            return 0
        if result.malformed_new:
            for rejected in page.rejected:
                log.warning(
                    "malformed_message",
                    session_id=self.session.id,
                    problem=rejected.problem,
                    message_index=rejected.index,
                )
        new_messages = len(page.messages) - result.duplicates - result.conflicts
        self.stats.messages_archived += new_messages
        self.stats.duplicates += result.duplicates
        self.stats.conflicts += result.conflicts
        self.stats.malformed += result.malformed_new
        return new_messages

    async def _store_page(self, page: Page) -> PageResult | None:
        """Store a page; the views it carried are recorded after. None if the session is purged."""
        result = await self.writer.store_page(page)
        if result.purged:
            # Retention deleted this session: it is not archived again while GWS lists it.
            log.info("session_purged_skipped", session_id=self.session.id)
            self.ended = True
            return None
        recorded = {change.account: change for change in page.views}
        for view in self.views.values():
            if recorded.get(view.viewer.account) == view.change():
                view.recorded = True
        self._stored_session = page.session
        self.next_index = result.next_index
        self.stats.pages_stored += 1
        self.stats.count_reconciled(result.events)
        for event in result.events:
            if event.message_index is not None:
                self.stats.by_type[event.type] += 1
        return result

    async def _pause(self, *, urgent: bool) -> None:
        """Wait out the interval, or less if woken; a hinted wake waits ``debounce`` for more."""
        if urgent:
            delay = self.poll.min_interval_s
        elif not self.in_view:
            delay = self._away_wait()
        else:
            jitter = self.poll.jitter
            delay = self.interval_s * self.rng.uniform(1 - jitter, 1 + jitter)
        woken = await self._wakeup.wait(delay)
        if woken and self._hinted_at is not None and (debounce := self.pacing.debounce()) > 0:
            await asyncio.sleep(debounce)
        # Cleared only now: a hint that lands during the poll below wakes the next pause at once.
        self._wakeup.clear()

    def _away_wait(self) -> float:
        """Away from every view: until the next history check or the away timeout."""
        now = time.monotonic()
        deadline = (self._away_since or now) + self.poll.away_timeout_s
        if self.read_history is not None:
            deadline = min(deadline, self._next_history_check)
        return max(0.0, deadline - now)
