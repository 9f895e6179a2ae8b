"""Which session to read next, and when.

Per account, :class:`AccountPoller` reads the session list every ``sessions_interval_s`` and
keeps one :class:`SessionPoller` task per open session. A session poller reads its message log
from its cursor until caught up, one stored page at a time; its interval shrinks to
``min_interval_s`` while messages arrive and grows towards ``max_interval_s`` while idle. A
session that reaches a final state or leaves the list for good gets one last drain, then ends.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import structlog

from archiver.config import PollConfig
from archiver.errors import ArchiverError, NotFoundError
from archiver.events import MessageEvent
from archiver.gws.client import GwsClient, MessagePage
from archiver.gws.models import SmsSession
from archiver.store.writer import ArchiveWriter, Malformed, Page

log = structlog.get_logger()

GROWTH = 1.5


@dataclass(slots=True)
class PollStats:
    """Counters of one daemon run (exported as metrics and in the closing log line)."""

    polls: int = 0
    pages_stored: int = 0
    messages_archived: int = 0
    duplicates: int = 0
    conflicts: int = 0
    malformed: int = 0
    errors: int = 0
    sessions_ended: int = 0
    by_type: Counter[str] = field(default_factory=Counter)  # messages archived, per GWS type
    poll_results: Counter[str] = field(default_factory=Counter)  # archived, idle, error
    list_results: Counter[str] = field(default_factory=Counter)  # session lists: ok, error


class FailureState:
    """Errors become state: warn on the first failure, info on recovery, count the rest."""

    def __init__(self, event_prefix: str, **context: str) -> None:
        self.event_prefix = event_prefix
        self.context = context
        self.failures = 0
        self.last_success_at: float | None = None
        self.last_error: str | None = None

    @property
    def healthy(self) -> bool:
        """True after a success with no failure since."""
        return self.failures == 0 and self.last_success_at is not None

    def failed(self, exc: BaseException) -> None:
        """Record a failure; only the first of a run is logged."""
        self.failures += 1
        self.last_error = str(exc)
        if self.failures == 1:
            log.warning(f"{self.event_prefix}_failing", error=str(exc), **self.context)

    def succeeded(self) -> None:
        """Record a success; logged only when it ends a run of failures."""
        self.last_success_at = time.time()
        if self.failures:
            log.info(f"{self.event_prefix}_recovered", failures=self.failures, **self.context)
            self.failures = 0


class SessionPoller:
    """Reads one session's message log into the archive."""

    def __init__(
        self,
        *,
        account: str,
        client: GwsClient,
        writer: ArchiveWriter,
        config: PollConfig,
        session: SmsSession,
        next_index: int,
        stats: PollStats,
        rng: random.Random,
    ) -> None:
        self.account = account
        self.client = client
        self.writer = writer
        self.config = config
        self.session = session
        self.next_index = next_index
        self.stats = stats
        self.rng = rng
        self.interval_s = config.min_interval_s
        self.end_reason: str | None = None
        self.ended = False
        self._stored_session: SmsSession | None = None
        self._wakeup = asyncio.Event()
        self.started_at = time.time()
        self.health = FailureState("session_poll", session_id=session.id, account=account)

    def update(self, session: SmsSession) -> None:
        """The session list showed this session (perhaps changed): poll it soon if it changed."""
        if session != self.session:
            self.session = session
            self.interval_s = self.config.min_interval_s
            self._wakeup.set()
        if session.final:
            self.request_end("final_state")

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
                except ArchiverError as exc:
                    self.stats.errors += 1
                    self.stats.poll_results["error"] += 1
                    self.health.failed(exc)
                    self.interval_s = min(self.config.max_interval_s, self.interval_s * GROWTH)
                else:
                    self.health.succeeded()
                    self.stats.poll_results["archived" if stored else "idle"] += 1
                    if stored:
                        self.interval_s = self.config.min_interval_s
                    else:
                        self.interval_s = min(self.config.max_interval_s, self.interval_s * GROWTH)
                if not self.ended:
                    await self._pause()

    async def poll_once(self) -> int:
        """Read from the cursor until caught up (ending the session if asked); return stored."""
        self.stats.polls += 1
        ending = self.end_reason
        stored = 0
        while True:
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
            advances = any(m.index >= self.next_index for m in page.messages)
            caught_up = page.received < limit or not advances
            end_reason = ending if caught_up else None
            if page.messages or page.rejected or end_reason or self._session_changed():
                stored += await self._store(page, end_reason)
            if caught_up:
                break
        if ending is not None:
            self.ended = True
            self.stats.sessions_ended += 1
            log.info("session_ended", session_id=self.session.id, reason=ending)
        return stored

    def _session_changed(self) -> bool:
        return self._stored_session != self.session

    async def _store(self, page: MessagePage, end_reason: str | None) -> int:
        malformed = [Malformed(r.problem, r.raw_json) for r in page.rejected]
        for rejected in page.rejected:
            log.warning("malformed_message", session_id=self.session.id, problem=rejected.problem)
        result = await self.writer.store_page(
            Page(self.account, self.session, page.messages, malformed, end_reason)
        )
        self._stored_session = self.session
        self.next_index = result.next_index
        new_messages = len(page.messages) - result.duplicates - result.conflicts
        self.stats.pages_stored += 1
        for event in result.events:
            if isinstance(event, MessageEvent):
                self.stats.by_type[event.type] += 1
        self.stats.messages_archived += new_messages
        self.stats.duplicates += result.duplicates
        self.stats.conflicts += result.conflicts
        self.stats.malformed += len(malformed)
        return new_messages

    async def _pause(self) -> None:
        jitter = self.config.jitter
        delay = self.interval_s * self.rng.uniform(1 - jitter, 1 + jitter)
        try:
            async with asyncio.timeout(delay):
                await self._wakeup.wait()
        except TimeoutError:
            pass
        self._wakeup.clear()


class AccountPoller:
    """Keeps one SessionPoller per open session of one account."""

    def __init__(
        self,
        *,
        client: GwsClient,
        writer: ArchiveWriter,
        config: PollConfig,
        stats: PollStats,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.account = client.account.username
        self.writer = writer
        self.config = config
        self.stats = stats
        self.rng = rng or random.Random()
        self.pollers: dict[str, SessionPoller] = {}
        self._tasks: asyncio.TaskGroup | None = None
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
                except ArchiverError as exc:
                    self.stats.errors += 1
                    self.stats.list_results["error"] += 1
                    self.health.failed(exc)
                else:
                    self.stats.list_results["ok"] += 1
                    self.health.succeeded()
                await asyncio.sleep(self.config.sessions_interval_s)

    async def refresh(self) -> None:
        """Read the session list once: start new sessions, update known ones, end lost ones."""
        listing = await self.client.list_sessions()
        for rejected in listing.rejected:
            self.stats.malformed += 1
            log.warning("malformed_session", account=self.account, problem=rejected.problem)
        listed = {session.id: session for session in listing.sessions}
        for session in listing.sessions:
            poller = self.pollers.get(session.id)
            if poller is not None and not poller.ended:
                poller.update(session)
            elif poller is None or not session.final:
                await self._start(session)
        for session_id, poller in list(self.pollers.items()):
            if poller.ended:
                if session_id not in listed:
                    del self.pollers[session_id]
            elif session_id not in listed:
                await self._check_missing(poller)

    async def _start(self, session: SmsSession) -> None:
        stored = await self.writer.session_state(session.id)
        if stored is not None and stored.ended_at is not None and session.final:
            return
        self._spawn(session, stored.next_index if stored else 1)

    def _spawn(self, session: SmsSession, next_index: int) -> None:
        poller = SessionPoller(
            account=self.account,
            client=self.client,
            writer=self.writer,
            config=self.config,
            session=session,
            next_index=next_index,
            stats=self.stats,
            rng=self.rng,
        )
        self.pollers[session.id] = poller
        if session.final:
            poller.request_end("final_state")
        if self._tasks is not None:
            self._tasks.create_task(poller.run(), name=f"session-{session.id}")

    async def _check_missing(self, poller: SessionPoller) -> None:
        """A session left the list: ask GWS whether it is gone or only hidden for a while."""
        try:
            session = await self.client.get_session(poller.session.id)
        except NotFoundError:
            poller.request_end("not_found")
            return
        poller.update(session)
