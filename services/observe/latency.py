"""Latency bookkeeping for observe: rolling per-stage samples, percentiles, and the 200/500/1000 ms
thresholds (per stage) that make a sample a warning, critical or stale."""

from __future__ import annotations

from collections import deque
from typing import Any

WARNING_MS = 200.0
CRITICAL_MS = 500.0
STALE_MS = 1000.0
WINDOW = 4096  # samples kept per stage: enough for stable p99, cheap to sort on request

# The stages the issue names, listed first on the dashboard even before any sample arrives.
CORE_STAGES = (
    "market_to_signal_ms",
    "signal_to_order_ack_ms",
    "full_decision_to_fill_ms",
    "feed_lag_binance_ms",
    "feed_lag_clob_ms",
)

# Bounds (warning, critical, stale) per stage; the default is the 200/500/1000 ms of the issue.
# The Chainlink price on the RTDS feed is published about 1.4 s after the fact by design
# (PROTOCOLS.md 5, "Updates ~1/s, ~1.4 s late"), so its lag is judged against bounds around that:
# warning past 2 s, critical past 3 s (strategy's default `stale_after_ms`), stale past 5 s.
# Every panel that shows the lag (latency table, feeds table) colours it by these same bounds.
DEFAULT_THRESHOLDS = (WARNING_MS, CRITICAL_MS, STALE_MS)
STAGE_THRESHOLDS: dict[str, tuple[float, float, float]] = {
    "feed_lag_price_feed_ms": (2000.0, 3000.0, 5000.0),
}

SEVERITY_LOG_LEVEL = {"warning": "WARNING", "critical": "ERROR", "stale": "CRITICAL"}


def stage_thresholds(stage: str) -> tuple[float, float, float]:
    """(warning, critical, stale) bounds in ms for a stage."""
    return STAGE_THRESHOLDS.get(stage, DEFAULT_THRESHOLDS)


def severity(ms: float, limits: tuple[float, float, float] = DEFAULT_THRESHOLDS) -> str:
    """ok / warning (> limits[0]) / critical (> limits[1]) / stale (> limits[2]); by default
    200 / 500 / 1000 ms."""
    warning, critical, stale = limits
    if ms > stale:
        return "stale"
    if ms > critical:
        return "critical"
    if ms > warning:
        return "warning"
    return "ok"


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty list."""
    if not sorted_values:
        raise ValueError("percentile of no samples")
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


class LatencyStats:
    """Rolling samples per stage plus lifetime counters per stage and severity."""

    def __init__(self, window: int = WINDOW) -> None:
        self.window = window
        self.samples: dict[str, deque[float]] = {}
        self.counts: dict[str, int] = {}
        self.breaches: dict[str, dict[str, int]] = {}
        self.last: dict[str, float] = {}

    def add(self, stage: str, ms: float) -> str:
        """Record one sample; return its severity."""
        dq = self.samples.get(stage)
        if dq is None:
            dq = self.samples[stage] = deque(maxlen=self.window)
        dq.append(ms)
        self.counts[stage] = self.counts.get(stage, 0) + 1
        self.last[stage] = ms
        sev = severity(ms, stage_thresholds(stage))
        if sev != "ok":
            per = self.breaches.setdefault(stage, {})
            per[sev] = per.get(sev, 0) + 1
        return sev

    def summary(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        stages = list(CORE_STAGES) + sorted(s for s in self.samples if s not in CORE_STAGES)
        for stage in stages:
            warning, critical, stale = stage_thresholds(stage)
            limits = {"warning": warning, "critical": critical, "stale": stale}
            dq = self.samples.get(stage)
            if not dq:
                out[stage] = {
                    "count": 0,
                    "p50": None,
                    "p90": None,
                    "p99": None,
                    "max": None,
                    "last": None,
                    "severity": "none",
                    "breaches": {},
                    "thresholds": limits,
                }
                continue
            vals = sorted(dq)
            p99 = percentile(vals, 99)
            out[stage] = {
                "count": self.counts[stage],
                "window": len(vals),
                "p50": round(percentile(vals, 50), 3),
                "p90": round(percentile(vals, 90), 3),
                "p99": round(p99, 3),
                "max": round(vals[-1], 3),
                "last": round(self.last[stage], 3),
                "severity": severity(p99, stage_thresholds(stage)),
                "breaches": dict(self.breaches.get(stage, {})),
                "thresholds": limits,
            }
        return out
