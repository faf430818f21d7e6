"""Signal's transport-free core: market data in, one `SignalScore` per cycle out.

Each ClockTick, spot trade, or change of a current token's best ask produces a score for the
current window of each configured market (series key "eth-15m") it concerns, every market priced
from its own asset's Binance trades, settlement feed (`PriceFeedTick.symbol` "eth/usd") and
basis (`PriceBasis.asset`), with its own window, TWAP lookback and config (the base config with
its overrides, `strategy_config_for`): the market-aware probability of Up (services/signal/model.py: the model blended
with the Up token's mid by the config's fitted weights; the model alone in `inputs["p_model"]`),
the side it favours, a score in [-1, 1] and the per-side edge after the taker fee, with every
input in `inputs` so the signal log explains the number. Everything is priced in the settlement
source's units: Binance minus the measured basis (md.basis), the TWAP's fixed part from the
Chainlink ticks that exist, the basis's uncertainty in the variance, and a settlement feed that
is down said so in `inputs` with its uncertainty growing. Time comes only from the messages handled.
"""

from __future__ import annotations

import math

import msgspec

from common import topics
from common.config import MarketSpec, StrategyConfig, enabled_markets, strategy_config_for
from common.core import Core, Out, forward_probe
from common.schema import (
    BookSnapshot,
    BtcTrade,
    ClockTick,
    LazyBookSnapshot,
    MarketInfo,
    MarketResolved,
    PriceBasis,
    PriceFeedTick,
    Probe,
    SignalScore,
)
from services.signal.model import (
    NS,
    RETURN_HORIZONS_S,
    BtcFeatures,
    edge,
    market_aware_up,
    settlement_basis_std_log,
    taker_fee_per_share,
)

# price-to-beat sources, best first; the number goes into `inputs` as ptb_source
PTB_MARKET, PTB_TWAP, PTB_CHAINLINK, PTB_BINANCE = 3.0, 2.0, 1.0, 0.0
# MarketInfo.price_to_beat_source -> rank; an unnamed source is the market's own (Gamma)
SOURCE_RANK = {
    "gamma": PTB_MARKET,
    "": PTB_MARKET,
    "twap": PTB_TWAP,
    "chainlink": PTB_CHAINLINK,
    "binance": PTB_BINANCE,
}
KEEP_SECONDS = 900  # per-second price history kept for TWAP estimates
LOG_EVERY_NS = 1_000_000_000  # signal.jsonl gets one full score (with inputs) a second
# A settlement-feed tick up to this old is still "the value in force" at a second: Chainlink
# ticks come ~1/s, 1-2 s late and sometimes seconds apart (PROTOCOLS.md sections 5 and 7), and
# such a gap must not push the price to beat to another source.
PTB_MAX_AGE_S = 15
BASIS_MIN_SAMPLES = 10  # Chainlink ticks before the measured basis is applied
# The settlement feed is "down" after this long without a Chainlink tick: it ticks about once a
# second, 1-2 s late, sometimes a few seconds apart (PROTOCOLS.md sections 5 and 7).
SETTLEMENT_STALE_S = 10.0
# Basis (Binance - Chainlink) sd used when none has been measured (no md.basis yet): captured runs
# had means of -3.7, +1.6 and +17.2 USD (PROTOCOLS.md section 7), so +-10 USD is an honest "unknown".
BASIS_UNKNOWN_SD_USD = 10.0
# While the settlement feed is down the last measured basis ages: its sd grows by this much per
# sqrt(second) (10 USD after 100 s, the spread of the captured means). Not fitted: no recorded
# Chainlink path exists to fit it on; a stated, cautious value.
BASIS_DRIFT_USD_PER_SQRT_S = 1.0


_RETURN_KEYS = tuple((h, f"ret_{h}s") for h in RETURN_HORIZONS_S)  # the inputs' names, built once


def in_force(series: dict[int, float], t: int) -> float | None:
    """The value in force at unix second `t`: the last tick at or before it, at most
    `PTB_MAX_AGE_S` old; None when there is none."""
    v = series.get(t)
    if v is not None:  # the usual case: a tick in that very second
        return v
    for sec in range(t - 1, t - PTB_MAX_AGE_S - 1, -1):
        v = series.get(sec)
        if v is not None:
            return v
    return None


def feed_asset(symbol: str) -> str:
    """The asset of a settlement feed symbol: "eth/usd" -> "eth", "btcusdt" -> "btc"."""
    sym = symbol.lower()
    if "/" in sym:
        return sym.split("/", 1)[0]
    for quote in ("usdt", "usd"):
        if sym.endswith(quote) and len(sym) > len(quote):
            return sym[: -len(quote)]
    return sym


class AssetFeeds:
    """One asset's prices: Binance trade features, the settlement feed's ticks (Chainlink and
    TWAP, per unix second), the last Binance trade per second and the measured basis."""

    def __init__(self, asset: str, config: StrategyConfig) -> None:
        self.asset = asset
        self.features = BtcFeatures(config.vol_halflife_s, config.vol_floor)
        self.chainlink: dict[int, float] = {}  # unix second -> Chainlink <asset>/USD
        self.twap: dict[int, float] = {}  # unix second -> published TWAP ending then
        self.binance_s: dict[int, float] = {}  # unix second -> last Binance trade in it
        self.basis: PriceBasis | None = None  # md.basis from ingest: Binance - Chainlink
        self.last_chainlink_recv_ns = 0  # when the settlement feed last ticked (receive time)
        self.last_chainlink_s = 0  # the latest second a settlement tick was received for
        self.last_trade_recv_ns = 0

    def set_config(self, config: StrategyConfig) -> None:
        self.features.halflife_s = config.vol_halflife_s
        self.features.vol_floor = config.vol_floor


class SignalCore(Core):
    """Market data in, `SignalScore`s out (see the module docstring); `config` holds the model
    parameters and the `markets` scored (`set_config` for a hot reload)."""

    def __init__(self, config: StrategyConfig | None = None) -> None:
        super().__init__()
        self._next_log: dict[str, int] = {}  # per series key
        self._last_side: dict[str, str] = {}
        self.markets: dict[str, MarketInfo] = {}
        self.resolved: set[str] = set()
        self.books: dict[str, tuple[float | None, float | None, int]] = {}
        self.token_slug: dict[str, str] = {}
        # series key -> (its open window, valid from ns, valid until ns): current_market's answer
        self._current: dict[str, tuple[MarketInfo | None, int, int]] = {}
        self.ptb: dict[str, tuple[float, float]] = {}  # slug -> (price to beat, source)
        self.ptb_final: set[str] = set()  # slugs whose estimate a later tick has confirmed
        self.assets: dict[str, AssetFeeds] = {}
        self.series: dict[str, tuple[MarketSpec, StrategyConfig]] = {}
        self.now_ns = 0
        self.published = 0
        self.last: SignalScore | None = None
        self.set_config(config or StrategyConfig())

    def set_config(self, config: StrategyConfig) -> None:
        """Hot reload of the model parameters and of the markets scored (every feature history
        is kept; an added market's asset gets its own feeds, a removed market is scored no more).
        An asset's volatility parameters are those of its first market."""
        self.config = config
        self.series = {
            spec.key: (spec, strategy_config_for(config, spec)) for spec in enabled_markets(config)
        }
        seen: set[str] = set()
        for spec, cfg in self.series.values():
            if spec.asset in seen:
                continue
            seen.add(spec.asset)
            feeds = self.assets.get(spec.asset)
            if feeds is None:
                self.assets[spec.asset] = AssetFeeds(spec.asset, cfg)
            else:
                feeds.set_config(cfg)
        self._series_of_asset: dict[str, tuple[str, ...]] = {}
        for key, (spec, _) in self.series.items():
            self._series_of_asset[spec.asset] = (*self._series_of_asset.get(spec.asset, ()), key)
        self.default_asset = next(iter(self._series_of_asset), "btc")

    def spot_assets(self) -> tuple[str, ...]:
        """The assets of the markets scored, in config order (whose trades signal needs)."""
        return tuple(self._series_of_asset)

    def feeds(self, asset: str = "") -> AssetFeeds:
        """The prices of `asset` (the first market's asset when ""), created when unknown."""
        asset = asset or self.default_asset
        f = self.assets.get(asset)
        if f is None:
            f = self.assets[asset] = AssetFeeds(asset, self.config)
        return f

    # the first market's asset, by the names of the single-market core (tests, status)
    @property
    def features(self) -> BtcFeatures:
        return self.feeds().features

    @property
    def basis(self) -> PriceBasis | None:
        return self.feeds().basis

    # ------------------------------------------------------------------ inputs
    def on_clock_tick(self, msg: ClockTick, now_ns: int) -> Out:
        self._advance(msg.ts_ns)
        return self._emit(msg.ts_ns, 0, now_ns, tuple(self.series))

    def on_btc_trade(self, msg: BtcTrade, now_ns: int) -> Out:
        self._advance(msg.ts_recv_ns)
        keys = self._series_of_asset.get(msg.asset)
        if keys is None:
            return []  # an asset no configured market is priced from
        f = self.assets[msg.asset]
        f.features.on_trade(msg.ts_recv_ns, msg.price)
        f.last_trade_recv_ns = msg.ts_recv_ns
        f.binance_s[msg.ts_recv_ns // NS] = msg.price
        return self._emit(msg.ts_recv_ns, msg.ts_exchange_ns, now_ns, keys)

    def on_book_snapshot(self, msg: BookSnapshot | LazyBookSnapshot, now_ns: int) -> Out:
        self._advance(msg.ts_recv_ns)
        old = self.books.get(msg.asset_id)
        self.books[msg.asset_id] = (msg.best_bid, msg.best_ask, msg.ts_recv_ns)
        if old is not None and old[1] == msg.best_ask:
            return []  # the best ask did not change (most snapshots): no new score
        slug = self.token_slug.get(msg.asset_id)
        m = self.markets.get(slug) if slug is not None else None
        if m is not None and self.current_market(m.series) is m:
            return self._emit(msg.ts_recv_ns, msg.ts_exchange_ns, now_ns, (m.series,))
        return []

    # the runner reads books lazily (common.bus Subscriber(lazy_books=True)), the backtest
    # engine hands it whole BookSnapshots: the fields read are the same
    on_lazy_book_snapshot = on_book_snapshot

    def on_price_feed_tick(self, msg: PriceFeedTick, now_ns: int) -> Out:
        self._advance(msg.ts_recv_ns)
        f = self.feeds(feed_asset(msg.symbol))
        sec = msg.ts_exchange_ns // NS
        if msg.source == "chainlink":
            f.chainlink[sec] = msg.value
            f.last_chainlink_recv_ns = max(f.last_chainlink_recv_ns, msg.ts_recv_ns)
            f.last_chainlink_s = max(f.last_chainlink_s, sec)
        elif msg.source.startswith("twap"):
            f.twap[sec] = msg.value
        return []

    def on_market_info(self, msg: MarketInfo, now_ns: int) -> Out:
        self._advance(msg.ts_recv_ns)
        self.markets[msg.slug] = msg
        self._current.pop(msg.series, None)
        self.token_slug[msg.up_token_id] = msg.slug
        self.token_slug[msg.down_token_id] = msg.slug
        return []

    def on_market_resolved(self, msg: MarketResolved, now_ns: int) -> Out:
        self.resolved.add(msg.slug)
        self._current.clear()
        return []

    def on_price_basis(self, msg: PriceBasis, now_ns: int) -> Out:
        """md.basis from ingest: Binance - Chainlink of `msg.asset`, time-aligned, its sd and
        Chainlink's lag."""
        self.feeds(msg.asset).basis = msg
        return []

    def on_probe(self, msg: Probe, now_ns: int) -> Out:
        return [(topics.PROBE_PREFIX + "signal", forward_probe(msg, "signal", now_ns))]

    def _advance(self, ts_ns: int) -> None:
        if ts_ns > self.now_ns:
            self.now_ns = ts_ns
            horizon = ts_ns // NS - KEEP_SECONDS
            for f in self.assets.values():
                for d in (f.chainlink, f.twap, f.binance_s):
                    while d and next(iter(d)) < horizon:  # insertion order is time order
                        del d[next(iter(d))]
            limit = 8 * max(1, len(self.series))
            if len(self.markets) > limit:
                for slug, m in sorted(self.markets.items(), key=lambda kv: kv[1].window_end_ns):
                    if len(self.markets) <= limit or m.window_end_ns >= ts_ns:
                        break
                    del self.markets[slug]
                    self._current.clear()
                    self.ptb.pop(slug, None)
                    self.ptb_final.discard(slug)
                    for t in (m.up_token_id, m.down_token_id):
                        self.token_slug.pop(t, None)

    # ------------------------------------------------------------------ model
    def current_market(self, series: str = "") -> MarketInfo | None:
        """The window of market `series` (series key; the first configured when "") open now."""
        series = series or next(iter(self.series), "btc-5m")
        now = self.now_ns
        hit = self._current.get(series)
        if hit is not None and hit[1] <= now < hit[2]:
            return hit[0]  # no window of the series opened or closed since it was found
        best = None
        lo, hi = 0, 1 << 63  # the span of time over which the answer holds
        for m in self.markets.values():
            if m.series != series:
                continue
            for bound in (m.window_start_ns, m.window_end_ns):
                if bound <= now:
                    lo = max(lo, bound)
                else:
                    hi = min(hi, bound)
            if m.window_start_ns <= now < m.window_end_ns and m.slug not in self.resolved:
                if best is None or m.window_start_ns > best.window_start_ns:
                    best = m
        self._current[series] = (best, lo, hi)
        return best

    def price_to_beat(self, m: MarketInfo) -> tuple[float, float] | None:
        """The market's own price to beat, else the best estimate we can make ourselves: the
        TWAP published for the window's start second, the Chainlink average over the lookback,
        or the last Binance trade before the start (Gamma's value is about a minute late)."""
        market: tuple[float, float] | None = None
        if m.price_to_beat is not None and m.price_to_beat > 0:
            market = (m.price_to_beat, SOURCE_RANK.get(m.price_to_beat_source, PTB_MARKET))
            if market[1] >= PTB_TWAP:
                return market
        own = self._own_price_to_beat(m)
        if market is not None and (own is None or market[1] >= own[1]):
            return market
        return own

    def _own_price_to_beat(self, m: MarketInfo) -> tuple[float, float] | None:
        """The settlement feed's value in force at the window start (its last tick at or before
        the start, `PTB_MAX_AGE_S` at most): the TWAP feed, else the Chainlink value (averaged
        over the market's TWAP lookback when it has one). Binance's last trade before the start
        only when no settlement value exists, labelled as such (strategy does not enter on it
        unless `require_settlement_price_to_beat` is off). The estimate may still change until
        a tick after the start shows nothing else came in between."""
        f = self.feeds(m.asset)
        start = m.window_start_ns // NS
        known = self.ptb.get(m.slug)
        if known is not None and m.slug in self.ptb_final:
            return known
        found: tuple[float, float] | None = None
        series: dict[int, float] | None = None
        v = in_force(f.twap, start)
        if v is not None:
            found, series = (v, PTB_TWAP), f.twap
        else:
            lb = max(1, m.twap_lookback_s) if m.twap_enabled else 1
            span = [in_force(f.chainlink, sec) for sec in range(start - lb + 1, start + 1)]
            if all(x is not None for x in span):
                found = (sum(span) / len(span), PTB_CHAINLINK)  # type: ignore[arg-type]
                series = f.chainlink
        if found is None and known is None:
            before = [sec for sec in f.binance_s if sec <= start]
            basis = self.basis_now(self.now_ns, m.asset)[0]  # a Binance estimate, settlement units
            if before:
                found = (f.binance_s[max(before)] - basis, PTB_BINANCE)
            elif f.features.last_price is not None:
                found = (f.features.last_price - basis, PTB_BINANCE)
        if found is not None and (known is None or found[1] >= known[1]):
            self.ptb[m.slug] = found
            if series and next(reversed(series)) > start:  # keys are in time order
                self.ptb_final.add(m.slug)
        return self.ptb.get(m.slug)

    def settlement_feed_age_s(self, now_ns: int, asset: str = "") -> float | None:
        """Seconds since `asset`'s settlement feed (Chainlink) last ticked; None if it never
        did ("" = the first market's asset)."""
        f = self.feeds(asset)
        if not f.last_chainlink_recv_ns:
            return None
        return max(0.0, (now_ns - f.last_chainlink_recv_ns) / NS)

    def basis_now(self, now_ns: int, asset: str = "") -> tuple[float, float, bool]:
        """(basis USD, its sd USD, settlement feed down): what converts Binance to the settlement
        source's units (Chainlink = Binance - basis). The measured basis (md.basis, time-aligned
        by ingest) and its sd; none measured: 0 with `BASIS_UNKNOWN_SD_USD`; the feed down (no
        tick for `SETTLEMENT_STALE_S`): the last basis with an sd growing with the feed's age."""
        age = self.settlement_feed_age_s(now_ns, asset)
        down = age is None or age > SETTLEMENT_STALE_S
        b = self.feeds(asset).basis
        if b is None or b.samples < BASIS_MIN_SAMPLES:
            return 0.0, BASIS_UNKNOWN_SD_USD, down
        sd = b.basis_sd_usd
        if down:
            grown = BASIS_DRIFT_USD_PER_SQRT_S * math.sqrt(age if age is not None else 0.0)
            sd = max(BASIS_UNKNOWN_SD_USD if age is None else 0.0, math.hypot(sd, grown))
        return b.basis_mean_usd, sd, down

    def _known_avg(self, m: MarketInfo, lookback: int, basis: float) -> tuple[float | None, int]:
        """The already-fixed part of the settlement TWAP (seconds of the lookback up to now), in
        the settlement source's units, and how many of its seconds were bridged. Each second takes
        the settlement tick in force then (`in_force`: a gap between ticks keeps the last value,
        as the feed does); the latest seconds, after the last tick received (Chainlink arrives
        1-2 s late, or the feed is down), and any second without a tick in force are bridged
        with Binance's price then minus the basis. Binance never replaces the ticks that exist."""
        f = self.feeds(m.asset)
        end = m.window_end_ns // NS
        now_s = self.now_ns // NS
        secs = range(end - lookback + 1, min(end, now_s) + 1)
        if not secs:
            return None, 0
        vals: list[float] = []
        bridged = 0
        last_tick_s = f.last_chainlink_s
        for sec in secs:
            v = in_force(f.chainlink, sec) if sec <= last_tick_s else None
            if v is None:
                b = in_force(f.binance_s, sec)
                if b is None:
                    b = f.features.last_price
                if b is None:
                    continue
                v = b - basis
                bridged += 1
            vals.append(v)
        if not vals:
            return None, 0
        return sum(vals) / len(vals), bridged + (len(secs) - len(vals))

    def score(
        self, now_ns: int, origin_exchange_ns: int = 0, series: str = ""
    ) -> SignalScore | None:
        """The score of market `series` (series key; the first configured when "") now: its
        open window priced from its asset's feeds with its config; None without a window open,
        a spot price or a price to beat."""
        series = series or next(iter(self.series), "btc-5m")
        m = self.current_market(series)
        if m is None:
            return None
        f = self.feeds(m.asset)
        features = f.features
        price = features.last_price
        if price is None:
            return None
        ptb = self.price_to_beat(m)
        if ptb is None:
            return None
        known_series = self.series.get(series)
        cfg = known_series[1] if known_series is not None else self.config
        lookback = m.twap_lookback_s if m.twap_enabled else 0
        tau = (m.window_end_ns - now_ns) / NS
        basis, basis_sd, feed_down = self.basis_now(now_ns, m.asset)
        feed_age = self.settlement_feed_age_s(now_ns, m.asset)
        spot = price - basis  # Binance in the settlement source's units
        if spot <= 0.0:
            return None
        known, bridged = (
            self._known_avg(m, lookback, basis) if 0 < lookback and tau <= lookback else (None, 0)
        )
        momentum = features.momentum(cfg.momentum_horizon_s)
        up_bid, up_ask, up_ts = self.books.get(m.up_token_id, (None, None, 0))
        dn_bid, dn_ask, dn_ts = self.books.get(m.down_token_id, (None, None, 0))
        mid = (up_bid + up_ask) / 2.0 if up_bid is not None and up_ask is not None else None
        extra = settlement_basis_std_log(spot, basis_sd, tau, lookback, bridged)
        fair, p = market_aware_up(
            cfg,
            price=spot,
            price_to_beat=ptb[0],
            sigma=features.sigma,
            tau_s=tau,
            lookback_s=lookback,
            known_avg=known,
            momentum=momentum,
            p_market=mid,
            extra_std_log=extra,
        )
        edge_up = edge(p, up_ask, m.fee_rate, m.fee_exponent)
        edge_down = edge(1.0 - p, dn_ask, m.fee_rate, m.fee_exponent)
        inputs: dict[str, float] = {
            "price": price,
            "settlement_spot": spot,
            "basis_usd": basis,
            "basis_sd_usd": basis_sd,
            "basis_std_log": extra,
            "settlement_feed_down": 1.0 if feed_down else 0.0,
            "settlement_feed_age_s": -1.0 if feed_age is None else feed_age,
            "bridged_s": float(bridged),
            "p_model": fair.p_up,
            "price_to_beat": ptb[0],
            "ptb_source": ptb[1],
            "log_distance": math.log(fair.expected / ptb[0]),
            "expected_settle": fair.expected,
            "sigma": features.sigma,
            "vol_scale": cfg.vol_scale,
            "std_log": fair.std_log,
            "z": _finite(fair.z),
            "z_momentum": fair.z_momentum,
            "momentum": momentum,
            "tau_s": tau,
            "elapsed_s": (now_ns - m.window_start_ns) / NS,
            "twap_lookback_s": float(lookback),
            "price_age_ms": (now_ns - f.last_trade_recv_ns) / 1e6,
            "up_book_age_ms": (now_ns - up_ts) / 1e6 if up_ts else -1.0,
            "down_book_age_ms": (now_ns - dn_ts) / 1e6 if dn_ts else -1.0,
            "fee_rate": m.fee_rate,
        }
        if known is not None:
            inputs["known_twap_avg"] = known
        if mid is not None:
            inputs["p_market"] = mid
        if f.basis is not None:
            inputs["chainlink_lag_ms"] = f.basis.lag_mean_ms
        for h, key in _RETURN_KEYS:
            inputs[key] = features.log_return(h)
        for name, value in (
            ("up_bid", up_bid),
            ("up_ask", up_ask),
            ("down_bid", dn_bid),
            ("down_ask", dn_ask),
        ):
            if value is not None:
                inputs[name] = value
        if up_ask is not None:
            inputs["up_fee_per_share"] = taker_fee_per_share(up_ask, m.fee_rate, m.fee_exponent)
        if dn_ask is not None:
            inputs["down_fee_per_share"] = taker_fee_per_share(dn_ask, m.fee_rate, m.fee_exponent)
        return SignalScore(
            slug=m.slug,
            p_up=p,
            side="Up" if p >= 0.5 else "Down",
            score=max(-1.0, min(1.0, 2.0 * p - 1.0)),
            edge_up=edge_up,
            edge_down=edge_down,
            ts_ns=now_ns,
            origin_ts_exchange_ns=origin_exchange_ns,
            origin_ts_recv_ns=now_ns,
            inputs=inputs,
            market=series,
        )

    def _emit(
        self, ts_ns: int, origin_exchange_ns: int, now_ns: int, series: tuple[str, ...]
    ) -> Out:
        """One score for each market of `series` that has one."""
        out: Out = []
        for key in series:
            s = self.score(ts_ns, origin_exchange_ns, key)
            if s is None:
                continue
            s = msgspec.structs.replace(s, ts_signal_ns=now_ns)
            self.published += 1
            self.last = s
            if s.ts_ns >= self._next_log.get(key, 0) or s.side != self._last_side.get(key, ""):
                self.log("signal", "signal", **msgspec.to_builtins(s))
                self._next_log[key] = s.ts_ns + LOG_EVERY_NS
                self._last_side[key] = s.side
            out.append((topics.SIGNAL, s))
        return out

    def status(self) -> dict[str, object]:
        m = self.current_market()
        markets: dict[str, object] = {}
        for key, (spec, _) in self.series.items():
            cur = self.current_market(key)
            markets[key] = {
                "market": cur.slug if cur else None,
                "last_price": self.feeds(spec.asset).features.last_price,
            }
        return {
            "last_price": self.features.last_price,
            "sigma": self.features.sigma,
            "market": m.slug if m else None,
            "published": self.published,
            "p_up": self.last.p_up if self.last else None,
            "markets": markets,
        }


def _finite(x: float) -> float:
    return max(-1e9, min(1e9, x))
