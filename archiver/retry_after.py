"""``Retry-After`` read defensively, for GWS and webhook receivers alike.

Each caller bounds the wait by its own ``cap_s``: GWS by ``gws.max_retry_after_s`` (the host is
paused for that long), webhooks by the longest wait of their retry schedule.
"""

from __future__ import annotations

import math
import re
import time
from datetime import UTC
from email.utils import parsedate_to_datetime

_DELTA_SECONDS = re.compile(r"\d+(?:\.\d{1,6})?")


def parse_retry_after(value: str | None, *, cap_s: float, now: float | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (delta-seconds or an HTTP date), at most ``cap_s``.

    None when absent or unreadable (``inf``, ``-1``, garbage): the caller's own backoff applies.
    A date in the past means no wait; one far ahead is capped. ``now`` is wall-clock time
    (``time.time()`` when not given).
    """
    if not value or len(value) > 100:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return min(float(value), cap_s)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        seconds = when.timestamp() - (time.time() if now is None else now)
    except (OverflowError, OSError, ValueError):
        return None
    if not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), cap_s)
