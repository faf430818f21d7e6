"""Strategy's transport-free core: entry gates, exits, risk halts, operator commands, hot reload.

Inputs are bus messages (signals, market data, execution events, control commands); outputs are
`(topic, message)` pairs: a `Decision` for every signal (enter, or skip with the reason), exits
with theirs, `OrderIntent`s on the orders stream, `RiskState`, `PositionState`, `ConfigSnapshot`
and `ControlReply`. Time comes only from the messages. Everything that must survive a restart
(emergency stop, day counters, loss streak, the open position, orders in flight, config version)
is one document (`persistent()`), which the runner stores in SQLite and hands back on start:
startup and crash recovery take the same path. It follows the core contract
(common/core.py): `step(msg, now_ns)` dispatches to the `on_<message>` handlers; log lines go out
with `Emitted.logs`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from common import money, topics
from common.book import SnapshotBooks
from common.clock import utc_day
from common.config import (
    ConfigError,
    StrategyConfig,
    config_diff,
    config_hash,
    config_to_dict,
    enabled_markets,
    merge_config_patch,
    overrides_of,
    series_of_slug,
    strategy_config_for,
    validate_config_patch,
    validate_strategy_config,
)
from common.core import Core, Out, forward_probe
from common.schema import (
    BookSnapshot,
    BtcTrade,
    CancelOrder,
    ClearEmergencyStop,
    ClockTick,
    ConfigSnapshot,
    ControlReply,
    Decision,
    FeedStatus,
    ForceExit,
    Heartbeat,
    MarketInfo,
    MarketResolved,
    Msg,
    OrderAccepted,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    PositionRedeemed,
    PositionSettled,
    PositionState,
    Probe,
    RiskState,
    SignalScore,
    TradeClosed,
    TriggerEmergencyStop,
    UpdateConfig,
    fill_key,
    settlement_key,
    to_dict,
)
from services.strategy import quotes

NS = 1_000_000_000
MS = 1_000_000
EPS = 1e-9
# signal's `inputs["ptb_source"]`: 3 market (Gamma), 2 TWAP feed, 1 Chainlink, 0 Binance
PTB_SETTLEMENT_MIN = 1.0
STATE_EVERY_NS = NS  # RiskState / PositionState at least once a second
PENDING_GRACE_NS = 5 * NS
# a maker quote is cancelled this long before its window's entry cut-off (the cancel lands first)
QUOTE_CANCEL_LEAD_NS = NS
# after execution answers an entry with `venue_post_only` (the venue's post-only minutes after an
# engine restart, ~2 minutes: PROTOCOLS.md section 7, services/execution/live.py), `auto` quotes
# instead of taking for this long
POST_ONLY_HOLD_NS = 120 * NS  # an intent unanswered this long after expiry is given up on
EXIT_RETRY_NS = NS  # after an exit attempt, wait this long before trying again (same position)
# exits of one position that got nothing at all in a row double the wait, up to this; any fill
# (a FAK that took part of the position) resets it: a stop-loss bigger than the bids is sold
# level by level, once a second, while a venue that keeps finding nothing is not hammered
EXIT_RETRY_MAX_NS = 8 * NS
# the venue sells whole hundredths of a share (a SELL is sized in 2-decimal shares: PROTOCOLS.md
# section 7, common.money.marketable_amounts): less than that is held to settlement
EXIT_MIN_SHARES = 0.01
# execution's reject code when a switch blocks real trading (services/execution/switches.py
# BLOCKED_*): no order can succeed until execution restarts with the switches set
REAL_TRADING_BLOCKED = "REAL_TRADING_BLOCKED_"
# execution's rejections of an entry for a book that moved under it, before anything reached
# the venue (services/execution/core.py: the preflight walk, ingest's out-of-sync mark, an intent
# that expired on the way): backed off by a flat `entry_reject_backoff_s`, never doubled
BOOK_MOVED_CODES = frozenset(("preflight_liquidity", "book_out_of_sync", "expired"))
MAX_FILL_KEYS = 2000
# an ack with these statuses is the order's last word: FOK/FAK orders are matched in full or in
# part with the rest killed at once (docs.polymarket.com "Order types": FOK/FAK, POST /order
# status "matched"); "dry_run" is the paper fill's ack. Their fills follow the ack.
TERMINAL_FILLED = {"matched", "dry_run"}
TERMINAL_NO_FILL = {"killed", "unmatched", "cancelled", "canceled", "expired", "failed"}
# entry blocks that are risk controls (also logged to risk.jsonl); the rest are market reasons
RISK_REASONS = (
    "halted:",
    "max_trades_per_day",
    "max_entries_per_window",
    "daily_loss_headroom",
    "stale_",
    "market_not_accepting_orders",
    "capital_at_risk",
    "book_out_of_sync",
)


@dataclass
class Position:
    slug: str
    asset_id: str
    outcome: str
    window_end_ns: int
    size: float = 0.0
    cost: float = 0.0  # collateral paid for the shares still held, fees included
    fees: float = 0.0
    realized: float = 0.0  # P&L already booked by partial exits of this position
    opened_ns: int = 0
    entry_price: float = 0.0
    entry_client_order_id: str = ""
    p_model: float = 0.0  # the model's probability for this side at entry
    # the market's terms, kept with the position so an exit after a restart never waits on (or
    # guesses) them: None = not known yet (no md.market seen, nothing in the ledger)
    fee_rate: float | None = None
    fee_exponent: float = 1.0
    tick_size: float = 0.0
    min_order_size: float = 0.0
    neg_risk: bool = False
    terms_source: str = ""  # "md.market" | "ledger" (the entry order's row) | ""
    # the round trip's totals, for its TradeClosed (shares and USD, fees apart)
    bought: float = 0.0
    paid: float = 0.0
    sold: float = 0.0
    proceeds: float = 0.0
    exit_fees: float = 0.0
    # maker rebates earned (USD, OrderFilled.rebate_usd): in the P&L, `cost` is net of them
    rebates: float = 0.0

    def take_terms(self, m: MarketInfo | Mapping[str, Any], source: str) -> None:
        """Keep a market's (or a ledger order row's) fee schedule, tick size and order rules."""
        get = m.get if isinstance(m, Mapping) else (lambda k: getattr(m, k))
        self.fee_rate = float(get("fee_rate"))
        self.fee_exponent = float(get("fee_exponent"))
        self.tick_size = float(get("tick_size"))
        self.min_order_size = float(get("min_order_size"))
        self.neg_risk = bool(get("neg_risk"))
        self.terms_source = source

    @property
    def avg_price(self) -> float:
        return (self.cost - self.fees + self.rebates) / self.size if self.size > EPS else 0.0


@dataclass
class PendingOrder:
    client_order_id: str
    kind: str  # "entry" | "exit"
    slug: str
    asset_id: str
    outcome: str
    size: float
    limit_price: float
    expires_ns: int
    sent_ns: int
    filled: float = 0.0
    # the venue's ack said the order is done (FOK/FAK "matched", paper "dry_run"): its fills,
    # which follow the ack, are all it will get, whatever their size against `size` (a BUY's
    # collateral is cut to cents, 3.5 shares can fill as 3.49)
    final: bool = False
    market: str = ""  # the series key ("btc-5m") of the order's market
    # a maker quote (issue 18): rests until filled or cancelled; counted as an entry (trades
    # today, entries per window) from its first fill, and it does not block quoting
    resting: bool = False


DEFAULT_MARKET_KEY = "btc-5m"


@dataclass
class MarketState:
    """One market series' own state (series key `key`, e.g. "eth-15m"): its config (the base
    config with the market's overrides), its open position, its day's counters and its halt.
    `configured` is False once a hot reload removed the market: it is kept, trading no more,
    until its position is flat and nothing of it is in flight."""

    key: str
    config: StrategyConfig
    configured: bool = True
    asset: str = ""  # its underlying ("eth"), whose Binance trades must be fresh to enter
    position: Position | None = None
    last_signal: SignalScore | None = None
    daily_pnl: float = 0.0  # USD realised today in this market
    trades_today: int = 0
    wins_today: int = 0
    loss_streak: int = 0
    halted: bool = False  # an operator's halt of this market alone (TriggerEmergencyStop.market)
    halt_reason: str = ""
    force_exit_waiting: str = ""  # a ForceExit's reason, while the market's terms are unknown
    last_exit_try_ns: int = 0
    exit_misses: int = 0  # this position's exit attempts in a row that got no fill at all
    # entries rejected in a row (reset by a fill or a config change), no entry before the time
    # (ns) they earned (`entry_reject_backoff_s` doubled per rejection); `entries_blocked`: the
    # reject code that can never succeed in this mode (a halt reason; not kept across restarts)
    entry_rejects: int = 0
    entry_backoff_until_ns: int = 0
    entries_blocked: str = ""
    last_block: str = ""
    window_s: float = 0.0  # the length of its latest window seen (md.market), 0 unknown
    min_order_size: float = 5.0  # shares, a resting order's minimum (md.market orderMinSize)
    # config that can never let an entry through in this market (`_check_config_fits`):
    # log event -> message; in the heartbeat's warnings (observe's /health)
    config_warnings: dict[str, str] = field(default_factory=dict)
    terms_wait_logged: str = ""

    def __post_init__(self) -> None:
        self.asset = self.asset or self.key.split("-", 1)[0]

    def persistent(self) -> dict[str, Any]:
        return {
            "position": asdict(self.position) if self.position else None,
            "daily_pnl": self.daily_pnl,
            "trades_today": self.trades_today,
            "wins_today": self.wins_today,
            "loss_streak": self.loss_streak,
            "halted": self.halted,
            "halt_reason": self.halt_reason,
            "force_exit_waiting": self.force_exit_waiting,
            "configured": self.configured,
        }

    def restore(self, doc: Mapping[str, Any]) -> None:
        pos = doc.get("position")
        self.position = Position(**pos) if pos else None
        self.daily_pnl = float(doc.get("daily_pnl", 0.0))
        self.trades_today = int(doc.get("trades_today", 0))
        self.wins_today = int(doc.get("wins_today", 0))
        self.loss_streak = int(doc.get("loss_streak", 0))
        self.halted = bool(doc.get("halted", False))
        self.halt_reason = str(doc.get("halt_reason", ""))
        self.force_exit_waiting = str(doc.get("force_exit_waiting", ""))
        self.configured = bool(doc.get("configured", True))

    def new_day(self) -> None:
        self.daily_pnl, self.trades_today, self.wins_today, self.loss_streak = 0.0, 0, 0, 0

    def has_risk_state(self) -> bool:
        """True while the market has something of today a removal must not wipe: a halt, the
        day's P&L, trades, wins or loss streak (so re-adding it the same day keeps them)."""
        return bool(
            self.halted
            or abs(self.daily_pnl) > 1e-12
            or self.trades_today
            or self.wins_today
            or self.loss_streak
        )


def snap_down(price: float, tick: float) -> float:
    """A BUY limit on the tick grid (`money.snap_price`, never worse for the trader); float noise
    below 1e-6 is ignored (0.52999999 is 0.53)."""
    return float(money.snap_price(round(price, 6), tick, "BUY"))


@functools.lru_cache(maxsize=4096)
def fee_per_share(price: float, rate: float, exponent: float) -> float:
    """The taker fee of one share at `price` (`money.fee_per_share`), USD. Cached: a pure
    function of its three numbers, asked on every signal for both sides' asks."""
    if rate <= 0.0 or not 0.0 < price < 1.0:
        return 0.0
    return float(money.fee_per_share(price, money.FeeSchedule.of(rate, exponent)))


class StrategyCore(Core):
    """Signals, market data and execution events in; decisions, intents and state out.

    `state` is a `persistent()` document to restore; `client_prefix` starts every client order
    id; `defaults` are the shipped config defaults (a null in a config patch goes back to them)."""

    def __init__(
        self,
        config: StrategyConfig,
        state: dict[str, Any] | None = None,
        client_prefix: str = "pe",
        defaults: dict[str, Any] | None = None,
        venue: str = "",
        mode: str = "",
    ) -> None:
        super().__init__()
        self.config = config
        self.venue, self.mode = venue, mode  # the book (sim|live, paper|real) this core keeps
        # the shipped defaults (every field): a null in a config patch goes back to these
        self.defaults = dict(defaults) if defaults is not None else config_to_dict(StrategyConfig())
        self.config_version = 1
        self.saved_config: dict[str, Any] | None = None  # the config the last run ended with
        self.client_prefix = client_prefix
        self.emergency_stop = False
        self.emergency_reason = ""
        self.day = ""
        self.daily_pnl = 0.0
        self.trades_today = 0
        self.wins_today = 0
        self.loss_streak = 0
        # entries sent per window (slug -> count), an entry that got no fill not counted
        self.entries: dict[str, int] = {}
        # per market series (series key -> its state: position of a window still open, the
        # day's counters, its halt); the totals above are over all of them
        self.market_states: dict[str, MarketState] = {}
        self.slug_market: dict[str, str] = {}  # slug -> series key, from md.market
        # positions whose window ended, held until a source says how the market resolved: they
        # are capital at risk but do not block entries in later windows
        self.awaiting: dict[str, Position] = {}
        self.pending: dict[str, PendingOrder] = {}
        # `started_ns` of the latest execution process seen (its heartbeat): orders sent before
        # it are asked about once (`on_heartbeat`)
        self.exec_started_ns = 0
        self.settled: list[str] = []  # slugs already settled (bounded)
        self.now_ns = 0
        self.markets: dict[str, MarketInfo] = {}
        self.token_slug: dict[str, str] = {}
        self.books = SnapshotBooks()  # built from the latest snapshot when read
        self.last_spot_ns: dict[str, int] = {}  # asset -> newest Binance trade (receive time)
        self.feed_stale: dict[str, bool] = {}
        self.closed_trades: list[dict[str, Any]] = []
        self._next_state_ns = 0
        self._intent_n = 0
        self.applied_fills: list[str] = []  # keys of fills already counted (bounded)
        self.fill_watermark_ns = 0  # newest fill time seen: ledger replay starts a bit before
        # settled wins not yet redeemed (condition id -> USD expected) and what came back; rebuilt
        # from execution's ledger at start (`seed_redemptions`), then folded from exec.redemption
        self.redemptions_open: dict[str, float] = {}
        self.redeemed: dict[str, float] = {}  # condition id -> USD returned (bounded)
        self.redeemed_usd = 0.0
        # maker quotes per market series (services/strategy/quotes.py), not persisted: a
        # restarted strategy cancels whatever rested before (`cancel_all_quotes` at start)
        self.quote_books: dict[str, quotes.QuoteBook] = {}
        self.post_only_until_ns = 0  # the venue takes only post-only orders until then
        self._sync_markets()
        if state:
            self.restore(state)

    # ------------------------------------------------------------------ markets
    def market_configs(self) -> dict[str, StrategyConfig]:
        """The configured, enabled markets (series key -> the config it trades with: the base
        config with the market's overrides, `strategy_config_for`), in config order."""
        cached = getattr(self, "_market_configs", None)
        if cached is None or cached[0] is not self.config:
            configs = {
                spec.key: strategy_config_for(self.config, spec)
                for spec in enabled_markets(self.config)
            }
            cached = self._market_configs = (self.config, configs)
        return cached[1]

    def _sync_markets(self) -> None:
        """Make `market_states` follow the config: new markets get a state, every configured
        one its current config; a removed market stays (not configured) until it is flat."""
        configs = self.market_configs()
        for key, cfg in configs.items():
            ms = self.market_states.get(key)
            if ms is None:
                self.market_states[key] = MarketState(key, cfg)
            else:
                ms.config, ms.configured = cfg, True
        for key, ms in list(self.market_states.items()):
            if key not in configs:
                ms.configured = False
        self._default_key = next(iter(configs), DEFAULT_MARKET_KEY)
        self._drop_flat_removed()
        for ms in self.market_states.values():
            self._check_config_fits(ms)

    def spot_assets(self) -> tuple[str, ...]:
        """The assets of the configured markets, in config order (whose trades strategy needs)."""
        return tuple(dict.fromkeys(ms.asset for ms in self.market_states.values() if ms.configured))

    def _drop_flat_removed(self) -> None:
        """Forget a removed market once flat, nothing of it in flight and nothing of today's
        risk left (`MarketState.has_risk_state`: its halt, day P&L, trades, loss streak stay
        until the UTC day rolls or the halt is cleared, also across a restart, so removing and
        re-adding a market never resets them and the markets' figures add up to the totals)."""
        for key, ms in list(self.market_states.items()):
            if ms.configured or ms.position is not None or ms.has_risk_state():
                continue
            if any(o.market == key for o in self.pending.values()):
                continue
            if any(self.market_of(slug) == key for slug in self.awaiting):
                continue
            del self.market_states[key]
            self._risk_event("market_removed", market=key)

    def market_of(self, slug: str) -> str:
        """The series key of `slug`: from its md.market, else from the slug's form, else the
        first configured market."""
        key = self.slug_market.get(slug)
        if key is None:
            key = series_of_slug(slug) or self._default_key
            if key not in self.market_states:
                key = self._default_key
        return key

    def state_of(self, slug: str, keep: bool = False) -> MarketState:
        """The state of `slug`'s market. A market with no state (not configured, nothing held)
        gets a passing one, not configured, kept only with `keep` (a fill of it)."""
        key = self.market_of(slug)
        ms = self.market_states.get(key)
        if ms is None:
            ms = MarketState(key, self.config, configured=False)
            if keep:
                self.market_states[key] = ms
        return ms

    @property
    def position(self) -> Position | None:
        """The first market's open position (the only one with a single market), else any."""
        for ms in self.market_states.values():
            if ms.position is not None:
                return ms.position
        return None

    @property
    def force_exit_waiting(self) -> str:
        return next(
            (ms.force_exit_waiting for ms in self.market_states.values() if ms.force_exit_waiting),
            "",
        )

    # ------------------------------------------------------------------ persistence
    def persistent(self) -> dict[str, Any]:
        """Everything a restart must not forget, as plain JSON-able builtins."""
        # the runner saves after every message (profiled at 5,000 msg/s: hashing the config
        # each time was 14 % of strategy's CPU); the config changes only on an update
        cached = getattr(self, "_persisted_config", None)
        if cached is None or cached[0] is not self.config:
            cached = (self.config, config_hash(self.config), config_to_dict(self.config))
            self._persisted_config = cached
        return {
            "emergency_stop": self.emergency_stop,
            "emergency_reason": self.emergency_reason,
            "config_version": self.config_version,
            "config_hash": cached[1],
            "config": dict(cached[2]),
            "day": self.day,
            "daily_pnl": self.daily_pnl,
            "trades_today": self.trades_today,
            "wins_today": self.wins_today,
            "loss_streak": self.loss_streak,
            "entries": dict(list(self.entries.items())[-50:]),
            "position": asdict(self.position) if self.position else None,
            "markets": {k: ms.persistent() for k, ms in self.market_states.items()},
            "awaiting": {k: asdict(v) for k, v in self.awaiting.items()},
            "pending": {k: asdict(v) for k, v in self.pending.items()},
            "settled": self.settled[-50:],
            "intent_n": self._intent_n,
            "force_exit_waiting": self.force_exit_waiting,
            "applied_fills": self.applied_fills[-MAX_FILL_KEYS:],
            "fill_watermark_ns": self.fill_watermark_ns,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.emergency_stop = bool(state.get("emergency_stop", False))
        self.emergency_reason = str(state.get("emergency_reason", ""))
        self.config_version = int(state.get("config_version", 1))
        saved = state.get("config")
        self.saved_config: dict[str, Any] | None = dict(saved) if isinstance(saved, dict) else None
        self.day = str(state.get("day", ""))
        self.daily_pnl = float(state.get("daily_pnl", 0.0))
        self.trades_today = int(state.get("trades_today", 0))
        self.wins_today = int(state.get("wins_today", 0))
        self.loss_streak = int(state.get("loss_streak", 0))
        self.entries = {str(k): int(v) for k, v in (state.get("entries") or {}).items()}
        self.awaiting = {k: Position(**v) for k, v in (state.get("awaiting") or {}).items()}
        self.pending = {k: PendingOrder(**v) for k, v in (state.get("pending") or {}).items()}
        markets = state.get("markets")
        if isinstance(markets, dict):
            for key, doc in markets.items():
                ms = self.market_states.get(key)
                if ms is None:  # removed from the config while down: kept until flat
                    ms = self.market_states[key] = MarketState(key, self.config, configured=False)
                ms.restore(doc)
                ms.configured = key in self.market_configs()
        else:  # saved before markets: the one position and the day's counters are the first's
            ms = self.state_of(str((state.get("position") or {}).get("slug", "")), keep=True)
            pos = state.get("position")
            ms.position = Position(**pos) if pos else None
            ms.daily_pnl, ms.trades_today = self.daily_pnl, self.trades_today
            ms.wins_today, ms.loss_streak = self.wins_today, self.loss_streak
            ms.force_exit_waiting = str(state.get("force_exit_waiting", ""))
        for o in self.pending.values():
            o.market = o.market or self.market_of(o.slug)
        self.settled = list(state.get("settled") or [])
        self._intent_n = int(state.get("intent_n", 0))
        self.applied_fills = list(state.get("applied_fills") or [])
        self.fill_watermark_ns = int(state.get("fill_watermark_ns", 0))

    # ------------------------------------------------------------------ risk
    def halt_reasons(self) -> list[str]:
        reasons = []
        if self.emergency_stop:
            reasons.append("emergency_stop")
        if self.daily_pnl <= -self.config.max_daily_loss_usd + EPS:
            reasons.append("daily_loss_limit")
        if self.loss_streak >= self.config.max_consecutive_losses:
            reasons.append("loss_streak")
        return reasons

    def market_halt_reasons(self, ms: MarketState) -> list[str]:
        """Why one market alone is halted: an operator's halt of it, its own daily loss limit
        or loss streak (its config's, overrides included)."""
        reasons = []
        if ms.halted:
            reasons.append("market_stop")
        if ms.daily_pnl <= -ms.config.max_daily_loss_usd + EPS:
            reasons.append("market_daily_loss_limit")
        if ms.loss_streak >= ms.config.max_consecutive_losses:
            reasons.append("market_loss_streak")
        if ms.entries_blocked:
            reasons.append("real_trading_blocked")
        return reasons

    def capital_at_risk(self, market: str | None = None) -> float:
        """Collateral (USD, fees included) in positions not yet closed or settled: the open ones
        and every one awaiting resolution; of one market (series key) when `market` is given."""
        total = 0.0
        for ms in self.market_states.values():
            if ms.position is not None and (market is None or ms.key == market):
                total += ms.position.cost
        for slug, p in self.awaiting.items():
            if market is None or self.market_of(slug) == market:
                total += p.cost
        return total

    def entries_committed(self, except_market: str = "") -> float:
        """Collateral (USD) the entries in flight may still spend, besides `except_market`'s
        own: every entry order (taker sent and not closed by its fills, maker quote resting),
        its unfilled shares at its limit price (a BUY never spends more; what filled is in the
        position already). The capital and daily-loss checks count it with `capital_at_risk`:
        markets whose windows open at the same second send their entries milliseconds apart,
        and each one alone fitted the limit (a new user's test, 2026-12-01: 18.91 USD at risk
        against a 12 USD limit from three markets' entries within 6 ms). A market's own quote
        is left out: the new one replaces it."""
        return sum(
            max(0.0, p.size - p.filled) * p.limit_price
            for p in self.pending.values()
            if p.kind == "entry" and p.market != except_market
        )

    def open_positions(self) -> int:
        """Markets holding a position in a window still open, or with an entry in flight."""
        keys = {ms.key for ms in self.market_states.values() if ms.position is not None}
        keys.update(o.market for o in self.pending.values() if o.kind == "entry")
        return len(keys)

    def open_slugs(self) -> list[str]:
        """Slugs of the open positions and of those awaiting resolution."""
        held = [ms.position.slug for ms in self.market_states.values() if ms.position]
        return held + list(self.awaiting)

    def _park_ended(self) -> None:
        """A position whose window ended (and no order of it in flight) waits for resolution
        aside, so the next window can trade."""
        for ms in self.market_states.values():
            p = ms.position
            if p is None or p.window_end_ns <= 0 or self.now_ns < p.window_end_ns:
                continue
            if any(o.slug == p.slug for o in self.pending.values()):
                continue
            self.awaiting[p.slug] = p
            ms.position = None
            self._risk_event(
                "position_awaiting_resolution",
                slug=p.slug,
                market=ms.key,
                size=p.size,
                cost=round(p.cost, 6),
            )

    def risk_state(self) -> RiskState:
        reasons = self.halt_reasons()
        return RiskState(
            ts_ns=self.now_ns,
            halted=bool(reasons),
            emergency_stop=self.emergency_stop,
            reasons=reasons,
            day=self.day,
            daily_pnl=round(self.daily_pnl, 6),
            trades_today=self.trades_today,
            wins_today=self.wins_today,
            loss_streak=self.loss_streak,
            config_version=self.config_version,
            capital_at_risk=round(self.capital_at_risk(), 6),
            awaiting_resolution=sorted(self.awaiting),
            venue=self.venue,
            mode=self.mode,
            awaiting_redemption_usd=round(sum(self.redemptions_open.values()), 6),
            redemptions_open=len(self.redemptions_open),
            redeemed_usd=round(self.redeemed_usd, 6),
            markets=self.market_risk(),
        )

    def position_states(self) -> list[PositionState]:
        """One PositionState per market (the first market's alone with a single market)."""
        return [self.position_state(ms) for ms in self.market_states.values()]

    def position_state(self, ms: MarketState | None = None) -> PositionState:
        """The position of one market (`ms`; the first market with a position when None): the
        open one, else the latest awaiting resolution, else a closed state."""
        if ms is None:
            ms = next(
                (m for m in self.market_states.values() if m.position is not None),
                self.market_states.get(self._default_key),
            )
        p = ms.position if ms is not None else None
        awaiting = False
        if p is None and self.awaiting:
            mine = [
                a
                for slug, a in self.awaiting.items()
                if ms is None or len(self.market_states) == 1 or self.market_of(slug) == ms.key
            ]
            if mine:
                p, awaiting = max(mine, key=lambda x: x.window_end_ns), True
        key = ms.key if ms is not None else self._default_key
        if p is None:
            return PositionState(ts_ns=self.now_ns, open=False, market=key)
        book = self.books.get(p.asset_id)
        mark = book.best_bid if book else None
        return PositionState(
            ts_ns=self.now_ns,
            open=True,
            slug=p.slug,
            asset_id=p.asset_id,
            outcome=p.outcome,  # type: ignore[arg-type]
            size=p.size,
            avg_price=round(max(0.0, p.avg_price), 6),
            cost=p.cost,
            fees=p.fees,
            mark_price=mark,
            unrealized_pnl=(mark * p.size - p.cost) if mark is not None else 0.0,
            awaiting_resolution=awaiting,
            market=key,
        )

    def _risk_event(self, event: str, level: str = "INFO", **fields: Any) -> None:
        self.log("risk", event, level, ts_event_ns=self.now_ns, **fields)

    def _advance(self, ts_ns: int, out: list[tuple[str, Msg]]) -> None:
        if ts_ns <= self.now_ns:
            return
        self.now_ns = ts_ns
        day = utc_day(ts_ns)
        if day != self.day:
            if self.day:
                self._risk_event(
                    "day_rolled",
                    previous_day=self.day,
                    daily_pnl=self.daily_pnl,
                    trades=self.trades_today,
                    loss_streak=self.loss_streak,
                )
            was_halted = self.halt_reasons()
            self.day, self.daily_pnl, self.trades_today, self.wins_today = day, 0.0, 0, 0
            # a loss-streak halt lasts for the rest of the UTC day
            self.loss_streak = 0
            for ms in self.market_states.values():
                ms.new_day()
            if was_halted != self.halt_reasons():
                out.append((topics.RISK_STATE, self.risk_state()))

    # ------------------------------------------------------------------ dispatch
    def on_clock_tick(self, msg: ClockTick, now_ns: int) -> Out:
        out: Out = []
        self._advance(msg.ts_ns, out)
        self._sweep_quotes(out)
        self._expire_pending(out)
        self._park_ended()
        for ms in list(self.market_states.values()):
            self._check_exit(out, ms)
        self._drop_flat_removed()
        if self.now_ns >= self._next_state_ns:
            self._next_state_ns = self.now_ns + STATE_EVERY_NS
            out.append((topics.RISK_STATE, self.risk_state()))
            out.extend((topics.POSITION, ps) for ps in self.position_states())
        return out

    def on_signal_score(self, msg: SignalScore, now_ns: int) -> Out:
        out: Out = []
        self._advance(msg.ts_ns, out)
        ms = self.market_states.get(msg.market) or self.state_of(msg.slug)
        ms.last_signal = msg
        self._on_signal(msg, ms, out)
        return out

    def on_book_snapshot(self, msg: BookSnapshot, now_ns: int) -> Out:
        out: Out = []
        self._advance(msg.ts_recv_ns, out)
        self._on_book(msg)
        if self.quote_books:
            self._sweep_quotes(out)
        for ms in self.market_states.values():
            if ms.position is not None and msg.asset_id == ms.position.asset_id:
                self._check_exit(out, ms)
        return out

    # the runner reads books lazily (common.bus Subscriber(lazy_books=True): levels decoded
    # when the book is read, common.book.SnapshotBooks); a backtest hands whole snapshots
    on_lazy_book_snapshot = on_book_snapshot

    def on_btc_trade(self, msg: BtcTrade, now_ns: int) -> Out:
        out: Out = []
        self._advance(msg.ts_recv_ns, out)
        if msg.ts_recv_ns > self.last_spot_ns.get(msg.asset, 0):
            self.last_spot_ns[msg.asset] = msg.ts_recv_ns
        return out

    def on_market_info(self, msg: MarketInfo, now_ns: int) -> Out:
        out: Out = []
        self._advance(msg.ts_recv_ns, out)
        self.markets[msg.slug] = msg
        key = self._series_key(msg)
        if key:
            self.slug_market[msg.slug] = key
        ms = self.state_of(msg.slug)
        window_s = (msg.window_end_ns - msg.window_start_ns) / NS
        if (window_s > 0 and window_s != ms.window_s) or msg.min_order_size != ms.min_order_size:
            ms.window_s = window_s if window_s > 0 else ms.window_s
            ms.min_order_size = msg.min_order_size
            self._check_config_fits(ms)
        if ms.position is not None and ms.position.slug == msg.slug:
            ms.position.window_end_ns = msg.window_end_ns  # unknown if rebuilt from a fill
            ms.position.take_terms(msg, "md.market")
            if ms.force_exit_waiting:
                self._force_exit(ms.force_exit_waiting, ms, out)
            else:
                self._check_exit(out, ms)
        self.token_slug[msg.up_token_id] = msg.slug
        self.token_slug[msg.down_token_id] = msg.slug
        self._prune_markets()
        return out

    def on_feed_status(self, msg: FeedStatus, now_ns: int) -> Out:
        out: Out = []
        self._advance(msg.ts_ns, out)
        stale = msg.stale or not msg.connected
        if self.feed_stale.get(msg.feed) != stale:
            self._risk_event("feed_status", feed=msg.feed, stale=stale, detail=msg.detail)
        self.feed_stale[msg.feed] = stale
        self._sweep_quotes(out)
        return out

    def on_order_filled(self, msg: OrderFilled, now_ns: int) -> Out:
        out: Out = []
        self._on_fill(msg, out)
        return out

    def on_order_rejected(self, msg: OrderRejected, now_ns: int) -> Out:
        out: Out = []
        if msg.code == "venue_post_only":
            self.post_only_until_ns = max(self.post_only_until_ns, self.now_ns + POST_ONLY_HOLD_NS)
        pend = self.pending.get(msg.client_order_id)
        if pend is not None and pend.kind == "entry" and pend.filled <= EPS:
            self._back_off_entries(pend.market, msg)
        self._on_no_fill(msg.client_order_id, f"order_rejected:{msg.reason}", out)
        return out

    def _back_off_entries(self, market: str, msg: OrderRejected) -> None:
        """An entry of `market` (series key) was rejected: no entry there for
        `entry_reject_backoff_s` doubled per rejection in a row (capped at
        `entry_reject_backoff_max_s`), logged once per backoff (risk `entry_backoff`). A reject
        no retry can fix (real trading blocked by a switch) halts the market's entries
        (risk `entries_halted`, halt reason `real_trading_blocked`) until the config changes or
        strategy restarts. Exits are not affected (their pace: EXIT_RETRY_NS to EXIT_RETRY_MAX_NS)."""
        ms = self.market_states.get(market)
        if ms is None:
            return
        if msg.code.startswith(REAL_TRADING_BLOCKED):
            if not ms.entries_blocked:
                ms.entries_blocked = msg.code
                self._risk_event(
                    "entries_halted",
                    "WARNING",
                    market=ms.key,
                    code=msg.code,
                    reason=msg.reason,
                    client_order_id=msg.client_order_id,
                    message=(
                        f"execution refuses every order in this mode ({msg.reason}): no more "
                        f"entries in {ms.key} until strategy restarts or the config changes"
                    ),
                )
            return
        cfg = ms.config
        moved = msg.code in BOOK_MOVED_CODES
        if not moved:
            ms.entry_rejects += 1
        if cfg.entry_reject_backoff_s <= 0.0:
            return
        if moved:
            # execution's own checks found the book moved under the order before anything
            # reached the venue: the next book may well take it, so a flat base wait (bounding
            # the ledger's rejected rows to one a base wait), not a doubling one (a CI run: eight
            # 20 s-window markets under load waited out whole windows after a few such rejects)
            wait_s = cfg.entry_reject_backoff_s
        else:
            wait_s = min(
                cfg.entry_reject_backoff_s * 2.0 ** min(ms.entry_rejects - 1, 30),
                max(cfg.entry_reject_backoff_s, cfg.entry_reject_backoff_max_s),
            )
        ms.entry_backoff_until_ns = self.now_ns + int(wait_s * NS)
        self._risk_event(
            "entry_backoff",
            "WARNING",
            market=ms.key,
            code=msg.code,
            reason=msg.reason,
            client_order_id=msg.client_order_id,
            rejects_in_a_row=ms.entry_rejects,
            backoff_s=round(wait_s, 3),
            until_ns=ms.entry_backoff_until_ns,
        )

    def _reset_entry_backoff(self, ms: MarketState, why: str) -> None:
        """A fill or a config change: the market's entries are no longer held back."""
        if ms.entry_rejects or ms.entries_blocked or ms.entry_backoff_until_ns:
            self._risk_event(
                "entry_backoff_reset",
                market=ms.key,
                why=why,
                rejects_in_a_row=ms.entry_rejects,
                entries_blocked=ms.entries_blocked,
            )
        ms.entry_rejects, ms.entry_backoff_until_ns, ms.entries_blocked = 0, 0, ""

    def on_order_accepted(self, msg: OrderAccepted, now_ns: int) -> Out:
        out: Out = []
        status = msg.status.lower()
        if status in TERMINAL_NO_FILL:
            self._on_no_fill(msg.client_order_id, f"order_{status}", out)
        elif status in TERMINAL_FILLED and (pend := self.pending.get(msg.client_order_id)):
            if pend.filled > EPS:  # its fills came first: nothing more to wait for
                del self.pending[msg.client_order_id]
            else:  # the fills follow: the first one closes it
                pend.final = True
        return out

    def on_market_resolved(self, msg: MarketResolved, now_ns: int) -> Out:
        out: Out = []
        self._advance(msg.ts_ns, out)
        self._on_resolved(msg, out)
        return out

    def on_position_settled(self, msg: PositionSettled, now_ns: int) -> Out:
        out: Out = []
        self._advance(msg.ts_ns, out)
        self._on_settlement(msg, out)
        return out

    def on_position_redeemed(self, msg: PositionRedeemed, now_ns: int) -> Out:
        """A settled market's redemption changed state: its pUSD moves from "awaiting
        redemption" to "redeemed" when confirmed. Risk state goes out when the figures move."""
        out: Out = []
        before = (len(self.redemptions_open), round(self.redeemed_usd, 6))
        self._fold_redemption(msg.condition_id, msg.state, msg.cash_expected, msg.cash_returned)
        if (len(self.redemptions_open), round(self.redeemed_usd, 6)) != before:
            self._risk_event(
                "redemption_" + msg.state,
                slug=msg.slug,
                condition_id=msg.condition_id,
                cash_expected=msg.cash_expected,
                cash_returned=msg.cash_returned,
            )
            out.append((topics.RISK_STATE, self.risk_state()))
        return out

    def _fold_redemption(self, cid: str, state: str, expected: float, returned: float) -> None:
        if cid in self.redeemed:
            return  # confirmed already: a repeated message never counts twice
        if state == "confirmed":
            self.redemptions_open.pop(cid, None)
            self.redeemed[cid] = returned
            self.redeemed_usd += returned
            if len(self.redeemed) > MAX_FILL_KEYS:
                del self.redeemed[next(iter(self.redeemed))]
        elif state == "failed":
            self.redemptions_open.pop(cid, None)
        else:
            self.redemptions_open[cid] = expected

    def seed_redemptions(self, rows: list[dict[str, Any]]) -> None:
        """Rebuild "redeemed" vs "awaiting redemption" from execution's `redemptions` ledger rows
        of this book (`condition_id`, `state`, `cash_expected`, `cash_returned`), oldest first."""
        self.redemptions_open, self.redeemed, self.redeemed_usd = {}, {}, 0.0
        for r in rows:
            self._fold_redemption(
                str(r["condition_id"]),
                str(r["state"]),
                float(r["cash_expected"]),
                float(r["cash_returned"]),
            )

    def on_trigger_emergency_stop(self, msg: TriggerEmergencyStop, now_ns: int) -> Out:
        out = self.control(msg)
        self._sweep_quotes(out)  # a halt (or a config change) cancels the quotes it blocks
        return out

    on_clear_emergency_stop = on_trigger_emergency_stop

    on_force_exit = on_trigger_emergency_stop

    on_update_config = on_trigger_emergency_stop

    def _entries_in_flight(self, market: str = "") -> int:
        """Taker entries sent and not filled yet (of series `market`; "" every market): not
        trades yet, but they count against `max_trades_per_day` so no limit is overshot."""
        return sum(
            1
            for p in self.pending.values()
            if p.kind == "entry"
            and not p.resting
            and p.filled <= EPS
            and (not market or p.market == market)
        )

    def on_heartbeat(self, msg: Heartbeat, now_ns: int) -> Out:
        """Execution's heartbeat (`sys.heartbeat.execution`, once a second). The first one of a
        new execution process (`started_ns` later than any seen) shows this SUB socket is
        joined to its publisher; the answers that process sent at start (`recover()` rejects
        the orders a crash left unsent) went out before that, and were lost (PUB/SUB slow
        joiner). So every taker order sent before it started and still unanswered is asked
        about: a `CancelOrder` naming it, which execution answers for a rejected order with
        its rejection again (a filled one's fills, a live one being reconciled: they come when
        known; one it never received: `unknown_order`). Returns those CancelOrders."""
        if msg.service != "execution" or msg.started_ns <= self.exec_started_ns:
            return []
        self.exec_started_ns = msg.started_ns
        out: Out = []
        for coid, p in self.pending.items():
            if p.resting or p.sent_ns > msg.started_ns:
                continue
            self.log("strategy", "order_asked_again", client_order_id=coid, kind=p.kind)
            out.append(
                (
                    topics.CANCEL_ORDER,
                    CancelOrder(
                        ts_ns=self.now_ns, client_order_id=coid, reason="execution_restarted"
                    ),
                )
            )
        return out

    def on_probe(self, msg: Probe, now_ns: int) -> Out:
        # the probe goes on down the orders stream, as an intent would
        return [(topics.ORDER_INTENT, forward_probe(msg, "strategy", now_ns))]

    def _series_key(self, m: MarketInfo) -> str:
        """The series key a MarketInfo names (`MarketInfo.series`, "eth-15m")."""
        return m.series

    def _prune_markets(self) -> None:
        limit = 16 * max(1, len(self.market_states))
        if len(self.markets) <= limit:
            return
        keep = set(self.open_slugs())
        for slug, m in sorted(self.markets.items(), key=lambda kv: kv[1].window_end_ns):
            if len(self.markets) <= limit:
                break
            if slug in keep or m.window_end_ns > self.now_ns:
                continue
            del self.markets[slug]
            self.slug_market.pop(slug, None)
            for t in (m.up_token_id, m.down_token_id):
                self.token_slug.pop(t, None)
                self.books.pop(t, None)

    def _on_book(self, msg: BookSnapshot) -> None:
        self.books.put(msg)  # in sync as ingest says; the Book built when read

    def _tick(self, asset_id: str, m: MarketInfo | None, known: float = 0.0) -> float:
        """The token's tick: its book's (a tick_size_change reaches the book first), else the
        market's from discovery, else `known` (kept with a position)."""
        book = self.books.get(asset_id)
        if book is not None and book.tick_size > 0:
            return book.tick_size
        return (m.tick_size if m else known) or 0.01

    # ------------------------------------------------------------------ entries
    def _decide(
        self,
        out: list[tuple[str, Msg]],
        action: str,
        reason: str,
        slug: str = "",
        side: str | None = None,
        client_order_id: str = "",
        **details: Any,
    ) -> None:
        ms = self.state_of(slug)
        out.append(
            (
                topics.DECISION,
                Decision(
                    action=action,  # type: ignore[arg-type]
                    reason=reason,
                    ts_ns=self.now_ns,
                    slug=slug,
                    side=side,  # type: ignore[arg-type]
                    client_order_id=client_order_id,
                    details=details,
                    market=ms.key,
                ),
            )
        )
        key = f"{action}:{reason}"
        if action == "skip":
            if key != ms.last_block:
                self.log(
                    "strategy",
                    "decision",
                    action=action,
                    reason=reason,
                    slug=slug,
                    side=side,
                    **details,
                )
                if reason.startswith(RISK_REASONS):
                    self._risk_event("entry_blocked", reason=reason, slug=slug, **details)
            ms.last_block = key
        else:
            ms.last_block = ""
            self.log(
                "strategy",
                "decision",
                action=action,
                reason=reason,
                slug=slug,
                side=side,
                client_order_id=client_order_id,
                **details,
            )

    def _check_config_fits(self, ms: MarketState) -> None:
        """Set `ms.config_warnings` (each logged once, WARNING, when it appears) for a config
        under which no entry can ever happen in this market, whatever the market does:
        - `entry_window_cannot_open`: `entry_window_min_sec` + `min_seconds_before_close` leave
          no second of the market's window (`ms.window_s`, from md.market) to enter, e.g. 45 + 30
          with the simulated venue's 20 s windows (every decision `entry_window_not_open`);
        - `stake_exceeds_capital_limit`: `stake_per_trade_usd` above `max_capital_at_risk_usd`
          (the market's or the global one): every decision `capital_at_risk`;
        - `stake_exceeds_daily_loss_limit`: `stake_per_trade_usd` above `max_daily_loss_usd`
          (the market's or the global one): an entry's worst case (its stake lost, plus fee)
          never fits the day's loss limit while the day's P&L is not positive, and no P&L comes
          without entries: every decision `daily_loss_headroom`.
        - `stake_below_venue_minimum`: a taker `order_type` (FOK, FAK, taker) with
          `stake_per_trade_usd` under the venue's $1 minimum for a marketable BUY
          (`money.MIN_MARKETABLE_BUY_USD`, PROTOCOLS.md section 7): every decision
          `size_below_min_order`.
        And one that limits entries without stopping them: `maker_quotes_below_price`: a
        maker/auto `order_type` whose stake buys the market's minimum resting size
        (`orderMinSize`, 5 shares) only at prices under `max_entry_price`: it quotes only
        there (a new user's $0.50 maker stake quoted only tokens at $0.10 or less).
        Checked on every config change and md.market, also while strategy is halted; a warning
        goes when the config or the window changes so that it fits. Not for a market that is no
        longer configured."""
        found: dict[str, str] = {}
        cfg, base = ms.config, self.config
        if ms.configured:
            opens, closes = cfg.entry_window_min_sec, cfg.min_seconds_before_close
            if ms.window_s > 0 and opens + closes >= ms.window_s:
                found["entry_window_cannot_open"] = (
                    f"no entry can happen: entry_window_min_sec {opens:g} + "
                    f"min_seconds_before_close {closes:g} >= the market's window of "
                    f"{ms.window_s:g} s; lower them (data/config.json or POST /api/config)"
                )
            stake = cfg.stake_per_trade_usd
            cap = min(cfg.max_capital_at_risk_usd, base.max_capital_at_risk_usd)
            if stake > cap + EPS:
                found["stake_exceeds_capital_limit"] = (
                    f"no entry can happen: stake_per_trade_usd {stake:g} > "
                    f"max_capital_at_risk_usd {cap:g}; lower the stake or raise the limit "
                    "(data/config.json or POST /api/config)"
                )
            loss = min(cfg.max_daily_loss_usd, base.max_daily_loss_usd)
            if stake > loss + EPS:
                found["stake_exceeds_daily_loss_limit"] = (
                    f"no entry can happen on a day without profit: stake_per_trade_usd {stake:g} "
                    f"> max_daily_loss_usd {loss:g} (an entry's worst case must fit the day's "
                    "loss limit); lower the stake or raise the limit (data/config.json or POST "
                    "/api/config)"
                )
            least = float(money.MIN_MARKETABLE_BUY_USD)
            if cfg.order_type in ("FOK", "FAK", "taker") and stake < least - EPS:
                found["stake_below_venue_minimum"] = (
                    f"no entry can happen: stake_per_trade_usd {stake:g} is under the venue's "
                    f"${least:g} minimum for a marketable BUY; raise the stake (data/config.json "
                    "or POST /api/config)"
                )
            top = stake / ms.min_order_size if ms.min_order_size > 0 else 1.0
            if cfg.order_type in ("maker", "auto") and top < cfg.max_entry_price - EPS:
                found["maker_quotes_below_price"] = (
                    f"maker quotes only at prices <= {top:.4g}: stake_per_trade_usd {stake:g} "
                    f"buys the market's minimum resting size ({ms.min_order_size:g} shares) "
                    f"only there (max_entry_price {cfg.max_entry_price:g}); raise the stake "
                    "(data/config.json or POST /api/config)"
                )
        if found == ms.config_warnings:
            return
        for event, text in found.items():
            if ms.config_warnings.get(event) != text:
                self.log("strategy", event, "WARNING", market=ms.key, message=text)
        ms.config_warnings = found

    def entry_block(
        self, s: SignalScore, ms: MarketState | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Why no entry on this signal ("" if none), with the numbers behind the reason. `ms`:
        the signal's market state (found from the signal when not given). The market's own
        limits use its config (base config + its overrides); the global ones (halts, daily
        loss, trades per day, capital at risk, open positions) the base config on the totals."""
        ms = ms or self.state_of(s.slug)
        cfg = ms.config
        base = self.config
        halts = self.halt_reasons()
        if halts:
            return "halted:" + ",".join(halts), {}
        halts = self.market_halt_reasons(ms)
        if halts:
            return "halted:" + ",".join(halts), {"market": ms.key}
        if not ms.configured:
            return "market_not_configured", {"market": ms.key}
        self._park_ended()
        stale_ns = cfg.stale_after_ms * MS
        # a stale BTC feed is named before the open position: "position_open" is routine, and
        # would hide for the whole hold that entries are blocked by the feed as well
        last_spot = self.last_spot_ns.get(ms.asset, 0)
        if self.feed_stale.get("binance") or self.now_ns - last_spot > stale_ns:
            stale: dict[str, Any] = {"age_ms": (self.now_ns - last_spot) / MS}
            if ms.position is not None:
                stale["position_slug"] = ms.position.slug
            return "stale_price_data", stale
        if ms.position is not None:
            return "position_open", {"position_slug": ms.position.slug}
        if any(
            p.kind == "entry" and p.market == ms.key and not p.resting
            for p in self.pending.values()
        ):
            return "order_pending", {}
        if self.now_ns < ms.entry_backoff_until_ns:
            return "entry_backoff", {
                "market": ms.key,
                "rejects_in_a_row": ms.entry_rejects,
                "remaining_s": (ms.entry_backoff_until_ns - self.now_ns) / NS,
            }
        in_flight = self.entries_committed(ms.key)
        at_risk = self.capital_at_risk() + in_flight
        if at_risk + cfg.stake_per_trade_usd > base.max_capital_at_risk_usd + EPS:
            return "capital_at_risk", {
                "capital_at_risk": round(at_risk, 6),
                "in_flight_usd": round(in_flight, 6),
                "awaiting_resolution": sorted(self.awaiting),
            }
        if cfg is not base or len(self.market_states) > 1:
            mine = self.capital_at_risk(ms.key)
            if mine + cfg.stake_per_trade_usd > cfg.max_capital_at_risk_usd + EPS:
                return "capital_at_risk", {"market": ms.key, "capital_at_risk": round(mine, 6)}
            held = self.open_positions()
            if held >= base.max_open_positions:
                return "max_open_positions", {"open_positions": held}
        m = self.markets.get(s.slug)
        if m is None:
            return "no_market", {}
        if m.closed or not m.accepting_orders:
            return "market_not_accepting_orders", {}
        if self.now_ns - s.ts_ns > stale_ns:
            return "stale_signal", {"age_ms": (self.now_ns - s.ts_ns) / MS}
        # both sides are candidates: each side's own book must be fresh and in sync; when
        # neither is, the side the model favours names the reason
        candidates: list[tuple[float, str, str, float, float, float]] = []
        first_block: tuple[str, dict[str, Any]] | None = None
        for side in (s.side, "Down" if s.side == "Up" else "Up"):
            token = m.up_token_id if side == "Up" else m.down_token_id
            book = self.books.get(token)
            block: tuple[str, dict[str, Any]] | None = None
            if (
                self.feed_stale.get("clob")
                or book is None
                or self.now_ns - book.ts_recv_ns > stale_ns
            ):
                age = (self.now_ns - book.ts_recv_ns) / MS if book else -1.0
                block = ("stale_market_data", {"age_ms": age})
            elif not book.in_sync:
                block = ("book_out_of_sync", {"asset_id": token})
            elif book.best_ask is None:
                block = ("no_ask", {})
            if block is not None:
                first_block = first_block or block
                continue
            assert book is not None and book.best_ask is not None
            ask = book.best_ask
            p_side = s.p_up if side == "Up" else 1.0 - s.p_up
            fee = fee_per_share(ask, m.fee_rate, m.fee_exponent)
            candidates.append((p_side - ask - fee, side, token, ask, p_side, fee))
        if not candidates:
            assert first_block is not None
            if first_block[0] != "no_ask":
                return first_block
        elapsed = (self.now_ns - m.window_start_ns) / NS
        remaining = (m.window_end_ns - self.now_ns) / NS
        if elapsed < cfg.entry_window_min_sec:
            return "entry_window_not_open", {"elapsed_s": elapsed}
        if remaining < cfg.min_seconds_before_close:
            return "too_close_to_close", {"remaining_s": remaining}
        in_flight = self._entries_in_flight()
        if self.trades_today + in_flight >= base.max_trades_per_day:
            return "max_trades_per_day", {"trades_today": self.trades_today, "in_flight": in_flight}
        in_flight = self._entries_in_flight(ms.key)
        if ms.trades_today + in_flight >= cfg.max_trades_per_day:
            return "max_trades_per_day", {
                "market": ms.key,
                "trades_today": ms.trades_today,
                "in_flight": in_flight,
            }
        entered = self.entries.get(s.slug, 0)
        if entered >= cfg.max_entries_per_window:
            # every entry pays the spread and the fee again: churn, not information
            return "max_entries_per_window", {"entries": entered}
        ptb_source = s.inputs.get("ptb_source")
        if (
            cfg.require_settlement_price_to_beat
            and ptb_source is not None
            and ptb_source < PTB_SETTLEMENT_MIN
        ):
            # the signal's price to beat is a non-settlement estimate (Binance): its basis to
            # Chainlink can be larger than the edge
            return "price_to_beat_not_settlement", {"ptb_source": ptb_source}
        if abs(s.score) < cfg.min_signal_score:
            return "score_below_min", {"score": s.score}
        if cfg.blend_market_weight != 0.0 and "p_market" not in s.inputs:
            # the probability is meant to be the blend with the market's mid; without a
            # two-sided Up book signal fell back to the model alone: no edge is known
            return "no_market_mid", {}
        if not candidates:
            return "no_ask", {}
        # the side whose after-fee edge is largest (ties: the side the model favours)
        edge, side, token, ask, p_side, fee = max(candidates, key=lambda c: c[0])
        info: dict[str, Any] = {
            "edge": edge,
            "ask": ask,
            "p_side": p_side,
            "fee": fee,
            "side": side,
            "token": token,
        }
        if edge < cfg.min_edge_pct:
            return "edge_below_min", info
        if ask > cfg.max_entry_price:
            return "price_above_max_entry", {"ask": ask, "side": side}
        # the worst case of this entry is losing all it pays (stake and fee); with the open
        # positions' collateral also lost, the day must stay within max_daily_loss_usd
        worst = cfg.stake_per_trade_usd * (1.0 + fee / ask)
        at_risk = self.capital_at_risk() + self.entries_committed(ms.key)
        if self.daily_pnl - at_risk - worst < -base.max_daily_loss_usd - EPS:
            return "daily_loss_headroom", {
                "daily_pnl": round(self.daily_pnl, 6),
                "capital_at_risk": round(at_risk, 6),
                "worst_case_loss": round(worst, 6),
            }
        if cfg is not base or len(self.market_states) > 1:
            mine = self.capital_at_risk(ms.key)
            if ms.daily_pnl - mine - worst < -cfg.max_daily_loss_usd - EPS:
                return "daily_loss_headroom", {
                    "market": ms.key,
                    "daily_pnl": round(ms.daily_pnl, 6),
                    "capital_at_risk": round(mine, 6),
                    "worst_case_loss": round(worst, 6),
                }
        return "", info

    def _on_signal(self, s: SignalScore, ms: MarketState, out: list[tuple[str, Msg]]) -> None:
        reason, info = self.entry_block(s, ms)
        if ms.config.order_type in ("maker", "auto") and self._quote(s, ms, reason, info, out):
            return
        if ms.position is not None and reason in ("position_open", "stale_price_data"):
            # exits are judged on the position's book alone: they go on while BTC is stale
            self._check_exit(out, ms)
        if reason:
            side = info.pop("side", s.side)
            info.pop("token", None)
            self._decide(out, "skip", reason, s.slug, side, **{"score": s.score, **info})
            return
        cfg = ms.config
        m = self.markets[s.slug]
        side = info.pop("side")
        token = info.pop("token")
        ask = info["ask"]
        tick = self._tick(token, m)
        cap = min(
            ask + cfg.limit_slippage,
            info["p_side"] - info["fee"] - cfg.min_edge_pct,
            cfg.max_entry_price,
            1.0 - tick,
        )
        limit = max(snap_down(cap, tick), ask)
        size = float(money.round_shares(round(cfg.stake_per_trade_usd / limit, 6)))
        # the venue's amounts for a marketable BUY (PROTOCOLS.md section 7): collateral cut to
        # cents and at least $1; the 5-share minimum is for resting orders only
        signed = money.marketable_amounts("BUY", money.dec(limit), money.dec(size))
        if signed.skip:
            self._decide(
                out, "skip", "size_below_min_order", s.slug, side, size=size, why=signed.skip
            )
            return
        inside = (
            self._entry_inside_stop_loss(token, size, limit, m, cfg)
            if cfg.refuse_entry_inside_stop_loss
            else None
        )
        if inside is not None:
            self._decide(out, "skip", "entry_inside_stop_loss", s.slug, side, **inside)
            return
        self._intent_n += 1
        coid = (
            f"{self.client_prefix}-{m.window_start_ns // NS}-{self.now_ns // MS}-{self._intent_n}e"
        )
        intent = OrderIntent(
            client_order_id=coid,
            slug=s.slug,
            asset_id=token,
            outcome=side,  # type: ignore[arg-type]
            side="BUY",
            order_type="FAK" if cfg.order_type == "FAK" else "FOK",
            limit_price=limit,
            size=size,
            expires_ns=self.now_ns + cfg.intent_ttl_ms * MS,
            ts_intent_ns=self.now_ns,
            origin_ts_exchange_ns=s.origin_ts_exchange_ns,
            origin_ts_recv_ns=s.origin_ts_recv_ns,
            ts_signal_ns=s.ts_signal_ns,
            tick_size=tick,
            min_order_size=m.min_order_size,
            neg_risk=m.neg_risk,
            fee_rate=m.fee_rate,
            fee_exponent=m.fee_exponent,
            reason="enter",
        )
        self.pending[coid] = PendingOrder(
            coid,
            "entry",
            s.slug,
            token,
            side,
            size,
            limit,
            intent.expires_ns,
            self.now_ns,
            market=ms.key,
        )
        # counted in trades_today from its first fill (a rejected or unanswered entry is no
        # trade); in flight, it counts against max_trades_per_day (`_entries_in_flight`)
        self.entries[s.slug] = self.entries.get(s.slug, 0) + 1
        while len(self.entries) > 50:
            del self.entries[next(iter(self.entries))]
        self._decide(
            out,
            "enter",
            "signal",
            s.slug,
            side,
            coid,
            score=s.score,
            p_up=s.p_up,
            limit_price=limit,
            size=size,
            inputs=dict(s.inputs),
            **info,
        )
        out.append((topics.ORDER_INTENT, intent))
        out.append((topics.RISK_STATE, self.risk_state()))

    def _entry_inside_stop_loss(
        self, token: str, size: float, limit: float, m: MarketInfo, cfg: StrategyConfig
    ) -> dict[str, Any] | None:
        """The numbers of a taker entry the stop-loss would sell at once, else None: buying
        `size` shares into the asks up to `limit` (cost per share = VWAP + the taker fee) and
        selling them straight back into the bids (executable bid = VWAP − the exit fee, as
        `_check_exit` values a position) already returns −`stop_loss_pct` or worse (cheap
        tokens, wide or thin books: a round trip lost within the next book). No bid at all is
        not judged here (`_check_exit` does not sell into an empty book either)."""
        book = self.books.get(token)
        if book is None:
            return None
        buy_vwap, _ = book.walk("BUY", size, limit)
        sell_vwap, depth = book.walk("SELL", size)
        if buy_vwap is None or sell_vwap is None:
            return None
        cost_ps = buy_vwap + fee_per_share(buy_vwap, m.fee_rate, m.fee_exponent)
        value = sell_vwap - fee_per_share(sell_vwap, m.fee_rate, m.fee_exponent)
        ret = value / cost_ps - 1.0 if cost_ps > 0 else 0.0
        if ret > -cfg.stop_loss_pct:
            return None
        return {
            "return": round(ret, 6),
            "stop_loss_pct": cfg.stop_loss_pct,
            "cost_per_share": round(cost_ps, 6),
            "exec_bid": round(sell_vwap, 6),
            "depth": depth,
        }

    # ------------------------------------------------------------------ maker quotes (issue 18)
    def _quote_book(self, ms: MarketState) -> quotes.QuoteBook:
        cfg = ms.config
        qb = self.quote_books.get(ms.key)
        if qb is None:
            qb = self.quote_books[ms.key] = quotes.QuoteBook(
                cfg.quote_replace_threshold, cfg.max_replaces_per_s
            )
        qb.threshold, qb.max_replaces_per_s = cfg.quote_replace_threshold, cfg.max_replaces_per_s
        return qb

    @staticmethod
    def _cutoff_ns(m: MarketInfo, cfg: StrategyConfig) -> int:
        """The window's entry cut-off (ns): no entry, and no quote resting, from then on."""
        return m.window_end_ns - cfg.min_seconds_before_close * NS

    def _quote(
        self,
        s: SignalScore,
        ms: MarketState,
        reason: str,
        info: dict[str, Any],
        out: list[tuple[str, Msg]],
    ) -> bool:
        """`order_type` maker/auto (services/strategy/quotes.py): rest, keep, replace or cancel
        this market's quote on signal `s`, given `entry_block`'s `reason` and `info`. True when
        the signal was handled here; False when the taker path goes on: `auto` takes, or the
        entry is blocked (any quote is cancelled, the skip is logged by the taker path)."""
        cfg = ms.config
        qb = self._quote_book(ms)
        if reason and reason != "edge_below_min":
            self._quote_actions(qb.plan(None, self.now_ns, reason), ms, out)
            return False
        m = self.markets[s.slug]
        side, token, p_side = info["side"], info["token"], info["p_side"]
        to_cutoff = (self._cutoff_ns(m, cfg) - self.now_ns) / NS
        if (
            cfg.order_type == "auto"
            and not reason
            and self.now_ns >= self.post_only_until_ns
            and quotes.auto_takes(
                info["edge"], to_cutoff, cfg.auto_taker_edge, cfg.auto_taker_within_s
            )
        ):
            if not qb.open_ids:
                return False
            # the quote goes first: never a taker entry while a maker quote may still fill
            self._quote_actions(qb.cancel_all("auto_takes"), ms, out)
            self._decide(out, "skip", "quote_cancelling", s.slug, side, edge=info["edge"])
            return True
        if reason == "edge_below_min":
            # entry_block stops at the taker edge before its daily-loss check: the maker's own
            # worst case (the stake, no fee) must fit the day's loss limit as well
            at_risk = self.capital_at_risk() + self.entries_committed(ms.key)
            floor = self.daily_pnl - at_risk - cfg.stake_per_trade_usd
            if floor < -self.config.max_daily_loss_usd - EPS:
                self._quote_actions(qb.plan(None, self.now_ns, "daily_loss_headroom"), ms, out)
                self._decide(out, "skip", "daily_loss_headroom", s.slug, side)
                return True
        book = self.books.get(token)
        bid = book.best_bid if book is not None else None
        ask = book.best_ask if book is not None else None
        q = qb.resting
        if (
            self.mode == "real"
            and book is not None
            and bid is not None
            and q is not None
            and q.wanted.asset_id == token
            and abs(q.wanted.price - bid) < 1e-9
            and book.size_at("BUY", bid) <= q.wanted.size + 1e-9
        ):
            # the venue's book shows our own quote (a real order): alone at the best bid it is
            # not the market's bid, or each replace would chase itself up a tick at a time
            below = [p for p, _ in book.bids if p < bid - 1e-9]
            bid = below[0] if below else None
        cap = min(p_side - cfg.min_edge_pct, cfg.max_entry_price)
        price = quotes.maker_price(bid, ask, self._tick(token, m), cap, cfg.maker_improve_ticks)
        size = (
            quotes.maker_size(cfg.stake_per_trade_usd, price, m.min_order_size) if price else None
        )
        why = "no_maker_price" if price is None else "size_below_min_order"
        wanted = quotes.Wanted(s.slug, token, side, price, size) if price and size else None
        self._quote_actions(qb.plan(wanted, self.now_ns, why), ms, out, s)
        if wanted is None:
            self._decide(
                out, "skip", why, s.slug, side, p_side=p_side, bid=bid, ask=ask, cap=cap, size=size
            )
        return True

    def _quote_actions(
        self,
        actions: list[quotes.Action],
        ms: MarketState | None,
        out: list[tuple[str, Msg]],
        s: SignalScore | None = None,
    ) -> None:
        """Send what the quote book asked for: CancelOrders and post-only GTC/GTD intents."""
        for a in actions:
            if isinstance(a, quotes.Cancel):
                pend = self.pending.get(a.client_order_id)
                out.append(
                    (
                        topics.CANCEL_ORDER,
                        CancelOrder(
                            ts_ns=self.now_ns, client_order_id=a.client_order_id, reason=a.reason
                        ),
                    )
                )
                self._decide(
                    out,
                    "skip",
                    f"quote_cancel:{a.reason}",
                    pend.slug if pend else "",
                    pend.outcome if pend else None,
                    a.client_order_id,
                )
                continue
            assert ms is not None
            self._place_quote(a.wanted, ms, out, s)

    def _place_quote(
        self,
        w: quotes.Wanted,
        ms: MarketState,
        out: list[tuple[str, Msg]],
        s: SignalScore | None,
    ) -> None:
        cfg = ms.config
        m = self.markets[w.slug]
        self._intent_n += 1
        coid = (
            f"{self.client_prefix}-{m.window_start_ns // NS}-{self.now_ns // MS}-{self._intent_n}q"
        )
        cutoff = self._cutoff_ns(m, cfg)
        exp = quotes.gtd_expiration_s(self.now_ns, cutoff)
        intent = OrderIntent(
            client_order_id=coid,
            slug=w.slug,
            asset_id=w.asset_id,
            outcome=w.outcome,  # type: ignore[arg-type]
            side="BUY",
            order_type="GTD" if exp else "GTC",
            limit_price=w.price,
            size=w.size,
            expires_ns=self.now_ns + cfg.intent_ttl_ms * MS,
            ts_intent_ns=self.now_ns,
            origin_ts_exchange_ns=s.origin_ts_exchange_ns if s else 0,
            origin_ts_recv_ns=s.origin_ts_recv_ns if s else 0,
            ts_signal_ns=s.ts_signal_ns if s else 0,
            tick_size=self._tick(w.asset_id, m),
            min_order_size=m.min_order_size,
            neg_risk=m.neg_risk,
            fee_rate=m.fee_rate,
            fee_exponent=m.fee_exponent,
            fee_rebate_rate=m.fee_rebate_rate,
            reason="maker_quote",
            post_only=True,
            expiration_s=exp,
        )
        # pending until filled or cancelled; given up 5 s after the cut-off if never answered
        self.pending[coid] = PendingOrder(
            coid,
            "entry",
            w.slug,
            w.asset_id,
            w.outcome,
            w.size,
            w.price,
            cutoff,
            self.now_ns,
            market=ms.key,
            resting=True,
        )
        self._quote_book(ms).placed(coid, w, self.now_ns)
        self._decide(
            out,
            "enter",
            "maker_quote",
            w.slug,
            w.outcome,
            coid,
            limit_price=w.price,
            size=w.size,
            order_type=intent.order_type,
            expiration_s=exp,
            score=s.score if s else 0.0,
        )
        out.append((topics.ORDER_INTENT, intent))

    def _sweep_quotes(self, out: list[tuple[str, Msg]]) -> None:
        """Cancel every quote that must not rest now: a halt (global or its market's), the
        market removed or no longer maker, a stale feed (Binance, the CLOB, the quote's book),
        or its window's entry cut-off less than QUOTE_CANCEL_LEAD_NS away."""
        resting = [
            (key, qb, live)
            for key, qb in self.quote_books.items()
            if (live := [q for q in qb.quotes.values() if not q.cancelling])
        ]
        if not resting:  # the usual case (every book without a quote): nothing computed
            return
        halts = self.halt_reasons()
        for key, qb, live in resting:
            ms = self.market_states.get(key)
            why = ""
            if halts:
                why = "halted:" + ",".join(halts)
            elif ms is None or not ms.configured:
                why = "market_not_configured"
            elif mh := self.market_halt_reasons(ms):
                why = "halted:" + ",".join(mh)
            elif ms.config.order_type not in ("maker", "auto"):
                why = "order_type_changed"
            elif self.feed_stale.get("binance") or self.feed_stale.get("clob"):
                why = "feed_stale"
            elif self.now_ns - self.last_spot_ns.get(ms.asset, 0) > ms.config.stale_after_ms * MS:
                why = "stale_price_data"
            else:
                for q in live:
                    m = self.markets.get(q.wanted.slug)
                    book = self.books.get(q.wanted.asset_id)
                    if (
                        m is None
                        or self.now_ns >= self._cutoff_ns(m, ms.config) - QUOTE_CANCEL_LEAD_NS
                    ):
                        why = "entry_cutoff"
                    elif (
                        book is None
                        or self.now_ns - book.ts_recv_ns > ms.config.stale_after_ms * MS
                    ):
                        why = "stale_market_data"
            if why:
                self._quote_actions(qb.cancel_all(why), ms, out)

    def cancel_all_quotes(self, reason: str) -> Out:
        """One CancelOrder for every resting order of this strategy (shutdown, start: whatever
        an earlier run left resting), every quote marked as being cancelled."""
        for qb in self.quote_books.values():
            for q in qb.quotes.values():
                q.cancelling = True
        return [(topics.CANCEL_ORDER, CancelOrder(ts_ns=self.now_ns, reason=reason))]

    # ------------------------------------------------------------------ exits
    def _check_exit(self, out: list[tuple[str, Msg]], ms: MarketState) -> None:
        p = ms.position
        if p is None or p.size <= EPS:
            return
        if any(o.kind == "exit" and o.market == ms.key for o in self.pending.values()):
            return
        if self.now_ns >= p.window_end_ns:
            return  # after the close the only way out is settlement
        if p.size < EXIT_MIN_SHARES - EPS:
            return  # dust the venue cannot sell: held to settlement
        wait = min(EXIT_RETRY_NS << min(max(ms.exit_misses - 1, 0), 8), EXIT_RETRY_MAX_NS)
        if self.now_ns - ms.last_exit_try_ns < wait:
            return
        m = self.markets.get(p.slug)
        if m is not None and (m.closed or not m.accepting_orders):
            return
        cfg = ms.config
        book = self.books.get(p.asset_id)
        if book is None or self.now_ns - book.ts_recv_ns > cfg.stale_after_ms * MS:
            return  # never judge an exit on a stale book
        if not book.in_sync:
            return  # nor on one ingest marked wrong
        if not self._terms_known(p, ms):
            return  # no exit valued at a guessed fee: wait for md.market (republished each second)
        vwap, depth = book.walk("SELL", p.size)
        if vwap is None:
            return
        value = vwap - fee_per_share(vwap, p.fee_rate or 0.0, p.fee_exponent)
        cost_ps = p.cost / p.size
        ret = value / cost_ps - 1.0 if cost_ps > 0 else 0.0
        if ret >= cfg.take_profit_pct:
            reason = "take_profit"
        elif ret <= -cfg.stop_loss_pct:
            reason = "stop_loss"
        else:
            return
        self._exit(
            out,
            ms,
            reason,
            vwap,
            details={"return": ret, "exec_bid": vwap, "depth": depth, "cost_per_share": cost_ps},
        )

    def _exit(
        self,
        out: list[tuple[str, Msg]],
        ms: MarketState,
        reason: str,
        ref_price: float,
        details: dict[str, Any],
        any_price: bool = False,
    ) -> str:
        p = ms.position
        assert p is not None and p.fee_rate is not None  # callers check _terms_known first
        m = self.markets.get(p.slug)
        tick = self._tick(p.asset_id, m, p.tick_size)
        limit = (
            tick if any_price else max(tick, snap_down(ref_price - ms.config.limit_slippage, tick))
        )
        limit = min(limit, 1.0 - tick)
        self._intent_n += 1
        coid = f"{self.client_prefix}-{p.window_end_ns // NS}-{self.now_ns // MS}-{self._intent_n}x"
        intent = OrderIntent(
            client_order_id=coid,
            slug=p.slug,
            asset_id=p.asset_id,
            outcome=p.outcome,  # type: ignore[arg-type]
            side="SELL",
            order_type="FAK",
            limit_price=limit,
            size=round(p.size, 6),
            expires_ns=self.now_ns + ms.config.intent_ttl_ms * MS,
            ts_intent_ns=self.now_ns,
            origin_ts_recv_ns=self.now_ns,
            tick_size=tick,
            min_order_size=p.min_order_size,
            neg_risk=p.neg_risk,
            fee_rate=p.fee_rate,
            fee_exponent=p.fee_exponent,
            reason=reason,
        )
        self.pending[coid] = PendingOrder(
            coid,
            "exit",
            p.slug,
            p.asset_id,
            p.outcome,
            p.size,
            limit,
            intent.expires_ns,
            self.now_ns,
            market=ms.key,
        )
        ms.last_exit_try_ns = self.now_ns
        self._decide(
            out, "exit", reason, p.slug, p.outcome, coid, limit_price=limit, size=p.size, **details
        )
        out.append((topics.ORDER_INTENT, intent))
        return coid

    def _terms_known(self, p: Position, ms: MarketState) -> bool:
        """True when the position's market terms (fee schedule, tick size) are known; otherwise
        logs once that its exits wait for them."""
        m = self.markets.get(p.slug)
        if m is not None and p.terms_source != "md.market":
            p.take_terms(m, "md.market")
        if p.fee_rate is not None:
            return True
        if ms.terms_wait_logged != p.slug:
            ms.terms_wait_logged = p.slug
            self._risk_event(
                "exit_waiting_for_market_terms",
                "WARNING",
                slug=p.slug,
                detail="fee schedule and tick size unknown: exits wait for md.market",
            )
        return False

    def _force_exit(self, requested_by: str, ms: MarketState, out: list[tuple[str, Msg]]) -> None:
        p = ms.position
        ms.force_exit_waiting = ""
        if p is None or p.size <= EPS or self.now_ns >= p.window_end_ns:
            return
        book = self.books.get(p.asset_id)
        ref = book.best_bid if book and book.best_bid else 0.0
        for coid in [k for k, v in self.pending.items() if v.kind == "exit" and v.market == ms.key]:
            del self.pending[coid]
        self._exit(out, ms, "force_exit", ref, {"requested_by": requested_by}, any_price=True)

    # ------------------------------------------------------------------ execution events
    def _on_fill(self, f: OrderFilled, out: list[tuple[str, Msg]]) -> None:
        pend = self.pending.get(f.client_order_id)
        if pend is None and not f.client_order_id.startswith(self.client_prefix + "-"):
            return  # not ours
        key = f.trade_id or f"{f.client_order_id}:{f.ts_fill_ns}:{f.side}:{f.price}:{f.size}"
        if key in self.applied_fills:
            return  # a duplicate (bus replay or ledger reconciliation): counted once
        self.applied_fills.append(key)
        del self.applied_fills[:-MAX_FILL_KEYS]
        self.fill_watermark_ns = max(self.fill_watermark_ns, f.ts_fill_ns)
        self._advance(f.ts_fill_ns, out)
        slug = f.slug or (pend.slug if pend else self.token_slug.get(f.asset_id, ""))
        ms = self.market_states.get(pend.market) if pend and pend.market else None
        ms = ms or self.state_of(slug, keep=True)
        if pend is not None:
            if pend.kind == "entry" and pend.filled <= EPS and not f.reverses_trade_id:
                # an entry is a trade from its first fill (rejected or unanswered: none)
                self.trades_today += 1
                ms.trades_today += 1
                if pend.resting:  # a taker entry counted in `entries` at its intent
                    self.entries[pend.slug] = self.entries.get(pend.slug, 0) + 1
            pend.filled += -f.size if f.reverses_trade_id else f.size
        elif f.side == "BUY" and not f.reverses_trade_id and ms.position is None:
            # a fill of an entry strategy had given up on (unanswered): it opens a position
            self.trades_today += 1
            ms.trades_today += 1
        if f.reverses_trade_id:  # the venue undid a trade (FAILED): the operator is told
            self._risk_event(
                "trade_failed_reversed",
                "WARNING",
                client_order_id=f.client_order_id,
                trade_id=f.reverses_trade_id,
                side=f.side,
                size=f.size,
            )
        if f.side == "BUY":
            if not f.reverses_trade_id:
                self._reset_entry_backoff(ms, "fill")
            p = ms.position
            if p is None:
                m = self.markets.get(slug)
                s = ms.last_signal
                p_side = 0.0
                if s is not None and s.slug == slug:
                    p_side = (
                        s.p_up
                        if (f.outcome or (pend.outcome if pend else "")) == "Up"
                        else 1.0 - s.p_up
                    )
                p = ms.position = Position(
                    slug=slug,
                    asset_id=f.asset_id,
                    outcome=f.outcome or (pend.outcome if pend else "Up"),
                    window_end_ns=m.window_end_ns if m else 0,
                    opened_ns=f.ts_fill_ns,
                    entry_price=f.price,
                    entry_client_order_id=f.client_order_id,
                    p_model=p_side,
                )
                if m is not None:
                    p.take_terms(m, "md.market")
                # the exit retry delay is for this position's failed exits, not the last one's
                ms.last_exit_try_ns = 0
                ms.exit_misses = 0
            p.size += f.size
            p.cost += f.price * f.size + f.fee - f.rebate_usd
            p.fees += f.fee
            p.rebates += f.rebate_usd
            p.bought += f.size
            p.paid += f.price * f.size
        else:
            p = ms.position
            if p is None or p.asset_id != f.asset_id or p.size <= EPS:
                self._risk_event(
                    "unexpected_sell_fill", "WARNING", client_order_id=f.client_order_id
                )
                return
            sold = min(f.size, p.size)
            if not f.reverses_trade_id:
                ms.exit_misses = 0  # the exit sold something: the next one goes after 1 s
            cost_part = p.cost * sold / p.size
            pnl = f.price * sold - f.fee + f.rebate_usd - cost_part
            p.rebates += f.rebate_usd
            p.size -= sold
            p.cost -= cost_part
            p.realized += pnl
            p.sold += sold
            p.proceeds += f.price * sold
            p.exit_fees += f.fee
            self.daily_pnl += pnl
            ms.daily_pnl += pnl
            if p.size <= 1e-6:
                if f.reverses_trade_id:  # the buy never happened: not a trade, win or loss
                    ms.position = None
                else:
                    self._close(p, "exit", out, closing_key=fill_key(f), ms=ms)
        # done on the order's terminal status (its ack), or when its full size is filled; not
        # on size alone: a filled entry left pending blocked entries and expired as
        # "intent_unanswered" ~7 s later
        if pend is not None and (pend.final or pend.filled >= pend.size - 1e-6):
            del self.pending[f.client_order_id]
            if pend.resting and (qb := self.quote_books.get(pend.market)) is not None:
                qb.done(f.client_order_id)
        out.append((topics.POSITION, self.position_state(ms)))
        out.append((topics.RISK_STATE, self.risk_state()))

    def _close(
        self,
        p: Position,
        how: str,
        out: list[tuple[str, Msg]],
        won: bool | None = None,
        closing_key: str = "",
        ms: MarketState | None = None,
    ) -> None:
        ms = ms or self.state_of(p.slug)
        before = self.halt_reasons() + self.market_halt_reasons(ms)
        received = p.proceeds + (p.size if won else 0.0)  # a settlement pays 1 a share held
        closed = TradeClosed(
            slug=p.slug,
            asset_id=p.asset_id,
            outcome=p.outcome,  # type: ignore[arg-type]
            how=how,  # type: ignore[arg-type]
            closing_key=closing_key or settlement_key(p.slug, p.asset_id),
            entry_client_order_id=p.entry_client_order_id,
            size=round(p.bought, 6),
            entry_price=round(p.paid / p.bought, 6) if p.bought > EPS else p.entry_price,
            exit_price=round(received / p.bought, 6) if p.bought > EPS else 0.0,
            fees=round(p.fees + p.exit_fees, 6),
            rebates=round(p.rebates, 6),
            pnl=round(p.realized, 6),
            won=bool(won) if won is not None else p.realized > 0,
            opened_ns=p.opened_ns,
            closed_ns=self.now_ns,
            day=self.day,
            venue=self.venue,
            mode=self.mode,
            market=ms.key,
        )
        out.append((topics.TRADE_CLOSED, closed))
        self.log("strategy", "trade_closed", **to_dict(closed))
        if p.realized > 0:
            self.wins_today += 1
            self.loss_streak = 0
            ms.wins_today += 1
            ms.loss_streak = 0
        else:
            self.loss_streak += 1
            ms.loss_streak += 1
        self.closed_trades.append(
            {
                "slug": p.slug,
                "outcome": p.outcome,
                "entry_price": p.entry_price,
                "opened_ns": p.opened_ns,
                "closed_ns": self.now_ns,
                "how": how,
                "pnl": round(p.realized, 6),
                "fees": round(p.fees + p.exit_fees, 6),  # entry and exit, as TradeClosed
                "rebates": round(p.rebates, 6),
                "won": closed.won,  # an exit: won when its P&L is positive, as TradeClosed
                "p_model": p.p_model,
            }
        )
        if p is ms.position:
            ms.position = None
        else:
            self.awaiting.pop(p.slug, None)
        after = self.halt_reasons() + self.market_halt_reasons(ms)
        for reason in after:
            if reason not in before:
                mine = reason.startswith("market_")
                self._risk_event(
                    "halt",
                    "WARNING",
                    reason=reason,
                    daily_pnl=ms.daily_pnl if mine else self.daily_pnl,
                    loss_streak=ms.loss_streak if mine else self.loss_streak,
                    limit=(ms.config if mine else self.config).max_daily_loss_usd,
                    **({"market": ms.key} if mine else {}),
                )

    def _on_no_fill(self, coid: str, reason: str, out: list[tuple[str, Msg]]) -> None:
        pend = self.pending.pop(coid, None)
        if pend is None:
            return
        if pend.resting:
            if (qb := self.quote_books.get(pend.market)) is not None:
                qb.done(coid)
        elif pend.kind == "exit" and pend.filled <= EPS:
            if (ms := self.market_states.get(pend.market)) is not None:
                ms.exit_misses += 1
        elif pend.kind == "entry" and pend.filled <= EPS:
            # no trade happened (trades_today counts fills); the window's entry is given back
            if self.entries.get(pend.slug, 0) > 0:
                self.entries[pend.slug] -= 1
        self._decide(
            out, "hold" if pend.kind == "exit" else "skip", reason, pend.slug, pend.outcome, coid
        )
        out.append((topics.RISK_STATE, self.risk_state()))

    def _expire_pending(self, out: list[tuple[str, Msg]]) -> None:
        for coid, pend in list(self.pending.items()):
            if self.now_ns > pend.expires_ns + PENDING_GRACE_NS:
                # outcome unknown: stop blocking (a fill still to come is counted when it comes)
                del self.pending[coid]
                if pend.resting and (qb := self.quote_books.get(pend.market)) is not None:
                    qb.done(coid)  # a quote nobody answered (execution restarted) blocks no more
                self._risk_event(
                    "intent_unanswered", "WARNING", client_order_id=coid, kind=pend.kind
                )

    def _settle(self, slug: str, winning_outcome: str, out: list[tuple[str, Msg]]) -> None:
        ms = self.state_of(slug)
        p = ms.position if ms.position and ms.position.slug == slug else None
        p = p or self.awaiting.get(slug)
        if p is None or slug in self.settled:
            return
        won = p.outcome == winning_outcome
        pnl = (p.size if won else 0.0) - p.cost
        p.realized += pnl
        self.daily_pnl += pnl
        ms.daily_pnl += pnl
        self.settled.append(slug)
        self.settled = self.settled[-50:]
        for coid in [k for k, v in self.pending.items() if v.slug == slug]:
            del self.pending[coid]
        self._decide(
            out,
            "settle",
            "won" if won else "lost",
            slug,
            p.outcome,
            p.entry_client_order_id,
            size=p.size,
            pnl=p.realized,
        )
        self._close(p, "settlement", out, won, ms=ms)
        out.append((topics.POSITION, self.position_state(ms)))
        out.append((topics.RISK_STATE, self.risk_state()))

    def _on_resolved(self, msg: MarketResolved, out: list[tuple[str, Msg]]) -> None:
        self._settle(msg.slug, msg.winning_outcome, out)

    def _on_settlement(self, msg: PositionSettled, out: list[tuple[str, Msg]]) -> None:
        winner = msg.outcome if msg.won else ("Down" if msg.outcome == "Up" else "Up")
        self._settle(msg.slug, winner, out)

    # ------------------------------------------------------------------ control
    def apply_config(
        self, doc: dict[str, Any], source: str
    ) -> tuple[bool, str, dict[str, str], dict[str, list[Any]]]:
        """Validate a whole config document and apply it: `(ok, error, field_errors, changed)`.

        Nothing changes if any field is bad. A document equal to the current config is a no-op
        (no new version); otherwise the version goes up once and `changed` names every changed
        field as `{field: [old, new]}`."""
        try:
            cfg = validate_strategy_config(doc, source)
        except ConfigError as e:
            self._risk_event("config_rejected", "WARNING", source=source, errors=e.errors)
            return False, str(e), e.errors, {}
        changed = config_diff(config_to_dict(self.config), config_to_dict(cfg))
        if changed:
            halts_before = self._config_halts()
            self.config = cfg
            self._sync_markets()
            for ms in self.market_states.values():
                self._reset_entry_backoff(ms, "config_change")
            self.config_version += 1
            self._risk_event(
                "config_applied",
                source=source,
                version=self.config_version,
                changed=changed,
                hash=config_hash(cfg),
            )
            # a raised daily-loss limit or loss-streak cap lifts that halt at once, with no
            # clear command: record it as such (a new user found no trace of it, 2026-12-01)
            after = self._config_halts()
            for key, reasons in halts_before.items():
                lifted = [r for r in reasons if r not in after.get(key, [])]
                if lifted:
                    self._risk_event(
                        "halt_lifted_by_config",
                        "WARNING",
                        source=source,
                        version=self.config_version,
                        lifted=lifted,
                        changed=changed,
                        **({"market": key} if key else {}),
                    )
        return True, "", {}, changed

    # the halts that follow from the config and the day's figures (not an operator's stop)
    CONFIG_HALTS = frozenset(
        ("daily_loss_limit", "loss_streak", "market_daily_loss_limit", "market_loss_streak")
    )

    def _config_halts(self) -> dict[str, list[str]]:
        """{"" (global) or series key: the config-derived halt reasons in force} (CONFIG_HALTS)."""
        found = {"": [r for r in self.halt_reasons() if r in self.CONFIG_HALTS]}
        for key, ms in self.market_states.items():
            found[key] = [r for r in self.market_halt_reasons(ms) if r in self.CONFIG_HALTS]
        return found

    def startup_snapshot(self) -> ConfigSnapshot:
        """The config at start; a new version (naming the changed fields) when the files were
        changed while strategy was down."""
        changed: dict[str, list[Any]] = {}
        if self.saved_config is not None:
            changed = config_diff(self.saved_config, config_to_dict(self.config))
            if changed:
                self.config_version += 1
                self._risk_event(
                    "config_applied",
                    source="startup",
                    version=self.config_version,
                    changed=changed,
                    hash=config_hash(self.config),
                )
        self.saved_config = None
        return self.config_snapshot("startup", changed)

    def reload_config(
        self, config: StrategyConfig, defaults: dict[str, Any], source: str
    ) -> list[tuple[str, Msg]]:
        """The config files changed (an edit by hand): take their merged config and defaults.
        Returns the new snapshot and risk state, or nothing when no field changed."""
        self.defaults = dict(defaults)
        ok, _, _, changed = self.apply_config(config_to_dict(config), source)
        if not (ok and changed):
            return []
        return [
            (topics.CONFIG_SNAPSHOT, self.config_snapshot("file", changed)),
            (topics.RISK_STATE, self.risk_state()),
        ]

    def control(self, msg: Msg) -> Out:
        """An operator command (TriggerEmergencyStop, ClearEmergencyStop, ForceExit, UpdateConfig):
        the new risk state and a `ControlReply` (an accepted ConfigUpdate also a snapshot)."""
        self._risk_event("control_command", kind=type(msg).__name__)
        out: Out = []
        ok, error, field_errors = True, "", {}
        extra: dict[str, Any] = {}
        # "" = every market (the global stop); else one series key ("eth-15m")
        market = str(getattr(msg, "market", "") or "")
        target = self.market_states.get(market) if market else None
        if market and target is None and not isinstance(msg, UpdateConfig):
            ok = False
            error = f"unknown market {market!r}; markets: {', '.join(self.market_states)}"
            self._risk_event("control_refused", "WARNING", market=market, error=error)
        elif isinstance(msg, TriggerEmergencyStop):
            if target is None:
                self.emergency_stop = True
                self.emergency_reason = msg.reason
            else:  # this market alone: no entries in it, its exits go on
                target.halted, target.halt_reason = True, msg.reason
            self._risk_event(
                "emergency_stop_set",
                "WARNING",
                reason=msg.reason,
                request_id=msg.request_id,
                **({"market": market} if market else {}),
            )
        elif isinstance(msg, ClearEmergencyStop):
            # the operator's "clear" also acknowledges a loss-streak halt; the daily loss limit
            # stays, since that P&L is real until the UTC day rolls. Without a market it clears
            # the global stop and every market's own halt.
            cleared = [target] if target is not None else list(self.market_states.values())
            self._risk_event(
                "emergency_stop_cleared",
                request_id=msg.request_id,
                loss_streak_reset_from=(
                    target.loss_streak if target is not None else self.loss_streak
                ),
                **({"market": market} if market else {}),
            )
            if target is None:
                self.emergency_stop = False
                self.emergency_reason = ""
                self.loss_streak = 0
            for ms in cleared:
                ms.halted, ms.halt_reason, ms.loss_streak = False, "", 0
            # what still halts entries after the clear (the day's loss limit): `ok` says the
            # command was taken, this whether trading resumes (a new user read ok as "trading")
            still = self.halt_reasons() + (
                self.market_halt_reasons(target) if target is not None else []
            )
            extra = {"still_halted": still}
        elif isinstance(msg, ForceExit):
            ok, error, waiting = self._force_exit_command(msg.reason, target, out)
            if waiting:
                extra = {"exit_waiting_for": "market terms (md.market)"}
            self._risk_event(
                "force_exit",
                request_id=msg.request_id,
                ok=ok,
                error=error,
                waiting=bool(extra),
                **({"market": market} if market else {}),
            )
        elif isinstance(msg, UpdateConfig):
            # RFC 7396 merge patch onto the current config; `replace` starts from the defaults
            changed: dict[str, list[Any]] = {}
            try:
                patch = validate_config_patch(msg.config, "config update")
            except ConfigError as e:
                self._risk_event(
                    "config_rejected", "WARNING", source="config update", errors=e.errors
                )
                ok, error, field_errors = False, str(e), e.errors
            else:
                base = self.defaults if msg.replace else config_to_dict(self.config)
                merged = merge_config_patch(base, patch, self.defaults)
                ok, error, field_errors, changed = self.apply_config(merged, "config update")
            if ok and changed:
                out.append((topics.CONFIG_SNAPSHOT, self.config_snapshot("config update", changed)))
            extra = {"changed": changed}
        else:
            return []
        out.append((topics.RISK_STATE, self.risk_state()))
        out.append(
            (
                topics.CONTROL_REPLY,
                ControlReply(
                    request_id=msg.request_id,  # type: ignore[attr-defined]
                    ok=ok,
                    ts_ns=self.now_ns,
                    error=error,
                    field_errors=field_errors,
                    state={**self.control_state(), **extra},
                ),
            )
        )
        return out

    def _force_exit_command(
        self, reason: str, target: MarketState | None, out: Out
    ) -> tuple[bool, str, list[str]]:
        """A ForceExit of one market's position (`target`) or of every open one (None):
        `(ok, error, markets whose exit waits for their terms)`."""
        states = [target] if target is not None else list(self.market_states.values())
        held = [ms for ms in states if ms.position is not None and ms.position.size > EPS]
        if not held:
            # a position whose window ended waits aside (self.awaiting) for its resolution:
            # there is nothing to sell, it settles (and redeems) when the market resolves
            waits = sorted(
                slug
                for slug in self.awaiting
                if target is None or self.market_of(slug) == target.key
            )
            where = f" in {target.key}" if target else ""
            if waits:
                return (
                    False,
                    f"no open position{where} to sell: the position in {', '.join(waits)} awaits "
                    "resolution (its window ended); nothing to sell, it settles when the market "
                    "resolves",
                    [],
                )
            return False, "no open position" + where, []
        errors: list[str] = []
        waiting: list[str] = []
        for ms in held:
            p = ms.position
            assert p is not None
            if p.window_end_ns and self.now_ns >= p.window_end_ns:
                text = "window closed: the position settles at resolution"
                errors.append(text if len(held) == 1 else f"{ms.key}: {text}")
            elif not p.window_end_ns or not self._terms_known(p, ms):
                # the market's terms are not known yet: the exit goes out when md.market comes
                ms.force_exit_waiting = reason or "operator"
                waiting.append(ms.key)
            else:
                self._force_exit(reason, ms, out)
        return len(errors) < len(held), "; ".join(errors), waiting

    def control_state(self) -> dict[str, Any]:
        risk = self.risk_state()
        pos = self.position
        return {
            "risk": {
                "halted": risk.halted,
                "reasons": risk.reasons,
                "emergency_stop": risk.emergency_stop,
                "daily_pnl": risk.daily_pnl,
                "trades_today": risk.trades_today,
                "loss_streak": risk.loss_streak,
            },
            "position": (
                {"open": True, "slug": pos.slug, "outcome": pos.outcome, "size": pos.size}
                if pos
                else {"open": False}
            ),
            "awaiting_resolution": [
                {"slug": a.slug, "outcome": a.outcome, "size": a.size, "cost": a.cost}
                for a in self.awaiting.values()
            ],
            "pending_exit": any(o.kind == "exit" for o in self.pending.values()),
            "config_version": self.config_version,
            "config": config_to_dict(self.config),
            "markets": self.market_risk(),
        }

    def market_risk(self) -> dict[str, dict[str, Any]]:
        """Per market (series key): halted, reasons (its own), reason (the operator's), daily
        P&L (USD), trades today, wins, loss streak, the open position (slug, outcome, shares,
        cost USD) or None, capital at risk (USD, awaiting resolution included), configured."""
        out: dict[str, dict[str, Any]] = {}
        for key, ms in self.market_states.items():
            reasons = self.market_halt_reasons(ms)
            p = ms.position
            out[key] = {
                "halted": bool(reasons),
                "reasons": reasons,
                "reason": ms.halt_reason,
                "daily_pnl": round(ms.daily_pnl, 6),
                "trades_today": ms.trades_today,
                "wins_today": ms.wins_today,
                "loss_streak": ms.loss_streak,
                "open_positions": int(p is not None),
                "position": (
                    {"slug": p.slug, "outcome": p.outcome, "size": p.size, "cost": round(p.cost, 6)}
                    if p is not None
                    else None
                ),
                "capital_at_risk": round(self.capital_at_risk(key), 6),
                "configured": ms.configured,
            }
        return out

    def config_snapshot(
        self, source: str, changed: dict[str, list[Any]] | None = None
    ) -> ConfigSnapshot:
        """The current config with its version, hash, the shipped defaults, the operator's
        overrides (the fields differing from the defaults) and what this version changed."""
        doc = config_to_dict(self.config)
        return ConfigSnapshot(
            version=self.config_version,
            config=doc,
            ts_ns=self.now_ns,
            source=source,
            changed=changed or {},
            hash=config_hash(doc),
            defaults=dict(self.defaults),
            overrides=overrides_of(doc, self.defaults),
        )

    def status(self) -> dict[str, Any]:
        return {
            "emergency_stop": self.emergency_stop,
            "halted": self.halt_reasons(),
            "config_version": self.config_version,
            "position": self.position.slug if self.position else None,
            "awaiting_resolution": sorted(self.awaiting),
            "capital_at_risk": round(self.capital_at_risk(), 4),
            "pending": len(self.pending),
            "trades_today": self.trades_today,
            "daily_pnl": round(self.daily_pnl, 4),
            "loss_streak": self.loss_streak,
            "warnings": [
                f"{ms.key}: {text}" if len(self.market_states) > 1 else text
                for ms in self.market_states.values()
                for text in ms.config_warnings.values()
            ],
            "markets": {
                k: {"halted": v["halted"], "position": (v["position"] or {}).get("slug")}
                for k, v in self.market_risk().items()
            },
        }
