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


def utc_day(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, UTC).strftime("%Y-%m-%d")
