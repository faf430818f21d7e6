"""Maker quotes (issue 18): where strategy rests a post-only BUY, and when it cancels or replaces
it. Pure: no clock, no I/O, no bus; strategy/core.py feeds it what it knows and sends the
`OrderIntent`s and `CancelOrder`s it asks for.

Rules (the config fields are common.config.StrategyConfig's):

- **Price.** A maker BUY on the side the model favours rests at the best bid plus
  `maker_improve_ticks` ticks, never above the most we pay (`p_side - min_edge_pct`: a maker pays
  no fee, PROTOCOLS.md section 4) nor `max_entry_price`, and strictly below the best ask (a
  post-only order that would cross is refused by the venue: docs.polymarket.com
  trading/orders/create "postOnly"), on the market's tick grid, at least one tick.
- **Size.** `stake_per_trade_usd / price` on the 0.01-share grid, at least the market's
  `min_order_size` (5 shares: "resting orders >= 5 shares", PROTOCOLS.md section 4), else none.
- **Type.** GTD when its expiry can be the entry cut-off: the venue wants an expiration at least
  3 minutes ahead and takes the order off a minute before it (docs.polymarket.com
  trading/place-orders; services/execution/live.py `sign_resting`), so a GTD expiring at
  cut-off + 60 s is used when that is >= now + 180 s; otherwise GTC, cancelled by strategy.
  Either way strategy cancels before the cut-off: the expiry is the belt to those braces.
- **Replace.** When the price we would quote now differs from the resting one by at least
  `quote_replace_threshold` (or the side/token changed), the resting one is cancelled; the new
  one is placed only once the cancel is answered (never two quotes of one market resting at
  once: both could fill). Replaces are spaced at least `1 / max_replaces_per_s` seconds apart.
- **auto.** Quote as a maker while more than `auto_taker_within_s` seconds remain before the
  entry cut-off and the after-fee taker edge is below `auto_taker_edge`; otherwise take (FOK).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from common import money

NS = 1_000_000_000
GTD_MIN_AHEAD_S = 180  # the venue's minimum: expiration >= now + 3 minutes (live.py mapping)
GTD_SECURITY_S = 60  # the venue removes a GTD order this long before its expiration


@dataclass(frozen=True)
class Wanted:
    """The quote strategy would rest now: a post-only BUY of `size` shares of `asset_id`
    (`outcome` of market `slug`) at `price` (USD per share, on the tick grid)."""

    slug: str
    asset_id: str
    outcome: str
    price: float
    size: float


@dataclass
class Quote:
    """A quote sent (its `OrderIntent`'s client order id). `cancelling`: a CancelOrder was sent
    and not answered yet."""

    client_order_id: str
    wanted: Wanted
    placed_ns: int
    cancelling: bool = False


@dataclass(frozen=True)
class Place:
    wanted: Wanted


@dataclass(frozen=True)
class Cancel:
    client_order_id: str
    reason: str


Action = Place | Cancel


def maker_price(
    best_bid: float | None,
    best_ask: float | None,
    tick: float,
    cap: float,
    improve_ticks: int = 0,
) -> float | None:
    """The price (USD per share) of a post-only BUY: `best_bid + improve_ticks * tick` (one tick
    when the bid side is empty), no higher than `cap` (snapped down to the grid) and at least one
    tick below `best_ask` (None: no ask, nothing to stay below), on the tick grid in [tick,
    1 - tick], and not below `best_bid` (a quote is at or inside the best bid). None when no
    such price exists. Raises ValueError for a tick outside (0, 1).

    Example: bid 0.48, ask 0.52, tick 0.01, cap 0.55, improve 1 -> 0.49; cap 0.47 -> None;
    bid 0.51, ask 0.52, improve 1 -> 0.51 (0.52 would cross)."""
    if not 0.0 < tick < 1.0:
        raise ValueError(f"tick must be in (0, 1), got {tick!r}")
    if cap <= 0:
        return None
    t = money.dec(tick)
    price = money.dec(best_bid) + improve_ticks * t if best_bid is not None else t
    price = min(price, money.snap_price(cap, t, "BUY"), money.ONE - t)
    if best_ask is not None:
        price = min(price, money.snap_price(best_ask, t, "SELL") - t)
    price = money.snap_price(price, t, "BUY")
    if price < t or (best_bid is not None and price < money.dec(best_bid)):
        return None  # below the best bid is not "at or inside" it: no quote
    return float(price)


def maker_size(stake_usd: float, price: float, min_order_size: float) -> float | None:
    """Shares of a quote spending `stake_usd` at `price`, cut to the 0.01 grid; None when below
    the market's `min_order_size` (5 shares on these markets)."""
    if price <= 0:
        return None
    size = float(money.round_shares(round(stake_usd / price, 6)))
    return size if size + 1e-9 >= min_order_size and size > 0 else None


def gtd_expiration_s(now_ns: int, cutoff_ns: int) -> int:
    """The GTD expiration (unix seconds) that takes a quote off the book at the entry cut-off
    (`cutoff_ns`): cut-off + 60 s (the venue removes it a minute early), or 0 (send a GTC) when
    that is less than 3 minutes after `now_ns` (the venue's minimum)."""
    exp = math.ceil(cutoff_ns / NS) + GTD_SECURITY_S
    return exp if exp >= math.ceil(now_ns / NS) + GTD_MIN_AHEAD_S else 0


def auto_takes(
    taker_edge: float, seconds_to_cutoff: float, edge_threshold: float, within_s: float
) -> bool:
    """`order_type="auto"`: True when the entry should take (FOK) rather than quote: the
    after-fee taker edge (USD per share) reached `edge_threshold`, or fewer than `within_s`
    seconds remain before the entry cut-off."""
    return taker_edge >= edge_threshold or seconds_to_cutoff < within_s


@dataclass
class QuoteBook:
    """One market's maker quote: at most one resting (plus the ones being cancelled).

    `threshold`: USD per share the wanted price must move to replace; `max_replaces_per_s`: the
    cap on replaces. Times are ns of the caller's clock. Raises ValueError for a non-positive
    threshold or rate."""

    threshold: float = 0.01
    max_replaces_per_s: float = 2.0
    quotes: dict[str, Quote] = field(default_factory=dict)
    last_replace_ns: int = -(10**18)
    replaces: int = 0
    throttled: int = 0

    def __post_init__(self) -> None:
        if self.threshold <= 0 or self.max_replaces_per_s <= 0:
            raise ValueError(
                f"threshold and max_replaces_per_s must be > 0, got "
                f"{self.threshold!r}, {self.max_replaces_per_s!r}"
            )

    @property
    def resting(self) -> Quote | None:
        """The quote not being cancelled, if any."""
        for q in self.quotes.values():
            if not q.cancelling:
                return q
        return None

    @property
    def open_ids(self) -> list[str]:
        """Client order ids of every quote not answered as done (resting or being cancelled)."""
        return list(self.quotes)

    def plan(self, wanted: Wanted | None, now_ns: int, reason: str = "") -> list[Action]:
        """What to do so that `wanted` (None: nothing) rests: [] (keep), [Place], or [Cancel]
        (a replace: the Place follows once the cancel is answered, on a later plan). `reason`
        names why a quote is no longer wanted (carried by the Cancel)."""
        q = self.resting
        if wanted is None:
            return self.cancel_all(reason or "not_wanted")
        if q is None:
            if self.quotes:  # a cancel is in flight: wait for its answer
                return []
            return [Place(wanted)]
        w = q.wanted
        moved = (
            w.asset_id != wanted.asset_id or abs(w.price - wanted.price) >= self.threshold - 1e-9
        )
        if not moved:
            return []
        if now_ns - self.last_replace_ns < NS / self.max_replaces_per_s:
            self.throttled += 1
            return []
        self.last_replace_ns = now_ns
        self.replaces += 1
        q.cancelling = True
        return [Cancel(q.client_order_id, "replace")]

    def cancel_all(self, reason: str) -> list[Action]:
        """Cancel every quote not already being cancelled."""
        out: list[Action] = []
        for q in self.quotes.values():
            if not q.cancelling:
                q.cancelling = True
                out.append(Cancel(q.client_order_id, reason))
        return out

    def placed(self, client_order_id: str, wanted: Wanted, now_ns: int) -> None:
        """A Place was sent as the order `client_order_id`."""
        self.quotes[client_order_id] = Quote(client_order_id, wanted, now_ns)

    def done(self, client_order_id: str) -> bool:
        """The order is over (filled in full, cancelled, expired, rejected); True if it was one
        of ours."""
        return self.quotes.pop(client_order_id, None) is not None
