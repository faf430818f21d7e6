"""Property tests: no sequence of messages yields an entry while halted, on stale data, outside
the entry window, over the trade cap or with a position (or entry order) open."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from common.config import StrategyConfig
from common.schema import (
    BookSnapshot,
    BtcTrade,
    ClearEmergencyStop,
    ClockTick,
    FeedStatus,
    ForceExit,
    MarketInfo,
    MarketResolved,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    SignalScore,
    TriggerEmergencyStop,
    UpdateConfig,
)
from services.strategy.core import StrategyCore

NS = 1_000_000_000
MS = 1_000_000
START = 1_767_225_600 * NS + 7200 * NS
END = START + 300 * NS
SLUG = "btc-updown-5m-p"

# "market": fresh trade + both books + a signal at once, the common case, weighted up so that
# many sequences reach an entry and the gates are actually exercised
market_op = st.tuples(
    st.just("market"), st.floats(0.0, 1.0), st.integers(2, 70), st.integers(2, 70)
)
ops = st.one_of(
    market_op,
    market_op,
    market_op,
    st.tuples(st.just("clock"), st.integers(1, 40_000)),
    st.tuples(st.just("clock"), st.integers(1, 2_000)),
    st.tuples(st.just("trade"), st.just(0)),
    st.tuples(st.just("book"), st.sampled_from(["U", "D"]), st.integers(2, 98)),
    st.tuples(st.just("signal"), st.floats(0.0, 1.0)),
    st.tuples(st.just("stop"), st.just(0)),
    st.tuples(st.just("clear"), st.just(0)),
    st.tuples(st.just("fill"), st.integers(1, 99)),
    st.tuples(st.just("reject"), st.just(0)),
    st.tuples(st.just("resolve"), st.sampled_from(["Up", "Down"])),
    st.tuples(st.just("feed"), st.sampled_from(["binance", "clob"]), st.booleans()),
    st.tuples(st.just("config"), st.integers(0, 6), st.integers(0, 120)),
    st.tuples(st.just("force"), st.just(0)),
    st.tuples(st.just("closed"), st.booleans()),
)


def entry_allowed(core: StrategyCore, side_asset: str, seen: dict[str, Any]) -> str:
    """'' when an entry is allowed right now, else why not (computed independently)."""
    cfg = core.config
    now = core.now_ns
    stale = cfg.stale_after_ms * MS
    if core.emergency_stop:
        return "emergency"
    if core.daily_pnl <= -cfg.max_daily_loss_usd + 1e-9:
        return "daily loss"
    if core.loss_streak >= cfg.max_consecutive_losses:
        return "streak"
    if core.position is not None:
        return "position"
    if any(p.kind == "entry" for p in core.pending.values()):
        return "pending"
    if seen["closed"]:
        return "closed"
    if seen["feed"].get("binance") or now - seen["trade"] > stale:
        return "stale price"
    if seen["feed"].get("clob") or now - seen["book"].get(side_asset, -(10**20)) > stale:
        return "stale book"
    if now - START < cfg.entry_window_min_sec * NS or END - now < cfg.min_seconds_before_close * NS:
        return "window"
    if core.trades_today >= cfg.max_trades_per_day:
        return "cap"
    if seen["window_entries"] >= cfg.max_entries_per_window:
        return "window entries"
    ask = seen["ask"].get(side_asset, 0.5)
    worst = cfg.stake_per_trade_usd * (1 + 0.07 * (1 - ask))  # fee / ask at rate 0.07
    held = [core.position] if core.position else []
    at_risk = sum(p.cost for p in [*held, *core.awaiting.values()])
    if core.daily_pnl - at_risk - worst < -cfg.max_daily_loss_usd - 1e-9:
        return "headroom"
    return ""


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(46_000, 268_000) | st.integers(0, 400_000), st.lists(ops, min_size=1, max_size=60)
)
def test_no_forbidden_entry(offset_ms: int, seq: list[tuple[Any, ...]]) -> None:
    core = StrategyCore(StrategyConfig())
    now = START + offset_ms * MS
    seen: dict[str, Any] = {
        "trade": -(10**20),
        "book": {},
        "ask": {},
        "feed": {},
        "closed": False,
        "window_entries": 0,  # entry orders sent in the window, less those that got no fill
    }
    mk = dict(
        slug=SLUG,
        condition_id="0xc",
        up_token_id="U",
        down_token_id="D",
        window_start_ns=START,
        window_end_ns=END,
        ts_recv_ns=now,
        fee_rate=0.07,
    )
    core.step(MarketInfo(**mk), 0)
    core.step(ClockTick(ts_ns=now), 0)
    n = 0
    entries = 0
    for op in seq:
        n += 1
        kind = op[0]
        msg: Any = None
        before: dict[str, str] = {}
        if kind == "clock":
            now += op[1] * MS
            msg = ClockTick(ts_ns=now)
        elif kind == "trade":
            msg = BtcTrade(price=85_000, size=1, ts_exchange_ns=now, ts_recv_ns=now)
            seen["trade"] = now
        elif kind == "book":
            ask = op[2] / 100
            msg = BookSnapshot(
                asset_id=op[1],
                best_bid=ask - 0.01,
                best_ask=ask,
                bids=[(round(ask - 0.01, 2), 100.0)],
                asks=[(ask, 100.0)],
                ts_exchange_ns=now,
                ts_recv_ns=now,
            )
            seen["book"][op[1]] = now
            seen["ask"][op[1]] = ask
        elif kind == "signal":
            p = op[1]
            msg = SignalScore(
                slug=SLUG,
                p_up=p,
                side="Up" if p >= 0.5 else "Down",
                score=max(-1.0, min(1.0, 2 * p - 1)),
                edge_up=0,
                edge_down=0,
                ts_ns=now,
            )
            # either side may be bought (the one with the larger after-fee edge)
            before["Up"] = entry_allowed(core, "U", seen)
            before["Down"] = entry_allowed(core, "D", seen)
        elif kind == "market":
            seen["trade"] = now
            core.step(BtcTrade(price=85_000, size=1, ts_exchange_ns=now, ts_recv_ns=now), 0)
            for asset, a in (("U", op[2]), ("D", op[3])):
                ask = a / 100
                core.step(
                    BookSnapshot(
                        asset_id=asset,
                        best_bid=ask - 0.01,
                        best_ask=ask,
                        bids=[(round(ask - 0.01, 2), 100.0)],
                        asks=[(ask, 100.0)],
                        ts_exchange_ns=now,
                        ts_recv_ns=now,
                    ),
                    0,
                )
                seen["book"][asset] = now
                seen["ask"][asset] = ask
            p = op[1]
            msg = SignalScore(
                slug=SLUG,
                p_up=p,
                side="Up" if p >= 0.5 else "Down",
                score=max(-1.0, min(1.0, 2 * p - 1)),
                edge_up=0,
                edge_down=0,
                ts_ns=now,
            )
            # either side may be bought (the one with the larger after-fee edge)
            before["Up"] = entry_allowed(core, "U", seen)
            before["Down"] = entry_allowed(core, "D", seen)
        elif kind == "stop":
            msg = TriggerEmergencyStop(request_id=str(n))
        elif kind == "clear":
            msg = ClearEmergencyStop(request_id=str(n))
        elif kind in ("fill", "reject"):
            pend = next(iter(core.pending.values()), None)
            if pend is None:
                continue
            if kind == "reject":
                msg = OrderRejected(client_order_id=pend.client_order_id, reason="x", ts_ns=now)
                if pend.kind == "entry" and pend.filled <= 0:
                    seen["window_entries"] -= 1  # no trade happened
            else:
                side = "BUY" if pend.kind == "entry" else "SELL"
                msg = OrderFilled(
                    client_order_id=pend.client_order_id,
                    asset_id=pend.asset_id,
                    side=side,
                    price=op[1] / 100,
                    size=pend.size,
                    fee=0.01,
                    ts_fill_ns=now,
                    slug=pend.slug,
                    outcome=pend.outcome,
                )  # type: ignore[arg-type]
        elif kind == "resolve":
            msg = MarketResolved(slug=SLUG, winning_outcome=op[1], ts_ns=now)
        elif kind == "feed":
            msg = FeedStatus(feed=op[1], connected=True, stale=op[2], ts_ns=now)
            seen["feed"][op[1]] = op[2]
        elif kind == "config":
            msg = UpdateConfig(
                request_id=str(n),
                config={"max_trades_per_day": op[1], "entry_window_min_sec": op[2]},
            )
        elif kind == "force":
            msg = ForceExit(request_id=str(n))
        elif kind == "closed":
            seen["closed"] = op[1]
            msg = MarketInfo(**{**mk, "ts_recv_ns": now, "accepting_orders": not op[1]})
        out = core.step(msg, 0)
        for topic, m in out:
            if isinstance(m, OrderIntent) and m.side == "BUY":
                assert topic == "order"
                assert kind in ("signal", "market"), f"entry from a {kind} message"
                assert before.get(m.outcome) == "", f"entry while {before.get(m.outcome)!r}"
                entries += 1
                seen["window_entries"] += 1
        # at most one entry order in flight, whatever happened
        assert sum(1 for p in core.pending.values() if p.kind == "entry") <= 1
    event(f"entries: {min(entries, 3)}")
