"""Latency bookkeeping for observe: rolling per-stage samples, percentiles, and the 200/500/1000 ms
thresholds that make a sample a warning, critical or stale."""

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

# Lags the venue imposes by design, not ours to alarm on: the Chainlink/TWAP feed publishes
# about 1.4 s after the fact (PROTOCOLS.md 5). Shown with percentiles; a dead feed shows as stale
# in the feed table by its age instead.
INFORMATIONAL_STAGES = frozenset({"feed_lag_price_feed_ms"})

SEVERITY_LOG_LEVEL = {"warning": "WARNING", "critical": "ERROR", "stale": "CRITICAL"}


def severity(ms: float) -> str:
    """ok / warning (>200 ms) / critical (>500 ms) / stale (>1000 ms)."""
    if ms > STALE_MS:
        return "stale"
    if ms > CRITICAL_MS:
        return "critical"
    if ms > WARNING_MS:
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
        if stage in INFORMATIONAL_STAGES:
            return "ok"
        sev = severity(ms)
        if sev != "ok":
            per = self.breaches.setdefault(stage, {})
            per[sev] = per.get(sev, 0) + 1
        return sev

    def summary(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        stages = list(CORE_STAGES) + sorted(s for s in self.samples if s not in CORE_STAGES)
        for stage in stages:
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
                "severity": "info" if stage in INFORMATIONAL_STAGES else severity(p99),
                "breaches": dict(self.breaches.get(stage, {})),
            }
        return out
