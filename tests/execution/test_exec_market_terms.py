"""Execution never values a fill without the market's own terms (issue 12, item 3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from common import topics
from common.schema import MarketInfo
from services.execution.ledger import Ledger
from tests.execution.test_exec_core import (
    DOWN,
    MS,
    T0,
    UP,
    book,
    by_topic,
    core_of,
    intent,
)


@pytest.fixture
def ledger(tmp_path: Path):
    lg = Ledger(tmp_path / "trader.db")
    yield lg
    lg.close()


def test_exec_fill_fee_comes_from_the_markets_schedule_when_the_intent_disagrees(ledger) -> None:
    """issue 12: an intent sent before its sender knew the market carried fee rate 0; once
    execution knows the market (md.market), the paper fill is valued at the market's rate."""
    core, logs = core_of(ledger)
    core.step(
        MarketInfo(
            slug="btc-updown-5m-1",
            condition_id="0xc",
            up_token_id=UP,
            down_token_id=DOWN,
            window_start_ns=T0 - 60_000 * MS,
            window_end_ns=T0 + 240_000 * MS,
            ts_recv_ns=T0,
            fee_rate=0.07,
        ),
        0,
    )
    core.step(book([(0.52, 100.0)]), 0)
    fills = by_topic(core.step(intent(fee_rate=0.0, size=10.0), T0), topics.FILL)
    # shares x 0.07 x 0.52 x 0.48 (with the intent's rate 0 it would be 0)
    (f,) = fills
    assert f.price == 0.52 and f.fee == pytest.approx(f.size * 0.07 * 0.52 * 0.48, abs=1e-5)
    assert f.fee > 0.17
    assert any(e == "intent_fee_schedule_corrected" for _, e, _ in logs)
