"""Prometheus metrics, read from the daemon's own state at scrape time.

The hot path keeps plain counters (PollStats, GwsHost.requests, the writer's last seq), all
reached through :class:`archiver.state.DaemonState`; the :class:`DaemonCollector` turns them
into metric families only when ``/metrics`` is scraped, so polling never pays for metrics. What
needs the archive file (its size, and each hook subscriber's delivery state through
:class:`DeliveryStore`) is read off the event loop before the collector runs. The age of the
oldest undelivered event is not exported yet: the delivery store's status does not carry it.

Cursor lag is, per open session, the seconds since its last successful poll (since it started,
if none succeeded yet): how stale its cursor may be. An idle session polled every
``poll.max_interval_s`` normally shows up to that much; more means polling cannot keep up or GWS
keeps failing.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import structlog
from prometheus_client import CollectorRegistry, GCCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)

from archiver import __version__
from archiver.errors import StoreError
from archiver.state import DaemonState
from archiver.store.db import ArchiveLocation
from archiver.store.deliveries import DeliveryStore, SubscriberStatus
from archiver.store.vitals import archive_bytes

log = structlog.get_logger()

PREFIX = "gws_archiver_"
DELIVERY_READ_TIMEOUT_S = 1.0  # a scrape skips delivery state rather than wait on a busy archive


@dataclass(frozen=True, slots=True)
class ArchiveVitals:
    """What the metrics need from the archive file, read off the event loop."""

    file_bytes: dict[str, int]
    subscribers: list[SubscriberStatus]


class DaemonCollector:
    """A prometheus-client collector over one daemon's state at the moment of the scrape."""

    def __init__(
        self, state: DaemonState, vitals: ArchiveVitals, *, sse_clients: int, now: float
    ) -> None:
        self.state = state
        self.vitals = vitals
        self.sse_clients = sse_clients
        self.now = now

    def collect(self) -> Iterable[Metric]:
        """Every gws_archiver_* family."""
        yield from self._polling()
        yield from self._hints()
        yield from self._push()
        yield from self._gws()
        yield from self._sessions()
        yield from self._archive()
        yield from self._deliveries()
        yield from self._leases()

    def _leases(self) -> Iterator[Metric]:
        """A shared archive's: what this daemon holds, and leases lost since start."""
        keeper = self.state.leases
        if keeper is None:
            return
        held = GaugeMetricFamily(
            f"{PREFIX}lease_held",
            "1 for each lease of the shared archive this daemon holds (0: another does).",
            labels=["lease", "daemon"],
        )
        for name in keeper.names:
            held.add_metric([name, keeper.daemon_id], 1 if keeper.holds(name) else 0)
        yield held
        yield CounterMetricFamily(
            f"{PREFIX}leases_lost", "Leases lost because renewing them failed.", value=keeper.lost
        )

    def _polling(self) -> Iterator[Metric]:
        stats = self.state.stats
        info = GaugeMetricFamily(f"{PREFIX}info", "The running version.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        yield _counter_by(
            "polls", "Session polls by result: archived, idle, error.", "result", stats.poll_results
        )
        yield _counter_by(
            "session_list_reads",
            "Session-list reads by result: ok, error.",
            "result",
            stats.list_results,
        )
        yield _counter_by(
            "messages_archived",
            "New messages archived, by GWS message type.",
            "type",
            stats.by_type,
        )
        for name, help_text, value in (
            ("pages_stored", "Pages stored, one transaction each.", stats.pages_stored),
            ("duplicates", "Messages read again with the same content.", stats.duplicates),
            ("conflicts", "Messages read again with different content.", stats.conflicts),
            (
                "malformed",
                "Messages or sessions GWS sent that could not be parsed.",
                stats.malformed,
            ),
            ("sessions_ended", "Sessions drained and ended.", stats.sessions_ended),
            ("drains", "Polls a sign of an ending started, ahead of routine ones.", stats.drains),
            (
                "sessions_backfilled",
                "Ended sessions no list ever showed, archived from Interaction History.",
                stats.backfilled,
            ),
            (
                "sessions_away",
                "Times a session left every configured account's list without being over.",
                stats.sessions_away,
            ),
            (
                "sessions_handed_over",
                "Sessions left to another daemon whose account still had them open.",
                stats.sessions_handed_over,
            ),
        ):
            yield CounterMetricFamily(f"{PREFIX}{name}", help_text, value=value)
        yield _counter_by(
            "sessions_ended_by_reason",
            "Sessions ended, by reason: final_state, history_over, out_of_sight, not_found.",
            "reason",
            stats.ended_by,
        )
        yield _counter_by(
            "views",
            "Accounts' views of sessions: started, and ended by revoked, completed, gone.",
            "change",
            stats.views,
        )
        yield _counter_by(
            "sessions_reconciled",
            "Ended sessions checked against Interaction History, by outcome: verified, filled,"
            " different, unchecked.",
            "status",
            stats.reconciled,
        )
        yield _counter_by(
            "team",
            "Team mode: monitor (accepted by GWS), refused, renewed (monitoring again after a new"
            " HTTP session), gap, intruded, accepted, left, cancelled.",
            "event",
            stats.team,
        )
        yield _counter_by(
            "history_checks",
            "Interaction History look-ups at a session's end: over, in_process, unavailable.",
            "result",
            stats.history_checks,
        )

    def _push(self) -> Iterator[Metric]:
        labels = ["account"]
        up = GaugeMetricFamily(f"{PREFIX}push_up", "1 while push is subscribed.", labels=labels)
        handshakes = CounterMetricFamily(
            f"{PREFIX}push_handshakes", "Successful Bayeux handshakes.", labels=labels
        )
        rehandshakes = CounterMetricFamily(
            f"{PREFIX}push_rehandshakes", "Re-handshakes by cause.", labels=[*labels, "cause"]
        )
        received = CounterMetricFamily(
            f"{PREFIX}push_notifications",
            "Notifications received: sms (hints), ignored (other kinds).",
            labels=[*labels, "kind"],
        )
        failures = CounterMetricFamily(
            f"{PREFIX}push_failures", "Failed Bayeux requests and replies.", labels=labels
        )
        for push in (listener.report() for listener in self.state.pushes):
            account = push.account
            up.add_metric([account], 1 if push.up else 0)
            handshakes.add_metric([account], push.handshakes)
            for cause, count in push.rehandshakes.items():
                rehandshakes.add_metric([account, cause], count)
            received.add_metric([account, "sms"], push.hints)
            received.add_metric([account, "ignored"], push.ignored)
            failures.add_metric([account], push.failures)
        yield from (up, handshakes, rehandshakes, received, failures)

    def _hints(self) -> Iterator[Metric]:
        stats = self.state.stats
        yield _counter_by(
            "push_hints",
            "Push notifications by effect: session (a poll), lookup (one session read), all.",
            "kind",
            stats.hints,
        )
        yield CounterMetricFamily(
            f"{PREFIX}push_hints_coalesced",
            "Hints that found a poll of their session already due.",
            value=stats.hints_coalesced,
        )
        latency = SummaryMetricFamily(
            f"{PREFIX}push_hint_poll_latency_seconds",
            "From a hint's arrival to the start of the poll it caused.",
            count_value=stats.hint_polls,
            sum_value=stats.hint_latency_s_total,
        )
        yield latency
        yield GaugeMetricFamily(
            f"{PREFIX}push_hint_poll_latency_max_seconds",
            "The longest hint-to-poll latency so far.",
            value=stats.hint_latency_s_max,
        )

    def _gws(self) -> Iterator[Metric]:
        host = self.state.host
        requests = CounterMetricFamily(
            f"{PREFIX}gws_requests",
            "HTTP requests to GWS by endpoint and status (or transport error).",
            labels=["endpoint", "status"],
        )
        for (endpoint, status), count in sorted((host.requests if host else Counter()).items()):
            requests.add_metric([endpoint, status], count)
        yield requests
        yield CounterMetricFamily(
            f"{PREFIX}rate_limit_pauses",
            "Host-wide pauses after a 429 or 503 with Retry-After.",
            value=host.pauses if host else 0,
        )

    def _sessions(self) -> Iterator[Metric]:
        labels = ["account"]
        active = GaugeMetricFamily(
            f"{PREFIX}active_sessions", "Open sessions polled.", labels=labels
        )
        lag = GaugeMetricFamily(
            f"{PREFIX}cursor_lag_max_seconds",
            "Largest seconds since an open session's last successful poll.",
            labels=labels,
        )
        up = GaugeMetricFamily(
            f"{PREFIX}account_up",
            "1 while the account's session list reads succeed, else 0.",
            labels=labels,
        )
        list_age = GaugeMetricFamily(
            f"{PREFIX}session_list_age_seconds",
            "Seconds since the account's last successful session-list read.",
            labels=labels,
        )
        for report in (account.report(self.now) for account in self.state.accounts):
            health = report.list_health
            active.add_metric([report.account], report.open_sessions)
            lag.add_metric([report.account], report.lag_max_s)
            up.add_metric([report.account], 1 if health.healthy else 0)
            if health.last_success_at is not None:
                list_age.add_metric([report.account], self.now - health.last_success_at)
        yield from (active, lag, up, list_age)

    def _archive(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            f"{PREFIX}events",
            "Events committed to the archive (the newest seq; survives restarts).",
            value=self.state.committed_seq(),
        )
        size = GaugeMetricFamily(
            f"{PREFIX}archive_bytes", "Size of the archive: main file and WAL.", labels=["file"]
        )
        for file, count in self.vitals.file_bytes.items():
            size.add_metric([file], count)
        yield size
        yield GaugeMetricFamily(
            f"{PREFIX}sse_clients", "Clients connected to /events.", value=self.sse_clients
        )

    def _deliveries(self) -> Iterator[Metric]:
        labels = ["subscriber"]
        deliveries = CounterMetricFamily(
            f"{PREFIX}deliveries",
            "Delivery attempts per hook subscriber: delivered, failed (retried or dead-lettered).",
            labels=[*labels, "result"],
        )
        backlog = GaugeMetricFamily(
            f"{PREFIX}delivery_backlog",
            "Events not yet delivered to the subscriber (queued plus not yet scanned).",
            labels=labels,
        )
        dead = GaugeMetricFamily(
            f"{PREFIX}dead_letters", "Events given up on, awaiting replay.", labels=labels
        )
        disabled = GaugeMetricFamily(
            f"{PREFIX}subscriber_disabled",
            "1 while the subscriber is disabled (its endpoint answered 410 Gone).",
            labels=labels,
        )
        for status in self.vitals.subscribers:
            deliveries.add_metric([status.name, "delivered"], status.delivered)
            deliveries.add_metric([status.name, "failed"], status.failed_attempts)
            backlog.add_metric([status.name], status.lag)
            dead.add_metric([status.name], status.dead)
            disabled.add_metric([status.name], 1 if status.disabled_at else 0)
        yield from (deliveries, backlog, dead, disabled)


async def read_vitals(path: ArchiveLocation) -> ArchiveVitals:
    """The archive file's sizes and the hook subscribers' delivery state, off the event loop."""
    file_bytes = await asyncio.to_thread(archive_bytes, path)
    try:
        async with DeliveryStore(path, busy_timeout_s=DELIVERY_READ_TIMEOUT_S) as store:
            subscribers = await store.status()
    except StoreError as exc:
        # No hook state yet, or the archive is busy: the scrape goes on without deliveries.
        log.debug("delivery_state_unreadable", error=str(exc))
        subscribers = []
    return ArchiveVitals(file_bytes, subscribers)


async def render_metrics(
    state: DaemonState, *, sse_clients: int, accept: str | None
) -> tuple[bytes, str]:
    """The scrape body and its content type (text format, or OpenMetrics if accepted)."""
    vitals = await read_vitals(state.config.archive.location)
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    GCCollector(registry=registry)
    registry.register(DaemonCollector(state, vitals, sse_clients=sse_clients, now=time.time()))
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


def _counter_by(name: str, help_text: str, label: str, counts: Counter[str]) -> Metric:
    family = CounterMetricFamily(f"{PREFIX}{name}", help_text, labels=[label])
    for key, count in sorted(counts.items()):
        family.add_metric([key], count)
    return family
