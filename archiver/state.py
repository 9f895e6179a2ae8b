"""What the running daemon knows about itself, for the status server, metrics and the run record.

The daemon fills in one :class:`DaemonState` as it starts (its parts register as they come up);
everything else only reads it. Health and metrics are functions of this state and of the
reports its parts give, never of the parts' internals (Home Assistant's update coordinator is
the model: entities read the coordinator's data, not the integration).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import orjson
import structlog

from archiver.config import Config

if TYPE_CHECKING:
    from archiver.cluster import LeaseKeeper
    from archiver.events import EventRow
    from archiver.feed import EventFeed

log = structlog.get_logger()


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
    ended_by: Counter[str] = field(default_factory=Counter)  # sessions ended, per reason
    views: Counter[str] = field(default_factory=Counter)  # views started, and ended per reason
    drains: int = 0  # polls started by a sign of an ending, ahead of routine ones
    sessions_away: int = 0  # times a session left every view without being over
    sessions_handed_over: int = 0  # settled here, left open to another daemon's account
    history_checks: Counter[str] = field(default_factory=Counter)  # over, in_process, unavailable
    reconciled: Counter[str] = field(default_factory=Counter)  # final checks, per status
    backfilled: int = 0  # ended sessions no list showed, archived from history by the sweep
    team: Counter[str] = field(default_factory=Counter)  # team mode: monitored, refused, gaps, ...

    def count_reconciled(self, events: Iterable[EventRow]) -> None:
        """Count the outcomes of the checks against Interaction History among ``events``."""
        for event in events:
            if event.type == "SessionReconciled":
                self.reconciled[str(orjson.loads(event.payload_json)["status"])] += 1

    by_type: Counter[str] = field(default_factory=Counter)  # messages archived, per GWS type
    poll_results: Counter[str] = field(default_factory=Counter)  # archived, idle, error
    list_results: Counter[str] = field(default_factory=Counter)  # session lists: ok, error
    hints: Counter[str] = field(default_factory=Counter)  # push hints: session, list, all
    hints_coalesced: int = 0  # hints that found a poll of their session already due
    hint_polls: int = 0  # polls a hint started
    hint_latency_s_total: float = 0.0  # hint received -> its poll started, summed
    hint_latency_s_max: float = 0.0

    def fields(self) -> dict[str, object]:
        """Every counter by name (the closing log line)."""
        return {name: getattr(self, name) for name in self.__slots__}


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


@dataclass(frozen=True, slots=True)
class AccountReport:
    """One account's polling at a moment: its session list and its open sessions."""

    account: str
    list_health: FailureState
    open_sessions: int
    lag_max_s: float  # the largest time since an open session's last successful poll


@dataclass(frozen=True, slots=True)
class PushReport:
    """One account's notification listener at a moment."""

    account: str
    up: bool
    handshakes: int
    rehandshakes: Mapping[str, int]
    hints: int
    ignored: int
    failures: int


class ReportsAccount(Protocol):
    """A part that polls one account (the account poller)."""

    def report(self, now: float) -> AccountReport:
        """Its state at ``now``."""
        ...


class ReportsPush(Protocol):
    """A part that listens for one account's notifications (the push client)."""

    def report(self) -> PushReport:
        """Its state now."""
        ...


class HostCounts(Protocol):
    """The GWS host's request counters."""

    @property
    def requests(self) -> Counter[tuple[str, str]]:
        """Requests by (endpoint, status or transport error)."""
        ...

    @property
    def pauses(self) -> int:
        """Host-wide pauses after 429/503."""
        ...


@dataclass(slots=True)
class DaemonState:
    """The daemon's observable state: filled in by the daemon as it starts, read by the rest."""

    config: Config
    stats: PollStats = field(default_factory=PollStats)
    feed: EventFeed | None = None
    last_seq: Callable[[], int] | None = None  # set once the archive is open
    host: HostCounts | None = None
    accounts: list[ReportsAccount] = field(default_factory=list)
    pushes: list[ReportsPush] = field(default_factory=list)
    leases: LeaseKeeper | None = None  # a shared (PostgreSQL) archive's

    @property
    def polling(self) -> bool:
        """True once the account pollers are created (every configuration has an account)."""
        return bool(self.accounts)

    @property
    def archive_open(self) -> bool:
        """True once the archive writer is open."""
        return self.last_seq is not None

    def committed_seq(self) -> int:
        """The newest committed event's seq (0 before the archive is open)."""
        return self.last_seq() if self.last_seq is not None else 0
