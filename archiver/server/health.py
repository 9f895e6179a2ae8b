"""Readiness: the archive takes writes, and every account reads its sessions (recently, signed in).

An account is ready when its last session-list read succeeded and happened within the readiness
window: ``server.ready_window_s``, but never less than three ``poll.sessions_interval_s``, so a
slow poll schedule alone never looks like an outage.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from archiver.store.vitals import probe_writable

if TYPE_CHECKING:
    from archiver.daemon import Daemon
    from archiver.poller import AccountPoller


@dataclass(frozen=True, slots=True)
class Readiness:
    """The outcome of one readiness check, as ``/readyz`` returns it."""

    ready: bool
    reasons: list[str]
    archive: dict[str, Any]
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON body of ``/readyz``."""
        return {
            "ready": self.ready,
            "reasons": self.reasons,
            "archive": self.archive,
            "accounts": self.accounts,
        }


def ready_window_s(daemon: Daemon) -> float:
    """How recent an account's last successful session-list read must be."""
    config = daemon.config
    return max(config.server.ready_window_s, 3 * config.poll.sessions_interval_s)


async def check_readiness(daemon: Daemon) -> Readiness:
    """Check the archive and each account now."""
    reasons: list[str] = []
    path = daemon.config.archive.path
    if daemon.writer is None:
        problem: str | None = "the archive is not open yet"
    else:
        problem = await asyncio.to_thread(probe_writable, path)
    if problem:
        reasons.append(problem)
    archive = {"ok": problem is None, "path": str(path), "reason": problem}
    if not daemon.accounts:
        reasons.append("polling has not started yet")
    window_s = ready_window_s(daemon)
    now = time.time()
    accounts = {}
    for poller in daemon.accounts:
        reason = _account_problem(poller, now, window_s)
        if reason:
            reasons.append(f"account {poller.account}: {reason}")
        success = poller.health.last_success_at
        accounts[poller.account] = {
            "ok": reason is None,
            "failures": poller.health.failures,
            "last_success_age_s": None if success is None else round(now - success, 3),
            "reason": reason,
        }
    return Readiness(not reasons, reasons, archive, accounts)


def _account_problem(poller: AccountPoller, now: float, window_s: float) -> str | None:
    health = poller.health
    if health.failures:
        return f"session list failing ({health.failures} in a row): {health.last_error}"
    if health.last_success_at is None:
        return "session list not read yet"
    age_s = now - health.last_success_at
    if age_s > window_s:
        return f"session list last read {age_s:.0f} s ago (window {window_s:.0f} s)"
    return None
