"""Local L2 order books of Polymarket outcome tokens, built from market-channel events.

`L2Book` holds one token's levels; `BookSet` routes parsed events (`parsers.parse_clob`) to the
right book and returns the full `BookSnapshot` to publish (best level FIRST, per-asset `book_seq`).
A book is only trusted after a `book` snapshot: deltas for an unsynced book are dropped (counted)
instead of building a wrong book. A tick-size change snaps levels onto the new grid and marks the
book for resync until the next snapshot arrives. Transport-free: the backtest drives it too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from common.schema import BookDelta, BookSnapshot

PRICE_DP = 6  # prices are keyed rounded, so "0.5", ".50" and 0.5 are one level


def _key(p: float) -> float:
    return round(p, PRICE_DP)


@dataclass
class L2Book:
    asset_id: str
    market: str = ""
    bids: dict[float, float] = field(default_factory=dict)
    asks: dict[float, float] = field(default_factory=dict)
    tick_size: float = 0.01
    synced: bool = False  # True once a full snapshot was applied since (re)subscribe
    resync_since_ns: int = 0  # when a resync was asked for (tick change, mismatch); 0: none
    resync_reason: str = ""
    seq: int = 0
    ts_exchange_ns: int = 0
    ts_recv_ns: int = 0
    hash: str = ""

    def replace(self, snap: BookSnapshot) -> None:
        self.bids = {_key(p): s for p, s in snap.bids if s > 0}
        self.asks = {_key(p): s for p, s in snap.asks if s > 0}
        if snap.market:
            self.market = snap.market
        if snap.tick_size > 0:
            self.tick_size = snap.tick_size
        self.synced = True
        self.resync_since_ns = 0
        self.resync_reason = ""
        self.hash = snap.hash
        self._stamp(snap.ts_exchange_ns, snap.ts_recv_ns)

    def apply(self, delta: BookDelta) -> None:
        for ch in delta.changes:
            side = self.bids if ch.side == "BUY" else self.asks
            k = _key(ch.price)
            if ch.size > 0.0:
                side[k] = ch.size
            else:
                side.pop(k, None)
        self._stamp(delta.ts_exchange_ns, delta.ts_recv_ns)

    def snap_to_tick(self, new_tick: float) -> None:
        """Move levels onto the new grid (bids down, asks up; merged sizes add up)."""
        self.tick_size = new_tick
        for attr, rounder in (("bids", math.floor), ("asks", math.ceil)):
            snapped: dict[float, float] = {}
            for p, s in getattr(self, attr).items():
                q = _key(rounder(round(p / new_tick, 6)) * new_tick)
                q = min(max(q, new_tick), _key(1.0 - new_tick))
                snapped[q] = snapped.get(q, 0.0) + s
            setattr(self, attr, snapped)

    def _stamp(self, ts_exchange_ns: int, ts_recv_ns: int) -> None:
        self.seq += 1
        if ts_exchange_ns:
            self.ts_exchange_ns = ts_exchange_ns
        self.ts_recv_ns = ts_recv_ns

    @property
    def best_bid(self) -> float | None:
        return max(self.bids) if self.bids else None

    @property
    def best_ask(self) -> float | None:
        return min(self.asks) if self.asks else None

    def snapshot(self) -> BookSnapshot:
        bids = sorted(self.bids.items(), key=lambda lv: -lv[0])
        asks = sorted(self.asks.items())
        return BookSnapshot(
            asset_id=self.asset_id,
            best_bid=bids[0][0] if bids else None,
            best_ask=asks[0][0] if asks else None,
            bids=bids,
            asks=asks,
            ts_exchange_ns=self.ts_exchange_ns,
            ts_recv_ns=self.ts_recv_ns,
            market=self.market,
            tick_size=self.tick_size,
            book_seq=self.seq,
            hash=self.hash,
        )

    def levels(self) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """(bids, asks), best first: what a venue's true-state view is compared against."""
        return sorted(self.bids.items(), key=lambda lv: -lv[0]), sorted(self.asks.items())


@dataclass
class BookStats:
    snapshots: int = 0
    deltas: int = 0
    dropped_unsynced: int = 0  # deltas for a book without a snapshot since (re)subscribe
    dropped_unknown: int = 0  # events for assets we do not follow
    tick_changes: int = 0
    mismatches: int = 0  # our best differs from the venue's stated best


class BookSet:
    """The books of every followed asset. Feed it parsed events; publish what it returns."""

    def __init__(self) -> None:
        self.books: dict[str, L2Book] = {}
        self.stats = BookStats()

    def follow(self, asset_id: str, tick_size: float = 0.01) -> None:
        if asset_id not in self.books:
            self.books[asset_id] = L2Book(asset_id, tick_size=tick_size)

    def release(self, asset_id: str) -> None:
        self.books.pop(asset_id, None)

    def unsync(self, asset_ids: list[str] | None = None) -> None:
        """After a reconnect: nothing is trusted until the venue's next snapshot."""
        for a in asset_ids if asset_ids is not None else list(self.books):
            b = self.books.get(a)
            if b is not None:
                b.synced = False

    def on_snapshot(self, snap: BookSnapshot) -> BookSnapshot | None:
        b = self.books.get(snap.asset_id)
        if b is None:
            self.stats.dropped_unknown += 1
            return None
        b.replace(snap)
        self.stats.snapshots += 1
        return b.snapshot()

    def on_delta(self, delta: BookDelta, now_ns: int = 0) -> BookSnapshot | None:
        b = self.books.get(delta.asset_id)
        if b is None:
            self.stats.dropped_unknown += 1
            return None
        if not b.synced:
            self.stats.dropped_unsynced += 1
            return None
        b.apply(delta)
        self.stats.deltas += 1
        self.check_best(b, delta.best_bid, delta.best_ask, now_ns or delta.ts_recv_ns)
        return b.snapshot()

    def on_tick_size(self, asset_id: str, new_tick: float, now_ns: int) -> BookSnapshot | None:
        b = self.books.get(asset_id)
        if b is None:
            self.stats.dropped_unknown += 1
            return None
        self.stats.tick_changes += 1
        b.snap_to_tick(new_tick)
        b.resync_since_ns = now_ns or 1
        b.resync_reason = "tick_size_change"
        if not b.synced:
            return None
        b._stamp(0, now_ns)
        return b.snapshot()

    def check_best(
        self, b: L2Book, best_bid: float | None, best_ask: float | None, now_ns: int
    ) -> bool:
        """Compare with the venue's stated top of book; on mismatch ask for a resync.

        The venue states an empty side as bid 0 / ask 1 (or null), so those mean 'empty'."""
        if best_bid is None and best_ask is None:
            return True
        ours_b, ours_a = b.best_bid, b.best_ask
        vb = None if best_bid is None or best_bid <= 0.0 else _key(best_bid)
        va = None if best_ask is None or best_ask >= 1.0 else _key(best_ask)
        ok = vb == ours_b and va == ours_a
        if not ok and b.synced:
            self.stats.mismatches += 1
            if not b.resync_since_ns:
                b.resync_since_ns = now_ns or 1
                b.resync_reason = "best_mismatch"
        elif ok and b.resync_reason == "best_mismatch":
            b.resync_since_ns = 0  # a transient disagreement that the venue's next frame fixed
            b.resync_reason = ""
        return ok

    def on_best(
        self, asset_id: str, best_bid: float | None, best_ask: float | None, now_ns: int
    ) -> None:
        b = self.books.get(asset_id)
        if b is not None and b.synced:
            self.check_best(b, best_bid, best_ask, now_ns)

    def needing_resync(self, now_ns: int, after_ns: int) -> list[str]:
        """Assets whose resync has waited `after_ns` without a fresh snapshot."""
        return [
            a
            for a, b in self.books.items()
            if b.resync_since_ns and now_ns - b.resync_since_ns >= after_ns
        ]
