"""The one order book (common/book.py): snapshot, level change, best, crossed, in_sync, depth,
walk, consume, tick snapping, and its bus snapshot."""

from __future__ import annotations

from typing import NamedTuple

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.book import Book, SnapshotBooks
from common.schema import BookSnapshot, LazyBookSnapshot


class LevelChange(NamedTuple):
    """A `price_change` entry as ingest's parser makes one (`services.ingest.parsers`)."""

    side: str
    price: float
    size: float


def _snap(bids: list[tuple[float, float]], asks: list[tuple[float, float]]) -> BookSnapshot:
    return BookSnapshot(
        asset_id="tok",
        best_bid=None,
        best_ask=None,
        bids=bids,
        asks=asks,
        ts_exchange_ns=1_000,
        ts_recv_ns=2_000,
        market="0xc",
        tick_size=0.01,
        hash="h1",
    )


def test_snapshot_in_any_order_reads_best_first() -> None:
    # the venue lists the best level last; our bus lists it first: the book takes either
    b = Book.from_snapshot(
        _snap([(0.47, 10.0), (0.49, 4.0), (0.48, 0.0)], [(0.53, 1.0), (0.51, 3.0)])
    )
    assert b.in_sync
    assert b.bids == [(0.49, 4.0), (0.47, 10.0)]  # the 0-size level is not a level
    assert b.asks == [(0.51, 3.0), (0.53, 1.0)]
    assert (b.best_bid, b.best_ask) == (0.49, 0.51)
    assert b.spread == pytest.approx(0.02) and b.mid == pytest.approx(0.50)
    assert (b.market, b.hash, b.ts_exchange_ns, b.ts_recv_ns, b.seq) == (
        "0xc",
        "h1",
        1_000,
        2_000,
        1,
    )


def test_level_changes_set_totals_and_zero_removes() -> None:
    b = Book.from_snapshot(_snap([(0.49, 4.0)], [(0.51, 3.0)]))
    b.apply_changes(
        [
            LevelChange("BUY", 0.50, 2.0),
            LevelChange("SELL", 0.51, 0.0),
            LevelChange("SELL", 0.52, 7.0),
        ],
        ts_exchange_ns=3_000,
        ts_recv_ns=4_000,
    )
    assert b.bids == [(0.50, 2.0), (0.49, 4.0)]
    assert b.asks == [(0.52, 7.0)]
    assert b.seq == 2 and b.ts_recv_ns == 4_000
    b.set_level("BUY", "0.500", "5")  # text and float prices are one level
    assert b.size_at("BUY", 0.5) == 5.0 and len(b.bids) == 2


def test_crossed_when_best_bid_reaches_best_ask() -> None:
    b = Book.from_snapshot(_snap([(0.49, 4.0)], [(0.51, 3.0)]))
    assert not b.crossed
    b.set_level("BUY", 0.51, 1.0)
    assert b.crossed  # bid == ask: a venue book never shows that
    b.set_level("BUY", 0.51, 0.0)
    b.set_level("BUY", 0.55, 1.0)
    assert b.crossed
    assert not Book("x").crossed  # an empty book is not crossed


def test_in_sync_until_marked_then_next_snapshot() -> None:
    b = Book("tok")
    assert not b.in_sync  # nothing trusted before a snapshot
    b.apply_snapshot(_snap([(0.49, 4.0)], [(0.51, 3.0)]))
    assert b.in_sync and b.resync_since_ns == 0
    b.mark_out_of_sync("best_mismatch", 77)
    b.mark_out_of_sync("tick_size_change", 99)  # the first reason and time are kept
    assert not b.in_sync and (b.resync_since_ns, b.resync_reason) == (77, "best_mismatch")
    b.apply_snapshot(_snap([(0.48, 1.0)], [(0.52, 1.0)]))
    assert b.in_sync and (b.resync_since_ns, b.resync_reason) == (0, "")


def test_depth_and_walk_respect_the_limit() -> None:
    b = Book.from_snapshot(
        _snap([(0.49, 4.0), (0.48, 2.0), (0.47, 10.0)], [(0.50, 5.0), (0.51, 3.0), (0.52, 10.0)])
    )
    assert b.depth("BUY", 0.51) == 8.0
    assert b.depth("BUY") == 18.0
    assert b.depth("SELL", 0.48) == 6.0
    vwap, done = b.walk("SELL", 5.0)
    assert done == 5.0 and vwap == pytest.approx((4 * 0.49 + 1 * 0.48) / 5)
    vwap, done = b.walk("BUY", 100.0, limit=0.50)
    assert done == 5.0 and vwap == pytest.approx(0.50)
    assert b.walk("BUY", 1.0, limit=0.40) == (None, 0.0)


def test_consume_removes_what_a_taker_took() -> None:
    b = Book.from_snapshot(_snap([(0.49, 4.0)], [(0.50, 5.0), (0.51, 3.0), (0.52, 10.0)]))
    b.consume("BUY", [("0.50", "5"), ("0.51", "3"), ("0.52", "1.86")])
    assert b.asks == [(0.52, pytest.approx(8.14))]
    assert b.bids == [(0.49, 4.0)]


def test_snap_to_tick_never_improves_a_price() -> None:
    b = Book("tok", tick_size=0.001)
    b.replace([(0.493, 1.0), (0.491, 2.0)], [(0.507, 3.0), (0.509, 1.0)])
    b.snap_to_tick(0.01)
    assert b.bids == [(0.49, 3.0)]  # bids down, merged sizes add up
    assert b.asks == [(0.51, 4.0)]  # asks up
    with pytest.raises(ValueError, match="tick size"):
        b.snap_to_tick(0.0)


def test_bus_snapshot_is_best_first_with_seq() -> None:
    b = Book.from_snapshot(_snap([(0.47, 1.0), (0.49, 4.0)], [(0.53, 1.0), (0.51, 3.0)]))
    s = b.snapshot()
    assert s.bids == [(0.49, 4.0), (0.47, 1.0)] and s.asks == [(0.51, 3.0), (0.53, 1.0)]
    assert (s.best_bid, s.best_ask, s.book_seq, s.tick_size) == (0.49, 0.51, 1, 0.01)


def test_a_change_never_touches_the_snapshot_it_came_from() -> None:
    snap = _snap([(0.49, 4.0), (0.47, 1.0)], [(0.51, 3.0), (0.53, 1.0)])  # best first already
    b = Book.from_snapshot(snap)
    b.consume("BUY", [(0.51, 3.0)])
    b.set_level("BUY", 0.49, 0.0)
    assert b.asks == [(0.53, 1.0)] and b.bids == [(0.47, 1.0)]
    assert snap.asks == [(0.51, 3.0), (0.53, 1.0)] and snap.bids == [(0.49, 4.0), (0.47, 1.0)]
    assert b.size_at("SELL", "0.53") == 1.0 and b.total("BUY") == 1.0


def test_a_snapshot_out_of_order_is_sorted_and_its_empty_levels_dropped() -> None:
    b = Book.from_snapshot(_snap([(0.47, 1.0), (0.49, 0.0), (0.48, 2.0)], [(0.51, 3.0)]))
    assert b.bids == [(0.48, 2.0), (0.47, 1.0)]
    b.set_level("SELL", 0.50, 1.0)
    assert b.asks == [(0.50, 1.0), (0.51, 3.0)]


_price = st.integers(1, 99).map(lambda c: c / 100)
_op = st.one_of(
    st.tuples(
        st.just("set"),
        st.sampled_from(["BUY", "SELL"]),
        _price,
        st.sampled_from([0.0, 1.0, 2.5, 7.0]),
    ),
    st.tuples(st.just("read"), st.just(""), st.just(0.0), st.just(0.0)),
    st.tuples(st.just("snapshot"), st.just(""), st.just(0.0), st.just(0.0)),
    st.tuples(st.just("consume"), st.sampled_from(["BUY", "SELL"]), _price, st.just(1.0)),
)


@settings(max_examples=300, deadline=None)
@given(
    bids=st.dictionaries(_price, st.sampled_from([1.0, 3.0]), max_size=6),
    asks=st.dictionaries(_price, st.sampled_from([1.0, 3.0]), max_size=6),
    ops=st.lists(_op, max_size=40),
)
def test_level_changes_keep_the_best_first_lists_a_fresh_sort_would_give(
    bids: dict[float, float], asks: dict[float, float], ops: list[tuple[str, str, float, float]]
) -> None:
    """`set_level` updates a held best-first list in place of re-sorting it: after any mix of
    changes, reads, snapshots taken and liquidity consumed, the lists are what sorting the
    levels gives, and no snapshot taken earlier (nor the one the book came from) ever changes."""
    snap = _snap(sorted(bids.items(), reverse=True), sorted(asks.items()))
    b = Book.from_snapshot(snap)
    ref = {"BUY": dict(bids), "SELL": dict(asks)}
    taken = [(snap, list(snap.bids), list(snap.asks))]
    for what, side, price, size in ops:
        if what == "set":
            b.set_level(side, price, size)  # type: ignore[arg-type]
            if size > 0.0:
                ref[side][price] = size
            else:
                ref[side].pop(price, None)
        elif what == "consume":  # a taker BUY takes asks, a SELL takes bids
            levels = ref["SELL" if side == "BUY" else "BUY"]
            if price in levels:
                b.consume(side, [(price, size)])  # type: ignore[arg-type]
                left = levels[price] - size
                if left > 1e-9:
                    levels[price] = left
                else:
                    del levels[price]
        elif what == "snapshot":
            s = b.snapshot()
            taken.append((s, list(s.bids), list(s.asks)))
        else:  # a read builds the lists a later change then updates
            assert b.bids == sorted(ref["BUY"].items(), reverse=True)
            assert b.asks == sorted(ref["SELL"].items())
    assert b.bids == sorted(ref["BUY"].items(), reverse=True)
    assert b.asks == sorted(ref["SELL"].items())
    for s, sb, sa in taken:
        assert s.bids == sb and s.asks == sa


def test_snapshot_books_decode_a_lazy_snapshots_levels_when_read() -> None:
    """SnapshotBooks (strategy, execution) keeps a LazyBookSnapshot as it came off the bus and
    builds the same Book from it as from the whole snapshot, once, on first read; a bad level
    is found then (ValidationError), as the whole decode would have found it."""
    snap = _snap([(0.40, 10.0), (0.39, 5.0)], [(0.42, 7.0), (0.43, 1.0)])
    lazy = msgspec.msgpack.decode(msgspec.msgpack.encode(snap), type=LazyBookSnapshot)
    books, ref = SnapshotBooks(), SnapshotBooks()
    books.put(lazy)
    ref.put(snap)
    b = books["tok"]
    assert b is books["tok"] and (b.bids, b.asks) == (ref["tok"].bids, ref["tok"].asks)
    assert (b.best_bid, b.best_ask, b.in_sync) == (0.40, 0.42, True)
    bad = msgspec.structs.replace(snap, asks=[(-0.42, 7.0)])
    books.put(msgspec.msgpack.decode(msgspec.msgpack.encode(bad), type=LazyBookSnapshot))
    with pytest.raises(msgspec.ValidationError):
        books.get("tok")
