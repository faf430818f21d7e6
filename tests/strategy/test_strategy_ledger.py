"""Restart recovery from execution's ledger: fills and settlements that happened while strategy
was down are replayed from SQLite into the core, once."""

from __future__ import annotations

from pathlib import Path

import pytest

from common import db
from common.config import StrategyConfig
from common.schema import MarketInfo
from services.execution.ledger import MIGRATIONS as EXECUTION_MIGRATIONS
from services.strategy.core import StrategyCore
from services.strategy.store import StateStore, ledger_fills, ledger_settlements

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
        core.handle("exec.fill", f)
    assert core.position is not None and core.position.size == 10  # not the other bot's fill
    assert core.position.window_end_ns == 0  # unknown until the market is seen again
    core.handle(
        "md.market",
        MarketInfo(
            slug=SLUG,
            condition_id="c",
            up_token_id="U",
            down_token_id="D",
            window_start_ns=START,
            window_end_ns=START + 300 * NS,
            ts_recv_ns=START,
        ),
    )
    assert core.position.window_end_ns == START + 300 * NS
    store.save(core.persistent(), core.now_ns)

    # restart: the same fill replayed again is not counted twice
    again = StrategyCore(StrategyConfig(), StateStore(path).load())
    for f in ledger_fills(store.conn, again.client_prefix, again.fill_watermark_ns - 60 * NS):
        again.handle("exec.fill", f)
    assert again.position is not None and again.position.size == 10
    assert ledger_settlements(store.conn, SLUG) == []
    conn.execute(
        "INSERT INTO settlements(slug, asset_id, outcome, won, size, payout, pnl, ts_ns) "
        "VALUES (?, 'U', 'Up', 1, 10, 1, 4.825, ?)",
        (SLUG, START + 400 * NS),
    )
    for s in ledger_settlements(store.conn, SLUG):
        again.handle("exec.settlement", s)
    assert again.position is None
    assert again.daily_pnl == pytest.approx(10 - 5.175) and again.wins_today == 1
