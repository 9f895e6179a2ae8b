"""Team mode: every monitored agent's SMS sessions archived through one supervisor account.

The supervisor is one more viewer of the sessions it monitors: its :class:`AccountPoller` reads
its own list and the messages, as for any account. :class:`TeamMonitor` keeps that list full:

- at start it checks the supervisor's roles (a missing supervisor role stops the daemon with one
  line and exit 2), resolves the agents' user names to user ids (the contacts look-up), and sends
  ``Monitor`` (``AllChats``, silent) for each; a refusal is logged naming the agent and retried
  with backoff, the other agents go on;
- after every new HTTP session (a re-login, or a JSESSIONID that changed; monitoring ends with
  the session it was made in) it monitors every agent again;
- every ``team.check_s`` it lists each agent's active sessions (``GetAgentInteractions``): each
  one records who handled it, and one no configured account sees (it began before monitoring
  did, or monitoring was lost) is intruded into (``team.existing = "intrude"``) or recorded as a
  known gap, which Interaction History backfills when it ends;
- a session the supervisor's list shows ``Invited`` with an ``Accept`` capability is accepted;
- on exit it cancels monitoring, then leaves the sessions still in its list (both documented
  not to end them for the agent or the customer).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from archiver.accounts import SessionDirectory
from archiver.config import TeamConfig
from archiver.errors import ArchiverError, GwsStatusError, TeamRefusedError
from archiver.gws import supervision
from archiver.gws.client import GwsClient
from archiver.gws.models import SmsSession
from archiver.gws.supervision import SUPERVISOR_ROLE, Agent
from archiver.state import PollStats
from archiver.store.writer import ArchiveWriter, GapRow

log = structlog.get_logger()

REFUSALS = (3, 5)  # statusCode: the operation is forbidden, the user lacks the permission
ALREADY = 2  # statusCode "not valid for the current state": Monitor repeated while active
CHECK_CONCURRENCY = 8


@dataclass(slots=True)
class Monitored:
    """One agent's monitoring as team mode keeps it."""

    agent: Agent
    active: bool = False  # GWS accepted Monitor in the current HTTP session
    due_at: float = 0.0  # monotonic: when Monitor is (re)sent
    failures: int = 0
    detail: str | None = None  # the last refusal


class TeamMonitor:
    """Monitoring of every configured agent through the supervisor's client."""

    def __init__(
        self,
        client: GwsClient,
        config: TeamConfig,
        *,
        writer: ArchiveWriter,
        directory: SessionDirectory,
        stats: PollStats,
        grace_s: float,
    ) -> None:
        self.client = client
        self.config = config
        self.writer = writer
        self.directory = directory
        self.stats = stats
        self.grace_s = grace_s  # how long a new session may take to show in the supervisor's list
        self.agents: dict[str, Monitored] = {}
        self._wake = asyncio.Event()
        self._cookie: str | None = None
        self._suspects: dict[str, float] = {}  # session id -> when no account saw it first
        self._gaps: set[str] = set()
        self._accepted: set[str] = set()
        self._next_check = 0.0
        self.started = False
        client.on_renewed = self.renewed

    @property
    def supervisor(self) -> str:
        return self.client.account.username

    def monitored_ids(self) -> list[str]:
        """The user ids of the agents monitored (whose history the Reconciler sweeps too)."""
        return list(self.agents)

    async def start(self) -> None:
        """Check the supervisor, resolve the agents, monitor each; TeamRefusedError if none."""
        found = await supervision.roles(self.client)
        if found is not None and SUPERVISOR_ROLE not in found:
            raise TeamRefusedError(
                f"team.username {self.supervisor!r} has the GWS roles {found}, not"
                f" {SUPERVISOR_ROLE}: it cannot monitor agents (README, 'Team mode')"
            )
        agents = await self._resolve()
        if not agents:
            raise TeamRefusedError(f"team: no agent to monitor was found for {self.supervisor!r}")
        self.agents = {agent.id: Monitored(agent) for agent in agents}
        await self.writer.agent_state([(a.id, a.username) for a in agents], "pending")
        await self._monitor_due()
        refused = [m for m in self.agents.values() if m.detail is not None and not m.active]
        if refused and len(refused) == len(self.agents):
            raise TeamRefusedError(
                f"team.username {self.supervisor!r} may not monitor any of the agents:"
                f" {refused[0].detail}"
            )
        self._cookie = self.client.transport.session_cookie()
        self.started = True

    async def run(self) -> None:
        """Keep monitoring up and check coverage until cancelled, then cancel and leave.

        A start that failed on the way (GWS unreachable) is tried again here first, with
        backoff; a refusal then is logged, not fatal: the daemon's other accounts go on.
        """
        failures = 0
        while not self.started:
            try:
                await self.start()
            except ArchiverError as exc:
                failures += 1
                delay = min(self.config.retry_max_s, self.config.retry_min_s * 2 ** (failures - 1))
                log.warning("team_start_failed", supervisor=self.supervisor, error=str(exc))
                await asyncio.sleep(delay)
        try:
            while True:
                cookie = self.client.transport.session_cookie()
                if cookie is not None and self._cookie is not None and cookie != self._cookie:
                    self.renewed()
                self._cookie = cookie
                await self._monitor_due()
                if time.monotonic() >= self._next_check:
                    await self._check()
                await self._pause()
        finally:
            if self.config.cancel_on_exit:
                await asyncio.shield(self._exit())

    def renewed(self) -> None:
        """A new HTTP session: monitoring made in the old one is gone; monitor everyone again."""
        self.stats.team["renewed"] += 1
        log.info("team_session_renewed", supervisor=self.supervisor)
        for monitored in self.agents.values():
            monitored.active = False
            monitored.due_at = 0.0
        # Sessions that began meanwhile were not given to the supervisor: look soon.
        self._next_check = min(self._next_check, time.monotonic() + self.grace_s)
        self._wake.set()

    def listed(self, sessions: Sequence[SmsSession]) -> None:
        """The supervisor's list was read: accept what it was invited into."""
        if not self.config.accept_invited:
            return
        for session in sessions:
            if (
                session.state == "Invited"
                and "Accept" in session.capabilities
                and session.id not in self._accepted
            ):
                self._accepted.add(session.id)
                self.directory.spawn_task(self._accept(session.id), f"accept-{session.id}")

    async def _resolve(self) -> list[Agent]:
        config = self.config
        if config.agent_ids:
            return [Agent(agent_id, agent_id) for agent_id in config.agent_ids]
        if config.all_agents:
            everyone = await supervision.all_agents(self.client)
            return [agent for agent in everyone if agent.username != self.supervisor]
        found = await supervision.agents_named(self.client, config.agents)
        for name in config.agents:
            if name not in found:
                log.warning("team_agent_unknown", agent=name, supervisor=self.supervisor)
        return [found[name] for name in config.agents if name in found]

    async def _monitor_due(self) -> None:
        now = time.monotonic()
        for monitored in self.agents.values():
            if not monitored.active and monitored.due_at <= now:
                await self._monitor(monitored)

    async def _monitor(self, monitored: Monitored) -> None:
        agent = monitored.agent
        try:
            await supervision.monitor(self.client, agent.id, self.config.nickname)
        except GwsStatusError as exc:
            if exc.status_code == ALREADY and monitored.failures == 0:
                # GWS may refuse a repeated Monitor while the first still holds: both are fine.
                log.info("team_monitor_already", agent=agent.username, detail=str(exc))
            else:
                await self._refused(monitored, exc)
                return
        except ArchiverError as exc:
            await self._refused(monitored, exc)
            return
        if monitored.failures:
            log.info("team_monitor_recovered", agent=agent.username)
        monitored.active, monitored.failures, monitored.detail = True, 0, None
        self.stats.team["monitor"] += 1
        await self.writer.agent_state([(agent.id, agent.username)], "monitoring")

    async def _refused(self, monitored: Monitored, exc: ArchiverError) -> None:
        agent = monitored.agent
        monitored.failures += 1
        monitored.detail = str(exc)
        backoff = self.config.retry_min_s * 2 ** (monitored.failures - 1)
        delay = min(self.config.retry_max_s, backoff)
        monitored.due_at = time.monotonic() + delay
        self.stats.team["refused"] += 1
        if monitored.failures == 1:
            refused = isinstance(exc, GwsStatusError) and exc.status_code in REFUSALS
            log.warning(
                "team_monitor_refused" if refused else "team_monitor_failed",
                agent=agent.username,
                agent_id=agent.id,
                error=str(exc),
                retry_in_s=delay,
            )
        await self.writer.agent_state([(agent.id, agent.username)], "refused", str(exc))

    async def _check(self) -> None:
        """Each agent's active sessions: record who handled them; capture or report the rest."""
        self._next_check = time.monotonic() + self.config.check_s
        limit = asyncio.Semaphore(CHECK_CONCURRENCY)

        async def one(monitored: Monitored) -> tuple[Monitored, list[str]]:
            async with limit:
                try:
                    found = await supervision.agent_sessions(self.client, monitored.agent.id)
                    return monitored, found
                except ArchiverError as exc:
                    log.info("team_check_failed", agent=monitored.agent.username, error=str(exc))
                    return monitored, []

        results = await asyncio.gather(*(one(m) for m in self.agents.values()))
        handled = [(sid, monitored.agent.id) for monitored, sids in results for sid in sids]
        await self.writer.record_agents(handled, "agent_sessions")
        now = time.monotonic()
        for monitored, session_ids in results:
            for session_id in session_ids:
                poller = self.directory.live(session_id)
                if poller is not None and poller.in_view:
                    self._suspects.pop(session_id, None)
                    continue
                first = self._suspects.setdefault(session_id, now)
                if now - first >= self.grace_s and session_id not in self._gaps:
                    await self._uncaptured(monitored.agent, session_id)
                else:
                    self._next_check = min(self._next_check, now + self.grace_s)

    async def _uncaptured(self, agent: Agent, session_id: str) -> None:
        """A session of a monitored agent no configured account sees: intrude, or report it."""
        self._gaps.add(session_id)
        self._suspects.pop(session_id, None)
        if self.config.existing == "intrude":
            try:
                await supervision.intrude(self.client, agent.id, session_id)
            except ArchiverError as exc:
                detail = f"Intrude failed: {exc}"
            else:
                self.stats.team["intruded"] += 1
                log.info("team_intruded", agent=agent.username, session_id=session_id)
                await self.writer.record_gap(GapRow(session_id, agent.id, "intruded", None))
                return
        else:
            detail = "began before monitoring (or while it was lost); team.existing = 'report'"
        self.stats.team["gap"] += 1
        if await self.writer.record_gap(GapRow(session_id, agent.id, "gap", detail)):
            log.warning("team_gap", agent=agent.username, session_id=session_id, detail=detail)

    async def _accept(self, session_id: str) -> None:
        try:
            await supervision.accept(self.client, session_id)
        except ArchiverError as exc:
            log.warning("team_accept_failed", session_id=session_id, error=str(exc))
        else:
            self.stats.team["accepted"] += 1

    async def _pause(self) -> None:
        now = time.monotonic()
        due = [m.due_at for m in self.agents.values() if not m.active]
        wake_at = min([self._next_check, *due])
        try:
            async with asyncio.timeout(max(0.0, wake_at - now)):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._wake.clear()

    async def _exit(self) -> None:
        """Cancel monitoring, then leave the supervisor's sessions, within exit_timeout_s."""
        try:
            async with asyncio.timeout(self.config.exit_timeout_s):
                cancel = supervision.cancel_monitoring
                for monitored in self.agents.values():
                    if monitored.active:
                        await self._quietly("cancel", cancel, monitored.agent.id)
                listing = await self.client.list_sessions()
                for session in listing.sessions:
                    if session.state not in ("Revoked", "Completed"):
                        await self._quietly("leave", supervision.leave, session.id)
        except (TimeoutError, ArchiverError) as exc:
            log.warning("team_exit_incomplete", supervisor=self.supervisor, error=repr(exc))

    async def _quietly(
        self, what: str, operation: Callable[[GwsClient, str], Awaitable[None]], target: str
    ) -> None:
        try:
            await operation(self.client, target)
        except ArchiverError as exc:
            log.info(f"team_{what}_failed", target=target, error=str(exc))
        else:
            self.stats.team["cancelled" if what == "cancel" else "left"] += 1
