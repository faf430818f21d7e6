"""The clock. Decision code never calls it: it takes time from the messages it handles. Runners
and ingest (which stamps receive times and emits clock ticks) use these."""

from __future__ import annotations

import time
from datetime import UTC, datetime

CLOCK_TICK_INTERVAL_NS = (
    100_000_000  # ingest ticks at least this often so time moves without trades
)

now_ns = time.time_ns
mono_ns = time.monotonic_ns


def iso_utc(ts_ns: int) -> str:
    return (
        datetime.fromtimestamp(ts_ns / 1e9, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


DAY_NS = 86_400 * 1_000_000_000
_days: dict[int, str] = {}  # day number since the epoch -> "YYYY-MM-DD" (cores ask per message)


def utc_day(ts_ns: int) -> str:
    """The UTC calendar day of `ts_ns` (ns since the Unix epoch) as "YYYY-MM-DD"."""
    n = ts_ns // DAY_NS
    day = _days.get(n)
    if day is None:
        if len(_days) > 4096:
            _days.clear()
        day = _days[n] = datetime.fromtimestamp(n * 86_400, UTC).strftime("%Y-%m-%d")
    return day
