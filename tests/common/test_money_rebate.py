"""Worked examples of the maker rebate (common.money.maker_rebate / fill_fee_and_rebate); every
expected figure is computed by hand here.

Venue rule: makers pay no fee on these markets (Gamma `feeSchedule.takerOnly: true`) and earn
`feeSchedule.rebateRate` (0.2) of the fee equivalent, paid daily from a pool split pro rata
(docs.polymarket.com "Maker Rebates Program"; PROTOCOLS.md section 3). We book it per fill.
"""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path

import pytest

from common import money
from common.money import FeeSchedule

CRYPTO = FeeSchedule.of("0.07", "1", True, "0.2")  # the BTC 5-minute market's feeSchedule
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_rebate_at_even_odds() -> None:
    # fee equivalent of 100 shares at 0.50: 100 x 0.07 x 0.25 = 1.75; x 0.2 = 0.35
    assert money.taker_fee(100, "0.5", CRYPTO) == D("1.75000")
    assert money.maker_rebate(100, "0.5", CRYPTO) == D("0.35000")


def test_rebate_off_centre_rounds_down_to_5_decimals() -> None:
    # 7 shares at 0.63: 7 x 0.07 x 0.63 x 0.37 = 0.114219; x 0.2 = 0.0228438 -> 0.02284
    assert money.maker_rebate(7, "0.63", CRYPTO) == D("0.02284")
    # 5.55 shares at 0.013: 5.55 x 0.07 x 0.013 x 0.987 = 0.004984843...; x 0.2 = 0.00099696.. -> 0.00099
    assert money.maker_rebate("5.55", "0.013", CRYPTO) == D("0.00099")


def test_maker_pays_no_fee_taker_earns_no_rebate() -> None:
    assert money.fill_fee_and_rebate("maker", 20, "0.4", CRYPTO) == (D("0"), D("0.06720"))
    # taker: 20 x 0.07 x 0.24 = 0.336
    assert money.fill_fee_and_rebate("taker", 20, "0.4", CRYPTO) == (D("0.33600"), D("0"))
    with pytest.raises(ValueError, match="liquidity"):
        money.fill_fee_and_rebate("both", 20, "0.4", CRYPTO)  # type: ignore[arg-type]


def test_round_trip_maker_vs_taker_at_even_odds() -> None:
    """10 shares bought and sold at 0.50: as a taker twice that is 2 x 0.175 = 0.35 of fees; as a
    maker twice it is 2 x 0.035 = 0.07 earned: 0.42 apart on a $5 position (8.4 %)."""
    taker = sum(money.fill_fee_and_rebate("taker", 10, "0.5", CRYPTO)[0] for _ in range(2))
    maker = sum(money.fill_fee_and_rebate("maker", 10, "0.5", CRYPTO)[1] for _ in range(2))
    assert (taker, maker, taker + maker) == (D("0.35"), D("0.07"), D("0.42"))


def test_no_rebate_without_rate_shares_or_fee() -> None:
    assert money.maker_rebate(100, "0.5", FeeSchedule.of("0.07", "1")) == 0
    assert money.maker_rebate(0, "0.5", CRYPTO) == 0
    assert money.maker_rebate(100, "0.5", FeeSchedule.of("0", "1", True, "0.2")) == 0
    with pytest.raises(ValueError, match="rebate rate"):
        FeeSchedule.of("0.07", "1", True, "1.5")


def test_fee_schedule_of_the_recorded_market() -> None:
    """The real Gamma market's feeSchedule carries the rebate rate we read."""
    doc = json.loads(
        (FIXTURES / "live_2026" / "gamma_market_btc_updown_5m_1790617500.json").read_text()
    )
    m = doc[0] if isinstance(doc, list) else doc
    fs = m["feeSchedule"]
    fee = FeeSchedule.of(
        str(fs["rate"]), str(fs["exponent"]), fs["takerOnly"], str(fs["rebateRate"])
    )
    assert (fee.rate, fee.rebate_rate, fee.taker_only) == (D("0.07"), D("0.2"), True)
    assert money.maker_rebate(100, "0.5", fee) == D("0.35")
