"""Restart recovery from execution's ledger: fills and settlements that happened while strategy
was down are replayed from SQLite into the core, once."""

from __future__ import annotations

from pathlib import Path

import pytest

from common import db
from common.config import StrategyConfig
from common.ledger import ledger_fills, ledger_settlements
from common.schema import MarketInfo
from services.execution.ledger import MIGRATIONS as EXECUTION_MIGRATIONS
from services.strategy.core import StrategyCore
from services.strategy.store import StateStore

NS = 1_000_000_000
START = 1_767_225_600 * NS
SLUG = "btc-updown-5m-1767225600"


def test_fill_and_settlement_missed_while_down(tmp_path: Path) -> None:
    path = tmp_path / "trader.db"
    store = StateStore(path)
    conn = db.connect(path)
    db.migrate(conn, "execution", EXECUTION_MIGRATIONS)  # execution's real schema
    conn.execute(
        "INSERT INTO fills(trade_id, client_order_id, slug, asset_id, outcome, side, price, size,"
        " fee, ts_fill_ns, dry_run) VALUES ('t1', 'pe-1-2-3e', ?, 'U', 'Up', 'BUY', 0.5, 10,"
        " 0.175, ?, 1)",
        (SLUG, START + 100 * NS),
    )
    conn.execute(
        "INSERT INTO fills(trade_id, client_order_id, slug, asset_id, outcome, side, price, size,"
        " fee, ts_fill_ns, dry_run) VALUES ('t0', 'other-1', ?, 'U', 'Up', 'BUY', 0.5, 99,"
        " 0.1, ?, 1)",
        (SLUG, START + 100 * NS),
    )
    core = StrategyCore(StrategyConfig(), store.load())
    for f in ledger_fills(store.conn, core.client_prefix, 0):
        core.step(f, 0)
    assert core.position is not None and core.position.size == 10  # not the other bot's fill
    assert core.position.window_end_ns == 0  # unknown until the market is seen again
    core.step(
        MarketInfo(
            slug=SLUG,
            condition_id="c",
            up_token_id="U",
            down_token_id="D",
            window_start_ns=START,
            window_end_ns=START + 300 * NS,
            ts_recv_ns=START,
        ),
        0,
    )
    assert core.position.window_end_ns == START + 300 * NS
    store.save(core.persistent(), core.now_ns)

    # restart: the same fill replayed again is not counted twice
    again = StrategyCore(StrategyConfig(), StateStore(path).load())
    for f in ledger_fills(store.conn, again.client_prefix, again.fill_watermark_ns - 60 * NS):
        again.step(f, 0)
    assert again.position is not None and again.position.size == 10
    assert ledger_settlements(store.conn, SLUG) == []
    conn.execute(
        "INSERT INTO settlements(slug, asset_id, outcome, won, size, payout, pnl, ts_ns) "
        "VALUES (?, 'U', 'Up', 1, 10, 1, 4.825, ?)",
        (SLUG, START + 400 * NS),
    )
    for s in ledger_settlements(store.conn, SLUG):
        again.step(s, 0)
    assert again.position is None
    assert again.daily_pnl == pytest.approx(10 - 5.175) and again.wins_today == 1


def test_position_rebuilt_from_the_ledger_takes_its_entry_orders_terms(tmp_path: Path) -> None:
    """After a restart with no md.market yet, the exit's fee schedule comes from the entry
    order execution recorded (its `orders` row), never a default of 0."""
    from common.ledger import ledger_order_terms
    from common.schema import OrderFilled, OrderIntent
    from services.execution.ledger import Ledger

    path = tmp_path / "trader.db"
    ledger = Ledger(path)
    intent = OrderIntent(
        client_order_id="pe-1-2-3e",
        slug=SLUG,
        asset_id="U",
        outcome="Up",
        side="BUY",
        order_type="FOK",
        limit_price=0.5,
        size=10,
        expires_ns=START + 200 * NS,
        ts_intent_ns=START + 100 * NS,
        tick_size=0.001,
        fee_rate=0.072,
        fee_exponent=1.0,
    )
    assert ledger.record_intent(intent, "dry_run", START + 100 * NS, "")
    fill = OrderFilled(
        client_order_id=intent.client_order_id,
        asset_id="U",
        side="BUY",
        price=0.5,
        size=10,
        fee=0.18,
        ts_fill_ns=START + 100 * NS,
        slug=SLUG,
        outcome="Up",
        trade_id="t1",
    )
    ledger.record_fills(intent.client_order_id, [fill], START + 100 * NS)
    store = StateStore(path)
    core = StrategyCore(StrategyConfig(), None)
    for f in ledger_fills(store.conn, core.client_prefix, 0):
        core.step(f, 0)
    p = core.position
    assert p is not None and p.fee_rate is None  # no market seen
    terms = ledger_order_terms(store.conn, p.entry_client_order_id)
    assert terms is not None
    p.take_terms(terms, "ledger")
    assert (p.fee_rate, p.tick_size, p.terms_source) == (0.072, 0.001, "ledger")
    assert ledger_order_terms(store.conn, "no-such-order") is None
