"""The price to beat comes from the settlement source until Gamma publishes it (issue 14): the
settlement feed's value in force at the window start (its last tick at or before the start, within
a bound), labelled with its source; gaps of that feed around the start (Chainlink ticks ~1/s,
1-2 s late, sometimes seconds apart: PROTOCOLS.md 5 and 7) do not push the estimate to Binance;
a Binance-only estimate says so and strategy does not enter on it unless configured to."""

from __future__ import annotations

from common.config import StrategyConfig
from common.core import Timer
from common.schema import (
    BookSnapshot,
    BtcTrade,
    Decision,
    MarketInfo,
    PriceFeedTick,
    SignalScore,
)
from services.ingest.core import IngestCore
from services.signal.core import PTB_BINANCE, PTB_CHAINLINK, PTB_TWAP, SignalCore
from services.strategy.core import StrategyCore

NS = 1_000_000_000
START, END = 1_800_000_000 * NS, 1_800_000_300 * NS


def market(twap: bool = False) -> MarketInfo:
    return MarketInfo(
        slug="btc-updown-5m-1800000000",
        condition_id="0xc",
        up_token_id="U",
        down_token_id="D",
        window_start_ns=START,
        window_end_ns=END,
        ts_recv_ns=START - 60 * NS,
        fee_rate=0.07,
        twap_enabled=twap,
        twap_lookback_s=60 if twap else 0,
    )


def tick(source: str, value: float, t: int) -> PriceFeedTick:
    return PriceFeedTick(
        source=source, symbol="btc/usd", value=value, ts_exchange_ns=t, ts_recv_ns=t + 1_500_000_000
    )


def trade(price: float, t: int) -> BtcTrade:
    return BtcTrade(price=price, size=0.1, ts_exchange_ns=t, ts_recv_ns=t)


def test_signal_chainlink_gap_around_start_keeps_the_settlement_source() -> None:
    core = SignalCore()
    core.step(market(), 0)
    # Chainlink: last tick 4 s before the start, then a 7 s gap; Binance trades all along
    for k in range(-10, 6):
        core.step(trade(85_017.0 + k, START + k * NS), 0)
    core.step(tick("chainlink", 85_000.0, START - 4 * NS), 0)
    ptb = core.price_to_beat(core.current_market() or market())
    assert ptb == (85_000.0, PTB_CHAINLINK)  # not Binance's 85,017 (the basis)
    core.step(tick("chainlink", 85_003.0, START + 3 * NS), 0)
    assert core.price_to_beat(market()) == (85_000.0, PTB_CHAINLINK)  # confirmed, final
    # the TWAP feed is the settlement feed of a TWAP market: its value in force wins
    core2 = SignalCore()
    core2.step(market(twap=True), 0)
    core2.step(tick("twap60", 84_990.0, START - 2 * NS), 0)
    core2.step(tick("twap60", 84_995.0, START + 2 * NS), 0)
    assert core2.price_to_beat(market(twap=True)) == (84_990.0, PTB_TWAP)


def test_signal_without_settlement_feed_labels_binance() -> None:
    core = SignalCore()
    core.step(market(), 0)
    core.step(trade(85_017.0, START - NS), 0)
    (_, s), *_ = core.step(trade(85_020.0, START + 60 * NS), 0)
    assert isinstance(s, SignalScore)
    assert s.inputs["price_to_beat"] == 85_017.0 and s.inputs["ptb_source"] == PTB_BINANCE
    # a Chainlink tick older than the bound is not "in force" at the start
    core2 = SignalCore()
    core2.step(market(), 0)
    core2.step(trade(85_017.0, START - NS), 0)
    core2.step(tick("chainlink", 85_000.0, START - 40 * NS), 0)
    assert core2.price_to_beat(market()) == (85_017.0, PTB_BINANCE)


def test_ingest_price_to_beat_gap_around_start_stays_on_chainlink() -> None:
    core = IngestCore(price_feed_enabled=True)
    core.step(market(), START - 60 * NS)
    for k in range(-10, 6):
        core.on_binance([trade(85_017.0 + k, START + k * NS)], START + k * NS)
    core.on_price_feed([tick("chainlink", 85_000.0, START - 4 * NS)], START - 2 * NS)
    core.on_price_feed([tick("chainlink", 85_003.0, START + 3 * NS)], START + 5 * NS)
    out = core.step(Timer(START + 6 * NS), START + 6 * NS)
    (m,) = [x for _, x in out if isinstance(x, MarketInfo) and x.role == "current"]
    assert (m.price_to_beat, m.price_to_beat_source) == (85_000.0, "chainlink")


def _strategy_signal(require: bool, ptb_source: float) -> Decision:
    strategy = StrategyCore(StrategyConfig(require_settlement_price_to_beat=require))
    strategy.step(market(), 0)
    t = START + 100 * NS
    strategy.step(trade(85_100.0, t), 0)
    for asset, bid, ask in (("U", 0.43, 0.45), ("D", 0.53, 0.55)):
        strategy.step(
            BookSnapshot(
                asset_id=asset,
                best_bid=bid,
                best_ask=ask,
                bids=[(bid, 500.0)],
                asks=[(ask, 500.0)],
                ts_exchange_ns=t,
                ts_recv_ns=t,
            ),
            0,
        )
    s = SignalScore(
        slug=market().slug,
        p_up=0.75,
        side="Up",
        score=0.5,
        edge_up=0.2,
        edge_down=0.0,
        ts_ns=t,
        inputs={"ptb_source": ptb_source, "price_to_beat": 85_000.0},
    )
    (d,) = [x for _, x in strategy.step(s, 0) if isinstance(x, Decision)]
    return d


def test_strategy_does_not_enter_on_a_non_settlement_price_to_beat() -> None:
    d = _strategy_signal(True, PTB_BINANCE)
    assert (d.action, d.reason) == ("skip", "price_to_beat_not_settlement")
    assert _strategy_signal(True, PTB_CHAINLINK).action == "enter"
    assert _strategy_signal(False, PTB_BINANCE).action == "enter"  # configurable


def test_signal_prices_in_settlement_units_with_the_measured_basis() -> None:
    """Binance runs above Chainlink by a measured basis: the model's spot is Binance - basis,
    so a Binance price $20 above a Chainlink price to beat with a $20 basis is a coin flip."""
    from common.schema import PriceBasis

    core = SignalCore()
    core.step(market(), START - 60 * NS)
    core.step(tick("chainlink", 85_000.0, START - NS), START)
    core.step(tick("chainlink", 85_000.0, START + NS), START + 2 * NS)
    t = START + 150 * NS
    core.step(trade(85_020.0, t - NS), t - NS)
    out = core.step(trade(85_020.0, t), t)
    before = [m for _, m in out if isinstance(m, SignalScore)][-1]
    assert before.p_up > 0.55  # Binance alone says Up
    core.step(
        PriceBasis(
            ts_ns=t,
            basis_usd=20.0,
            basis_mean_usd=20.0,
            basis_sd_usd=1.0,
            lag_ms=1500,
            lag_mean_ms=1500,
            samples=60,
            bound_usd=50,
        ),
        t,
    )
    out = core.step(trade(85_020.0, t + NS), t + NS)
    after = [m for _, m in out if isinstance(m, SignalScore)][-1]
    assert abs(after.p_up - 0.5) < 0.02 and after.inputs["basis_usd"] == 20.0
