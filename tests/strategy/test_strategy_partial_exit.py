"""A stop-loss bigger than the bid side (the tester's repro, fixb): strategy's FAK exit goes through
the paper executor, which fills what the bids hold at or better than the limit and kills the rest
(FAK = fill-and-kill: docs.polymarket.com concepts/order-lifecycle "Order Types"). The position is
reduced, stays open, and the rest is sold by further exits, one attempt a second while exits get
something, backing off while they get nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from common import money, topics
from common.config import StrategyConfig
from common.schema import BookSnapshot, MarketInfo, OrderIntent, OrderRejected
from services.execution.core import ExecutionCore
from services.execution.ledger import Ledger
from services.execution.switches import TradingMode
from services.strategy.core import EXIT_RETRY_MAX_NS, StrategyCore

NS = 1_000_000_000
MS = 1_000_000
START = 1_767_225_600 * NS + 3600 * NS
END = START + 300 * NS
SLUG = "btc-updown-5m-x"
ASKS = [(0.002, 512.62), (0.003, 1000.0)]
BIDS = [(0.003, 40.0), (0.002, 100.0), (0.001, 26.41)]  # 166.41 shares


def book(t: int, bids: list[tuple[float, float]], asks: list[tuple[float, float]] = ASKS) -> Any:
    return BookSnapshot(
        asset_id="U",
        best_bid=bids[0][0] if bids else None,
        best_ask=asks[0][0] if asks else None,
        bids=bids,
        asks=asks,
        ts_exchange_ns=t,
        ts_recv_ns=t,
        tick_size=0.001,
    )


class Pair:
    """Strategy and the paper executor wired as the bus wires them: books to both, strategy's
    intents to execution, execution's acks, fills and rejects back to strategy."""

    def __init__(self, tmp: Path) -> None:
        self.ledger = Ledger(tmp / "trader.db")
        self.exe = ExecutionCore(self.ledger, TradingMode(True, False, False))
        cfg = StrategyConfig(
            take_profit_pct=0.05,
            stop_loss_pct=0.05,
            stake_per_trade_usd=2,
            max_entries_per_window=3,
        )
        self.strat = StrategyCore(cfg, None)
        m = MarketInfo(
            slug=SLUG,
            condition_id="0xc",
            up_token_id="U",
            down_token_id="D",
            window_start_ns=START,
            window_end_ns=END,
            ts_recv_ns=START,
            fee_rate=0.07,
            tick_size=0.001,
        )
        self.strat.step(m, 0)
        self.exe.step(m, 0)
        self.sent: list[OrderIntent] = []
        self.back: list[Any] = []
        self.closed: list[Any] = []

    def to_strategy(self, msgs: list[tuple[str, Any]], t: int) -> None:
        for topic, msg in msgs:
            if topic in (topics.ACK, topics.FILL, topics.REJECT):
                self.back.append(msg)
                self.route(self.strat.step(msg, t), t)

    def route(self, out: list[tuple[str, Any]], t: int) -> None:
        for topic, msg in out:
            if topic == topics.TRADE_CLOSED:
                self.closed.append(msg)
            if topic == topics.ORDER_INTENT:
                self.sent.append(msg)
                self.to_strategy(self.exe.step(msg, t), t)

    def book(self, t: int, bids: list[tuple[float, float]]) -> None:
        b = book(t, bids)
        self.to_strategy(self.exe.step(b, t), t)
        self.route(self.strat.step(b, t), t)

    def exits(self) -> list[OrderIntent]:
        return [i for i in self.sent if i.side == "SELL"]


@pytest.fixture
def pair(tmp_path: Path):
    p = Pair(tmp_path)
    yield p
    p.ledger.close()


def test_a_stop_loss_bigger_than_the_bids_reduces_the_position_then_sells_the_rest(pair) -> None:
    t = START + 100 * NS
    pair.book(t, [(0.001, 1.0)])
    # the entry as the tester saw it: a $2.00 collateral-sized FAK BUY at 0.022 takes 837.54
    # shares at 0.002/0.003 (tests/common/test_money.py works it out); sent under strategy's
    # client prefix so strategy takes the fills as its own
    entry = OrderIntent(
        client_order_id=f"{pair.strat.client_prefix}-entry",
        slug=SLUG,
        asset_id="U",
        outcome="Up",
        side="BUY",
        order_type="FAK",
        limit_price=0.022,
        size=90.91,
        expires_ns=t + 2 * NS,
        ts_intent_ns=t,
        tick_size=0.001,
        fee_rate=0.07,
    )
    pair.to_strategy(pair.exe.step(entry, t), t)
    assert pair.strat.position is not None
    assert pair.strat.position.size == pytest.approx(837.54)
    # the bids come back at 166.41 shares: cost 0.00256 a share, the bids' VWAP 0.00208 is a
    # loss far past 5 %, so strategy sells all 837.54 with a FAK at the 0.001 floor
    t += 200 * MS
    pair.book(t, BIDS)
    (first,) = pair.exits()
    assert (first.order_type, first.limit_price, first.size) == ("FAK", 0.001, 837.54)
    assert first.reason == "stop_loss"
    # ... which fills the 166.41 (no rejection), and the position keeps the other 671.13
    assert not [m for m in pair.back if isinstance(m, OrderRejected)]
    assert pair.ledger.order(first.client_order_id)["status"] == "partial"
    assert pair.strat.position is not None
    assert pair.strat.position.size == pytest.approx(671.13)
    assert pair.exe.positions["U"].size == pytest.approx(671.13)
    # no new attempt inside the second after it, even with bids there again
    t += 500 * MS
    pair.book(t, [(0.002, 300.0)])
    assert len(pair.exits()) == 1
    # a second later the next exit sells the remainder into what the book holds
    t += 600 * MS
    pair.book(t, [(0.002, 300.0)])
    assert len(pair.exits()) == 2
    second = pair.exits()[1]
    assert second.size == pytest.approx(671.13) and second.reason == "stop_loss"
    assert pair.strat.position is not None
    assert pair.strat.position.size == pytest.approx(371.13)
    # then a bid side big enough: the position is closed, one trade counted
    t += 1100 * MS
    pair.book(t, [(0.002, 1000.0)])
    assert len(pair.exits()) == 3
    assert pair.strat.position is None
    assert pair.exe.positions.get("U") is None or pair.exe.positions["U"].size == pytest.approx(0)
    assert pair.ledger.order(pair.exits()[2].client_order_id)["status"] == "filled"
    (closed,) = pair.closed  # three exits, one trade: 837.54 bought, all sold
    assert (closed.how, closed.size) == ("exit", pytest.approx(837.54))


def test_exits_that_get_nothing_back_off_and_a_fill_resets_the_wait(pair) -> None:
    """A venue that finds nothing for the exits (its book differs from ours) is not asked once a
    second for ever: each exit without any fill doubles the wait (1, 2, 4, 8 s), up to
    EXIT_RETRY_MAX_NS; the next exit that sells something resets it."""
    t = START + 100 * NS
    pair.book(t, [(0.001, 1.0)])
    entry = OrderIntent(
        client_order_id=f"{pair.strat.client_prefix}-entry",
        slug=SLUG,
        asset_id="U",
        outcome="Up",
        side="BUY",
        order_type="FAK",
        limit_price=0.022,
        size=90.91,
        expires_ns=t + 2 * NS,
        ts_intent_ns=t,
        tick_size=0.001,
        fee_rate=0.07,
    )
    pair.to_strategy(pair.exe.step(entry, t), t)
    # strategy sees bids; execution's book has none at or above the exit's limit, so each FAK
    # is refused with the venue's own answer
    attempts: list[int] = []
    t0 = t
    for i in range(1, 200):
        t = t0 + i * 100 * MS
        b = book(t, BIDS)
        pair.exe.step(book(t, []), t)  # execution's view: an empty bid side
        n = len(pair.exits())
        pair.route(pair.strat.step(b, t), t)
        if len(pair.exits()) > n:
            attempts.append(t)
    rejects = [m for m in pair.back if isinstance(m, OrderRejected)]
    assert rejects and all(r.reason.startswith(money.ERR_FAK_NOT_FILLED) for r in rejects)
    gaps = [(b - a) / NS for a, b in zip(attempts, attempts[1:], strict=False)]
    assert gaps[:4] == pytest.approx([1.0, 2.0, 4.0, 8.0], abs=0.11)
    assert max(gaps) <= EXIT_RETRY_MAX_NS / NS + 0.11
    assert len(attempts) <= 6  # ~19.9 s: 20 refusals before the fix
    # bids at the venue again: the next exit sells some, and the one after goes a second later
    last = attempts[-1]
    t = last + EXIT_RETRY_MAX_NS + 50 * MS
    pair.book(t, [(0.002, 100.0)])
    assert pair.strat.position is not None
    assert pair.strat.position.size == pytest.approx(737.54)
    n = len(pair.exits())
    t += 1050 * MS
    pair.book(t, [(0.002, 100.0)])
    assert len(pair.exits()) == n + 1
    assert pair.strat.position.size == pytest.approx(637.54)


def test_dust_below_a_hundredth_of_a_share_is_not_sent(pair) -> None:
    """A live BUY can take 4-decimal shares; the venue sells 2-decimal shares, so an exit leaves
    up to 0.0099 behind, which no SELL can carry: it is held to settlement, not retried."""
    t = START + 100 * NS
    pair.book(t, [(0.001, 1.0)])
    from common.schema import OrderFilled

    pair.strat.step(
        OrderFilled(
            client_order_id=f"{pair.strat.client_prefix}-entry",
            asset_id="U",
            side="BUY",
            price=0.5,
            size=0.0032,
            fee=0.0,
            ts_fill_ns=t,
            slug=SLUG,
            outcome="Up",
        ),
        t,
    )
    assert pair.strat.position is not None
    for i in range(1, 30):
        pair.route(pair.strat.step(book(t + i * 100 * MS, [(0.1, 50.0)]), t), t)
    assert pair.exits() == []
