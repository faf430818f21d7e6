"""Signal with several markets (issue 17): each market is scored from its own asset's Binance
trades, settlement feed and basis, with its own window and TWAP lookback and its own config
(the base config with the market's overrides); a hot reload adds and removes markets."""

from __future__ import annotations

from typing import Any

from common.config import validate_strategy_config
from common.schema import (
    BookSnapshot,
    BtcTrade,
    ClockTick,
    MarketInfo,
    PriceBasis,
    PriceFeedTick,
    SignalScore,
)
from services.signal.core import PTB_CHAINLINK, SignalCore, feed_asset

NS = 1_000_000_000
START = 1_800_000_000 * NS
WINDOW_S = {"5m": 300, "15m": 900}
PRICE = {"btc": 85_000.0, "eth": 3_000.0, "sol": 150.0}


def config(markets: list[dict[str, Any]], **kw: Any) -> Any:
    return validate_strategy_config({**kw, "markets": markets})


def market(key: str, lookback: int = 0) -> MarketInfo:
    asset, window = key.split("-")
    return MarketInfo(
        slug=f"{asset}-updown-{window}-{START // NS}",
        condition_id="0x" + key,
        up_token_id=key + "-U",
        down_token_id=key + "-D",
        window_start_ns=START,
        window_end_ns=START + WINDOW_S[window] * NS,
        ts_recv_ns=START - 60 * NS,
        fee_rate=0.07,
        twap_enabled=lookback > 0,
        twap_lookback_s=lookback,
        asset=asset,
        window=window,
    )


def trade(asset: str, price: float, t: int) -> BtcTrade:
    return BtcTrade(
        price=price,
        size=0.1,
        ts_exchange_ns=t,
        ts_recv_ns=t,
        symbol=asset.upper() + "USDT",
        asset=asset,
    )


def chainlink(asset: str, value: float, t: int) -> PriceFeedTick:
    return PriceFeedTick(
        source="chainlink",
        symbol=f"{asset}/usd",
        value=value,
        ts_exchange_ns=t,
        ts_recv_ns=t + NS,
    )


def scores(out: list[tuple[str, Any]]) -> dict[str, SignalScore]:
    got = [m for _, m in out if isinstance(m, SignalScore)]
    by = {s.market: s for s in got}
    assert len(by) == len(got), "one score per market"
    return by


def two_markets(**kw: Any) -> SignalCore:
    core = SignalCore(
        config([{"asset": "btc", "window": "5m"}, {"asset": "eth", "window": "15m", **kw}])
    )
    core.step(market("btc-5m"), 0)
    core.step(market("eth-15m", lookback=60), 0)
    for asset in ("btc", "eth"):  # a tick a second over ETH's lookback, then one after start
        for k in range(-70, 1):
            core.step(chainlink(asset, PRICE[asset] - 10, START + k * NS), 0)
        core.step(chainlink(asset, PRICE[asset] - 5, START + 2 * NS), 0)
    return core


def test_feed_symbols_name_their_asset() -> None:
    assert [feed_asset(s) for s in ("btc/usd", "ETH/USD", "solusdt", "xrpusd")] == [
        "btc",
        "eth",
        "sol",
        "xrp",
    ]


def test_each_market_is_priced_from_its_own_asset_and_window() -> None:
    core = two_markets()
    t = START + 100 * NS
    btc = scores(core.step(trade("btc", PRICE["btc"], t), 0))
    assert set(btc) == {"btc-5m"}  # a BTC trade rescores BTC's markets only
    eth = scores(core.step(trade("eth", PRICE["eth"], t), 0))
    assert set(eth) == {"eth-15m"}
    b, e = btc["btc-5m"], eth["eth-15m"]
    assert b.slug == market("btc-5m").slug and e.slug == market("eth-15m").slug
    assert b.inputs["price"] == PRICE["btc"] and e.inputs["price"] == PRICE["eth"]
    assert b.inputs["price_to_beat"] == PRICE["btc"] - 10
    assert e.inputs["price_to_beat"] == PRICE["eth"] - 10
    assert b.inputs["ptb_source"] == e.inputs["ptb_source"] == PTB_CHAINLINK
    assert b.inputs["tau_s"] == 200 and e.inputs["tau_s"] == 800  # own windows
    assert b.inputs["twap_lookback_s"] == 0 and e.inputs["twap_lookback_s"] == 60
    # a clock tick scores every market
    assert set(scores(core.step(ClockTick(ts_ns=t + NS), 0))) == {"btc-5m", "eth-15m"}
    # a book of ETH's window rescores ETH only
    book = BookSnapshot(
        asset_id="eth-15m-U",
        best_bid=0.48,
        best_ask=0.5,
        bids=[(0.48, 10.0)],
        asks=[(0.5, 10.0)],
        ts_exchange_ns=t + NS,
        ts_recv_ns=t + NS,
    )
    out = scores(core.step(book, 0))
    assert set(out) == {"eth-15m"} and out["eth-15m"].inputs["up_ask"] == 0.5


def test_the_basis_is_per_asset() -> None:
    core = two_markets()
    basis = PriceBasis(
        ts_ns=START,
        basis_usd=2.0,
        basis_mean_usd=2.0,
        basis_sd_usd=0.5,
        lag_ms=1500.0,
        lag_mean_ms=1500.0,
        samples=50,
        bound_usd=5.0,
        asset="eth",
    )
    core.step(basis, 0)
    t = START + 100 * NS
    e = scores(core.step(trade("eth", PRICE["eth"], t), 0))["eth-15m"]
    b = scores(core.step(trade("btc", PRICE["btc"], t), 0))["btc-5m"]
    assert e.inputs["basis_usd"] == 2.0 and e.inputs["settlement_spot"] == PRICE["eth"] - 2.0
    assert b.inputs["basis_usd"] == 0.0  # none measured for BTC


def test_a_market_override_is_its_own_config() -> None:
    core = two_markets(vol_scale=3.0)
    t = START + 100 * NS
    e = scores(core.step(trade("eth", PRICE["eth"], t), 0))["eth-15m"]
    b = scores(core.step(trade("btc", PRICE["btc"], t), 0))["btc-5m"]
    assert e.inputs["vol_scale"] == 3.0 and b.inputs["vol_scale"] == core.config.vol_scale


def test_hot_reload_adds_and_removes_markets() -> None:
    core = two_markets()
    t = START + 100 * NS
    core.step(trade("btc", PRICE["btc"], t), 0)
    core.step(market("sol-5m"), 0)
    assert scores(core.step(trade("sol", PRICE["sol"], t), 0)) == {}  # not configured
    core.set_config(config([{"asset": "btc", "window": "5m"}, {"asset": "sol", "window": "5m"}]))
    assert core.spot_assets() == ("btc", "sol")
    assert set(scores(core.step(trade("sol", PRICE["sol"], t + NS), 0))) == {"sol-5m"}
    assert scores(core.step(trade("eth", PRICE["eth"], t + NS), 0)) == {}
    assert set(scores(core.step(ClockTick(ts_ns=t + 2 * NS), 0))) == {"btc-5m", "sol-5m"}
    # BTC's history was kept through the reload
    assert core.feeds("btc").features.last_price == PRICE["btc"]
