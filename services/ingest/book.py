"""Ingest's books: the venue's market-channel events applied to `common.book.Book`, one per
followed outcome token, with every way a book can be wrong checked on every update.

`BookSet` routes parsed events (`parsers.parse_clob`) to the right book and returns the
`BookSnapshot` to publish (best level FIRST, per-asset `book_seq`, `in_sync`). A book is trusted
only between a venue `book` snapshot and the first sign that it is wrong, which marks it out of
sync AT ONCE (published with `in_sync=False`) and asks for a resync (`needing_resync`):
- the venue's own `best_bid`/`best_ask` (on `price_change` entries and `best_bid_ask` events)
  differ from ours: the venue states them after the change (PROTOCOLS.md section 2; fixtures
  polymarket_docs price_change / live_2026 clob_ws_best_bid_ask), so a difference means we
  missed or misapplied an update;
- the book is crossed (best bid >= best ask), which a venue's book never is;
- a sequence problem: an update older than the last one applied to this book (the venue's
  `timestamp` is per market and only grows; a smaller one means reordering or a replay. Not a
  documented venue rule: the conservative reading);
- a tick-size change (prices snapped to the new grid; depth may be merged wrongly).
Deltas for an out-of-sync book are dropped (counted) until the next snapshot. A published book
is never crossed: an out-of-sync book is published trimmed to the venue's stated best prices
(or, without them, with the overlapping levels left out). Transport-free: the backtest drives it.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.book import Book, price_key
from common.schema import BookSnapshot
from services.ingest.parsers import BookDelta

# out-of-sync reasons that ask for a resync at once; the others (a tick-size change) first give
# the venue `after_ns` to send its own snapshot
RESYNC_AT_ONCE = ("best_mismatch", "crossed", "sequence")


@dataclass
class BookStats:
    """Counters of everything the books saw (published in ingest's heartbeat `book_stats`)."""

    snapshots: int = 0
    deltas: int = 0
    dropped_unsynced: int = 0  # deltas for a book without a snapshot since it went out of sync
    dropped_unknown: int = 0  # events for assets we do not follow
    tick_changes: int = 0
    mismatches: int = 0  # our best differs from the venue's stated best (out of sync)
    crossed: int = 0  # best bid >= best ask after an update (out of sync)
    sequence: int = 0  # an update older than the book (out of sync)
    out_of_sync: int = 0  # every time a book went out of sync, whatever the reason
    resyncs_requested: int = 0
    resynced: int = 0  # snapshots that brought an out-of-sync book back


class BookSet:
    """The books of every followed asset. Feed it parsed events; publish what it returns."""

    def __init__(self) -> None:
        self.books: dict[str, Book] = {}
        self.stats = BookStats()
        self._asked_ns: dict[str, int] = {}  # asset -> when its last resync was requested

    def follow(self, asset_id: str, tick_size: float = 0.01) -> None:
        if asset_id not in self.books:
            self.books[asset_id] = Book(asset_id, tick_size=tick_size)

    def release(self, asset_id: str) -> None:
        self.books.pop(asset_id, None)
        self._asked_ns.pop(asset_id, None)

    def unsync(self, asset_ids: list[str] | None = None) -> None:
        """After a (re)subscribe: nothing is trusted until the venue's next snapshot (which a
        subscription brings by itself, so no resync is asked for)."""
        for a in asset_ids if asset_ids is not None else list(self.books):
            b = self.books.get(a)
            if b is not None:
                b.in_sync = False

    # --- events ---------------------------------------------------------------------------------
    def on_snapshot(self, snap: BookSnapshot) -> BookSnapshot | None:
        b = self.books.get(snap.asset_id)
        if b is None:
            self.stats.dropped_unknown += 1
            return None
        if b.resync_since_ns:
            self.stats.resynced += 1
        b.apply_snapshot(snap)
        self._asked_ns.pop(b.asset_id, None)
        self.stats.snapshots += 1
        if b.crossed:  # the venue's own snapshot crossed: still never published as such
            self._out_of_sync(b, "crossed", snap.ts_recv_ns)
        return publishable(b)

    def on_delta(self, delta: BookDelta, now_ns: int = 0) -> BookSnapshot | None:
        b = self.books.get(delta.asset_id)
        if b is None:
            self.stats.dropped_unknown += 1
            return None
        if not b.in_sync:
            self.stats.dropped_unsynced += 1
            return None
        now_ns = now_ns or delta.ts_recv_ns
        if delta.ts_exchange_ns and delta.ts_exchange_ns < b.ts_exchange_ns:
            self._out_of_sync(b, "sequence", now_ns)
            b.stamp(0, delta.ts_recv_ns)
            return publishable(b)
        b.apply_changes(delta.changes, delta.ts_exchange_ns, delta.ts_recv_ns)
        self.stats.deltas += 1
        self.check(b, delta.best_bid, delta.best_ask, now_ns)
        return publishable(b, delta.best_bid, delta.best_ask)

    def on_tick_size(self, asset_id: str, new_tick: float, now_ns: int) -> BookSnapshot | None:
        b = self.books.get(asset_id)
        if b is None:
            self.stats.dropped_unknown += 1
            return None
        self.stats.tick_changes += 1
        was_in_sync = b.in_sync
        b.snap_to_tick(new_tick)
        self._out_of_sync(b, "tick_size_change", now_ns)
        if not was_in_sync:
            return None
        b.stamp(0, now_ns)
        return publishable(b)

    def on_best(
        self, asset_id: str, best_bid: float | None, best_ask: float | None, now_ns: int
    ) -> BookSnapshot | None:
        """The venue's `best_bid_ask` event: checked like a delta's stated bests. Returns the
        book to publish when this event put it out of sync, else None."""
        b = self.books.get(asset_id)
        if b is None or not b.in_sync:
            return None
        if self.check(b, best_bid, best_ask, now_ns):
            return None
        b.stamp(0, now_ns)
        return publishable(b, best_bid, best_ask)

    # --- checks ---------------------------------------------------------------------------------
    def check(self, b: Book, best_bid: float | None, best_ask: float | None, now_ns: int) -> bool:
        """After an update: crossed, or the venue's stated top of book differs from ours, marks
        the book out of sync at once. True if the book is still in sync.

        The venue states an empty side as bid 0 / ask 1 (or null), so those mean 'empty'; an ask
        of 0 can only mean empty too (no one sells at 0), whatever form a venue uses for it."""
        if b.crossed:
            self._out_of_sync(b, "crossed", now_ns)
        if best_bid is not None or best_ask is not None:
            vb = None if best_bid is None or best_bid <= 0.0 else price_key(best_bid)
            va = None if best_ask is None or not 0.0 < best_ask < 1.0 else price_key(best_ask)
            if (vb, va) != (b.best_bid, b.best_ask):
                self.stats.mismatches += 1
                self._out_of_sync(b, "best_mismatch", now_ns)
        return b.in_sync

    def _out_of_sync(self, b: Book, reason: str, now_ns: int) -> None:
        if reason == "crossed":
            self.stats.crossed += 1
        elif reason == "sequence":
            self.stats.sequence += 1
        if b.in_sync or not b.resync_since_ns:
            self.stats.out_of_sync += 1
        b.mark_out_of_sync(reason, now_ns)

    def needing_resync(self, now_ns: int, after_ns: int) -> list[str]:
        """Assets to resync now: out of sync for a reason in `RESYNC_AT_ONCE` and not asked yet,
        or waiting `after_ns` since it went out of sync (or since the last request)."""
        out = []
        for a, b in self.books.items():
            if not b.resync_since_ns:
                continue
            asked = self._asked_ns.get(a)
            if asked is not None:
                due = now_ns - asked >= after_ns
            else:
                due = b.resync_reason in RESYNC_AT_ONCE or now_ns - b.resync_since_ns >= after_ns
            if due:
                out.append(a)
        return out

    def resync_requested(self, asset_ids: list[str], now_ns: int) -> None:
        """The runner asked the venue for fresh snapshots of these assets."""
        for a in asset_ids:
            b = self.books.get(a)
            if b is not None:
                b.in_sync = False
                self._asked_ns[a] = now_ns
                self.stats.resyncs_requested += 1


def publishable(
    b: Book, best_bid: float | None = None, best_ask: float | None = None
) -> BookSnapshot:
    """The book as published: `in_sync` as the book is; an out-of-sync book is trimmed so it is
    never crossed (to the venue's stated best prices when known, else without the overlap)."""
    snap = b.snapshot()
    if b.in_sync:
        return snap  # `in_sync` defaults to True
    bids, asks = snap.bids, snap.asks
    vb = None if best_bid is None or best_bid <= 0.0 else price_key(best_bid)
    va = None if best_ask is None or not 0.0 < best_ask < 1.0 else price_key(best_ask)
    if vb is not None:
        bids = [lv for lv in bids if lv[0] <= vb]
    if va is not None:
        asks = [lv for lv in asks if lv[0] >= va]
    if bids and asks and bids[0][0] >= asks[0][0]:
        top_bid, top_ask = bids[0][0], asks[0][0]
        bids = [lv for lv in bids if lv[0] < top_ask]
        asks = [lv for lv in asks if lv[0] > top_bid]
    return BookSnapshot(
        asset_id=snap.asset_id,
        best_bid=bids[0][0] if bids else None,
        best_ask=asks[0][0] if asks else None,
        bids=bids,
        asks=asks,
        ts_exchange_ns=snap.ts_exchange_ns,
        ts_recv_ns=snap.ts_recv_ns,
        market=snap.market,
        tick_size=snap.tick_size,
        book_seq=snap.book_seq,
        hash=snap.hash,
        in_sync=b.in_sync,
    )
