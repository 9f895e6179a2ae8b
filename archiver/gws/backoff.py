"""How a failing GWS request is tried again: which failures, how often, how long between tries.

Full-jitter exponential backoff (tenacity), never shorter than a ``Retry-After`` the server
gave. A body that cannot be decoded is not retried: the client reads it in smaller pages.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from archiver.errors import GwsStatusError, ProtocolError, TransportError, UndecodableError


@dataclass(frozen=True, slots=True)
class RequestRetry:
    """How often and how long a failing request is tried again."""

    attempts: int = 5
    total_s: float = 60.0
    wait_max_s: float = 10.0
    wait_multiplier_s: float = 0.25


def retryable(exc: BaseException) -> bool:
    """True for a failure worth another try: transport, protocol, retryable status."""
    if isinstance(exc, UndecodableError):
        return False  # the same bytes again: read in smaller pages instead
    if isinstance(exc, TransportError | ProtocolError):
        return True
    return isinstance(exc, GwsStatusError) and exc.retryable


def retrying(policy: RequestRetry, sleep: Callable[[float], Awaitable[Any]]) -> AsyncRetrying:
    """The tenacity loop for ``policy``; the last failure is re-raised as it was."""
    return AsyncRetrying(
        retry=retry_if_exception(retryable),
        stop=stop_after_attempt(policy.attempts) | stop_after_delay(policy.total_s),
        wait=RetryAfterWait(policy),
        sleep=sleep,
        reraise=True,
    )


class RetryAfterWait:
    """Full-jitter exponential backoff, but never shorter than the server's ``Retry-After``."""

    def __init__(self, policy: RequestRetry) -> None:
        self._jitter = wait_random_exponential(
            multiplier=policy.wait_multiplier_s, max=policy.wait_max_s
        )
        self._cap_s = policy.wait_max_s

    def __call__(self, state: RetryCallState) -> float:
        backoff = float(self._jitter(state))
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, GwsStatusError) and exc.retry_after_s is not None:
            return max(backoff, min(exc.retry_after_s, self._cap_s))
        return backoff
