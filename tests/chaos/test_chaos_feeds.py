"""Chaos on the venue feeds, under the real supervisord tree on the simulated venue: dropped
sockets, silent stalls, malformed and unknown frames, Gamma 5xx and a tick size change. Nothing
may crash (every pid unchanged), faults are counted, the stale gate blocks entries while data is
stale, and trading resumes once the feed recovers."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from common import topics
from common.schema import Decision, FeedStatus, Heartbeat, MarketInfo
from tests.chaos.chaos_harness import HOLD_CONFIG, Tree, ns, running_tree
from tests.conftest import wait_for

pytestmark = pytest.mark.whole_system  # starts a supervisord tree (pyproject markers)

STALE_MS = 1000
# Quick exits (1-2 % moves), so the strategy is flat most of the time and enters again and again:
# a broken stale gate would show up as an entry during the stall.
CHURN_CONFIG: dict[str, Any] = {
    **HOLD_CONFIG,
    "take_profit_pct": 0.02,
    "stop_loss_pct": 0.02,
    "refuse_entry_inside_stop_loss": False,  # churn on purpose (quick 2 % exits)
    "min_seconds_before_close": 2,
    "stale_after_ms": STALE_MS,
}


@pytest.fixture(scope="module")
def tree() -> Iterator[Tree]:
    with running_tree(CHURN_CONFIG, window_s=20) as t:
        yield t


@pytest.fixture(autouse=True)
def steady(tree: Tree) -> Iterator[dict[str, int]]:
    """Each test starts trading, with no fault active, and must end with no process restarted."""
    tree.clear_faults()
    tree.all_running()
    pids = tree.pids()
    wait_for(lambda: entries_after(tree, ns() - 3_000_000_000), 30, what="trading under way")
    yield pids
    tree.clear_faults()
    assert tree.pids() == pids, "a process crashed or restarted under the fault"
    assert tree.ledger_problems() == []


def entries_after(tree: Tree, t_ns: int, until_ns: int | None = None) -> list[tuple[Any, ...]]:
    sql = "SELECT client_order_id, slug, ts_intent_ns, tick_size, limit_price FROM orders "
    sql += "WHERE side='BUY' AND ts_intent_ns > ?"
    args: tuple[Any, ...] = (t_ns,)
    if until_ns is not None:
        sql += " AND ts_intent_ns < ?"
        args += (until_ns,)
    return tree.query(sql + " ORDER BY ts_intent_ns", args)


def wait_entry(
    tree: Tree,
    after_ns: int,
    what: str,
    slug: str | Callable[[], set[str]] = "",
    timeout: float = 30,
) -> None:
    """Wait for an entry after `after_ns` (in market `slug`, or in one of the slugs it returns
    when it is a callable); on timeout say what the strategy decided instead."""

    def found() -> list[tuple[Any, ...]]:
        names = slug() if callable(slug) else {slug}
        return [e for e in entries_after(tree, after_ns) if not slug or e[1] in names]

    try:
        wait_for(found, timeout, what=what)
    except AssertionError as e:
        reasons = Counter(
            f"{s.msg.action}:{s.msg.reason}"
            for s in tree.recorder.since(after_ns, topics.DECISION)
            if isinstance(s.msg, Decision)
        )
        state = tree.strategy_state()
        raise AssertionError(
            f"{e}; decisions since: {dict(reasons)}; position: {state.get('position')}; "
            f"pending: {state.get('pending')}"
        ) from None


def ingest_detail(tree: Tree, after_ns: int) -> dict[str, Any]:
    hb = tree.recorder.first(
        topics.HEARTBEAT_PREFIX + "ingest", lambda m: isinstance(m, Heartbeat), after_ns, 5
    )
    return hb.msg.detail  # type: ignore[union-attr, no-any-return]


def decision_of(tree: Tree, coid: str) -> dict[str, Any]:
    for s in tree.recorder.since(0, topics.DECISION):
        if isinstance(s.msg, Decision) and s.msg.client_order_id == coid:
            return {"reason": s.msg.reason, "ts_ns": s.msg.ts_ns, **s.msg.details}
    return {}


def risk_log(tree: Tree, event: str, after_ns: int) -> list[dict[str, Any]]:
    p = tree.root / "logs" / "risk.jsonl"
    out = []
    for ln in p.read_text().splitlines() if p.exists() else []:
        doc = json.loads(ln)
        if doc.get("event") == event and doc.get("ts_ns", 0) >= after_ns:
            out.append(doc)
    return out


@pytest.mark.parametrize(("channel", "feed"), [("binance", "binance"), ("market", "clob")])
def test_silent_stall_blocks_entries_until_the_feed_recovers(
    tree: Tree, channel: str, feed: str
) -> None:
    t0 = ns()
    tree.fault("stall", channel, seconds=5)
    stale = tree.recorder.first(
        topics.FEED_STATUS_PREFIX + feed,
        lambda m: isinstance(m, FeedStatus) and (m.stale or not m.connected),
        t0,
        10,
    )
    fresh = tree.recorder.first(
        topics.FEED_STATUS_PREFIX + feed,
        lambda m: isinstance(m, FeedStatus) and m.connected and not m.stale,
        stale.t_ns,
        30,
    )
    stale_s = (fresh.t_ns - stale.t_ns) / 1e9
    assert stale_s >= 2.0, f"{feed} was reported stale for only {stale_s:.2f}s of a 5s stall"
    # while ingest says the feed is stale, no entry (margins for the status to travel: the
    # strategy may hear "fresh" a moment before this test does, and trade at once, rightly)
    during = entries_after(tree, stale.t_ns + 100_000_000, fresh.t_ns - 300_000_000)
    assert during == [], (
        f"entries while {feed} was stale ({(stale.t_ns - t0) / 1e9:.3f}s .. "
        f"{(fresh.t_ns - t0) / 1e9:.3f}s after the fault): "
        + "; ".join(
            f"{coid} at {(ts - t0) / 1e9:.3f}s: {decision_of(tree, coid)}"
            for coid, _s, ts, _t, _l in during
        )
    )
    # the strategy itself saw the feed go stale
    assert any(d["feed"] == feed and d["stale"] for d in risk_log(tree, "feed_status", t0))
    # the strategy says why: a stale BTC feed is the first gate, flat or holding (a position
    # inside its take-profit/stop-loss band may rightly stay open for the whole stall)
    if feed == "binance":
        skips = [
            s.msg
            for s in tree.recorder.since(stale.t_ns, topics.DECISION)
            if isinstance(s.msg, Decision) and s.t_ns < fresh.t_ns and s.msg.action == "skip"
        ]
        assert any(d.reason == "stale_price_data" for d in skips), {d.reason for d in skips}
    # trading resumes after recovery
    wait_entry(tree, fresh.t_ns, "an entry after the feed recovered")


def test_dropped_sockets_reconnect_and_trading_resumes(tree: Tree) -> None:
    t0 = ns()
    before = ingest_detail(tree, t0)["feeds"]
    tree.fault("drop", "all")

    def reconnected() -> dict[str, Any] | None:
        feeds = ingest_detail(tree, ns())["feeds"]
        ok = all(
            feeds[f]["reconnects"] > before[f]["reconnects"] and feeds[f]["connected"]
            for f in ("binance", "clob", "price_feed")
        )
        return feeds if ok else None

    wait_for(reconnected, 30, what="every websocket feed to reconnect")
    tree.probe_through(ns(), 10)
    wait_entry(tree, t0 + 1_000_000_000, "an entry after the drop")


def test_malformed_and_unknown_frames_are_counted_not_fatal(tree: Tree) -> None:
    t0 = ns()
    before = ingest_detail(tree, t0)["feeds"]
    tree.fault("malformed", "all", count=20)
    tree.fault("unknown", "all", count=20)

    def counted() -> dict[str, Any] | None:
        feeds = ingest_detail(tree, ns())["feeds"]
        bad = {f: feeds[f]["parse_errors"] - before[f]["parse_errors"] for f in feeds}
        unknown = {f: feeds[f]["unknown"] - before[f]["unknown"] for f in feeds}
        if all(bad[f] > 0 and unknown[f] > 0 for f in ("binance", "clob", "price_feed")):
            return {"parse_errors": bad, "unknown": unknown}
        return None

    print("\nmalformed/unknown frames counted:", wait_for(counted, 20, what="bad frames counted"))
    tree.probe_through(ns(), 10)
    wait_entry(tree, ns(), "an entry after the bad frames")


def test_gamma_5xx_is_survived_and_windows_keep_rolling(tree: Tree) -> None:
    t0 = ns()
    counts_before = ingest_detail(tree, t0).get("counts", {}).get("gamma_5xx", 0)
    tree.fault("gamma_5xx", "gamma", seconds=8)
    wait_for(
        lambda: ingest_detail(tree, ns()).get("counts", {}).get("gamma_5xx", 0) > counts_before,
        15,
        what="ingest to count Gamma 5xx answers",
    )
    t_end = t0 + 8_000_000_000
    # after the outage the windows that had not started yet are discovered, announced and traded:
    # an entry in one of them within three windows (a single 20 s window may rightly offer none:
    # its prices past max_entry_price, or the previous window's position still open all along)
    new = tree.recorder.first(
        topics.MARKET,
        lambda m: isinstance(m, MarketInfo) and m.role == "current" and m.window_start_ns > t_end,
        t_end,
        45,
    )

    def after_outage() -> set[str]:
        return {
            s.msg.slug
            for s in tree.recorder.since(t_end, topics.MARKET)
            if isinstance(s.msg, MarketInfo) and s.msg.window_start_ns > t_end
        }

    wait_entry(
        tree,
        t_end,
        f"an entry in a window started after the Gamma outage ({new.msg.slug} or later)",  # type: ignore[union-attr]
        after_outage,
        3 * tree.window_s,
    )


def test_tick_size_change_resyncs_and_orders_use_the_new_grid(tree: Tree) -> None:
    def current_with_time() -> dict[str, Any] | None:
        # enough time left, and priced away from the extremes, where the strategy's price cap
        # (max_entry_price) would block every entry whatever the tick
        cur = tree.sim_state()["current"]
        asks = [
            (cur["books"][t].get("best_ask") or 1.0) for t in (cur["up_token"], cur["down_token"])
        ]
        tradable = all(float(a) < 0.85 for a in asks)
        return cur if cur["end"] - ns() / 1e9 >= 14 and tradable else None

    cur = wait_for(current_with_time, 60, 0.2, what="a window with 14s left, priced mid-range")
    before = ingest_detail(tree, ns())["book_stats"]["tick_changes"]
    t0 = ns()
    tree.fault("tick_size_change", "market")
    new_tick = float(tree.sim_state()["current"]["tick_size"])
    assert new_tick != float(cur["tick_size"])
    wait_for(
        lambda: ingest_detail(tree, ns())["book_stats"]["tick_changes"] > before,
        10,
        what="ingest to apply the tick size change",
    )
    wait_entry(tree, t0 + 500_000_000, "an entry after the tick size change", cur["slug"], 20)
    later = [e for e in entries_after(tree, t0 + 500_000_000) if e[1] == cur["slug"]]
    for coid, _slug, _ts, tick, limit in later:
        assert tick == pytest.approx(new_tick), (
            f"{coid}: intent sent with tick_size {tick} after the market's tick changed to "
            f"{new_tick} (the intent's market info was not updated from the tick_size_change)"
        )
        steps = limit / new_tick
        assert abs(steps - round(steps)) < 1e-6, f"{coid}: limit {limit} off the {new_tick} grid"
