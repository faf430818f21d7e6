"""Paper (and backtest) resting orders (issue 18): post-only GTC/GTD limit orders held by
ExecutionCore and filled by the queue-position model (services/execution/queue.py) from the
book snapshots execution sees. Pure: no clock, no I/O.

What the bus carries: ingest publishes the CLOB's books (`md.book.<asset_id>`) but not its
`last_trade_price` prints (they are parsed, services/ingest/parsers.py `LastTrade`, and not
published), so trades at our price are not seen. Consumption is therefore derived from the books
alone, conservatively: a level that shrinks is taken as cancellations behind us first
(`QueuedOrder.on_level`, the CONSERVATIVE rule: the queue ahead shrinks only when the whole level
becomes smaller than it), and an order fills only when the opposite best price reaches it (a best
ask at or below our bid: whoever trades there meets our order first, `on_best_opposite`). This
never fills earlier than the venue would; it misses fills where trades at our price ate the
queue down to us without the price moving through it, so paper maker fills are a lower bound.

Venue rules checked before an order rests (the same the simulated venue and the live adapter
apply): post-only only (a GTC/GTD that is not post-only could take, not modelled here); the
price on the tick grid within [tick, 1 - tick]; the venue's resting amounts
(`common.money.resting_amounts`: 2-decimal shares, exact 4-decimal collateral, at least the
market's 5-share minimum); a GTD's expiration at least 3 minutes ahead (the venue removes it a
minute before expiration; docs.polymarket.com trading/place-orders, services/execution/live.py
`sign_resting`); a post-only order that would cross (a BUY at or above the best ask) refused
as `post_only_would_cross` (docs.polymarket.com trading/orders/create, "postOnly").
"""

from __future__ import annotations

from dataclasses import dataclass

from common import money
from common.book import Book
from common.schema import OrderIntent
from services.execution import queue

NS = 1_000_000_000
GTD_MIN_AHEAD_S = 180
GTD_SECURITY_S = 60


@dataclass
class Resting:
    """One resting order: its intent, its queue state, the venue's order id (live)."""

    intent: OrderIntent
    queue: queue.QueuedOrder
    venue_order_id: str = ""
    fills: int = 0

    @property
    def gone_ns(self) -> int:
        """When the venue takes a GTD off the book (expiration - 60 s, ns); 0 for a GTC."""
        e = self.intent.expiration_s
        return (e - GTD_SECURITY_S) * NS if e else 0


def check_resting(intent: OrderIntent, book: Book | None, now_ns: int) -> tuple[str, str]:
    """(code, reason) when the venue would refuse this resting order now, else ("", "").
    Codes: `invalid_order` (not post-only, a GTC with an expiration), `invalid_expiration`,
    `invalid_price`, the `money.resting_amounts` skip codes (`below_min_size`, ...),
    `no_book`, `book_out_of_sync`, `post_only_would_cross`."""
    if not intent.post_only:
        return "invalid_order", "only post-only resting orders are supported (paper)"
    if intent.order_type == "GTD":
        if intent.expiration_s < -(-now_ns // NS) + GTD_MIN_AHEAD_S:
            return "invalid_expiration", (
                f"GTD expiration {intent.expiration_s} is less than 3 minutes ahead"
            )
    elif intent.expiration_s:
        return "invalid_order", "a GTC order carries no expiration"
    tick = money.dec(intent.tick_size)
    price = money.dec(intent.limit_price)
    why = money.check_price(price, tick)
    if why:
        return "invalid_price", why
    a = money.resting_amounts(
        intent.side, price, money.dec(intent.size), tick, money.dec(intent.min_order_size)
    )
    if a.skip:
        return a.skip, f"{a.skip}: {intent.side} {intent.size} at {intent.limit_price}"
    if book is None:
        return "no_book", f"no book for asset {intent.asset_id}"
    if not book.in_sync:
        return "book_out_of_sync", f"book of {intent.asset_id} is out of sync"
    opp = book.best_ask if intent.side == "BUY" else book.best_bid
    if opp is not None and (
        intent.limit_price >= opp if intent.side == "BUY" else intent.limit_price <= opp
    ):
        return "post_only_would_cross", (
            f"post-only {intent.side} at {intent.limit_price} would cross the best "
            f"{'ask' if intent.side == 'BUY' else 'bid'} {opp}"
        )
    return "", ""


class RestingBook:
    """Execution's paper resting orders, by client order id and by token."""

    def __init__(self) -> None:
        self.orders: dict[str, Resting] = {}
        self.by_asset: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self.orders)

    def add(self, intent: OrderIntent, book: Book, venue_order_id: str = "") -> Resting:
        """Rest `intent` at the back of its level (the displayed size at its price now)."""
        return self.adopt(intent, venue_order_id, book.size_at(intent.side, intent.limit_price))

    def adopt(self, intent: OrderIntent, venue_order_id: str, shown: float = 0.0) -> Resting:
        """Follow `intent` with `shown` shares ahead of it in its level's queue; an order a
        previous run left resting is adopted with its queue place unknown (0 ahead)."""
        r = Resting(
            intent, queue.join(intent.side, intent.limit_price, intent.size, shown), venue_order_id
        )
        self.orders[intent.client_order_id] = r
        self.by_asset.setdefault(intent.asset_id, set()).add(intent.client_order_id)
        return r

    def remove(self, coid: str) -> Resting | None:
        r = self.orders.pop(coid, None)
        if r is not None:
            ids = self.by_asset.get(r.intent.asset_id)
            if ids is not None:
                ids.discard(coid)
                if not ids:
                    del self.by_asset[r.intent.asset_id]
        return r

    def on_book(self, asset_id: str, book: Book) -> list[tuple[Resting, float]]:
        """The book of `asset_id` changed: [(order, shares filled now)] for the orders it
        filled (queue model, conservative; see the module's docstring)."""
        out: list[tuple[Resting, float]] = []
        for coid in list(self.by_asset.get(asset_id, ())):
            r = self.orders[coid]
            q = r.queue
            q.on_level(book.size_at(q.side, float(q.price)))
            got = q.on_best_opposite(book.best_ask if q.side == "BUY" else book.best_bid)
            if got > 0:
                out.append((r, float(got)))
        return out

    def select(self, client_order_id: str = "", slug: str = "") -> list[Resting]:
        """The orders a CancelOrder names: one by id, every one of `slug`, or all."""
        if client_order_id:
            r = self.orders.get(client_order_id)
            return [r] if r is not None else []
        return [r for r in self.orders.values() if not slug or r.intent.slug == slug]

    def expired(self, now_ns: int) -> list[Resting]:
        """GTD orders the venue has taken off the book by `now_ns`."""
        return [r for r in self.orders.values() if r.gone_ns and now_ns >= r.gone_ns]
