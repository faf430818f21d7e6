"""The one local L2 order book of an outcome token, used by every service and the simulated venue.

A `Book` is price -> size maps for the bid and the ask side (prices in USD per share, sizes in
shares, floats keyed rounded to `PRICE_DP` decimals so "0.5", ".50" and 0.5 are one level). It is
filled by a full snapshot (`replace`, `apply_snapshot`), changed one level at a time
(`set_level`, `apply_changes`: the venue's `price_change` semantics, the size being the new
total and 0 removing the level), and read best level first (`bids`/`asks` lists, `best_bid`,
`best_ask`, `depth`, `walk`). `consume` removes what a taker order took. Money (what a fill
costs, its fee) is `common.money`'s job: a book only holds levels.

Two states are the book's own to report, for whoever must decide whether to trust it:
- `crossed`: best bid >= best ask, which a venue's real book never is (a missed update shows so);
- `in_sync`: True once a full snapshot was applied and until someone marks the book out of
  sync (`mark_out_of_sync`: a reconnect, a tick-size change, the venue's stated best bid/ask
  disagreeing with ours); the next snapshot sets it back.

Venue facts (PROTOCOLS.md section 2): the market channel's `book` frame lists the best level LAST;
`BookSnapshot` on our bus lists it FIRST; a tick-size change snaps prices to the new grid.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Literal, Protocol

from common.schema import BookSnapshot, LazyBookSnapshot

PRICE_DP = 6  # prices are keyed rounded, so "0.5", ".50" and 0.5 are one level
EPS_SIZE = 1e-9  # a level with less than this left after `consume` is gone

Side = Literal["BUY", "SELL"]  # a taker's side; for a level: BUY = the bid side, SELL = the ask
LevelLike = Sequence[float | str]  # (price, size) as numbers or decimal strings


class LevelChangeLike(Protocol):
    """One `price_change` entry: `side` BUY (bid) / SELL (ask), `price`, new total `size`."""

    @property
    def side(self) -> Side: ...
    @property
    def price(self) -> float: ...
    @property
    def size(self) -> float: ...


def price_key(p: float | str) -> float:
    """The dictionary key of a price: the float rounded to `PRICE_DP` decimals."""
    return round(p if type(p) is float else float(p), PRICE_DP)


def _price(lv: tuple[float, float]) -> float:
    return lv[0]


def _neg_price(lv: tuple[float, float]) -> float:
    return -lv[0]


def _levels(raw: Iterable[LevelLike]) -> dict[float, float]:
    out: dict[float, float] = {}
    for lv in raw:
        s = float(lv[1])
        if s > 0.0:
            out[price_key(lv[0])] = s
    return out


def _bids_best_first(levels: Sequence[tuple[float, float]]) -> bool:
    """True when bid `levels` are strictly descending with positive sizes (usable as they are)."""
    prev = math.inf
    for p, s in levels:
        if s <= 0.0 or p >= prev:
            return False
        prev = p
    return True


def _asks_best_first(levels: Sequence[tuple[float, float]]) -> bool:
    """True when ask `levels` are strictly ascending with positive sizes (usable as they are)."""
    prev = -math.inf
    for p, s in levels:
        if s <= 0.0 or p <= prev:
            return False
        prev = p
    return True


class Book:
    """One outcome token's L2 book (see the module docstring).

    Attributes: `asset_id`, `market` (condition id), `tick_size` (USD), `in_sync`, `seq` (bumped on
    every change: ingest publishes it as `book_seq`), `ts_exchange_ns`/`ts_recv_ns` of the latest
    change, `hash` of the latest snapshot, and `resync_since_ns`/`resync_reason` (when and why the
    book was marked out of sync; 0/"" when it is not waiting for a snapshot).
    """

    __slots__ = (
        "asset_id",
        "market",
        "tick_size",
        "in_sync",
        "seq",
        "ts_exchange_ns",
        "ts_recv_ns",
        "hash",
        "resync_since_ns",
        "resync_reason",
        "_bids",
        "_asks",
        "_bid_list",
        "_ask_list",
    )

    def __init__(self, asset_id: str, tick_size: float = 0.01, market: str = "") -> None:
        self.asset_id = asset_id
        self.market = market
        self.tick_size = tick_size
        self.in_sync = False
        self.seq = 0
        self.ts_exchange_ns = 0
        self.ts_recv_ns = 0
        self.hash = ""
        self.resync_since_ns = 0
        self.resync_reason = ""
        # each side is held as a price -> size map, a best-first list, or both; None: derive it
        self._bids: dict[float, float] | None = {}
        self._asks: dict[float, float] | None = {}
        self._bid_list: list[tuple[float, float]] | None = []  # best first; None: re-sort
        self._ask_list: list[tuple[float, float]] | None = []

    # --- building -----------------------------------------------------------------------------
    @classmethod
    def from_snapshot(cls, snap: BookSnapshot) -> Book:
        """A book holding exactly `snap` (in sync)."""
        b = cls(snap.asset_id, snap.tick_size if snap.tick_size > 0 else 0.01, snap.market)
        b.apply_snapshot(snap)
        return b

    def replace(
        self,
        bids: Iterable[LevelLike],
        asks: Iterable[LevelLike],
        *,
        ts_exchange_ns: int = 0,
        ts_recv_ns: int = 0,
        tick_size: float | None = None,
        hash: str = "",
    ) -> None:
        """Replace every level (any order; sizes <= 0 dropped) and mark the book in sync."""
        self._bids = _levels(bids)
        self._asks = _levels(asks)
        self._dirty()
        if tick_size is not None and tick_size > 0:
            self.tick_size = tick_size
        self.hash = hash
        self.in_sync = True
        self.resync_since_ns = 0
        self.resync_reason = ""
        self.stamp(ts_exchange_ns, ts_recv_ns)

    def apply_snapshot(self, snap: BookSnapshot) -> None:
        """`replace` with a `BookSnapshot`'s levels, tick size, market and hash; in sync as the
        snapshot says (ingest publishes a book it is resyncing with `in_sync=False`).

        A snapshot already best first with positive sizes (what ingest publishes) is taken as it
        is, its maps built only when the book is changed: every consumer folds every snapshot."""
        if snap.market:
            self.market = snap.market
        bids, asks = snap.bids, snap.asks
        if _bids_best_first(bids) and _asks_best_first(asks):
            # shared, never mutated: a change builds the map and then a new list
            self._bids = self._asks = None
            self._bid_list = bids  # type: ignore[assignment]
            self._ask_list = asks  # type: ignore[assignment]
            if snap.tick_size > 0:
                self.tick_size = snap.tick_size
            self.hash = snap.hash
            self.in_sync = True
            self.resync_since_ns = 0
            self.resync_reason = ""
            self.stamp(snap.ts_exchange_ns, snap.ts_recv_ns)
        else:
            self.replace(
                bids,
                asks,
                ts_exchange_ns=snap.ts_exchange_ns,
                ts_recv_ns=snap.ts_recv_ns,
                tick_size=snap.tick_size,
                hash=snap.hash,
            )
        self.in_sync = snap.in_sync

    def set_level(self, side: Side, price: float | str, size: float | str) -> None:
        """Set one level's total size (`side` BUY = bids, SELL = asks); size <= 0 removes it.

        Does not stamp: a frame of several changes is one change of the book (`apply_changes`)."""
        k = price_key(price)
        s = float(size)
        # the map and, when it is held, the best-first list are both kept: the list is changed
        # by one bisected insert/replace/delete on a copy (it may be shared with a published
        # snapshot), not re-sorted on the next read
        if side == "BUY":
            lst = self._bid_list
            levels = self._bids
            if levels is None:
                levels = self._bids = dict(lst or ())
        else:
            lst = self._ask_list
            levels = self._asks
            if levels is None:
                levels = self._asks = dict(lst or ())
        if s > 0.0:
            levels[k] = s
        elif levels.pop(k, None) is None:
            return  # nothing rested there: neither side changes
        if lst is None:
            return
        lst = lst.copy()
        if side == "BUY":
            i = bisect_left(lst, -k, key=_neg_price)  # bids: highest first
        else:
            i = bisect_left(lst, k, key=_price)
        if i < len(lst) and lst[i][0] == k:
            if s > 0.0:
                lst[i] = (k, s)
            else:
                del lst[i]
        elif s > 0.0:
            lst.insert(i, (k, s))
        if side == "BUY":
            self._bid_list = lst
        else:
            self._ask_list = lst

    def apply_changes(
        self, changes: Iterable[LevelChangeLike], ts_exchange_ns: int = 0, ts_recv_ns: int = 0
    ) -> None:
        """Apply level changes in order (the venue's `price_change` entries), then stamp."""
        for ch in changes:
            self.set_level(ch.side, ch.price, ch.size)
        self.stamp(ts_exchange_ns, ts_recv_ns)

    def stamp(self, ts_exchange_ns: int, ts_recv_ns: int) -> None:
        """Count one change of the book at these times (0 keeps the exchange time)."""
        self.seq += 1
        if ts_exchange_ns:
            self.ts_exchange_ns = ts_exchange_ns
        self.ts_recv_ns = ts_recv_ns

    def clear(self) -> None:
        """Drop every level (the book is then empty, and not in sync)."""
        self._bids, self._asks = {}, {}
        self._dirty()
        self.in_sync = False

    def snap_to_tick(self, new_tick: float) -> None:
        """Move levels onto a new tick grid: bids down, asks up (never a better price than the
        venue offered), within [tick, 1 - tick]; levels that land together add up."""
        if not 0.0 < new_tick < 1.0:
            raise ValueError(f"tick size must be in (0, 1), got {new_tick!r}")
        self.tick_size = new_tick
        hi = price_key(1.0 - new_tick)
        for side, attr, rounder in (("BUY", "_bids", math.floor), ("SELL", "_asks", math.ceil)):
            snapped: dict[float, float] = {}
            for p, s in self._map(side).items():  # type: ignore[arg-type]
                q = price_key(rounder(round(p / new_tick, 6)) * new_tick)
                q = min(max(q, new_tick), hi)
                snapped[q] = snapped.get(q, 0.0) + s
            setattr(self, attr, snapped)
        self._dirty()

    def mark_out_of_sync(self, reason: str, now_ns: int) -> None:
        """Stop trusting the book until the next snapshot; `reason` says why (a log word)."""
        self.in_sync = False
        if not self.resync_since_ns:
            self.resync_since_ns = now_ns or 1
            self.resync_reason = reason

    def _dirty(self) -> None:
        self._bid_list = None
        self._ask_list = None

    def _map(self, side: Side) -> dict[float, float]:
        """The price -> size map of the bid (BUY) or ask (SELL) side, built if only the list is
        held; the side's list is then re-derived from the map on the next read."""
        if side == "BUY":
            if self._bids is None:
                self._bids = dict(self._bid_list or ())
            self._bid_list = None
            return self._bids
        if self._asks is None:
            self._asks = dict(self._ask_list or ())
        self._ask_list = None
        return self._asks

    # --- reading ------------------------------------------------------------------------------
    @property
    def bids(self) -> list[tuple[float, float]]:
        """Bid levels (price, size), best (highest) first. Do not mutate the list."""
        if self._bid_list is None:
            # prices are unique keys, so sizes never break a tie: plain descending order
            self._bid_list = sorted((self._bids or {}).items(), reverse=True)
        return self._bid_list

    @property
    def asks(self) -> list[tuple[float, float]]:
        """Ask levels (price, size), best (lowest) first. Do not mutate the list."""
        if self._ask_list is None:
            self._ask_list = sorted((self._asks or {}).items())
        return self._ask_list

    def levels(self) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """(bids, asks), best first."""
        return self.bids, self.asks

    def size_at(self, side: Side, price: float | str) -> float:
        """Shares resting at `price` on the bid (BUY) or ask (SELL) side; 0 if none."""
        k = price_key(price)
        for p, s in self.bids if side == "BUY" else self.asks:
            if p == k:
                return s
        return 0.0

    @property
    def best_bid(self) -> float | None:
        b = self.bids
        return b[0][0] if b else None

    @property
    def best_ask(self) -> float | None:
        a = self.asks
        return a[0][0] if a else None

    @property
    def crossed(self) -> bool:
        """Best bid >= best ask: not a state a venue's book is ever in, so ours is wrong."""
        bb, ba = self.best_bid, self.best_ask
        return bb is not None and ba is not None and bb >= ba

    @property
    def mid(self) -> float | None:
        bb, ba = self.best_bid, self.best_ask
        return (bb + ba) / 2 if bb is not None and ba is not None else None

    @property
    def spread(self) -> float | None:
        bb, ba = self.best_bid, self.best_ask
        return ba - bb if bb is not None and ba is not None else None

    def total(self, side: Side) -> float:
        """Shares on the whole bid (BUY) or ask (SELL) side."""
        return sum(s for _, s in (self.bids if side == "BUY" else self.asks))

    def taker_levels(self, taker_side: Side) -> list[tuple[float, float]]:
        """The levels a taker of `taker_side` takes from, best first: a BUY takes the asks,
        a SELL the bids."""
        return self.asks if taker_side == "BUY" else self.bids

    def depth(self, taker_side: Side, limit: float | None = None) -> float:
        """Shares a taker of `taker_side` can take at or better than `limit` (None: any price)."""
        total = 0.0
        for p, s in self.taker_levels(taker_side):
            if limit is not None and (p > limit if taker_side == "BUY" else p < limit):
                break
            total += s
        return total

    def walk(
        self, taker_side: Side, shares: float, limit: float | None = None
    ) -> tuple[float | None, float]:
        """(VWAP, shares matched) of taking `shares` best level first, at or better than `limit`.

        VWAP is None when nothing matches. Fees and the venue's amount rules are not applied:
        use `common.money.fill_marketable` for what an order really fills."""
        left, value = shares, 0.0
        for p, s in self.taker_levels(taker_side):
            if left <= EPS_SIZE:
                break
            if limit is not None and (p > limit if taker_side == "BUY" else p < limit):
                break
            take = min(left, s)
            value += take * p
            left -= take
        done = shares - max(left, 0.0)
        return (value / done if done > EPS_SIZE else None), done

    def consume(self, taker_side: Side, trades: Iterable[tuple[object, object]]) -> None:
        """Remove what a taker of `taker_side` took: `trades` are (price, shares) pairs (floats,
        strings or Decimals), so the next order does not see that liquidity again."""
        levels = self._map("SELL" if taker_side == "BUY" else "BUY")
        for price, size in trades:
            k = price_key(price)  # type: ignore[arg-type]
            left = levels.get(k, 0.0) - float(size)  # type: ignore[arg-type]
            if left > EPS_SIZE:
                levels[k] = left
            else:
                levels.pop(k, None)
        if taker_side == "BUY":
            self._ask_list = None
        else:
            self._bid_list = None

    def snapshot(self) -> BookSnapshot:
        """The book as a bus `BookSnapshot` (best level first, `book_seq` = `seq`)."""
        bids, asks = self.bids, self.asks
        return BookSnapshot(
            asset_id=self.asset_id,
            best_bid=bids[0][0] if bids else None,
            best_ask=asks[0][0] if asks else None,
            bids=list(bids),
            asks=list(asks),
            ts_exchange_ns=self.ts_exchange_ns,
            ts_recv_ns=self.ts_recv_ns,
            market=self.market,
            tick_size=self.tick_size,
            book_seq=self.seq,
            hash=self.hash,
        )

    def __repr__(self) -> str:
        return (
            f"Book({self.asset_id!r}, bid={self.best_bid}, ask={self.best_ask}, "
            f"levels={len(self.bids)}/{len(self.asks)}, in_sync={self.in_sync})"
        )


class SnapshotBooks:
    """asset id -> the `Book` of its latest `BookSnapshot`, built only when first read.

    For a consumer that folds every snapshot ingest publishes (strategy, execution) but reads a
    book far less often: `put(snap)` keeps the snapshot (O(1)); `get`/`[]` build the `Book`
    (`Book.from_snapshot`; with `mark_ingest`, a snapshot not in sync also marks the book out of
    sync by "ingest" at its receive time, `Book.mark_out_of_sync`) once, and
    hand back that same object until the next `put`, so a change made to it (`consume`,
    `mark_out_of_sync`) lasts until the next snapshot, exactly as if it had been built at `put`.
    A `dict`-like subset: `get`, `[]`, `in`, `pop`, `len`, `keys`, `values`, `items`."""

    __slots__ = ("_snaps", "_books", "mark_ingest")

    def __init__(self, mark_ingest: bool = False) -> None:
        self.mark_ingest = mark_ingest
        self._snaps: dict[str, BookSnapshot | LazyBookSnapshot] = {}
        self._books: dict[str, Book] = {}  # built since the asset's latest `put`

    def put(self, snap: BookSnapshot | LazyBookSnapshot) -> None:
        """Take `snap` as its asset's book from now on (built on first read; a lazily read
        snapshot's levels are decoded then)."""
        self._snaps[snap.asset_id] = snap
        self._books.pop(snap.asset_id, None)

    def get(self, asset_id: str, default: Book | None = None) -> Book | None:
        b = self._books.get(asset_id)
        if b is not None:
            return b
        snap = self._snaps.get(asset_id)
        if snap is None:
            return default
        if type(snap) is LazyBookSnapshot:
            snap = snap.whole()
        b = self._books[asset_id] = Book.from_snapshot(snap)
        if self.mark_ingest and not snap.in_sync:  # ingest saw it go wrong: until resynced
            b.mark_out_of_sync("ingest", snap.ts_recv_ns)
        return b

    def __getitem__(self, asset_id: str) -> Book:
        b = self.get(asset_id)
        if b is None:
            raise KeyError(asset_id)
        return b

    def __contains__(self, asset_id: object) -> bool:
        return asset_id in self._snaps

    def __len__(self) -> int:
        return len(self._snaps)

    def pop(self, asset_id: str, default: Book | None = None) -> Book | None:
        """Forget the asset's book; the book (built now if it was not) or `default`."""
        b = self.get(asset_id, default)
        self._snaps.pop(asset_id, None)
        self._books.pop(asset_id, None)
        return b

    def keys(self) -> list[str]:
        return list(self._snaps)

    def values(self) -> list[Book]:
        return [self[a] for a in self._snaps]

    def items(self) -> list[tuple[str, Book]]:
        return [(a, self[a]) for a in self._snaps]
