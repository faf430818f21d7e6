"""Order amounts the venue accepts (common/money.py): worked examples, then every tick / price /
stake combination of the strategy config's range checked against the venue's rules."""

from __future__ import annotations

from decimal import ROUND_DOWN
from decimal import Decimal as D

from common.money import (
    ERR_MARKET_BUY_PRECISION,
    ERR_RESTING_BUY_PRECISION,
    amounts_error,
    marketable_amounts,
    units_decimals,
)

TICKS = (D("0.01"), D("0.001"))
# stakes: the $1 minimum up to $25 in odd cents (a 0.01 step over the whole range would be 2.4k
# stakes x 1.1k prices; these cover every residue of the cents mod the price denominators)
STAKES = [D(c) / 100 for c in (100, 101, 137, 199, 250, 333, 499, 500, 501, 777, 999, 1000, 1234,
                               1999, 2500)]


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
        0, 2, 3, 4, 6]


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
