"""The wait before the next attempt: a table of delays, spread by jitter, and Retry-After.

A table rather than tenacity's wait functions: attempts are counted in the archive across
restarts, not in a retry loop's memory, so the wait is a pure function of the attempt number.
"""

from __future__ import annotations

import random

from archiver.config import RetryPolicy

# However long a receiver asks us to wait, try again within a day.
MAX_RETRY_AFTER_S = 86_400.0


def retry_delay(
    policy: RetryPolicy, attempts: int, retry_after_s: float | None, rng: random.Random
) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt."""
    base = policy.delays_s[min(attempts, len(policy.delays_s)) - 1]
    delay = base * rng.uniform(1 - policy.jitter, 1 + policy.jitter)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, MAX_RETRY_AFTER_S))
    return delay
