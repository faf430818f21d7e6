"""Strategy core: every entry gate, exit and risk halt on both sides of its threshold,
hot reload, control replies and restart from the persisted state."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from common.config import StrategyConfig
from common.core import LogRecord
from common.schema import (
    BookSnapshot,
    BtcTrade,
    ClearEmergencyStop,
    ClockTick,
    ConfigSnapshot,
    ControlReply,
    Decision,
    FeedStatus,
    ForceExit,
    Heartbeat,
    MarketInfo,
    MarketResolved,
    OrderAccepted,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    RiskState,
    SignalScore,
    TriggerEmergencyStop,
    UpdateConfig,
)
from services.strategy.core import StrategyCore
from services.strategy.store import StateStore

NS = 1_000_000_000
START = 1_767_225_600 * NS + 3600 * NS  # 2026-01-01 01:00Z
END = START + 300 * NS
SLUG = "btc-updown-5m-x"


def market(**kw: Any) -> MarketInfo:
    base = dict(
        slug=SLUG,
        condition_id="0xc",
        up_token_id="U",
        down_token_id="D",
        window_start_ns=START,
        window_end_ns=END,
        ts_recv_ns=START,
        fee_rate=0.07,
        twap_enabled=True,
        twap_lookback_s=60,
    )
    base.update(kw)
    return MarketInfo(**base)


def book(asset: str, bid: float, ask: float, ts: int) -> BookSnapshot:
    return BookSnapshot(
        asset_id=asset,
        best_bid=bid,
        best_ask=ask,
        bids=[(bid, 500.0)],
        asks=[(ask, 500.0)],
        ts_exchange_ns=ts,
        ts_recv_ns=ts,
    )


class Recorded(StrategyCore):
    """The core keeping every log record it writes (`events`), for assertions on them."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        self.events: list[LogRecord] = []  # before the core's own start, which may log
        super().__init__(*a, **kw)

    def log(self, stream: str, event: str, level: str = "INFO", **fields: Any) -> None:
        super().log(stream, event, level, **fields)
        self.events.append(LogRecord(stream, event, level, fields))


def make(state: dict[str, Any] | None = None, **cfg: Any) -> Recorded:
    core = Recorded(StrategyConfig(**cfg), state)
    core.step(market(), 0)
    return core


def fresh(core: StrategyCore, t: int, up_ask: float = 0.45, down_ask: float = 0.45) -> None:
    """Fresh BTC trade and books at time t."""
    core.step(BtcTrade(price=85_000, size=1, ts_exchange_ns=t, ts_recv_ns=t), 0)
    core.step(book("U", round(up_ask - 0.02, 2), up_ask, t), 0)
    core.step(book("D", round(down_ask - 0.02, 2), down_ask, t), 0)


def signal(
    core: StrategyCore,
    elapsed_s: float,
    p_up: float = 0.70,
    up_ask: float = 0.45,
    down_ask: float = 0.45,
    refresh: bool = True,
) -> list[tuple[str, Any]]:
    t = START + int(elapsed_s * NS)
    if refresh:
        fresh(core, t, up_ask, down_ask)
    s = SignalScore(
        slug=SLUG,
        p_up=p_up,
        side="Up" if p_up >= 0.5 else "Down",
        score=2 * p_up - 1,
        edge_up=0.0,
        edge_down=0.0,
        ts_ns=t,
        origin_ts_exchange_ns=t - 5,
        origin_ts_recv_ns=t - 3,
        ts_signal_ns=t - 1,
    )
    return core.step(s, 0)


def decision(out: list[tuple[str, Any]]) -> Decision:
    ds = [m for _, m in out if isinstance(m, Decision)]
    assert ds, f"no decision in {out}"
    return ds[0]


def intents(out: list[tuple[str, Any]]) -> list[OrderIntent]:
    return [m for t, m in out if isinstance(m, OrderIntent) and t == "order"]


def enter_and_fill(core: StrategyCore, price: float = 0.50, size: float = 10.0) -> OrderIntent:
    out = signal(core, 100, p_up=0.70, up_ask=price)
    (it,) = intents(out)
    core.step(
        OrderFilled(
            client_order_id=it.client_order_id,
            asset_id="U",
            side="BUY",
            price=price,
            size=size,
            fee=round(size * 0.07 * price * (1 - price), 5),
            ts_fill_ns=START + 100 * NS,
            slug=SLUG,
            outcome="Up",
        ),
        0,
    )
    return it


def test_enter_when_every_gate_passes() -> None:
    core = make()
    out = signal(core, 100, p_up=0.70, up_ask=0.45)
    d = decision(out)
    assert d.action == "enter" and d.side == "Up" and d.client_order_id
    (it,) = intents(out)
    assert it.side == "BUY" and it.outcome == "Up" and it.asset_id == "U"
    assert it.client_order_id == d.client_order_id
    assert 0.45 <= it.limit_price <= 0.45 + 0.02 + 1e-9  # within the slippage allowance
    assert it.expires_ns == START + 100 * NS + 2000 * 1_000_000
    assert it.origin_ts_recv_ns == START + 100 * NS - 3 and it.ts_signal_ns == START + 100 * NS - 1
    assert it.size * it.limit_price <= 5.0 + 1e-9  # stake cap
    assert d.details["inputs"] == {} and d.details["edge"] > 0.05


@pytest.mark.parametrize(
    ("kwargs", "blocked_reason"),
    [
        (dict(elapsed_s=44), "entry_window_not_open"),
        (dict(elapsed_s=271), "too_close_to_close"),
        (dict(p_up=0.555), "score_below_min"),  # score 0.11 < 0.12
        (dict(p_up=0.70, up_ask=0.64), "edge_below_min"),  # 0.70 - 0.64 - 0.0161 < 0.05
    ],
)
def test_gate_blocks_below_threshold(kwargs: dict[str, Any], blocked_reason: str) -> None:
    args = {"elapsed_s": 100, "p_up": 0.70, "up_ask": 0.45, **kwargs}
    out = signal(make(), **args)
    assert decision(out).action == "skip" and decision(out).reason == blocked_reason
    assert intents(out) == []


def test_a_config_whose_entry_window_cannot_fit_the_market_warns_once() -> None:
    """20 s windows (SIM_WINDOW_SECONDS=20) with the shipped 45 s + 30 s: every decision would
    be entry_window_not_open forever; said once in the log and in the heartbeat's warnings."""
    core = Recorded(StrategyConfig(), None)
    core.step(market(window_end_ns=START + 20 * NS), 0)
    for elapsed in (5, 10, 15):
        out = signal(core, elapsed)
        assert decision(out).reason == "entry_window_not_open"
    warned = [e for e in core.events if e.event == "entry_window_cannot_open"]
    assert len(warned) == 1 and warned[0].level == "WARNING", core.events
    (w,) = core.status()["warnings"]
    assert "entry_window_min_sec 45 + min_seconds_before_close 30" in w and "20 s" in w, w
    # a config that fits the window clears it (and 5 s in, the window is open)
    fits = make(entry_window_min_sec=5, min_seconds_before_close=5)
    fits.step(market(window_end_ns=START + 20 * NS), 0)
    out = signal(fits, 8)
    assert decision(out).action == "enter", decision(out)
    assert fits.status()["warnings"] == []
    assert not [e for e in fits.events if e.event == "entry_window_cannot_open"]
    # the shipped 300 s markets: no warning
    assert make().status()["warnings"] == []


def test_a_stake_no_limit_lets_through_is_warned_also_while_halted() -> None:
    """A new user's {"stake_per_trade_usd": 1000} beside max_daily_loss_usd 10 and
    max_capital_at_risk_usd 20 was accepted and every entry then skipped (capital_at_risk /
    daily_loss_headroom) with no /health warning, and a halted strategy showed no warning at
    all (tests by a new user, 2026-12-01). Warned once per cause, halted or not; a config that
    fits clears it."""
    core = make(stake_per_trade_usd=1000, max_daily_loss_usd=10, max_capital_at_risk_usd=20)
    core.step(TriggerEmergencyStop(request_id="r1", reason="test"), 0)
    warnings = core.status()["warnings"]
    assert len(warnings) == 2, warnings
    assert "stake_per_trade_usd 1000 > max_capital_at_risk_usd 20" in warnings[0], warnings
    assert "stake_per_trade_usd 1000 > max_daily_loss_usd 10" in warnings[1], warnings
    events = [e.event for e in core.events if e.level == "WARNING"]
    assert events.count("stake_exceeds_capital_limit") == 1, events
    assert events.count("stake_exceeds_daily_loss_limit") == 1, events
    core.step(ClearEmergencyStop(request_id="r2"), 0)
    assert decision(signal(core, 100)).reason == "capital_at_risk"
    # the daily loss limit alone: a stake of 15 fits the capital limit (20), not the day's (10)
    core.apply_config({**core.config_snapshot("t").config, "stake_per_trade_usd": 15}, "test")
    (w,) = core.status()["warnings"]
    assert "max_daily_loss_usd 10" in w, w
    assert decision(signal(core, 110)).reason == "daily_loss_headroom"
    # a stake that fits both clears it, and entries go through
    core.apply_config({**core.config_snapshot("t").config, "stake_per_trade_usd": 5}, "test")
    assert core.status()["warnings"] == []
    assert decision(signal(core, 120)).action == "enter"
    # under the venue's $1 minimum for a marketable BUY (a new user's {"stake_per_trade_usd":
    # 0.5}, 2026-12-01): every taker entry is skipped size_below_min_order
    small = make(stake_per_trade_usd=0.5)
    (w,) = small.status()["warnings"]
    assert "stake_per_trade_usd 0.5 is under the venue's $1 minimum" in w, w
    assert decision(signal(small, 100)).reason == "size_below_min_order"
    # a maker stake that buys 5 shares (the resting minimum) only at low prices quotes only
    # there: said, though entries can still happen (a new user's $0.50 maker stake quoted only
    # tokens at $0.10 or less)
    maker = make(stake_per_trade_usd=0.5, order_type="maker")
    (w,) = maker.status()["warnings"]
    assert "maker quotes only at prices <= 0.1" in w and "5 shares" in w, w
    assert make(stake_per_trade_usd=5, order_type="maker").status()["warnings"] == []
    # a window too short is also said while halted (it was evaluated only when a signal got
    # past the halts)
    halted = make(stake_per_trade_usd=5)
    halted.step(TriggerEmergencyStop(request_id="r3", reason="test"), 0)
    halted.step(market(slug="btc-updown-5m-y", window_end_ns=START + 20 * NS), 0)
    (w,) = halted.status()["warnings"]
    assert "the market's window of 20 s" in w, w


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(elapsed_s=46),
        dict(elapsed_s=269),
        dict(p_up=0.565),  # score 0.13
        dict(p_up=0.70, up_ask=0.63),  # 0.70 - 0.63 - 0.0163 = 0.0537 >= 0.05
    ],
)
def test_gate_passes_above_threshold(kwargs: dict[str, Any]) -> None:
    args = {"elapsed_s": 100, "p_up": 0.70, "up_ask": 0.45, **kwargs}
    out = signal(make(), **args)
    assert decision(out).action == "enter", decision(out)
    assert len(intents(out)) == 1


def test_down_side_entry_buys_the_down_token() -> None:
    out = signal(make(), 100, p_up=0.25, down_ask=0.60)
    (it,) = intents(out)
    assert it.outcome == "Down" and it.asset_id == "D"


def test_trade_cap() -> None:
    core = make(state={"day": "2026-01-01", "trades_today": 4})
    assert decision(signal(core, 100)).action == "enter"
    core = make(state={"day": "2026-01-01", "trades_today": 5})
    out = signal(core, 100)
    assert decision(out).reason == "max_trades_per_day" and not intents(out)
    # a new UTC day resets the cap
    core.step(ClockTick(ts_ns=START + 86_400 * NS), 0)
    assert core.trades_today == 0


def test_stale_price_and_market_data() -> None:
    core = make(stale_after_ms=3000)
    t = START + 100 * NS
    fresh(core, t)
    core.step(book("U", 0.43, 0.45, t + 2 * NS), 0)
    assert decision(signal(core, 102.9, refresh=False)).action == "enter"  # 2.9 s old: fresh
    core = make(stale_after_ms=3000)
    fresh(core, t)
    core.step(book("U", 0.43, 0.45, t + 3 * NS + 100), 0)
    assert decision(signal(core, 103.1, refresh=False)).reason == "stale_price_data"
    core = make(stale_after_ms=3000)
    fresh(core, t)
    core.step(BtcTrade(price=1, size=1, ts_exchange_ns=0, ts_recv_ns=t + 3 * NS), 0)
    assert decision(signal(core, 103.1, refresh=False)).reason == "stale_market_data"
    core = make()
    core.step(FeedStatus(feed="clob", connected=True, stale=True, ts_ns=t), 0)
    assert decision(signal(core, 100)).reason == "stale_market_data"
    assert any(e[1] == "entry_blocked" and e[0] == "risk" for e in core.events)


def test_market_not_accepting_orders_and_one_position() -> None:
    core = make()
    core.step(market(accepting_orders=False), 0)
    assert decision(signal(core, 100)).reason == "market_not_accepting_orders"
    core = make()
    assert decision(signal(core, 100)).action == "enter"
    assert decision(signal(core, 101)).reason == "order_pending"
    core = make()
    enter_and_fill(core)
    assert decision(signal(core, 101)).reason == "position_open"
    # with the BTC feed stale the skip names the feed first, not the routine open position
    core.step(FeedStatus(feed="binance", connected=True, stale=True, ts_ns=START + 101 * NS), 0)
    d = decision(signal(core, 102))
    assert (d.reason, d.details.get("position_slug")) == ("stale_price_data", core.position.slug)


def test_rejected_entry_gives_the_trade_back() -> None:
    """trades_today counts entries that filled (BREAKER2 finding 6): a rejected one never
    counts, and its window's entry is given back."""
    core = make()
    (it,) = intents(signal(core, 100))
    assert core.trades_today == 0 and it.client_order_id in core.pending
    core.step(OrderRejected(client_order_id=it.client_order_id, reason="x", ts_ns=0), 0)
    assert core.trades_today == 0 and not core.pending
    assert decision(signal(core, 101)).action == "enter"


def test_an_entry_counts_as_a_trade_from_its_first_fill_once() -> None:
    core = make()
    it = enter_and_fill(core, size=4.0)
    assert core.trades_today == 1 and core.risk_state().trades_today == 1
    core.step(
        OrderFilled(
            client_order_id=it.client_order_id,
            asset_id="U",
            side="BUY",
            price=0.5,
            size=1.0,
            fee=0.0,
            ts_fill_ns=START + 100 * NS + 1,
            slug=SLUG,
            outcome="Up",
            trade_id="second",
        ),
        0,
    )
    assert core.trades_today == 1  # a second fill of the same entry is not another trade
    again = make(state=core.persistent())  # a restart keeps the count
    assert again.trades_today == 1


def test_an_unanswered_entry_is_no_trade_and_its_late_fill_is_one() -> None:
    core = make()
    (it,) = intents(signal(core, 100))
    core.step(ClockTick(ts_ns=START + 130 * NS), 0)  # past its ttl and the grace: given up
    assert not core.pending and core.trades_today == 0
    core.step(
        OrderFilled(
            client_order_id=it.client_order_id,
            asset_id="U",
            side="BUY",
            price=0.5,
            size=5.0,
            fee=0.0,
            ts_fill_ns=START + 131 * NS,
            slug=SLUG,
            outcome="Up",
        ),
        0,
    )
    assert core.trades_today == 1 and core.position is not None


def test_a_new_execution_process_is_asked_about_orders_sent_before_it() -> None:
    """BREAKER2 finding 6: execution's answers at start (recover() rejects the orders a kill -9
    left unsent) go out before strategy's SUB socket has reconnected to the new process; on
    that process's first heartbeat strategy asks about each order sent before it started."""
    core = make()
    (it,) = intents(signal(core, 100))
    t_sent = START + 100 * NS

    def hb(started_ns: int) -> list[tuple[str, Any]]:
        msg = Heartbeat(
            service="execution", state="running", pid=1, started_ns=started_ns, ts_ns=started_ns
        )
        return list(core.step(msg, 0))

    out = hb(t_sent + NS)  # started after the intent: asked about, once
    assert [(t, m.client_order_id) for t, m in out] == [("order.cancel", it.client_order_id)]
    assert hb(t_sent + NS) == []  # the same process again: nothing
    assert hb(t_sent - NS) == []  # an older process: nothing
    # its rejection said again: acted on as the first one would have been
    core.step(OrderRejected(client_order_id=it.client_order_id, reason="r", ts_ns=0), 0)
    assert not core.pending and core.trades_today == 0
    assert hb(t_sent + 2 * NS) == []  # nothing pending: nothing to ask
    # an order sent after the new process started is not asked about
    (it2,) = intents(signal(core, 101))
    assert hb(START + 100 * NS + 500_000_000) == []
    assert it2.client_order_id in core.pending


@pytest.mark.parametrize("status", ["dry_run", "matched"])
def test_a_filled_order_is_done_on_its_terminal_ack_not_on_size_equality(status: str) -> None:
    """A FOK/FAK order's ack ("matched"; paper "dry_run") is its last word: its fills are all
    it gets, even when they are a cent's worth short of the intent (BUY collateral is cut to
    cents: 3.5 shares filled as 3.49). Before, such an order stayed pending: it blocked entries
    and ~7 s later risk.jsonl got a spurious "intent_unanswered"."""
    core = make(max_entries_per_window=2)
    (it,) = intents(signal(core, 100))
    short = it.size - 0.01
    core.step(OrderAccepted(client_order_id=it.client_order_id, status=status, ts_ack_ns=START), 0)
    assert it.client_order_id in core.pending  # its fills are still to come
    core.step(
        OrderFilled(
            client_order_id=it.client_order_id,
            asset_id="U",
            side="BUY",
            price=it.limit_price,
            size=short,
            fee=0.0,
            ts_fill_ns=START + 100 * NS,
            slug=SLUG,
            outcome="Up",
        ),
        0,
    )
    assert not core.pending and core.position is not None and core.position.size == short
    signal(core, 120)  # well past the intent's expiry and the grace
    assert not [e for e in core.events if e.event == "intent_unanswered"]


def test_a_partial_fill_without_a_terminal_ack_stays_pending() -> None:
    core = make()
    (it,) = intents(signal(core, 100))
    core.step(
        OrderAccepted(client_order_id=it.client_order_id, status="delayed", ts_ack_ns=START), 0
    )
    core.step(
        OrderFilled(
            client_order_id=it.client_order_id,
            asset_id="U",
            side="BUY",
            price=it.limit_price,
            size=it.size / 2,
            fee=0.0,
            ts_fill_ns=START + 100 * NS,
            slug=SLUG,
            outcome="Up",
        ),
        0,
    )
    assert it.client_order_id in core.pending  # the venue may still match the rest


@pytest.mark.parametrize(
    ("bid", "reason"),
    [(0.67, "take_profit"), (0.66, None), (0.43, "stop_loss"), (0.45, None)],
)
def test_exits_on_the_executable_bid(bid: float, reason: str | None) -> None:
    # bought 10 @ 0.50 + 0.175 fee: 0.5175 a share. Selling at 0.67 nets 0.6545 (+26.5 %),
    # 0.66 nets 0.6443 (+24.5 %), 0.43 nets 0.4128 (-20.2 %), 0.45 nets 0.4327 (-16.4 %).
    core = make()
    enter_and_fill(core)
    t = START + 120 * NS
    out = core.step(
        BookSnapshot(
            asset_id="U",
            best_bid=bid,
            best_ask=bid + 0.02,
            bids=[(bid, 500.0)],
            asks=[(bid + 0.02, 500.0)],
            ts_exchange_ns=t,
            ts_recv_ns=t,
        ),
        0,
    )
    exits = [i for i in intents(out) if i.side == "SELL"]
    if reason is None:
        assert exits == []
        return
    assert decision(out).action == "exit" and decision(out).reason == reason
    assert exits[0].size == 10.0 and exits[0].limit_price <= bid


def test_exit_judged_on_depth_not_just_the_top() -> None:
    core = make()
    enter_and_fill(core)
    t = START + 120 * NS
    # 0.70 for 1 share only, the rest at 0.50: selling 10 averages 0.52, not a take-profit
    out = core.step(
        BookSnapshot(
            asset_id="U",
            best_bid=0.70,
            best_ask=0.72,
            bids=[(0.70, 1.0), (0.50, 500.0)],
            asks=[(0.72, 5.0)],
            ts_exchange_ns=t,
            ts_recv_ns=t,
        ),
        0,
    )
    assert intents(out) == []


def test_settlement_and_loss_streak_halt() -> None:
    core = make(state={"day": "2026-01-01", "loss_streak": 2})
    enter_and_fill(core)
    out = core.step(MarketResolved(slug=SLUG, winning_outcome="Down", ts_ns=END + NS), 0)
    assert decision(out).action == "settle" and decision(out).reason == "lost"
    assert core.position is None and core.loss_streak == 3
    assert core.daily_pnl == pytest.approx(-(5.0 + 0.175))
    risk = [m for _, m in out if isinstance(m, RiskState)][-1]
    assert risk.halted and "loss_streak" in risk.reasons
    assert any(e[1] == "halt" and e[3]["reason"] == "loss_streak" for e in core.events)


def test_win_resets_the_streak() -> None:
    core = make(state={"day": "2026-01-01", "loss_streak": 2})
    enter_and_fill(core)
    core.step(MarketResolved(slug=SLUG, winning_outcome="Up", ts_ns=END + NS), 0)
    assert core.loss_streak == 0 and core.daily_pnl == pytest.approx(10 - 5.175)
    assert core.wins_today == 1


@pytest.mark.parametrize(
    ("state", "halted"),
    [
        ({"daily_pnl": -10.0}, "daily_loss_limit"),
        ({"daily_pnl": -4.0}, None),
        ({"loss_streak": 3}, "loss_streak"),
        ({"loss_streak": 2}, None),
        ({"emergency_stop": True}, "emergency_stop"),
    ],
)
def test_risk_halts_both_sides(state: dict[str, Any], halted: str | None) -> None:
    core = make(state={"day": "2026-01-01", **state})
    d = decision(signal(core, 100))
    if halted is None:
        assert d.action == "enter"
    else:
        assert d.action == "skip" and d.reason.startswith("halted:") and halted in d.reason
        assert any(e[0] == "risk" and e[3].get("reason") == d.reason for e in core.events)


@pytest.mark.parametrize(
    ("daily_pnl", "action"), [(-9.99, "skip"), (-4.9, "skip"), (-4.0, "enter")]
)
def test_an_entry_that_could_take_the_day_past_the_loss_limit_is_refused(
    daily_pnl: float, action: str
) -> None:
    """Not halted yet (-9.99 > -10), but the $5 stake and its fee lost would end the day near
    -15: the limit would be overshot by a whole stake (issue 15). The worst case of this entry
    is $5 + the fee at the ask, so -4.9 is refused too and -4.0 enters."""
    core = make(state={"day": "2026-01-01", "daily_pnl": daily_pnl})
    d = decision(signal(core, 100))
    assert d.action == action
    if action == "skip":
        assert d.reason == "daily_loss_headroom"
        assert d.details["worst_case_loss"] > 5.0
        assert any(e[0] == "risk" and e[3].get("reason") == d.reason for e in core.events)


def test_emergency_stop_set_and_clear_with_replies() -> None:
    core = make()
    out = core.step(TriggerEmergencyStop(request_id="r1", reason="test"), 0)
    reply = [m for _, m in out if isinstance(m, ControlReply)][0]
    assert reply.ok and reply.request_id == "r1" and reply.state["risk"]["emergency_stop"]
    assert decision(signal(core, 100)).reason == "halted:emergency_stop"
    out = core.step(ClearEmergencyStop(request_id="r2"), 0)
    reply = [m for _, m in out if isinstance(m, ControlReply)][0]
    assert reply.ok and not reply.state["risk"]["halted"] and reply.state["still_halted"] == []
    assert decision(signal(core, 101)).action == "enter"
    # a clear while the day's loss limit halts: the command is taken (ok), and the reply says
    # trading does not resume (a new user read `ok: true` as "trading again", 2026-12-01)
    lost = make(state={"day": "2026-01-01", "daily_pnl": -10.0, "emergency_stop": True})
    out = lost.step(ClearEmergencyStop(request_id="r3"), 0)
    reply = [m for _, m in out if isinstance(m, ControlReply)][0]
    assert reply.ok and reply.state["still_halted"] == ["daily_loss_limit"], reply.state


def test_a_config_change_that_lifts_a_loss_halt_is_logged_as_such() -> None:
    """Raising max_daily_loss_usd lifts the day's loss halt at once, without a clear: the risk
    log names the halt lifted (new-user test, 2026-12-01: it was recorded nowhere)."""
    core = make(state={"day": "2026-01-01", "daily_pnl": -10.0})
    assert "daily_loss_limit" in core.halt_reasons()
    core.step(UpdateConfig(request_id="c1", config={"min_edge_pct": 0.06}), 0)
    assert not [e for e in core.events if e[1] == "halt_lifted_by_config"]  # still halted
    core.step(UpdateConfig(request_id="c2", config={"max_daily_loss_usd": 20}), 0)
    # the whole book's halt and btc-5m's own (its day lost the same 10 USD)
    glob, btc = [e for e in core.events if e[1] == "halt_lifted_by_config"]
    assert glob[0] == "risk" and glob[2] == "WARNING" and glob[3]["lifted"] == ["daily_loss_limit"]
    assert glob[3]["changed"] == {"max_daily_loss_usd": [10.0, 20.0]} and "market" not in glob[3]
    assert btc[3]["market"] == "btc-5m" and btc[3]["lifted"] == ["market_daily_loss_limit"]
    assert "daily_loss_limit" not in core.halt_reasons()


def test_force_exit() -> None:
    core = make()
    out = core.step(ForceExit(request_id="f0"), 0)
    reply = [m for _, m in out if isinstance(m, ControlReply)][0]
    assert not reply.ok and "no open position" in reply.error
    enter_and_fill(core)
    out = core.step(ForceExit(request_id="f1"), 0)
    reply = [m for _, m in out if isinstance(m, ControlReply)][0]
    (it,) = intents(out)
    assert reply.ok and reply.state["pending_exit"] and it.side == "SELL" and it.size == 10.0
    assert decision(out).reason == "force_exit"
    core.step(
        OrderFilled(
            client_order_id=it.client_order_id,
            asset_id="U",
            side="SELL",
            price=0.55,
            size=10.0,
            fee=0.17325,
            ts_fill_ns=START + 101 * NS,
        ),
        0,
    )
    assert core.position is None
    assert core.daily_pnl == pytest.approx(5.5 - 0.17325 - 5.175)


def _restarted(core: StrategyCore, keep_terms: bool) -> Recorded:
    """A new core from the saved state, before any md.market (as right after a restart)."""
    state = msgspec.json.decode(msgspec.json.encode(core.persistent()))
    if not keep_terms:  # a state saved before positions kept their market's terms
        state.pop("markets")  # (and so before markets: its one position is at the top level)
        for k in ("fee_rate", "fee_exponent", "tick_size", "min_order_size", "neg_risk"):
            state["position"].pop(k)
        state["position"]["terms_source"] = ""
    again = Recorded(StrategyConfig(), state)
    assert again.markets == {}
    return again


def _high_bid(core: StrategyCore, t: int) -> list:
    return core.step(book("U", 0.67, 0.69, t), 0)


def test_exit_after_restart_uses_the_fee_schedule_kept_with_the_position() -> None:
    """issue 12: an exit right after a restart was booked at fee rate 0 (market not seen yet)."""
    core = make()
    enter_and_fill(core)
    assert core.position.fee_rate == 0.07 and core.position.terms_source == "md.market"
    again = _restarted(core, keep_terms=True)
    (it,) = [i for i in intents(_high_bid(again, START + 120 * NS)) if i.side == "SELL"]
    assert it.fee_rate == 0.07 and it.fee_exponent == 1.0 and it.tick_size == 0.01


def test_exit_waits_for_the_market_terms_when_unknown_then_goes_at_once() -> None:
    core = make()
    enter_and_fill(core)
    again = _restarted(core, keep_terms=False)
    out = _high_bid(again, START + 120 * NS)  # take profit by the book, but the fee is unknown
    assert not intents(out)
    assert any(e[1] == "exit_waiting_for_market_terms" for e in again.events)
    out = again.step(market(ts_recv_ns=START + 120 * NS + 1), 0)
    (it,) = [i for i in intents(out) if i.side == "SELL"]
    assert it.fee_rate == 0.07 and decision(out).reason == "take_profit"


def test_force_exit_waits_for_the_market_terms_when_unknown() -> None:
    core = make()
    enter_and_fill(core)
    again = _restarted(core, keep_terms=False)
    again.step(book("U", 0.52, 0.54, START + 120 * NS), 0)
    out = again.step(ForceExit(request_id="f"), 0)
    reply = [m for _, m in out if isinstance(m, ControlReply)][0]
    assert reply.ok and reply.state["exit_waiting_for"] and not intents(out)
    out = again.step(market(ts_recv_ns=START + 121 * NS), 0)
    (it,) = intents(out)
    assert it.side == "SELL" and it.fee_rate == 0.07 and decision(out).reason == "force_exit"
    assert not again.force_exit_waiting


def test_invalid_hot_reload_changes_nothing() -> None:
    core = make()
    before = (core.config, core.config_version)
    out = core.step(
        UpdateConfig(
            request_id="c1", config={"min_edge_pct": 2.0, "bogus": 1, "stake_per_trade_usd": 3}
        ),
        0,
    )
    reply = [m for _, m in out if isinstance(m, ControlReply)][0]
    assert not reply.ok
    assert set(reply.field_errors) == {"min_edge_pct", "bogus"}
    assert (core.config, core.config_version) == before
    assert not [m for _, m in out if isinstance(m, ConfigSnapshot)]
    out = core.step(UpdateConfig(request_id="c2", config={"min_edge_pct": 0.3}), 0)
    reply = [m for _, m in out if isinstance(m, ControlReply)][0]
    snap = [m for _, m in out if isinstance(m, ConfigSnapshot)][0]
    assert reply.ok and core.config.min_edge_pct == 0.3 and core.config_version == before[1] + 1
    assert snap.version == core.config_version and snap.config["min_edge_pct"] == 0.3
    assert decision(signal(core, 100)).reason == "edge_below_min"  # the new value is in force


def test_partial_config_update_keeps_every_other_field() -> None:
    """issue 12: POST {"stake": 3} then POST {"max_trades": 7} kept stake 3; {} is a no-op."""
    core = make()
    v0 = core.config_version

    def update(patch: dict, replace: bool = False) -> tuple[ControlReply, list[ConfigSnapshot]]:
        out = core.step(UpdateConfig(request_id="c", config=patch, replace=replace), 0)
        reply = [m for _, m in out if isinstance(m, ControlReply)][0]
        return reply, [m for _, m in out if isinstance(m, ConfigSnapshot)]

    reply, snaps = update({"stake_per_trade_usd": 3})
    assert reply.ok and snaps[0].changed == {"stake_per_trade_usd": [5.0, 3]}
    reply, snaps = update({"max_trades_per_day": 7})
    assert core.config.stake_per_trade_usd == 3 and core.config.max_trades_per_day == 7
    assert snaps[0].changed == {"max_trades_per_day": [5, 7]} and core.config_version == v0 + 2
    assert snaps[0].overrides == {"stake_per_trade_usd": 3, "max_trades_per_day": 7}
    assert snaps[0].hash and snaps[0].defaults["stake_per_trade_usd"] == 5.0
    # {} and a patch equal to the config: accepted, nothing changes, no new version
    for patch in ({}, {"max_trades_per_day": 7}):
        reply, snaps = update(patch)
        assert reply.ok and not snaps and core.config_version == v0 + 2
        assert reply.state["changed"] == {}
    # null puts one field back to the shipped default
    reply, snaps = update({"stake_per_trade_usd": None})
    assert core.config.stake_per_trade_usd == 5.0 and core.config.max_trades_per_day == 7
    assert snaps[0].changed == {"stake_per_trade_usd": [3, 5.0]}
    # replace: the patch over the defaults, every other field back to its default
    reply, snaps = update({"min_edge_pct": 0.2}, replace=True)
    assert core.config == StrategyConfig(min_edge_pct=0.2)
    assert snaps[0].changed == {"max_trades_per_day": [7, 5], "min_edge_pct": [0.05, 0.2]}


def test_config_changed_while_down_is_a_new_version_naming_its_fields() -> None:
    core = make()
    state = core.persistent()
    again = make(state=state, min_edge_pct=0.07)
    snap = again.startup_snapshot()
    assert snap.version == core.config_version + 1
    assert snap.changed == {"min_edge_pct": [0.05, 0.07]}
    same = make(state=state).startup_snapshot()
    assert same.version == core.config_version and same.changed == {}


def test_restart_keeps_open_position_and_halt(tmp_path) -> None:
    store = StateStore(tmp_path / "trader.db")
    core = make()
    enter_and_fill(core)
    core.step(TriggerEmergencyStop(request_id="r"), 0)
    core.step(UpdateConfig(request_id="c", config={"take_profit_pct": 0.5}), 0)
    store.save(core.persistent(), core.now_ns)
    store.close()
    store2 = StateStore(tmp_path / "trader.db")
    again = make(state=store2.load())
    assert again.emergency_stop and "emergency_stop" in again.halt_reasons()
    assert again.position is not None and again.position.size == 10.0
    assert again.position.cost == pytest.approx(core.position.cost)
    assert again.trades_today == 1 and again.config_version == core.config_version
    assert decision(signal(again, 150)).reason == "halted:emergency_stop"
    out = again.step(MarketResolved(slug=SLUG, winning_outcome="Up", ts_ns=END + NS), 0)
    assert decision(out).action == "settle" and again.daily_pnl == pytest.approx(10 - 5.175)


def test_max_entry_price_and_min_order_size() -> None:
    out = signal(make(max_entry_price=0.5), 100, p_up=0.9, up_ask=0.51)
    assert decision(out).reason == "price_above_max_entry" and not intents(out)
    assert decision(signal(make(max_entry_price=0.5), 100, p_up=0.9, up_ask=0.5)).action == "enter"
    # $1 at 0.45 is 2.22 shares, whose collateral cut to cents is $0.99: under the venue's $1
    # minimum for a marketable BUY (PROTOCOLS.md section 7)
    out = signal(make(stake_per_trade_usd=1.0), 100, p_up=0.9, up_ask=0.45)
    assert decision(out).reason == "size_below_min_order" and not intents(out)
    assert decision(out).details["why"] == "below_min_buy_notional"
    # $2 at limit 0.47 (ask + slippage) is 4.25 shares: under the 5-share minimum, which is for
    # resting orders only
    out = signal(make(stake_per_trade_usd=2.0), 100, p_up=0.9, up_ask=0.45)
    assert decision(out).action == "enter" and intents(out)[0].size < 5  # 2 / 0.47 = 4.25


def test_clear_resets_loss_streak_but_not_daily_loss() -> None:
    core = make(state={"day": "2026-01-01", "loss_streak": 3, "daily_pnl": -3.0})
    assert core.halt_reasons() == ["loss_streak"]
    core.step(ClearEmergencyStop(request_id="c"), 0)
    assert core.halt_reasons() == [] and decision(signal(core, 100)).action == "enter"
    core = make(state={"day": "2026-01-01", "daily_pnl": -10.5})
    core.step(ClearEmergencyStop(request_id="c"), 0)
    assert decision(signal(core, 100)).reason == "halted:daily_loss_limit"


def test_a_tick_size_change_in_the_book_wins_over_discovery() -> None:
    """After a tick_size_change ingest publishes books with the new tick before discovery
    catches up: intents must already be on the new grid."""
    core = make()  # discovery said 0.01
    t = START + 100 * NS
    core.step(BtcTrade(price=85_000, size=1, ts_exchange_ns=t, ts_recv_ns=t), 0)
    for asset in ("U", "D"):
        snap = book(asset, 0.443, 0.451, t)
        core.step(msgspec.structs.replace(snap, tick_size=0.001), 0)
    out = signal(core, 100, p_up=0.70, refresh=False)
    (it,) = intents(out)
    assert it.tick_size == 0.001
    assert abs(it.limit_price * 1000 - round(it.limit_price * 1000)) < 1e-6
    assert it.limit_price >= 0.451


def test_a_failed_trade_reversal_undoes_the_position_without_counting_a_trade() -> None:
    core = make(state={"day": "2026-01-01", "loss_streak": 2})
    it = enter_and_fill(core)
    fee = round(10.0 * 0.07 * 0.5 * 0.5, 5)
    core.step(
        OrderFilled(
            client_order_id=it.client_order_id,
            asset_id="U",
            side="SELL",
            price=(0.5 * 10.0 + fee) / 10.0,  # the trade's net price: cash restored exactly
            size=10.0,
            fee=0.0,
            ts_fill_ns=START + 101 * NS,
            slug=SLUG,
            outcome="Up",
            trade_id="t1:reversed",
            reverses_trade_id="t1",
        ),
        0,
    )
    assert core.position is None
    assert core.loss_streak == 2 and core.daily_pnl == pytest.approx(0.0)
    assert any(e[1] == "trade_failed_reversed" for e in core.events)


def _take_profit(core: StrategyCore) -> None:
    """The position entered by `enter_and_fill` exits at a take-profit and the exit fills."""
    t = START + 120 * NS
    out = core.step(book("U", 0.67, 0.69, t), 0)
    (ex,) = [i for i in intents(out) if i.side == "SELL"]
    core.step(
        OrderFilled(
            client_order_id=ex.client_order_id,
            asset_id="U",
            side="SELL",
            price=0.67,
            size=ex.size,
            fee=0.1,
            ts_fill_ns=t,
            slug=SLUG,
            outcome="Up",
        ),
        0,
    )
    assert core.position is None


@pytest.mark.parametrize(("per_window", "again"), [(1, "skip"), (2, "enter")])
def test_one_entry_per_window_after_a_take_profit(per_window: int, again: str) -> None:
    """Issue 15: after a take-profit the strategy entered the same window again (3 entries in
    one window in a backtest, each paying spread and fee). `max_entries_per_window` (1) says no;
    an entry that got no fill does not count (test_rejected_entry_gives_the_trade_back)."""
    core = make(max_entries_per_window=per_window, max_trades_per_day=50)
    enter_and_fill(core)
    _take_profit(core)
    d = decision(signal(core, 130))
    assert d.action == again
    if again == "skip":
        assert d.reason == "max_entries_per_window" and d.details["entries"] == 1
        # a restart does not forget the window's entries
        again_core = Recorded(core.config, core.persistent())
        again_core.step(market(), 0)
        assert decision(signal(again_core, 131)).reason == "max_entries_per_window"


def test_both_sides_are_considered_and_the_larger_after_fee_edge_is_bought() -> None:
    """The model favours Up (0.55) but Up's ask is 0.54 and Down's 0.30: Up's edge after the fee
    is 0.55 - 0.54 - 0.0174 < 0, Down's 0.45 - 0.30 - 0.0147 = 0.135: buy Down."""
    core = make(min_signal_score=0.0)
    out = signal(core, 100, p_up=0.55, up_ask=0.54, down_ask=0.30)
    d = decision(out)
    assert (d.action, d.side) == ("enter", "Down")
    (it,) = intents(out)
    assert it.asset_id == "D" and it.outcome == "Down"
    fee = 0.07 * 0.30 * 0.70
    assert d.details["edge"] == pytest.approx(0.45 - 0.30 - fee)
    # and where the favoured side is the better one, it is the one bought
    core = make(min_signal_score=0.0)
    d = decision(signal(core, 100, p_up=0.70, up_ask=0.45, down_ask=0.45))
    assert (d.action, d.side) == ("enter", "Up")


def test_no_entry_on_the_model_alone_when_the_config_blends_with_the_market() -> None:
    """With a market-aware blend configured, a signal without the market's mid (signal fell back
    to the model alone) is no edge: skipped as no_market_mid; with the mid it enters."""
    core = make(blend_market_weight=1.0, blend_model_weight=0.5)
    d = decision(signal(core, 100))
    assert (d.action, d.reason) == ("skip", "no_market_mid")
    t = START + 101 * NS
    fresh(core, t)
    s = SignalScore(
        slug=SLUG,
        p_up=0.70,
        side="Up",
        score=0.4,
        edge_up=0.0,
        edge_down=0.0,
        ts_ns=t,
        inputs={"p_market": 0.44, "p_model": 0.9},
    )
    assert decision(core.step(s, 0)).action == "enter"


def test_redemptions_split_settled_cash_into_redeemed_and_awaiting() -> None:
    """Winning tokens pay nothing until redeemed (PROTOCOLS.md section 7): strategy folds
    execution's exec.redemption messages into "awaiting redemption" and "redeemed" USD, counts a
    repeated confirmation once, and rebuilds both from the ledger rows at a restart."""
    from common.schema import PositionRedeemed, RiskState

    core = make()

    def red(cid: str, state: str, expected: float, returned: float = 0.0) -> PositionRedeemed:
        return PositionRedeemed(
            condition_id=cid,
            slug="btc-updown-5m-" + cid,
            state=state,
            shares=expected,
            cash_expected=expected,
            cash_returned=returned,
            ts_ns=START,
            dry_run=False,
        )

    def figures(out: list[tuple[str, Any]]) -> tuple[float, int, float]:
        (r,) = [m for _, m in out if isinstance(m, RiskState)]
        return r.awaiting_redemption_usd, r.redemptions_open, r.redeemed_usd

    assert figures(core.step(red("a", "requested", 9.43), START)) == (9.43, 1, 0.0)
    assert figures(core.step(red("b", "awaiting", 5.0), START)) == (14.43, 2, 0.0)
    assert figures(core.step(red("a", "confirmed", 9.43, 9.43), START)) == (5.0, 1, 9.43)
    assert core.step(red("a", "confirmed", 9.43, 9.43), START) == []  # counted once
    assert core.risk_state().redeemed_usd == 9.43
    restarted = make()
    restarted.seed_redemptions(
        [
            {
                "condition_id": "a",
                "state": "confirmed",
                "cash_expected": 9.43,
                "cash_returned": 9.43,
            },
            {"condition_id": "b", "state": "sent", "cash_expected": 5.0, "cash_returned": 0.0},
        ]
    )
    r = restarted.risk_state()
    assert (r.awaiting_redemption_usd, r.redemptions_open, r.redeemed_usd) == (5.0, 1, 9.43)


def test_a_failed_exit_waits_a_second_but_a_new_position_exits_at_once() -> None:
    """Issue 16: the 1 s pause after an exit attempt also held up the NEXT position's exit (a
    re-entry 0.1 s after a take-profit could not exit before 1 s had passed). The pause is for
    retrying the same position's failed exit."""
    core = make(max_entries_per_window=5, max_trades_per_day=50)
    enter_and_fill(core)
    t = START + 100 * NS
    out = core.step(book("U", 0.67, 0.69, t + NS // 10), 0)
    (ex,) = [i for i in intents(out) if i.side == "SELL"]
    core.step(OrderRejected(client_order_id=ex.client_order_id, reason="killed", ts_ns=t), 0)
    # the same position: no new exit within the second after the failed one
    assert not intents(core.step(book("U", 0.67, 0.69, t + NS // 2), 0))
    out = core.step(book("U", 0.67, 0.69, t + NS + NS // 5), 0)
    (ex,) = [i for i in intents(out) if i.side == "SELL"]
    fill = dict(asset_id="U", slug=SLUG, outcome="Up", fee=0.0)
    core.step(
        OrderFilled(
            client_order_id=ex.client_order_id,
            side="SELL",
            price=0.67,
            size=ex.size,
            ts_fill_ns=t + NS + NS // 5,
            **fill,
        ),
        0,
    )
    assert core.position is None
    # re-entry 0.1 s later, filled; its take-profit exits on the next book, not a second later
    (it,) = intents(signal(core, 101.3, p_up=0.80, up_ask=0.50))
    core.step(
        OrderFilled(
            client_order_id=it.client_order_id,
            side="BUY",
            price=0.50,
            size=it.size,
            ts_fill_ns=t + NS + NS * 3 // 10,
            **fill,
        ),
        0,
    )
    out = core.step(book("U", 0.67, 0.69, t + NS + NS * 4 // 10), 0)
    assert [i.side for i in intents(out)] == ["SELL"]
    assert decision(out).reason == "take_profit"


def _reject(core: StrategyCore, it: OrderIntent, code: str = "preflight") -> None:
    core.step(
        OrderRejected(client_order_id=it.client_order_id, reason=f"no: {code}", ts_ns=0, code=code),
        0,
    )


def _events(core: Recorded, name: str) -> list[dict[str, Any]]:
    return [e.fields for e in core.events if e.event == name]


def _next_entry(core: StrategyCore, t: float) -> tuple[OrderIntent, float]:
    """Signals every 0.1 s from `t` until an entry goes out: (its intent, its time in s); every
    signal before it is skipped `entry_backoff`."""
    while True:
        out = signal(core, t)
        if its := intents(out):
            return its[0], t
        assert decision(out).reason == "entry_backoff", decision(out)
        t = round(t + 0.1, 1)


def test_rejected_entries_back_off_doubling_up_to_the_cap_logged_once_each() -> None:
    """A rejected entry is not re-sent at signal rate (the tester saw 15 a second in BLOCKED
    mode): the market waits 1, 2, 4, 4 s (doubling, capped) after each rejection in a row, one
    risk `entry_backoff` line per backoff; the signals meanwhile are skipped `entry_backoff`."""
    core = make(
        max_entries_per_window=50,
        max_trades_per_day=50,
        entry_reject_backoff_s=1.0,
        entry_reject_backoff_max_s=4.0,
    )
    it, t = _next_entry(core, 100.0)
    waits = []
    for _ in range(4):
        _reject(core, it)
        it, sent = _next_entry(core, round(t + 0.1, 1))
        waits.append(round(sent - t, 1))
        t = sent
    assert waits == [1.0, 2.0, 4.0, 4.0]
    logged = _events(core, "entry_backoff")
    assert [e["backoff_s"] for e in logged] == [1.0, 2.0, 4.0, 4.0]
    assert [e["rejects_in_a_row"] for e in logged] == [1, 2, 3, 4]
    assert logged[0]["code"] == "preflight" and logged[0]["market"] == "btc-5m"


def test_entries_rejected_for_a_book_that_moved_wait_a_flat_base() -> None:
    """Execution's own checks (the preflight walk, an out-of-sync book, an intent expired on the
    way) refused the entry before the venue saw it: the next book may take it, so each waits the
    base `entry_reject_backoff_s`, not doubled, and does not count as a rejection in a row; a
    venue's refusal after them doubles from the base as before."""
    core = make(
        max_entries_per_window=50,
        max_trades_per_day=50,
        entry_reject_backoff_s=1.0,
        entry_reject_backoff_max_s=60.0,
    )
    it, t = _next_entry(core, 100.0)
    waits = []
    for code in ("preflight_liquidity", "book_out_of_sync", "expired", "preflight_liquidity"):
        _reject(core, it, code)
        it, sent = _next_entry(core, round(t + 0.1, 1))
        waits.append(round(sent - t, 1))
        t = sent
    assert waits == [1.0, 1.0, 1.0, 1.0]
    assert core.state_of(SLUG).entry_rejects == 0
    for code in ("venue_error", "venue_error"):
        _reject(core, it, code)
        it, sent = _next_entry(core, round(t + 0.1, 1))
        waits.append(round(sent - t, 1))
        t = sent
    assert waits[4:] == [1.0, 2.0]


def test_a_fill_or_a_config_change_resets_the_entry_backoff() -> None:
    core = make(max_entries_per_window=50, max_trades_per_day=50, entry_reject_backoff_s=2.0)
    it, t = _next_entry(core, 100.0)
    _reject(core, it)
    it, t = _next_entry(core, 100.1)
    assert t == 102.0
    _reject(core, it)  # the second in a row: 4 s
    ms = core.state_of(SLUG)
    assert ms.entry_rejects == 2
    assert decision(signal(core, 102.5)).reason == "entry_backoff"
    # a config change: entries may go at once, and the next rejection waits the base again
    core.step(UpdateConfig(request_id="c", config={"entry_reject_backoff_s": 3.0}), 0)
    assert ms.entry_rejects == 0
    assert _events(core, "entry_backoff_reset")[-1]["why"] == "config_change"
    (it,) = intents(signal(core, 102.6))
    _reject(core, it)
    assert _events(core, "entry_backoff")[-1]["backoff_s"] == 3.0
    # a fill resets it too
    it, t = _next_entry(core, 102.7)
    assert t == 105.6
    core.step(
        OrderFilled(
            client_order_id=it.client_order_id,
            asset_id="U",
            side="BUY",
            price=0.45,
            size=it.size,
            fee=0.0,
            ts_fill_ns=START + int(t * NS),
            slug=SLUG,
            outcome="Up",
        ),
        0,
    )
    assert ms.entry_rejects == 0 and ms.entry_backoff_until_ns == 0
    assert _events(core, "entry_backoff_reset")[-1]["why"] == "fill"


def test_an_entry_refused_because_real_trading_is_blocked_halts_the_market_entries() -> None:
    """DRY_RUN=false without the other two switches: execution rejects every order with
    REAL_TRADING_BLOCKED_* (services/execution/switches.py). No retry can succeed: the market's
    entries halt with reason `real_trading_blocked` (said once) instead of retrying."""
    core = make(max_entries_per_window=50, max_trades_per_day=50)
    (it,) = intents(signal(core, 100))
    out = core.step(
        OrderRejected(
            client_order_id=it.client_order_id,
            reason="real trading blocked: REAL_TRADING_BLOCKED_ENABLE_FALSE",
            ts_ns=0,
            code="REAL_TRADING_BLOCKED_ENABLE_FALSE",
        ),
        0,
    )
    risk = [m for _, m in out if isinstance(m, RiskState)][-1]
    mk = risk.markets[core.state_of(SLUG).key]
    assert mk["halted"] and mk["reasons"] == ["real_trading_blocked"]
    for t in (101, 200, 250):  # long after any backoff: still no entry
        out = signal(core, t)
        assert not intents(out)
        assert decision(out).reason == "halted:real_trading_blocked"
    (halted,) = _events(core, "entries_halted")
    assert halted["code"] == "REAL_TRADING_BLOCKED_ENABLE_FALSE"
    assert not _events(core, "entry_backoff")
    # the operator's config change lets it try again
    core.step(UpdateConfig(request_id="c", config={"stake_per_trade_usd": 4.0}), 0)
    assert intents(signal(core, 251))
