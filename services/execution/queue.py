"""Where a paper (or backtest) maker order stands in its price level's queue, and when the market
data says it filled. Pure: it reads trades and book levels as the bot sees them and never reads a
clock, so paper trading and the backtest fill resting orders the same way.

The venue's CLOB matches a level's orders in price-time priority (the usual rule of a central
limit order book; we found no Polymarket page that states it, and none that says otherwise; the
simulated venue does the same: services/simvenue/market.py `RestingOrder`). A paper order is not
in the real book, so we track the displayed size that would be in front of it:

- **Joining.** An order joins the back of its level: the queue ahead is the displayed size at its
  price when it is placed (0 when it improves the best price).
- **Trades at its price** (the trade print's price equals the order's) consume the queue ahead
  first, then the order (partial fills), whatever is left goes to the size behind it.
- **Trades through its price** (a print worse than the order's price for the side that hit it: a
  trade below our bid, above our ask), or the opposite best price reaching it (a best ask at or
  below our bid), fill what is left of the order at its own price: anyone trading there would
  have met our order first.
- **Cancellations ahead.** When the displayed size at its price shrinks by more than the trades
  there explain, somebody cancelled. Where in the queue they stood is not in the data. The default
  (`CONSERVATIVE`) assumes size leaves from behind us first: the queue ahead shrinks only when the
  whole level becomes smaller than it. `PRO_RATA` assumes the cancelled size was spread evenly
  over the level, so the queue ahead shrinks by its share. We default to the conservative rule
  because over-stating maker fills is the expensive mistake here: a backtest that fills quotes
  too early shows an edge (the rebate, the spread) the venue will not pay, and the fills it adds
  are the unselected ones that adverse selection would not have given us. Size added to the level
  later queues behind us in both models.

A maker fill is at the order's own price, pays no fee and earns the rebate
(`common.money.fill_fee_and_rebate("maker", ...)`). Units: prices USD per share in (0, 1),
sizes shares, all `Decimal`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Literal

from common.money import SHARE_STEP, ZERO, Num, Side, dec

CancelModel = Literal["conservative", "pro_rata"]
CONSERVATIVE: CancelModel = "conservative"
PRO_RATA: CancelModel = "pro_rata"


@dataclass
class QueuedOrder:
    """A resting limit order's queue state. `ahead`: displayed shares in front of it at `price`;
    `level`: the displayed size at `price` as last seen (ahead + behind, without us); `filled`:
    shares filled so far. Build it with `join`."""

    side: Side
    price: Decimal
    size: Decimal
    ahead: Decimal
    level: Decimal
    cancel_model: CancelModel = CONSERVATIVE
    filled: Decimal = ZERO
    fills: list[Decimal] = field(default_factory=list)

    @property
    def remaining(self) -> Decimal:
        """Shares still resting."""
        return self.size - self.filled

    @property
    def done(self) -> bool:
        return self.remaining <= 0

    def _fill(self, shares: Decimal) -> Decimal:
        got = min(self.remaining, shares).quantize(SHARE_STEP, rounding=ROUND_DOWN)
        if got > 0:
            self.filled += got
            self.fills.append(got)
        return max(got, ZERO)

    def _through(self, price: Decimal) -> bool:
        """True when `price` is strictly worse than ours for the side that would hit us."""
        return price < self.price if self.side == "BUY" else price > self.price

    def on_trade(self, price: Num, size: Num) -> Decimal:
        """A trade print of `size` shares at `price` on this order's token. Returns the shares of
        this order it filled (0 when it did not reach us).

        At our price: the queue ahead is consumed first, then us. Through our price: all that is
        left of us fills. On the other side of the book: nothing. Raises ValueError for a
        negative size."""
        p, s = dec(price), dec(size)
        if s < 0:
            raise ValueError(f"trade size must be >= 0, got {size!r}")
        if self.done or s == 0:
            return ZERO
        if self._through(p):
            return self._fill(self.remaining)
        if p != self.price:
            return ZERO
        from_ahead = min(self.ahead, s)
        self.ahead -= from_ahead
        got = self._fill(s - from_ahead)
        self.level = max(ZERO, self.level - from_ahead - max(ZERO, s - from_ahead - got))
        return got

    def on_level(self, displayed: Num) -> None:
        """The displayed size at our price is now `displayed` shares (trades already reported by
        `on_trade`). A level smaller than we last saw it lost size to cancellations: the queue
        ahead shrinks by the model's rule. A larger level queues behind us."""
        d = dec(displayed)
        if d < 0:
            raise ValueError(f"displayed size must be >= 0, got {displayed!r}")
        if d < self.level:
            if self.cancel_model == PRO_RATA and self.level > 0:
                cancelled = self.level - d
                self.ahead -= cancelled * self.ahead / self.level
            self.ahead = min(self.ahead, d)
        self.ahead = max(ZERO, self.ahead)
        self.level = d

    def on_best_opposite(self, price: Num | None) -> Decimal:
        """The opposite side's best price is now `price` (None: that side is empty). When it
        reaches ours (a best ask at or below our bid), that quote would have traded with us:
        what is left fills. Returns the shares filled."""
        if price is None or self.done:
            return ZERO
        p = dec(price)
        reached = p <= self.price if self.side == "BUY" else p >= self.price
        return self._fill(self.remaining) if reached else ZERO


def join(
    side: Side,
    price: Num,
    size: Num,
    displayed_at_price: Num,
    cancel_model: CancelModel = CONSERVATIVE,
) -> QueuedOrder:
    """A new resting order of `size` shares at `price`, at the back of its level: the queue ahead
    is the `displayed_at_price` shares there now (0 for a price nobody quotes). Raises ValueError
    for a bad side, a price outside (0, 1), a non-positive size, a negative displayed size or an
    unknown cancel model."""
    if side not in ("BUY", "SELL"):
        raise ValueError(f"side must be BUY or SELL, got {side!r}")
    p, s, d = dec(price), dec(size), dec(displayed_at_price)
    if not ZERO < p < 1:
        raise ValueError(f"price must be in (0, 1), got {price!r}")
    if s <= 0:
        raise ValueError(f"size must be > 0, got {size!r}")
    if d < 0:
        raise ValueError(f"displayed size must be >= 0, got {displayed_at_price!r}")
    if cancel_model not in (CONSERVATIVE, PRO_RATA):
        raise ValueError(f"cancel_model must be conservative or pro_rata, got {cancel_model!r}")
    return QueuedOrder(side, p, s, d, d, cancel_model)
