"""Pure dry-run fill math: how the venue would fill a marketable FOK/FAK order against a book.

No I/O and no clock, so the backtest reuses it as is. Every amount is a `Decimal` computed from the
decimal string of its input, so a fill can be recomputed by hand from a recorded book:

- the limit is snapped to the market's tick grid, never to a worse price than asked (BUY down,
  SELL up), and must lie within [tick, 1 - tick];
- the size is cut to the venue's 0.01-share grid; a BUY needs at least the market's minimum size
  and, being marketable, at least $1 of notional at its limit (the venue's minimums);
- the book is walked best level first while the level's price is at or better than the limit;
  FOK fills completely or not at all ("killed"), FAK fills what is there ("partial");
- each level matched is one trade paying the taker fee `shares * rate * (p * (1 - p)) ** exponent`
  in collateral, rounded half-up to 5 decimals per trade as the venue does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Literal

SHARE_STEP = Decimal("0.01")  # the venue's size grid (2 decimals of a share)
FEE_QUANTUM = Decimal("0.00001")  # fees are rounded to 5 decimals
MIN_BUY_NOTIONAL = Decimal("1")  # marketable BUY minimum, in collateral
ZERO = Decimal(0)
ONE = Decimal(1)

Side = Literal["BUY", "SELL"]
OrderType = Literal["FOK", "FAK"]
FillStatus = Literal["filled", "partial", "killed", "unmatched", "rejected"]


def dec(x: float | int | str | Decimal) -> Decimal:
    """A Decimal from the shortest decimal text of `x` (0.1 -> Decimal('0.1'), not 0.1000000001)."""
    if isinstance(x, Decimal):
        return x
    if isinstance(x, float):
        return Decimal(repr(x))
    return Decimal(x)


def taker_fee(shares: Decimal, price: Decimal, rate: Decimal, exponent: Decimal) -> Decimal:
    """Fee in collateral for one trade: shares * rate * (p * (1 - p)) ** exponent, 5 decimals."""
    if rate <= 0 or shares <= 0:
        return ZERO.quantize(FEE_QUANTUM)
    base = price * (ONE - price)
    curve = base**exponent if exponent != ONE else base
    return (shares * rate * curve).quantize(FEE_QUANTUM, rounding=ROUND_HALF_UP)


def snap_limit(limit: Decimal, tick: Decimal, side: Side) -> Decimal:
    """The limit on the tick grid, never worse for the order: BUY rounds down, SELL up."""
    steps = (limit / tick).to_integral_value(
        rounding=ROUND_FLOOR if side == "BUY" else ROUND_CEILING
    )
    return (steps * tick).quantize(tick)


def snap_size(size: Decimal) -> Decimal:
    return size.quantize(SHARE_STEP, rounding=ROUND_DOWN)


@dataclass(frozen=True)
class Trade:
    """One matched level: `size` shares at `price`, paying `fee` collateral."""

    price: Decimal
    size: Decimal
    fee: Decimal


@dataclass(frozen=True)
class FillResult:
    status: FillStatus
    limit: Decimal  # the limit actually used (on the tick grid)
    size: Decimal  # the size actually asked (on the share grid)
    trades: tuple[Trade, ...] = ()
    reason: str = ""
    filled: Decimal = ZERO
    notional: Decimal = ZERO  # sum of price * size over the trades
    fee: Decimal = ZERO
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def avg_price(self) -> Decimal:
        return self.notional / self.filled if self.filled else ZERO


@dataclass(frozen=True)
class OrderTerms:
    """What the venue checks before matching, from the intent and the market's rules."""

    side: Side
    order_type: OrderType
    limit: Decimal
    size: Decimal
    tick: Decimal = Decimal("0.01")
    min_size: Decimal = Decimal("5")
    fee_rate: Decimal = ZERO
    fee_exponent: Decimal = ONE

    @classmethod
    def of(
        cls,
        side: Side,
        order_type: OrderType,
        limit: float | str | Decimal,
        size: float | str | Decimal,
        tick: float | str | Decimal = "0.01",
        min_size: float | str | Decimal = "5",
        fee_rate: float | str | Decimal = "0",
        fee_exponent: float | str | Decimal = "1",
    ) -> OrderTerms:
        return cls(
            side,
            order_type,
            dec(limit),
            dec(size),
            dec(tick),
            dec(min_size),
            dec(fee_rate),
            dec(fee_exponent),
        )


def check_terms(t: OrderTerms) -> tuple[Decimal, Decimal, str]:
    """(limit on grid, size on grid, reason) where a non-empty reason means the venue rejects."""
    if t.side not in ("BUY", "SELL"):
        return t.limit, t.size, f"unknown side {t.side!r}"
    if t.order_type not in ("FOK", "FAK"):
        return t.limit, t.size, f"unsupported order type {t.order_type!r} (FOK or FAK)"
    if not (ZERO < t.tick < ONE):
        return t.limit, t.size, f"invalid tick size {t.tick}"
    limit = snap_limit(t.limit, t.tick, t.side)
    size = snap_size(t.size)
    if not (t.tick <= limit <= ONE - t.tick):
        return limit, size, f"price {limit} outside [{t.tick}, {ONE - t.tick}] for tick {t.tick}"
    if size <= 0:
        return limit, size, f"size {t.size} rounds to 0 shares on the {SHARE_STEP} grid"
    if t.side == "BUY":
        if size < t.min_size:
            return limit, size, f"size {size} below the market's minimum size {t.min_size}"
        if size * limit < MIN_BUY_NOTIONAL:
            return (
                limit,
                size,
                f"notional {size * limit} below the ${MIN_BUY_NOTIONAL} minimum for a "
                "marketable BUY",
            )
    return limit, size, ""


def _crosses(side: Side, price: Decimal, limit: Decimal) -> bool:
    return price <= limit if side == "BUY" else price >= limit


def book_side(
    side: Side, bids: Iterable[Sequence[float | str]], asks: Iterable[Sequence[float | str]]
) -> list[tuple[Decimal, Decimal]]:
    """The levels an order of `side` takes from, best first (BUY takes asks, SELL bids).

    Sorted here rather than trusted, and empty or non-positive levels dropped, so a book in the
    venue's order (best last) or ours (best first) gives the same walk.
    """
    raw = asks if side == "BUY" else bids
    levels = [(dec(p), dec(s)) for p, s in raw]
    levels = [(p, s) for p, s in levels if s > 0 and ZERO < p < ONE]
    levels.sort(key=lambda lv: lv[0], reverse=(side == "SELL"))
    return levels


def depth_within(levels: Sequence[tuple[Decimal, Decimal]], side: Side, limit: Decimal) -> Decimal:
    """Shares available at or better than `limit` (levels best first)."""
    total = ZERO
    for price, size in levels:
        if not _crosses(side, price, limit):
            break
        total += size
    return total


def simulate_fill(
    terms: OrderTerms,
    bids: Iterable[Sequence[float | str]],
    asks: Iterable[Sequence[float | str]],
) -> FillResult:
    """Fill a marketable order against one asset's book the way the venue would."""
    limit, size, reason = check_terms(terms)
    if reason:
        return FillResult("rejected", limit, size, reason=reason)
    levels = book_side(terms.side, bids, asks)
    available = depth_within(levels, terms.side, limit)
    if available <= 0:
        return FillResult(
            "unmatched", limit, size, reason=f"no liquidity at or better than {limit}"
        )
    if terms.order_type == "FOK" and available < size:
        return FillResult(
            "killed",
            limit,
            size,
            reason=f"FOK killed: {available} shares at or better than {limit}, {size} needed",
        )
    trades: list[Trade] = []
    remaining = size
    for price, level_size in levels:
        if remaining <= 0 or not _crosses(terms.side, price, limit):
            break
        take = min(level_size, remaining)
        trades.append(
            Trade(price, take, taker_fee(take, price, terms.fee_rate, terms.fee_exponent))
        )
        remaining -= take
    filled = size - remaining
    return FillResult(
        "filled" if remaining <= 0 else "partial",
        limit,
        size,
        tuple(trades),
        reason="" if remaining <= 0 else f"FAK partial: {filled} of {size} shares",
        filled=filled,
        notional=sum((t.price * t.size for t in trades), ZERO),
        fee=sum((t.fee for t in trades), ZERO),
    )
