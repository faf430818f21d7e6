"""Per-trade P&L (issue 12, item 6): every closed trade, by exit or by settlement, is one
TradeClosed with its P&L net of all its fees; the day's P&L is their sum."""

from __future__ import annotations

import pytest

from common import topics
from common.schema import MarketResolved, OrderFilled, TradeClosed, fill_key, settlement_key
from tests.strategy.test_strategy_core import END, NS, SLUG, START, enter_and_fill, make


def _closed(out: list) -> list[TradeClosed]:
    return [m for t, m in out if t == topics.TRADE_CLOSED]


def _sell(coid: str, price: float, size: float, fee: float, t: int) -> OrderFilled:
    return OrderFilled(
        client_order_id=coid,
        asset_id="U",
        side="SELL",
        price=price,
        size=size,
        fee=fee,
        ts_fill_ns=t,
        slug=SLUG,
        outcome="Up",
        trade_id=f"{coid}:{t}",
    )


def test_exit_and_settlement_each_close_one_trade_and_the_day_is_their_sum() -> None:
    core = make(max_trades_per_day=10, max_consecutive_losses=10)
    # trade 1: bought 10 @ 0.50 (fee 0.175), sold 4 @ 0.60 then 6 @ 0.62 (fees 0.0672, 0.0988)
    enter_and_fill(core)
    out = core.step(_sell("pe-x1", 0.60, 4.0, 0.0672, START + 110 * NS), 0)
    assert _closed(out) == []  # a partial exit does not close the trade
    last = _sell("pe-x2", 0.62, 6.0, 0.0988, START + 111 * NS)
    (t1,) = _closed(core.step(last, 0))
    pnl1 = 0.60 * 4 + 0.62 * 6 - 0.0672 - 0.0988 - (5.0 + 0.175)
    assert t1.how == "exit" and t1.closing_key == fill_key(last)
    assert t1.pnl == pytest.approx(pnl1) and t1.won is True
    assert t1.fees == pytest.approx(0.175 + 0.0672 + 0.0988)
    assert (t1.size, t1.entry_price, t1.exit_price) == (10.0, 0.5, pytest.approx(0.612))
    # trade 2: bought again in the same window and held to a lost settlement
    buy = OrderFilled(
        client_order_id="pe-2e",
        asset_id="U",
        side="BUY",
        price=0.40,
        size=10.0,
        fee=0.168,
        ts_fill_ns=START + 150 * NS,
        slug=SLUG,
        outcome="Up",
        trade_id="b2",
    )
    core.step(buy, 0)
    out = core.step(MarketResolved(slug=SLUG, winning_outcome="Down", ts_ns=END + NS), 0)
    (t2,) = _closed(out)
    assert t2.how == "settlement" and t2.closing_key == settlement_key(SLUG, "U")
    assert t2.won is False and t2.exit_price == 0.0
    assert t2.pnl == pytest.approx(-(4.0 + 0.168)) and t2.fees == pytest.approx(0.168)
    assert t1.day == t2.day == core.day
    assert core.daily_pnl == pytest.approx(t1.pnl + t2.pnl)
    assert core.risk_state().daily_pnl == pytest.approx(t1.pnl + t2.pnl, abs=1e-6)


def test_a_trade_closed_while_strategy_was_down_is_published_after_its_start(
    iso_env: dict[str, str], tmp_path
) -> None:
    """Fills in execution's ledger from while strategy was down are replayed at start; the
    trade they closed still reaches the bus (observe) with its P&L."""
    import time

    from services.execution.ledger import Ledger
    from tests.conftest import REPO, wait_for
    from tests.strategy.test_strategy_process import Harness

    now = time.time_ns()
    ledger = Ledger(iso_env["DATABASE_URL"].removeprefix("sqlite:"), venue="live")
    buy = OrderFilled(
        client_order_id="pe-9-1-1e",
        asset_id="U",
        side="BUY",
        price=0.5,
        size=10,
        fee=0.175,
        ts_fill_ns=now - 5 * NS,
        slug=SLUG,
        outcome="Up",
        trade_id="b9",
    )
    sell = _sell("pe-9-1-2x", 0.6, 10, 0.168, now - 4 * NS)
    ledger.record_fills(buy.client_order_id, [buy], now)
    ledger.record_fills(sell.client_order_id, [sell], now)
    ledger.close()
    cfg = tmp_path / "config.json"
    cfg.write_text((REPO / "config" / "config.json").read_text())
    h = Harness(iso_env, cfg)
    try:
        h.start()
        closed = wait_for(lambda: h.poll(TradeClosed), 10, what="the replayed TradeClosed")
        assert closed.closing_key == fill_key(sell) and closed.how == "exit"
        assert closed.pnl == pytest.approx(6.0 - 0.168 - 5.175)
        assert (closed.venue, closed.mode) == ("live", "paper")
    finally:
        h.close()
