"""`polyedge backtest --compare-order-types` (issue 18): taker, maker and auto on the same data,
side by side; maker fills pay no fee and earn the market's rebate; the mark-out (adverse
selection) arithmetic as a worked example. The shipped config trades nothing (blend = market),
so these runs use the test config of tests/backtest/test_backtest_run.py (ARGS: the model
alone), which trades."""

from __future__ import annotations

import json

import pytest

from common import money
from common.schema import OrderFilled
from services.commands.backtest import main, markouts
from tests.backtest.test_backtest_run import ARGS

NS = 1_000_000_000
# quotes need the stake to reach the 5-share minimum and the entry gates of the test config
MAKER_ARGS = [*ARGS, "--set", "min_edge_pct=0.02", "--in-process", "--json"]


def test_compare_order_types_side_by_side(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*MAKER_ARGS, "--compare-order-types"]) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = doc["order_types"]
    assert list(rows) == ["taker", "maker", "auto"]
    taker, maker = rows["taker"], rows["maker"]
    assert taker["trades"] > 0, "the test config must trade"
    assert taker["maker_fills"] == 0 and taker["rebates_usd"] == 0
    assert taker["markout_5s_per_share"] is None  # no maker fill to mark
    assert maker["maker_fills"] > 0 and maker["rebates_usd"] > 0
    assert maker["markout_5s_per_share"] is not None
    # entries as maker pay no fee: per taker fill, the maker run pays no more than the taker one
    assert maker["fees_usd"] < taker["fees_usd"]
    for r in rows.values():
        assert r["fills"] == r["maker_fills"] + r["taker_fills"]


def test_maker_run_json_carries_fees_rebates_and_maker_fills(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([*MAKER_ARGS, "--set", 'order_type="maker"']) == 0
    s = json.loads(capsys.readouterr().out)
    assert {"fees_usd", "rebates_usd", "maker_fills"} <= set(s)
    makers = [f for f in s["fills"] if f["liquidity"] == "maker"]
    assert len(makers) == s["maker_fills"] > 0
    sched = money.FeeSchedule.of(0.07, 1, True, 0.2)  # the simulated market's feeSchedule
    for f in makers:
        assert f["fee"] == 0 and f["side"] == "BUY"
        assert f["rebate_usd"] == pytest.approx(
            float(money.maker_rebate(f["size"], str(f["price"]), sched)), abs=1e-9
        )
    assert s["rebates_usd"] == pytest.approx(sum(f["rebate_usd"] for f in makers), abs=1e-6)
    # rebates are in the trades' P&L: each closed trade's pnl is net of fees, plus rebates
    assert any(t.get("rebates", 0) > 0 for t in s["trade_list"])


def test_markout_worked_example() -> None:
    """A maker BUY of 10 at 0.48 and one of 5 at 0.50 on token U; mids 0.47 at +5 s, 0.52 at
    +30 s (the first book at or after each horizon). 5 s: 10 x (0.47 - 0.48) + 5 x (0.47 -
    0.50) = -0.25 USD, -0.016667 a share; 30 s: 10 x 0.04 + 5 x 0.02 = +0.5 USD. A taker fill
    is not counted."""

    def fill(price: float, size: float, liquidity: str = "maker") -> OrderFilled:
        return OrderFilled(
            client_order_id="c",
            asset_id="U",
            side="BUY",
            price=price,
            size=size,
            fee=0.0,
            ts_fill_ns=100 * NS,
            liquidity=liquidity,  # type: ignore[arg-type]
        )

    mids = {"U": ([100 * NS, 104 * NS, 105 * NS, 129 * NS, 131 * NS], [0.5, 0.6, 0.47, 0.1, 0.52])}
    got = markouts([fill(0.48, 10), fill(0.50, 5), fill(0.40, 7, "taker")], mids)
    assert got["5s"] == {"n": 2, "per_share": -0.016667, "usd": -0.25}
    assert got["30s"] == {"n": 2, "per_share": 0.033333, "usd": 0.5}
    assert markouts([fill(0.48, 10)], {})["5s"] == {"n": 0, "per_share": None, "usd": 0.0}
