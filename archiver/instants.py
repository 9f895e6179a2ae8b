"""Instants as the archive writes them: UTC ISO-8601 with milliseconds and ``Z``.

Every timestamp the archiver stores or prints (``sent_at``, ``archived_at``, ``occurred_at``, a
delivery's ``next_attempt_at``) has the one shape ``2026-01-02T03:04:05.678Z``, so that text
order is time order. These helpers convert between it, datetimes and epoch seconds.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

# Epoch seconds of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z: what a datetime can hold.
FIRST_EPOCH_S, LAST_EPOCH_S = -62_135_596_800, 253_402_300_799


def format_instant(instant: datetime) -> str:
    """UTC ISO-8601 with milliseconds and ``Z``: ``2026-01-02T03:04:05.678Z``."""
    utc = instant if instant.tzinfo is UTC else instant.astimezone(UTC)
    # Field by field: strftime costs several times as much, once per message archived.
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:"
        f"{utc.second:02d}.{utc.microsecond // 1000:03d}Z"
    )


def utc_now(seconds_from_now: float = 0.0) -> str:
    """Now (or that many seconds from now), as the archive writes instants."""
    return format_instant(datetime.now(UTC) + timedelta(seconds=seconds_from_now))


def parse_instant(text: str) -> datetime:
    """An ISO-8601 date or time as an aware datetime (UTC if it names no offset).

    Raises ValueError for text that is no ISO-8601 date or time.
    """
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def from_epoch(epoch_s: float) -> str:
    """Epoch seconds as the archive writes instants."""
    return format_instant(datetime.fromtimestamp(epoch_s, UTC))


def from_epoch_ms(epoch_ms: int) -> str | None:
    """Whole epoch milliseconds as the archive writes instants; None beyond years 1-9999.

    Exact (no float rounding) and without a datetime: this runs once per message archived
    (``timestampSeconds``).
    """
    seconds, millis = divmod(epoch_ms, 1000)
    if not FIRST_EPOCH_S <= seconds <= LAST_EPOCH_S:
        return None
    t = time.gmtime(seconds)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (  # noqa: UP031 (the cheapest form here)
        t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, millis,
    )  # fmt: skip


def to_epoch(text: str) -> float:
    """Epoch seconds of an instant the archive wrote."""
    return parse_instant(text).timestamp()
