"""Worked numbers for the fair-value model, the fee rule, the edge, and the signal core."""

from __future__ import annotations

import math

import msgspec
import pytest

from common.config import StrategyConfig
from common.schema import (
    BookSnapshot,
    BtcTrade,
    ClockTick,
    LazyBookSnapshot,
    MarketInfo,
    PriceFeedTick,
    SignalScore,
)
from services.signal.core import (
    BASIS_UNKNOWN_SD_USD,
    PTB_BINANCE,
    PTB_MARKET,
    PTB_TWAP,
    SignalCore,
)
from services.signal.model import (
    BtcFeatures,
    edge,
    fair_up,
    settlement_basis_std_log,
    taker_fee,
    taker_fee_per_share,
)

NS = 1_000_000_000


def test_fee_worked_numbers() -> None:
    # PROTOCOLS.md: 1.75 cents a share at p = 0.50 with rate 0.07, exponent 1
    assert taker_fee_per_share(0.5, 0.07, 1) == pytest.approx(0.0175)
    assert taker_fee_per_share(0.8, 0.07, 1) == pytest.approx(0.07 * 0.16)
    assert taker_fee(10, 0.5, 0.07) == 0.175
    assert taker_fee(3, 0.33, 0.07) == round(3 * 0.07 * 0.33 * 0.67, 5) == 0.04643
    assert taker_fee_per_share(0.5, 0.0, 1) == 0.0


def test_spot_settlement_worked_example() -> None:
    # 50 $ above the price to beat at 85,000, sigma 8e-5 / sqrt(s), 120 s left, spot settlement:
    # d = ln(85000/84950) = 5.884e-4, std = 8e-5 * sqrt(120) = 8.764e-4, z = 0.6714, p = 0.749
    f = fair_up(85_000, 84_950, 8e-5, 120, lookback_s=0)
    assert f.z == pytest.approx(0.6714, abs=1e-3)
    assert f.p_up == pytest.approx(0.749, abs=1e-3)


def test_twap_horizon_correction_before_the_twap_window() -> None:
    # 60 s TWAP, 120 s left: the variance horizon is 120 - 60 + 60/3 = 80 s, not 120 s
    f = fair_up(85_000, 84_950, 8e-5, 120, lookback_s=60)
    assert f.std_log == pytest.approx(8e-5 * math.sqrt(80))
    assert f.z == pytest.approx(0.8224, abs=1e-3)
    assert f.p_up == pytest.approx(0.7945, abs=1e-3)
    assert f.p_up > fair_up(85_000, 84_950, 8e-5, 120, lookback_s=0).p_up


def test_twap_inside_the_window_uses_the_fixed_part() -> None:
    # 15 s left of a 60 s TWAP: 45 s are fixed at 84,900 (below the 84,950 to beat) and spot
    # is 85,000: expected = (84,900 * 45 + 85,000 * 15) / 60 = 84,925 -> Down favoured,
    # even though spot is above the price to beat.
    f = fair_up(85_000, 84_950, 8e-5, 15, lookback_s=60, known_avg=84_900)
    assert f.expected == pytest.approx(84_925)
    assert f.std_log == pytest.approx(8e-5 * math.sqrt(5) * 0.25)
    assert f.p_up < 0.01
    assert fair_up(85_000, 84_950, 8e-5, 120, lookback_s=0).p_up > 0.5


def test_ties_go_up_and_momentum_shifts() -> None:
    assert fair_up(85_000, 85_000, 8e-5, 0, lookback_s=0).p_up > 0.99  # at the close, tie = Up
    base = fair_up(85_000, 85_000, 8e-5, 100, lookback_s=60).p_up
    assert base == pytest.approx(0.5)
    up = fair_up(85_000, 85_000, 8e-5, 100, lookback_s=60, momentum=2.0, momentum_weight=0.1)
    assert up.p_up == pytest.approx(0.5 + (0.5 * math.erf(0.2 / math.sqrt(2))), abs=1e-9)
    assert fair_up(
        85_000, 85_000, 8e-5, 100, 60, momentum=-50, momentum_weight=0.1
    ).z_momentum == pytest.approx(-0.3)  # clipped at 3 sigma
    with pytest.raises(ValueError, match="price_to_beat"):
        fair_up(85_000, 0.0, 8e-5, 100)


def test_edge_after_fee() -> None:
    assert edge(0.62, 0.50, 0.07, 1) == pytest.approx(0.62 - 0.50 - 0.0175)
    assert edge(0.62, None, 0.07, 1) == -1.0


def test_volatility_floor_and_ewma() -> None:
    f = BtcFeatures(halflife_s=10, vol_floor=3e-5)
    assert f.sigma == pytest.approx(0.45 / math.sqrt(365 * 24 * 3600))  # no history: the prior
    t, p = 0, 85_000.0
    for i in range(60):  # alternating 0.1 % moves each second: a big realised vol
        p *= 1.001 if i % 2 else 0.999
        t += NS
        f.on_trade(t, p)
    assert f.sigma == pytest.approx(1e-3, rel=0.05)
    assert f.log_return(5) != 0.0
    g = BtcFeatures(halflife_s=10, vol_floor=3e-5)
    for i in range(120):
        g.on_trade(i * NS, 85_000.0)  # flat price: realised vol 0, floor holds
    assert g.sigma == 3e-5


def _market(start: int, end: int, ptb: float | None = None) -> MarketInfo:
    return MarketInfo(
        slug="btc-updown-5m-1",
        condition_id="0xc",
        up_token_id="U",
        down_token_id="D",
        window_start_ns=start,
        window_end_ns=end,
        ts_recv_ns=start,
        fee_rate=0.07,
        twap_enabled=True,
        twap_lookback_s=60,
        price_to_beat=ptb,
    )


def _book(asset: str, bid: float, ask: float, ts: int) -> BookSnapshot:
    return BookSnapshot(
        asset_id=asset,
        best_bid=bid,
        best_ask=ask,
        bids=[(bid, 100.0)],
        asks=[(ask, 100.0)],
        ts_exchange_ns=ts,
        ts_recv_ns=ts,
    )


def test_signal_core_scores_with_inputs() -> None:
    start, end = 1000 * NS, 1300 * NS
    core = SignalCore(StrategyConfig(momentum_weight=0.0))
    core.step(_market(start, end, ptb=84_950.0), 0)
    assert core.step(ClockTick(ts_ns=start + NS), 0) == []  # no price yet
    core.step(BtcTrade(price=85_000, size=1, ts_exchange_ns=start, ts_recv_ns=start + NS), 0)
    core.step(_book("U", 0.60, 0.62, start + NS), 0)
    core.step(_book("D", 0.38, 0.40, start + NS), 0)
    out = core.step(ClockTick(ts_ns=start + 180 * NS), 0)
    assert len(out) == 1 and out[0][0] == "sig.score"
    s = out[0][1]
    assert isinstance(s, SignalScore)
    # no settlement feed and no measured basis: Binance as it is, the basis unknown (+-10 USD)
    # in the variance, and the inputs say the settlement feed is down
    extra = settlement_basis_std_log(85_000, BASIS_UNKNOWN_SD_USD, 120, 60, 0)
    expected = fair_up(85_000, 84_950, core.features.sigma, 120, 60, extra_std_log=extra).p_up
    assert s.p_up == pytest.approx(expected) == pytest.approx(s.inputs["p_model"])
    assert s.inputs["settlement_feed_down"] == 1.0 and s.inputs["basis_sd_usd"] == 10.0
    assert s.side == "Up" and s.score == pytest.approx(2 * expected - 1)
    assert s.edge_up == pytest.approx(expected - 0.62 - 0.07 * 0.62 * 0.38)
    assert s.edge_down == pytest.approx(1 - expected - 0.40 - 0.07 * 0.4 * 0.6)
    for k in ("price", "price_to_beat", "sigma", "tau_s", "up_ask", "ret_30s", "z"):
        assert k in s.inputs
    assert s.inputs["ptb_source"] == PTB_MARKET and s.inputs["tau_s"] == pytest.approx(120)


def test_signal_core_estimates_price_to_beat_without_gamma() -> None:
    start, end = 1000 * NS, 1300 * NS
    core = SignalCore()
    core.step(BtcTrade(price=84_000, size=1, ts_exchange_ns=0, ts_recv_ns=start - 2 * NS), 0)
    core.step(_market(start, end), 0)
    out = core.step(BtcTrade(price=84_100, size=1, ts_exchange_ns=0, ts_recv_ns=start + 5 * NS), 0)
    s = out[0][1]
    assert s.inputs["price_to_beat"] == 84_000 and s.inputs["ptb_source"] == PTB_BINANCE
    assert s.edge_up == -1.0  # no book yet: no edge


def test_price_to_beat_source_ranking() -> None:
    start, end = 1000 * NS, 1300 * NS
    core = SignalCore()
    core.step(
        PriceFeedTick(
            source="twap60",
            symbol="btc/usd",
            value=84_010.0,
            ts_exchange_ns=start,
            ts_recv_ns=start + NS,
        ),
        0,
    )
    weak = msgspec.structs.replace(
        _market(start, end, ptb=84_500.0), price_to_beat_source="binance"
    )
    core.step(weak, 0)
    m = core.current_market() or weak
    assert core.price_to_beat(m) == (84_010.0, PTB_TWAP)  # our TWAP beats a Binance guess
    gamma = msgspec.structs.replace(weak, price_to_beat_source="gamma", price_to_beat=84_020.0)
    assert core.price_to_beat(gamma) == (84_020.0, PTB_MARKET)


def test_books_read_lazily_score_as_whole_books() -> None:
    """Issue 16: signal's runner reads books as LazyBookSnapshot (levels not decoded, see
    test_foundation_bus); the core scores one exactly as the BookSnapshot it came from."""
    start, end = 1000 * NS, 1300 * NS
    outs = []
    for tops in (False, True):
        core = SignalCore(StrategyConfig(momentum_weight=0.0))
        core.step(_market(start, end, ptb=84_950.0), 0)
        core.step(BtcTrade(price=85_000, size=1, ts_exchange_ns=start, ts_recv_ns=start + NS), 0)
        out = []
        for asset, bid, ask, t in (("U", 0.60, 0.62, 2), ("D", 0.38, 0.40, 3), ("U", 0.6, 0.63, 4)):
            b = _book(asset, bid, ask, start + t * NS)
            if tops:
                b = msgspec.msgpack.decode(msgspec.msgpack.encode(b), type=LazyBookSnapshot)
                assert isinstance(b, LazyBookSnapshot)
            out += core.step(b, 0)
        outs.append(out)
    assert len(outs[0]) == 3 and outs[0] == outs[1]
