"""Observe's transport-free core: the latest state of the whole system, folded from bus messages.

`ObserveCore.handle(topic, msg, now_ns)` folds one bus message into the state and returns what
should be recorded (`Row`s for SQLite, `LogLine`s for the JSONL streams); the runner does the I/O.
The documents served from this state are in views.py (JSON) and metrics.py (Prometheus text).
Observe is not decision code, so `now_ns` is wall time (ages and countdowns for people).
"""

from __future__ import annotations

import re
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from common.book import Book, SnapshotBooks
from common.clock import utc_day
from common.config import ConfigError, market_specs
from common.schema import (
    BookSnapshot,
    BtcQuote,
    BtcTrade,
    ClockTick,
    ConfigSnapshot,
    ControlReply,
    Decision,
    FeedStatus,
    Heartbeat,
    LatencySample,
    LazyBookSnapshot,
    MarketInfo,
    MarketResolved,
    Msg,
    OrderAccepted,
    OrderFilled,
    OrderRejected,
    PositionRedeemed,
    PositionSettled,
    PositionState,
    PriceBasis,
    PriceFeedTick,
    Probe,
    RiskState,
    SignalScore,
    TradeClosed,
    fill_key,
    settlement_key,
    to_dict,
)
from services.observe import views
from services.observe.health import Supervision
from services.observe.latency import SEVERITY_LOG_LEVEL, LatencyStats

HISTORY_STEP_NS = 250_000_000  # chart series sampled at most 4x a second
HISTORY_LEN = 3600  # 15 min of chart at 4 Hz
SIGNAL_ROW_STEP_NS = 1_000_000_000  # signals recorded at most once a second unless the side flips
BREACH_LOG_STEP_NS = 1_000_000_000  # one latency breach line per stage and severity a second
NS = 1_000_000_000
MAX_REDEMPTIONS = 50  # latest redemptions shown (totals come from strategy / execution)
MAX_PENDING_CLOSES = 500  # TradeClosed P&L waiting for (or just applied to) their closing row
MAX_FOLDED = 50_000  # event keys of fills and settlements folded (a day's are a few thousand)
# execution's ledger is replayed on every heartbeat of an execution process during its first
# seconds (by its own clock: heartbeat ts_ns - started_ns), besides the first one heard from it
LEDGER_REPLAY_FOR_NS = 20 * 1_000_000_000
DEFAULT_MARKET = "btc-5m"  # the series key of today's one market (a config without `markets`)
WINDOWS_KEPT = 16  # windows (MarketInfo) kept per market series: the few around now
# a clock-built slug names its series: "eth-updown-15m-1795504500" -> ("eth", "15m")
SLUG_SERIES = re.compile(r"^([a-z][a-z0-9]{1,9})-updown-(\d+[mhd])-\d+$")


def series_of_slug(slug: str) -> str | None:
    """The series key ("eth-15m") a clock-built slug names, None for any other slug."""
    m = SLUG_SERIES.match(slug)
    return f"{m.group(1)}-{m.group(2)}" if m else None


@dataclass(slots=True)
class Series:
    """What observe holds of one market series (`key` "eth-15m", MarketInfo.series): its recent
    windows, the last signal, decision and position, its probability chart and today's figures
    as observe counted them (strategy's per-market risk state is preferred when present)."""

    key: str
    asset: str
    window: str
    markets: dict[str, MarketInfo] = field(default_factory=dict)  # slug -> window
    current_slug: str = ""
    next_slug: str = ""
    signal: SignalScore | None = None
    position: PositionState | None = None
    decision: dict[str, Any] | None = None
    prob_history: deque[tuple[float, float, float | None]] = field(
        default_factory=lambda: deque(maxlen=HISTORY_LEN)
    )
    prob_hist_ns: int = 0
    signal_row_ns: int = 0
    last_skip_reason: str = ""
    entries_today: int = 0
    wins_today: int = 0
    pnl_today: float = 0.0
    fees_today: float = 0.0
    rebates_today: float = 0.0  # maker rebates earned (USD, issue 18)
    # Brier scores of this market's resolved windows (the core's `scores` are of all markets)
    scores: RunningScores = field(default_factory=lambda: RunningScores())

    def current_market(self, now_ns: int) -> MarketInfo | None:
        """The window containing `now_ns`, else the one ingest last called current."""
        live = [m for m in self.markets.values() if m.window_start_ns <= now_ns < m.window_end_ns]
        if live:
            return max(live, key=lambda m: m.window_start_ns)
        return self.markets.get(self.current_slug)

    def reset_day(self) -> None:
        self.entries_today = self.wins_today = 0
        self.pnl_today = self.fees_today = self.rebates_today = 0.0


@dataclass(frozen=True, slots=True)
class Row:
    """A row for one of observe's SQLite tables."""

    table: str
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LogLine:
    """A line for one of the seven JSONL streams."""

    stream: str
    event: str
    level: str = "INFO"
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Update:
    """Set columns of the row of one of observe's tables whose `event_key` is `key` (a row
    written before it; none yet is a no-op, see ObserveCore.closes)."""

    table: str
    key: str
    values: dict[str, Any]


Record = Row | Update | LogLine


SCORE_WINDOWS_KEPT = 8  # windows whose samples wait for their resolution


class RunningScores:
    """Brier scores of the model, the market's Up mid and the blend (signal's published P(Up)) at
    the same instants, summed over resolved windows: squared errors and counts."""

    def __init__(self) -> None:
        self.windows = 0
        self.n = 0
        self.sq = {"model": 0.0, "market": 0.0, "blend": 0.0}
        self.slugs: deque[str] = deque(maxlen=64)  # windows already scored (a repeat is ignored)

    def add(self, slug: str, samples: list[tuple[float, float, float]], up: bool) -> None:
        """One resolved window's samples (model, market, blend) against its outcome."""
        y = 1.0 if up else 0.0
        self.windows += 1
        self.n += len(samples)
        for model, market, blend in samples:
            self.sq["model"] += (model - y) ** 2
            self.sq["market"] += (market - y) ** 2
            self.sq["blend"] += (blend - y) ** 2
        self.slugs.append(slug)

    def doc(self) -> dict[str, Any]:
        """`{"windows", "n", "brier_model", "brier_market", "brier_blend"}` (None before any)."""
        n = self.n
        return {
            "windows": self.windows,
            "n": n,
            **{f"brier_{k}": (round(v / n, 6) if n else None) for k, v in self.sq.items()},
        }


def _ms(later_ns: int, earlier_ns: int) -> float | None:
    """A latency in ms, or None when either end is unknown (0) or the clocks went backwards."""
    if not later_ns or not earlier_ns or later_ns < earlier_ns:
        return None
    return (later_ns - earlier_ns) / 1e6


class ObserveCore:
    """The latest state of the whole system as observe has heard it (see the module docstring)."""

    def __init__(
        self,
        started_ns: int,
        pid: int,
        *,
        dry_run: bool = True,
        venue: str = "live",
        real_trading: bool = False,
    ) -> None:
        self.started_ns = started_ns
        self.pid = pid
        self.dry_run = dry_run
        self.venue = venue
        self.real_trading = real_trading
        self.heartbeats: dict[str, Heartbeat] = {}
        self.restarts: dict[str, int] = {}  # service -> new pids seen in its heartbeat
        self.last_probe: Probe | None = None
        self.probes = 0
        self.messages = 0
        # market data
        self.btc_price: float | None = None
        self.btc_ts_ns = 0
        self.btc_quote: BtcQuote | None = None
        # every asset's last Binance trade: asset -> (price USD, receive time ns)
        self.spot: dict[str, tuple[float, int]] = {}
        self.quotes: dict[str, BtcQuote] = {}  # asset -> last Binance best bid/ask
        self.price_feeds: dict[str, PriceFeedTick] = {}
        # the latest snapshot per token, its Book built when a view reads it (not per message)
        self.books = SnapshotBooks()
        self.markets: dict[str, MarketInfo] = {}  # slug -> market, of every series
        # per market series (key "eth-15m"): windows, signal, position, charts, today's figures
        self.series: dict[str, Series] = {}
        self.slug_series: dict[str, str] = {}  # slug -> series key, of every window heard
        self.resolved: deque[MarketResolved] = deque(maxlen=20)
        self.clock_ns = 0
        self.feed_status: dict[str, FeedStatus] = {}
        self.basis: PriceBasis | None = None  # ingest's Binance vs Chainlink meter (BTC's)
        self.bases: dict[str, PriceBasis] = {}  # asset -> its basis meter
        self.feed_last_ns: dict[str, int] = {}
        # signal / strategy / execution (the last signal and position of each market: `series`)
        # the running score of model vs market on resolved windows: per window, one sample a
        # second of (model, market Up mid, blend) while the book had a mid; scored when it
        # resolves (since observe started)
        self.score_samples: OrderedDict[str, dict[int, tuple[float, float, float]]] = OrderedDict()
        self.scores = RunningScores()
        self.decisions: deque[dict[str, Any]] = deque(maxlen=50)
        self.risk: RiskState | None = None
        self.config: dict[str, Any] = {}
        self._configured: tuple[dict[str, Any], list[str]] | None = None  # (config, its keys)
        self.config_version = 0
        self.config_source = ""
        # the config versions of this book recorded in config_snapshots, as (version, hash):
        # strategy re-publishes its snapshot every few seconds (observe may start after it,
        # and PUB/SUB drops what nobody reads yet), and each version is stored once
        self.recorded_configs: set[tuple[int, str]] = set()
        # the latest snapshot's hash, shipped defaults, operator overrides, file paths, changes
        self.config_meta: dict[str, Any] = {}
        # per-trade P&L (TradeClosed) by the event key of the row that closed the trade, kept
        # until that row is written (the close may arrive before or after it)
        self.closes: OrderedDict[str, tuple[float, bool]] = OrderedDict()
        # today's, by row: (pnl, won, series key)
        self.pnl_counted: OrderedDict[str, tuple[float, bool, str]] = OrderedDict()
        # the event keys of the fills and settlements folded (today's rows recorded before a
        # restart, then every one heard or read from the ledger): each counts once, whether it
        # came on the bus (twice, after a publisher restart), from the ledger, or both
        self.folded: OrderedDict[str, None] = OrderedDict()
        self.duplicates = 0  # fills and settlements heard again (not counted again)
        # execution's ledger is to be read (a new execution process is heard, see `handle`):
        # the runner reads it off the event loop and hands it to `replay_ledger`
        self.ledger_replay_due = False
        self.ledger_replays = 0  # ledger reads folded
        self.ledger_replayed = 0  # fills and settlements the bus did not bring, from the ledger
        self.recent_fills: deque[dict[str, Any]] = deque(maxlen=50)
        self.orders: deque[dict[str, Any]] = deque(maxlen=50)
        self.control_replies: deque[dict[str, Any]] = deque(maxlen=20)
        # redemptions as execution last published them, newest last (condition id -> message)
        self.redemptions: OrderedDict[str, PositionRedeemed] = OrderedDict()
        # today's figures from what observe itself saw (RiskState's are preferred when present)
        self.day = ""
        self.entries_today = 0
        self.settled_today = 0
        self.closed_today = 0  # trades closed today (exits and settlements): win rate's divisor
        self.wins_today = 0
        self.pnl_today = 0.0
        self.fees_today = 0.0
        self.rebates_today = 0.0  # maker rebates earned (USD, issue 18)
        # latency
        self.latency = LatencyStats()
        self._breach_logged: dict[tuple[str, str], int] = {}
        self._breach_suppressed: dict[tuple[str, str], int] = {}
        self._lat_authoritative: set[str] = set()
        self.lat_cache: dict[str, dict[str, Any]] = {}
        self.lat_cache_ns = 0
        # chart series: (unix seconds, value); spot prices per asset, probabilities per series
        self.spot_history: dict[str, deque[tuple[float, float]]] = {}
        self._spot_hist_ns: dict[str, int] = {}
        # supervisord's view of the programs, kept fresh by the runner (health.py reads it)
        self.supervision = Supervision()

    # --- markets --------------------------------------------------------------------------------
    def configured(self) -> list[str]:
        """The series keys of the enabled markets the config in force names, in its order
        (["btc-5m"] for a config without `markets`; [] while the config is unreadable). Parsed
        once per config document (a new snapshot replaces the dict)."""
        cached = self._configured
        if cached is not None and cached[0] is self.config:
            return list(cached[1])
        try:
            keys = [m.key for m in market_specs(self.config) if m.enabled]
        except ConfigError:
            keys = []
        self._configured = (self.config, keys)
        return list(keys)

    def market_keys(self) -> list[str]:
        """Every market to show: the configured ones in config order, then any other series
        heard on the bus (a market removed from the config while it held a position)."""
        keys = self.configured()
        return keys + sorted(k for k in self.series if k not in keys)

    def default_key(self) -> str:
        """The market an API call without `market` is about: btc-5m when it is configured (or
        nothing is), else the first configured market."""
        keys = self.configured()
        return DEFAULT_MARKET if not keys or DEFAULT_MARKET in keys else keys[0]

    def resolve_market(self, name: str | None) -> str | None:
        """A series key from an API `market` parameter: a series key ("eth-15m") or a window's
        slug; None/"" -> the default market; None when no such market is configured or heard.

        A slug resolves when its window was heard (MarketInfo), when it is the window of a
        market's position (open or awaiting resolution, as strategy's PositionState and
        RiskState.awaiting_resolution name them: its window may be long gone from the windows
        kept, or never heard by a restarted observe)."""
        if not name:
            return self.default_key()
        if name in self.series or name in self.configured():
            return name
        key = self.slug_series.get(name)
        if key is not None:
            return key
        for ser in self.series.values():
            if ser.position is not None and ser.position.slug == name:
                return ser.key
        if self.risk is not None and name in self.risk.awaiting_resolution:
            return series_of_slug(name)  # a held window strategy names: its series by its form
        return None

    def get_series(self, key: str) -> Series:
        """The state of series `key`, created empty on first use."""
        s = self.series.get(key)
        if s is None:
            asset, _, window = key.partition("-")
            s = self.series[key] = Series(key=key, asset=asset, window=window)
        return s

    def series_for(self, slug: str, market: str = "") -> Series:
        """The series a message is about: by its window's slug when that window was heard
        (MarketInfo names its asset and window), else by its `market` field, else by the slug's
        form, else the default market."""
        key = self.slug_series.get(slug) or market or series_of_slug(slug) or self.default_key()
        return self.get_series(key)

    def open_positions(self) -> list[PositionState]:
        """Every market's open position."""
        return [s.position for s in self.series.values() if s.position and s.position.open]

    # the default market's state, as the single-market API always served it
    @property
    def signal(self) -> SignalScore | None:
        s = self.series.get(self.default_key())
        return s.signal if s else None

    @property
    def position(self) -> PositionState | None:
        s = self.series.get(self.default_key())
        return s.position if s else None

    @property
    def btc_history(self) -> deque[tuple[float, float]]:
        return self.spot_history.setdefault("btc", deque(maxlen=HISTORY_LEN))

    @property
    def prob_history(self) -> deque[tuple[float, float, float | None]]:
        return self.get_series(self.default_key()).prob_history

    # --- seeding on start (from the database and the config file) -----------------------------
    def seed_config(
        self,
        config: dict[str, Any],
        version: int,
        source: str,
        recorded: set[tuple[int, str]] | None = None,
    ) -> None:
        """The config observe shows until strategy is heard; `recorded`: the (version, hash)
        pairs of this book already in config_snapshots (none is stored twice)."""
        self.config, self.config_version, self.config_source = config, version, source
        if recorded:
            self.recorded_configs |= recorded

    def seed_history(
        self,
        spot: dict[str, list[tuple[float, float]]],
        prob: dict[str, list[tuple[float, float, float | None]]],
    ) -> None:
        """The chart series from before a restart (the recorder's signals), oldest first:
        `spot` per asset, `prob` per series key (Recorder.chart_history)."""
        for asset, rows in spot.items():
            self.spot_history.setdefault(asset, deque(maxlen=HISTORY_LEN)).extend(rows)
        for key, prows in prob.items():
            self.get_series(key).prob_history.extend(prows)

    def seed_today(self, rows: list[dict[str, Any]], today: str) -> None:
        """Today's trades from observe's own table, so a restart keeps today's figures."""
        self.day = today
        for r in rows:
            if self._first(r["event_key"]):
                self._count_trade(r)

    def book(self) -> tuple[str, str]:
        """This tree's book: (venue, "paper" | "real") by what execution really does."""
        return self.venue, ("paper" if views.mode_doc(self)["dry_run"] else "real")

    def _count_trade(self, r: dict[str, Any]) -> None:
        """Today's figures of this tree's book from one trades row (rows of another venue or
        mode count for theirs, not this one)."""
        if (r.get("venue") or self.venue, r.get("mode") or self.book()[1]) != self.book():
            return
        ser = self.series_for(r.get("slug") or "", r.get("market") or "")
        if r["kind"] == "fill":
            fee = r.get("fee") or 0.0
            self.fees_today += fee
            ser.fees_today += fee
            rebate = r.get("rebate") or 0.0
            self.rebates_today += rebate
            ser.rebates_today += rebate
            if r.get("side") == "BUY":
                self.entries_today += 1
                ser.entries_today += 1
        elif r["kind"] == "settlement":
            self.settled_today += 1
        if r.get("pnl") is not None:  # the row that closed a trade has its P&L
            self._count_pnl(r["event_key"], r["pnl"], bool(r.get("won")), ser.key)

    def _count_pnl(self, key: str, pnl: float, won: bool, market: str) -> None:
        """One closed trade's P&L in today's figures (of the whole book and of its market
        `market`), once per closing row: a later, better figure for the same row (strategy's
        TradeClosed after execution's settlement) replaces the earlier one."""
        old = self.pnl_counted.pop(key, None)
        self.closed_today += old is None
        if old is not None:
            self.pnl_today -= old[0]
            self.wins_today -= 1 if old[1] else 0
            was = self.get_series(old[2])
            was.pnl_today -= old[0]
            was.wins_today -= 1 if old[1] else 0
        self.pnl_counted[key] = (pnl, won, market)
        while len(self.pnl_counted) > MAX_PENDING_CLOSES:
            self.pnl_counted.popitem(last=False)
        self.pnl_today += pnl
        self.wins_today += 1 if won else 0
        ser = self.get_series(market)
        ser.pnl_today += pnl
        ser.wins_today += 1 if won else 0

    def _closing(self, row: dict[str, Any]) -> dict[str, Any]:
        """A trades row with its trade's P&L when strategy's TradeClosed for it came first."""
        close = self.closes.pop(row["event_key"], None)
        if close is not None:
            row["pnl"], row["won"] = close
        return row

    def roll_day(self, now_ns: int) -> None:
        """Start today's figures afresh when the UTC day of `now_ns` is a new one."""
        day = utc_day(now_ns)
        if day != self.day:
            self.day = day
            self.entries_today = self.settled_today = self.wins_today = self.closed_today = 0
            self.pnl_today = self.fees_today = self.rebates_today = 0.0
            self.pnl_counted.clear()
            for ser in self.series.values():
                ser.reset_day()

    # --- bus messages ---------------------------------------------------------------------------
    def handle(self, topic: str, msg: Msg, now_ns: int) -> list[Record]:
        self.messages += 1
        out: list[Record] = []
        if isinstance(msg, Heartbeat):
            prev = self.heartbeats.get(msg.service)
            self.heartbeats[msg.service] = msg
            self.restarts.setdefault(msg.service, 0)
            if prev is not None and prev.pid != msg.pid:
                self.restarts[msg.service] += 1
            if msg.service == "execution" and (
                prev is None
                or (prev.pid, prev.started_ns) != (msg.pid, msg.started_ns)
                or msg.ts_ns - msg.started_ns < LEDGER_REPLAY_FOR_NS
            ):
                # a new execution process (or one in its first seconds): what it published
                # before this SUB socket rejoined it was dropped (PUB/SUB slow joiner), but it
                # books every fill and settlement in its ledger before publishing it
                self.ledger_replay_due = True
            if prev is not None and prev.state != msg.state:
                out.append(
                    LogLine(
                        "risk",
                        "service_state_changed",
                        "WARNING" if msg.state in ("halted", "degraded") else "INFO",
                        {"of": msg.service, "from": prev.state, "to": msg.state},
                    )
                )
            return out
        if isinstance(msg, Probe):
            if msg.hops and msg.hops[-1] == "execution":
                self.last_probe = msg
                self.probes += 1
                e2e = _ms(msg.hop_ns[-1], msg.ts_origin_ns) if msg.hop_ns else None
                if e2e is not None:
                    self._latency("probe_end_to_end_ms", e2e, now_ns, str(msg.probe_id), out)
            return out
        if isinstance(msg, ClockTick):
            self.clock_ns = msg.ts_ns
        elif isinstance(msg, BtcTrade):  # any asset's Binance trade (`asset` says which)
            if msg.asset == "btc":
                self.btc_price, self.btc_ts_ns = msg.price, msg.ts_recv_ns
            self.spot[msg.asset] = (msg.price, msg.ts_recv_ns or now_ns)
            self.feed_last_ns["binance"] = msg.ts_recv_ns or now_ns
            lag = _ms(msg.ts_recv_ns, msg.ts_exchange_ns)
            if lag is not None:
                self._latency("feed_lag_binance_ms", lag, now_ns, "", out)
            if now_ns - self._spot_hist_ns.get(msg.asset, 0) >= HISTORY_STEP_NS:
                self._spot_hist_ns[msg.asset] = now_ns
                hist = self.spot_history.setdefault(msg.asset, deque(maxlen=HISTORY_LEN))
                hist.append((round(now_ns / NS, 3), msg.price))
        elif isinstance(msg, BtcQuote):
            if msg.asset == "btc":
                self.btc_quote = msg
            self.quotes[msg.asset] = msg
            self.feed_last_ns["binance"] = msg.ts_recv_ns or now_ns
        elif isinstance(msg, BookSnapshot | LazyBookSnapshot):
            self.books.put(msg)
            self.feed_last_ns["clob"] = msg.ts_recv_ns or now_ns
            lag = _ms(msg.ts_recv_ns, msg.ts_exchange_ns)
            if lag is not None:
                self._latency("feed_lag_clob_ms", lag, now_ns, "", out)
        elif isinstance(msg, PriceFeedTick):
            self.price_feeds[msg.source] = msg
            self.feed_last_ns["price_feed"] = msg.ts_recv_ns or now_ns
            lag = _ms(msg.ts_recv_ns, msg.ts_exchange_ns)
            if lag is not None:
                self._latency("feed_lag_price_feed_ms", lag, now_ns, msg.source, out)
        elif isinstance(msg, MarketInfo):
            self._on_market(msg, now_ns, out)
        elif isinstance(msg, PriceBasis):
            prev_basis = self.bases.get(msg.asset)
            self.bases[msg.asset] = msg
            if msg.asset == "btc":
                self.basis = msg
            if prev_basis is None or prev_basis.warn != msg.warn:
                out.append(
                    LogLine(
                        "ingestion",
                        "basis_beyond_bound" if msg.warn else "basis_within_bound",
                        "WARNING" if msg.warn else "INFO",
                        to_dict(msg),
                    )
                )
        elif isinstance(msg, MarketResolved):
            self.resolved.append(msg)
            samples = self.score_samples.pop(msg.slug, None)
            if samples and msg.slug not in self.scores.slugs:
                won_up = msg.winning_outcome == "Up"
                self.scores.add(msg.slug, list(samples.values()), won_up)
                self.series_for(msg.slug).scores.add(msg.slug, list(samples.values()), won_up)
            out.append(LogLine("ingestion", "market_resolved", "INFO", to_dict(msg)))
        elif isinstance(msg, FeedStatus):
            prev_fs = self.feed_status.get(msg.feed)
            self.feed_status[msg.feed] = msg
            if prev_fs is None or (prev_fs.connected, prev_fs.stale) != (msg.connected, msg.stale):
                bad = not msg.connected or msg.stale
                out.append(
                    LogLine(
                        "ingestion",
                        "feed_status_changed",
                        "WARNING" if bad else "INFO",
                        to_dict(msg),
                    )
                )
        elif isinstance(msg, SignalScore):
            self._on_signal(msg, now_ns, out)
        elif isinstance(msg, Decision):
            d = to_dict(msg)
            ser = self.series_for(msg.slug, msg.market)
            d["market"] = ser.key
            self.decisions.append(d)
            ser.decision = d
            # skips can arrive on every tick: log one line per change of reason (per market),
            # not per tick
            if msg.action != "skip" or msg.reason != ser.last_skip_reason:
                out.append(LogLine("strategy", f"decision_{msg.action}", "INFO", d))
            ser.last_skip_reason = msg.reason if msg.action == "skip" else ""
        elif isinstance(msg, OrderAccepted):
            self.orders.append(to_dict(msg))
            out.append(LogLine("execution", "order_ack", "INFO", to_dict(msg)))
            lat = _ms(msg.ts_ack_ns, msg.ts_signal_ns)
            if lat is not None:
                self._latency(
                    "signal_to_order_ack_ms", lat, now_ns, msg.client_order_id, out, always_row=True
                )
        elif isinstance(msg, OrderRejected):
            self.orders.append(to_dict(msg))
            out.append(LogLine("execution", "order_rejected", "WARNING", to_dict(msg)))
        elif isinstance(msg, OrderFilled):
            self._on_fill(msg, now_ns, out)
        elif isinstance(msg, PositionSettled):
            self._on_settlement(msg, now_ns, out)
        elif isinstance(msg, TradeClosed):
            self._on_trade_closed(msg, now_ns, out)
        elif isinstance(msg, PositionRedeemed):
            self.redemptions.pop(msg.condition_id, None)
            self.redemptions[msg.condition_id] = msg
            while len(self.redemptions) > MAX_REDEMPTIONS:
                self.redemptions.popitem(last=False)
        elif isinstance(msg, PositionState):
            ser = self.series_for(msg.slug, msg.market)
            was_open = ser.position.open if ser.position else False
            ser.position = msg
            if was_open != msg.open:
                out.append(
                    LogLine(
                        "strategy",
                        "position_opened" if msg.open else "position_closed",
                        "INFO",
                        to_dict(msg),
                    )
                )
        elif isinstance(msg, RiskState):
            self._on_risk(msg, now_ns, out)
        elif isinstance(msg, ConfigSnapshot):
            # stored once per (version, hash), whatever else told observe the version number
            # first (a RiskState, a control reply): a start-up version is never skipped
            if (msg.version, msg.hash) not in self.recorded_configs:
                self.recorded_configs.add((msg.version, msg.hash))
                out.append(
                    Row(
                        "config_snapshots",
                        {
                            "ts_ns": msg.ts_ns or now_ns,
                            "version": msg.version,
                            "source": msg.source,
                            "config": msg.config,
                            "changed": msg.changed,
                            "hash": msg.hash,
                            "venue": self.book()[0],  # each book numbers its versions
                            "mode": self.book()[1],
                        },
                    )
                )
                out.append(
                    LogLine(
                        "strategy",
                        "config_snapshot",
                        "INFO",
                        {
                            "version": msg.version,
                            "source": msg.source,
                            "changed": msg.changed,
                            "hash": msg.hash,
                            "venue": self.book()[0],  # each book numbers its versions
                            "mode": self.book()[1],
                        },
                    )
                )
            self.config, self.config_version = dict(msg.config), msg.version
            self.config_meta = {
                "hash": msg.hash,
                "defaults": dict(msg.defaults),
                "overrides": dict(msg.overrides),
                "defaults_path": msg.defaults_path,
                "overrides_path": msg.overrides_path,
                "changed": dict(msg.changed),
            }
            self.config_source = f"strategy:{msg.source}" if msg.source else "strategy"
        elif isinstance(msg, ControlReply):
            self.control_replies.append(to_dict(msg))
            cfg = msg.state.get("config")
            version = msg.state.get("config_version")
            # a late-joining observe missed strategy's startup snapshot: any reply carries it
            if isinstance(cfg, dict) and isinstance(version, int) and msg.ok:
                if version >= self.config_version or not self.config_source.startswith("strat"):
                    self.config, self.config_version = dict(cfg), version
                    self.config_source = "strategy:control reply"
            out.append(
                LogLine(
                    "risk",
                    "control_reply",
                    "INFO" if msg.ok else "WARNING",
                    {"request_id": msg.request_id, "ok": msg.ok, "error": msg.error},
                )
            )
        elif isinstance(msg, LatencySample):
            self._lat_authoritative.add(msg.stage)
            self._latency(
                msg.stage,
                msg.ms,
                now_ns,
                msg.ref,
                out,
                authoritative=True,
                always_row=msg.stage.startswith(("signal_to", "full_")),
            )
        return out

    def _on_market(self, msg: MarketInfo, now_ns: int, out: list[Record]) -> None:
        known = msg.slug in self.markets
        ser = self.get_series(msg.series)
        self.markets[msg.slug] = msg
        ser.markets[msg.slug] = msg
        self.slug_series[msg.slug] = ser.key
        if msg.role == "current":
            ser.current_slug = msg.slug
        elif msg.role == "next":
            ser.next_slug = msg.slug
        self.feed_last_ns["gamma"] = msg.ts_recv_ns or now_ns
        if len(ser.markets) > WINDOWS_KEPT:  # keep the few windows around now, per series
            by_end = sorted(ser.markets, key=lambda s: ser.markets[s].window_end_ns)
            for slug in by_end[:-WINDOWS_KEPT]:
                del ser.markets[slug]
                self.markets.pop(slug, None)
            # two new outcome tokens every window: forget the books of markets we dropped
            kept = {t for m in self.markets.values() for t in (m.up_token_id, m.down_token_id)}
            for asset in [a for a in self.books.keys() if a not in kept]:
                self.books.pop(asset)
        # slug -> series of late messages (fills, settlements) for windows already dropped
        while len(self.slug_series) > 4 * WINDOWS_KEPT * len(self.series):
            del self.slug_series[next(iter(self.slug_series))]
        if not known:
            out.append(
                LogLine(
                    "ingestion",
                    "market_seen",
                    "INFO",
                    {
                        "slug": msg.slug,
                        "market": ser.key,
                        "role": msg.role,
                        "price_to_beat": msg.price_to_beat,
                    },
                )
            )

    def _on_signal(self, msg: SignalScore, now_ns: int, out: list[Record]) -> None:
        ser = self.series_for(msg.slug, msg.market)
        prev = ser.signal
        ser.signal = msg
        market_p = msg.inputs.get("p_market")
        if market_p is not None and msg.slug not in self.scores.slugs:
            per = self.score_samples.setdefault(msg.slug, {})
            self.score_samples.move_to_end(msg.slug)
            per.setdefault(
                (msg.ts_ns or now_ns) // NS,
                (msg.inputs.get("p_model", msg.p_up), market_p, msg.p_up),
            )
            while len(self.score_samples) > SCORE_WINDOWS_KEPT:
                self.score_samples.popitem(last=False)
        lat = _ms(msg.ts_signal_ns, msg.origin_ts_recv_ns)
        if lat is not None:
            self._latency("market_to_signal_ms", lat, now_ns, "", out)
        flipped = prev is None or prev.side != msg.side or prev.slug != msg.slug
        if flipped or now_ns - ser.signal_row_ns >= SIGNAL_ROW_STEP_NS:
            ser.signal_row_ns = now_ns
            out.append(
                Row(
                    "signals",
                    {
                        "ts_ns": msg.ts_ns or now_ns,
                        "slug": msg.slug,
                        "market": ser.key,
                        "p_up": msg.p_up,
                        "side": msg.side,
                        "score": msg.score,
                        "edge_up": msg.edge_up,
                        "edge_down": msg.edge_down,
                        "inputs": msg.inputs,
                    },
                )
            )
            out.append(
                LogLine(
                    "signal",
                    "signal",
                    "INFO",
                    {
                        "slug": msg.slug,
                        "market": ser.key,
                        "p_up": msg.p_up,
                        "side": msg.side,
                        "score": msg.score,
                        "edge_up": msg.edge_up,
                        "edge_down": msg.edge_down,
                    },
                )
            )
        if now_ns - ser.prob_hist_ns >= HISTORY_STEP_NS:
            ser.prob_hist_ns = now_ns
            up = self.up_book(ser.key, now_ns)
            mid = up.mid if up is not None else None
            market_p = round(mid, 4) if mid is not None else None
            ser.prob_history.append((round(now_ns / NS, 3), msg.p_up, market_p))

    def _on_fill(self, msg: OrderFilled, now_ns: int, out: list[Record]) -> None:
        key = fill_key(msg)
        if not self._first(key):
            return
        self.roll_day(now_ns)
        d = to_dict(msg)
        self.recent_fills.append(d)
        row = {
            "event_key": key,
            "kind": "fill",
            "ts_ns": msg.ts_fill_ns or now_ns,
            "day": utc_day(msg.ts_fill_ns or now_ns),
            "slug": msg.slug,
            "market": self.series_for(msg.slug).key,
            "outcome": msg.outcome,
            "side": msg.side,
            "asset_id": msg.asset_id,
            "price": msg.price,
            "size": msg.size,
            "fee": msg.fee,
            "liquidity": msg.liquidity,
            "rebate": msg.rebate_usd,
            "pnl": None,
            "won": None,
            "client_order_id": msg.client_order_id,
            "trade_id": msg.trade_id,
            "dry_run": msg.dry_run,
            "venue": msg.venue or self.venue,
            "mode": "paper" if msg.dry_run else "real",
        }
        self._closing(row)
        out.append(Row("trades", row))
        self._count_trade(row)
        out.append(LogLine("execution", "fill", "INFO", d))
        origin = msg.origin_ts_recv_ns or msg.ts_signal_ns
        lat = _ms(msg.ts_fill_ns, origin)
        if lat is not None:
            self._latency(
                "full_decision_to_fill_ms", lat, now_ns, msg.client_order_id, out, always_row=True
            )

    def _on_settlement(self, msg: PositionSettled, now_ns: int, out: list[Record]) -> None:
        key = settlement_key(msg.slug, msg.asset_id)
        if not self._first(key):
            return
        self.roll_day(now_ns)
        row = {
            "event_key": key,
            "kind": "settlement",
            "ts_ns": msg.ts_ns or now_ns,
            "day": utc_day(msg.ts_ns or now_ns),
            "slug": msg.slug,
            "market": self.series_for(msg.slug).key,
            "outcome": msg.outcome,
            "side": "SETTLE",
            "asset_id": msg.asset_id,
            "price": msg.payout,
            "size": msg.size,
            "fee": 0.0,
            "liquidity": "",
            "rebate": 0.0,
            "pnl": msg.pnl,
            "won": msg.won,
            "client_order_id": "",
            "trade_id": "",
            "dry_run": msg.dry_run,
            "venue": msg.venue or self.venue,
            "mode": "paper" if msg.dry_run else "real",
        }
        self._closing(row)
        out.append(Row("trades", row))
        self._count_trade(row)
        out.append(LogLine("execution", "settlement", "INFO", to_dict(msg)))

    def _first(self, key: str) -> bool:
        """Whether the fill or settlement with trades row key `key` is new (and now folded);
        False for one folded before (counted in `duplicates`)."""
        if key in self.folded:
            self.duplicates += 1
            return False
        self.folded[key] = None
        while len(self.folded) > MAX_FOLDED:
            self.folded.popitem(last=False)
        return True

    def replay_ledger(
        self, events: list[OrderFilled | PositionSettled], now_ns: int
    ) -> list[Record]:
        """Fold execution's ledger rows (`common.ledger`: fills and settlements as execution
        published them) that the bus did not bring, as if heard now; one folded before (by its
        trades row key) is skipped without counting it as a duplicate. Says what it added on the
        `execution` stream (`ledger_replayed`)."""
        self.ledger_replays += 1
        out: list[Record] = []
        added: list[str] = []
        for msg in sorted(
            events, key=lambda m: m.ts_fill_ns if isinstance(m, OrderFilled) else m.ts_ns
        ):
            if isinstance(msg, OrderFilled):
                key = fill_key(msg)
            else:
                key = settlement_key(msg.slug, msg.asset_id)
            if key in self.folded:
                continue
            if isinstance(msg, OrderFilled):
                self._on_fill(msg, now_ns, out)
            else:
                self._on_settlement(msg, now_ns, out)
            added.append(key)
        if added:
            self.ledger_replayed += len(added)
            out.append(
                LogLine(
                    "execution",
                    "ledger_replayed",
                    "WARNING",
                    {"added": added, "why": "not heard on the bus"},
                )
            )
        return out

    def _on_trade_closed(self, msg: TradeClosed, now_ns: int, out: list[Record]) -> None:
        """A closed trade's P&L goes on the row that closed it: now if that row was written,
        else when it is (the recorder applies updates after the inserts before them)."""
        self.roll_day(now_ns)
        pnl = round(msg.pnl, 6)
        self.closes[msg.closing_key] = (pnl, msg.won)
        while len(self.closes) > MAX_PENDING_CLOSES:
            self.closes.popitem(last=False)
        out.append(Update("trades", msg.closing_key, {"pnl": pnl, "won": msg.won}))
        out.append(LogLine("strategy", "trade_closed", "INFO", to_dict(msg)))
        if (msg.venue or self.venue, msg.mode or self.book()[1]) == self.book():
            self._count_pnl(
                msg.closing_key, pnl, msg.won, self.series_for(msg.slug, msg.market).key
            )

    def _on_risk(self, msg: RiskState, now_ns: int, out: list[Record]) -> None:
        prev = self.risk
        self.risk = msg
        if msg.config_version:
            self.config_version = max(self.config_version, msg.config_version)
        key = (msg.halted, msg.emergency_stop, tuple(msg.reasons))
        if prev is None or key != (prev.halted, prev.emergency_stop, tuple(prev.reasons)):
            event = "halted" if msg.halted else ("resumed" if prev and prev.halted else "risk")
            out.append(
                Row(
                    "risk_events",
                    {
                        "ts_ns": msg.ts_ns or now_ns,
                        "event": event,
                        "halted": msg.halted,
                        "emergency_stop": msg.emergency_stop,
                        "reasons": msg.reasons,
                        "daily_pnl": msg.daily_pnl,
                        "trades_today": msg.trades_today,
                        "loss_streak": msg.loss_streak,
                        "config_version": msg.config_version,
                        "venue": msg.venue,
                        "mode": msg.mode,
                    },
                )
            )
            out.append(
                LogLine("risk", f"risk_{event}", "WARNING" if msg.halted else "INFO", to_dict(msg))
            )

    def _latency(
        self,
        stage: str,
        ms: float,
        now_ns: int,
        ref: str,
        out: list[Record],
        *,
        authoritative: bool = False,
        always_row: bool = False,
    ) -> None:
        # a stage the hot path measures itself (LatencySample) is not double-counted by ours
        if not authoritative and stage in self._lat_authoritative:
            return
        sev = self.latency.add(stage, ms)
        if sev == "ok":
            if always_row:
                out.append(
                    Row(
                        "latency_events",
                        {"ts_ns": now_ns, "stage": stage, "ms": ms, "severity": sev, "ref": ref},
                    )
                )
            return
        key = (stage, sev)
        if now_ns - self._breach_logged.get(key, 0) < BREACH_LOG_STEP_NS and not always_row:
            self._breach_suppressed[key] = self._breach_suppressed.get(key, 0) + 1
            return
        self._breach_logged[key] = now_ns
        suppressed = self._breach_suppressed.pop(key, 0)
        out.append(
            Row(
                "latency_events",
                {"ts_ns": now_ns, "stage": stage, "ms": ms, "severity": sev, "ref": ref},
            )
        )
        out.append(
            LogLine(
                "latency",
                f"latency_{sev}",
                SEVERITY_LOG_LEVEL[sev],
                {
                    "stage": stage,
                    "ms": round(ms, 3),
                    "severity": sev,
                    "ref": ref,
                    "suppressed_since_last": suppressed,
                },
            )
        )

    # --- queries used by the fold and the views --------------------------------------------------
    def current_market(self, now_ns: int, key: str | None = None) -> MarketInfo | None:
        """Market series `key`'s (default: the default market's) window containing `now_ns`,
        else the one ingest last called current; None before one is heard."""
        s = self.series.get(key or self.default_key())
        return s.current_market(now_ns) if s is not None else None

    def up_book(self, key: str, now_ns: int) -> Book | None:
        """The Up book of series `key`'s current window, None when not heard."""
        m = self.current_market(now_ns, key)
        return self.books.get(m.up_token_id) if m else None
