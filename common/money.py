"""The one money module: the amounts of a signed order exactly as the venue accepts them.

A signed V2 order carries integer `makerAmount` / `takerAmount` in base units (pUSD and outcome
tokens both have 6 decimals). What the venue gives and what it takes depends on the side:
a BUY gives collateral and takes shares, a SELL gives shares and takes collateral.

The venue refuses amounts with more decimals than it supports, with different rules for
marketable (FOK/FAK) and resting (GTC/GTD) orders:

- marketable BUY: maker (pUSD) <= 2 decimals, taker (shares) <= 4 decimals, else 400 "invalid
  amounts, the market buy orders maker amount supports a max accuracy of 2 decimals, taker amount
  a max of 4 decimals" (py-clob-client-v2 #99, rs-clob-client #114, rs-clob-client-v2 #59);
- marketable SELL: shares <= 2 decimals (the SDKs' `size` rounding); the collateral taken is kept
  to <= 4 decimals here too. NOT confirmed by a public report: the symmetric rule is the stricter
  reading, and an order that meets it also meets the looser one;
- resting BUY: maker (pUSD) <= 4 decimals, taker (shares) <= 2 decimals, else "invalid amounts,
  the buy orders maker amount supports a max accuracy of 4 decimals, taker amount a max of 2
  decimals" (py-clob-client #305, #253); a resting SELL the mirror image.

Minimums (PROTOCOLS.md section 4 and 7): a marketable BUY >= $1 of collateral; a resting order
>= the market's `orderMinSize` (5) shares. Both SDKs' market-order builders sign 5-decimal share
amounts on 0.001 ticks (py-clob-client-v2 #99, `ROUNDING_CONFIG["0.001"].amount == 5`), which the
venue refuses; `marketable_amounts` never does.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Literal

Side = Literal["BUY", "SELL"]

UNITS_PER_TOKEN = 1_000_000  # pUSD and conditional tokens: 6 decimals on chain
MIN_MARKETABLE_BUY_USD = Decimal("1")  # the venue's minimum for a FOK/FAK BUY, in pUSD
MARKET_BUY_COLLATERAL_DECIMALS = 2
MARKET_BUY_SHARE_DECIMALS = 4
MARKET_SELL_SHARE_DECIMALS = 2
MARKET_SELL_COLLATERAL_DECIMALS = 4
RESTING_SHARE_DECIMALS = 2
RESTING_COLLATERAL_DECIMALS = 4

# the venue's own error texts (see the module docstring for where each was seen)
ERR_MARKET_BUY_PRECISION = (
    "invalid amounts, the market buy orders maker amount supports a max accuracy of 2 decimals, "
    "taker amount a max of 4 decimals"
)
ERR_MARKET_SELL_PRECISION = (
    "invalid amounts, the market sell orders maker amount supports a max accuracy of 2 decimals, "
    "taker amount a max of 4 decimals"
)
ERR_RESTING_BUY_PRECISION = (
    "invalid amounts, the buy orders maker amount supports a max accuracy of 4 decimals, "
    "taker amount a max of 2 decimals"
)
ERR_RESTING_SELL_PRECISION = (
    "invalid amounts, the sell orders maker amount supports a max accuracy of 2 decimals, "
    "taker amount a max of 4 decimals"
)


def _floor(x: Decimal, decimals: int) -> Decimal:
    return x.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_DOWN)


def to_units(x: Decimal) -> int:
    """Decimal tokens -> integer base units (6 decimals); raises ValueError if not exact."""
    units = x * UNITS_PER_TOKEN
    if units != units.to_integral_value():
        raise ValueError(f"{x} has more than 6 decimals")
    return int(units)


def units_decimals(units: int) -> int:
    """How many decimals (0-6) the token amount `units / 1e6` has."""
    if units % UNITS_PER_TOKEN == 0:
        return 0
    n, u = 6, units
    while u % 10 == 0:
        u //= 10
        n -= 1
    return n


@dataclass(frozen=True)
class OrderAmounts:
    """A signable order's amounts. `maker_units`/`taker_units` go into the signed struct as they
    are; `shares` and `collateral` are the same in tokens; `price` is collateral / shares (what the
    venue matches against: >= the ask for a BUY, <= the bid for a SELL). `skip` is empty when the
    order can be sent, else a named reason (`below_min_buy_notional`, `amount_rounds_to_zero`)."""

    side: Side
    maker_units: int
    taker_units: int
    shares: Decimal
    collateral: Decimal
    skip: str = ""

    @property
    def price(self) -> Decimal:
        return self.collateral / self.shares if self.shares else Decimal(0)


def marketable_amounts(side: Side, limit: Decimal, shares: Decimal) -> OrderAmounts:
    """The amounts of a FOK/FAK order for `shares` at limit price `limit` (on the tick grid).

    BUY: sized in collateral. The collateral is shares x limit cut to whole cents (the stake the
    strategy sized), and the shares taken are collateral / limit cut to 4 decimals, so the price
    the venue derives (collateral / shares) is at or just above the limit, never a full tick
    above it while the collateral is >= $1 (the excess is < limit^2 x 1e-4 / collateral < 1e-4).
    On 0.001 ticks this is how an amount that cannot meet the rule exactly is lowered to the
    nearest one that can. Below $1 after the cut the order is skipped (`below_min_buy_notional`).
    SELL: sized in shares cut to 2 decimals; the collateral asked is shares x limit cut to 4
    decimals (a hair below the limit, so still marketable at it).
    """
    if side == "BUY":
        collateral = _floor(shares * limit, MARKET_BUY_COLLATERAL_DECIMALS)
        if collateral < MIN_MARKETABLE_BUY_USD:
            return OrderAmounts(side, 0, 0, Decimal(0), collateral, "below_min_buy_notional")
        taken = _floor(collateral / limit, MARKET_BUY_SHARE_DECIMALS)
        if taken <= 0:
            return OrderAmounts(side, 0, 0, taken, collateral, "amount_rounds_to_zero")
        return OrderAmounts(side, to_units(collateral), to_units(taken), taken, collateral)
    given = _floor(shares, MARKET_SELL_SHARE_DECIMALS)
    asked = _floor(given * limit, MARKET_SELL_COLLATERAL_DECIMALS)
    if given <= 0 or asked <= 0:
        return OrderAmounts(side, 0, 0, given, asked, "amount_rounds_to_zero")
    return OrderAmounts(side, to_units(given), to_units(asked), given, asked)


def amounts_error(
    side: Side, maker_units: int, taker_units: int, marketable: bool, min_size: Decimal = Decimal(5)
) -> str:
    """The venue's error text for a signed order's amounts, or "" when the venue accepts them.

    Checks the decimal rules above and the minimums: a marketable BUY below $1 (the venue's
    text: "invalid amount for a marketable BUY order ($x), min size: $1"), a resting order below
    `min_size` shares ("Size (x) lower than the minimum: 5").
    """
    if maker_units <= 0 or taker_units <= 0:
        return "invalid amounts, maker and taker amounts must be positive"
    md, td = units_decimals(maker_units), units_decimals(taker_units)
    if marketable:
        if side == "BUY":
            if md > MARKET_BUY_COLLATERAL_DECIMALS or td > MARKET_BUY_SHARE_DECIMALS:
                return ERR_MARKET_BUY_PRECISION
            if Decimal(maker_units) / UNITS_PER_TOKEN < MIN_MARKETABLE_BUY_USD:
                usd = Decimal(maker_units) / UNITS_PER_TOKEN
                return f"invalid amount for a marketable BUY order (${usd:f}), min size: $1"
            return ""
        if md > MARKET_SELL_SHARE_DECIMALS or td > MARKET_SELL_COLLATERAL_DECIMALS:
            return ERR_MARKET_SELL_PRECISION
        return ""
    shares_units = taker_units if side == "BUY" else maker_units
    if side == "BUY" and (md > RESTING_COLLATERAL_DECIMALS or td > RESTING_SHARE_DECIMALS):
        return ERR_RESTING_BUY_PRECISION
    if side == "SELL" and (md > RESTING_SHARE_DECIMALS or td > RESTING_COLLATERAL_DECIMALS):
        return ERR_RESTING_SELL_PRECISION
    shares = Decimal(shares_units) / UNITS_PER_TOKEN
    if shares < min_size:
        return f"Size ({shares:f}) lower than the minimum: {min_size:f}"
    return ""
