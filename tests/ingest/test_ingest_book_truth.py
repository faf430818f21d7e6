"""Books that are right or marked not right (issue 14): ingest never publishes a crossed book; a
book whose venue-stated best prices disagree with ours, that crosses, or that gets an update out
of order is published `in_sync=False` at once, a resync is asked for, and strategy does not act
on it until the venue's fresh snapshot is in.

The issue's input: bids 0.50/0.51/0.52, asks 0.53-0.56; then a `price_change` BUY 0.53 size
78.68 whose own best_bid 0.53, best_ask 0.54 (the ask at 0.53 was taken; its removal never came).
Before the fix the published book had best bid 0.53 = best ask 0.53 and a paper FOK BUY
9.43 @ 0.53 filled against the stale ask."""

from __future__ import annotations

import json

from common import topics
from common.config import StrategyConfig
from common.core import Timer
from common.schema import BookSnapshot, BtcTrade, Decision, MarketInfo, SignalScore
from services.ingest.core import IngestCore
from services.ingest.parsers import parse_clob

S = 1_000_000_000
START = 1_800_000_000 * S
TOKEN, OTHER = "tok-up", "tok-down"


def market() -> MarketInfo:
    return MarketInfo(
        slug=f"btc-updown-5m-{START // S}",
        condition_id="0xm",
        up_token_id=TOKEN,
        down_token_id=OTHER,
        window_start_ns=START,
        window_end_ns=START + 300 * S,
        ts_recv_ns=START,
        fee_rate=0.07,
    )


def book_frame(asset: str, bids: list[str], asks: list[str], ts_ms: int) -> str:
    # venue order: best LAST on both sides
    return json.dumps(
        {
            "event_type": "book",
            "asset_id": asset,
            "market": "0xm",
            "timestamp": str(ts_ms),
            "bids": [{"price": p, "size": "100"} for p in sorted(bids)],
            "asks": [{"price": p, "size": "100"} for p in sorted(asks, reverse=True)],
            "tick_size": "0.01",
        }
    )


def issue_price_change(ts_ms: int) -> str:
    return json.dumps(
        {
            "event_type": "price_change",
            "market": "0xm",
            "timestamp": str(ts_ms),
            "price_changes": [
                {
                    "asset_id": TOKEN,
                    "price": "0.53",
                    "size": "78.68",
                    "side": "BUY",
                    "hash": "h",
                    "best_bid": "0.53",
                    "best_ask": "0.54",
                }
            ],
        }
    )


def books(out: list) -> list[BookSnapshot]:
    return [m for t, m in out if isinstance(m, BookSnapshot) and t == topics.book_topic(TOKEN)]


def feed(core: IngestCore, frame: str, t: int) -> list:
    return core.on_clob(parse_clob(frame, t), t)


def test_issue_crossed_book_is_never_published_and_marked_out_of_sync() -> None:
    core = IngestCore()
    t0 = START + 100 * S
    core.step(market(), t0)
    (first,) = books(
        feed(
            core,
            book_frame(
                TOKEN, ["0.50", "0.51", "0.52"], ["0.53", "0.54", "0.55", "0.56"], t0 // 10**6
            ),
            t0,
        )
    )
    assert first.in_sync and (first.best_bid, first.best_ask) == (0.52, 0.53)
    t1 = t0 + S // 10
    (bad,) = books(feed(core, issue_price_change(t1 // 10**6), t1))
    assert not bad.in_sync
    assert bad.best_bid is not None and bad.best_ask is not None
    assert bad.best_bid < bad.best_ask, (bad.best_bid, bad.best_ask)
    assert (bad.best_bid, bad.best_ask) == (0.53, 0.54)  # trimmed to the venue's own word
    st = core.books.stats
    assert (st.crossed, st.mismatches, st.out_of_sync) == (1, 1, 1)
    assert core.books.needing_resync(t1, S) == [TOKEN]  # resync asked for at once
    # the periodic republish does not re-send a book known to be wrong
    assert not books(core.step(Timer(t1 + 2 * S), t1 + 2 * S))
    # the resync: the venue's fresh snapshot, published in sync again
    t2 = t1 + S // 5
    (good,) = books(
        feed(
            core,
            book_frame(
                TOKEN, ["0.50", "0.51", "0.52", "0.53"], ["0.54", "0.55", "0.56"], t2 // 10**6
            ),
            t2,
        )
    )
    assert good.in_sync and (good.best_bid, good.best_ask) == (0.53, 0.54)
    assert core.books.stats.resynced == 1


def test_out_of_order_update_and_best_bid_ask_event_mark_out_of_sync() -> None:
    core = IngestCore()
    t0 = START + 100 * S
    core.step(market(), t0)
    feed(core, book_frame(TOKEN, ["0.50"], ["0.53"], t0 // 10**6), t0)
    late = json.loads(issue_price_change(t0 // 10**6 - 5))  # older than the book
    late["price_changes"][0].update(price="0.49", size="5", best_bid="0.50", best_ask="0.53")
    (snap,) = books(feed(core, json.dumps(late), t0 + 1))
    assert not snap.in_sync and core.books.stats.sequence == 1
    assert core.books.books[TOKEN].size_at("BUY", 0.49) == 0.0  # not applied
    feed(core, book_frame(TOKEN, ["0.50"], ["0.53"], t0 // 10**6 + 1), t0 + 2)
    bba = json.dumps(
        {
            "event_type": "best_bid_ask",
            "market": "0xm",
            "asset_id": TOKEN,
            "best_bid": "0.51",
            "best_ask": "0.53",
            "spread": "0.02",
            "timestamp": str(t0 // 10**6 + 2),
        }
    )
    (snap,) = books(feed(core, bba, t0 + 3))
    assert not snap.in_sync and core.books.stats.mismatches == 1


def test_strategy_refuses_to_enter_or_exit_on_an_out_of_sync_book() -> None:
    from services.strategy.core import StrategyCore

    ingest = IngestCore()
    strategy = StrategyCore(StrategyConfig())
    m = market()
    t0 = START + 100 * S
    for _topic, msg in ingest.step(m, t0):
        strategy.step(msg, 0)

    def publish(out: list) -> None:
        for _topic, msg in out:
            strategy.step(msg, 0)

    # only the Up token's book: the Down side cannot be the one entered instead (strategy
    # weighs both sides; the out-of-sync side must simply not be a candidate)
    core = ingest
    publish(
        feed(
            core,
            book_frame(
                TOKEN, ["0.50", "0.51", "0.52"], ["0.53", "0.54", "0.55", "0.56"], t0 // 10**6
            ),
            t0,
        )
    )
    t1 = t0 + S // 10
    publish(feed(core, issue_price_change(t1 // 10**6), t1))

    def signal(t: int) -> Decision:
        strategy.step(BtcTrade(price=85_000, size=1, ts_exchange_ns=t, ts_recv_ns=t), 0)
        s = SignalScore(
            slug=m.slug, p_up=0.75, side="Up", score=0.5, edge_up=0.2, edge_down=0.0, ts_ns=t
        )
        (d,) = [x for _, x in strategy.step(s, 0) if isinstance(x, Decision)]
        return d

    d = signal(t1 + 1)
    assert (d.action, d.reason) == ("skip", "book_out_of_sync")
    t2 = t1 + S // 5
    publish(
        feed(
            core,
            book_frame(
                TOKEN, ["0.50", "0.51", "0.52", "0.53"], ["0.54", "0.55", "0.56"], t2 // 10**6
            ),
            t2,
        )
    )
    d = signal(t2 + 1)
    assert d.action == "enter" and d.details["ask"] == 0.54


def test_paper_executor_does_not_fill_against_an_out_of_sync_book(tmp_path) -> None:  # noqa: ANN001
    """The issue's paper FOK BUY 9.43 @ 0.53, against what ingest publishes after the bad
    `price_change`: rejected (`book_out_of_sync`), never filled at the stale 0.53 ask; after the
    resync it fills at the venue's real ask."""
    from common.schema import OrderIntent, OrderRejected
    from services.execution.core import ExecutionCore
    from services.execution.ledger import Ledger
    from services.execution.switches import TradingMode

    ingest = IngestCore()
    ledger = Ledger(tmp_path / "trader.db")
    execution = ExecutionCore(ledger, TradingMode(True, False, False))
    t0 = START + 100 * S
    ingest.step(market(), t0)

    def publish(out: list) -> None:
        for _topic, msg in out:
            execution.step(msg, 0)

    publish(
        feed(
            ingest,
            book_frame(
                TOKEN, ["0.50", "0.51", "0.52"], ["0.53", "0.54", "0.55", "0.56"], t0 // 10**6
            ),
            t0,
        )
    )
    t1 = t0 + S // 10
    publish(feed(ingest, issue_price_change(t1 // 10**6), t1))

    def order(coid: str, t: int) -> list:
        it = OrderIntent(
            client_order_id=coid,
            slug=market().slug,
            asset_id=TOKEN,
            outcome="Up",
            side="BUY",
            order_type="FOK",
            limit_price=0.53,
            size=9.43,
            expires_ns=t + 2 * S,
            ts_intent_ns=t,
            fee_rate=0.07,
        )
        return execution.step(it, t)

    out = order("o1", t1 + 1)
    (rej,) = [m for _, m in out if isinstance(m, OrderRejected)]
    assert rej.code == "book_out_of_sync"
    assert ledger.fills_of("o1") == []
    t2 = t1 + S // 5
    publish(
        feed(
            ingest,
            book_frame(
                TOKEN, ["0.50", "0.51", "0.52", "0.53"], ["0.54", "0.55", "0.56"], t2 // 10**6
            ),
            t2,
        )
    )
    out = order("o2", t2 + 1)  # the real ask is 0.54: a FOK at 0.53 cannot fill
    (rej,) = [m for _, m in out if isinstance(m, OrderRejected)]
    assert rej.code != "book_out_of_sync"
    ledger.close()
