"""The fair-value model: BTC features and the probability that a window settles Up.

Pure functions and a small feature tracker, no I/O and no clock: the signal core, the backtest and
the tests all call the same code. The settlement rule (PROTOCOLS.md section 0.2) is "Up if the
Chainlink TWAP over the last `lookback` seconds of the window is >= the price to beat", so the model
prices that average, not the spot price at the close.
"""

from __future__ import annotations

import functools
import math
from bisect import bisect_right
from dataclasses import dataclass

from common import money
from common.config import StrategyConfig

NS = 1_000_000_000
RETURN_HORIZONS_S = (5, 15, 30, 60)
P_MIN, P_MAX = 1e-4, 1.0 - 1e-4  # keep probabilities off 0/1 so Brier/log scores stay finite
# the momentum z-score is clipped to +-3 before its (fitted) weight applies: a guard against a
# single print or a gap in the trade stream moving P by more than 3 sd x weight. Not fitted (a
# stated bound): 1.9 % of the calibration points (5 s horizon, 2026-03-12..16) reach it
MOMENTUM_CLIP = 3.0
# BTC's long-run realised vol (~45 %/yr) in log units per sqrt second: the EWMA starts here, so a
# freshly started signal is not overconfident while its own estimate warms up
VOL_PRIOR = 0.45 / math.sqrt(365 * 24 * 3600)
HISTORY_NS = (RETURN_HORIZONS_S[-1] + 5) * NS


def norm_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


@functools.lru_cache(maxsize=8192)  # prices sit on the tick grid: a few hundred distinct calls
def taker_fee_per_share(price: float, rate: float, exponent: float = 1.0) -> float:
    """Taker fee in collateral per share at `price` (feeSchedule: rate * (p * (1 - p)) ** exp;
    `common.money.fee_per_share`)."""
    if rate <= 0.0 or not 0.0 < price < 1.0:
        return 0.0
    return float(money.fee_per_share(price, money.FeeSchedule.of(rate, exponent)))


def taker_fee(shares: float, price: float, rate: float, exponent: float = 1.0) -> float:
    """Fee charged on a fill, to 5 decimals as the venue charges it (`common.money.taker_fee`)."""
    return float(money.taker_fee(shares, price, money.FeeSchedule.of(rate, exponent)))


@dataclass(frozen=True)
class Fair:
    """The model's answer and the intermediate numbers that explain it."""

    p_up: float
    expected: float  # expected settlement price (TWAP or spot)
    std_log: float  # std of log(settlement / expected)
    z: float  # log distance over std, before momentum
    z_momentum: float  # the momentum term added to z


def fair_up(
    price: float,
    price_to_beat: float,
    sigma: float,
    tau_s: float,
    lookback_s: float = 0.0,
    known_avg: float | None = None,
    momentum: float = 0.0,
    momentum_weight: float = 0.0,
    extra_std_log: float = 0.0,
) -> Fair:
    """P(settlement >= price_to_beat) under a driftless log-normal walk with vol `sigma`
    (log units per sqrt second), `tau_s` seconds before the window ends.

    With a TWAP of `lookback_s` seconds the settlement is an average: more than `lookback_s`
    before the end its variance is sigma^2 * (tau - lookback + lookback / 3) (the average of a
    random walk over L seconds has a third of the end-point variance); inside the TWAP window
    `lookback - tau` seconds are already fixed at `known_avg` and only the remaining `tau`
    seconds move, weighted by tau / lookback. `lookback_s = 0` is plain spot settlement.
    Ties go to Up. `momentum` (a return z-score) shifts z by `momentum_weight * momentum`.
    `extra_std_log` is the uncertainty of the inputs themselves (the std, in log units, of the
    expected settlement from the Binance-to-settlement-source basis: `settlement_basis_std_log`),
    added in quadrature to the walk's.

    Every price is in the settlement source's units: `price` is the settlement source's spot
    (Binance + the measured basis when it comes from Binance), `known_avg` the settlement ticks'
    average (bridged where they are missing, see signal's core).
    """
    if price <= 0.0 or price_to_beat <= 0.0:
        raise ValueError(f"prices must be > 0, got price={price} price_to_beat={price_to_beat}")
    tau = max(0.0, tau_s)
    if lookback_s <= 0.0:
        expected = price
        std = sigma * math.sqrt(tau)
    elif tau > lookback_s:
        expected = price
        std = sigma * math.sqrt(tau - 2.0 * lookback_s / 3.0)
    else:
        fixed = known_avg if known_avg is not None and known_avg > 0 else price
        expected = (fixed * (lookback_s - tau) + price * tau) / lookback_s
        std = sigma * math.sqrt(tau / 3.0) * (tau / lookback_s)
    if extra_std_log > 0.0:
        std = math.sqrt(std * std + extra_std_log * extra_std_log)
    d = math.log(expected / price_to_beat)
    mom = momentum_weight * max(-MOMENTUM_CLIP, min(MOMENTUM_CLIP, momentum))
    if std <= 1e-12:
        z = math.inf if d >= 0 else -math.inf
        p = 1.0 if d >= 0 else 0.0
    else:
        z = d / std
        p = norm_cdf(z + mom)
    return Fair(p_up=min(P_MAX, max(P_MIN, p)), expected=expected, std_log=std, z=z, z_momentum=mom)


def logit(p: float) -> float:
    """log(p / (1 - p)) with p held inside [P_MIN, P_MAX] (finite for 0 and 1)."""
    q = min(P_MAX, max(P_MIN, p))
    return math.log(q / (1.0 - q))


def sigmoid(x: float) -> float:
    """The inverse of `logit`: 1 / (1 + exp(-x)), overflow-safe."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def blend_up(
    p_model: float,
    p_market: float | None,
    market_weight: float,
    model_weight: float,
    bias: float = 0.0,
) -> float:
    """The market-aware probability of Up: a logistic regression on the market's and the model's
    log-odds, sigmoid(bias + market_weight * logit(p_market) + model_weight * logit(p_model)),
    fitted on real outcomes (`polyedge calibrate --fit`, README "Does it have an edge?").
    `p_market` is the Up token's mid; without one (no two-sided book) the model alone
    (`p_model`) is returned: the caller must not trade on it as if the book had been seen."""
    if p_market is None or not 0.0 < p_market < 1.0:
        return min(P_MAX, max(P_MIN, p_model))
    x = bias + market_weight * logit(p_market) + model_weight * logit(p_model)
    return min(P_MAX, max(P_MIN, sigmoid(x)))


def market_aware_up(
    cfg: StrategyConfig,
    *,
    price: float,
    price_to_beat: float,
    sigma: float,
    tau_s: float,
    lookback_s: float = 0.0,
    known_avg: float | None = None,
    momentum: float = 0.0,
    p_market: float | None = None,
    extra_std_log: float = 0.0,
) -> tuple[Fair, float]:
    """The one pricing path (signal's core and `polyedge calibrate` both call it): the model's
    `Fair` with `sigma` (log units per sqrt second, as estimated) scaled by `cfg.vol_scale` and
    the momentum weighted by `cfg.momentum_weight`, and the market-aware probability of Up
    (`blend_up` of the model and `p_market`, the Up token's mid, with the config's fitted
    weights). Raises ValueError on a non-positive price (see `fair_up`)."""
    fair = fair_up(
        price,
        price_to_beat,
        sigma * cfg.vol_scale,
        tau_s,
        lookback_s,
        known_avg,
        momentum,
        cfg.momentum_weight,
        extra_std_log,
    )
    p = blend_up(
        fair.p_up, p_market, cfg.blend_market_weight, cfg.blend_model_weight, cfg.blend_bias
    )
    return fair, p


def settlement_basis_std_log(
    price: float, basis_sd_usd: float, tau_s: float, lookback_s: float, bridged_s: float
) -> float:
    """Std (log units) of the expected settlement that comes from not knowing the basis exactly:
    the basis's sd in USD over the price, times the weight of the inputs that were converted from
    Binance: the spot (weight 1 before the TWAP window, tau / lookback inside it; 1 for spot
    settlement) and the bridged seconds of the fixed part (bridged / lookback)."""
    if basis_sd_usd <= 0.0 or price <= 0.0:
        return 0.0
    tau = max(0.0, tau_s)
    if lookback_s <= 0.0 or tau > lookback_s:
        weight = 1.0
    else:
        weight = (tau + max(0.0, bridged_s)) / lookback_s
    return basis_sd_usd / price * min(1.0, weight)


def edge(p_side: float, best_ask: float | None, fee_rate: float, fee_exponent: float) -> float:
    """Expected profit per share of buying this side at its best ask, after the taker fee.
    No ask means no trade: -1 (the worst possible edge)."""
    if best_ask is None or not 0.0 < best_ask < 1.0:
        return -1.0
    return p_side - best_ask - taker_fee_per_share(best_ask, fee_rate, fee_exponent)


class BtcFeatures:
    """Rolling BTC features on event time: last price, returns over several horizons and an
    EWMA realised volatility sampled once a second (per-trade returns are mostly bid/ask bounce)."""

    def __init__(
        self, halflife_s: float = 60.0, vol_floor: float = 3e-5, vol_prior: float = VOL_PRIOR
    ) -> None:
        self.halflife_s = halflife_s
        self.vol_floor = vol_floor
        self._ts: list[int] = []  # trade times, ascending (bisect for horizon look-ups)
        self._px: list[float] = []
        self.last_price: float | None = None
        self.last_ts_ns = 0
        self._sample_ts_ns = 0
        self._sample_price = 0.0
        self._var_per_s = vol_prior * vol_prior
        self.samples = 0
        self._returns: dict[float, float] = {}  # horizon s -> log return; cleared by a trade

    def on_trade(self, ts_ns: int, price: float) -> None:
        if price <= 0.0:
            return
        if self.last_price is not None and ts_ns < self.last_ts_ns:
            ts_ns = self.last_ts_ns  # a late trade does not move time backwards
        self._returns.clear()  # the returns depend on the trades alone
        self.last_price = price
        self.last_ts_ns = ts_ns
        self._ts.append(ts_ns)
        self._px.append(price)
        if len(self._ts) > 4096:  # keep a little more than the longest horizon, trim in bulk
            cut = max(0, bisect_right(self._ts, ts_ns - HISTORY_NS) - 1)
            del self._ts[:cut], self._px[:cut]
        if self._sample_ts_ns == 0:
            self._sample_ts_ns, self._sample_price = ts_ns, price
        elif ts_ns - self._sample_ts_ns >= NS:
            dt = (ts_ns - self._sample_ts_ns) / NS
            r = math.log(price / self._sample_price)
            obs = r * r / dt
            decay = math.exp(-dt * math.log(2.0) / self.halflife_s)
            self._var_per_s = decay * self._var_per_s + (1 - decay) * obs
            self._sample_ts_ns, self._sample_price = ts_ns, price
            self.samples += 1

    @property
    def sigma(self) -> float:
        """Volatility in log units per sqrt second, never below the floor."""
        return max(self.vol_floor, math.sqrt(self._var_per_s))

    def price_at(self, ts_ns: int) -> float | None:
        """Last trade price at or before `ts_ns` (None if we have no trade that old)."""
        i = bisect_right(self._ts, ts_ns)
        return self._px[i - 1] if i else None

    def log_return(self, horizon_s: float) -> float:
        """log(last price / the price `horizon_s` before the last trade); the oldest kept
        price when none is that old; 0 before any trade. Kept until the next trade."""
        r = self._returns.get(horizon_s)
        if r is not None:
            return r
        if self.last_price is None:
            return 0.0
        past = self.price_at(self.last_ts_ns - int(horizon_s * NS))
        if past is None:
            past = self._px[0] if self._px else self.last_price
        r = self._returns[horizon_s] = math.log(self.last_price / past)
        return r

    def momentum(self, horizon_s: float) -> float:
        """The return over `horizon_s` in units of its expected std (a z-score)."""
        return self.log_return(horizon_s) / (self.sigma * math.sqrt(max(horizon_s, 1e-9)))
