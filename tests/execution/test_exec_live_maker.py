"""The live adapter's resting orders against the simulated venue only (never a real venue):
post-only GTC/GTD signed offline with amounts the venue accepts, refused with a named code when
they would cross, cancelled (one, a market, all), and the heartbeat that runs once an order is
sent: while the adapter lives its orders rest, and when it stops (a crash: nobody heartbeats),
the venue's dead-man switch cancels them within ~10 s (PROTOCOLS.md section 4)."""

from __future__ import annotations

import time
from decimal import Decimal as D

import pytest
from eth_account import Account

from common.config import Secret
from common.schema import OrderIntent
from services.execution.core import VenueError
from services.execution.live import LiveVenue, map_error
from tests.simvenue.conftest import SimProc, start_sim, stop_sim, wait_for

WINDOW_S = 60


@pytest.fixture(scope="module")
def lsim():
    s = start_sim("--window-seconds", str(WINDOW_S), "--seed", "6")
    try:
        yield s
    finally:
        stop_sim(s)


def adapter(sim: SimProc) -> LiveVenue:
    v = LiveVenue(f"{sim.http}/clob", Secret(Account.create().key.hex()), log=lambda *a, **k: None)
    assert v.start()
    return v


def market(sim: SimProc, time_left: float) -> dict:
    def ready() -> dict | None:
        cur = sim.state()["current"]
        start = int(cur["slug"].rsplit("-", 1)[1])
        book = cur["books"][cur["up_token"]]
        ok = (
            cur["tick_size"] == "0.01"
            and book["best_bid"] is not None
            and book["best_ask"] is not None
            and 0.1 <= float(book["best_bid"]) <= float(book["best_ask"]) <= 0.9
        )
        return cur if ok and start + WINDOW_S - time.time() > time_left else None

    return wait_for(ready, 2 * WINDOW_S, what="a market with time left")


def status(sim: SimProc, oid: str) -> str:
    return next(o["status"] for o in sim.state()["orders"] if o["id"] == oid)


def quote(cur: dict, coid: str, token: str, price: float, **kw) -> OrderIntent:
    """A post-only GTC BUY of 5 shares at `price` on `token` of market `cur` (sim state)."""
    now = time.time_ns()
    return OrderIntent(
        client_order_id=coid,
        slug=cur["slug"],
        asset_id=token,
        outcome="Up" if token == cur["up_token"] else "Down",
        side="BUY",
        order_type="GTC",
        limit_price=price,
        size=5.0,
        expires_ns=now + 30 * 10**9,
        ts_intent_ns=now,
        tick_size=float(cur["tick_size"]),
        fee_rate=0.07,
        post_only=True,
        **kw,
    )


def test_post_only_gtc_and_gtd_rest_and_cancel(lsim: SimProc) -> None:
    v = adapter(lsim)
    cur = market(lsim, 15)
    up, down = cur["up_token"], cur["down_token"]
    tick = D("0.01")
    a = v.sign_resting(up, "BUY", D("0.05"), D("6"), tick=tick)
    r = v.post_resting(a)
    assert (r.outcome, r.venue_status, r.terminal) == ("accepted", "live", False)
    assert r.venue_order_id == a.order_id  # the id is known before sending
    g = v.sign_resting(
        down,
        "BUY",
        D("0.04"),
        D("5"),
        tick=tick,
        order_type="GTD",
        expiration_s=int(time.time()) + 300,
    )
    assert v.post_resting(g, "GTD").outcome == "accepted"
    b = v.sign_resting(up, "BUY", D("0.03"), D("5"), tick=tick)
    assert v.post_resting(b).outcome == "accepted"
    assert v.cancel([a.order_id])["canceled"] == [a.order_id]
    assert v.cancel_market(asset_id=down)["canceled"] == [g.order_id]
    assert v.cancel_all()["canceled"] == [b.order_id]
    assert {status(lsim, o.order_id) for o in (a, g, b)} == {"CANCELED"}
    v.close()


def test_refusals_have_named_codes(lsim: SimProc) -> None:
    v = adapter(lsim)
    cur = market(lsim, 10)
    up = cur["up_token"]
    through = D(cur["books"][up]["best_ask"]) + D("0.05")
    r = v.post_resting(v.sign_resting(up, "BUY", through, D("5"), tick=D("0.01")))
    assert (r.outcome, r.code) == ("rejected", "post_only_would_cross")
    soon = v.sign_resting(
        up,
        "BUY",
        D("0.05"),
        D("5"),
        tick=D("0.01"),
        order_type="GTD",
        expiration_s=int(time.time()) + 90,
    )
    r = v.post_resting(soon, "GTD")
    assert (r.outcome, r.code) == ("rejected", "invalid_expiration")
    with pytest.raises(VenueError) as e:
        v.sign_resting(up, "BUY", D("0.055"), D("5"), tick=D("0.01"))
    assert e.value.code == "invalid_price"
    with pytest.raises(VenueError) as e:
        v.sign_resting(up, "BUY", D("0.05"), D("4.99"), tick=D("0.01"))
    assert e.value.code == "below_min_size"
    with pytest.raises(VenueError):
        v.sign_resting(up, "BUY", D("0.05"), D("5"), tick=D("0.01"), order_type="GTD")
    v.close()


def test_heartbeat_keeps_orders_while_alive_and_the_venue_cancels_them_after_a_crash(
    lsim: SimProc,
) -> None:
    v = adapter(lsim)
    cur = market(lsim, 45)
    # a deep bid on the likely winner, whose price heads away from it: the flow leaves it alone
    fav = max(
        (cur["up_token"], cur["down_token"]),
        key=lambda t: float(cur["books"][t]["best_bid"] or 0),
    )
    o = v.sign_resting(fav, "BUY", D("0.02"), D("5"), tick=D("0.01"))
    assert v.post_resting(o).outcome == "accepted"
    # the heartbeat thread runs from the first post on, every 5 s: after four of them (15 s,
    # more than the venue's 10 s) the order still rests
    wait_for(lambda: v.counts.get("heartbeats", 0) >= 4, 25, what="four heartbeats")
    assert status(lsim, o.order_id) == "LIVE"
    v.close()  # the adapter dies: no more heartbeats
    stopped = time.monotonic()
    wait_for(lambda: status(lsim, o.order_id) != "LIVE", 20, what="the dead-man switch")
    assert status(lsim, o.order_id) == "CANCELED" and time.monotonic() - stopped <= 16


def test_resting_fills_are_read_back_as_maker_fills(lsim: SimProc) -> None:
    """Post-only BUYs at the best bid of both tokens (whichever way the price moves, one is in
    its way) are filled by the simulated flow; the adapter reads the fills back from the venue's
    trades (`maker_orders`), at the order's price and without fee, and they add up to the
    order's `size_matched`."""
    v = adapter(lsim)
    cur = market(lsim, 45)
    placed = {}
    for token in (cur["up_token"], cur["down_token"]):
        for _ in range(10):  # the book moves: a bid that now crosses is refused, try the new one
            bid = D(lsim.state()["current"]["books"][token]["best_bid"])
            o = v.sign_resting(token, "BUY", bid, D("5"), tick=D("0.01"))
            r = v.post_resting(o)
            if r.code != "post_only_would_cross":
                break
        assert r.outcome == "accepted", r
        placed[o.order_id] = (token, bid)
    assert v.client is not None

    def consistent() -> tuple | None:
        for oid, (token, bid) in placed.items():
            fills = v.resting_fills(oid, token)
            matched = float(v.client.get_order(oid)["size_matched"])  # type: ignore[union-attr]
            if fills and sum(f.size for f in fills) == pytest.approx(matched):
                return fills, bid
        return None

    fills, bid = wait_for(consistent, 40, what="maker fills adding up to size_matched")
    assert all(f.price == float(bid) and f.fee == 0.0 for f in fills)
    v.cancel_all()
    v.close()


def test_venue_texts_map_to_named_codes() -> None:
    """The venue's texts (docs.polymarket.com resources/error-codes) -> the adapter's codes; the
    post-only-mode 503 is a refusal, not an unknown outcome."""
    assert map_error(400, "invalid post-only order: order crosses book")[:2] == (
        "rejected",
        "post_only_would_cross",
    )
    assert (
        map_error(400, "invalid post-only order: only GTC and GTD order types are allowed")[1]
        == "post_only_type"
    )
    assert map_error(400, "invalid expiration")[1] == "invalid_expiration"
    assert map_error(503, "post-only mode: only post-only orders and cancels are allowed")[:2] == (
        "rejected",
        "venue_post_only",
    )
    assert map_error(503, "Service Unavailable")[:2] == ("unknown", "venue_5xx")


def test_core_books_maker_fills_from_the_user_channel_and_hears_a_venue_cancel(
    lsim: SimProc, tmp_path
) -> None:
    """The execution core with the live adapter on the simulated venue (its user channel
    open): post-only BUYs at the best bid of both tokens; the venue's maker fills are booked
    each once (`<trade>:m:<order>`), adding up to the order's `size_matched` (GET /data/order);
    an order the venue takes off by itself (here a DELETE behind the core's back, as the
    dead-man switch or a GTD expiry would) is answered with an OrderAccepted "cancelled" within
    seconds, from the user channel's CANCELLATION event."""
    from common import topics
    from common.core import Timer
    from common.schema import CancelOrder
    from services.execution.core import ExecutionCore
    from services.execution.ledger import Ledger
    from services.execution.switches import TradingMode

    v = LiveVenue(
        f"{lsim.http}/clob",
        Secret(Account.create().key.hex()),
        user_ws_url=f"ws://127.0.0.1:{lsim.port}/ws/user",
        log=lambda *a, **k: None,
    )
    assert v.start()
    wait_for(lambda: v.ws_connected, 10, what="the user channel")
    c = ExecutionCore(
        Ledger(str(tmp_path / "l.db")), TradingMode(False, True, True), venue=v, clock=time.time_ns
    )
    out: list = []

    def step(msg) -> list:
        got = c.step(msg, time.time_ns())
        out.extend(got)
        return got

    cur = market(lsim, 45)
    for i, token in enumerate((cur["up_token"], cur["down_token"])):
        for k in range(10):  # the book moves: a bid that now crosses is refused, try the new one
            bid = float(lsim.state()["current"]["books"][token]["best_bid"])
            it = quote(cur, f"q{i}-{k}", token, bid, fee_rebate_rate=0.2)
            got = step(it)
            if not any(m.code == "post_only_would_cross" for t, m in got if t == topics.REJECT):
                break
        assert any(t == topics.ACK and m.status == "live" for t, m in got), got
    placed = {r.venue_order_id: coid for coid, r in c.resting.orders.items()}
    assert len(placed) == 2
    assert v.client is not None

    def consistent() -> str | None:
        step(Timer(time.time_ns()))
        for oid, coid in placed.items():
            rows = c.ledger.fills_of(coid)
            matched = float(v.client.get_order(oid)["size_matched"])  # type: ignore[union-attr]
            if rows and sum(r["size"] for r in rows) == pytest.approx(matched):
                return coid
        return None

    filled = wait_for(consistent, 40, 0.1, what="maker fills booked adding up to size_matched")
    rows = c.ledger.fills_of(filled)
    ids = [r["trade_id"] for r in rows]
    assert len(ids) == len(set(ids)) and all(":m:" in i for i in ids), ids
    assert all(r["liquidity"] == "maker" and r["fee"] == 0 for r in rows)
    fills = [m for t, m in out if t == topics.FILL]
    assert len(fills) == len({f.trade_id for f in fills})  # each fill went out once
    # the venue takes a resting order off by itself: strategy hears it at once. A bid far
    # under the book (nothing fills it) is placed, then deleted behind the core's back
    far = quote(cur, "q-far", cur["up_token"], 0.05)
    assert any(t == topics.ACK and m.status == "live" for t, m in step(far))
    step(Timer(time.time_ns()))
    oid = c.resting.orders["q-far"].venue_order_id
    assert v.cancel([oid])["canceled"] == [oid]
    t0 = time.monotonic()

    def told() -> bool:
        got = step(Timer(time.time_ns()))
        return any(
            t == topics.ACK and m.client_order_id == "q-far" and m.status == "cancelled"
            for t, m in got
        )

    wait_for(told, 10, 0.05, what="the venue's cancel told to strategy")
    assert time.monotonic() - t0 < 4.0  # the channel's event, not the 5 s REST reconcile
    assert c.ledger.order("q-far")["status"] == "cancelled"
    assert "q-far" not in c.resting.orders
    # a cancel naming an order nobody sent is answered, not dropped
    got = step(CancelOrder(ts_ns=time.time_ns(), client_order_id="never-sent"))
    assert [(m.client_order_id, m.code) for t, m in got if t == topics.REJECT] == [
        ("never-sent", "unknown_order")
    ]
    v.cancel_all()
    v.close()


def test_a_restarted_core_cancels_and_follows_the_quotes_a_crashed_run_left_resting(
    lsim: SimProc, tmp_path
) -> None:
    """Execution crashes with two quotes resting; while it is down the venue's flow fills one
    (`flow_trade`). A new core on the same ledger and key must not leave the other resting and
    unfollowed: the venue's dead-man switch is per API key (PROTOCOLS.md section 4), so the new
    run's own heartbeat would keep it alive for as long as it runs. Seen on the whole tree
    (tests/strategy/test_strategy_maker_tree.py): a quote placed just before a `kill -9` of
    execution was traded through, and its fill never reached the ledger. At start the new core
    cancels both at the venue, answers each "cancelled", and books the fill made while it was
    down as a maker fill (no fee), from the venue's trades."""
    import httpx

    from common import topics
    from common.core import Timer
    from services.execution.core import ExecutionCore
    from services.execution.ledger import Ledger
    from services.execution.switches import TradingMode

    key = Secret(Account.create().key.hex())
    db = str(tmp_path / "l.db")

    def core() -> ExecutionCore:
        v = LiveVenue(f"{lsim.http}/clob", key, log=lambda *a, **k: None)
        assert v.start()
        return ExecutionCore(
            Ledger(db), TradingMode(False, True, True), venue=v, clock=time.time_ns
        )

    first = core()
    cur = market(lsim, 30)
    coids = []
    for i, token in enumerate((cur["up_token"], cur["down_token"])):
        # far under the book: nothing but the test's flow trade fills it
        it = quote(cur, f"pe-r{i}", token, 0.03)
        got = first.step(it, it.ts_intent_ns)
        assert any(t == topics.ACK and m.status == "live" for t, m in got), got
        coids.append(it.client_order_id)
    oids = {c: first.resting.orders[c].venue_order_id for c in coids}
    first.venue.close()  # type: ignore[union-attr]  # the crash: no cancel, no more heartbeats
    traded, left = coids
    r = httpx.post(
        lsim.http + "/sim/fault", json={"name": "flow_trade", "order_id": oids[traded]}, timeout=5
    )
    assert r.status_code == 200, r.text
    assert status(lsim, oids[traded]) == "MATCHED" and status(lsim, oids[left]) == "LIVE"

    # and the crash came between the other's POST and its ack's commit: "sending" in the
    # ledger, though it rests at the venue (services/execution/core.py `_rest`)
    with first.ledger.tx() as c:
        c.execute("UPDATE orders SET status='sending' WHERE client_order_id=?", (left,))

    second = core()
    out = second.recover()
    assert not second.to_reconcile  # cancelled and followed as a quote, not as a taker order
    assert status(lsim, oids[left]) == "CANCELED"  # at once, not after a dead-man's 10 s
    told = {m.client_order_id for t, m in out if t == topics.ACK and m.status == "cancelled"}
    assert told == set(coids)
    row = second.ledger.order(left)
    assert row["status"] == "cancelled" and "previous run" in row["reason"]

    def booked() -> list | None:
        second.step(Timer(time.time_ns()), time.time_ns())
        return second.ledger.fills_of(traded) or None

    rows = wait_for(booked, 20, 0.2, what="the fill made while execution was down, booked")
    assert sum(r["size"] for r in rows) == pytest.approx(5.0)
    assert all(r["liquidity"] == "maker" and r["fee"] == 0 and r["price"] == 0.03 for r in rows)
    assert second.ledger.order(traded)["status"] == "filled"
    assert second.ledger.fills_of(left) == []
    second.venue.close()  # type: ignore[union-attr]
