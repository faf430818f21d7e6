"""Worked examples of a resting (GTC/GTD) order's signed amounts (common.money.resting_amounts):
price on the tick grid, 2-decimal shares, collateral exact to 4 decimals (the venue's "invalid
amounts, the buy orders maker amount supports a max accuracy of 4 decimals, taker amount a max of
2 decimals": py-clob-client #305, #253), at least orderMinSize (5) shares."""

from __future__ import annotations

from decimal import Decimal as D

from common import money


def test_tick_001_buy() -> None:
    # 12.345 shares at 0.47: 12.34 shares, 12.34 x 0.47 = 5.7998 pUSD
    a = money.resting_amounts("BUY", "0.47", "12.345", "0.01")
    assert (a.maker_units, a.taker_units, a.price, a.skip) == (5_799_800, 12_340_000, D("0.47"), "")
    assert money.amounts_error("BUY", a.maker_units, a.taker_units, marketable=False) == ""


def test_tick_0001_lowers_shares_until_the_collateral_is_exact() -> None:
    # 5.55 x 0.513 = 2.84715 (5 decimals): 5.54 x 0.513 = 2.84202 no, ... 5.50 x 0.513 = 2.8215
    a = money.resting_amounts("BUY", "0.513", "5.55", "0.001")
    assert (a.shares, a.collateral, a.price) == (D("5.50"), D("2.8215"), D("0.513"))
    assert money.amounts_error("BUY", a.maker_units, a.taker_units, marketable=False) == ""
    # a SELL gives the shares and asks the collateral
    s = money.resting_amounts("SELL", "0.513", "5.55", "0.001")
    assert (s.maker_units, s.taker_units) == (5_500_000, 2_821_500)
    assert money.amounts_error("SELL", s.maker_units, s.taker_units, marketable=False) == ""


def test_refusals_are_named() -> None:
    assert money.resting_amounts("BUY", "0.505", 10, "0.01").skip == "invalid_price"
    assert money.resting_amounts("BUY", "0.99", 10, "0.01").skip == ""
    assert money.resting_amounts("BUY", "1", 10, "0.01").skip == "invalid_price"
    assert money.resting_amounts("BUY", "0.5", "4.99", "0.01").skip == "below_min_size"
    # 5.09 at 0.513 lowers to 5.00 (5.00 x 0.513 = 2.565): still the minimum
    assert money.resting_amounts("BUY", "0.513", "5.09", "0.001").shares == D("5.00")
    # 5.01 x 0.511 = 2.56011 (5 decimals); 5.00 x 0.511 = 2.555 is exact
    assert money.resting_amounts("BUY", "0.511", "5.01", "0.001").shares == D("5.00")
