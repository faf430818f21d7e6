"""Resting user orders on the simulated market (`SimMarket.rest`), worked by hand: an order joins
the back of its level, the simulated flow's takers consume the queue ahead of it first, then it,
then the quoters behind it (price-time priority); the quoters moving their best price through it
take it whole at its price; the queue ahead only shrinks. The venue never manufactures a fill:
nothing fills an order but the simulated flow trading at or through its price."""

from __future__ import annotations

from services.simvenue.market import NS, MakerFill, SimMarket

T0 = 1_800_000_000 * NS  # a window start (multiple of 60 s)


def market() -> tuple[SimMarket, object]:
    m = SimMarket(7, window_seconds=60, start_ns=T0 + NS)
    w = m.current_window()
    assert w is not None
    # a known book (Up terms, milli -> centi-shares): bids 0.50 x 100, 0.49 x 300; asks 0.52 x 40,
    # 0.53 x 200
    w.up_bids = {500: 10_000, 490: 30_000}
    w.up_asks = {520: 4_000, 530: 20_000}
    m.maker_fills.clear()
    return m, w


def test_joins_the_back_of_its_level_and_fills_after_the_queue_ahead() -> None:
    m, w = market()
    o = m.rest("o1", w.up_token, "SELL", 520, 1_000)  # ask 10 Up at 0.52, 40 ahead
    assert o.ahead == 4_000
    # a flow BUY of 30 Up: all from the 40 ahead of us
    m.take(w.up_token, "BUY", 999, 1000, 30 * 1_000_000, False, "FAK", T0 + 2 * NS, flow=True)
    assert m.maker_fills == [] and o.ahead == 1_000 and w.up_asks[520] == 1_000
    # a flow BUY of 15: the last 10 ahead, then 5 of ours
    m.take(w.up_token, "BUY", 999, 1000, 15 * 1_000_000, False, "FAK", T0 + 3 * NS, flow=True)
    assert m.maker_fills == [MakerFill("o1", 500, 520, w.up_token, "BUY", 520, T0 + 3 * NS)]
    assert o.remaining == 500 and o.ahead == 0 and 520 not in w.up_asks
    # a flow BUY of 20: our last 5, then 15 at 0.53
    m.take(w.up_token, "BUY", 999, 1000, 20 * 1_000_000, False, "FAK", T0 + 4 * NS, flow=True)
    assert [f.centi for f in m.maker_fills] == [500, 500] and "o1" not in m.resting
    assert w.up_asks[530] == 20_000 - 1_500


def test_a_down_bid_fills_against_up_buyers_at_its_mirror_price() -> None:
    m, w = market()
    # BUY Down at 0.48 == an Up ask at 0.52, behind the 40 quoted there
    o = m.rest("d1", w.down_token, "BUY", 480, 2_000)
    assert o.ahead == 4_000
    m.take(w.up_token, "BUY", 999, 1000, 50 * 1_000_000, False, "FAK", T0 + 2 * NS, flow=True)
    assert m.maker_fills == [MakerFill("d1", 1_000, 480, w.up_token, "BUY", 520, T0 + 2 * NS)]


def test_a_users_own_taker_order_never_fills_resting_orders() -> None:
    m, w = market()
    m.rest("o1", w.up_token, "SELL", 520, 1_000)
    m.take(w.up_token, "BUY", 999, 1000, 45 * 1_000_000, False, "FAK", T0 + 2 * NS)
    assert m.maker_fills == []


def test_quote_inside_the_spread_has_nothing_ahead() -> None:
    m, w = market()
    o = m.rest("o1", w.up_token, "BUY", 510, 700)  # a new best bid at 0.51
    assert o.ahead == 0
    # a flow SELL of 5 Up hits our 0.51 bid first (best price first)
    m.take(w.up_token, "SELL", 1, 1000, 5 * 1_000_000, False, "FAK", T0 + 2 * NS, flow=True)
    assert m.maker_fills == [MakerFill("o1", 500, 510, w.up_token, "SELL", 510, T0 + 2 * NS)]
    assert w.up_bids[500] == 10_000  # the quoters' bid behind us untouched


def test_queue_ahead_shrinks_with_the_level_never_grows() -> None:
    m, w = market()
    o = m.rest("o1", w.up_token, "BUY", 490, 1_000)  # 300 ahead at 0.49
    w.up_bids[490] = 12_000  # quoters cancel 180 at the level: assumed from behind first
    m._refresh_resting(w, T0 + 2 * NS)
    assert o.ahead == 12_000
    w.up_bids[490] = 50_000  # new size joins behind us
    m._refresh_resting(w, T0 + 3 * NS)
    assert o.ahead == 12_000
    del w.up_bids[490]  # the level is gone: whoever was ahead left
    m._refresh_resting(w, T0 + 4 * NS)
    assert o.ahead == 0 and m.maker_fills == []


def test_quoters_moving_through_the_price_take_the_order_whole() -> None:
    m, w = market()
    o = m.rest("o1", w.up_token, "SELL", 530, 2_500)  # ask 25 at 0.53
    w.up_bids = {540: 9_000, 530: 9_000}  # the quoters now bid 0.54: through our ask
    w.up_asks = {550: 9_000}
    m._refresh_resting(w, T0 + 2 * NS)
    assert m.maker_fills == [MakerFill("o1", 2_500, 530, w.up_token, "BUY", 530, T0 + 2 * NS)]
    assert "o1" not in m.resting and o.remaining == 0


def test_post_only_cross_check() -> None:
    m, w = market()
    assert m.crosses(w.up_token, "BUY", 520) and not m.crosses(w.up_token, "BUY", 510)
    assert m.crosses(w.up_token, "SELL", 500) and not m.crosses(w.up_token, "SELL", 510)
    # Down: best bid 1 - 0.52 = 0.48, best ask 1 - 0.50 = 0.50
    assert m.crosses(w.down_token, "BUY", 500) and not m.crosses(w.down_token, "BUY", 490)


def test_flow_fills_resting_orders_over_time_without_manufacturing_edge() -> None:
    """Run the seeded market for two minutes with a quote at each side's best: whatever fills
    comes from the flow's own trades (every fill is at the order's own price), never more than
    the order's size."""
    m = SimMarket(11, window_seconds=300, start_ns=T0 + NS)
    w = m.current_window()
    assert w is not None
    bb, ba = w.best(w.up_token)
    assert bb is not None and ba is not None
    m.rest("b", w.up_token, "BUY", bb, 2_000)
    m.rest("a", w.up_token, "SELL", ba, 2_000)
    m.advance(T0 + 120 * NS)
    by = {"a": 0, "b": 0}
    for f in m.maker_fills:
        by[f.order_id] += f.centi
        assert f.price == (bb if f.order_id == "b" else ba)
    assert all(0 <= c <= 2_000 for c in by.values())
    assert sum(by.values()) > 0, "two minutes of flow at the touch filled nothing"


def test_resting_orders_are_shown_in_the_book_and_published() -> None:
    """As on the venue, a resting order is part of the displayed book: its level grows by its
    size (in both tokens' terms), a price_change says so, and it leaves when cancelled/filled."""
    m, w = market()
    m.advance(T0 + NS)  # drain what is queued
    m.rest("d1", w.down_token, "BUY", 470, 700)  # a Down bid at 0.47 == an Up ask at 0.53
    up_bids, up_asks = w.levels(w.up_token)
    down_bids, _ = w.levels(w.down_token)
    assert up_asks[530] == 20_700 and down_bids[470] == 20_700 and up_bids == w.up_bids
    frames = [f for _, ch, f in m.advance(T0 + NS) if '"price_change"' in f]
    assert frames and '"price":"0.53","side":"SELL","size":"207"' in frames[-1]
    m.rest("u1", w.up_token, "BUY", 510, 500)  # a new best Up bid at 0.51
    assert w.best(w.up_token) == (510, 520) and w.best(w.down_token) == (480, 490)
    m.unrest("d1")
    m.unrest("u1")
    assert w.levels(w.up_token) == (w.up_bids, w.up_asks) and w.best(w.up_token) == (500, 520)
    frames = [f for _, ch, f in m.advance(T0 + NS) if '"price_change"' in f]
    assert any('"price":"0.53","side":"SELL","size":"200"' in f for f in frames)
    assert any('"price":"0.51","side":"BUY","size":"0"' in f for f in frames)
