"""Maker quotes (issue 18): the pure rules of services/strategy/quotes.py as worked examples,
and the strategy core placing, replacing and cancelling its quote (replace on a move, rate cap,
entry cut-off, halt, stale feed, auto's switch to a taker entry, a maker fill opening the
position and counting as the entry)."""

from __future__ import annotations

from typing import Any

from common import topics
from common.schema import (
    BtcTrade,
    CancelOrder,
    ClockTick,
    FeedStatus,
    OrderAccepted,
    OrderFilled,
    OrderIntent,
    TriggerEmergencyStop,
)
from services.strategy import quotes
from services.strategy.quotes import Cancel, Place, QuoteBook, Wanted
from tests.strategy.test_strategy_core import END, NS, START, book, make, signal

MAKER: dict[str, Any] = dict(
    order_type="maker",
    min_edge_pct=0.02,
    min_signal_score=0.05,
    require_settlement_price_to_beat=False,
    max_trades_per_day=100,
)


# --- the pure rules ---------------------------------------------------------------------------
def test_maker_price_worked_examples() -> None:
    # join the bid; one tick inside; capped by what we pay; never at the ask; never below the bid
    assert quotes.maker_price(0.48, 0.52, 0.01, 0.60) == 0.48
    assert quotes.maker_price(0.48, 0.52, 0.01, 0.60, improve_ticks=1) == 0.49
    assert quotes.maker_price(0.48, 0.52, 0.01, 0.485, improve_ticks=1) == 0.48  # cap snapped down
    assert quotes.maker_price(0.51, 0.52, 0.01, 0.90, improve_ticks=1) == 0.51  # 0.52 would cross
    assert quotes.maker_price(0.48, 0.52, 0.01, 0.47) is None  # below the bid: not at/inside
    assert quotes.maker_price(None, 0.52, 0.01, 0.90) == 0.01  # empty bid side: one tick
    assert quotes.maker_price(0.009, 0.012, 0.001, 0.5, 1) == 0.01
    assert quotes.maker_price(0.48, 0.49, 0.01, 0.0) is None


def test_size_gtd_and_auto_rules() -> None:
    assert quotes.maker_size(5.0, 0.48, 5.0) == 10.41  # 5 / 0.48 cut to 0.01 shares
    assert quotes.maker_size(2.0, 0.48, 5.0) is None  # 4.16 shares < the 5-share minimum
    now = 1_800_000_000 * NS
    # the venue removes a GTD a minute before its expiration, and wants it >= 3 minutes ahead
    assert quotes.gtd_expiration_s(now, now + 200 * NS) == 1_800_000_000 + 260
    assert quotes.gtd_expiration_s(now, now + 119 * NS) == 0  # 179 s ahead: a GTC instead
    assert quotes.auto_takes(0.10, 200, 0.10, 60) and quotes.auto_takes(0.01, 59, 0.10, 60)
    assert not quotes.auto_takes(0.09, 60, 0.10, 60)


def test_quote_book_replaces_after_the_cancel_and_caps_the_rate() -> None:
    qb = QuoteBook(threshold=0.01, max_replaces_per_s=2.0)
    w = Wanted("s", "U", "Up", 0.48, 10.0)
    assert qb.plan(w, 0) == [Place(w)]
    qb.placed("q1", w, 0)
    assert qb.plan(Wanted("s", "U", "Up", 0.485, 10.0), NS) == []  # moved less than 0.01
    assert qb.plan(Wanted("s", "U", "Up", 0.49, 10.0), NS) == [Cancel("q1", "replace")]
    assert qb.plan(Wanted("s", "U", "Up", 0.49, 10.0), NS) == []  # waits for the cancel
    assert qb.done("q1")
    w2 = Wanted("s", "U", "Up", 0.49, 10.0)
    assert qb.plan(w2, NS) == [Place(w2)]
    qb.placed("q2", w2, NS)
    # a second replace within 1 / 2 s is throttled, then allowed
    assert qb.plan(Wanted("s", "U", "Up", 0.47, 10.0), NS + NS // 4) == []
    assert qb.throttled == 1
    assert qb.plan(Wanted("s", "U", "Up", 0.47, 10.0), NS + NS // 2) == [Cancel("q2", "replace")]
    assert qb.plan(None, 2 * NS, "halted") == []  # already being cancelled
    assert qb.replaces == 2


# --- the strategy core ------------------------------------------------------------------------
def of(out, kind):
    return [m for _, m in out if isinstance(m, kind)]


def quote(core, elapsed: float = 100, p_up: float = 0.70, up_ask: float = 0.45) -> OrderIntent:
    out = signal(core, elapsed, p_up=p_up, up_ask=up_ask)
    (it,) = of(out, OrderIntent)
    return it


def test_maker_mode_rests_a_post_only_buy_at_the_bid_and_counts_no_trade_until_filled() -> None:
    core = make(**MAKER)
    it = quote(core)
    assert (it.order_type, it.post_only, it.side, it.outcome) == ("GTD", True, "BUY", "Up")
    assert it.limit_price == 0.43  # the Up bid (ask 0.45 - 0.02), never the ask
    assert it.size == 11.62  # 5 USD / 0.43
    # GTD to the cut-off (window end - 30 s) + 60 s: 170 s left + 60 >= 180
    assert it.expiration_s == (END - 30 * NS) // NS + 60
    assert core.trades_today == 0
    # the quote does not block the next signal: same book, nothing to do
    out = signal(core, 100.5)
    assert not of(out, OrderIntent) and not of(out, CancelOrder)
    core.step(
        OrderFilled(
            client_order_id=it.client_order_id,
            asset_id="U",
            side="BUY",
            price=0.43,
            size=11.62,
            fee=0.0,
            ts_fill_ns=START + 101 * NS,
            slug=it.slug,
            outcome="Up",
            liquidity="maker",
            rebate_usd=0.01,
        ),
        0,
    )
    ms = core.state_of(it.slug)
    assert ms.position is not None and ms.position.size == 11.62
    assert core.trades_today == 1 and it.client_order_id not in core.pending


def test_a_book_move_replaces_the_quote_after_its_cancel_is_answered() -> None:
    core = make(**MAKER)
    first = quote(core)
    out = signal(core, 101, up_ask=0.47)  # bid 0.45 now: 0.02 away
    (c,) = of(out, CancelOrder)
    assert (c.client_order_id, c.reason) == (first.client_order_id, "replace")
    assert not of(out, OrderIntent)
    core.step(
        OrderAccepted(client_order_id=first.client_order_id, status="cancelled", ts_ack_ns=1), 0
    )
    assert first.client_order_id not in core.pending and core.trades_today == 0
    second = quote(core, 101.2, up_ask=0.47)
    assert second.limit_price == 0.45
    # a move 0.2 s later is over the cap of 2 replaces a second: kept
    out = signal(core, 101.4, up_ask=0.49)
    assert not of(out, CancelOrder)
    out = signal(core, 101.8, up_ask=0.49)
    assert [m.client_order_id for m in of(out, CancelOrder)] == [second.client_order_id]


def test_quotes_cancelled_before_the_cut_off_on_halt_and_on_a_stale_feed() -> None:
    core = make(**MAKER)
    it = quote(core, 260)  # cut-off at 270 s
    t = START + 268 * NS
    core.step(BtcTrade(price=85_000, size=1, ts_exchange_ns=t, ts_recv_ns=t), 0)
    core.step(book("U", 0.43, 0.45, t), 0)
    assert not of(core.step(ClockTick(ts_ns=t), 0), CancelOrder)
    t += NS  # 1 s before the cut-off
    core.step(BtcTrade(price=85_000, size=1, ts_exchange_ns=t, ts_recv_ns=t), 0)
    (c,) = of(core.step(ClockTick(ts_ns=t), 0), CancelOrder)
    assert (c.client_order_id, c.reason) == (it.client_order_id, "entry_cutoff")

    core = make(**MAKER)
    it = quote(core)
    out = core.step(TriggerEmergencyStop(request_id="r1"), 0)
    (c,) = of(out, CancelOrder)
    assert c.client_order_id == it.client_order_id and c.reason.startswith("halted:")

    core = make(**MAKER)
    it = quote(core)
    out = core.step(
        FeedStatus(feed="clob", connected=False, stale=True, ts_ns=START + 100 * NS + 1), 0
    )
    (c,) = of(out, CancelOrder)
    assert (c.client_order_id, c.reason) == (it.client_order_id, "feed_stale")


def test_auto_takes_on_a_large_edge_and_quotes_otherwise() -> None:
    core = make(**{**MAKER, "order_type": "auto", "auto_taker_edge": 0.10})
    it = quote(core, p_up=0.58)  # taker edge 0.58 - 0.45 - fee 0.017 = 0.11: takes
    assert it.order_type == "FOK" and not it.post_only
    core = make(**{**MAKER, "order_type": "auto", "auto_taker_edge": 0.20})
    it = quote(core, p_up=0.58)
    assert it.order_type in ("GTC", "GTD") and it.post_only
    # close to the cut-off (auto_taker_within_s 60 by default), the same edge takes
    core = make(**{**MAKER, "order_type": "auto", "auto_taker_edge": 0.20})
    assert quote(core, 215, p_up=0.58).order_type == "FOK"


def test_cancel_all_quotes_names_every_resting_order() -> None:
    core = make(**MAKER)
    quote(core)
    ((topic, msg),) = core.cancel_all_quotes("shutdown")
    assert topic == topics.CANCEL_ORDER and msg.client_order_id == "" and msg.slug == ""


def test_real_mode_does_not_chase_its_own_quote_shown_in_the_venue_book() -> None:
    """Live, the venue's book shows our own resting order: alone at the best bid it is not the
    market's bid (else, inside by a tick, each replace would chase itself up). Paper orders are
    not in the book, so there the same book is the market's."""
    from common.config import StrategyConfig
    from common.schema import BookSnapshot
    from tests.strategy.test_strategy_core import Recorded, market

    def run(mode: str) -> list:
        core = Recorded(StrategyConfig(**MAKER, maker_improve_ticks=1), mode=mode)
        core.step(market(), 0)
        t = START + 100 * NS
        core.step(BtcTrade(price=85_000, size=1, ts_exchange_ns=t, ts_recv_ns=t), 0)
        core.step(book("U", 0.40, 0.45, t), 0)
        core.step(book("D", 0.53, 0.58, t), 0)
        first = of(signal(core, 100, refresh=False), OrderIntent)[0]
        assert first.limit_price == 0.41  # one tick inside the 0.40 bid
        t += NS
        core.step(BtcTrade(price=85_000, size=1, ts_exchange_ns=t, ts_recv_ns=t), 0)
        shown = BookSnapshot(
            asset_id="U",
            best_bid=0.41,
            best_ask=0.45,
            bids=[(0.41, first.size), (0.40, 500.0)],  # ours on top of the market's 0.40
            asks=[(0.45, 500.0)],
            ts_exchange_ns=t,
            ts_recv_ns=t,
        )
        core.step(shown, 0)
        return of(signal(core, 101, refresh=False), CancelOrder)

    assert run("real") == []  # the market's bid is still 0.40: the quote stays
    assert [c.reason for c in run("paper")] == ["replace"]  # 0.41 is someone else's: improve


def test_auto_quotes_during_the_venues_post_only_minutes() -> None:
    """A taker entry refused with `venue_post_only` (execution's gate after an engine restart):
    `auto` quotes post-only instead of taking, for the venue's ~2 post-only minutes."""
    from common.schema import OrderRejected

    core = make(**{**MAKER, "order_type": "auto", "auto_taker_edge": 0.10})
    taker = quote(core, p_up=0.58)
    assert taker.order_type == "FOK"
    core.step(
        OrderRejected(
            client_order_id=taker.client_order_id,
            reason="post-only minutes",
            ts_ns=START + 100 * NS,
            code="venue_post_only",
        ),
        0,
    )
    it = quote(core, 101, p_up=0.58)
    assert it.post_only and it.order_type in ("GTC", "GTD")
