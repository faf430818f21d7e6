"""Worked examples of the dry-run fill math (every expected figure is computed by hand here)."""

from __future__ import annotations

from decimal import Decimal as D

from services.execution.fills import OrderTerms, check_terms, simulate_fill, snap_limit, taker_fee

# a thin ask book, best first: 0.52 x 10, 0.53 x 4, 0.55 x 100
ASKS = [[0.52, 10.0], [0.53, 4.0], [0.55, 100.0]]
BIDS = [[0.50, 6.0], [0.49, 20.0]]


def terms(side="BUY", kind="FOK", limit=0.53, size=12.0, **kw) -> OrderTerms:
    return OrderTerms.of(side, kind, limit, size, fee_rate=kw.pop("fee_rate", 0.07), **kw)


def test_exec_fee_formula_at_half_is_175_cents_per_100_shares() -> None:
    assert taker_fee(D("100"), D("0.5"), D("0.07"), D("1")) == D("1.75000")
    # 7 * 0.07 * 0.52 * 0.48 = 0.122304 -> 0.12230 (5 decimals)
    assert taker_fee(D("7"), D("0.52"), D("0.07"), D("1")) == D("0.12230")
    # half-up at the 6th decimal: 1 * 0.07 * 0.15 * 0.85 = 0.008925 -> 0.00893
    assert taker_fee(D("1"), D("0.15"), D("0.07"), D("1")) == D("0.00893")
    # exponent 2: 10 * 0.25 * (0.5*0.5)^2 = 0.15625
    assert taker_fee(D("10"), D("0.5"), D("0.25"), D("2")) == D("0.15625")
    assert taker_fee(D("10"), D("0.5"), D("0"), D("1")) == D("0")


def test_exec_fok_walks_two_levels_within_limit() -> None:
    r = simulate_fill(terms(size=12), BIDS, ASKS)
    assert r.status == "filled"
    assert [(t.price, t.size) for t in r.trades] == [(D("0.52"), D("10")), (D("0.53"), D("2"))]
    # fees per trade: 10*.07*.52*.48 = 0.17472 ; 2*.07*.53*.47 = 0.034874 -> 0.03487
    assert [t.fee for t in r.trades] == [D("0.17472"), D("0.03487")]
    assert r.fee == D("0.20959")
    assert r.notional == D("6.26")  # 5.20 + 1.06
    assert r.filled == D("12")


def test_exec_fok_killed_on_thin_book() -> None:
    r = simulate_fill(terms(size=15), BIDS, ASKS)  # only 14 at or below 0.53
    assert r.status == "killed" and not r.trades and r.filled == 0
    assert "14" in r.reason and "15" in r.reason


def test_exec_fak_fills_partially() -> None:
    r = simulate_fill(terms(kind="FAK", size=20), BIDS, ASKS)
    assert r.status == "partial"
    assert r.filled == D("14")
    assert r.notional == D("7.32")  # 5.20 + 2.12
    # 4*.07*.53*.47 = 0.069748 -> 0.06975
    assert r.fee == D("0.17472") + D("0.06975")


def test_exec_sell_walks_bids_down_to_limit() -> None:
    r = simulate_fill(terms(side="SELL", kind="FAK", limit=0.495, size=10), BIDS, ASKS)
    # SELL limit 0.495 snaps UP to 0.50, so the 0.49 level is out of reach
    assert r.limit == D("0.50")
    assert r.status == "partial" and r.filled == D("6")
    assert r.fee == D("0.10500")  # 6 * .07 * .25


def test_exec_tick_rounding_never_worse_for_the_order() -> None:
    assert snap_limit(D("0.537"), D("0.01"), "BUY") == D("0.53")
    assert snap_limit(D("0.531"), D("0.01"), "SELL") == D("0.54")
    assert snap_limit(D("0.9876"), D("0.001"), "BUY") == D("0.987")
    # a BUY at 0.529 snaps to 0.52: only the first level remains reachable
    r = simulate_fill(terms(limit=0.529, size=10), BIDS, ASKS)
    assert r.limit == D("0.52") and r.status == "filled" and r.notional == D("5.2")


def test_exec_minimums() -> None:
    # below the market's minimum size
    assert "minimum size" in check_terms(terms(size=4.99))[2]
    # 5 shares at 0.15 = $0.75 < $1 for a marketable BUY
    assert "$1" in check_terms(terms(limit=0.15, size=5))[2]
    assert check_terms(terms(limit=0.20, size=5))[2] == ""  # exactly $1
    # size is cut to the 0.01 grid
    assert check_terms(terms(size=12.349))[1] == D("12.34")
    # prices outside [tick, 1 - tick]
    assert "outside" in check_terms(terms(limit=0.004))[2]
    assert "outside" in check_terms(terms(side="SELL", limit=0.995))[2]
    r = simulate_fill(terms(size=1), BIDS, ASKS)
    assert r.status == "rejected" and "minimum size" in r.reason


def test_exec_unmatched_and_unsorted_book() -> None:
    r = simulate_fill(terms(limit=0.51), BIDS, ASKS)
    assert r.status == "unmatched" and "0.51" in r.reason
    # the venue's order (best LAST) and string decimals give the same walk
    venue_asks = [["0.55", "100"], ["0.53", "4"], ["0.52", "10"], ["0.54", "0"]]
    r = simulate_fill(terms(size=12), BIDS, venue_asks)
    assert r.status == "filled" and r.notional == D("6.26")
