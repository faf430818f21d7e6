"""Execution with several markets (issue 17): the ledger keys positions by token and fills,
settlements and redemptions by slug, so markets never mix; the core sums positions and realised
P&L per market (series key) and in total, and a restart rebuilds the same figures from the
ledger."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.schema import BookSnapshot, MarketInfo, MarketResolved, OrderIntent
from services.execution.core import ExecutionCore
from services.execution.ledger import Ledger
from services.execution.switches import TradingMode

T0 = 1_800_000_000_000_000_000
MS = 1_000_000
DRY = TradingMode(True, False, False)
MARKETS = {"btc-5m": "btc-updown-5m-1800000000", "eth-15m": "eth-updown-15m-1800000000"}


def book(asset: str, ask: float) -> BookSnapshot:
    return BookSnapshot(
        asset_id=asset,
        best_bid=round(ask - 0.02, 2),
        best_ask=ask,
        bids=[(round(ask - 0.02, 2), 100.0)],
        asks=[(ask, 100.0)],
        ts_exchange_ns=T0,
        ts_recv_ns=T0,
    )


def info(key: str) -> MarketInfo:
    asset, window = key.split("-")
    return MarketInfo(
        slug=MARKETS[key],
        condition_id="c-" + key,
        up_token_id=key + "-U",
        down_token_id=key + "-D",
        window_start_ns=T0,
        window_end_ns=T0 + 300_000 * MS,
        ts_recv_ns=T0,
        asset=asset,
        window=window,
    )


def buy(key: str, coid: str, limit: float, size: float) -> OrderIntent:
    return OrderIntent(
        client_order_id=coid,
        slug=MARKETS[key],
        asset_id=key + "-U",
        outcome="Up",
        side="BUY",
        order_type="FOK",
        limit_price=limit,
        size=size,
        expires_ns=T0 + 2000 * MS,
        ts_intent_ns=T0,
        fee_rate=0.0,
    )


def test_positions_and_pnl_per_market_and_in_total(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "trader.db")
    core = ExecutionCore(ledger, DRY)
    for key in MARKETS:
        core.step(info(key), 0)
    core.step(book("btc-5m-U", 0.50), 0)
    core.step(book("eth-15m-U", 0.40), 0)
    core.step(buy("btc-5m", "b1", 0.50, 10), T0)
    core.step(buy("eth-15m", "e1", 0.40, 5), T0)
    mb = core.market_book()
    assert mb["btc-5m"]["positions"] == 1 and mb["btc-5m"]["cost"] == pytest.approx(5.0)
    assert mb["eth-15m"]["shares"] == pytest.approx(5.0)
    assert mb["eth-15m"]["cost"] == pytest.approx(2.0)
    assert mb["total"]["positions"] == 2 and mb["total"]["cost"] == pytest.approx(7.0)
    # BTC's market resolves against the position: only BTC's P&L moves
    core.step(MarketResolved(slug=MARKETS["btc-5m"], winning_outcome="Down", ts_ns=T0 + 1), 0)
    mb = core.market_book()
    assert mb["btc-5m"]["positions"] == 0 and mb["btc-5m"]["realized_pnl"] == pytest.approx(-5.0)
    assert mb["eth-15m"]["positions"] == 1 and mb["eth-15m"]["realized_pnl"] == 0.0
    assert mb["total"]["realized_pnl"] == pytest.approx(-5.0)
    assert core.status()["markets"] == mb
    # a restart rebuilds the same book from the ledger (series from the slugs' form)
    again = ExecutionCore(ledger, DRY)
    assert again.market_book() == mb
    ledger.close()
