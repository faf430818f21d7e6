"""Execution's transport-free core: order intents in, acks, fills, rejects and settlements out.

Every intent is written to the ledger before anything else happens to it. Then, by the three
switches (`switches.TradingMode`): dry-run fills it against the latest local book with the venue's
rules (`fills`), after a configurable simulated latency; a blocked mode rejects it with the switch's
tag; live sends it through the one venue adapter (`live.LiveVenue`, injected) and treats a timeout
as "outcome unknown", to be reconciled, never retried. Held positions settle at 1 or 0 when their
market resolves. Time comes from the messages handled and from the `clock` the runner injects (used
for ack and fill stamps and latency, never to decide a fill).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

import msgspec
from msgspec.structs import replace

from common import money, topics
from common.book import Book, SnapshotBooks
from common.config import series_of_slug
from common.core import Core, Out, Timer, forward_probe
from common.schema import (
    BookSnapshot,
    CancelOrder,
    ClockTick,
    LatencySample,
    MarketInfo,
    MarketResolved,
    OrderAccepted,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    PositionRedeemed,
    PositionSettled,
    Probe,
)
from services.execution import fills as fm
from services.execution.ledger import Ledger, Position
from services.execution.resting import Resting, RestingBook, check_resting
from services.execution.switches import TradingMode

MS = 1_000_000
DEFAULT_BOOK_MAX_AGE_MS = 2_000  # live: older local books are refreshed over REST first
RECONCILE_INTERVAL_NS = 250 * MS  # venue lookups for unknown outcomes: reads, so paced retries
FOLLOW_BACKOFF_MAX_NS = 5_000 * MS  # per order, the lookup interval doubles up to this
REDEEM_CHECK_INTERVAL_NS = 2_000 * MS  # open redemptions: receipt asked, failed sends retried
REDEEM_RETRY_NS = 30_000 * MS
TRADE_CHECK_INTERVAL_NS = 1_000 * MS  # provisional trades: status asked once a second
UNRESOLVED_ALERT_NS = 60_000 * MS  # an order still not final after this raises an alert record
RECORDED_LEVELS = 20  # book levels kept with each order, enough to recompute its fills
# an ended window whose positions this ledger still holds unsettled this long after its end (or,
# the end unknown, after execution first saw it so) is a warning in the heartbeat (`/health`)
UNSETTLED_WARN_NS = 300_000 * MS


def record_book(book: Book, side: str) -> str:
    """The levels an order of `side` takes, as JSON kept with the order so its fill can be
    recomputed by hand (the first `RECORDED_LEVELS`, best first)."""
    return json.dumps(
        {
            "asset_id": book.asset_id,
            "ts_recv_ns": book.ts_recv_ns,
            "ts_exchange_ns": book.ts_exchange_ns,
            "side_taken": "asks" if side == "BUY" else "bids",
            "levels": [list(lv) for lv in book.taker_levels(side)[:RECORDED_LEVELS]],  # type: ignore[arg-type]
        }
    )


# --- the venue adapter's interface (live.LiveVenue implements it) -----------------------------
# live: resting orders' maker fills are read from the user channel on every timer tick and
# reconciled against REST (trades, the order's size_matched and status) this often, every
# second while the user channel is down
MAKER_POLL_INTERVAL_NS = 1_000_000_000
MAKER_RECONCILE_INTERVAL_NS = 5_000_000_000
MAKER_TAIL_NS = 30_000_000_000  # an order off the book is still followed this long for fills
SIZE_EPS = 0.005  # shares: fills and size_matched agree within the venue's 2-decimal sizes
RESTING_TYPES = ("GTC", "GTD")  # the order types that rest on the book (`_rest`)
LIVE_ORDER_STATUSES = ("LIVE", "DELAYED", "")  # the venue's words for an order still resting


class VenueError(Exception):
    """The adapter could not even build or send the order (nothing reached the venue)."""

    def __init__(self, reason: str, code: str = "venue_unavailable") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass
class SignedOrder:
    order_id: str  # the venue's order id (the signed order's hash): known before sending
    body: str  # the JSON the adapter will POST (public: it holds a signature, not the key)
    payload: Any = None  # the adapter's own object


@dataclass
class VenueTrade:
    trade_id: str
    price: float
    size: float
    fee: float
    liquidity: str = "taker"  # "maker": a resting order's fill (no fee, `rebate` USD earned)
    rebate: float = 0.0


@dataclass
class VenueResult:
    """What the venue said about one order. `outcome` is accepted, rejected, unknown or missing."""

    outcome: str
    venue_status: str = ""
    reason: str = ""
    code: str = ""
    trades: list[VenueTrade] = field(default_factory=list)
    terminal: bool = True  # False: accepted but may still fill (live/delayed)
    venue_order_id: str = ""  # the venue's id when it differs from the one known before sending
    ack_ns: int = 0  # when the venue's answer arrived (the adapter's clock), 0 = now


class Venue(Protocol):
    def sign(self, intent: OrderIntent, limit: Decimal, size: Decimal) -> SignedOrder: ...
    def post(self, order: SignedOrder, intent: OrderIntent) -> VenueResult: ...
    def lookup(
        self, order_id: str, intent: OrderIntent, sent_ns: int, claimed: frozenset[str]
    ) -> VenueResult: ...
    def rest_book(self, asset_id: str) -> tuple[list[list[float]], list[list[float]]] | None: ...
    def before_sell(self, asset_id: str) -> None: ...
    def gate(self, side: str) -> tuple[str, str]: ...
    def trade_states(self, trade_ids: list[str]) -> dict[str, str]: ...
    def redeem(self, condition_id: str, neg_risk: bool = False) -> str: ...
    def redemption_status(self, tx_hash: str) -> str: ...
    def status(self) -> dict[str, Any]: ...


@dataclass
class _Pending:
    intent: OrderIntent
    due_ns: int


class ExecutionCore(Core):
    """Order intents and market data in; acks, fills, rejects, settlements and latency out.

    `ledger` is the SQLite order ledger; `mode` the three switches; `venue` the live adapter
    (only used when the mode is live); `clock` stamps acks and fills (the runner's wall clock;
    None: the latest event time, as in a backtest); `dry_run_latency_ms` delays a paper fill.
    Raises ValueError for a live mode without a venue."""

    def __init__(
        self,
        ledger: Ledger,
        mode: TradingMode,
        *,
        venue: Venue | None = None,
        clock: Callable[[], int] | None = None,
        dry_run_latency_ms: int = 0,
        book_max_age_ms: int = DEFAULT_BOOK_MAX_AGE_MS,
    ) -> None:
        super().__init__()
        if mode.live and venue is None:
            raise ValueError("live trading needs a venue adapter")
        self.ledger = ledger
        self.mode = mode
        self.venue = venue if mode.live else None  # never reachable unless all switches agree
        self.dry_run_latency_ns = dry_run_latency_ms * MS
        self.book_max_age_ns = book_max_age_ms * MS
        # built from the latest snapshot when read; one not in sync is marked so by "ingest"
        self.books = SnapshotBooks(mark_ingest=True)
        self.markets: dict[str, MarketInfo] = {}
        self.now_ns = 0  # latest time seen on any message or tick
        self._clock = clock
        self.pending: list[_Pending] = []
        self.to_reconcile: dict[str, OrderIntent] = {}
        # this book's positions only: the ledger's venue, paper or real by the switches
        self.positions: dict[str, Position]
        # realised P&L (USD) by slug: sells against the average cost, settlements
        self.realized: dict[str, float]
        self.positions, self.realized = ledger.book(dry_run=not mode.live)
        self.counts: dict[str, int] = {}
        self._next_reconcile_ns = 0
        self._next_trade_check_ns = 0
        self._next_redeem_check_ns = 0
        self._redeem_retry_at: dict[str, int] = {}  # condition id -> next send attempt
        self._neg_risk: dict[str, bool] = {}  # condition id -> neg-risk (which adapter)
        # following orders until final: first seen, next lookup, current interval, alerted
        self._follow_since: dict[str, int] = {}
        self._follow_next: dict[str, int] = {}
        self._follow_every: dict[str, int] = {}
        self.alerts: dict[str, str] = {}  # client order id -> why it is still unresolved
        self._recv_ns: dict[str, int] = {}  # intent receipt time, until its ack or reject
        # paper resting (maker) orders, filled by the queue model from the books (issue 18)
        self.resting = RestingBook()
        self._next_maker_poll_ns = 0
        # live: resting orders just off the book, still followed for fills that raced the cancel
        self._maker_tail: dict[str, tuple[Resting, int]] = {}
        # windows' ends (slug -> ns, from MarketInfo) and, per slug held unsettled past its
        # window, when execution first saw it so (`unsettled`)
        self._window_end: dict[str, int] = {}
        self._unsettled_since: dict[str, int] = {}

    # --- time ---------------------------------------------------------------------------------
    def _t(self) -> int:
        return self._clock() if self._clock is not None else self.now_ns

    def _count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    # --- market data --------------------------------------------------------------------------
    def on_book_snapshot(self, msg: BookSnapshot, now_ns: int) -> Out:
        # ingest saw a book not in sync go wrong: never filled against until resynced
        self.books.put(msg)
        self.now_ns = max(self.now_ns, msg.ts_recv_ns)
        out = self.release_due(self.now_ns)
        if self.resting.by_asset and msg.asset_id in self.resting.by_asset:
            out += self._maker_fills(msg.asset_id)
        return out

    # the runner reads books lazily (common.bus Subscriber(lazy_books=True): levels decoded
    # when the book is read, common.book.SnapshotBooks); a backtest hands whole snapshots
    on_lazy_book_snapshot = on_book_snapshot

    def on_clock_tick(self, msg: ClockTick, now_ns: int) -> Out:
        self.now_ns = max(self.now_ns, msg.ts_ns)
        out = self.release_due(self.now_ns)
        if self.resting:
            out += self._expire_resting()
        return out

    def on_market_info(self, msg: MarketInfo, now_ns: int) -> Out:
        self.markets[msg.slug] = msg
        self._window_end[msg.slug] = msg.window_end_ns
        return []

    def on_market_resolved(self, msg: MarketResolved, now_ns: int) -> Out:
        """A market resolved: its resting orders are dropped and its positions settle
        (`settle`, idempotent by slug: ingest says it again while execution's heartbeat names
        the window in `unsettled`, so a resolution missed while execution was down or
        restarting is settled when it is back)."""
        out: Out = []
        for r in self.resting.select(slug=msg.slug):  # a resolved market's book is gone
            out += self._resting_done(r.intent.client_order_id, "cancelled", "market resolved")
        return out + self.settle(msg)

    def on_probe(self, msg: Probe, now_ns: int) -> Out:
        return [(topics.PROBE_PREFIX + "execution", forward_probe(msg, "execution", now_ns))]

    def _apply_fills(self, fills: list[OrderFilled]) -> None:
        """Fold fills (a reversal too: its side undoes the original) into the open positions;
        a position that reaches zero shares is dropped."""
        for f in fills:
            pos = self.positions.setdefault(
                f.asset_id, Position(f.slug, f.asset_id, f.outcome or "")
            )
            pnl = pos.apply(f.side, f.price, f.size, f.fee, f.rebate_usd)
            if pnl:
                self.realized[pos.slug] = self.realized.get(pos.slug, 0.0) + pnl
            if pos.size <= 1e-9:
                del self.positions[f.asset_id]

    def on_timer(self, msg: Timer, now_ns: int) -> Out:
        self.now_ns = max(self.now_ns, now_ns)
        out = self.release_due(self.now_ns)
        if self.to_reconcile and self.now_ns >= self._next_reconcile_ns:
            self._next_reconcile_ns = self.now_ns + RECONCILE_INTERVAL_NS
            out += self.reconcile(due_only=True)
        if self.now_ns >= self._next_redeem_check_ns:
            self._next_redeem_check_ns = self.now_ns + REDEEM_CHECK_INTERVAL_NS
            out += self.check_redemptions()
        if self.venue is not None and self.now_ns >= self._next_trade_check_ns:
            self._next_trade_check_ns = self.now_ns + TRADE_CHECK_INTERVAL_NS
            out += self.check_trades()
        if self.venue is not None and (self.resting or self._maker_tail):
            # the user channel's events every tick; REST as the reconcile path (more often
            # while the channel is down)
            rest = self.now_ns >= self._next_maker_poll_ns
            if rest:
                every = (
                    MAKER_RECONCILE_INTERVAL_NS
                    if getattr(self.venue, "ws_connected", False)
                    else MAKER_POLL_INTERVAL_NS
                )
                self._next_maker_poll_ns = self.now_ns + every
            out += self.poll_maker_fills(rest=rest)
        return out

    def _due(self, coid: str) -> bool:
        """Whether a followed order is due for another venue lookup (per-order back-off: 250 ms
        doubling to 5 s); raises the alert record once when it stays unresolved too long."""
        t = self.now_ns  # timer time: the back-off and the bound run on the runner's ticks
        since = self._follow_since.setdefault(coid, t)
        if t - since >= UNRESOLVED_ALERT_NS and coid not in self.alerts:
            row = self.ledger.order(coid)
            why = (
                f"order outcome still not final after {(t - since) / 1e9:.0f} s "
                f"(status {row['status'] if row else '?'}, venue {row['venue_status'] if row else '?'})"
                ": new entries halted, exits continue, never re-sent"
            )
            self.alerts[coid] = why
            self._count("alerts")
            self.ledger.update(coid, t, "alert_outcome_unresolved", code="outcome_unresolved")
            self.log(
                "execution", "order_outcome_unresolved", "ERROR", client_order_id=coid, reason=why
            )
        if t < self._follow_next.get(coid, 0):
            return False
        every = min(
            FOLLOW_BACKOFF_MAX_NS, self._follow_every.get(coid, RECONCILE_INTERVAL_NS // 2) * 2
        )
        self._follow_every[coid] = every
        self._follow_next[coid] = t + every
        return True

    def _followed(self, coid: str) -> None:
        """An order is final: stop following it."""
        self.to_reconcile.pop(coid, None)
        for d in (self._follow_since, self._follow_next, self._follow_every):
            d.pop(coid, None)

    # --- intents ------------------------------------------------------------------------------
    def on_order_intent(self, intent: OrderIntent, now_ns: int) -> Out:
        """An order intent received at `now_ns`: ledger row first, then by the mode."""
        self.now_ns = max(self.now_ns, now_ns)
        intent = self._with_market_terms(intent)
        coid = intent.client_order_id
        book = self.books.get(intent.asset_id)
        recorded = record_book(book, intent.side) if book is not None else ""
        if not self.ledger.record_intent(intent, self.mode.name, now_ns, recorded):
            self._count("duplicate")
            self.log("execution", "duplicate_intent_ignored", client_order_id=coid)
            return []
        self._count("intents")
        self._recv_ns[coid] = now_ns
        if intent.expires_ns and now_ns > intent.expires_ns:
            late_ms = (now_ns - intent.expires_ns) / MS
            return self._reject(
                intent,
                f"intent expired {late_ms:.1f} ms before receipt",
                "expired",
                status="expired",
            )
        if not self.mode.live:
            tags = self.mode.block_tags
            self.log(
                "execution",
                self.mode.block_tag,
                "INFO" if self.mode.dry_run else "WARNING",
                client_order_id=coid,
                tags=list(tags),
                venue_call=False,
            )
            if not self.mode.dry_run:
                return self._reject(
                    intent,
                    f"real trading blocked: {', '.join(tags)}",
                    self.mode.block_tag,
                    status="blocked",
                )
        if self.venue is not None:
            code, why = self.venue.gate(intent.side)
            # a post-only order is what the venue accepts in its post-only minutes
            if code and not (code == "venue_post_only" and intent.post_only):
                return self._reject(intent, why, code)
        if self.to_reconcile and intent.side == "BUY":
            # entries wait for every order's outcome (no double exposure); exits continue
            return self._reject(
                intent,
                f"{len(self.to_reconcile)} order(s) not final yet (outcome being followed at the "
                "venue): no new entries",
                "reconciling",
            )
        mk = self.markets.get(intent.slug)
        if mk is not None and (mk.closed or not mk.accepting_orders):
            return self._reject(
                intent, f"market {intent.slug} is not accepting orders", "market_closed"
            )
        if intent.order_type in RESTING_TYPES:
            return self._rest(intent)
        limit, size, reason = fm.check_intent(intent)
        if reason:
            return self._reject(intent, reason, "invalid_order")
        book = self.books.get(intent.asset_id)
        if self.venue is None and book is not None and not book.in_sync:
            return self._reject(
                intent,
                f"book of {intent.asset_id} is out of sync ({book.resync_reason}): not filled",
                "book_out_of_sync",
            )
        reason = self._preflight(intent, limit, size)
        if reason:
            return self._reject(intent, reason, "preflight_liquidity")
        if self.venue is None:
            held = self.positions.get(intent.asset_id)
            if intent.side == "SELL" and (held is None or held.size + 1e-9 < float(size)):
                # the venue refuses to sell tokens the account does not hold
                have = held.size if held is not None else 0.0
                return self._reject(
                    intent,
                    f"not enough balance: selling {size}, holding {have:g}",
                    "insufficient_balance",
                )
            return self._dry_run(intent, now_ns)
        return self._live(intent, limit, size)

    def _with_market_terms(self, intent: OrderIntent) -> OrderIntent:
        """The intent with the market's own fee schedule (latest md.market) when execution knows
        the market and the intent disagrees: a fill is never valued at a fee the sender got
        wrong (issue 12: an exit sent before strategy saw the market carried fee rate 0)."""
        mk = self.markets.get(intent.slug)
        if mk is None or (mk.fee_rate, mk.fee_exponent) == (intent.fee_rate, intent.fee_exponent):
            return intent
        self.log(
            "execution",
            "intent_fee_schedule_corrected",
            "WARNING",
            client_order_id=intent.client_order_id,
            intent=[intent.fee_rate, intent.fee_exponent],
            market=[mk.fee_rate, mk.fee_exponent],
        )
        return replace(intent, fee_rate=mk.fee_rate, fee_exponent=mk.fee_exponent)

    def _preflight(self, intent: OrderIntent, limit: Decimal, size: Decimal) -> str:
        """ "" when the book at or better than the limit gives the order what the venue would
        give it (fresh REST book if stale or out of sync, live), else the reason it is refused.

        The same walk as the fill itself (`fills.paper_fill` over `common.money`), with the
        intent's own order type, as the venue matches it (docs.polymarket.com "Order types";
        PROTOCOLS.md section 7): a FOK must fill whole (a BUY judged by the collateral it
        spends); a FAK (fill-and-kill) passes when anything at all fills at or better than the
        limit, the rest being killed by the venue, and is refused only when nothing does, which
        the venue answers with 400 `money.ERR_FAK_NOT_FILLED` (polymarket-client `fak_not_filled`)."""
        book = self.books.get(intent.asset_id)
        levels: Sequence[Sequence[float]] | None = None
        if book is not None:
            levels = book.taker_levels(intent.side)
        if self.venue is not None and (
            book is None
            or not book.in_sync  # ingest marked it wrong: ask the venue itself
            or self.now_ns - book.ts_recv_ns > self.book_max_age_ns
        ):
            fresh = self.venue.rest_book(intent.asset_id)
            if fresh is not None:
                fresh_book = Book(intent.asset_id)
                fresh_book.replace(*fresh)
                levels = fresh_book.taker_levels(intent.side)
        if levels is None:
            return f"no book for asset {intent.asset_id}"
        r = fm.paper_fill(intent, levels)
        if r.status in ("filled", "partial"):
            return ""
        depth = sum(
            (
                fm.dec(s)
                for p, s in levels
                if (fm.dec(p) <= limit if intent.side == "BUY" else fm.dec(p) >= limit)
            ),
            Decimal(0),
        )
        if intent.order_type == "FAK":
            return f"{money.ERR_FAK_NOT_FILLED} (nothing at or better than {limit}; depth {depth})"
        return f"depth {depth} at or better than {limit} does not cover {size} shares"

    # --- outputs ------------------------------------------------------------------------------
    def _reject(self, intent: OrderIntent, reason: str, code: str, status: str = "rejected") -> Out:
        t = self._t()
        self.ledger.update(
            intent.client_order_id, t, status, status=status, reason=reason, code=code, ts_done_ns=t
        )
        self._count(status)
        self.log(
            "execution",
            "order_rejected",
            "INFO",
            client_order_id=intent.client_order_id,
            status=status,
            code=code,
            reason=reason,
        )
        return [
            (
                topics.REJECT,
                OrderRejected(
                    client_order_id=intent.client_order_id,
                    reason=reason,
                    ts_ns=t,
                    code=code,
                    origin_ts_recv_ns=intent.origin_ts_recv_ns,
                    ts_signal_ns=intent.ts_signal_ns,
                    ts_exec_recv_ns=self._recv_ns.pop(intent.client_order_id, 0),
                ),
            )
        ]

    def _ack(
        self, intent: OrderIntent, status: str, venue_order_id: str, t: int, done: bool = False
    ) -> Out:
        """The ack of an order at `t` (the venue's answer). `done` (paper): the message and its
        latency are stamped when the ack's ledger row is committed, so signal -> ack includes
        execution's own work (`_t()`: the runner's wall clock; message time in a backtest)."""
        self.ledger.update(
            intent.client_order_id,
            t,
            "ack",
            status="acked",
            venue_status=status,
            venue_order_id=venue_order_id,
            ts_ack_ns=t,
        )
        if done:
            t = max(t, self._t())
        ms = (t - (intent.ts_signal_ns or intent.ts_intent_ns)) / MS
        out: Out = [
            (
                topics.ACK,
                OrderAccepted(
                    client_order_id=intent.client_order_id,
                    status=status,
                    ts_ack_ns=t,
                    venue_order_id=venue_order_id,
                    origin_ts_recv_ns=intent.origin_ts_recv_ns,
                    ts_signal_ns=intent.ts_signal_ns,
                    ts_intent_ns=intent.ts_intent_ns,
                    ts_exec_recv_ns=self._recv_ns.pop(intent.client_order_id, 0),
                ),
            )
        ]
        out += self._latency(intent.client_order_id, "signal_to_order_ack_ms", ms, t)
        return out

    def _latency(self, coid: str, stage: str, ms: float, t: int) -> Out:
        self.ledger.record_latency(coid, stage, ms, t)
        self.log("latency", stage, client_order_id=coid, ms=round(ms, 3))
        return [(topics.LATENCY, LatencySample(stage=stage, ms=ms, ts_ns=t, ref=coid))]

    def _fills(
        self,
        intent: OrderIntent,
        trades: list[VenueTrade],
        status: str,
        t: int,
        venue_order_id: str,
        dry_run: bool,
        reason: str = "",
        book_json: str | None = None,
    ) -> Out:
        msgs = [
            OrderFilled(
                client_order_id=intent.client_order_id,
                asset_id=intent.asset_id,
                side=intent.side,
                price=tr.price,
                size=tr.size,
                fee=tr.fee,
                ts_fill_ns=t,
                slug=intent.slug,
                outcome=intent.outcome,
                venue_order_id=venue_order_id,
                trade_id=tr.trade_id,
                dry_run=dry_run,
                origin_ts_recv_ns=intent.origin_ts_recv_ns,
                ts_signal_ns=intent.ts_signal_ns,
                ts_intent_ns=intent.ts_intent_ns,
                venue=self.ledger.venue,
                liquidity="maker" if tr.liquidity == "maker" else "taker",
                rebate_usd=tr.rebate,
            )
            for tr in trades
        ]
        filled, notional, fee = self._order_totals(intent.client_order_id, msgs)
        fields: dict[str, Any] = {
            "status": status,
            "filled_size": filled,
            "avg_price": notional / filled if filled else 0.0,
            "fee": fee,
            "ts_done_ns": t,
            "reason": reason,
        }
        if book_json is not None:
            fields["book_json"] = book_json
        new = self.ledger.record_fills(intent.client_order_id, msgs, t, **fields)
        if new == 0:
            return []
        if dry_run and self.venue is None:
            # paper: the fill goes out stamped when its ledger rows are committed (the ledger
            # keeps the book time it filled at)
            t = max(t, self._t())
            msgs = [replace(f, ts_fill_ns=t) for f in msgs]
        self._apply_fills(msgs)
        self._count("filled_orders")
        self.log(
            "execution",
            "order_filled",
            client_order_id=intent.client_order_id,
            status=status,
            filled=filled,
            fee=fields["fee"],
            avg_price=fields["avg_price"],
            dry_run=dry_run,
        )
        start = intent.origin_ts_recv_ns or intent.ts_signal_ns or intent.ts_intent_ns
        out: Out = [(topics.FILL, f) for f in msgs]
        out += self._latency(
            intent.client_order_id, "full_decision_to_fill_ms", (t - start) / MS, t
        )
        return out

    def _order_totals(self, coid: str, new: list[OrderFilled]) -> tuple[float, float, float]:
        """(shares filled, notional, fees) of an order over its recorded fills plus `new` ones
        (fills seen before counted once; a reversing fill takes its trade back out)."""
        rows = self.ledger.fills_of(coid)
        seen = {r["trade_id"] for r in rows}
        items = [(r["price"], r["size"], r["fee"], bool(r["reverses_trade_id"])) for r in rows]
        items += [
            (f.price, f.size, f.fee, bool(f.reverses_trade_id))
            for f in new
            if f.trade_id not in seen
        ]
        filled = notional = fee = 0.0
        for price, size, f_fee, reversal in items:
            sign = -1.0 if reversal else 1.0
            filled += sign * size
            notional += sign * size * price
            fee += f_fee
        return max(0.0, round(filled, 6)), max(0.0, notional), fee

    # --- trade states: provisional until CONFIRMED, undone on FAILED ---------------------------
    def check_trades(self) -> Out:
        """Ask the venue for the status of every live trade not final yet; a FAILED trade's
        fills are reversed in the ledger and the position and reported (PROTOCOLS.md 7)."""
        if self.venue is None:
            return []
        provisional = self.ledger.provisional_trades()
        if not provisional:
            return []
        states = self.venue.trade_states(list(provisional))
        out: Out = []
        t = self._t()
        for tid, status in states.items():
            coid = provisional.get(tid)
            if coid is None or not status:
                continue
            rows = self.ledger.trade_fills(tid)
            if not rows or rows[0]["trade_status"] == status:
                continue
            self.ledger.set_trade_status(tid, status, t, coid)
            if status == "FAILED":
                # one venue trade can fill several of our orders (maker orders on both sides,
                # `<trade>:m:<order>`): each order's fills are reversed under that order
                by_order: dict[str, list[Any]] = {}
                for r in rows:
                    by_order.setdefault(r["client_order_id"], []).append(r)
                for owner, its in by_order.items():
                    out += self._reverse(tid, owner, its, t)
            elif status == "CONFIRMED":
                self._count("trades_confirmed")
        return out

    def _reverse(self, tid: str, coid: str, rows: list[Any], t: int) -> Out:
        row = self.ledger.order(coid)
        msgs = []
        for r in rows:
            size = float(r["size"])
            # the net price per share the trade moved, so undoing it restores cash exactly
            net = (r["price"] * size + (r["fee"] if r["side"] == "BUY" else -r["fee"])) / size
            msgs.append(
                OrderFilled(
                    client_order_id=coid,
                    asset_id=r["asset_id"],
                    side="SELL" if r["side"] == "BUY" else "BUY",
                    price=round(max(0.0, net), 8),
                    size=size,
                    fee=0.0,
                    ts_fill_ns=t,
                    slug=r["slug"],
                    outcome=r["outcome"],
                    venue_order_id=r["venue_order_id"],
                    trade_id=r["trade_id"] + ":reversed",
                    dry_run=False,
                    reverses_trade_id=r["trade_id"],
                    venue=self.ledger.venue,
                )
            )
        filled, notional, fee = self._order_totals(coid, msgs)
        new = self.ledger.record_fills(
            coid,
            msgs,
            t,
            status="failed" if filled <= 1e-9 else "partial",
            filled_size=filled,
            avg_price=notional / filled if filled else 0.0,
            fee=fee,
            reason=f"trade {tid} FAILED at the venue: its fill was reversed",
        )
        if new == 0:
            return []
        self._apply_fills(msgs)
        self._count("trades_failed")
        self.log(
            "execution",
            "trade_failed_reversed",
            "ERROR",
            client_order_id=coid,
            trade_id=tid,
            shares=sum(f.size for f in msgs),
            order_status=row["status"] if row else "",
        )
        return [(topics.FILL, f) for f in msgs]

    # --- resting (maker) orders, issue 18 ------------------------------------------------------
    def _rest(self, intent: OrderIntent) -> Out:
        """A post-only GTC/GTD order: checked as the venue checks it (`resting.check_resting`),
        then held here and filled by the queue model (paper), or posted post-only through the
        live adapter (`sign_resting`/`post_resting`). Acked with status "live"."""
        book = self.books.get(intent.asset_id)
        if self.venue is not None and book is None:
            fresh = self.venue.rest_book(intent.asset_id)
            if fresh is not None:
                book = Book(intent.asset_id, intent.tick_size)
                book.replace(*fresh)
        code, why = check_resting(intent, book, self._t())
        if code:
            return self._reject(intent, why, code)
        assert book is not None
        t = self._t()
        if self.venue is None:
            self.resting.add(intent, book)
            self._count("resting")
            return self._ack(intent, "live", "", t, done=True)
        post_resting = getattr(self.venue, "post_resting", None)
        sign_resting = getattr(self.venue, "sign_resting", None)
        if post_resting is None or sign_resting is None:
            return self._reject(
                intent, "this venue adapter places no resting orders", "invalid_order"
            )
        try:
            order = sign_resting(
                intent.asset_id,
                intent.side,
                fm.dec(intent.limit_price),
                fm.dec(intent.size),
                tick=fm.dec(intent.tick_size),
                order_type=intent.order_type,
                expiration_s=intent.expiration_s,
                neg_risk=intent.neg_risk,
                min_size=fm.dec(intent.min_order_size),
            )
        except VenueError as e:
            return self._reject(intent, e.reason, e.code)
        # committed before the POST, as a taker order's (`_live`): a crash here leaves a
        # "sending" row that the next start looks up at the venue (`recover`)
        self.ledger.update(
            intent.client_order_id,
            t,
            "sending",
            status="sending",
            venue_order_id=order.order_id,
            signed_order_json=order.body,
            ts_sent_ns=t,
        )
        r = post_resting(order, intent.order_type)
        if r.outcome == "rejected":
            return self._reject(intent, r.reason, r.code)
        if r.outcome != "accepted":
            # no answer: it may rest. Cancel it by the id known before sending, so nothing we
            # do not follow stays on the book (the heartbeat would, ~10 s later, anyway)
            try:
                self.venue.cancel([order.order_id])  # type: ignore[attr-defined]
            except VenueError as e:
                self.log("execution", "resting_cancel_failed", "ERROR", reason=e.reason)
            return self._reject(intent, f"{r.reason}; cancelled to be safe", r.code or "timeout")
        self.resting.add(intent, book, r.venue_order_id or order.order_id)
        self._count("resting")
        return self._ack(intent, r.venue_status or "live", r.venue_order_id or order.order_id, t)

    def on_cancel_order(self, msg: CancelOrder, now_ns: int) -> Out:
        """Cancel the resting orders `msg` names (CancelOrder's docstring); each answered with
        an OrderAccepted of status "cancelled". A named order this execution never received is
        answered with an OrderRejected of code `unknown_order` (logged WARNING); one rejected is
        answered with its rejection again (strategy asks after an execution restart: the
        rejections `recover()` sends at start go out before strategy's SUB socket has
        reconnected); one known but no longer resting otherwise (filled, cancelled: its final
        answer went out) is logged."""
        self.now_ns = max(self.now_ns, now_ns)
        chosen = self.resting.select(msg.client_order_id, msg.slug)
        if msg.client_order_id and not chosen:
            return self._cancel_not_resting(msg)
        if self.venue is not None and chosen:
            ids = [r.venue_order_id for r in chosen if r.venue_order_id]
            try:
                if not msg.client_order_id and not msg.slug:
                    self.venue.cancel_all()  # type: ignore[attr-defined]
                elif ids:
                    self.venue.cancel(ids)  # type: ignore[attr-defined]
            except VenueError as e:  # the heartbeat's cancel-all is the fallback
                self.log("execution", "cancel_failed", "ERROR", reason=e.reason, ids=ids)
                return []
        out: Out = []
        for r in chosen:
            out += self._resting_done(r.intent.client_order_id, "cancelled", msg.reason or "cancel")
        return out

    def _cancel_not_resting(self, msg: CancelOrder) -> Out:
        coid = msg.client_order_id
        row = self.ledger.order(coid)
        if row is not None and row["code"]:
            # a rejected order (every `_reject` sets a code): its answer may have gone out before
            # the asker's SUB socket reconnected to this process (recover() right at start,
            # strategy asks on this process's first heartbeat): said again, the same answer
            self._count("answer_repeated")
            self.log(
                "execution",
                "rejection_repeated",
                client_order_id=coid,
                status=row["status"],
                code=row["code"],
                reason=msg.reason,
            )
            return [
                (
                    topics.REJECT,
                    OrderRejected(
                        client_order_id=coid,
                        reason=row["reason"],
                        ts_ns=row["ts_done_ns"] or self._t(),
                        code=row["code"],
                        origin_ts_recv_ns=row["origin_ts_recv_ns"],
                        ts_signal_ns=row["ts_signal_ns"],
                    ),
                )
            ]
        if row is not None:
            self._count("cancel_not_resting")
            self.log(
                "execution",
                "cancel_not_resting",
                client_order_id=coid,
                status=row["status"],
                reason=msg.reason,
            )
            return []
        t = self._t()
        why = "cancel of an order execution does not know (never received, or another ledger)"
        self._count("cancel_unknown_order")
        self.log(
            "execution", "cancel_unknown_order", "WARNING", client_order_id=coid, reason=msg.reason
        )
        return [
            (
                topics.REJECT,
                OrderRejected(client_order_id=coid, reason=why, ts_ns=t, code="unknown_order"),
            )
        ]

    def _resting_done(self, coid: str, status: str, why: str) -> Out:
        """A resting order is off the book (cancelled, expired): ledger row, OrderAccepted."""
        r = self.resting.remove(coid)
        if r is None:
            return []
        if self.venue is not None:  # fills that raced the cancel are still booked
            self._maker_tail[coid] = (r, self.now_ns + MAKER_TAIL_NS)
        t = self._t()
        self.ledger.update(coid, t, status, status=status, reason=why, ts_done_ns=t)
        self._count(status)
        self.log("execution", f"resting_{status}", client_order_id=coid, reason=why)
        return [
            (
                topics.ACK,
                OrderAccepted(
                    client_order_id=coid,
                    status=status,
                    ts_ack_ns=t,
                    venue_order_id=r.venue_order_id,
                    ts_intent_ns=r.intent.ts_intent_ns,
                ),
            )
        ]

    def poll_maker_fills(self, rest: bool = True) -> Out:
        """Live: the venue's maker fills of each resting order, and its venue-side end. Fills
        come from the adapter's `resting_fills`: the user channel's trade events on every call,
        REST trades too with `rest` (the reconcile path); each fill is booked once (keyed by
        trade id and maker order id, `<trade id>:m:<order id>`), with no fee and the rebate,
        provisional until its trade is CONFIRMED (`check_trades`; a FAILED one is reversed as a
        taker trade is). The order's state (`resting_state`: user-channel order events, GET
        /data/order with `rest`) is the authority: fills booked beyond its `size_matched` are
        an ERROR, fewer are awaited; an order MATCHED in full leaves the resting book, one the
        venue cancelled (dead-man switch, GTD expiry, market closed) is answered to strategy
        with an OrderAccepted of status "cancelled" as soon as its fills are booked. Orders
        just taken off the book stay followed `MAKER_TAIL_NS` for fills that raced the cancel."""
        resting_fills = getattr(self.venue, "resting_fills", None)
        resting_state = getattr(self.venue, "resting_state", None)
        if resting_fills is None:
            return []
        out: Out = []
        t = self._t()
        for coid, until in list(self._maker_tail.items()):
            if self.now_ns > until[1]:
                del self._maker_tail[coid]
        followed = [(r, True) for r in self.resting.orders.values()]
        followed += [(r, False) for r, _ in self._maker_tail.values()]
        for r, on_book in followed:
            intent = r.intent
            coid = intent.client_order_id
            try:
                got = resting_fills(r.venue_order_id, intent.asset_id, rest=rest)
                state = (
                    resting_state(r.venue_order_id, rest=rest, size=intent.size)
                    if resting_state
                    else None
                )
            except Exception as e:  # noqa: BLE001 - a failed poll is retried on the next tick
                self._count("maker_fill_poll_failed")
                self.log("execution", "maker_fill_poll_failed", "WARNING", error=str(e)[:200])
                continue
            rows = self.ledger.fills_of(coid)
            seen = {row["trade_id"] for row in rows}
            sched = money.FeeSchedule.of(
                intent.fee_rate, intent.fee_exponent, rebate_rate=intent.fee_rebate_rate
            )
            new = [
                VenueTrade(
                    tr.trade_id,
                    tr.price,
                    tr.size,
                    0.0,
                    "maker",
                    float(money.maker_rebate(tr.size, str(tr.price), sched)),
                )
                for tr in got
                if tr.trade_id not in seen
            ]
            booked = sum(
                (-1.0 if row["reverses_trade_id"] else 1.0) * float(row["size"]) for row in rows
            ) + sum(tr.size for tr in new)
            status, matched = state if state is not None else ("", -1.0)
            if rest and matched >= 0 and booked > matched + SIZE_EPS:
                self._count("maker_overbooked")
                self.log(
                    "execution",
                    "maker_fills_exceed_size_matched",
                    "ERROR",
                    client_order_id=coid,
                    booked=booked,
                    size_matched=matched,
                )
            done = booked + SIZE_EPS >= intent.size
            if new:
                if on_book:
                    word = "filled" if done else "partial"
                elif done:  # taken off the book meanwhile, and filled whole after all
                    word = "filled"
                else:  # taken off the book meanwhile: its final word stays
                    row = self.ledger.order(coid)
                    word = row["status"] if row else "cancelled"
                out += self._fills(intent, new, word, t, r.venue_order_id, False)
            if not on_book:
                continue
            if done:
                self._off_book(coid)
            elif status and status not in LIVE_ORDER_STATUSES and booked + SIZE_EPS >= matched:
                # the venue took it off (all its fills booked): strategy frees the quote now
                word = "filled" if status == "MATCHED" else "cancelled"
                if word == "filled":
                    self._off_book(coid)
                else:
                    out += self._resting_done(coid, "cancelled", f"venue: {status}")
        return out

    def _off_book(self, coid: str) -> None:
        """A resting order left the book: followed a while longer for late fills."""
        r = self.resting.remove(coid)
        if r is not None and self.venue is not None:
            self._maker_tail[coid] = (r, self.now_ns + MAKER_TAIL_NS)

    def _expire_resting(self) -> Out:
        out: Out = []
        for r in self.resting.expired(self.now_ns):
            out += self._resting_done(r.intent.client_order_id, "expired", "GTD expiration")
        return out

    def _maker_fills(self, asset_id: str) -> Out:
        """Paper: the queue model's fills of the resting orders on `asset_id`'s new book, each
        at the order's price, no fee, the rebate earned (`money.maker_rebate`)."""
        if self.venue is not None:
            return []  # live: maker fills come from the venue (user channel, trades)
        book = self.books.get(asset_id)
        if book is None or not book.in_sync:
            return []
        out: Out = []
        t = self._t()
        for r, shares in self.resting.on_book(asset_id, book):
            intent = r.intent
            sched = money.FeeSchedule.of(
                intent.fee_rate, intent.fee_exponent, rebate_rate=intent.fee_rebate_rate
            )
            fee, rebate = money.fill_fee_and_rebate("maker", shares, intent.limit_price, sched)
            r.fills += 1
            trade = VenueTrade(
                f"{intent.client_order_id}:m{r.fills}",
                intent.limit_price,
                shares,
                float(fee),
                "maker",
                float(rebate),
            )
            done = r.queue.done
            out += self._fills(intent, [trade], "filled" if done else "partial", t, "", True)
            if done:
                self.resting.remove(intent.client_order_id)
        return out

    # --- dry run ------------------------------------------------------------------------------
    def _dry_run(self, intent: OrderIntent, now_ns: int) -> Out:
        due = now_ns + self.dry_run_latency_ns
        if self.dry_run_latency_ns == 0:
            return self._dry_fill(intent, now_ns)
        self.pending.append(_Pending(intent, due))
        return []

    def release_due(self, now_ns: int) -> Out:
        if not self.pending:
            return []
        out: Out = []
        keep: list[_Pending] = []
        for p in self.pending:
            if p.due_ns <= now_ns:
                out += self._dry_fill(p.intent, p.due_ns)
            else:
                keep.append(p)
        self.pending = keep
        return out

    def _dry_fill(self, intent: OrderIntent, t: int) -> Out:
        """Fill against the book as it is when the simulated latency has passed."""
        book = self.books.get(intent.asset_id)
        if book is None:
            return self._reject(intent, f"no book for asset {intent.asset_id}", "no_book")
        if not book.in_sync:
            return self._reject(
                intent,
                f"book of {intent.asset_id} is out of sync ({book.resync_reason}): not filled",
                "book_out_of_sync",
            )
        recorded = record_book(book, intent.side)
        r = fm.paper_fill(intent, book.taker_levels(intent.side))
        if r.status in ("rejected", "killed", "unmatched"):
            self.ledger.update(intent.client_order_id, t, "book_at_fill", book_json=recorded)
            return self._reject(
                intent,
                r.reason,
                r.status,
                status="killed" if r.status != "rejected" else "rejected",
            )
        book.consume(intent.side, [(tr.price, tr.shares) for tr in r.trades])
        out = self._ack(intent, "dry_run", "", t, done=True)
        trades = [
            VenueTrade(
                f"{intent.client_order_id}:{i}", float(tr.price), float(tr.shares), float(tr.fee)
            )
            for i, tr in enumerate(r.trades)
        ]
        out += self._fills(intent, trades, r.status, t, "", True, r.reason, recorded)
        return out

    # --- live ---------------------------------------------------------------------------------
    def _live(self, intent: OrderIntent, limit: Decimal, size: Decimal) -> Out:
        assert self.venue is not None
        coid = intent.client_order_id
        try:
            if intent.side == "SELL":
                self.venue.before_sell(intent.asset_id)
            signed = self.venue.sign(intent, limit, size)
        except VenueError as e:
            return self._reject(intent, e.reason, e.code)
        # committed before the POST: after a crash the order can be found at the venue by its id
        self.ledger.update(
            coid,
            self._t(),
            "sending",
            status="sending",
            venue_order_id=signed.order_id,
            signed_order_json=signed.body,
            ts_sent_ns=self._t(),
        )
        result = self.venue.post(signed, intent)
        return self._apply_result(intent, signed.order_id, result)

    def _apply_result(self, intent: OrderIntent, order_id: str, r: VenueResult) -> Out:
        """The venue's first definite word on an order that had none yet (POST answer, or a
        lookup of an order whose outcome was unknown)."""
        t = self._t()
        coid = intent.client_order_id
        if r.outcome == "rejected":
            self._followed(coid)
            return self._reject(intent, r.reason, r.code or "venue_rejected")
        if r.outcome in ("unknown", "missing"):
            # a timeout is not a failure: the order may well be at the venue
            self.ledger.update(
                coid, t, "outcome_unknown", status="unknown", reason=r.reason, code=r.code
            )
            self.to_reconcile[coid] = intent
            self._count("unknown")
            self.log(
                "execution",
                "order_outcome_unknown",
                "WARNING",
                client_order_id=coid,
                venue_order_id=order_id,
                reason=r.reason,
            )
            return []
        t = r.ack_ns or t
        order_id = r.venue_order_id or order_id
        if not r.trades and r.terminal:  # placed, then killed or cancelled without a match
            self._followed(coid)
            if r.venue_order_id:
                self.ledger.update(coid, t, "venue_id", venue_order_id=order_id)
            reason = f"no fill at the venue (status {r.venue_status or 'unknown'})"
            return self._reject(intent, reason, "killed", status="killed")
        out = self._ack(intent, r.venue_status or "matched", order_id, t)
        if r.trades:
            out += self._fills(intent, r.trades, self._fill_status(intent, r), t, order_id, False)
        if r.terminal:
            self._followed(coid)
        else:
            # accepted but not final (live, delayed, or trades still to appear): followed
            self.to_reconcile[coid] = intent
            self.log(
                "execution",
                "order_followed",
                client_order_id=coid,
                venue_status=r.venue_status,
                filled=sum(tr.size for tr in r.trades),
            )
        return out

    @staticmethod
    def _fill_status(intent: OrderIntent, r: VenueResult) -> str:
        filled = sum(tr.size for tr in r.trades)
        full = filled + 1e-9 >= intent.size or intent.order_type == "FOK"
        return "filled" if full else "partial"

    def reconcile(self, due_only: bool = False) -> Out:
        """Ask the venue about every order not final yet (unknown outcome, or accepted as live /
        delayed / with trades still to appear); reads only, no order is ever re-sent. With
        `due_only`, each order is looked up on its own back-off (250 ms doubling to 5 s)."""
        out: Out = []
        for coid, intent in list(self.to_reconcile.items()):
            row = self.ledger.order(coid)
            if row is None:
                self._followed(coid)
                continue
            if self.venue is None or not row["venue_order_id"]:
                continue
            if due_only and not self._due(coid):
                continue
            r = self.venue.lookup(
                row["venue_order_id"], intent, row["ts_sent_ns"] or 0, self.ledger.claimed_ids(coid)
            )
            if r.outcome == "unknown":
                continue  # venue unreachable: try again later
            accepted = row["status"] in ("acked", "filled", "partial")
            if r.outcome == "missing" and not accepted:
                self._followed(coid)
                out += self._reject(intent, "not placed: the venue has no such order", "not_placed")
                continue
            if not accepted:
                out += self._apply_result(intent, row["venue_order_id"], r)
                continue
            if r.outcome != "accepted":
                continue
            # already acknowledged: new trades are fills; final ends the following
            known = {f["trade_id"].split(":")[0] for f in self.ledger.fills_of(coid)}
            new = [tr for tr in r.trades if tr.trade_id.split(":")[0] not in known]
            t = self._t()
            if new:
                all_fills = [
                    VenueTrade(f["trade_id"], f["price"], f["size"], f["fee"])
                    for f in self.ledger.fills_of(coid)
                ] + new
                status = self._fill_status(intent, VenueResult("accepted", trades=all_fills))
                out += self._fills(intent, new, status, t, row["venue_order_id"], False)
            if r.terminal:
                self._followed(coid)
                self.log(
                    "execution",
                    "order_final",
                    client_order_id=coid,
                    venue_status=r.venue_status,
                    new_fills=len(new),
                )
                if not known and not new:
                    out += self._reject(
                        intent,
                        f"no fill at the venue (status {r.venue_status or 'unknown'})",
                        "killed",
                        status="killed",
                    )
        return out

    def recover(self) -> Out:
        """On start: every order the ledger left open is settled locally or queued for the venue.

        Startup and crash recovery share this path. An intent never signed was never sent; a
        dry-run order has no venue to ask. Live orders that were being sent are reconciled before
        any new intent is taken (`on_order_intent` rejects new ones while `to_reconcile` is not empty).
        """
        out: Out = []
        for row in self.ledger.open_orders():
            intent = msgspec.json.decode(row["intent_json"], type=OrderIntent)
            coid = row["client_order_id"]
            if row["order_type"] in RESTING_TYPES and row["venue_order_id"]:
                continue  # a resting order being posted: `_recover_resting` cancels it
            if row["mode"] != "live" or not row["venue_order_id"]:
                out += self._reject(
                    intent, "interrupted by a restart before it was sent", "restart_not_sent"
                )
            else:
                self.to_reconcile[coid] = intent
        if self.to_reconcile:
            if self.venue is None:
                # no venue to ask in this mode: leave them `unknown` in the ledger for a live start
                for coid in self.to_reconcile:
                    self.log(
                        "execution", "reconcile_needs_live_venue", "WARNING", client_order_id=coid
                    )
                self.to_reconcile.clear()
            else:
                out += self.reconcile()
        out += self._recover_resting()
        return out

    def _recover_resting(self) -> Out:
        """On start: the resting (GTC/GTD) orders the ledger shows a previous run left on the
        book. Nobody follows them any more (a quote belongs to the strategy run that placed it;
        a cancel strategy sent while execution was down was lost), and this run's own heartbeat
        would keep them resting at the venue (its dead-man switch is per API key, PROTOCOLS.md
        section 4); one whose POST was in flight ("sending") may rest too. Live: each is
        cancelled by its venue id (harmless for one the venue never took), followed
        `MAKER_TAIL_NS` for fills (those made while execution was down included:
        `poll_maker_fills` reads the venue's trades) and answered "cancelled"; a cancel the
        venue refuses leaves it followed as a resting order (strategy's next cancel, or its
        window's cut-off, takes it off).
        Paper: its queue place died with the process: cancelled in the ledger. A live one on a
        start without a venue is left for a live start (logged)."""
        rows = self.ledger.resting_orders()
        if not rows:
            return []
        self.now_ns = max(self.now_ns, self._t())  # before any message: the tail's clock
        paper: list[OrderIntent] = []
        live: list[tuple[OrderIntent, str]] = []
        for row in rows:
            intent = msgspec.json.decode(row["intent_json"], type=OrderIntent)
            if row["mode"] != "live" or not row["venue_order_id"]:
                paper.append(intent)
            elif self.venue is None:
                coid = intent.client_order_id
                self.log("execution", "reconcile_needs_live_venue", "WARNING", client_order_id=coid)
            else:
                live.append((intent, row["venue_order_id"]))
        for intent, oid in live:
            self.resting.adopt(intent, oid)
        if live:
            try:
                self.venue.cancel([oid for _, oid in live])  # type: ignore[union-attr]
            except VenueError as e:
                self.log("execution", "resting_cancel_at_start_failed", "ERROR", reason=e.reason)
                live = []  # followed as resting orders
        why = "left resting by a previous run: cancelled at start"
        out: Out = []
        for intent, _ in live:
            out += self._resting_done(intent.client_order_id, "cancelled", why)
        for intent in paper:
            self.resting.adopt(intent, "")
            out += self._resting_done(intent.client_order_id, "cancelled", why)
            self._maker_tail.pop(intent.client_order_id, None)  # no venue holds it
        return out

    # --- settlement ---------------------------------------------------------------------------
    def settle(self, msg: MarketResolved) -> Out:
        """Positions in the resolved market settle at 1 or 0."""
        out: Out = []
        mk = self.markets.pop(msg.slug, None)
        self._window_end.pop(msg.slug, None)
        if mk is not None:  # the window is over: its books will never be traded again
            self.books.pop(mk.up_token_id, None)
            self.books.pop(mk.down_token_id, None)
        condition_id = msg.condition_id or (mk.condition_id if mk is not None else "")
        shares = cash = 0.0
        for asset_id, pos in list(self.positions.items()):
            if pos.slug != msg.slug:
                continue
            won = (
                asset_id == msg.winning_asset_id
                if msg.winning_asset_id
                else pos.outcome == msg.winning_outcome
            )
            payout = 1.0 if won else 0.0
            s = PositionSettled(
                slug=pos.slug,
                asset_id=asset_id,
                outcome=pos.outcome,  # type: ignore[arg-type]
                won=won,
                size=pos.size,
                payout=payout,
                pnl=round(pos.size * payout - pos.cost, 6),
                ts_ns=msg.ts_ns,
                venue=self.ledger.venue,
                dry_run=not self.mode.live,
            )
            del self.positions[asset_id]
            shares += pos.size
            cash += pos.size * payout
            if self.ledger.record_settlement(s):
                self.realized[s.slug] = self.realized.get(s.slug, 0.0) + s.pnl
                self.log(
                    "execution",
                    "position_settled",
                    slug=s.slug,
                    asset_id=asset_id,
                    won=won,
                    size=s.size,
                    pnl=s.pnl,
                )
                out.append((topics.SETTLEMENT, s))
        if shares > 0 and cash <= 0:
            # only losing tokens: redeeming pays nothing, and from an EOA wallet it is a
            # transaction paid in gas (a new user's test, 2026-12-01); the tokens stay worthless
            self.log("execution", "redemption_skipped_no_payout", slug=msg.slug, shares=shares)
        elif shares > 0 and condition_id:
            self._neg_risk[condition_id] = bool(mk.neg_risk) if mk is not None else False
            dry = not self.mode.live
            if self.ledger.request_redemption(
                condition_id, msg.slug, dry, shares, round(cash, 6), self._t()
            ):
                out += self._redemption_msg(condition_id)
                out += self._redeem(condition_id)
        elif shares > 0:
            self.log("execution", "redemption_without_condition_id", "WARNING", slug=msg.slug)
        return out

    # --- redemption: winning tokens pay nothing until redeemed ---------------------------------
    def _redeem(self, condition_id: str) -> Out:
        """Send the redemption of a resolved market (its row is written first). Paper mode books
        the same steps at once; live mode sends it through the venue adapter and follows the
        transaction (`check_redemptions`). A send that fails is retried every 30 s; redeeming
        twice is harmless (the second pays nothing), so a restart never loses one."""
        t = self._t()
        dry = not self.mode.live
        if self.venue is None:
            row = next(
                (r for r in self.ledger.redemptions(dry) if r["condition_id"] == condition_id),
                None,
            )
            if row is None:
                return []
            self.ledger.update_redemption(
                condition_id,
                dry,
                state="confirmed",
                cash_returned=row["cash_expected"],
                detail="paper: booked as redeemed",
                ts_done_ns=t,
            )
            self.log(
                "execution",
                "position_redeemed",
                condition_id=condition_id,
                paper=True,
                cash=row["cash_expected"],
            )
            return self._redemption_msg(condition_id)
        try:
            tx_hash = self.venue.redeem(condition_id, self._neg_risk.get(condition_id, False))
        except VenueError as e:
            self._redeem_retry_at[condition_id] = t + REDEEM_RETRY_NS
            self.ledger.update_redemption(condition_id, dry, state="awaiting", detail=e.reason)
            self._count("redemptions_awaiting")
            self.log(
                "execution",
                "redemption_awaiting",
                "WARNING",
                condition_id=condition_id,
                code=e.code,
                reason=e.reason,
            )
            return self._redemption_msg(condition_id)
        self._redeem_retry_at.pop(condition_id, None)
        self.ledger.update_redemption(condition_id, dry, state="sent", tx_hash=tx_hash, detail="")
        self.log("execution", "redemption_sent", condition_id=condition_id, tx_hash=tx_hash)
        return self._redemption_msg(condition_id)

    def _redemption_msg(self, condition_id: str) -> Out:
        """The ledger's redemption row of `condition_id` as an `exec.redemption` message (strategy
        folds it into "redeemed" vs "awaiting redemption", observe shows it)."""
        dry = not self.mode.live
        r = next(
            (r for r in self.ledger.redemptions(dry) if r["condition_id"] == condition_id), None
        )
        if r is None:
            return []
        return [
            (
                topics.REDEMPTION,
                PositionRedeemed(
                    condition_id=condition_id,
                    slug=r["slug"],
                    state=r["state"],
                    shares=r["shares"],
                    cash_expected=r["cash_expected"],
                    ts_ns=self._t(),
                    cash_returned=r["cash_returned"],
                    tx_hash=r["tx_hash"],
                    detail=r["detail"],
                    venue=self.ledger.venue,
                    dry_run=dry,
                ),
            )
        ]

    def _redemption_status(self) -> dict[str, object]:
        """What is redeemed and what still waits (for the heartbeat, `/health`): counts and
        pUSD."""
        rows = self.ledger.redemptions(not self.mode.live)
        waiting = [r for r in rows if r["state"] not in ("confirmed", "failed")]
        return {
            "redemptions_open": len(waiting),
            "awaiting_redemption_usd": round(sum(r["cash_expected"] for r in waiting), 6),
            "redeemed_usd": round(
                sum(r["cash_returned"] for r in rows if r["state"] == "confirmed"), 6
            ),
        }

    def check_redemptions(self) -> Out:
        """Follow every open redemption: a sent one until its transaction is final, a failed
        send again after its retry time."""
        dry = not self.mode.live
        open_rows = self.ledger.redemptions(dry, open_only=True)
        out: Out = []
        t = self._t()
        for r in open_rows:
            cid = r["condition_id"]
            if r["state"] == "sent" and self.venue is not None:
                try:
                    status = self.venue.redemption_status(r["tx_hash"])
                except VenueError:
                    continue
                if status == "confirmed":
                    self.ledger.update_redemption(
                        cid,
                        dry,
                        state="confirmed",
                        cash_returned=r["cash_expected"],
                        ts_done_ns=t,
                    )
                    self._count("redemptions_confirmed")
                    self.log(
                        "execution",
                        "position_redeemed",
                        condition_id=cid,
                        tx_hash=r["tx_hash"],
                        cash=r["cash_expected"],
                    )
                    out += self._redemption_msg(cid)
                elif status == "failed":
                    self._redeem_retry_at[cid] = t + REDEEM_RETRY_NS
                    self.ledger.update_redemption(
                        cid, dry, state="awaiting", detail=f"transaction {r['tx_hash']} failed"
                    )
                    self.log(
                        "execution",
                        "redemption_failed",
                        "ERROR",
                        condition_id=cid,
                        tx_hash=r["tx_hash"],
                    )
                    out += self._redemption_msg(cid)
            elif r["state"] in ("requested", "awaiting") and t >= self._redeem_retry_at.get(cid, 0):
                out += self._redeem(cid)
        return out

    def series_of(self, slug: str) -> str:
        """The series key ("eth-15m") of `slug`: its MarketInfo's, else the slug's form."""
        m = self.markets.get(slug)
        return m.series if m is not None else (series_of_slug(slug) or slug)

    def market_book(self) -> dict[str, dict[str, float]]:
        """Per market (series key) and `"total"`: open positions (count), shares held, their
        cost (USD, fees included, rebates less) and the P&L realised (USD, sells and
        settlements), all of this book (venue, paper or real), rebuilt from the ledger at start."""
        out: dict[str, dict[str, float]] = {}

        def row(key: str) -> dict[str, float]:
            return out.setdefault(
                key, {"positions": 0, "shares": 0.0, "cost": 0.0, "realized_pnl": 0.0}
            )

        for pos in self.positions.values():
            for r in (row(self.series_of(pos.slug)), row("total")):
                r["positions"] += 1
                r["shares"] += pos.size
                r["cost"] += pos.cost
        for slug, pnl in self.realized.items():
            for r in (row(self.series_of(slug)), row("total")):
                r["realized_pnl"] += pnl
        for r in out.values():
            for k in ("shares", "cost", "realized_pnl"):
                r[k] = round(r[k], 6)
        return out

    def unsettled(self) -> dict[str, dict[str, Any]]:
        """The windows where this book (ledger) holds positions not settled and that are not
        live: ended (their MarketInfo's end passed) or unknown (no MarketInfo since execution
        started: ingest publishes only the windows not yet resolved, so such a window ended, or
        execution has just started). Slug -> `{"end_ns": window end (ns, 0 unknown),
        "since_ns": when execution first saw it so (ns), "positions": count, "shares": held}`.
        Published in the heartbeat (`status`): ingest resolves these windows and says their
        `MarketResolved` again (services/ingest/core.py `on_heartbeat`), since execution owns
        its ledger and ingest owns resolution (DESIGN.md, ownership of state)."""
        now = self._t()
        out: dict[str, dict[str, Any]] = {}
        for pos in self.positions.values():
            mk = self.markets.get(pos.slug)
            if mk is not None and mk.window_end_ns > now:
                continue  # a live window: it settles when it resolves
            d = out.setdefault(
                pos.slug,
                {"end_ns": self._window_end.get(pos.slug, 0), "positions": 0, "shares": 0.0},
            )
            d["positions"] += 1
            d["shares"] = round(d["shares"] + pos.size, 6)
        for slug in [s for s in self._unsettled_since if s not in out]:
            del self._unsettled_since[slug]
        for slug, d in out.items():
            d["since_ns"] = self._unsettled_since.setdefault(slug, now)
        return out

    def unsettled_warnings(self, unsettled: dict[str, dict[str, Any]]) -> list[str]:
        """A sentence per window of `unsettled` held more than `UNSETTLED_WARN_NS` (5 min)
        after its end (its end unknown: after execution first saw it unsettled)."""
        now = self._t()
        out: list[str] = []
        for slug, d in sorted(unsettled.items()):
            ref = d["end_ns"] or d["since_ns"]
            if now - ref > UNSETTLED_WARN_NS:
                when = "after its window ended" if d["end_ns"] else "since execution started"
                out.append(
                    f"{d['positions']} position(s) of {d['shares']:g} shares in {slug} not"
                    f" settled {(now - ref) / 1e9:.0f} s {when}: no resolution received"
                )
        return out

    def set_dry_run_latency_ms(self, ms: int) -> None:
        """Hot reload of `dry_run_latency_ms` (ms, >= 0): paper orders received from now on are
        filled this long after their receipt; those already waiting keep their due time.
        Raises ValueError for a negative value."""
        if ms < 0:
            raise ValueError(f"dry_run_latency_ms must be >= 0, got {ms}")
        self.dry_run_latency_ns = ms * MS

    def status(self) -> dict[str, object]:
        unsettled = self.unsettled()
        st: dict[str, object] = {
            "mode": self.mode.name,
            "dry_run_latency_ms": self.dry_run_latency_ns // MS,
            "books": len(self.books),
            "positions": len(self.positions),
            "markets": self.market_book(),
            "pending_dry_run": len(self.pending),
            "to_reconcile": len(self.to_reconcile),
            **self._redemption_status(),
            **self.counts,
            "unsettled": unsettled,
        }
        warnings = self.unsettled_warnings(unsettled)
        if warnings:
            st["warnings"] = warnings  # observe's /health lists them
        if self.venue is not None:
            st["venue"] = self.venue.status()
        return st
