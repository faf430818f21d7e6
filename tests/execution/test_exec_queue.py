"""Worked examples of the paper/backtest queue-position model (services/execution/queue.py); every
expected figure is worked by hand in the comments."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from common import money
from services.execution.queue import PRO_RATA, join


def test_joins_behind_the_displayed_size_and_fills_after_it() -> None:
    # BUY 10 at 0.50 with 120 shown there: 120 ahead
    q = join("BUY", "0.50", 10, 120)
    assert (q.ahead, q.remaining) == (D(120), D(10))
    assert q.on_trade("0.50", 100) == 0 and q.ahead == 20  # 100 of the 120 ahead
    # 26 more at 0.50: the last 20 ahead, then 6 of ours
    assert q.on_trade("0.50", 26) == D(6) and q.ahead == 0 and q.remaining == 4
    # 9 more: our last 4, the other 5 go to the size behind us
    assert q.on_trade("0.50", 9) == D(4) and q.done and q.fills == [D(6), D(4)]
    assert q.on_trade("0.50", 50) == 0  # nothing left to fill


def test_trades_elsewhere_do_not_touch_it_and_through_fills_it() -> None:
    q = join("SELL", "0.55", 8, 300)  # ask 8 at 0.55 behind 300
    assert q.on_trade("0.54", 40) == 0  # a trade on the bid side
    assert q.on_trade("0.55", 0) == 0
    # a print at 0.56 (above our ask): whoever bought there passed our 0.55 first
    assert q.on_trade("0.56", 3) == D(8) and q.done


def test_improving_the_best_price_has_nothing_ahead() -> None:
    q = join("BUY", "0.51", 5, 0)  # inside the spread: nobody at 0.51
    assert q.on_trade("0.51", 2) == D(2) and q.remaining == 3


def test_opposite_best_reaching_the_price_fills_what_is_left() -> None:
    q = join("BUY", "0.40", 20, 500)
    assert q.on_best_opposite("0.41") == 0
    assert q.on_best_opposite(None) == 0
    assert q.on_best_opposite("0.40") == D(20) and q.done


def test_cancellations_conservative_queue_ahead_only_shrinks_with_the_level() -> None:
    q = join("BUY", "0.50", 10, 100)  # 100 ahead, level 100
    q.on_level(150)  # 50 joined behind us
    assert q.ahead == 100
    q.on_level(120)  # 30 cancelled: assumed from behind us first
    assert q.ahead == 100
    q.on_level(60)  # the level is now smaller than the queue that was ahead of us
    assert q.ahead == 60
    q.on_level(0)  # everyone left
    assert q.ahead == 0
    q.on_level(400)  # new size queues behind
    assert q.ahead == 0 and q.on_trade("0.50", 3) == D(3)


def test_cancellations_pro_rata_spread_over_the_level() -> None:
    q = join("BUY", "0.50", 10, 100, cancel_model=PRO_RATA)  # 100 ahead, level 100
    q.on_level(200)  # 100 behind us now
    assert q.ahead == 100
    q.on_level(150)  # 50 cancelled over the 200: half the level was ahead, so 25 of it
    assert q.ahead == 75
    q.on_level(150)
    assert q.ahead == 75


def test_trades_at_the_level_are_not_counted_again_as_cancellations() -> None:
    q = join("SELL", "0.60", 10, 100, cancel_model=PRO_RATA)  # level 100, all ahead
    q.on_level(140)  # 40 behind us
    assert q.on_trade("0.60", 30) == 0 and (q.ahead, q.level) == (D(70), D(110))
    q.on_level(110)  # the print's 30 explain the drop: no cancellation
    assert q.ahead == 70
    # 80 traded: 70 ahead then 10 of ours (all of it); level 140 - 30 - 70 = 40 behind
    assert q.on_trade("0.60", 80) == D(10) and q.done and q.level == 40


def test_a_maker_fill_pays_no_fee_and_earns_the_rebate() -> None:
    q = join("BUY", "0.30", 50, 0)
    got = q.on_trade("0.30", 50)
    fee, rebate = money.fill_fee_and_rebate(
        "maker", got, q.price, money.FeeSchedule.of("0.07", "1", True, "0.2")
    )
    # 50 x 0.07 x 0.30 x 0.70 = 0.735 fee equivalent; x 0.2 = 0.147
    assert (got, fee, rebate) == (D(50), D(0), D("0.147"))


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="side"):
        join("HOLD", "0.5", 1, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="price"):
        join("BUY", "1.2", 1, 0)
    with pytest.raises(ValueError, match="size"):
        join("BUY", "0.5", 0, 0)
    with pytest.raises(ValueError, match="displayed"):
        join("BUY", "0.5", 1, -1)
    with pytest.raises(ValueError, match="cancel_model"):
        join("BUY", "0.5", 1, 0, cancel_model="fifo")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="trade size"):
        join("BUY", "0.5", 1, 0).on_trade("0.5", -1)
