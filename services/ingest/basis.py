"""Binance vs the settlement source, live: the basis (Binance - Chainlink BTC/USD) and Chainlink's
delivery lag, measured on every Chainlink tick against Binance's trade in force at the tick's own
exchange time (time-aligned, not arrival-aligned: Chainlink arrives ~1-2 s late, PROTOCOLS.md
sections 5 and 7). The basis wanders (a 30-minute capture: +17.2 USD mean, sd 2.8; other runs
-3.7, +1.6), so the meter keeps exponentially weighted means and an sd, and warns when the mean
is beyond a bound. Transport-free: ingest's core feeds it, the backtest too.
"""

from __future__ import annotations

import math
from collections import deque

from common.schema import PriceBasis

ALIGN_MAX_NS = 2_000_000_000  # a Binance trade older than this at the tick's time is not "in force"
HISTORY_NS = 30_000_000_000  # Binance trades kept for the alignment
HALFLIFE_SAMPLES = 60  # ~a minute of Chainlink ticks
DEFAULT_BOUND_USD = 50.0


class BasisMeter:
    """Feed it Binance trades (`on_binance`) and Chainlink ticks (`on_chainlink`); read `state`."""

    def __init__(self, bound_usd: float = DEFAULT_BOUND_USD) -> None:
        if not bound_usd > 0:
            raise ValueError(f"basis bound must be > 0 USD, got {bound_usd!r}")
        self.bound_usd = bound_usd
        self._trades: deque[tuple[int, float]] = deque()
        self._alpha = 1.0 - 0.5 ** (1.0 / HALFLIFE_SAMPLES)
        self.samples = 0
        self.unaligned = 0  # Chainlink ticks with no Binance trade in force at their time
        self.basis = 0.0
        self.mean = 0.0
        self.var = 0.0
        self.lag_ms = 0.0
        self.lag_mean_ms = 0.0
        self.warn = False

    def on_binance(self, ts_exchange_ns: int, price: float) -> None:
        if self._trades and ts_exchange_ns < self._trades[-1][0]:
            return  # keep the history monotonic for the lookup
        self._trades.append((ts_exchange_ns, price))
        while self._trades and ts_exchange_ns - self._trades[0][0] > HISTORY_NS:
            self._trades.popleft()

    def _binance_at(self, t_ns: int) -> float | None:
        for ts, p in reversed(self._trades):
            if ts <= t_ns:
                return p if t_ns - ts <= ALIGN_MAX_NS else None
        return None

    def on_chainlink(self, ts_exchange_ns: int, ts_recv_ns: int, value: float) -> bool:
        """One Chainlink tick; True when it produced a basis sample."""
        lag = (ts_recv_ns - ts_exchange_ns) / 1e6
        b = self._binance_at(ts_exchange_ns)
        if b is None:
            self.unaligned += 1
            return False
        basis = b - value
        a = self._alpha if self.samples else 1.0
        self.samples += 1
        d = basis - self.mean
        self.mean += a * d
        self.var = (1 - a) * (self.var + a * d * d)
        self.lag_mean_ms += a * (lag - self.lag_mean_ms)
        self.basis, self.lag_ms = basis, lag
        self.warn = abs(self.mean) > self.bound_usd
        return True

    def state(self, now_ns: int, asset: str = "btc") -> PriceBasis:
        return PriceBasis(
            asset=asset,
            ts_ns=now_ns,
            basis_usd=round(self.basis, 4),
            basis_mean_usd=round(self.mean, 4),
            basis_sd_usd=round(math.sqrt(max(self.var, 0.0)), 4),
            lag_ms=round(self.lag_ms, 3),
            lag_mean_ms=round(self.lag_mean_ms, 3),
            samples=self.samples,
            bound_usd=self.bound_usd,
            warn=self.warn,
            samples_halflife=HALFLIFE_SAMPLES,
        )
