"""Paper fills: how the venue would fill an order intent against the local book.

No I/O and no clock. The rules are `common.money`'s, the same functions the simulated venue
matches with, so a paper fill and a venue fill of the same order and book agree to the unit:

- the limit is snapped to the market's tick grid, never worse for the order (BUY down, SELL up),
  and must lie within [tick, 1 - tick];
- the order's amounts are those the venue accepts signed (`money.marketable_amounts`): a BUY
  spends shares x limit cut to cents of collateral (at least $1), a SELL sells shares cut to
  0.01; the 5-share `orderMinSize` is for resting orders only (PROTOCOLS.md section 7);
- the book is walked best level first at or better than the limit; a BUY spends its collateral
  (so a book better than the limit buys more shares than the intent's size), FOK fills whole or
  not at all, FAK fills what is there; each level is one trade paying the taker fee to 5
  decimals (`money.taker_fee`).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from common import money
from common.money import ONE, MarketableFill, dec
from common.schema import OrderIntent

__all__ = ["ONE", "check_intent", "dec", "fee_of", "paper_fill", "taker_fee"]


def taker_fee(shares: Decimal, price: Decimal, rate: Decimal, exponent: Decimal) -> Decimal:
    """`money.taker_fee` with the schedule given as (rate, exponent) (the live adapter's form)."""
    return money.taker_fee(shares, price, money.FeeSchedule(dec(rate), dec(exponent)))


def fee_of(intent: OrderIntent) -> money.FeeSchedule:
    """The market's fee schedule as the intent carries it."""
    return money.FeeSchedule.of(intent.fee_rate, intent.fee_exponent)


def check_intent(intent: OrderIntent) -> tuple[Decimal, Decimal, str]:
    """(limit on the tick grid, size on the 0.01-share grid, reason): a non-empty reason names
    why the venue would refuse the order."""
    side, kind = intent.side, intent.order_type
    if side not in ("BUY", "SELL"):
        return dec(intent.limit_price), dec(intent.size), f"unknown side {side!r}"
    if kind not in ("FOK", "FAK"):
        return (
            dec(intent.limit_price),
            dec(intent.size),
            f"unsupported order type {kind!r} (FOK or FAK)",
        )
    tick = dec(intent.tick_size)
    if not money.ZERO < tick < ONE:
        return dec(intent.limit_price), dec(intent.size), f"invalid tick size {tick}"
    limit = money.snap_price(intent.limit_price, tick, side)
    size = money.round_shares(intent.size)
    reason = money.check_price(limit, tick)
    if reason:
        return limit, size, reason
    if size <= 0:
        return limit, size, f"size {intent.size} rounds to 0 shares on the 0.01 grid"
    skip = money.marketable_amounts(side, limit, size).skip
    if skip == "below_min_buy_notional":
        return (
            limit,
            size,
            f"notional {money.ZERO + size * limit} below the ${money.MIN_MARKETABLE_BUY_USD} "
            "minimum for a marketable BUY (after cutting it to cents)",
        )
    if skip:
        return limit, size, f"amounts of {size} shares at {limit} round to zero"
    return limit, size, ""


def paper_fill(intent: OrderIntent, levels: Sequence[Sequence[float]]) -> MarketableFill:
    """Fill `intent` against `levels` (the side it takes, best first: `Book.taker_levels`).

    Status rejected (bad terms: `reason` says which), unmatched, killed, partial or filled."""
    limit, size, reason = check_intent(intent)
    if reason:
        return MarketableFill("rejected", reason=reason)
    return money.fill_order(intent.side, size, limit, levels, fee_of(intent), intent.order_type)
