"""Paper resting (maker) orders in the execution core (issue 18): the venue's checks before an
order rests, fills by the queue model from the books (conservative: only when the opposite best
reaches the order, trades at the CLOB are not on the bus), no fee and the rebate, cancels and
GTD expiry answered with an OrderAccepted, all in the ledger."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from common import money, topics
from common.schema import BookSnapshot, CancelOrder, ClockTick, MarketResolved, OrderIntent
from services.execution.core import ExecutionCore
from services.execution.ledger import Ledger
from services.execution.switches import TradingMode

NS = 1_000_000_000
MS = 1_000_000
T0 = 1_800_000_000 * NS
UP = "111"
DRY = TradingMode(True, False, False)


def book(bids, asks, t=T0) -> BookSnapshot:
    return BookSnapshot(
        asset_id=UP,
        best_bid=bids[0][0] if bids else None,
        best_ask=asks[0][0] if asks else None,
        bids=[tuple(b) for b in bids],
        asks=[tuple(a) for a in asks],
        ts_exchange_ns=t,
        ts_recv_ns=t,
    )


def resting(coid="q1", price=0.48, size=10.0, kind="GTC", t=T0, **kw) -> OrderIntent:
    return OrderIntent(
        client_order_id=coid,
        slug="btc-updown-5m-1",
        asset_id=UP,
        outcome="Up",
        side="BUY",
        order_type=kind,
        limit_price=price,
        size=size,
        expires_ns=t + 2 * NS,
        ts_intent_ns=t,
        fee_rate=0.07,
        fee_rebate_rate=0.2,
        post_only=kw.pop("post_only", True),
        **kw,
    )


def core() -> ExecutionCore:
    c = ExecutionCore(Ledger(":memory:"), DRY)
    c.step(book([(0.48, 100.0), (0.47, 50.0)], [(0.50, 80.0)]), T0)
    return c


def of(out, topic):
    return [m for tp, m in out if tp == topic]


def test_a_post_only_order_rests_and_is_acked_live_without_a_fill() -> None:
    c = core()
    out = c.step(resting(), T0)
    (ack,) = of(out, topics.ACK)
    assert ack.status == "live" and not of(out, topics.FILL)
    assert c.ledger.order("q1")["venue_status"] == "live"
    assert c.resting.orders["q1"].queue.ahead == Decimal(100)  # joined behind the 100 shown


def test_the_venue_checks_refuse_before_resting() -> None:
    c = core()
    cases = {
        "x1": (resting("x1", price=0.50), "post_only_would_cross"),  # at the best ask
        "x2": (resting("x2", price=0.485), "invalid_price"),  # off the 0.01 grid
        "x3": (resting("x3", size=4.0), "below_min_size"),  # 5-share minimum
        "x4": (resting("x4", post_only=False), "invalid_order"),
        # GTD: at least 3 minutes ahead (the venue's minimum, live.py sign_resting)
        "x5": (resting("x5", kind="GTD", expiration_s=T0 // NS + 120), "invalid_expiration"),
        "x6": (resting("x6", expiration_s=T0 // NS + 600), "invalid_order"),  # GTC + expiry
    }
    for coid, (it, code) in cases.items():
        (rej,) = of(c.step(it, T0), topics.REJECT)
        assert rej.code == code, (coid, rej)
    assert len(c.resting) == 0


def test_fills_when_the_ask_reaches_it_at_its_price_no_fee_and_the_rebate() -> None:
    """Worked example: 10 shares resting at 0.48; the level shrinking (trades or cancels,
    unknown) fills nothing; the best ask falling to 0.48 fills all 10 at 0.48: fee 0, rebate
    0.2 x 10 x 0.07 x 0.48 x 0.52 = 0.034944, to 5 decimals as the fee: 0.03494 USD."""
    c = core()
    c.step(resting(), T0)
    out = c.step(book([(0.48, 30.0)], [(0.50, 80.0)], T0 + NS), T0 + NS)
    assert not of(out, topics.FILL)
    assert c.resting.orders["q1"].queue.ahead == Decimal(30)  # conservative: cancels behind us
    out = c.step(book([(0.47, 50.0)], [(0.48, 20.0)], T0 + 2 * NS), T0 + 2 * NS)
    (f,) = of(out, topics.FILL)
    assert (f.liquidity, f.price, f.size, f.fee) == ("maker", 0.48, 10.0, 0.0)
    expected = money.maker_rebate(10, "0.48", money.FeeSchedule.of(0.07, 1, True, 0.2))
    assert f.rebate_usd == float(expected) == 0.03494
    row = c.ledger.conn.execute("SELECT liquidity, rebate_usd FROM fills").fetchone()
    assert tuple(row) == ("maker", 0.03494)
    assert c.ledger.order("q1")["status"] == "filled"
    assert len(c.resting) == 0
    assert c.positions[UP].size == 10.0


def test_cancel_by_id_by_market_and_all_answered_cancelled() -> None:
    c = core()
    for coid in ("a", "b", "c"):
        c.step(resting(coid), T0)
    out = c.step(CancelOrder(ts_ns=T0, client_order_id="a", reason="replace"), T0)
    assert [(m.client_order_id, m.status) for m in of(out, topics.ACK)] == [("a", "cancelled")]
    assert c.ledger.order("a")["status"] == "cancelled"
    assert c.step(CancelOrder(ts_ns=T0, client_order_id="a"), T0) == []  # already gone: no-op
    out = c.step(CancelOrder(ts_ns=T0, reason="shutdown"), T0)
    assert sorted(m.client_order_id for m in of(out, topics.ACK)) == ["b", "c"]
    assert len(c.resting) == 0
    # a cancelled order is never filled afterwards
    assert not of(c.step(book([(0.40, 5.0)], [(0.41, 5.0)], T0 + NS), T0 + NS), topics.FILL)


def test_gtd_expires_a_minute_before_its_expiration_and_resolution_cancels() -> None:
    c = core()
    exp = T0 // NS + 200
    c.step(resting("g", kind="GTD", expiration_s=exp), T0)
    c.step(resting("r"), T0)
    assert not of(c.step(ClockTick(ts_ns=(exp - 61) * NS), 0), topics.ACK)
    (ack,) = of(c.step(ClockTick(ts_ns=(exp - 60) * NS), 0), topics.ACK)
    assert (ack.client_order_id, ack.status) == ("g", "expired")
    out = c.step(
        MarketResolved(slug="btc-updown-5m-1", winning_outcome="Up", ts_ns=(exp - 59) * NS), 0
    )
    assert [(m.client_order_id, m.status) for m in of(out, topics.ACK)] == [("r", "cancelled")]


class RestingVenue:
    """A recording stand-in for the live adapter's resting-order calls (the adapter itself is
    tested against the simulated venue in test_exec_live_maker.py): it is in the venue's
    post-only minutes after a restart (`gate`), accepts post-only orders, reports maker fills."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.trades: list = []

    def gate(self, side):
        return "venue_post_only", "the venue accepts only post-only orders after a restart"

    def sign_resting(self, asset_id, side, price, size, **kw):
        from services.execution.core import SignedOrder

        self.calls.append(("sign_resting", asset_id, side, str(price), str(size), kw["order_type"]))
        return SignedOrder("0xq1", "{}")

    def post_resting(self, order, order_type="GTC"):
        from services.execution.core import VenueResult

        self.calls.append(("post_resting", order.order_id, order_type))
        return VenueResult("accepted", "live", terminal=False, venue_order_id=order.order_id)

    def resting_fills(self, order_id, asset_id):
        return list(self.trades)

    def cancel(self, ids):
        self.calls.append(("cancel", tuple(ids)))
        return {"canceled": list(ids), "not_canceled": {}}

    def rest_book(self, asset_id):
        return None

    def trade_states(self, trade_ids):
        return {t: "CONFIRMED" for t in trade_ids}

    def redemption_status(self, tx_hash):
        return ""

    def close(self) -> None:
        pass


def test_live_post_only_order_through_the_adapter_in_the_post_only_minutes() -> None:
    from common.core import Timer
    from services.execution.core import VenueTrade

    v = RestingVenue()
    c = ExecutionCore(Ledger(":memory:"), TradingMode(False, True, True), venue=v)  # type: ignore[arg-type]
    c.step(book([(0.48, 100.0)], [(0.50, 80.0)]), T0)
    # a taker entry is refused in the venue's post-only minutes; a post-only quote goes
    taker = msgspec.structs.replace(resting("t1"), order_type="FOK", post_only=False)
    (rej,) = of(c.step(taker, T0), topics.REJECT)
    assert rej.code == "venue_post_only"
    (ack,) = of(c.step(resting("q1"), T0), topics.ACK)
    assert (ack.status, ack.venue_order_id) == ("live", "0xq1")
    assert v.calls[:2] == [
        ("sign_resting", UP, "BUY", "0.48", "10.0", "GTC"),
        ("post_resting", "0xq1", "GTC"),
    ]
    # the venue's maker fill is booked once, with the rebate
    v.trades = [VenueTrade("tr1:m", 0.48, 4.0, 0.0)]
    (f,) = of(c.step(Timer(T0 + 2 * NS), T0 + 2 * NS), topics.FILL)
    assert (f.liquidity, f.fee, f.size, f.dry_run) == ("maker", 0.0, 4.0, False)
    assert f.rebate_usd == float(
        money.maker_rebate(4, "0.48", money.FeeSchedule.of(0.07, 1, True, 0.2))
    )
    assert not of(c.step(Timer(T0 + 4 * NS), T0 + 4 * NS), topics.FILL)
    # the rest is cancelled at the venue by its id
    (ack,) = of(c.step(CancelOrder(ts_ns=T0, client_order_id="q1"), T0 + 5 * NS), topics.ACK)
    assert ack.status == "cancelled" and v.calls[-1] == ("cancel", ("0xq1",))
