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


def test_a_paper_quote_left_by_a_previous_run_is_cancelled_at_start(tmp_path) -> None:
    """A paper resting order's queue place lives in execution's memory: after a restart it is
    no longer followed, so the new run cancels it in the ledger and tells strategy, rather than
    leaving an "acked" order that never fills nor ends (`ExecutionCore._recover_resting`)."""
    db = str(tmp_path / "l.db")
    first = ExecutionCore(Ledger(db), DRY)
    first.step(book([(0.48, 100.0)], [(0.50, 80.0)]), T0)
    assert of(first.step(resting(), T0), topics.ACK)[0].status == "live"
    assert first.ledger.order("q1")["status"] == "acked"
    second = ExecutionCore(Ledger(db), DRY, clock=lambda: T0 + NS)
    (ack,) = of(second.recover(), topics.ACK)
    assert (ack.client_order_id, ack.status) == ("q1", "cancelled")
    row = second.ledger.order("q1")
    assert row["status"] == "cancelled" and "previous run" in row["reason"]
    assert not second.resting.orders and not second._maker_tail
    assert of(second.recover(), topics.ACK) == []  # once


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
        self.trades: list = []  # maker fills the user channel reported (and REST lists)
        self.rest_trades: list = []  # maker fills only REST lists (the socket missed them)
        self.state: tuple[str, float] | None = None  # the order's (status, size_matched)
        self.trade_status: dict[str, str] = {}  # venue trade id -> status (else CONFIRMED)
        self.ws_connected = True

    def gate(self, side):
        return "venue_post_only", "the venue accepts only post-only orders after a restart"

    def sign_resting(self, asset_id, side, price, size, **kw):
        from services.execution.core import SignedOrder

        self.calls.append(("sign_resting", asset_id, side, str(price), str(size), kw["order_type"]))
        self.signed = getattr(self, "signed", 0) + 1
        return SignedOrder(f"0xq{self.signed}", "{}")

    def post_resting(self, order, order_type="GTC"):
        from services.execution.core import VenueResult

        self.calls.append(("post_resting", order.order_id, order_type))
        return VenueResult("accepted", "live", terminal=False, venue_order_id=order.order_id)

    def resting_fills(self, order_id, asset_id, rest=True):
        self.calls.append(("resting_fills", rest))
        got = list(self.trades) + (list(self.rest_trades) if rest else [])
        return [t for t in got if t.trade_id.endswith(":" + order_id)]

    def resting_state(self, order_id, rest=True, size=0.0):
        return self.state

    def cancel(self, ids):
        self.calls.append(("cancel", tuple(ids)))
        return {"canceled": list(ids), "not_canceled": {}}

    def rest_book(self, asset_id):
        return None

    def trade_states(self, trade_ids):
        return {t: self.trade_status.get(t, "CONFIRMED") for t in trade_ids}

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
    v.trades = [VenueTrade("tr1:m:0xq1", 0.48, 4.0, 0.0)]
    (f,) = of(c.step(Timer(T0 + 2 * NS), T0 + 2 * NS), topics.FILL)
    assert (f.liquidity, f.fee, f.size, f.dry_run) == ("maker", 0.0, 4.0, False)
    assert f.rebate_usd == float(
        money.maker_rebate(4, "0.48", money.FeeSchedule.of(0.07, 1, True, 0.2))
    )
    assert not of(c.step(Timer(T0 + 4 * NS), T0 + 4 * NS), topics.FILL)
    # the rest is cancelled at the venue by its id
    (ack,) = of(c.step(CancelOrder(ts_ns=T0, client_order_id="q1"), T0 + 5 * NS), topics.ACK)
    assert ack.status == "cancelled" and v.calls[-1] == ("cancel", ("0xq1",))


def live_core(v: RestingVenue) -> ExecutionCore:
    c = ExecutionCore(Ledger(":memory:"), TradingMode(False, True, True), venue=v)  # type: ignore[arg-type]
    c.step(book([(0.48, 100.0)], [(0.50, 80.0)]), T0)
    (ack,) = of(c.step(resting("q1"), T0), topics.ACK)
    assert ack.status == "live"
    return c


def test_live_maker_fills_from_the_channel_and_rest_each_once_and_a_failed_one_reversed() -> None:
    """Issue 18 item 3: a maker fill the user channel reports is booked on the next timer tick
    (no REST call needed); the REST reconcile lists it again plus one the socket missed: only
    the new one is booked; the fills add up to the order's size_matched; a maker trade the
    venue reports FAILED is reversed as a taker trade is (PROTOCOLS.md section 7)."""
    from common.core import Timer
    from services.execution.core import VenueTrade

    v = RestingVenue()
    v.gate = lambda side: ("", "")  # type: ignore[method-assign]
    c = live_core(v)
    c.step(Timer(T0), T0)  # the first tick reconciles against REST: nothing yet
    v.calls.clear()
    v.trades = [VenueTrade("tA:m:0xq1", 0.48, 4.0, 0.0)]
    v.state = ("LIVE", 4.0)
    (f,) = of(c.step(Timer(T0 + NS // 10), T0 + NS // 10), topics.FILL)
    assert (f.trade_id, f.size, f.liquidity) == ("tA:m:0xq1", 4.0, "maker")
    assert v.calls == [("resting_fills", False)]  # from the channel: REST not asked
    # REST lists tA again and tB the socket missed: tB alone is new
    v.rest_trades = [
        VenueTrade("tA:m:0xq1", 0.48, 4.0, 0.0),
        VenueTrade("tB:m:0xq1", 0.48, 3.0, 0.0),
    ]
    v.state = ("LIVE", 7.0)
    v.trade_status = {"tB": "MATCHED"}  # tA goes CONFIRMED, tB stays provisional
    fills = []
    t = T0 + NS // 10
    while t < T0 + 7 * NS:
        t += NS // 10
        fills += of(c.step(Timer(t), t), topics.FILL)
    assert [x.trade_id for x in fills] == ["tB:m:0xq1"]
    assert ("resting_fills", True) in v.calls
    rows = c.ledger.fills_of("q1")
    assert sorted(r["trade_id"] for r in rows) == ["tA:m:0xq1", "tB:m:0xq1"]
    assert sum(r["size"] for r in rows) == 7.0 and "maker_overbooked" not in c.counts
    assert c.ledger.order("q1")["status"] == "partial" and "q1" in c.resting.orders
    # the venue's trade tB fails on chain: its maker fill is undone
    v.trade_status = {"tB": "FAILED"}
    (rev,) = of(c.check_trades(), topics.FILL)
    assert (rev.reverses_trade_id, rev.side, rev.size) == ("tB:m:0xq1", "SELL", 3.0)
    assert c.positions[UP].size == 4.0
    # a fill beyond the order's size_matched is named as an error on the reconcile
    v.rest_trades = [VenueTrade("tC:m:0xq1", 0.48, 2.0, 0.0)]
    v.state = ("LIVE", 4.0)
    c.poll_maker_fills(rest=True)
    assert c.counts.get("maker_overbooked") == 1


def test_a_venue_cancel_of_a_resting_order_is_told_to_strategy_at_once() -> None:
    """The venue takes a resting order off by itself (the heartbeat's dead-man switch, a GTD's
    expiry, the market closing: a user-channel CANCELLATION): execution books the fills the
    order had, then answers strategy with an OrderAccepted "cancelled" on the next timer tick;
    a fill that raced the cancel and shows up later is still booked, once."""
    from common.core import Timer
    from services.execution.core import VenueTrade

    v = RestingVenue()
    v.gate = lambda side: ("", "")  # type: ignore[method-assign]
    c = live_core(v)
    c.step(Timer(T0), T0)
    v.trades = [VenueTrade("tA:m:0xq1", 0.48, 4.0, 0.0)]
    v.state = ("CANCELED", 6.0)  # 2 more shares matched than seen so far: wait for them
    out = c.step(Timer(T0 + NS // 10), T0 + NS // 10)
    assert len(of(out, topics.FILL)) == 1 and not of(out, topics.ACK)
    assert "q1" in c.resting.orders
    v.trades.append(VenueTrade("tB:m:0xq1", 0.48, 2.0, 0.0))
    out = c.step(Timer(T0 + 2 * NS // 10), T0 + 2 * NS // 10)
    (fb,) = of(out, topics.FILL)
    (ack,) = of(out, topics.ACK)
    assert fb.trade_id == "tB:m:0xq1" and (ack.client_order_id, ack.status) == ("q1", "cancelled")
    assert "q1" not in c.resting.orders and c.ledger.order("q1")["status"] == "cancelled"
    assert c.ledger.order("q1")["filled_size"] == 6.0
    # a late fill of the cancelled order (it raced the cancel) is booked once; status stays
    v.trades.append(VenueTrade("tC:m:0xq1", 0.48, 1.0, 0.0))
    (fc,) = of(c.step(Timer(T0 + 3 * NS // 10), T0 + 3 * NS // 10), topics.FILL)
    assert fc.trade_id == "tC:m:0xq1"
    assert not of(c.step(Timer(T0 + 4 * NS // 10), T0 + 4 * NS // 10), topics.FILL)
    assert c.ledger.order("q1")["status"] == "cancelled"
    # 30 s on it is followed no more
    c.step(Timer(T0 + 40 * NS), T0 + 40 * NS)
    assert not c._maker_tail


def test_cancel_of_an_order_execution_does_not_know_is_answered() -> None:
    """CancelOrder naming an order never received: an OrderRejected `unknown_order` (strategy
    frees whatever it waited for); one already done is only logged (its answer went out)."""
    c = core()
    (rej,) = of(c.step(CancelOrder(ts_ns=T0, client_order_id="nope"), T0), topics.REJECT)
    assert (rej.client_order_id, rej.code) == ("nope", "unknown_order")
    assert c.counts["cancel_unknown_order"] == 1
    of(c.step(resting("q1"), T0), topics.ACK)
    (ack,) = of(c.step(CancelOrder(ts_ns=T0, client_order_id="q1"), T0), topics.ACK)
    assert ack.status == "cancelled"
    assert c.step(CancelOrder(ts_ns=T0, client_order_id="q1"), T0) == []
    assert c.counts["cancel_not_resting"] == 1


def test_a_cancel_naming_a_rejected_order_repeats_its_rejection(tmp_path) -> None:
    """BREAKER2 finding 6: a new execution rejects the paper orders a kill -9 left in its
    latency queue (`restart_not_sent`) at start, before strategy's SUB socket has reconnected;
    strategy asks about them with a CancelOrder on the new process's first heartbeat, and
    each is answered with its rejection again (same code and reason; no fill, no ledger change)."""
    db = str(tmp_path / "l.db")
    first = ExecutionCore(Ledger(db), DRY, dry_run_latency_ms=1500)
    first.step(book([(0.48, 100.0)], [(0.50, 80.0)]), T0)
    taker = resting("o1", price=0.52, kind="FOK", size=5.0, post_only=False)
    assert first.step(taker, T0) == []  # waiting out its paper latency: then killed
    second = ExecutionCore(Ledger(db), DRY, clock=lambda: T0 + NS)
    (lost,) = of(second.recover(), topics.REJECT)  # published before anyone listened
    assert lost.code == "restart_not_sent"
    out = second.step(CancelOrder(ts_ns=T0, client_order_id="o1", reason="asked"), T0 + NS)
    (again,) = of(out, topics.REJECT)
    assert (again.client_order_id, again.code, again.reason) == ("o1", lost.code, lost.reason)
    assert len(out) == 1 and second.counts["answer_repeated"] == 1
    row = second.ledger.order("o1")
    assert (row["status"], row["filled_size"]) == ("rejected", 0)


def test_a_failed_trade_filling_two_of_our_maker_orders_is_reversed_under_each() -> None:
    """One venue trade can list two of our resting orders in `maker_orders` (the taker swept
    both levels): each gets its own maker fill (`<trade>:m:<order>`), and when the trade
    FAILS each order's fill is reversed under that order."""
    from common.core import Timer
    from services.execution.core import VenueTrade

    v = RestingVenue()
    v.gate = lambda side: ("", "")  # type: ignore[method-assign]
    c = live_core(v)
    of(c.step(resting("q2", price=0.47), T0), topics.ACK)
    v.trades = [VenueTrade("tX:m:0xq1", 0.48, 2.0, 0.0), VenueTrade("tX:m:0xq2", 0.47, 3.0, 0.0)]
    v.trade_status = {"tX": "MATCHED"}
    fills = of(c.step(Timer(T0), T0), topics.FILL)
    assert sorted((f.client_order_id, f.trade_id, f.size) for f in fills) == [
        ("q1", "tX:m:0xq1", 2.0),
        ("q2", "tX:m:0xq2", 3.0),
    ]
    v.trade_status = {"tX": "FAILED"}
    revs = of(c.check_trades(), topics.FILL)
    assert sorted((r.client_order_id, r.reverses_trade_id, r.size) for r in revs) == [
        ("q1", "tX:m:0xq1", 2.0),
        ("q2", "tX:m:0xq2", 3.0),
    ]
