"""Worked examples of the paper fill (services/execution/fills.py over common/money.py); every
expected figure is computed by hand here."""

from __future__ import annotations

from decimal import Decimal as D

from common.book import Book
from common.schema import OrderIntent
from services.execution.fills import check_intent, paper_fill

# a thin book: asks 0.52 x 10, 0.53 x 4, 0.55 x 100; bids 0.50 x 6, 0.49 x 20
BOOK = Book("tok")
BOOK.replace([(0.50, 6.0), (0.49, 20.0)], [(0.52, 10.0), (0.53, 4.0), (0.55, 100.0)])


def intent(side="BUY", kind="FOK", limit=0.53, size=12.0, **kw) -> OrderIntent:  # type: ignore[no-untyped-def]
    return OrderIntent(
        client_order_id="o",
        slug="s",
        asset_id="tok",
        outcome="Up",
        side=side,
        order_type=kind,
        limit_price=limit,
        size=size,
        expires_ns=0,
        ts_intent_ns=0,
        fee_rate=kw.pop("fee_rate", 0.07),
        **kw,
    )


def fill(it: OrderIntent, book: Book = BOOK):  # type: ignore[no-untyped-def]
    return paper_fill(it, book.taker_levels(it.side))


def test_exec_fok_buy_spends_its_collateral() -> None:
    # 12 x 0.53 = $6.36: 10 x 0.52 = 5.20, then 1.16 / 0.53 = 2.188 -> 2.18 shares
    r = fill(intent(size=12))
    assert r.status == "filled"
    assert [(t.price, t.shares) for t in r.trades] == [(D("0.52"), D("10")), (D("0.53"), D("2.18"))]
    # fees: 10*.07*.52*.48 = 0.17472 ; 2.18*.07*.53*.47 = 0.03801266 -> 0.03801
    assert [t.fee for t in r.trades] == [D("0.17472"), D("0.03801")]
    assert (r.shares, r.cost, r.unspent) == (D("12.18"), D("6.3554"), D("0.0046"))


def test_exec_fok_killed_and_fak_partial_on_a_thin_book() -> None:
    # 15 x 0.53 = $7.95, but only $7.32 of asks at or below 0.53
    r = fill(intent(size=15))
    assert r.status == "killed" and not r.trades and r.shares == 0
    r = fill(intent(kind="FAK", size=20))
    assert r.status == "partial" and (r.shares, r.cost) == (D("14"), D("7.32"))
    # 4*.07*.53*.47 = 0.069748 -> 0.06974
    assert r.fee == D("0.17472") + D("0.06974")


def test_exec_sell_walks_bids_down_to_limit() -> None:
    r = fill(intent(side="SELL", kind="FAK", limit=0.495, size=10))
    # SELL limit 0.495 snaps UP to 0.50, so the 0.49 level is out of reach
    assert check_intent(intent(side="SELL", limit=0.495, size=10))[0] == D("0.50")
    assert r.status == "partial" and r.shares == D("6")
    assert r.fee == D("0.10500")  # 6 * .07 * .25


def test_exec_tick_rounding_never_worse_for_the_order() -> None:
    # a BUY at 0.529 snaps to 0.52: $5.20 buys the first level only
    assert check_intent(intent(limit=0.529, size=10))[0] == D("0.52")
    r = fill(intent(limit=0.529, size=10))
    assert r.status == "filled" and (r.shares, r.cost) == (D("10"), D("5.20"))
    assert check_intent(intent(limit=0.9876, size=10, tick_size=0.001))[0] == D("0.987")


def test_exec_minimums_and_grids() -> None:
    # the 5-share minimum is for resting orders: 4.99 shares at 0.53 ($2.64) is a valid BUY
    assert check_intent(intent(size=4.99))[2] == ""
    # 5 shares at 0.15 = $0.75 < $1 for a marketable BUY; 5 at 0.20 is exactly $1
    assert "$1" in check_intent(intent(limit=0.15, size=5))[2]
    assert check_intent(intent(limit=0.20, size=5))[2] == ""
    assert check_intent(intent(size=12.349))[1] == D("12.34")
    assert "outside" in check_intent(intent(limit=0.004))[2]
    assert "outside" in check_intent(intent(side="SELL", limit=0.995))[2]
    r = fill(intent(size=1))
    assert r.status == "rejected" and "$1" in r.reason


def test_exec_unmatched_and_a_book_in_the_venue_order() -> None:
    r = fill(intent(limit=0.51))
    assert r.status == "unmatched" and "0.51" in r.reason
    # the venue's order (best LAST) and decimal strings give the same walk
    venue = Book("tok")
    venue.replace([], [["0.55", "100"], ["0.53", "4"], ["0.52", "10"], ["0.54", "0"]])
    r = fill(intent(size=12), venue)
    assert r.status == "filled" and r.cost == D("6.3554")
