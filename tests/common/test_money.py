"""The one money module (common/money.py): order amounts the venue accepts (worked examples, then
every tick / price / stake combination of the strategy config's range checked against the venue's
rules); fills and fees as worked examples computed by hand; and a property test walking random
books and orders through the paper path and the simulated venue's matching, compared to the unit."""

from __future__ import annotations

from decimal import ROUND_DOWN
from decimal import Decimal as D

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from common import money
from common.book import Book
from common.money import (
    ERR_MARKET_BUY_PRECISION,
    ERR_RESTING_BUY_PRECISION,
    FeeSchedule,
    amounts_error,
    dec,
    marketable_amounts,
    units_decimals,
)
from common.schema import OrderIntent

TICKS = (D("0.01"), D("0.001"))
# stakes: the $1 minimum up to $25 in odd cents (a 0.01 step over the whole range would be 2.4k
# stakes x 1.1k prices; these cover every residue of the cents mod the price denominators)
STAKES = [
    D(c) / 100
    for c in (100, 101, 137, 199, 250, 333, 499, 500, 501, 777, 999, 1000, 1234, 1999, 2500)
]


def strategy_size(stake: D, limit: D) -> D:
    """How strategy sizes an entry: stake / limit shares, cut to the 0.01-share grid."""
    return (stake / limit).quantize(D("0.01"), rounding=ROUND_DOWN)


def test_money_issue_example_is_fixed() -> None:
    # issue 13: a $5 stake at 0.53 signed 9.43 shares / makerAmount 4997900 (4.9979 pUSD): refused
    assert amounts_error("BUY", 4_997_900, 9_430_000, marketable=True) == ERR_MARKET_BUY_PRECISION
    a = marketable_amounts("BUY", D("0.53"), D("9.43"))
    assert (a.maker_units, a.taker_units, a.skip) == (4_990_000, 9_415_000, "")
    assert amounts_error("BUY", a.maker_units, a.taker_units, marketable=True) == ""
    assert D("0.53") <= a.price < D("0.5301")


def test_money_fine_tick_example() -> None:
    # py-clob-client-v2 #99: $9.98 at 0.985 signed taker 10.13197 (5 decimals)
    assert amounts_error("BUY", 9_980_000, 10_131_970, marketable=True) == ERR_MARKET_BUY_PRECISION
    a = marketable_amounts("BUY", D("0.985"), D("10.13"))
    assert (a.maker_units, a.taker_units) == (9_970_000, 10_121_800)
    assert amounts_error("BUY", a.maker_units, a.taker_units, marketable=True) == ""


def test_money_minimums() -> None:
    assert marketable_amounts("BUY", D("0.5"), D("1.99")).skip == "below_min_buy_notional"
    assert marketable_amounts("BUY", D("0.5"), D("2")).skip == ""
    # the 5-share minimum is for resting orders only: 2 shares at 0.5 is a valid marketable BUY
    assert amounts_error("BUY", 1_000_000, 2_000_000, marketable=True) == ""
    assert "lower than the minimum" in amounts_error("BUY", 1_000_000, 2_000_000, marketable=False)
    assert "min size: $1" in amounts_error("BUY", 990_000, 1_980_000, marketable=True)
    assert marketable_amounts("SELL", D("0.5"), D("0.004")).skip == "amount_rounds_to_zero"


def test_money_resting_rule_text() -> None:
    # py-clob-client #305: limit BUY of 1 share at 0.962 (0.962 pUSD has 3 decimals: fine, 4 max)
    assert amounts_error("BUY", 962_000, 1_000_000, marketable=False, min_size=D(1)) == ""
    assert amounts_error("BUY", 962_000, 1_001_000, marketable=False, min_size=D(1)) == (
        ERR_RESTING_BUY_PRECISION
    )


def test_money_units_decimals() -> None:
    assert [units_decimals(u) for u in (5_000_000, 4_990_000, 9_415_000, 10_121_800, 1)] == [
        0,
        2,
        3,
        4,
        6,
    ]


def test_money_every_tick_price_stake_is_accepted() -> None:
    """Every price on each tick grid within the venue's [tick, 1 - tick], every stake: the
    amounts either pass the venue's rules with a derived price at or just above the limit (BUY),
    at or just below it (SELL), or are skipped with a named reason."""
    checked = skipped = 0
    for tick in TICKS:
        n = int(1 / tick)
        for k in range(1, n):
            limit = tick * k
            for stake in STAKES:
                size = strategy_size(stake, limit)
                buy = marketable_amounts("BUY", limit, size)
                if buy.skip:
                    assert buy.skip == "below_min_buy_notional", (tick, limit, stake, buy)
                    assert size * limit < 1
                    skipped += 1
                else:
                    err = amounts_error("BUY", buy.maker_units, buy.taker_units, marketable=True)
                    assert err == "", (tick, limit, stake, buy, err)
                    # never a tick worse than asked, and never more than the stake
                    assert limit <= buy.price < limit + tick, (limit, buy)
                    assert buy.collateral <= stake
                    checked += 1
                sell = marketable_amounts("SELL", limit, size)
                if sell.skip:
                    assert size * limit < D("0.0001")
                    continue
                err = amounts_error("SELL", sell.maker_units, sell.taker_units, marketable=True)
                assert err == "", (tick, limit, stake, sell, err)
                assert limit - tick < sell.price <= limit
    assert checked > 15_000 and skipped > 0


# --- fills and fees ------------------------------------------------------------------------------
ISSUE_ASKS = [("0.50", "5"), ("0.51", "3"), ("0.52", "10")]  # issue 11's worked example
CRYPTO_FEE = FeeSchedule.of("0.07", "1")  # the BTC 5-minute market's feeSchedule


# --- worked examples ---------------------------------------------------------------------------
def test_issue_example_buy_is_collateral_sized() -> None:
    """Issue 11: 9.61 shares at limit 0.52 stake $4.9972; a collateral-sized BUY of that stake
    spends it best level first: 5 x 0.50 = 2.50, 3 x 0.51 = 1.53, then 0.9672 / 0.52 = 1.86
    shares: 9.86 shares for $4.9972 (a share-sized fill would stop at 9.61 shares, $4.8672)."""
    f = money.fill_marketable("BUY", "4.9972", "0.52", ISSUE_ASKS, CRYPTO_FEE, "FOK")
    assert f.status == "filled"
    assert [(t.price, t.shares) for t in f.trades] == [
        (D("0.50"), D("5")),
        (D("0.51"), D("3")),
        (D("0.52"), D("1.86")),
    ]
    assert f.shares == D("9.86") and f.cost == D("4.9972") and f.unspent == 0
    # fees per trade: 5*0.07*0.25 = 0.0875; 3*0.07*0.2499 = 0.052479 -> 0.05247;
    # 1.86*0.07*0.2496 = 0.03249792 -> 0.03249 (5 decimals, floored)
    assert [t.fee for t in f.trades] == [D("0.08750"), D("0.05247"), D("0.03249")]
    assert f.fee == D("0.17246")


def test_issue_example_as_signed_today() -> None:
    """The same order as the venue accepts it signed (`marketable_amounts`: collateral cut to
    cents, PROTOCOLS.md section 7): $4.99 buys 8 shares for $4.03, then 0.96 / 0.52 = 1.846 ->
    1.84 shares for $0.9568: 9.84 shares for $4.9868, $0.0032 unspent."""
    f = money.fill_order("BUY", "9.61", "0.52", ISSUE_ASKS, CRYPTO_FEE, "FOK")
    assert (f.status, f.shares, f.cost, f.unspent) == (
        "filled",
        D("9.84"),
        D("4.9868"),
        D("0.0032"),
    )
    assert f.fee == D("0.08750") + D("0.05247") + D("0.03214")  # 1.84*0.07*0.2496 = 0.03214848


def test_buy_fok_killed_and_fak_partial() -> None:
    # 20 shares at 0.51 stake $10.20; only $4.03 of asks are at or below 0.51
    killed = money.fill_order("BUY", "20", "0.51", ISSUE_ASKS, CRYPTO_FEE, "FOK")
    assert killed.status == "killed" and killed.trades == () and killed.shares == 0
    part = money.fill_order("BUY", "20", "0.51", ISSUE_ASKS, CRYPTO_FEE, "FAK")
    assert part.status == "partial"
    assert (part.shares, part.cost, part.unspent) == (D("8"), D("4.03"), D("6.17"))


def test_sell_is_share_sized() -> None:
    bids = [("0.49", "4"), ("0.48", "2"), ("0.47", "10")]
    f = money.fill_order("SELL", "5.5", "0.48", bids, CRYPTO_FEE, "FOK")
    assert f.status == "filled"
    assert (f.shares, f.cost) == (D("5.5"), D("2.68"))  # 4*0.49 + 1.5*0.48
    # 4*0.07*0.2499 = 0.069972 -> 0.06997; 1.5*0.07*0.2496 = 0.026208 -> 0.02620
    assert f.fee == D("0.09617")
    assert money.fill_order("SELL", "7", "0.48", bids, CRYPTO_FEE, "FOK").status == "killed"
    part = money.fill_order("SELL", "7", "0.48", bids, CRYPTO_FEE, "FAK")
    assert (part.status, part.shares, part.unspent) == ("partial", D("6"), D("1"))


def test_nothing_at_the_limit_is_unmatched() -> None:
    f = money.fill_order("BUY", "10", "0.45", ISSUE_ASKS, CRYPTO_FEE, "FAK")
    assert f.status == "unmatched" and f.shares == 0
    assert "0.45" in f.reason


# The tester's stop-loss (fixb): a ~91-share entry intent at limit 0.022 is a $2.00 collateral-
# sized BUY that took 837.54 shares at 0.002/0.003; the stop-loss then sells all 837.54 with a FAK
# at the 0.001 floor into bids totalling 166.41 shares. FAK is fill-and-kill: the venue fills what
# is at or better than the limit and kills the rest; FOK is all or nothing (docs.polymarket.com
# concepts/order-lifecycle "Order Types"; clob-client #150: "FAK (Fill and Kill): The order can be
# partially filled, and any unfilled portion is canceled").
STOP_ASKS = [("0.002", "512.62"), ("0.003", "1000")]
STOP_BIDS = [("0.003", "40"), ("0.002", "100"), ("0.001", "26.41")]  # 166.41 shares


def test_stop_loss_entry_is_collateral_sized() -> None:
    # 90.91 x 0.022 = 2.00002 -> $2.00: 512.62 x 0.002 = 1.02524, then 0.97476 / 0.003 = 324.92
    f = money.fill_order("BUY", "90.91", "0.022", STOP_ASKS, CRYPTO_FEE, "FAK")
    assert f.status == "filled" and f.shares == D("837.54") and f.cost == D("2.00000")
    # 512.62*.07*.002*.998 = 0.0716232664 -> 0.07162; 324.92*.07*.003*.997 = 0.0680285004 -> 0.06802
    assert [t.fee for t in f.trades] == [D("0.07162"), D("0.06802")]


def test_stop_loss_fak_bigger_than_the_bids_fills_them_and_kills_the_rest() -> None:
    f = money.fill_order("SELL", "837.54", "0.001", STOP_BIDS, CRYPTO_FEE, "FAK")
    assert f.status == "partial"
    assert [(t.price, t.shares) for t in f.trades] == [
        (D("0.003"), D("40")),
        (D("0.002"), D("100")),
        (D("0.001"), D("26.41")),
    ]
    assert (f.shares, f.unspent) == (D("166.41"), D("671.13"))  # 671.13 shares killed
    assert f.cost == D("0.34641")  # 0.12 + 0.2 + 0.02641
    # one trade per level, each fee floored to 5 decimals: 40*.07*.003*.997 = 0.0083748 ->
    # 0.00837; 100*.07*.002*.998 = 0.013972 -> 0.01397; 26.41*.07*.001*.999 = 0.0018468513 ->
    # 0.00184. Total 0.02418, not the 0.02419 of flooring the unrounded sum 0.0241936513.
    assert [t.fee for t in f.trades] == [D("0.00837"), D("0.01397"), D("0.00184")]
    assert f.fee == D("0.02418")
    # the same order as a FOK: all or nothing, so nothing
    fok = money.fill_order("SELL", "837.54", "0.001", STOP_BIDS, CRYPTO_FEE, "FOK")
    assert fok.status == "killed" and fok.trades == () and fok.shares == 0
    # a FAK with nothing at or better than its limit matches nothing (the venue's 400
    # ERR_FAK_NOT_FILLED)
    none = money.fill_order("SELL", "837.54", "0.004", STOP_BIDS, CRYPTO_FEE, "FAK")
    assert none.status == "unmatched" and none.trades == ()


def test_a_marketable_sell_has_no_share_or_dollar_minimum() -> None:
    # the 5-share orderMinSize is for resting orders (py-clob-client #301: "Size (1.08) lower
    # than the minimum: 5" on a GTC; nautilus_trader #3874: market orders have a $1 amount
    # minimum, limit orders 5 shares) and the $1 minimum is stated for a marketable BUY only
    # (PROTOCOLS.md section 7). No public source states a minimum for a marketable SELL
    # (py-sdk #302 asks the venue to say): so a remainder of 0.5 shares worth $0.0015 is sent.
    a = marketable_amounts("SELL", D("0.003"), D("0.5"))
    assert a.skip == "" and (a.maker_units, a.taker_units) == (500_000, 1_500)
    assert amounts_error("SELL", a.maker_units, a.taker_units, marketable=True) == ""
    f = money.fill_order("SELL", "0.5", "0.003", STOP_BIDS, CRYPTO_FEE, "FAK")
    assert (f.status, f.shares, f.cost) == ("filled", D("0.5"), D("0.0015"))


def test_fee_formula_and_rounding() -> None:
    # PROTOCOLS.md section 4: 1.75 cents a share at p = 0.50 (rate 0.07, exponent 1)
    assert money.taker_fee("100", "0.50", CRYPTO_FEE) == D("1.75000")
    assert money.taker_fee("1", "0.51", CRYPTO_FEE) == D("0.01749")  # 0.017493, floored
    assert money.taker_fee("1", "0.5", FeeSchedule.of("0.25", "2")) == D("0.01562")
    assert money.taker_fee("100", "0.5", money.NO_FEE) == 0
    assert money.fee_per_share("0.5", CRYPTO_FEE) == D("0.0175")
    with pytest.raises(ValueError, match=">= 0"):
        FeeSchedule.of("-0.1")


def test_tick_grid_snaps_never_worse_for_the_trader() -> None:
    assert money.snap_price("0.527", "0.01", "BUY") == D("0.52")
    assert money.snap_price("0.527", "0.01", "SELL") == D("0.53")
    assert money.snap_price(0.527, 0.001, "BUY") == D("0.527")
    assert money.check_price("0.52", "0.01") == ""
    assert "tick grid" in money.check_price("0.525", "0.01")
    assert "outside" in money.check_price("1.00", "0.01")
    with pytest.raises(ValueError, match="tick size"):
        money.snap_price("0.5", "1", "BUY")


def test_fill_order_rejects_what_cannot_be_signed() -> None:
    f = money.fill_order("BUY", "1.99", "0.5", ISSUE_ASKS, CRYPTO_FEE, "FAK")
    assert (f.status, f.reason, f.trades) == ("rejected", "below_min_buy_notional", ())
    assert money.round_shares("9.619") == D("9.61")
    with pytest.raises(ValueError, match="finite"):
        dec("nan")
    with pytest.raises(ValueError, match="amount must be > 0"):
        money.fill_marketable("BUY", "0", "0.5", ISSUE_ASKS)


# --- paper vs simulated venue ------------------------------------------------------------------
NS = 1_000_000_000


@pytest.fixture(scope="module")
def sim():  # type: ignore[no-untyped-def]
    from services.simvenue.market import SimMarket

    start = 1_767_225_600 * NS
    m = SimMarket(5, 300, start, book_ticker_hz=0.0)
    return m, m.current_window(), start


def paper_fill(
    w, token: str, side: str, shares: D, limit: D, order_type: str
) -> money.MarketableFill:  # type: ignore[no-untyped-def]
    """The paper executor's path: the token's book as the bus carries it (floats) in a
    `common.book.Book`, and the intent filled by `services.execution.fills.paper_fill` (what
    `ExecutionCore` runs in dry-run mode)."""
    from services.execution.fills import paper_fill as execution_paper_fill

    bids, asks = w.levels(token)
    book = Book(token)
    book.replace(
        [(p / 1000, c / 100) for p, c in bids.items()],
        [(p / 1000, c / 100) for p, c in asks.items()],
    )
    intent = OrderIntent(
        client_order_id="prop",
        slug=w.slug,
        asset_id=token,
        outcome=w.outcome_of(token),
        side=side,  # type: ignore[arg-type]
        order_type=order_type,  # type: ignore[arg-type]
        limit_price=float(limit),
        size=float(shares),
        expires_ns=0,
        ts_intent_ns=0,
        tick_size=w.tick / 1000,
        fee_rate=float(CRYPTO_FEE.rate),
        fee_exponent=float(CRYPTO_FEE.exponent),
    )
    return execution_paper_fill(intent, book.taker_levels(side))  # type: ignore[arg-type]


def venue_take(m, token: str, side: str, maker_u: int, taker_u: int, order_type: str, t: int):  # type: ignore[no-untyped-def]
    """The simulated venue's matching of a signed order's integer amounts (base units): a BUY
    spends its maker (collateral) amount at price maker / taker or better, a SELL sells its maker
    (share) amount at price taker / maker or better."""
    if side == "BUY":
        return m.take(token, "BUY", maker_u, taker_u, maker_u, True, order_type, t)
    return m.take(token, "SELL", taker_u, maker_u, maker_u, False, order_type, t)


def test_issue_example_at_the_simulated_venue(sim) -> None:  # type: ignore[no-untyped-def]
    """The issue's stake, $4.9972 for 9.61 shares, matched by the simulated venue."""
    m, w, t = sim
    w.up_asks, w.up_bids = {500: 500, 510: 300, 520: 1000}, {480: 1000}
    res = venue_take(m, w.up_token, "BUY", 4_997_200, 9_610_000, "FOK", t)
    m._heap.clear()
    assert res.status == "matched"
    assert res.filled_centi == 986 and res.cost_micro == 4_997_200  # 9.86 shares, $4.9972
    assert res.fee_micro == 172_460  # 0.08750 + 0.05247 + 0.03249, as paper charges it
    assert res.fills == [(500, 500), (510, 300), (520, 186)]


def test_stop_loss_fak_at_the_simulated_venue_as_in_paper(sim) -> None:  # type: ignore[no-untyped-def]
    """The stop-loss FAK above, signed as the live adapter signs it and matched by the simulated
    venue: the same three trades, cost and fees as the paper fill, the rest killed."""
    m, w, t = sim
    w.tick, w.up_asks, w.up_bids = 1, {6: 100_000}, {3: 4_000, 2: 10_000, 1: 2_641}
    paper = paper_fill(w, w.up_token, "SELL", D("837.54"), D("0.001"), "FAK")
    signed = marketable_amounts("SELL", D("0.001"), D("837.54"))
    assert (signed.maker_units, signed.taker_units) == (837_540_000, 837_500)  # 0.8375 asked
    res = venue_take(m, w.up_token, "SELL", signed.maker_units, signed.taker_units, "FAK", t)
    m._heap.clear()
    assert paper.status == "partial" and res.status == "matched"  # POST answer: matched
    assert res.fills == [(3, 4_000), (2, 10_000), (1, 2_641)]
    assert res.filled_centi == 16_641 and D(res.filled_centi) / 100 == paper.shares
    assert res.cost_micro == 346_410 and D(res.cost_micro) / 1_000_000 == paper.cost
    assert res.fee_micro == 24_180 and D(res.fee_micro) / 1_000_000 == paper.fee
    assert w.up_bids == {}  # the bids are gone; the other 671.13 shares were never on the book
    # the venue's FAK with nothing to match is "unmatched" (POST /order 400 ERR_FAK_NOT_FILLED)
    again = venue_take(m, w.up_token, "SELL", 671_130_000, 671_100, "FAK", t)
    m._heap.clear()
    assert again.status == "unmatched"
    assert paper_fill(w, w.up_token, "SELL", D("671.13"), D("0.001"), "FAK").status == "unmatched"


level = st.tuples(st.integers(0, 20), st.integers(1, 5_000))  # (ticks from the mid, centi)


@settings(
    max_examples=2_000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    tick=st.sampled_from([10, 1]),
    mid_c=st.integers(2, 98),
    raw_bids=st.lists(level, max_size=8),
    raw_asks=st.lists(level, max_size=8),
    up=st.booleans(),
    side=st.sampled_from(["BUY", "SELL"]),
    shares_c=st.integers(1, 6_000),
    limit_off=st.integers(-10, 10),
    sweep=st.booleans(),
    order_type=st.sampled_from(["FOK", "FAK"]),
)
def test_paper_and_simulated_venue_fill_alike(  # type: ignore[no-untyped-def]
    sim, tick, mid_c, raw_bids, raw_asks, up, side, shares_c, limit_off, sweep, order_type
) -> None:
    """Random uncrossed books (tick 0.01 or 0.001, Up or Down token: the venue keeps the Down
    book as the Up book's mirror) and random orders: paper and venue agree on status, every
    trade's price and shares, the total cost and the fee, to the unit."""
    m, w, t = sim
    mid = mid_c * 10  # milli
    bids = {mid - off * tick: s for off, s in raw_bids if mid - off * tick >= tick}
    asks = {
        mid + (off + 1) * tick: s for off, s in raw_asks if mid + (off + 1) * tick <= 1000 - tick
    }
    w.tick, w.up_bids, w.up_asks = tick, dict(bids), dict(asks)
    token = w.up_token if up else w.down_token
    own_mid = mid if up else 1000 - mid
    limit_m = min(max(own_mid + limit_off * tick, tick), 1000 - tick)
    if sweep:  # half the orders take at any price
        limit_m = 1000 - tick if side == "BUY" else tick
    shares, limit = D(shares_c) / 100, D(limit_m) / 1000
    paper = paper_fill(w, token, side, shares, limit, order_type)
    event(f"{side} {order_type} {paper.status}")
    signed = marketable_amounts(side, limit, shares)  # what the live adapter signs and sends
    if signed.skip:
        assert paper.status == "rejected"  # the venue never sees it: it cannot be signed
        return
    venue = venue_take(m, token, side, signed.maker_units, signed.taker_units, order_type, t)
    m._heap.clear()  # the frames the venue queued for its feeds are not looked at here
    expected = {"filled": "matched", "partial": "matched"}.get(paper.status, paper.status)
    assert venue.status == expected
    assert D(venue.filled_centi) / 100 == paper.shares
    assert D(venue.cost_micro) / 1_000_000 == paper.cost
    assert D(venue.fee_micro) / 1_000_000 == paper.fee
    assert [(D(p) / 1000, D(c) / 100) for p, c in venue.fills] == [
        (tr.price, tr.shares) for tr in paper.trades
    ]
