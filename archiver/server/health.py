"""Readiness: the archive takes writes, and every account reads its sessions (recently, signed in).

An account is ready when its last session-list read succeeded and happened within the readiness
window: ``server.ready_window_s``, but never less than three ``poll.sessions_interval_s``, so a
slow poll schedule alone never looks like an outage.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from archiver.state import AccountReport, DaemonState
from archiver.store.vitals import probe_writable


@dataclass(frozen=True, slots=True)
class Readiness:
    """The outcome of one readiness check, as ``/readyz`` returns it."""

    ready: bool
    reasons: list[str]
    archive: dict[str, Any]
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    leases: dict[str, Any] | None = None  # a shared archive's: this daemon's and what it holds

    def to_json(self) -> dict[str, Any]:
        """The JSON body of ``/readyz``."""
        return {
            "ready": self.ready,
            "reasons": self.reasons,
            "archive": self.archive,
            "accounts": self.accounts,
            **({"leases": self.leases} if self.leases is not None else {}),
        }


def ready_window_s(state: DaemonState) -> float:
    """How recent an account's last successful session-list read must be."""
    config = state.config
    return max(config.server.ready_window_s, 3 * config.poll.sessions_interval_s)


async def check_readiness(state: DaemonState) -> Readiness:
    """Check the archive and each account now."""
    reasons: list[str] = []
    path = state.config.archive.location
    if not state.archive_open:
        problem: str | None = "the archive is not open yet"
    else:
        problem = await asyncio.to_thread(probe_writable, path)
    if problem:
        reasons.append(problem)
    archive = {"ok": problem is None, "path": str(path), "reason": problem}
    leases = state.leases
    if leases is not None and not leases.held():
        reasons.append(f"standing by: daemon {leases.daemon_id} holds no lease of the archive")
    elif not state.polling:
        reasons.append("polling has not started yet")
    window_s = ready_window_s(state)
    now = time.time()
    accounts = {}
    for report in (account.report(now) for account in state.accounts):
        reason = _account_problem(report, now, window_s)
        if reason:
            reasons.append(f"account {report.account}: {reason}")
        success = report.list_health.last_success_at
        accounts[report.account] = {
            "ok": reason is None,
            "failures": report.list_health.failures,
            "last_success_age_s": None if success is None else round(now - success, 3),
            "reason": reason,
        }
    held = None
    if leases is not None:
        held = {"daemon": leases.daemon_id, "held": leases.held(), "lost": leases.lost}
    return Readiness(not reasons, reasons, archive, accounts, held)


def _account_problem(report: AccountReport, now: float, window_s: float) -> str | None:
    health = report.list_health
    if health.failures:
        return f"session list failing ({health.failures} in a row): {health.last_error}"
    if health.last_success_at is None:
        return "session list not read yet"
    age_s = now - health.last_success_at
    if age_s > window_s:
        return f"session list last read {age_s:.0f} s ago (window {window_s:.0f} s)"
    return None
