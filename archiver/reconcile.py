"""Reconciliation: the archive checked against Interaction History (UCS), the system of record.

A session is checked when it ends (:mod:`archiver.poller` asks :class:`HistoryReader` before it
stores ``SessionEnded``, so what history adds comes with message events ahead of the end). A
check that cannot be made then (history not over yet, no answer, an ``errorMessage``) stays
``pending`` and :class:`Reconciler` tries it again every ``reconcile.retry_s``, until
``reconcile.give_up_s`` after the end, when it becomes ``unchecked``. :func:`reconcile_sessions`
does the same on demand (``gws-archiver reconcile``), and backfills sessions the archive never
saw: it reads their whole log from history and archives it as an ended session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import structlog

from archiver.config import ReconcileConfig
from archiver.errors import GwsError
from archiver.gws.client import GwsClient
from archiver.gws.history import HistoryClient, HistoryUnavailable, InteractionContent
from archiver.gws.models import SmsSession
from archiver.instants import parse_instant, utc_now
from archiver.poller import history_check
from archiver.state import PollStats
from archiver.store.writer import ArchiveWriter, HistoryCheck, Page, ViewChange

log = structlog.get_logger()

BACKFILLED = "backfilled"  # the end reason of a session archived from history alone
HISTORY_VIEW = "history"  # the left_reason of a view known only from an agent's history
# How many accounts one look-up tries before it counts as unavailable (each may wait wait_s).
ACCOUNTS_PER_LOOK_UP = 2
DUE_PER_ROUND = 50


def history_clients(
    clients: Iterable[GwsClient], config: ReconcileConfig
) -> dict[str, HistoryClient]:
    """One history client per account, waiting on the configured channel for its results."""
    return {
        client.account.username: HistoryClient(client, wait_s=config.wait_s, channel=config.channel)
        for client in clients
    }


class HistoryReader:
    """Interaction History through the configured accounts: any of them may read any session."""

    def __init__(
        self,
        clients: Mapping[str, HistoryClient],
        usable: Callable[[str], bool] = lambda account: True,
    ) -> None:
        self.clients = dict(clients)
        self.usable = usable  # whether an account's results can be heard here now

    def readable(self) -> dict[str, HistoryClient]:
        """The clients of the accounts whose results can be heard here now."""
        return {account: c for account, c in self.clients.items() if self.usable(account)}

    async def content(
        self, session_id: str, prefer: Sequence[str] = (), *, tries: int = ACCOUNTS_PER_LOOK_UP
    ) -> InteractionContent:
        """The session's saved log, read through a preferred account first (``tries`` at most)."""
        clients = self.readable()
        order = [a for a in prefer if a in clients]
        order += [a for a in clients if a not in order]
        failure: HistoryUnavailable | None = None
        for account in order[:tries]:
            try:
                return await self.clients[account].content(session_id)
            except HistoryUnavailable as exc:
                failure = exc
        raise failure or HistoryUnavailable("no configured account reads Interaction History")

    async def at_end(self, session_id: str, prefer: Sequence[str]) -> InteractionContent:
        """The look-up made as a session ends: one account, so ``SessionEnded`` waits at most
        ``wait_s`` for history; what it cannot answer, the Reconciler asks again later."""
        return await self.content(session_id, prefer, tries=1)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one check of one session found."""

    session_id: str
    status: str  # verified, filled, different, pending, unchecked, backfilled
    detail: str | None = None


class Reconciler:
    """Retries the checks that could not be made when their sessions ended."""

    def __init__(
        self,
        writer: ArchiveWriter,
        reader: HistoryReader,
        config: ReconcileConfig,
        stats: PollStats,
        team: Callable[[], tuple[str, Sequence[str]]] | None = None,
    ) -> None:
        self.writer = writer
        self.reader = reader
        self.config = config
        self.stats = stats
        # Team mode: the supervisor account and the agents whose history it sweeps too.
        self.team = team
        self._user_ids: dict[str, str] = {}

    async def run(self) -> None:
        """Check what is due, until cancelled."""
        while True:
            due = await self.writer.due_reconciliations(utc_now(), DUE_PER_ROUND)
            for session_id in due:
                outcome = await check_session(self.writer, self.reader, self.config, session_id)
                if outcome.status != "pending":
                    self.stats.reconciled[outcome.status] += 1
            if len(due) < DUE_PER_ROUND:
                await asyncio.sleep(min(self.config.retry_s, 5.0))

    async def sweep_every(self, account: str) -> None:
        """Sweep ``account``'s history now and every ``sweep_s``, until cancelled (run where
        the account's CometD runs: it carries the answers)."""
        while True:
            await self.sweep(account)
            await asyncio.sleep(self.config.sweep_s)

    async def sweep(self, account: str) -> None:
        """Archive the sessions ``account``'s history has (today and yesterday) that no list
        ever showed; the team-mode supervisor's sweep covers its agents' histories too."""
        try:
            if account not in self._user_ids:
                self._user_ids[account] = await self.reader.clients[account].client.user_id()
        except GwsError as exc:
            log.info("history_sweep_failed", account=account, error=str(exc))
            return
        await self._sweep_agent(account, self._user_ids[account], own=True)
        if self.team is not None:
            supervisor, agent_ids = self.team()
            if supervisor == account:
                for agent_id in agent_ids:
                    await self._sweep_agent(account, agent_id, own=False)

    async def _sweep_agent(self, account: str, user_id: str, *, own: bool) -> None:
        """Backfill what ``user_id``'s history has and the archive not, reading as ``account``;
        ``own`` (the account's own history) records the views no list read showed, too."""
        today = datetime.now(UTC).date()
        client = self.reader.clients[account]
        try:
            found = await client.agent_history(user_id, today - timedelta(days=1), today)
        except GwsError as exc:
            log.info("history_sweep_failed", account=account, user_id=user_id, error=str(exc))
            return
        over = {summary.session_id: summary for summary in found if summary.over}
        known = await self.writer.session_states(list(over))
        missed = [session_id for session_id in over if session_id not in known]
        archived = set(known)
        for outcome in await reconcile_sessions(self.writer, self.reader, self.config, missed):
            if outcome.status == BACKFILLED:
                archived.add(outcome.session_id)
                self.stats.backfilled += 1
                log.warning("session_backfilled", session_id=outcome.session_id)
        if not own:
            # A monitored agent's history names the sessions it handled.
            await self.writer.record_agents([(sid, user_id) for sid in archived], "history")
            return
        # An account that had the session while no list read showed it (the daemon was
        # down, or the view lasted between two reads) is recorded from its history too.
        ended = [sid for sid, state in known.items() if state.ended_at is not None]
        for session_id in await self.writer.unviewed(account, ended):
            change = ViewChange(account, over[session_id].state, HISTORY_VIEW)
            state = known[session_id]
            await self.writer.store_page(Page(account, state.snapshot(), views=[change]))


async def check_session(
    writer: ArchiveWriter,
    reader: HistoryReader,
    config: ReconcileConfig,
    session_id: str,
    *,
    final: bool = False,
) -> Outcome:
    """Check one archived, ended session against history; ``final`` never leaves it pending."""
    states = await writer.session_states([session_id])
    state = states.get(session_id)
    if state is None or state.purged:
        return Outcome(session_id, "unknown", "the archive does not hold this session")
    content: InteractionContent | None = None
    try:
        content = await reader.content(session_id, prefer=(state.account,))
    except HistoryUnavailable as exc:
        detail = str(exc)
    else:
        detail = f"Interaction History shows it {content.state or 'not over'}"
    if content is not None and content.over:
        check = history_check(content)
    else:
        ended = parse_instant(state.ended_at) if state.ended_at else datetime.now(UTC)
        give_up = final or datetime.now(UTC) - ended >= timedelta(seconds=config.give_up_s)
        retry_at = None if give_up else utc_now(config.retry_s)
        check = HistoryCheck(None, detail=detail, retry_at=retry_at)
    result = await writer.store_page(Page(state.account, state.snapshot(), history=check))
    status = next(
        (e.typed().data()["status"] for e in result.events if e.type == "SessionReconciled"),
        "pending",
    )
    return Outcome(session_id, status, None if content and content.over else detail)


async def backfill_session(
    writer: ArchiveWriter, account: str, content: InteractionContent
) -> Outcome:
    """Archive a session known only to history, whole, as an ended session."""
    session = SmsSession(content.session_id, content.state, "[]", "{}")
    page = Page(
        content.owner or account,
        session,
        end_reason=BACKFILLED,
        history=history_check(content, "archived from Interaction History"),
        tail="history",
    )
    await writer.store_page(page)
    return Outcome(content.session_id, BACKFILLED)


async def reconcile_sessions(
    writer: ArchiveWriter,
    reader: HistoryReader,
    config: ReconcileConfig,
    session_ids: Iterable[str],
) -> list[Outcome]:
    """Check (or backfill) each session now; nothing is left pending."""
    outcomes = []
    for session_id in session_ids:
        known = await writer.session_states([session_id])
        if session_id in known:
            outcomes.append(await check_session(writer, reader, config, session_id, final=True))
            continue
        try:
            content = await reader.content(session_id)
        except HistoryUnavailable as exc:
            outcomes.append(Outcome(session_id, "unchecked", str(exc)))
            continue
        if not content.over:
            detail = f"not over yet ({content.state}): the daemon archives it live"
            outcomes.append(Outcome(session_id, "skipped", detail))
            continue
        outcomes.append(await backfill_session(writer, next(iter(reader.clients)), content))
    return outcomes


async def history_since(
    reader: HistoryReader, user_ids: Mapping[str, str], since: date
) -> list[str]:
    """The SMS sessions each account's agent had since ``since``, by id, oldest first."""
    found: dict[str, str] = {}
    for account, user_id in user_ids.items():
        client = reader.clients[account]
        for summary in await client.agent_history(user_id, since, None):
            found.setdefault(summary.session_id, summary.started_at or "")
    return sorted(found, key=lambda session_id: found[session_id])
