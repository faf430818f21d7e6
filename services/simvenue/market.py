"""Transport-free, clock-injected simulated crypto Up/Down markets: correlated spot paths (BTC,
ETH, SOL, XRP, ...), Up/Down books of every series, frames.

`SimMarket(seed, window_seconds, start_ns).advance(t_ns)` (one series, BTC 5m by default) and
`SimMarkets(seed, [(asset, window, window_s), ...], start_ns).advance(t_ns)` (any number of
series sharing one spot path per asset) return every wire frame produced up to event time `t_ns`
as `(ts_ns, channel, frame_text)` tuples, in time order. They never read the wall clock, so the
same seed and start time give the same frames however `advance` is chunked; the socket server and
the backtest both drive them.

Channels (see README.md):
  binance:<sym>usdt@aggTrade | binance:<sym>usdt@trade | binance:<sym>usdt@bookTicker  raw streams
  market:<condition_id>   market-channel events of one market (book, price_change, ...)
  market                  market-channel broadcasts (new_market)
  rtds:crypto_prices_chainlink | rtds:crypto_prices_twap_sixty | rtds:crypto_prices
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import msgspec

from common import money

NS = 1_000_000_000
MS = 1_000_000
TICK_NS = 10_000_000  # 10 ms simulation step: fine enough for ~100 bookTicker/s
DT = TICK_NS / NS
SQRT_DT = math.sqrt(DT)
ANNUAL_VOL = 0.45  # BTC realised vol; gives ~0.14 % (~$120) per 5 minutes
SIGMA_PER_SQRT_S = ANNUAL_VOL / math.sqrt(365 * 24 * 3600)
JUMP_RATE_PER_S = 1 / 900  # an occasional jump, roughly one every 15 minutes
JUMP_LOG_SIGMA = 0.0015
AGGTRADE_HZ = 7.0
CLOB_UPDATE_HZ = 60.0
CLOB_TRADE_HZ = 0.8
CLOB_BOOK_HZ = 0.3
# Chainlink is not Binance (PROTOCOLS.md section 7): Chainlink = Binance - a basis that wanders
# around a per-seed level (real runs: +17.2 USD mean, sd 2.8 over 30 min; others -3.7, +1.6),
# delivered 1-2 s after its timestamp, with occasional gaps of several seconds.
BASIS_LEVEL_SD_USD = 10.0  # each seed's long-run Binance - Chainlink basis ~ N(0, 10)
BASIS_SD_USD = 3.0  # the wander around that level
BASIS_REVERT_S = 300.0
CHAINLINK_DELAY_MIN_NS, CHAINLINK_DELAY_MAX_NS = 1_000 * MS, 2_000 * MS
CHAINLINK_GAP_RATE_PER_S = 1 / 90  # a delivery gap starts about every 90 s ...
CHAINLINK_GAP_S = (3, 8)  # ... and lasts this many seconds
# Quoters are not our model: their own view of BTC (a lag redrawn each window), their own vol
# and basis estimate, a wandering mispricing, and informed episodes in which they move on where
# BTC is about to go before Binance shows it, so a book that lags Binance is not free money.
QUOTER_LAG_S = (0.2, 1.2)
QUOTER_VOL_MULT = (0.8, 1.25)
QUOTER_BASIS_ERR_SD_USD = 2.0
QUOTER_NOISE_LOGIT = 0.07  # their mispricing (logit units per sqrt s, reverting at 0.2/s)
INFORMED_RATE_PER_S = 1 / 15
INFORMED_REACT_S = 0.2
INFORMED_LEAD_STEPS = (50, 200)  # 0.5-2 s ahead of Binance
INFORMED_DURATION_S = (3.0, 10.0)
LEAD_MAX_STEPS = INFORMED_LEAD_STEPS[1]
# Books calibrated to the real recordings (services/simvenue/README.md, calibrate.py): spread
# 1 tick 76 %, 2 ticks 12 %, more 11 %; top level ~290 shares; ~2,000 shares within 5 ticks; a
# full ladder (about 49 levels a side); the spread regime persists for seconds.
BOOK_LEVELS = 50
SPREAD_TICKS = ((1, 0.76), (2, 0.15), (3, 0.06), (4, 0.03))
SPREAD_REDRAW_PER_S = 0.15
TOP_SIZE_SHARES = 220.0  # lognormal median of the best level; deeper levels grow
LEVEL_GROWTH = 0.35
SIZE_LOG_SD = 0.8
REQUOTE_SHARE = 0.08  # share of market-channel updates that re-price (the rest resize a level)
FEE_RATE = 0.07
FEE_EXPONENT = 1
SIM_FEE = money.FeeSchedule.of(FEE_RATE, FEE_EXPONENT)  # the markets' feeSchedule (gamma.py)
UNITS = 1_000_000  # pUSD and outcome tokens: 6 decimals on chain
TWAP_LOOKBACK_S = 60
CONNECTION_ID = "c2ltdmVudWUtcnRkcw=="
BINANCE_STREAMS = ("btcusdt@aggTrade", "btcusdt@trade", "btcusdt@bookTicker")
BINANCE_STREAM_KINDS = ("aggTrade", "trade", "bookTicker")
# Per-asset spot dynamics. Annualised volatilities and loadings on one common crypto factor are
# rounded 2025 figures (daily closes: BTC ~45 %, ETH ~60 %, SOL ~75 %, XRP ~70 %; correlation
# with BTC ~0.8 ETH, ~0.7 SOL, ~0.6 XRP); a loading b gives corr(i, j) = b_i * b_j. The recorded
# data in /work/shared/data/real is BTC only, so the others are not calibrated beyond this.
# An asset not listed moves like a small altcoin. `decimals`: Binance's price tick (0.01 USD;
# XRPUSDT 0.0001).
ASSETS: dict[str, tuple[str, float, float, float, int]] = {
    # asset: (name, starting price USD, annual vol, factor loading, price decimals)
    "btc": ("Bitcoin", 85_000.0, 0.45, 0.90, 2),
    "eth": ("Ethereum", 3_000.0, 0.60, 0.90, 2),
    "sol": ("Solana", 140.0, 0.75, 0.80, 2),
    "xrp": ("XRP", 2.2, 0.70, 0.70, 4),
}
OTHER_ASSET = ("", 10.0, 0.80, 0.60, 4)
ARCHIVE_MAX = 20_000  # ended windows' resolutions kept per series (70 days of 5-minute windows)
CLOCK_SLUG_WINDOWS = ("5m", "15m")  # the venue's slugs that carry the window start
RTDS_TOPICS = ("crypto_prices_chainlink", "crypto_prices_twap_sixty", "crypto_prices")

Frame = tuple[int, str, str]


_encode = msgspec.json.Encoder().encode


def _dumps(obj: object) -> str:
    """Compact JSON text of a frame (msgspec: ~5x cheaper than json.dumps per frame)."""
    return _encode(obj).decode()


def _fmt_price(milli: int) -> str:
    s = f"{milli / 1000:.3f}".rstrip("0").rstrip(".")
    return s or "0"


_PRICE_TEXT = [_fmt_price(m) for m in range(1001)]  # every price on the grid, formatted once


def fmt_price(milli: int) -> str:
    """Venue-style price string: 510 -> "0.51", 500 -> "0.5", 0 -> "0"."""
    if 0 <= milli <= 1000:
        return _PRICE_TEXT[milli]
    return _fmt_price(milli)


def fmt_size(centi: int) -> str:
    """Venue-style size string: 1234 -> "12.34", 1230 -> "12.3", 1200 -> "12", 0 -> "0"."""
    if centi >= 0:  # integer digits: the same text as the float format below, cheaper
        whole, cents = divmod(centi, 100)
        if not cents:
            return str(whole)
        if cents % 10:
            return f"{whole}.{cents:02d}"
        return f"{whole}.{cents // 10}"
    s = f"{centi / 100:.2f}".rstrip("0").rstrip(".")
    return s or "0"


def fmt_tick(tick_milli: int) -> str:
    return fmt_price(tick_milli)


def iso(ts_s: float) -> str:
    return datetime.fromtimestamp(ts_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _h(*parts: object) -> bytes:
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()


def _events(rng: random.Random, expected: float) -> int:
    """How many events fall in one step at `expected` per step. Draws exactly one number, so
    rates at or under one event a step give the same path as a plain Bernoulli draw, and burst
    rates (the benchmark's 10x) still come out right with the 10 ms step."""
    whole = int(expected)
    return whole + (rng.random() < expected - whole)


def asset_name(asset: str) -> str:
    """ "btc" -> "Bitcoin" (titles, questions); an unknown ticker in upper case."""
    return ASSETS.get(asset, OTHER_ASSET)[0] or asset.upper()


def window_slug(asset: str, label: str, start_s: int) -> str:
    """The venue's slug of one window: `{asset}-updown-{5m|15m}-{start}` for the clock-slugged
    series (PROTOCOLS.md section 3); the longer ones have human slugs like the real hourly ones
    ("bitcoin-up-or-down-november-30-3pm-et"), which a client finds on Gamma, never builds:
    here `{name}-up-or-down-{label}-{month}-{day}-{hhmm}-utc`."""
    if label in CLOCK_SLUG_WINDOWS:
        return f"{asset}-updown-{label}-{start_s}"
    d = datetime.fromtimestamp(start_s, UTC)
    name = asset_name(asset).lower().replace(" ", "-")
    return f"{name}-up-or-down-{label}-{d:%B-%d-%H%M}-utc".lower()


def _norm_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


@dataclass
class Window:
    """One `btc-updown-5m-<start>` market and its order book (stored as the Up book only:
    the Down book is its mirror, as on the venue where a Down bid at q is an Up ask at 1-q)."""

    start_s: int
    end_s: int
    seed: int
    lookback_s: int
    slug: str = ""
    condition_id: str = ""
    question_id: str = ""
    up_token: str = ""
    down_token: str = ""
    market_id: str = ""
    event_id: str = ""
    tick: int = 10  # milli
    up_bids: dict[int, int] = field(default_factory=dict)  # price milli -> size centi
    up_asks: dict[int, int] = field(default_factory=dict)
    # users' resting orders, shown in the book beside the quoters' size (Up terms, centi)
    user_bids: dict[int, int] = field(default_factory=dict)
    user_asks: dict[int, int] = field(default_factory=dict)
    last_trade: dict[str, int] = field(default_factory=dict)
    price_to_beat: float | None = None
    final_price: float | None = None
    winner: str | None = None  # "Up" / "Down"
    ptb_public_ns: int = 0
    resolved_ns: int = 0
    resolved: bool = False
    volume_centi: int = 0
    last_bba: tuple[int | None, int | None] = (None, None)
    tick_pinned: bool = False  # a forced tick size (fault) is not undone by the quoter
    # a window an earlier run of the venue was running when it stopped (`SimMarket.stop`): its
    # outcome was fixed then, from the prices up to `stopped_s`; a restarted venue keeps that
    # outcome and does not trade or quote the window (it has no path for the rest of it)
    stopped_s: int | None = None
    # a window an earlier run opened (its price to beat published) and left without an outcome
    # (killed): no complete path exists, so it never resolves (no `market_resolved`, no payout)
    void: bool = False
    asset: str = "btc"
    label: str = "5m"  # the series' window name: 5m, 15m, 1h, 4h, 1d

    def __post_init__(self) -> None:
        self.slug = window_slug(self.asset, self.label, self.start_s)
        # btc 5m keeps the ids it always had; other series hash their key in
        salt: tuple = (self.seed,) if self.key == "btc-5m" else (self.seed, self.key)
        self.condition_id = "0x" + _h(*salt, self.start_s, "condition").hex()
        self.question_id = "0x" + _h(*salt, self.start_s, "question").hex()
        # Long decimal token ids like the real ones (uint256 as decimal).
        self.up_token = str(int.from_bytes(_h(*salt, self.start_s, "up"), "big"))
        self.down_token = str(int.from_bytes(_h(*salt, self.start_s, "down"), "big"))
        n = int.from_bytes(_h(*salt, "ids")[:2], "big") * 10_000_000 if len(salt) > 1 else 0
        self.market_id = str(5_000_000 + self.start_s // 60 + n)
        self.event_id = str(1_000_000 + self.start_s // 60 + n)

    @property
    def key(self) -> str:
        """The series key, "btc-5m" (common.config.MarketSpec.key)."""
        return f"{self.asset}-{self.label}"

    @property
    def window_s(self) -> int:
        return self.end_s - self.start_s

    @property
    def tokens(self) -> tuple[str, str]:
        return (self.up_token, self.down_token)

    @property
    def halted(self) -> bool:
        """No orders and no quotes: an earlier run stopped during it (`stopped_s`) or it is
        void."""
        return self.void or self.stopped_s is not None

    def outcome_of(self, token: str) -> str:
        return "Up" if token == self.up_token else "Down"

    def shown(self) -> tuple[dict[int, int], dict[int, int]]:
        """The Up book as displayed: the quoters' size plus users' resting orders."""
        ub, ua = self.up_bids, self.up_asks
        if self.user_bids:
            ub = dict(ub)
            for p, c in self.user_bids.items():
                ub[p] = ub.get(p, 0) + c
        if self.user_asks:
            ua = dict(ua)
            for p, c in self.user_asks.items():
                ua[p] = ua.get(p, 0) + c
        return ub, ua

    def levels(self, token: str) -> tuple[dict[int, int], dict[int, int]]:
        """(bids, asks) of `token` in its own price terms, as displayed (users' orders too)."""
        ub, ua = self.shown()
        if token == self.up_token:
            return dict(ub), dict(ua)
        bids = {1000 - p: s for p, s in ua.items()}
        asks = {1000 - p: s for p, s in ub.items()}
        return bids, asks

    def best(self, token: str) -> tuple[int | None, int | None]:
        """(best bid, best ask) of `token` in its own price terms (milli), as displayed; without
        copying when no user order rests."""
        if self.user_bids or self.user_asks:
            ub, ua = self.shown()
        else:
            ub, ua = self.up_bids, self.up_asks
        if token == self.up_token:
            return (max(ub) if ub else None, min(ua) if ua else None)
        return (1000 - min(ua) if ua else None, 1000 - max(ub) if ub else None)


@dataclass
class TakeResult:
    """Outcome of a taker order against the simulated book."""

    fills: list[tuple[int, int]]  # (price milli, size centi) in the order's token terms
    status: str  # "matched" | "killed" | "unmatched"
    filled_centi: int = 0
    cost_micro: int = 0  # collateral paid (BUY) or received (SELL), micro-units
    fee_micro: int = 0  # the taker fee of all the fills (common.money.taker_fee), micro-units


@dataclass
class RestingOrder:
    """A user's GTC/GTD order resting on the simulated book, in price-time priority.

    `side`/`price` (milli) are in the order's own token terms; `remaining` and `ahead` are
    centi-shares: `ahead` is the quoters' displayed size in front of it at its price (the whole
    level when it was placed: it joins the back), which only shrinks: by trades at its price,
    and by the level shrinking below it (a quoter cancelling in front of us; we assume size
    removed from a level leaves from behind us first, the conservative choice). Size added to
    the level later queues behind it. User orders never match each other."""

    order_id: str
    token: str
    side: str
    price: int
    remaining: int
    ahead: int
    window_start: int
    seq: int = 0


@dataclass(frozen=True)
class MakerFill:
    """`centi` shares of resting order `order_id` traded at its own `price` (milli) at `t_ns`,
    against the simulated flow's taker: `taker_side` of `taker_token` at `taker_price` (milli,
    the taker token's terms; a Down bid at q fills against an Up buyer at 1 - q)."""

    order_id: str
    centi: int
    price: int
    taker_token: str
    taker_side: str
    taker_price: int
    t_ns: int


class Emitter:
    """The frames of every series and spot path, one time-ordered queue (ts, seq, channel,
    frame); `enabled` False during a silent warm-up."""

    def __init__(self) -> None:
        self.heap: list[tuple[int, int, str, str]] = []
        self.seq = 0
        self.enabled = True
        # a warm-up of many series skips what only makes frames (books, Binance); one series
        # alone warms up in full, so its seeded path is the one it always was
        self.fast_warmup = False

    @property
    def skipping(self) -> bool:
        return not self.enabled and self.fast_warmup

    def push(self, ts: int, channel: str, frame: str) -> None:
        if not self.enabled:
            return
        self.seq += 1
        heapq.heappush(self.heap, (ts, self.seq, channel, frame))

    def due(self, t_ns: int) -> list[Frame]:
        out: list[Frame] = []
        heap = self.heap
        while heap and heap[0][0] <= t_ns:
            ts, _, ch, fr = heapq.heappop(heap)
            out.append((ts, ch, fr))
        return out


class SpotPath:
    """One asset's spot price (Binance) and settlement feed (Chainlink `<asset>/usd` = Binance -
    a wandering basis, and its TWAP), with their frames. Driven by `SpotGroup.step`, which
    supplies the common factor so that the assets move together."""

    def __init__(
        self, seed: int, asset: str, out: Emitter, book_ticker_hz: float, lookback_s: int
    ) -> None:
        _name, price, vol, beta, decimals = ASSETS.get(asset, OTHER_ASSET)
        self.asset = asset
        self.symbol = f"{asset}usdt"  # stream names are lower case
        self.feed_symbol = f"{asset}/usd"
        self.sigma = vol / math.sqrt(365 * 24 * 3600)  # log units per sqrt second
        self.beta = beta
        self._idio = math.sqrt(max(0.0, 1.0 - beta * beta))
        self.decimals = decimals
        self._q = 10**decimals
        self.usd_scale = price / 85_000.0  # USD amounts calibrated on BTC scale with the price
        self.out = out
        self.book_ticker_hz = book_ticker_hz
        self.lookback_s = lookback_s
        self.retain_s = lookback_s + 4 * 300 + 130  # Chainlink seconds kept (a series may raise)
        sfx = "" if asset == "btc" else f":{asset}"  # btc keeps its streams' names
        self._price_rng = random.Random(f"{seed}:price{sfx}")
        self._bn_rng = random.Random(f"{seed}:binance{sfx}")
        self._tick_rng = random.Random(f"{seed}:bookticker{sfx}")
        self._venue_rng = random.Random(f"{seed}:venue{sfx}")  # basis, Chainlink delivery
        self.log_price = math.log(price) + self._price_rng.gauss(0.0, 0.05)
        self._ahead: deque[float] = deque()
        self.basis_level = self._venue_rng.gauss(0.0, BASIS_LEVEL_SD_USD * self.usd_scale)
        self.basis = self.basis_level  # Binance - Chainlink, USD
        self._gap_until_s = 0
        self.chainlink_gaps = 0
        self.chainlink: dict[int, float] = {}
        self._agg_id = 3_000_000_000 + int(_h(seed, "agg", *([asset] if sfx else []))[0]) * 1000
        self._trade_id = 5_000_000_000
        self._update_id = 70_000_000_000

    @property
    def price(self) -> float:
        return math.exp(self.log_price)

    def fill_ahead(self, factors: deque[float] | None) -> list[float]:
        """Draw the path ahead, one step per factor value (LEAD_MAX_STEPS), so informed quoters
        can act on where it is going before Binance shows it. The leader (`factors` None) draws
        its own; returns the factor values used."""
        x = self.log_price
        used = []
        for i in range(LEAD_MAX_STEPS):
            x, z = self.draw(x, None if factors is None else factors[i])
            self._ahead.append(x)
            used.append(z)
        return used

    def draw(self, x: float, f: float | None) -> tuple[float, float]:
        """One 10 ms step of the log price and its normal innovation: the leader's (BTC) own
        draw when `f` is None, else the common factor `f` (the leader's innovation) with this
        asset's loading plus its own noise; an occasional jump on top."""
        pr = self._price_rng
        z = pr.gauss(0.0, 1.0) if f is None else self.beta * f + self._idio * pr.gauss(0.0, 1.0)
        x += self.sigma * SQRT_DT * z
        if pr.random() < JUMP_RATE_PER_S * DT:
            jump = pr.gauss(0.0, JUMP_LOG_SIGMA)
            x += jump
            if f is None:  # the leader's jumps move the whole market (in its units)
                z += jump / (self.sigma * SQRT_DT)
        return x, z

    def move(self, f: float | None) -> float:
        """Advance one step; the innovation drawn for the new step ahead."""
        self.log_price = self._ahead.popleft()
        x, z = self.draw(self._ahead[-1], f)
        self._ahead.append(x)
        return z

    def twap(self, end_s: int, lookback_s: int) -> float | None:
        samples = [self.chainlink.get(s) for s in range(end_s - lookback_s + 1, end_s + 1)]
        if any(v is None for v in samples):
            return None
        return sum(samples) / len(samples)  # type: ignore[arg-type]

    def first_chainlink(self) -> float | None:
        return self.chainlink[min(self.chainlink)] if self.chainlink else None

    def second(self, t: int) -> None:
        s = t // NS
        vr = self._venue_rng
        # the basis wanders (mean-reverting around this seed's level)
        k = 1.0 / BASIS_REVERT_S
        self.basis += k * (self.basis_level - self.basis) + BASIS_SD_USD * self.usd_scale * (
            math.sqrt(2 * k)
        ) * vr.gauss(0.0, 1.0)
        binance = self.price
        price = binance - self.basis  # Chainlink <asset>/USD: the settlement source
        self.chainlink[s] = price
        self.chainlink.pop(s - self.retain_s, None)
        ms = s * 1000
        pub = t + vr.randint(CHAINLINK_DELAY_MIN_NS // MS, CHAINLINK_DELAY_MAX_NS // MS) * MS
        if s < self._gap_until_s:
            delivered = False
        elif vr.random() < CHAINLINK_GAP_RATE_PER_S:
            self._gap_until_s = s + vr.randint(*CHAINLINK_GAP_S)
            self.chainlink_gaps += 1
            delivered = False
        else:
            delivered = True
        if not self.out.enabled:
            return
        self._push_rtds_chainlink(pub, ms, price, s, delivered)
        self.out.push(
            t + 150 * MS,
            "rtds:crypto_prices",
            _dumps(
                {
                    "connection_id": CONNECTION_ID,
                    "payload": {
                        "full_accuracy_value": f"{binance:.8f}",
                        "symbol": self.symbol,
                        "timestamp": ms,
                        "value": round(binance, self.decimals),
                    },
                    "timestamp": (t + 150 * MS) // MS,
                    "topic": "crypto_prices",
                    "type": "update",
                }
            ),
        )

    def _push_rtds_chainlink(
        self, pub: int, ms: int, price: float, s: int, delivered: bool
    ) -> None:
        """The Chainlink tick and the TWAP ending at it, unless this second is in a delivery gap
        (the settlement values exist all the same: only the feed misses them)."""
        if not delivered:
            return
        self.out.push(
            pub,
            "rtds:crypto_prices_chainlink",
            _dumps(
                {
                    "connection_id": CONNECTION_ID,
                    "payload": {
                        "full_accuracy_value": str(int(round(price * 1e18))),
                        "symbol": self.feed_symbol,
                        "timestamp": ms,
                        "value": price,
                    },
                    "timestamp": pub // MS,
                    "topic": "crypto_prices_chainlink",
                    "type": "update",
                }
            ),
        )
        tw = self.twap(s, self.lookback_s)
        if tw is not None:
            self.out.push(
                pub + 90 * MS,
                "rtds:crypto_prices_twap_sixty",
                _dumps(
                    {
                        "connection_id": CONNECTION_ID,
                        "payload": {
                            "full_accuracy_value": str(int(round(tw * 1e18))),
                            "symbol": self.feed_symbol,
                            "timestamp": ms,
                            "value": tw,
                            "window_s": self.lookback_s,
                        },
                        "timestamp": (pub + 90 * MS) // MS,
                        "topic": "crypto_prices_twap_sixty",
                        "type": "update",
                    }
                ),
            )

    def binance(self, t: int, dt: float) -> None:
        """This step's Binance frames: aggTrade (and its trades) ~7/s, bookTicker at
        `book_ticker_hz` (real: ~106/s for BTCUSDT, PROTOCOLS.md section 1)."""
        price = self.price
        ms = t // MS
        rng = self._bn_rng
        q = self._q
        sym = self.symbol.upper()
        if rng.random() < AGGTRADE_HZ * dt:
            n = 1 + int(rng.random() * rng.random() * 4)
            buyer_maker = rng.random() < 0.5
            p = math.floor(price * q) / q if buyer_maker else math.floor(price * q + 1) / q
            qty = round(rng.expovariate(1 / 0.02) / self.usd_scale + 0.00001, 5)
            self._agg_id += 1
            first = self._trade_id + 1
            self._trade_id += n
            ev_ms = ms + rng.randint(0, 2)
            self.out.push(
                t,
                f"binance:{self.symbol}@aggTrade",
                _dumps(
                    {
                        "e": "aggTrade",
                        "E": ev_ms,
                        "s": sym,
                        "a": self._agg_id,
                        "p": f"{p:.8f}",
                        "q": f"{qty:.8f}",
                        "f": first,
                        "l": self._trade_id,
                        "T": ms,
                        "m": buyer_maker,
                        "M": True,
                    }
                ),
            )
            part = round(qty / n, 5)
            for i in range(n):
                qi = part if i < n - 1 else round(qty - part * (n - 1), 5)
                self.out.push(
                    t,
                    f"binance:{self.symbol}@trade",
                    _dumps(
                        {
                            "e": "trade",
                            "E": ev_ms,
                            "s": sym,
                            "t": first + i,
                            "p": f"{p:.8f}",
                            "q": f"{max(qi, 0.00001):.8f}",
                            "T": ms,
                            "m": buyer_maker,
                            "M": True,
                        }
                    ),
                )
        n_quotes = _events(self._tick_rng, self.book_ticker_hz * dt) if self.book_ticker_hz else 0
        for _ in range(n_quotes):
            r = self._tick_rng
            bid = math.floor(price * q) / q
            self._update_id += 1
            self.out.push(
                t,
                f"binance:{self.symbol}@bookTicker",
                _dumps(
                    {
                        "u": self._update_id,
                        "s": sym,
                        "b": f"{bid:.8f}",
                        "B": f"{r.expovariate(1 / 2.0) / self.usd_scale:.8f}",
                        "a": f"{bid + 1 / q:.8f}",
                        "A": f"{r.expovariate(1 / 1.0) / self.usd_scale:.8f}",
                    }
                ),
            )


class SpotGroup:
    """The spot paths of every simulated asset. BTC leads: its normal innovation each 10 ms step
    is the common factor, and every other asset loads on it (`beta`, its correlation with BTC)
    plus its own noise, so corr(i, j) = beta_i * beta_j. BTC's path is always drawn (the same
    path whichever assets are listed); `paths` holds the listed assets, whose frames are made.

    A step runs in phases, so the seeded draws of one BTC series are what they always were:
    `move` (prices), the series' quoters, `second` (settlement feed, once a second), the series'
    rolls, `binance`, the series' books."""

    def __init__(self, seed: int, out: Emitter, book_ticker_hz: float) -> None:
        self.seed = seed
        self.out = out
        self.book_ticker_hz = book_ticker_hz
        self.leader = SpotPath(seed, "btc", out, book_ticker_hz, TWAP_LOOKBACK_S)
        self._factors: deque[float] = deque(self.leader.fill_ahead(None))
        self.paths: dict[str, SpotPath] = {}

    def add(self, asset: str, lookback_s: int) -> SpotPath:
        """The path of `asset`, listed now if new (an asset other than BTC: its history starts
        here)."""
        p = self.paths.get(asset)
        if p is None:
            if asset == "btc":
                p = self.leader
                p.lookback_s = lookback_s
            else:
                p = SpotPath(self.seed, asset, self.out, self.book_ticker_hz, lookback_s)
                p.fill_ahead(self._factors)
            self.paths[asset] = p
        return p

    def move(self) -> None:
        """Phase 1 of a step: every price moves."""
        f = self.leader.move(None)
        self._factors.popleft()
        self._factors.append(f)
        for p in self.paths.values():
            if p is not self.leader:
                p.move(f)

    def second(self, t: int) -> None:
        """Phase 2, on whole seconds: basis, settlement feed."""
        for p in self.paths.values():
            p.second(t)

    def binance(self, t: int) -> None:
        """Phase 3: Binance frames."""
        if self.out.skipping:
            return
        for p in self.paths.values():
            p.binance(t, DT)

    def set_book_ticker_hz(self, hz: float) -> None:
        self.book_ticker_hz = hz
        for p in self.paths.values():
            p.book_ticker_hz = hz


def step_all(group: SpotGroup, markets: Iterable[SimMarket], t: int) -> None:
    """One 10 ms step of the spot paths and `markets`, phase by phase (SpotGroup)."""
    markets = tuple(markets)
    group.move()
    for m in markets:
        m._quote(t)
    if t % NS == 0:
        group.second(t)
        for m in markets:
            m._second(t)
            if (t // NS) % m.window_s == 0:
                m._roll(t)
    group.binance(t)
    for m in markets:
        m._books(t)


def _apply_record(w: Window, rec: dict, t_ns: int) -> None:
    """Give `w` the resolution an archive record holds (resolved once `t_ns` reaches its time),
    without books: the window is over, or was decided by an earlier run."""
    w.winner = rec["winner"]
    w.final_price = rec.get("final_price")
    w.price_to_beat = rec.get("price_to_beat")
    w.resolved_ns = rec["resolved_ns"]
    w.volume_centi = rec.get("volume_centi", 0)
    w.stopped_s = rec.get("stopped_s")
    w.resolved = t_ns >= w.resolved_ns
    w.up_bids.clear()
    w.up_asks.clear()


class SimMarket:
    """Seeded market generator of one series (`asset`, `window_label`; BTC 5m by default). All
    times are event-time nanoseconds supplied by the caller. Alone it owns its spot path;
    inside `SimMarkets` it shares the asset's path (`spot`) and the frame queue (`out`) with the
    other series, and `SimMarkets` drives it."""

    def __init__(
        self,
        seed: int,
        window_seconds: int = 300,
        start_ns: int = 0,
        *,
        book_ticker_hz: float = 100.0,
        clob_update_hz: float = CLOB_UPDATE_HZ,
        twap_lookback_s: int = TWAP_LOOKBACK_S,
        asset: str = "btc",
        window_label: str = "5m",
        group: SpotGroup | None = None,
    ) -> None:
        if window_seconds < 2:
            raise ValueError("window_seconds must be >= 2")
        self.seed = seed
        self.asset = asset
        self.label = window_label
        self.window_s = int(window_seconds)
        self.lookback_s = max(1, min(twap_lookback_s, self.window_s))
        self.clob_update_hz = clob_update_hz
        self._standalone = group is None
        if group is None:
            group = SpotGroup(seed, Emitter(), book_ticker_hz)
        self.group = group
        self.out = group.out
        self.spot = group.add(asset, self.lookback_s)
        self.spot.lookback_s = min(self.spot.lookback_s, self.lookback_s)
        self.spot.retain_s = max(self.spot.retain_s, self.lookback_s + 4 * self.window_s + 130)
        # Separate streams so changing one rate never changes the price path or the books.
        sfx = "" if self.key == "btc-5m" else f":{self.key}"
        self._clob_rng = random.Random(f"{seed}:clob{sfx}")
        # btc 5m draws its informed episodes where it always did (with the basis, in order)
        self._informed_rng = (
            self.spot._venue_rng if not sfx else random.Random(f"{seed}:informed{sfx}")
        )
        self._quoter_rng = random.Random(f"{seed}:quoters{sfx}")
        self.windows: dict[int, Window] = {}
        # what each ended window resolved to, by start (s): the venue keeps closed markets (real
        # Gamma answers `/markets/slug/{slug}` for them long after), so a window dropped from
        # `windows` (books and all) is rebuilt from this by `past_window`; `on_archive` (set by
        # SimMarkets) also writes each record to disk, so a restarted venue answers them too
        self.archive: dict[int, dict] = {}
        # windows an earlier run opened (its `open` records) that have no resolution record:
        # start (s) -> the record (`price_to_beat`); void once ended (`past_window`, `resume`)
        self.opened: dict[int, dict] = {}
        self.on_archive: Callable[[dict], None] | None = None
        self.resolve_delay_ns = 0  # the `late_resolution` fault: every resolution this much later
        self._quoter_log = self.spot.log_price
        self._quoter_noise = 0.0
        self._quoter_lag_s = sum(QUOTER_LAG_S) / 2
        self._quoter_vol_mult = 1.0
        self._quoter_basis_err = 0.0
        self._informed_until_ns = 0
        self._lead_steps = 0
        self._spread_ticks = 1
        self.quoter_noise_sd = QUOTER_NOISE_LOGIT  # /sim/market may raise it (bench: more edges)
        # user orders resting on the book (`rest`), and their fills waiting for the venue
        self.resting: dict[str, RestingOrder] = {}
        self.maker_fills: list[MakerFill] = []
        self._rest_seq = 0
        self.start_ns = start_ns
        self.t_ns = start_ns
        if not self._standalone:
            return  # SimMarkets warms it up and drives it
        # Warm up silently so the first window's price to beat (a TWAP ending at its start)
        # has history, while staying a pure function of seed and start time.
        self.t_ns = self.warm_start_ns(start_ns)
        self.out.enabled = False
        self.advance(start_ns)
        self.out.enabled = True
        self.out.heap.clear()
        self.push_books(start_ns)

    @property
    def key(self) -> str:
        """The series key, "btc-5m"."""
        return f"{self.asset}-{self.label}"

    def warm_start_ns(self, start_ns: int) -> int:
        """Where a silent warm-up to `start_ns` begins: the TWAP lookback before the current
        window's start, so its price to beat has history."""
        first_window = (start_ns // NS) // self.window_s * self.window_s
        return (first_window - self.lookback_s - 2) * NS

    def push_books(self, t_ns: int) -> None:
        """The current window's books as `book` frames at `t_ns` (after a warm-up)."""
        cur = self.current_window()
        if cur is not None:
            for token in cur.tokens:
                self._push(t_ns, "market:" + cur.condition_id, self.book_event(cur, token, t_ns))

    # ------------------------------------------------------------------ the spot path
    @property
    def log_price(self) -> float:
        return self.spot.log_price

    @property
    def btc_price(self) -> float:
        """The series' asset's spot price in USD (named when BTC was the only asset)."""
        return self.spot.price

    @property
    def price(self) -> float:
        return self.spot.price

    @property
    def basis(self) -> float:
        return self.spot.basis

    @property
    def basis_level(self) -> float:
        return self.spot.basis_level

    @property
    def chainlink(self) -> dict[int, float]:
        return self.spot.chainlink

    @property
    def chainlink_gaps(self) -> int:
        return self.spot.chainlink_gaps

    @property
    def _ahead(self) -> deque[float]:
        return self.spot._ahead

    @property
    def _heap(self) -> list[tuple[int, int, str, str]]:
        return self.out.heap

    @property
    def book_ticker_hz(self) -> float:
        return self.spot.book_ticker_hz

    @book_ticker_hz.setter
    def book_ticker_hz(self, hz: float) -> None:
        self.group.set_book_ticker_hz(hz)

    # ------------------------------------------------------------------ public API
    def advance(self, t_ns: int) -> list[Frame]:
        """Simulate up to `t_ns` and return the frames due by then, oldest first (a series
        inside `SimMarkets` is advanced by it)."""
        if not self._standalone:
            raise RuntimeError("a series of SimMarkets is advanced by SimMarkets.advance")
        while self.t_ns + TICK_NS <= t_ns:
            self.t_ns += TICK_NS
            step_all(self.group, (self,), self.t_ns)
        return self.out.due(t_ns)

    def window_at(self, t_ns: int) -> int:
        return (t_ns // NS) // self.window_s * self.window_s

    def current_window(self) -> Window | None:
        return self.windows.get(self.window_at(self.t_ns))

    def next_window(self) -> Window | None:
        return self.windows.get(self.window_at(self.t_ns) + self.window_s)

    def window_by_token(self, token: str) -> Window | None:
        for w in self.windows.values():
            if token in w.tokens:
                return w
        return None

    def window_by_condition(self, condition_id: str) -> Window | None:
        for w in self.windows.values():
            if w.condition_id == condition_id:
                return w
        return None

    def window_by_slug(self, slug: str) -> Window | None:
        for w in self.windows.values():
            if w.slug == slug:
                return w
        return None

    def past_window(self, start_s: int, t_ns: int) -> Window | None:
        """The ended window starting at `start_s` (s) as the venue still shows it at `t_ns` once
        its books are gone (dropped after a few windows, or a restart): rebuilt with the same
        ids (they are a function of seed, series and start) and the resolution it had
        (`archive`). One an earlier run opened and left without an outcome (killed while it
        ran) is void: it never resolves. One that ended while this venue did not run (no price
        path there) gets a fair coin drawn from seed, series and start, so every restart answers
        the same (not written down: the venue never ran it). A resolution
        resolves `min(54 s, 15 % of the window)` after its end, as `_roll` schedules it (a real
        5-minute market resolved 54 s after its end: PROTOCOLS.md section 7). None for a start
        not on this series' grid or a window not ended by `t_ns`."""
        w = self.windows.get(start_s)
        if w is not None:
            return w
        end_s = start_s + self.window_s
        if start_s < 0 or start_s % self.window_s or end_s * NS > t_ns:
            return None
        w = Window(start_s, end_s, self.seed, self.lookback_s, asset=self.asset, label=self.label)
        rec = self.archive.get(start_s)
        if rec is None and start_s in self.opened:
            # an earlier run opened it and was killed before it ended: no path, no outcome
            w.void = True
            w.price_to_beat = self.opened[start_s].get("price_to_beat")
            return w
        if rec is None:
            salt: tuple = (self.seed,) if self.key == "btc-5m" else (self.seed, self.key)
            delay_s = int(min(54.0, 0.15 * self.window_s))
            rec = {
                "winner": "Up" if _h(*salt, start_s, "winner")[0] < 128 else "Down",
                "resolved_ns": (end_s + max(1, delay_s)) * NS + self.resolve_delay_ns,
            }
        _apply_record(w, rec, t_ns)
        return w

    def is_trading(self, w: Window, t_ns: int) -> bool:
        """Orders are accepted from listing (one window ahead) until the window ends."""
        return t_ns < w.end_s * NS and w.start_s in self.windows

    def twap(self, end_s: int) -> float | None:
        """The settlement TWAP (this series' lookback) ending at `end_s`; None without history."""
        return self.spot.twap(end_s, self.lookback_s)

    def book_event(self, w: Window, token: str, t_ns: int) -> str:
        bids, asks = w.levels(token)
        ltp = w.last_trade.get(token, 500)
        return _dumps(
            {
                "market": w.condition_id,
                "asset_id": token,
                "timestamp": str(t_ns // MS),
                "hash": self._hash(token, t_ns),
                # Best level LAST on both sides, as the venue sends it.
                "bids": [{"price": fmt_price(p), "size": fmt_size(bids[p])} for p in sorted(bids)],
                "asks": [
                    {"price": fmt_price(p), "size": fmt_size(asks[p])}
                    for p in sorted(asks, reverse=True)
                ],
                "tick_size": fmt_tick(w.tick),
                "event_type": "book",
                "last_trade_price": f"{ltp / 1000:.3f}",
            }
        )

    def rest_book(self, w: Window, token: str, t_ns: int) -> dict:
        """The CLOB REST `GET /book` shape."""
        d = json.loads(self.book_event(w, token, t_ns))
        d.pop("event_type")
        return {
            "market": d["market"],
            "asset_id": token,
            "timestamp": d["timestamp"],
            "hash": d["hash"],
            "bids": d["bids"],
            "asks": d["asks"],
            "min_order_size": "5",
            "tick_size": d["tick_size"],
            "neg_risk": False,
            "last_trade_price": d["last_trade_price"],
        }

    def force_tick_size_change(self, t_ns: int, new_tick: int | None = None) -> dict | None:
        """Fault hook: change the current market's tick size now (0.01 <-> 0.001) and pin it.

        Returns which market changed and how: `{"slug", "condition_id", "up_token",
        "old_tick_size", "new_tick_size"}` (ticks as decimal strings), or None when there is no
        current market. The quoter changes ticks by itself too (beyond 0.965 / 0.035), so the
        tick read before the fault is not necessarily the one the fault flipped."""
        w = self.current_window()
        if w is None:
            return None
        old = w.tick
        w.tick_pinned = True
        self._change_tick(w, new_tick or (1 if w.tick == 10 else 10), t_ns)
        return {
            "slug": w.slug,
            "condition_id": w.condition_id,
            "up_token": w.up_token,
            "old_tick_size": fmt_tick(old),
            "new_tick_size": fmt_tick(w.tick),
        }

    # ------------------------------------------------------------------ resting user orders
    def crosses(self, token: str, side: str, price: int) -> bool:
        """True when a limit `side` order of `token` at `price` (milli) would match the quoters'
        book at once: a BUY at or above the best ask, a SELL at or below the best bid (the test
        behind the venue's "invalid post-only order: order crosses book")."""
        w = self.window_by_token(token)
        if w is None:
            return False
        bb, ba = w.best(token)
        if side == "BUY":
            return ba is not None and price >= ba
        return bb is not None and price <= bb

    def rest(self, order_id: str, token: str, side: str, price: int, centi: int) -> RestingOrder:
        """Put `centi` shares of a user's limit order at `price` (milli, `token` terms) on the
        book, at the back of its level. Raises ValueError for an unknown token, a bad side, or a
        non-positive size."""
        w = self.window_by_token(token)
        if w is None:
            raise ValueError(f"unknown token {token!r}")
        if side not in ("BUY", "SELL") or centi <= 0:
            raise ValueError(f"bad resting order: side {side!r}, size {centi} centi-shares")
        self._rest_seq += 1
        o = RestingOrder(order_id, token, side, price, centi, 0, w.start_s, self._rest_seq)
        book, p_up = self._rest_level(w, o)
        o.ahead = book.get(p_up, 0)
        self._show(w, book is w.up_bids, p_up, centi)
        self.resting[order_id] = o
        return o

    def unrest(self, order_id: str) -> RestingOrder | None:
        """Take a resting order off the book (cancelled, expired); None when it is not there."""
        o = self.resting.pop(order_id, None)
        w = self.windows.get(o.window_start) if o is not None else None
        if o is not None and w is not None:
            book, p_up = self._rest_level(w, o)
            self._show(w, book is w.up_bids, p_up, -o.remaining)
        return o

    def _show(self, w: Window, bids: bool, p_up: int, delta: int) -> None:
        """Change the users' displayed size at `p_up` by `delta` centi-shares and publish the
        level (a `price_change` with the quoters' size plus the users')."""
        shown = w.user_bids if bids else w.user_asks
        shown[p_up] = shown.get(p_up, 0) + delta
        if shown[p_up] <= 0:
            del shown[p_up]
        sim = (w.up_bids if bids else w.up_asks).get(p_up, 0)
        self._push_changes(w, [(p_up, "BUY" if bids else "SELL", sim)], self.t_ns)

    @staticmethod
    def _rest_level(w: Window, o: RestingOrder) -> tuple[dict[int, int], int]:
        """The Up-book side a resting order sits on and its price there: a BUY Up is an Up bid,
        a BUY Down at q an Up ask at 1 - q (the Down book is the Up book's mirror)."""
        is_up = o.token == w.up_token
        book = w.up_bids if (o.side == "BUY") == is_up else w.up_asks
        return book, (o.price if is_up else 1000 - o.price)

    def _maker_fill(
        self, o: RestingOrder, centi: int, t: int, taker_token: str, taker_side: str, tp: int
    ) -> None:
        o.remaining -= centi
        self.maker_fills.append(
            MakerFill(o.order_id, centi, o.price, taker_token, taker_side, tp, t)
        )
        w = self.windows.get(o.window_start)
        if w is not None:
            book, p_up = self._rest_level(w, o)
            self._show(w, book is w.up_bids, p_up, -centi)
        if o.remaining <= 0:
            self.resting.pop(o.order_id, None)

    def _refresh_resting(self, w: Window, t: int) -> None:
        """After the quoters changed `w`'s book: the queue ahead of each resting order is at most
        its level's size now (0 when the level went away), and an order the quoters' own best
        price has moved through (a bid at or above our ask, an ask at or below our bid) is taken
        whole at its price, as their marketable order would take it on the venue."""
        mine = sorted(
            (o for o in self.resting.values() if o.window_start == w.start_s),
            key=lambda o: o.seq,
        )
        for o in mine:
            book, p_up = self._rest_level(w, o)
            o.ahead = min(o.ahead, book.get(p_up, 0))
            if book is w.up_bids:
                through = bool(w.up_asks) and min(w.up_asks) <= p_up
                taker_side = "SELL"  # a quoter sells Up into our Up bid
            else:
                through = bool(w.up_bids) and max(w.up_bids) >= p_up
                taker_side = "BUY"
            if not through:
                continue
            size = o.remaining
            self._maker_fill(o, size, t, w.up_token, taker_side, p_up)
            w.volume_centi += size
            w.last_trade[w.up_token] = p_up
            w.last_trade[w.down_token] = 1000 - p_up
            self._push(
                t,
                "market:" + w.condition_id,
                _dumps(
                    {
                        "market": w.condition_id,
                        "asset_id": w.up_token,
                        "price": fmt_price(p_up),
                        "size": fmt_size(size),
                        "fee_rate_bps": "0",
                        "side": taker_side,
                        "timestamp": str(t // MS),
                        "event_type": "last_trade_price",
                        "transaction_hash": "0x" + _h(self.seed, o.order_id, t, "tx").hex(),
                    }
                ),
            )

    def flow_trade_through(self, order_id: str, t_ns: int) -> TakeResult:
        """A test control (`/sim/fault {"name": "flow_trade", "order_id": ...}`): one taker order
        of the simulated flow that trades through resting order `order_id` under the venue's own
        rules: the opposite side of the order's token, FAK, limited at the order's price, sized
        at every share shown from the best price down to the order's price (quoters' and users',
        ahead of it and behind it), so price-time priority fills those ahead first and the order
        whole. Nothing is manufactured: it is the same `take(..., flow=True)` as the flow's own
        takers (`_clob`), only its timing is chosen. Raises ValueError for an order not resting
        here."""
        o = self.resting.get(order_id)
        w = self.windows.get(o.window_start) if o is not None else None
        if o is None or w is None:
            raise ValueError(f"order {order_id!r} is not resting on the simulated book")
        book, p_up = self._rest_level(w, o)
        users = w.user_bids if book is w.up_bids else w.user_asks
        better = (lambda p: p >= p_up) if book is w.up_bids else (lambda p: p <= p_up)
        centi = sum(c for p, c in book.items() if better(p))
        centi += sum(c for p, c in users.items() if better(p))
        side = "SELL" if o.side == "BUY" else "BUY"
        res = self.take(o.token, side, o.price, 1000, centi * 10_000, False, "FAK", t_ns, flow=True)
        if order_id in self.resting:  # cannot happen under price-time priority: say so loudly
            raise ValueError(f"order {order_id!r} still rests after a flow trade through it")
        return res

    def take(
        self,
        token: str,
        side: str,
        limit_num: int,
        limit_den: int,
        amount: int,
        by_collateral: bool,
        kind: str,
        t_ns: int,
        flow: bool = False,
    ) -> TakeResult:
        """Match a taker order against the book at event time `t_ns`, with the paper executor's
        own matching (`common.money.fill_marketable`: best level first, the maker's price, whole
        hundredths of a share, the market's taker fee per level), so venue and paper agree.

        Price limit is `limit_num / limit_den` (collateral per share). `amount` is micro-units of
        collateral to spend when `by_collateral` (FOK/FAK BUY), else micro-shares. `kind` is FOK
        (all or nothing), FAK (fill what is there) or GTC/GTD (the caller rests the rest).
        Book changes are queued as price_change / last_trade_price frames at `t_ns`.
        `flow`: the taker is the simulated market's own flow, which also trades with the users'
        resting orders on that side in price-time priority (`RestingOrder`; their fills go to
        `maker_fills`); a user's own taker order never matches resting user orders.
        """
        w = self.window_by_token(token)
        if w is None or amount <= 0:
            return TakeResult([], "unmatched")
        is_up = token == w.up_token
        buy = side == "BUY"
        # The Up-book side this order consumes, and how to map prices between the two tokens.
        book = w.up_asks if (buy == is_up) else w.up_bids

        def own(p_up: int) -> int:
            return p_up if is_up else 1000 - p_up

        queues: dict[int, list[RestingOrder]] = {}
        if flow and self.resting:
            for o in sorted(self.resting.values(), key=lambda o: o.seq):
                if o.window_start == w.start_s:
                    level, p_up = self._rest_level(w, o)
                    if level is book:
                        queues.setdefault(p_up, []).append(o)
        depth = dict(book)
        for p_up, q in queues.items():
            depth[p_up] = depth.get(p_up, 0) + sum(o.remaining for o in q)
        levels = [
            (Decimal(own(p)) / 1000, Decimal(depth[p]) / 100)
            for p in sorted(depth, key=own, reverse=not buy)
        ]
        res = money.fill_marketable(
            "BUY" if buy else "SELL",
            Decimal(amount) / UNITS,
            Decimal(limit_num) / limit_den,
            levels,
            SIM_FEE,
            "FOK" if kind == "FOK" else "FAK",
            buy_in_shares=not by_collateral,
        )
        if res.status == "unmatched":
            return TakeResult([], "unmatched")
        if res.status == "killed":
            return TakeResult([], "killed")
        plan = [(own(int(t.price * 1000)), int(t.shares * 100)) for t in res.trades]
        filled = sum(c for _, c in plan)
        changes = []
        fills = []
        cost = 0
        for p_up, c in plan:
            sim_c = c
            if p_up in queues:  # the level's queue in order: quoters ahead, us, quoters behind
                sim_c, left = 0, c
                for o in queues[p_up]:
                    gap = max(0, o.ahead - sim_c)
                    sim_c += min(left, gap)
                    left -= min(left, gap)
                    if left <= 0:
                        break
                    mine = min(left, o.remaining)
                    left -= mine
                    self._maker_fill(o, mine, t_ns, token, side, own(p_up))
                sim_c += left
                for o in queues[p_up]:
                    o.ahead = max(0, o.ahead - sim_c)
            if sim_c:
                book[p_up] = book.get(p_up, 0) - sim_c
                if book[p_up] <= 0:
                    del book[p_up]
            p = own(p_up)
            fills.append((p, c))
            cost += p * c * 10
            changes.append((p_up, "BUY" if book is w.up_bids else "SELL", book.get(p_up, 0)))
        w.volume_centi += filled
        last_p = fills[-1][0]
        w.last_trade[token] = last_p
        other = w.down_token if is_up else w.up_token
        w.last_trade[other] = 1000 - last_p
        self._push_changes(w, changes, t_ns)
        if self.resting:
            self._refresh_resting(w, t_ns)
        self._push(
            t_ns,
            "market:" + w.condition_id,
            _dumps(
                {
                    "market": w.condition_id,
                    "asset_id": token,
                    "price": fmt_price(last_p),
                    "size": fmt_size(filled),
                    "fee_rate_bps": "0",
                    "side": side,
                    "timestamp": str(t_ns // MS),
                    "event_type": "last_trade_price",
                    "transaction_hash": "0x" + _h(self.seed, token, t_ns, "tx").hex(),
                }
            ),
        )
        return TakeResult(fills, "matched", filled, cost, int(res.fee * UNITS))

    def state(self) -> dict:
        """The venue's true state, for tests and `/sim/state`."""

        def market(w: Window | None) -> dict | None:
            if w is None:
                return None
            books = {}
            for token in w.tokens:
                bids, asks = w.levels(token)
                bb, ba = w.best(token)
                books[token] = {
                    "outcome": w.outcome_of(token),
                    "best_bid": fmt_price(bb) if bb is not None else None,
                    "best_ask": fmt_price(ba) if ba is not None else None,
                    "bids": [[fmt_price(p), fmt_size(bids[p])] for p in sorted(bids, reverse=True)],
                    "asks": [[fmt_price(p), fmt_size(asks[p])] for p in sorted(asks)],
                }
            return {
                "slug": w.slug,
                "condition_id": w.condition_id,
                "start": w.start_s,
                "end": w.end_s,
                "tick_size": fmt_tick(w.tick),
                "up_token": w.up_token,
                "down_token": w.down_token,
                "price_to_beat": w.price_to_beat,
                "final_price": w.final_price,
                "winner": w.winner,
                "resolved": w.resolved,
                "stopped_s": w.stopped_s,
                "void": w.void,
                "books": books,
            }

        return {
            "t_ns": self.t_ns,
            "seed": self.seed,
            "window_seconds": self.window_s,
            "twap_lookback_seconds": self.lookback_s,
            "btc_price": round(self.btc_price, 2),
            "series": self.key,
            "asset": self.asset,
            "price": round(self.price, self.spot.decimals),
            "current": market(self.current_window()),
            "next": market(self.next_window()),
            "windows": sorted(self.windows),
        }

    # ------------------------------------------------------------------ internals
    def _push(self, ts: int, channel: str, frame: str) -> None:
        self.out.push(ts, channel, frame)

    def _hash(self, token: str, t_ns: int) -> str:
        self.out.seq += 1
        return hashlib.sha1(f"{token}:{t_ns}:{self.out.seq}".encode()).hexdigest()

    def _quote(self, t: int) -> None:
        """The quoters' step (after the prices moved): their view of the asset."""
        dt = DT
        self.t_ns = t
        # Quoters chase their own view of the asset: lagging Binance, or (informed) leading it.
        qr = self._quoter_rng
        ir = self._informed_rng
        if t >= self._informed_until_ns and ir.random() < INFORMED_RATE_PER_S * dt:
            self._informed_until_ns = t + int(ir.uniform(*INFORMED_DURATION_S) * NS)
            self._lead_steps = ir.randint(*INFORMED_LEAD_STEPS)
        informed = t < self._informed_until_ns
        target = self._ahead[self._lead_steps - 1] if informed else self.log_price
        # informed quoters act at once on what they know; otherwise they trail Binance
        a = min(1.0, dt / (INFORMED_REACT_S if informed else self._quoter_lag_s))
        self._quoter_log += a * (target - self._quoter_log)
        self._quoter_noise += -0.2 * self._quoter_noise * dt + self.quoter_noise_sd * math.sqrt(
            dt
        ) * qr.gauss(0, 1)

    def _books(self, t: int) -> None:
        if not self.out.skipping:  # a fast warm-up needs the path and the windows, not books
            self._clob(t, DT)

    def _second(self, t: int) -> None:
        if not self._standalone:
            cur = self.current_window()
            if cur is not None and cur.price_to_beat is None:
                # listed before its asset's path had a settlement value (added while running)
                cur.price_to_beat = self.spot.first_chainlink()
        err_sd = QUOTER_BASIS_ERR_SD_USD * self.spot.usd_scale
        self._quoter_basis_err += -0.01 * self._quoter_basis_err + err_sd * (
            math.sqrt(0.02) * self._quoter_rng.gauss(0.0, 1.0)
        )
        if self._quoter_rng.random() < SPREAD_REDRAW_PER_S:
            r, acc = self._quoter_rng.random(), 0.0
            for ticks, share in SPREAD_TICKS:
                acc += share
                if r < acc:
                    self._spread_ticks = ticks
                    break
        self._resolutions(t)

    def _resolutions(self, t: int) -> None:
        """Resolutions due this second."""
        for w in self.windows.values():
            if not w.resolved and w.final_price is not None and t >= w.resolved_ns:
                w.resolved = True
                win = w.up_token if w.winner == "Up" else w.down_token
                self._push(
                    t,
                    "market:" + w.condition_id,
                    _dumps(
                        {
                            "event_type": "market_resolved",
                            "id": w.market_id,
                            "market": w.condition_id,
                            "assets_ids": list(w.tokens),
                            "winning_asset_id": win,
                            "winning_outcome": w.winner,
                            "timestamp": str(t // MS),
                            "tags": ["crypto", "up-or-down"],
                        }
                    ),
                )

    def _resolve_at(self, end_ns: int) -> int:
        """When a window ending at `end_ns` resolves: `min(54 s, 15 %)` later, whole seconds
        (at least 1 s), plus the `late_resolution` fault's delay."""
        at = end_ns + int(min(54.0, 0.15 * self.window_s) * NS) // NS * NS
        return max(at, end_ns + NS) + self.resolve_delay_ns

    def _record(self, w: Window, **extra: object) -> dict:
        """`w`'s resolution record (archive and file), from its fields."""
        return {
            "key": self.key,
            "window_s": self.window_s,
            "start_s": w.start_s,
            "winner": w.winner,
            "final_price": w.final_price,
            "price_to_beat": w.price_to_beat,
            "resolved_ns": w.resolved_ns,
            "volume_centi": w.volume_centi,
            **extra,
        }

    def _keep(self, rec: dict) -> None:
        """Remember a resolution this run decided, and write it down (`on_archive`)."""
        self.archive[rec["start_s"]] = rec
        if len(self.archive) > ARCHIVE_MAX:
            del self.archive[min(self.archive)]
        if self.on_archive is not None:
            self.on_archive(rec)

    def _roll(self, t: int, live: bool | None = None) -> None:
        s = t // NS
        # the silent warm-up (emission off) computes windows that ended before this run
        # started: never written down (`resume` replaces them by what the archive says)
        live = self.out.enabled if live is None else live
        ended = self.windows.get(s - self.window_s)
        if ended is not None and ended.final_price is None and not ended.void:
            kept = self.archive.get(ended.start_s)
            if kept is not None:
                # decided already (an earlier run stopped during it): one outcome per window
                _apply_record(ended, kept, t)
            else:
                ended.final_price = self.twap(s)
                if ended.final_price is not None and ended.price_to_beat is not None:
                    ended.winner = "Up" if ended.final_price >= ended.price_to_beat else "Down"
                else:
                    ended.winner = "Up"
                ended.resolved_ns = self._resolve_at(t)
                if live:
                    self._keep(self._record(ended))
        # each window, the quoters' own model: how far behind Binance they run, their vol
        qr = self._quoter_rng
        self._quoter_lag_s = qr.uniform(*QUOTER_LAG_S)
        self._quoter_vol_mult = qr.uniform(*QUOTER_VOL_MULT)
        cur = self.windows.get(s)
        if cur is None:
            cur = self._list(s, t)
        cur.price_to_beat = self.twap(s)
        if cur.price_to_beat is None and not self._standalone and s * NS <= self.t_ns:
            # a series added while running, on an asset with no history before: the first
            # settlement value there is stands in (the window's start was before its path)
            cur.price_to_beat = self.spot.first_chainlink()
        cur.ptb_public_ns = t + int(min(60.0, max(1.0, 0.2 * self.window_s)) * NS)
        if live:
            self._opening(cur)
        self._requote(cur, t, full=True)
        for token in cur.tokens:
            self._push(t, "market:" + cur.condition_id, self.book_event(cur, token, t))
        self._list(s + self.window_s, t)
        for start in [k for k in self.windows if k < s - 4 * self.window_s - 120]:
            del self.windows[start]

    def _opening(self, w: Window) -> None:
        """This run opens `w` (its price to beat is published from now): an `open` record, so a
        restarted venue knows an earlier run ran part of it (void if no outcome follows)."""
        if self.on_archive is not None and w.start_s not in self.archive:
            self.on_archive(
                {
                    "key": self.key,
                    "window_s": self.window_s,
                    "start_s": w.start_s,
                    "open": True,
                    "price_to_beat": w.price_to_beat,
                }
            )

    def resume(self, t_ns: int) -> None:
        """After the silent warm-up to `t_ns` (this run's start): windows that ended by then are
        what the archive says (`past_window`: the earlier run's resolution, void, or the seeded
        coin), never this run's warm-up path; the current window, when an earlier run stopped
        during it, keeps that run's outcome (`stopped_s`) or is void (killed: none recorded),
        and is neither quoted nor traded; otherwise this run opens it (`_opening`)."""
        for start in [k for k, w in self.windows.items() if w.end_s * NS <= t_ns]:
            del self.windows[start]
            past = self.past_window(start, t_ns)
            if past is not None:  # kept, so its market_resolved still goes out when due
                self.windows[start] = past
        cur = self.current_window()
        if cur is None:
            return
        rec = self.archive.get(cur.start_s)
        if rec is not None:
            _apply_record(cur, rec, t_ns)
            cur.stopped_s = rec.get("stopped_s", cur.start_s)
        elif cur.start_s in self.opened:
            cur.void = True
            cur.price_to_beat = self.opened[cur.start_s].get("price_to_beat")
        else:
            self._opening(cur)
            return
        cur.up_bids.clear()
        cur.up_asks.clear()

    def stop(self, t_ns: int) -> dict | None:
        """The venue stops at `t_ns` (this run's last simulated time) during its current
        window: that window's outcome is fixed now, from the prices so far (the settlement
        TWAP ending at the last whole second against its price to beat), and written down, so a
        restarted venue resolves it once, that way, at its usual time; the real venue would
        have resolved it from its whole path, which no later run has. Returns the record, or
        None (no current window, decided already, or no price to beat: void on a restart)."""
        w = self.current_window()
        if w is None or w.halted or w.final_price is not None or w.start_s in self.archive:
            return None
        t_s = min(t_ns, self.t_ns) // NS
        final = self.twap(t_s)
        if final is None or w.price_to_beat is None:
            return None
        w.final_price = final
        w.winner = "Up" if final >= w.price_to_beat else "Down"
        w.resolved_ns = self._resolve_at(w.end_s * NS)
        w.stopped_s = t_s
        rec = self._record(w, stopped_s=t_s)
        self._keep(rec)
        return rec

    def _list(self, start_s: int, t: int) -> Window:
        w = self.windows.get(start_s)
        if w is not None:
            return w
        w = Window(
            start_s,
            start_s + self.window_s,
            self.seed,
            self.lookback_s,
            asset=self.asset,
            label=self.label,
        )
        self.windows[start_s] = w
        # Listed ahead with a static book around even odds until its window opens.
        rng = random.Random(f"{self.seed}:list:{start_s}")
        for i in range(BOOK_LEVELS):
            if 490 - 10 * i >= 10:
                w.up_bids[490 - 10 * i] = self._level_size(rng, i)
            if 510 + 10 * i <= 990:
                w.up_asks[510 + 10 * i] = self._level_size(rng, i)
        self._push(
            t,
            "market",
            _dumps(
                {
                    "event_type": "new_market",
                    "id": w.market_id,
                    "question": f"{asset_name(self.asset)} Up or Down - {iso(start_s)} to "
                    f"{iso(w.end_s)}",
                    "market": w.condition_id,
                    "slug": w.slug,
                    "description": f"Simulated. Resolves Up if the Chainlink {self.asset.upper()}"
                    "/USD TWAP at the end of the window is >= the price at its start.",
                    "assets_ids": list(w.tokens),
                    "outcomes": ["Up", "Down"],
                    "event_message": {
                        "id": w.event_id,
                        "ticker": w.slug,
                        "slug": w.slug,
                        "title": f"{asset_name(self.asset)} Up or Down {w.slug}",
                        "description": "",
                    },
                    "timestamp": str(t // MS),
                    "tags": ["crypto", "up-or-down"],
                    "condition_id": w.condition_id,
                    "active": True,
                    "clob_token_ids": list(w.tokens),
                    "sports_market_type": "",
                    "line": "",
                    "game_start_time": "",
                    "order_price_min_tick_size": fmt_tick(w.tick),
                    "group_item_title": "Up",
                }
            ),
        )
        return w

    @staticmethod
    def _level_size(rng: random.Random, i: int) -> int:
        """Centi-shares at the i-th level from the best (lognormal, deeper levels larger)."""
        shares = TOP_SIZE_SHARES * (1 + LEVEL_GROWTH * i) * math.exp(rng.gauss(0.0, SIZE_LOG_SD))
        return max(500, int(shares * 100))

    def fair_up(
        self,
        w: Window,
        t: int,
        log_price: float | None = None,
        vol_mult: float = 1.0,
        basis_usd: float = 0.0,
    ) -> float:
        """Probability of Up from a view of the asset (`log_price`, Binance units; default the
        quoters' view), settling on Chainlink = Binance - `basis_usd`, under the venue's own
        process: diffusion at `vol_mult` times the path's volatility PLUS its jumps (a Poisson
        mixture over the number of jumps left, each moving the remaining TWAP samples). This
        is not the trading model's formula (services/signal/model.py prices the diffusion alone,
        with its own vol estimate and fitted scale): the books follow the venue's process, so a
        model gets no edge by construction, only what it can find."""
        lp = self._quoter_log if log_price is None else log_price
        k = w.price_to_beat
        if k is None:
            return 0.5
        s_now = math.exp(lp) - basis_usd
        now_s = t / NS
        end = w.end_s
        # the settlement ticks in (end - lookback, now], oldest first: looked up by second
        # rather than by scanning the whole kept history (the dict holds ~4 windows of it)
        lo, hi = math.floor(end - self.lookback_s) + 1, math.floor(now_s)
        cl = self.chainlink
        if hi - lo < len(cl):
            known = [v for v in map(cl.get, range(lo, hi + 1)) if v is not None]
        else:
            known = [v for sec, v in cl.items() if lo <= sec <= hi]
        rem = self.lookback_s - len(known)
        expected = (sum(known) + rem * s_now) / self.lookback_s
        before = max(0.0, (end - self.lookback_s) - now_s)
        std = (
            s_now
            * vol_mult
            * self.spot.sigma
            * math.sqrt(before + rem / 3.0)
            * (rem / self.lookback_s)
        )
        # jumps: rate per second and log size (the leader's own; another asset has its own
        # jumps and the leader's, scaled by its loading, PriceGroup.move/SpotPath.draw)
        spot = self.spot
        leader = spot.asset == "btc"
        rate = JUMP_RATE_PER_S * (1.0 if leader else 2.0)
        lead_sigma = ASSETS["btc"][2] / math.sqrt(365 * 24 * 3600)
        scale2 = 1.0 if leader else (1.0 + (spot.beta * spot.sigma / lead_sigma) ** 2) / 2.0
        mean_jumps = rate * (before + rem / 3.0)  # mean-square weight of a jump on the TWAP
        jump_var = (s_now * (rem / self.lookback_s)) ** 2 * JUMP_LOG_SIGMA**2 * scale2
        if std <= 1e-9 and (mean_jumps <= 0.0 or jump_var <= 0.0):
            return 1.0 if expected >= k else 0.0
        d = expected - k
        w0 = math.exp(-mean_jumps)
        p, wsum, wn = 0.0, 0.0, w0
        for n in range(4):  # P(4+ jumps left) < 1e-4 with at most ~0.4 expected
            if n:
                wn *= mean_jumps / n
            sd = math.sqrt(std * std + n * jump_var)
            p += wn * (_norm_cdf(d / sd) if sd > 1e-9 else (1.0 if d >= 0 else 0.0))
            wsum += wn
        return p / wsum

    def _clob(self, t: int, dt: float) -> None:
        w = self.current_window()
        if w is None or t >= w.end_s * NS:
            return
        if w.halted:
            # decided by an earlier run (`resume`): nobody quotes it; its empty books every 3 s,
            # as the venue's periodic `book` frames, so a client's market feed is not silent
            if t % (3 * NS) < TICK_NS:
                for token in w.tokens:
                    self._push(t, "market:" + w.condition_id, self.book_event(w, token, t))
            return
        rng = self._clob_rng
        for _ in range(_events(rng, self.clob_update_hz * dt)):
            if rng.random() < REQUOTE_SHARE:
                self._requote(w, t, full=False)
            else:
                self._jiggle(w, t)
        if rng.random() < CLOB_TRADE_HZ * dt:
            token = w.tokens[rng.random() < 0.5]
            side = "BUY" if rng.random() < 0.5 else "SELL"
            size = rng.randint(500, 8000) * 10_000  # micro-shares
            lim = (999, 1000) if side == "BUY" else (1, 1000)
            self.take(token, side, lim[0], lim[1], size, False, "FAK", t, flow=True)
        if rng.random() < CLOB_BOOK_HZ * dt:
            for token in w.tokens:
                self._push(t, "market:" + w.condition_id, self.book_event(w, token, t))

    def _target(self, w: Window, t: int) -> tuple[int, int]:
        # the quoters' own estimate: their view of BTC, their vol, their basis estimate
        p = self.fair_up(
            w, t, self._quoter_log, self._quoter_vol_mult, self.basis + self._quoter_basis_err
        )
        p = min(max(p, 1e-4), 1 - 1e-4)
        logit = math.log(p / (1 - p)) + self._quoter_noise
        p = 1 / (1 + math.exp(-logit))
        if w.tick_pinned:
            pass
        elif w.tick == 10 and (p > 0.965 or p < 0.035):
            self._change_tick(w, 1, t)
        elif w.tick == 1 and 0.05 < p < 0.95:
            self._change_tick(w, 10, t)
        tick = w.tick
        spread_ticks = self._spread_ticks
        half = spread_ticks * tick / 2
        bid = int(math.floor((p * 1000 - half) / tick)) * tick
        bid = min(max(bid, tick), 1000 - 2 * tick)
        ask = min(bid + spread_ticks * tick, 1000 - tick)
        return bid, ask

    def _requote(self, w: Window, t: int, full: bool) -> None:
        bid, ask = self._target(w, t)
        cur_bid = max(w.up_bids) if w.up_bids else None
        cur_ask = min(w.up_asks) if w.up_asks else None
        if not full and cur_bid == bid and cur_ask == ask:
            self._jiggle(w, t)
            return
        rng = self._clob_rng
        tick = w.tick
        new_bids = {}
        new_asks = {}
        for i in range(BOOK_LEVELS):
            pb = bid - i * tick
            pa = ask + i * tick
            if pb >= tick:
                new_bids[pb] = w.up_bids.get(pb) or self._level_size(rng, i)
            if pa <= 1000 - tick:
                new_asks[pa] = w.up_asks.get(pa) or self._level_size(rng, i)
        changes = []
        for side, old, new in (("BUY", w.up_bids, new_bids), ("SELL", w.up_asks, new_asks)):
            for p in sorted(set(old) | set(new)):
                if old.get(p) != new.get(p):
                    changes.append((p, side, new.get(p, 0)))
        w.up_bids, w.up_asks = new_bids, new_asks
        if changes and not full:
            self._push_changes(w, changes, t)
        if self.resting:
            self._refresh_resting(w, t)

    def _jiggle(self, w: Window, t: int) -> None:
        rng = self._clob_rng
        side = "BUY" if rng.random() < 0.5 else "SELL"
        book = w.up_bids if side == "BUY" else w.up_asks
        if not book:
            return
        prices = sorted(book, reverse=(side == "BUY"))
        rank = min(int(rng.expovariate(1 / 3.0)), len(prices) - 1)
        p = prices[rank]
        book[p] = self._level_size(rng, rank)  # a fresh size: sizes do not drift over a window
        self._push_changes(w, [(p, side, book[p])], t)
        if self.resting:
            self._refresh_resting(w, t)

    def _push_changes(self, w: Window, changes: list[tuple[int, str, int]], t: int) -> None:
        """One `price_change` frame (current format) for Up-book changes, mirrored onto Down."""
        entries = []
        ub, ua = w.best(w.up_token)
        # the Down book is the Up book's mirror (Window.best)
        db = 1000 - ua if ua is not None else None
        da = 1000 - ub if ub is not None else None

        def b(x: int | None) -> str:
            return fmt_price(x) if x is not None else "0"

        users = w.user_bids or w.user_asks
        for p, side, size in changes:
            if users:  # the level as displayed: the users' resting size too
                size += (w.user_bids if side == "BUY" else w.user_asks).get(p, 0)
            entries.append(
                {
                    "asset_id": w.up_token,
                    "price": fmt_price(p),
                    "side": side,
                    "size": fmt_size(size),
                    "hash": self._hash(w.up_token, t),
                    "best_bid": b(ub),
                    "best_ask": b(ua) if ua is not None else "1",
                }
            )
            entries.append(
                {
                    "asset_id": w.down_token,
                    "price": fmt_price(1000 - p),
                    "side": "SELL" if side == "BUY" else "BUY",
                    "size": fmt_size(size),
                    "hash": self._hash(w.down_token, t),
                    "best_bid": b(db),
                    "best_ask": b(da) if da is not None else "1",
                }
            )
        ch = "market:" + w.condition_id
        self._push(
            t,
            ch,
            _dumps(
                {
                    "market": w.condition_id,
                    "price_changes": entries,
                    "timestamp": str(t // MS),
                    "event_type": "price_change",
                }
            ),
        )
        # best_bid_ask only when the top of book moves, as with custom_feature_enabled.
        if (ub, ua) != w.last_bba:
            w.last_bba = (ub, ua)
            for token, (bb, ba) in ((w.up_token, (ub, ua)), (w.down_token, (db, da))):
                self._push(
                    t,
                    ch,
                    _dumps(
                        {
                            "market": w.condition_id,
                            "asset_id": token,
                            "best_bid": b(bb),
                            "best_ask": b(ba),
                            "spread": fmt_price((ba or 0) - (bb or 0)),
                            "timestamp": str(t // MS),
                            "event_type": "best_bid_ask",
                        }
                    ),
                )

    def _change_tick(self, w: Window, new_tick: int, t: int) -> None:
        if new_tick == w.tick:
            return
        old = w.tick
        w.tick = new_tick
        # Snap every level onto the new grid (sizes on merged levels add up).
        for attr, rounder in (("up_bids", math.floor), ("up_asks", math.ceil)):
            snapped: dict[int, int] = {}
            for p, s in getattr(w, attr).items():
                q = int(rounder(p / new_tick)) * new_tick
                q = min(max(q, new_tick), 1000 - new_tick)
                snapped[q] = snapped.get(q, 0) + s
            setattr(w, attr, snapped)
        if self.resting:
            self._refresh_resting(w, t)
        ch = "market:" + w.condition_id
        for token in w.tokens:
            self._push(
                t,
                ch,
                _dumps(
                    {
                        "event_type": "tick_size_change",
                        "asset_id": token,
                        "market": w.condition_id,
                        "old_tick_size": fmt_tick(old),
                        "new_tick_size": fmt_tick(new_tick),
                        "timestamp": str(t // MS),
                    }
                ),
            )
        for token in w.tokens:
            self._push(t, ch, self.book_event(w, token, t))


MAX_WARMUP_S = 1_200  # a longer window's first price to beat comes from the path's first second


class SimMarkets:
    """Any number of series (`(asset, window_label, window_s)`) at once, one spot path per asset
    (correlated: `SpotGroup`), each series with its own windows, books, quoters and resolution,
    all frames in one time-ordered queue. Duck-types the `SimMarket` API the venue uses: a
    window, token or condition id is looked up across every series."""

    def __init__(
        self,
        seed: int,
        series: list[tuple[str, str, int]],
        start_ns: int = 0,
        *,
        book_ticker_hz: float = 100.0,
        clob_update_hz: float = CLOB_UPDATE_HZ,
        twap_lookback_s: int = TWAP_LOOKBACK_S,
        archive_path: Path | None = None,
    ) -> None:
        if not series:
            raise ValueError("SimMarkets needs at least one series")
        self.seed = seed
        # one JSON line per ended window (SimMarket.archive): a restarted venue reads them back
        self.archive_path = archive_path
        self._condition_index: dict[str, tuple[str, int]] = {}  # condition id -> (key, start)
        self._clob_update_hz = clob_update_hz
        self.twap_lookback_s = twap_lookback_s
        self.out = Emitter()
        self.group = SpotGroup(seed, self.out, book_ticker_hz)
        self.markets: dict[str, SimMarket] = {}
        self._resolve_delay_ns = 0
        for asset, label, window_s in series:
            self._new(asset, label, window_s, start_ns)
        # one silent warm-up for all, from the earliest start any series needs (bounded)
        starts = {k: m.warm_start_ns(start_ns) for k, m in self.markets.items()}
        t0 = max(min(starts.values()), start_ns - MAX_WARMUP_S * NS) // TICK_NS * TICK_NS
        self.out.enabled = False
        self.out.fast_warmup = True
        for k, m in self.markets.items():
            if starts[k] < t0:  # its window started before the path: list it at once
                m.t_ns = t0
                m._roll(((t0 // NS) // m.window_s * m.window_s) * NS)
        self.t_ns = t0
        while self.t_ns + TICK_NS <= start_ns:
            self.t_ns += TICK_NS
            step_all(
                self.group, [m for k, m in self.markets.items() if self.t_ns > starts[k]], self.t_ns
            )
        self.out.enabled = True
        self.out.heap.clear()
        for m in self.markets.values():
            m.t_ns = self.t_ns
            cur = m.current_window()
            if cur is not None and cur.price_to_beat is None:
                cur.price_to_beat = m.spot.first_chainlink()
            m.resume(self.t_ns)
            m.push_books(self.t_ns)

    def _new(self, asset: str, label: str, window_s: int, t_ns: int) -> SimMarket:
        key = f"{asset}-{label}"
        if key in self.markets:
            raise ValueError(f"series {key} listed twice")
        m = SimMarket(
            self.seed,
            window_s,
            t_ns,
            clob_update_hz=self._clob_update_hz,
            twap_lookback_s=self.twap_lookback_s,
            asset=asset,
            window_label=label,
            group=self.group,
        )
        m.resolve_delay_ns = self._resolve_delay_ns
        m.on_archive = self._archived
        for rec in self._archived_before(key, window_s):
            if "winner" in rec:
                # the first outcome written for a window is its outcome (a venue before this
                # fix appended a second one after a restart: breaker3 finding 4)
                m.archive.setdefault(rec["start_s"], rec)
            elif rec.get("open"):
                m.opened.setdefault(rec["start_s"], rec)
        for start in [k for k in m.opened if k in m.archive]:
            del m.opened[start]
        self.markets[key] = m
        return m

    def _archived_before(self, key: str, window_s: int) -> list[dict]:
        """The records an earlier run of this venue wrote for series `key` with windows of
        `window_s`; a bad line is skipped (a half-written last line after a kill)."""
        if self.archive_path is None or not self.archive_path.is_file():
            return []
        out = []
        for line in self.archive_path.read_text().splitlines()[-ARCHIVE_MAX * 20 :]:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if (
                isinstance(rec, dict)
                and rec.get("key") == key
                and rec.get("window_s") == window_s
                and isinstance(rec.get("start_s"), int)
                and ("open" in rec or ("winner" in rec and "resolved_ns" in rec))
            ):
                out.append(rec)
        return out

    def stop(self, t_ns: int) -> list[dict]:
        """The venue stops at `t_ns`: every series fixes and writes down its current window's
        outcome (`SimMarket.stop`); the records written."""
        return [r for m in self.markets.values() if (r := m.stop(t_ns)) is not None]

    def _archived(self, rec: dict) -> None:
        if self.archive_path is None:
            return
        self.archive_path.parent.mkdir(parents=True, exist_ok=True)
        with self.archive_path.open("a") as f:
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")

    def add_series(self, asset: str, label: str, window_s: int) -> bool:
        """List a new series now (a config reload named it): its current window at once, with
        the settlement TWAP at its start when the asset's path has it (else its first value).
        False when it is listed already."""
        if f"{asset}-{label}" in self.markets:
            return False
        m = self._new(asset, label, window_s, self.t_ns)
        # its first window is opened by `resume`, as at a start
        m._roll(((self.t_ns // NS) // m.window_s * m.window_s) * NS, live=False)
        m.resume(self.t_ns)
        m.push_books(self.t_ns)
        return True

    # ------------------------------------------------------------------ driving
    def advance(self, t_ns: int) -> list[Frame]:
        """Simulate every series up to `t_ns`; the frames due by then, oldest first."""
        markets = list(self.markets.values())
        while self.t_ns + TICK_NS <= t_ns:
            self.t_ns += TICK_NS
            step_all(self.group, markets, self.t_ns)
        return self.out.due(t_ns)

    # ------------------------------------------------------------------ lookups
    @property
    def first(self) -> SimMarket:
        """The first series (btc-5m when listed): what single-market callers see."""
        return self.markets.get("btc-5m") or next(iter(self.markets.values()))

    @property
    def windows(self) -> dict[str, Window]:
        """Every listed window of every series, by slug."""
        return {w.slug: w for m in self.markets.values() for w in m.windows.values()}

    def market_of(self, w: Window) -> SimMarket:
        return self.markets[w.key]

    def window_by_token(self, token: str) -> Window | None:
        for m in self.markets.values():
            w = m.window_by_token(token)
            if w is not None:
                return w
        return None

    def window_by_condition(self, condition_id: str) -> Window | None:
        """A listed window, else an ended one looked up by slug before (`past_window`)."""
        for m in self.markets.values():
            w = m.window_by_condition(condition_id)
            if w is not None:
                return w
        key, start = self._condition_index.get(condition_id, ("", 0))
        m = self.markets.get(key)
        return m.past_window(start, self.t_ns) if m is not None else None

    def window_by_slug(self, slug: str) -> Window | None:
        """A listed window, else an ended one of a listed clock-slugged series
        (`{asset}-updown-{5m|15m}-{start}`), rebuilt as the venue still shows it
        (`SimMarket.past_window`: the real Gamma keeps closed markets)."""
        for m in self.markets.values():
            w = m.window_by_slug(slug)
            if w is not None:
                return w
        for m in self.markets.values():
            prefix = f"{m.asset}-updown-{m.label}-"
            rest = slug[len(prefix) :]
            if m.label in CLOCK_SLUG_WINDOWS and slug.startswith(prefix) and rest.isdigit():
                w = m.past_window(int(rest), self.t_ns)
                if w is not None:
                    self._condition_index[w.condition_id] = (m.key, w.start_s)
                    if len(self._condition_index) > 10_000:
                        del self._condition_index[next(iter(self._condition_index))]
                return w
        return None

    def current_window(self) -> Window | None:
        return self.first.current_window()

    def next_window(self) -> Window | None:
        return self.first.next_window()

    def is_trading(self, w: Window, t_ns: int) -> bool:
        return self.market_of(w).is_trading(w, t_ns)

    def book_event(self, w: Window, token: str, t_ns: int) -> str:
        return self.market_of(w).book_event(w, token, t_ns)

    def rest_book(self, w: Window, token: str, t_ns: int) -> dict:
        return self.market_of(w).rest_book(w, token, t_ns)

    def take(self, token: str, *args, **kw) -> TakeResult:  # type: ignore[no-untyped-def]
        """`SimMarket.take` on the series that lists `token`."""
        w = self.window_by_token(token)
        if w is None:
            return TakeResult([], "unmatched")
        return self.market_of(w).take(token, *args, **kw)

    def flow_trade_through(self, order_id: str, t_ns: int) -> TakeResult:
        """`SimMarket.flow_trade_through` on the series where `order_id` rests (a test control).
        Raises ValueError for an order resting nowhere."""
        for m in self.markets.values():
            if order_id in m.resting:
                return m.flow_trade_through(order_id, t_ns)
        raise ValueError(f"order {order_id!r} is not resting on the simulated book")

    # resting user orders (matching.py): each on the series that lists its token
    def crosses(self, token: str, side: str, price: int) -> bool:
        w = self.window_by_token(token)
        return w is not None and self.market_of(w).crosses(token, side, price)

    def rest(self, order_id: str, token: str, side: str, price: int, centi: int) -> RestingOrder:
        w = self.window_by_token(token)
        if w is None:
            raise ValueError(f"unknown token {token!r}")
        return self.market_of(w).rest(order_id, token, side, price, centi)

    def unrest(self, order_id: str) -> RestingOrder | None:
        for m in self.markets.values():
            o = m.unrest(order_id)
            if o is not None:
                return o
        return None

    @property
    def resting(self) -> dict[str, RestingOrder]:
        """Every series' resting orders (a merged copy: change them through rest/unrest)."""
        return {k: o for m in self.markets.values() for k, o in m.resting.items()}

    @property
    def maker_fills(self) -> list[MakerFill]:
        return [f for m in self.markets.values() for f in m.maker_fills]

    @maker_fills.setter
    def maker_fills(self, fills: list[MakerFill]) -> None:
        """Assigning [] takes every series' fills (the venue does after reading them)."""
        for m in self.markets.values():
            m.maker_fills = []
        if fills:
            self.first.maker_fills = list(fills)

    def force_tick_size_change(self, t_ns: int, new_tick: int | None = None) -> dict | None:
        """The tick-size fault, on the first series' current market."""
        return self.first.force_tick_size_change(t_ns, new_tick)

    # ------------------------------------------------------------------ knobs (/sim/market)
    @property
    def resolve_delay_ns(self) -> int:
        return self._resolve_delay_ns

    @resolve_delay_ns.setter
    def resolve_delay_ns(self, ns: int) -> None:
        self._resolve_delay_ns = ns
        for m in self.markets.values():
            m.resolve_delay_ns = ns

    @property
    def book_ticker_hz(self) -> float:
        return self.group.book_ticker_hz

    @book_ticker_hz.setter
    def book_ticker_hz(self, hz: float) -> None:
        self.group.set_book_ticker_hz(hz)

    @property
    def clob_update_hz(self) -> float:
        return self._clob_update_hz

    @clob_update_hz.setter
    def clob_update_hz(self, hz: float) -> None:
        self._clob_update_hz = hz
        for m in self.markets.values():
            m.clob_update_hz = hz

    @property
    def quoter_noise_sd(self) -> float:
        return self.first.quoter_noise_sd

    @quoter_noise_sd.setter
    def quoter_noise_sd(self, sd: float) -> None:
        for m in self.markets.values():
            m.quoter_noise_sd = sd

    @property
    def window_s(self) -> int:
        return self.first.window_s

    @property
    def lookback_s(self) -> int:
        return self.first.lookback_s

    @property
    def btc_price(self) -> float:
        return self.first.btc_price

    def state(self) -> dict:
        """The first series' state (the single-market shape), plus `series` (every series'
        state by key) and `prices` (spot USD by asset)."""
        st = self.first.state()
        st["markets"] = {k: m.state() for k, m in self.markets.items()}
        st["prices"] = {a: round(p.price, p.decimals) for a, p in self.group.paths.items()}
        return st
