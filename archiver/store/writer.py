"""The archive's one writer: every page of messages stored atomically.

Each page is stored all or nothing: the session row, the new messages (``ON CONFLICT DO
NOTHING``), the cursor, and the event rows that describe them (a transactional outbox). The
writer runs its SQLite connection on one dedicated thread; pages that arrive while it is busy
go in the next ``BEGIN IMMEDIATE ... COMMIT`` together, each inside a savepoint of its own, so a
burst of one-message pages costs one commit and one hop off the event loop, not one each. The
statements themselves are in :mod:`archiver.store.ingest`; this module queues pages for them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Sequence
from functools import partial

from archiver.errors import StoreError
from archiver.events import EventRow
from archiver.gws.models import Malformed
from archiver.instants import utc_now
from archiver.lifecycle import Resource
from archiver.store.db import DEFAULT_BUSY_TIMEOUT_S, ArchiveLocation, DatabaseThread, transaction
from archiver.store.ingest import Ingest, Page, PageResult, record_malformed
from archiver.store.reconciliation import HistoryCheck, due_reconciliations, unreconciled
from archiver.store.sessions import SessionState
from archiver.store.statements import ViewChange, unviewed
from archiver.store.team import GapRow, agent_state, known_gaps, record_agents, record_gap

__all__ = [
    "ArchiveWriter",
    "EventRow",
    "GapRow",
    "HistoryCheck",
    "Malformed",
    "Page",
    "PageResult",
    "SessionState",
    "ViewChange",
]


class ArchiveWriter(Resource):
    """Owns the write connection; every method is safe to await from the event loop."""

    def __init__(
        self,
        path: ArchiveLocation,
        on_commit: Callable[[int], None] | None = None,
        *,
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
    ) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        self.on_commit = on_commit
        self._ingest = Ingest()
        self._db = DatabaseThread(
            path,
            name="archive writer",
            busy_timeout_s=busy_timeout_s,
            create=True,
            migrated=True,
            on_open=self._ingest.resume,
            failure=f"reading the archive {path} failed",
        )
        self._announced_seq = 0  # the newest seq on_commit was told about
        self._queue: list[tuple[Page, asyncio.Future[PageResult]]] = []
        self._flusher: asyncio.Task[None] | None = None  # storing the queued pages

    @property
    def last_seq(self) -> int:
        """The ``seq`` of the newest committed event."""
        return self._ingest.last_seq

    async def open(self) -> None:
        """Open (creating and migrating if needed) the archive file."""
        await self._db.open()

    async def close(self) -> None:
        """Close the connection (once the pages being stored are); safe to call twice."""
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self._db.close()

    async def store_page(self, page: Page) -> PageResult:
        """Store one page atomically and return the events it committed.

        Pages that arrive while the writer thread is busy are committed together: each page
        still stands or falls alone (a savepoint of its own); the batch shares one COMMIT. The
        batches are stored by a task of their own, so a caller cancelled while it waits (its
        session stopped) takes nobody else's pages with it.
        """
        waiter: asyncio.Future[PageResult] = asyncio.get_running_loop().create_future()
        self._queue.append((page, waiter))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="archive-writer")
        return await waiter

    async def _flush(self) -> None:
        """Store queued pages, batch after batch, until none is left."""
        batch: list[tuple[Page, asyncio.Future[PageResult]]] = []
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                pages = [page for page, _ in batch]
                outcomes = await self._db.run(self._ingest.store_pages, pages)
                for (_, waiter), outcome in zip(batch, outcomes, strict=True):
                    if waiter.done():
                        continue
                    if isinstance(outcome, StoreError):
                        waiter.set_exception(outcome)
                    else:
                        waiter.set_result(outcome)
                if self.on_commit is not None and self.last_seq > self._announced_seq:
                    self._announced_seq = self.last_seq
                    self.on_commit(self.last_seq)
        except BaseException as exc:
            # Whoever waits must not wait forever: they read their pages again later.
            for _, waiter in (*batch, *self._queue):
                if not waiter.done():
                    waiter.set_exception(StoreError(f"the page was not stored: {exc!r}"))
            self._queue = []
            if not isinstance(exc, Exception):
                raise

    async def record_malformed(self, account: str, entries: Sequence[Malformed]) -> int:
        """Keep entries of a session list that name no usable session (``session_id`` '')."""
        return await self._db.run(record_malformed, account, list(entries))

    async def session_states(self, session_ids: Sequence[str]) -> dict[str, SessionState]:
        """The stored states (copies) of those sessions that were ever archived, in one hop."""
        states = await self._db.run(self._ingest.sessions.load_many, list(session_ids))
        return {session_id: state.copy() for session_id, state in states.items()}

    async def open_sessions(
        self, configured: Collection[str], account: str | None
    ) -> list[SessionState]:
        """Sessions archived and not ended that ``account`` holds (has open, or had last when
        no ``configured`` account has them open), with their open views; ``account`` None:
        those no configured account holds."""
        return await self._db.run(self._ingest.sessions.open_sessions, list(configured), account)

    async def due_reconciliations(self, now: str, limit: int) -> list[str]:
        """Sessions whose pending check against Interaction History is due at ``now``."""
        return await self._db.run(due_reconciliations, now, limit)

    async def unreconciled(self, since: str | None = None) -> list[str]:
        """Ended sessions (since ``since``) whose check against history is not final."""
        return await self._db.run(unreconciled, since)

    async def unviewed(self, account: str, session_ids: Sequence[str]) -> list[str]:
        """Those sessions ``account`` has no recorded view of."""
        return await self._db.run(unviewed, account, list(session_ids))

    async def record_agents(self, handled: Sequence[tuple[str, str]], source: str) -> None:
        """Record that agents handled sessions ((session id, agent id) pairs), via ``source``."""
        if handled:
            work = partial(record_agents, handled=list(handled), now=utc_now(), source=source)
            await self._db.run(transaction, work)

    async def agent_state(
        self, agents: Sequence[tuple[str, str]], status: str, detail: str | None = None
    ) -> None:
        """Record team mode's monitoring status of these (agent id, user name) pairs."""
        work = partial(agent_state, agents=list(agents), status=status, detail=detail)
        await self._db.run(transaction, partial(work, now=utc_now()))

    async def record_gap(self, gap: GapRow) -> bool:
        """Record a session monitoring missed; True the first time for that session."""
        return await self._db.run(transaction, partial(record_gap, gap=gap, now=utc_now()))

    async def known_gaps(self) -> list[GapRow]:
        """Every session recorded as a gap of team mode."""
        return await self._db.run(known_gaps)
