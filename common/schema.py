"""The bus's single source of wire truth: every message the services exchange, as ONE tagged union.

Each message is a frozen msgspec Struct tagged by `kind`. On the bus a message travels inside an
`Envelope` (publisher's per-topic `seq`, per-process `epoch`, the message) encoded as msgpack; see
`common.bus`. Constraints (`Meta`) are checked on decode, so a NaN or negative price coming off the
bus is rejected there. Messages only grow: a new field always gets a default.

Timestamps are integer nanoseconds since the Unix epoch. `ts_exchange_ns` is the venue's event
time, `ts_recv_ns` the time ingest received the frame; `origin_*` fields copy the receive/exchange
time of the market-data tick that caused a decision, carried signal -> intent -> ack -> fill so
end-to-end latency can be measured at every hop.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

import msgspec
from msgspec import Meta, Struct

# --- constrained scalars ---------------------------------------------------------------------
# msgspec's `ge` rejects NaN as well as negatives (NaN >= 0 is false), which is what we want.
Price = Annotated[float, Meta(ge=0.0)]
Size = Annotated[float, Meta(ge=0.0)]
Prob = Annotated[float, Meta(ge=0.0, le=1.0)]
Score = Annotated[float, Meta(ge=-1.0, le=1.0)]
Ns = Annotated[int, Meta(ge=0)]
Level = tuple[Price, Size]  # [price, size]
Side = Literal["BUY", "SELL"]
Outcome = Literal["Up", "Down"]


class Msg(Struct, frozen=True, tag_field="kind", forbid_unknown_fields=False):
    """Base of every bus message (unknown fields are ignored so older readers survive growth)."""


# --- market data (ingest) --------------------------------------------------------------------
class BtcTrade(Msg, tag="btc_trade"):
    """One Binance spot trade (aggTrade) of any asset, despite the name (kept with its tag):
    `symbol` is the Binance symbol ("ETHUSDT"), `asset` the lowercase ticker ("eth"); published
    on `topics.trade_topic(asset)`."""

    price: Price
    size: Size
    ts_exchange_ns: Ns
    ts_recv_ns: Ns
    trade_id: int = 0
    buyer_is_maker: bool = False
    symbol: str = "BTCUSDT"
    asset: str = "btc"


class BtcQuote(Msg, tag="btc_quote"):
    """Binance best bid/ask (bookTicker) of any asset; `symbol`/`asset` as in BtcTrade;
    published on `topics.quote_topic(asset)`."""

    bid: Price
    bid_size: Size
    ask: Price
    ask_size: Size
    ts_recv_ns: Ns
    update_id: int = 0
    ts_exchange_ns: Ns = 0  # bookTicker carries no event time
    symbol: str = "BTCUSDT"
    asset: str = "btc"


class BookSnapshot(Msg, tag="book"):
    """Full book of one outcome token, best level FIRST (the venue sends it last)."""

    asset_id: str
    best_bid: Price | None
    best_ask: Price | None
    bids: list[Level]
    asks: list[Level]
    ts_exchange_ns: Ns
    ts_recv_ns: Ns
    market: str = ""
    tick_size: Price = 0.01
    book_seq: int = 0  # ingest's per-asset sequence: a delta applies to the snapshot before it
    hash: str = ""
    # False: ingest saw this book go wrong (venue's stated best differs, crossed, out of order,
    # tick change) and is resyncing it; levels may be incomplete: never trade on it
    in_sync: bool = True


class PriceFeedTick(Msg, tag="price_feed"):
    """Chainlink spot or TWAP value from the resolution-source feed."""

    source: str  # "chainlink" | "twap60" | "twap30" | "binance"
    symbol: str  # the settlement feed's pair: "btc/usd", "eth/usd", ...
    value: Price
    ts_exchange_ns: Ns
    ts_recv_ns: Ns


class MarketInfo(Msg, tag="market"):
    """One window's market, from discovery. Window times come from the market, never a constant."""

    slug: str
    condition_id: str
    up_token_id: str
    down_token_id: str
    window_start_ns: Ns
    window_end_ns: Ns
    ts_recv_ns: Ns
    role: Literal["current", "next", "past"] = "current"
    question: str = ""
    tick_size: Price = 0.01
    min_order_size: Size = 5.0
    fee_rate: Price = 0.0
    fee_exponent: float = 1.0
    fee_taker_only: bool = True
    fee_rebate_rate: Price = 0.0  # feeSchedule.rebateRate: makers earn this x the fee equivalent
    neg_risk: bool = False
    twap_enabled: bool = False
    twap_lookback_s: int = 0
    resolution_source: str = ""
    price_to_beat: Price | None = None
    price_to_beat_source: str = ""  # "gamma" | "twap" | "chainlink" | "binance" | ""
    accepting_orders: bool = True
    closed: bool = False
    asset: str = "btc"  # lowercase ticker of the underlying
    window: str = "5m"  # the series' window length: "5m" | "15m" | "1h" | "4h" | "1d"

    @property
    def series(self) -> str:
        """The series key, `f"{asset}-{window}"` ("eth-15m"), common.config.MarketSpec.key."""
        return f"{self.asset}-{self.window}"


class MarketResolved(Msg, tag="market_resolved"):
    slug: str
    winning_outcome: Outcome
    ts_ns: Ns
    winning_asset_id: str = ""
    condition_id: str = ""
    final_price: Price | None = None
    source: str = ""


class PriceBasis(Msg, tag="price_basis"):
    """Binance vs the settlement source (Chainlink <asset>/USD; `asset` says which), measured by ingest on every
    Chainlink tick, time-aligned by exchange time: `basis_usd` = Binance's last trade at or
    before the tick's time - the tick's value; `lag_ms` = the tick's receive - exchange time.
    Means and sd are exponentially weighted (about the last `samples_halflife` ticks). `warn`
    when the mean basis is beyond `bound_usd` in absolute value."""

    ts_ns: Ns
    basis_usd: float
    basis_mean_usd: float
    basis_sd_usd: float
    lag_ms: float
    lag_mean_ms: float
    samples: int
    bound_usd: float
    warn: bool = False
    samples_halflife: int = 60
    asset: str = "btc"


class ClockTick(Msg, tag="clock"):
    ts_ns: Ns


class FeedStatus(Msg, tag="feed_status"):
    feed: str  # "binance" | "clob" | "gamma" | "price_feed"
    connected: bool
    stale: bool
    ts_ns: Ns
    last_msg_age_ms: float = -1.0  # -1: nothing received yet
    reconnects: int = 0
    parse_errors: int = 0
    detail: str = ""
    last_data_age_ms: float = -1.0  # age of the last DATA message (keep-alives not counted)


# --- signal ----------------------------------------------------------------------------------
class SignalScore(Msg, tag="signal"):
    slug: str
    p_up: Prob
    side: Outcome
    score: Score
    edge_up: float
    edge_down: float
    ts_ns: Ns  # event time the signal refers to
    origin_ts_exchange_ns: Ns = 0
    origin_ts_recv_ns: Ns = 0
    ts_signal_ns: Ns = 0  # wall time when signal published (latency only)
    inputs: dict[str, float] = {}
    market: str = "btc-5m"  # the series key (MarketInfo.series)


# --- strategy --------------------------------------------------------------------------------
class Decision(Msg, tag="decision"):
    """What strategy decided on a signal and why: enter, skip, exit, hold."""

    action: Literal["enter", "skip", "exit", "hold", "settle"]
    reason: str
    ts_ns: Ns
    slug: str = ""
    side: Outcome | None = None
    client_order_id: str = ""
    details: dict[str, Any] = {}
    market: str = "btc-5m"  # the series key (MarketInfo.series)


class OrderIntent(Msg, tag="order_intent"):
    """A command to execution (PUSH/PULL). Dropped by the receiver once `expires_ns` has passed.

    `order_type` FOK/FAK: a marketable (taker) order, done at once. GTC/GTD (issue 18): a
    resting limit order, sent `post_only` by strategy's maker quotes (refused rather than
    matched when it would cross); it rests until filled, cancelled (`CancelOrder`) or, for a
    GTD, `expiration_s` (unix seconds, at least 3 minutes ahead; the venue takes it off a
    minute before: docs.polymarket.com trading/place-orders). The ack of a resting order has
    status "live" (not terminal); its fills are maker fills (`OrderFilled.liquidity`)."""

    client_order_id: str
    slug: str
    asset_id: str
    outcome: Outcome
    side: Side
    order_type: Literal["FOK", "FAK", "GTC", "GTD"]
    limit_price: Annotated[float, Meta(gt=0.0, lt=1.0)]
    size: Annotated[float, Meta(gt=0.0)]  # shares
    expires_ns: Ns
    ts_intent_ns: Ns
    origin_ts_exchange_ns: Ns = 0
    origin_ts_recv_ns: Ns = 0
    ts_signal_ns: Ns = 0
    tick_size: Price = 0.01
    min_order_size: Size = 5.0
    neg_risk: bool = False
    fee_rate: Price = 0.0
    fee_exponent: float = 1.0
    reason: str = ""
    fee_rebate_rate: Price = 0.0  # the market's feeSchedule.rebateRate (maker fills)
    post_only: bool = False  # GTC/GTD only: refused if it would match at once (never a taker)
    expiration_s: int = 0  # GTD: unix seconds; 0 for every other type


class CancelOrder(Msg, tag="cancel_order"):
    """A command: cancel resting orders. Sent by strategy (its quote management, issue 18: a
    replace, the window's entry cut-off, a halt, an emergency stop, a stale feed, shutdown) on
    the orders PUSH stream (topic frame `topics.CANCEL_ORDER`); handled by execution, which
    cancels the order (paper: drops it from its resting book; live: the venue's DELETE) and
    answers each cancelled order with an `OrderAccepted` of status "cancelled" (its fills so far
    stand). `client_order_id` names one order; empty: every resting order of `slug` (empty too:
    all of them). Cancelling an order that is no longer resting (filled, cancelled: its final
    answer went out) is logged only, except a rejected one, answered with its `OrderRejected`
    again (strategy asks so after an execution restart); naming an order execution never
    received is answered with an `OrderRejected` of code `unknown_order`. Execution also sends the `OrderAccepted` of
    status "cancelled" unasked when the venue takes a live resting order off (its dead-man
    switch, a GTD's expiry, the market closing: user-channel CANCELLATION or REST status)."""

    ts_ns: Ns
    client_order_id: str = ""
    slug: str = ""
    reason: str = ""


class OrderAccepted(Msg, tag="order_ack"):
    client_order_id: str
    status: str  # venue status: live | matched | delayed | dry_run | cancelled | expired
    ts_ack_ns: Ns
    venue_order_id: str = ""
    origin_ts_recv_ns: Ns = 0
    ts_signal_ns: Ns = 0
    ts_intent_ns: Ns = 0
    ts_exec_recv_ns: Ns = 0  # when execution received the intent (hot-path latency)


class OrderRejected(Msg, tag="order_reject"):
    client_order_id: str
    reason: str
    ts_ns: Ns
    code: str = ""
    origin_ts_recv_ns: Ns = 0
    ts_signal_ns: Ns = 0
    ts_exec_recv_ns: Ns = 0


class OrderFilled(Msg, tag="fill"):
    client_order_id: str
    asset_id: str
    side: Side
    price: Price
    size: Size
    fee: Price
    ts_fill_ns: Ns
    slug: str = ""
    outcome: Outcome | None = None
    venue_order_id: str = ""
    trade_id: str = ""
    dry_run: bool = True
    origin_ts_recv_ns: Ns = 0
    ts_signal_ns: Ns = 0
    ts_intent_ns: Ns = 0
    # set on the fill that undoes a trade the venue reported FAILED (the match was undone on
    # chain): the opposite side, same size, at the trade's net price per share, no fee
    reverses_trade_id: str = ""
    venue: str = ""  # the book it belongs to: "sim" | "live" (POLYEDGE_VENUE), with dry_run
    # "taker" (the order took liquidity: `fee` is the taker fee) or "maker" (a resting order was
    # filled: no fee, and `rebate_usd` = feeSchedule.rebateRate x the fee equivalent,
    # common.money.maker_rebate; the venue pays it the next day, see there)
    liquidity: Literal["taker", "maker"] = "taker"
    rebate_usd: float = 0.0


class PositionSettled(Msg, tag="settlement"):
    slug: str
    asset_id: str
    outcome: Outcome
    won: bool
    size: Size
    payout: Price  # per share: 1 or 0
    pnl: float
    ts_ns: Ns
    venue: str = ""  # "sim" | "live"
    dry_run: bool = True  # paper (True) or real money (False)


class PositionRedeemed(Msg, tag="redemption"):
    """A resolved market's redemption as execution's ledger holds it, published on every change
    of state. Winning outcome tokens pay nothing until redeemed (PROTOCOLS.md section 7), so the
    pUSD of a settled win is "awaiting redemption" until `state` is `confirmed`.

    `state`: requested (row written, nothing sent) | sent (transaction or relayer request
    submitted, `tx_hash` its hash or relayer id) | awaiting (a send failed or is not possible yet;
    `detail` says why; retried) | confirmed (`cash_returned` pUSD back in the wallet) | failed.
    `shares`: outcome tokens redeemed (both sides), `cash_expected`/`cash_returned` in USD."""

    condition_id: str
    slug: str
    state: str
    shares: Size
    cash_expected: float
    ts_ns: Ns
    cash_returned: float = 0.0
    tx_hash: str = ""
    detail: str = ""
    venue: str = ""  # "sim" | "live"
    dry_run: bool = True  # paper (True) or real money (False)


class TradeClosed(Msg, tag="trade_closed"):
    """One round trip closed (by exit fills or by settlement), from strategy: its P&L in USD net
    of every fee it paid and with the maker rebates it earned (`rebates`), for the trades table and the day's figures (which are their sum).
    `closing_key` is the trades-table event key of the row that closed it (the last exit fill,
    `fill:<client_order_id>:<trade_id>`, or `settlement:<slug>:<asset_id>`)."""

    slug: str
    asset_id: str
    outcome: Outcome
    how: Literal["exit", "settlement"]
    closing_key: str
    entry_client_order_id: str
    size: Size  # shares bought
    entry_price: Price  # average price paid per share, before fees
    exit_price: Price  # average price received per share (settlement: the payout 1 or 0)
    fees: float  # USD, entry and exit fees
    pnl: float  # USD, net of fees
    won: bool  # pnl > 0 for an exit; the outcome won for a settlement
    opened_ns: Ns
    closed_ns: Ns
    day: str  # UTC day whose P&L it counts in
    venue: str = ""
    mode: str = ""  # "paper" | "real"
    market: str = "btc-5m"  # the series key (MarketInfo.series)
    # maker rebates the round trip earned (USD, issue 18), already in `pnl`
    rebates: float = 0.0


class PositionState(Msg, tag="position"):
    ts_ns: Ns
    open: bool
    slug: str = ""
    asset_id: str = ""
    outcome: Outcome | None = None
    size: Size = 0.0
    avg_price: Price = 0.0
    cost: float = 0.0
    fees: Price = 0.0
    mark_price: Price | None = None
    unrealized_pnl: float = 0.0
    awaiting_resolution: bool = False  # the window ended; settles when the market resolves
    market: str = "btc-5m"  # the series key (MarketInfo.series)


class RiskState(Msg, tag="risk"):
    ts_ns: Ns
    halted: bool
    emergency_stop: bool = False
    reasons: list[str] = []
    day: str = ""  # UTC date the counters belong to
    daily_pnl: float = 0.0
    trades_today: int = 0
    wins_today: int = 0
    loss_streak: int = 0
    config_version: int = 0
    capital_at_risk: float = 0.0  # USD in the open position and those awaiting resolution
    # settled wins: pUSD still owed by redemption (not in the wallet yet) and pUSD redeemed, in
    # this book (execution's `redemptions` ledger, folded from exec.redemption)
    awaiting_redemption_usd: float = 0.0
    redemptions_open: int = 0
    redeemed_usd: float = 0.0
    awaiting_resolution: list[str] = []  # slugs of ended windows with a position not settled
    venue: str = ""  # the book these counters and halts belong to: "sim" | "live" ...
    mode: str = ""  # ... and "paper" | "real"
    # per series key ("eth-15m"): {"halted", "reason", "daily_pnl", "trades_today",
    # "open_positions", "capital_at_risk"}; the fields above are the global (whole book) state
    markets: dict[str, dict[str, Any]] = {}


# --- control (observe -> strategy, PUSH/PULL) --------------------------------------------------
class TriggerEmergencyStop(Msg, tag="emergency_stop"):
    request_id: str
    reason: str = "operator"
    market: str = ""  # a series key halts that market only; "" halts all


class ClearEmergencyStop(Msg, tag="clear_emergency_stop"):
    request_id: str
    market: str = ""  # a series key clears that market's halt only; "" clears the global stop


class ForceExit(Msg, tag="force_exit"):
    request_id: str
    reason: str = "operator"
    market: str = ""  # a series key exits that market's position only; "" exits all


class UpdateConfig(Msg, tag="config_update"):
    """A JSON merge patch (RFC 7396) onto the current strategy config: a member sets a field, a
    null member puts it back to the shipped default, `{}` changes nothing. `replace`: the patch
    applies to the shipped defaults instead (the whole config is replaced)."""

    request_id: str
    config: dict[str, Any]
    replace: bool = False


class ControlReply(Msg, tag="control_reply"):
    request_id: str
    ok: bool
    ts_ns: Ns
    error: str = ""
    field_errors: dict[str, str] = {}
    state: dict[str, Any] = {}


class ConfigSnapshot(Msg, tag="config_snapshot"):
    """The strategy config in force. `changed` names what this version changed
    (`{field: [old, new]}`), `overrides` are the fields differing from the shipped `defaults`,
    `hash` identifies the whole config (common.config.config_hash)."""

    version: int
    config: dict[str, Any]
    ts_ns: Ns
    source: str = ""
    changed: dict[str, Any] = {}  # field -> [old, new]
    hash: str = ""
    defaults: dict[str, Any] = {}
    overrides: dict[str, Any] = {}
    defaults_path: str = ""
    overrides_path: str = ""


# --- observability ---------------------------------------------------------------------------
class LatencySample(Msg, tag="latency"):
    stage: str  # market_to_signal_ms | signal_to_order_ack_ms | full_decision_to_fill_ms | ...
    ms: float
    ts_ns: Ns
    ref: str = ""


class Heartbeat(Msg, tag="heartbeat"):
    service: str
    state: str  # "running" | "degraded" | "halted" | "stopping"
    pid: int
    started_ns: Ns
    ts_ns: Ns
    detail: dict[str, Any] = {}


class Probe(Msg, tag="probe"):
    """End-to-end liveness probe: ingest emits one a second, every hot-path hop forwards it."""

    probe_id: int
    ts_origin_ns: Ns
    hops: list[str] = []
    hop_ns: list[int] = []


Message = (
    BtcTrade
    | BtcQuote
    | BookSnapshot
    | PriceFeedTick
    | MarketInfo
    | MarketResolved
    | PriceBasis
    | ClockTick
    | FeedStatus
    | SignalScore
    | Decision
    | OrderIntent
    | CancelOrder
    | OrderAccepted
    | OrderRejected
    | OrderFilled
    | PositionSettled
    | PositionRedeemed
    | TradeClosed
    | PositionState
    | RiskState
    | TriggerEmergencyStop
    | ClearEmergencyStop
    | ForceExit
    | UpdateConfig
    | ControlReply
    | ConfigSnapshot
    | LatencySample
    | Heartbeat
    | Probe
)

MESSAGE_TYPES: tuple[type[Msg], ...] = Message.__args__  # type: ignore[attr-defined]
KINDS: dict[str, type[Msg]] = {t.__struct_config__.tag: t for t in MESSAGE_TYPES}


class Envelope(Struct, frozen=True, array_like=True):
    """What one payload frame holds: the publisher's per-topic seq, its epoch, the message."""

    seq: int
    epoch: int
    msg: Message


class LazyBookSnapshot(Msg, tag="book"):
    """A `BookSnapshot` as a reader that seldom needs its levels decodes it (same wire tag and
    fields): `bids`/`asks` stay the raw msgpack (`msgspec.Raw`, skipped, not built) until
    `whole()` decodes them (checked as a `BookSnapshot`'s would be, ValidationError if bad).
    Never sent; made by `decode_envelope_lazy` only. Profiled at 5,000 msg/s: decoding the ~90
    levels of each simulated book was 39 % of signal's busy time and over half of strategy's
    and execution's (10-11 us a book; ~2.5 us lazily), while they read a book's levels only for
    an order or an exit."""

    asset_id: str
    best_bid: Price | None
    best_ask: Price | None
    bids: msgspec.Raw
    asks: msgspec.Raw
    ts_exchange_ns: Ns
    ts_recv_ns: Ns
    market: str = ""
    tick_size: Price = 0.01
    book_seq: int = 0
    hash: str = ""
    in_sync: bool = True

    def whole(self) -> BookSnapshot:
        """The `BookSnapshot` this was read from, levels decoded."""
        return BookSnapshot(
            asset_id=self.asset_id,
            best_bid=self.best_bid,
            best_ask=self.best_ask,
            bids=_levels_decoder.decode(self.bids),
            asks=_levels_decoder.decode(self.asks),
            ts_exchange_ns=self.ts_exchange_ns,
            ts_recv_ns=self.ts_recv_ns,
            market=self.market,
            tick_size=self.tick_size,
            book_seq=self.book_seq,
            hash=self.hash,
            in_sync=self.in_sync,
        )


LazyMessage = Union[  # noqa: UP007 - built from the tuple of message types
    tuple(LazyBookSnapshot if t is BookSnapshot else t for t in MESSAGE_TYPES)
]


class LazyEnvelope(Struct, frozen=True, array_like=True):
    """`Envelope` as a lazy reader decodes it: a book arrives as a `LazyBookSnapshot`."""

    seq: int
    epoch: int
    msg: LazyMessage  # type: ignore[valid-type]


_levels_decoder = msgspec.msgpack.Decoder(list[Level])
_encoder = msgspec.msgpack.Encoder()
_env_decoder = msgspec.msgpack.Decoder(Envelope)
_env_lazy_decoder = msgspec.msgpack.Decoder(LazyEnvelope)
_msg_decoder = msgspec.msgpack.Decoder(Message)
_json_encoder = msgspec.json.Encoder()

DecodeError = msgspec.DecodeError  # ValidationError is a subclass


def encode(obj: Envelope | Msg) -> bytes:
    return _encoder.encode(obj)


def decode_envelope(payload: bytes) -> Envelope:
    return _env_decoder.decode(payload)


def decode_envelope_lazy(payload: bytes) -> LazyEnvelope:
    """As `decode_envelope`, but a `BookSnapshot` comes out as a `LazyBookSnapshot`."""
    return _env_lazy_decoder.decode(payload)


def decode(payload: bytes) -> Msg:
    return _msg_decoder.decode(payload)


def kind_of(msg: Msg) -> str:
    return type(msg).__struct_config__.tag  # type: ignore[return-value]


def to_dict(msg: Msg) -> dict[str, Any]:
    """Message fields as plain builtins, `kind` first (for tap, logs and the API)."""
    return msgspec.to_builtins(msg)  # the tag field comes first


def to_json(obj: Any) -> bytes:
    return _json_encoder.encode(obj)


def fill_key(f: OrderFilled) -> str:
    """The trades-table event key of a fill (observe's row; a TradeClosed's `closing_key`)."""
    return f"fill:{f.client_order_id}:{f.trade_id or f.ts_fill_ns}"


def settlement_key(slug: str, asset_id: str) -> str:
    """The trades-table event key of a settlement."""
    return f"settlement:{slug}:{asset_id}"
