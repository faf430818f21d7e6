"""Observe's transport-free core and recorder with plain messages: books from snapshots and
deltas, latency percentiles and thresholds, live P&L, today's figures, recorded rows."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from common.schema import (
    BookSnapshot,
    Heartbeat,
    LatencySample,
    LazyBookSnapshot,
    MarketInfo,
    MarketResolved,
    OrderFilled,
    PositionSettled,
    PositionState,
    RiskState,
    SignalScore,
)
from services.observe import views
from services.observe.latency import LatencyStats, percentile, severity
from services.observe.recorder import MIGRATIONS, Recorder
from services.observe.state import LogLine, ObserveCore, Row

NOW = 1_795_000_000_000_000_000


def core() -> ObserveCore:
    return ObserveCore(NOW, 1)


def market(c: ObserveCore) -> None:
    c.handle(
        "md.market",
        MarketInfo(
            slug="btc-updown-5m-1",
            condition_id="c",
            up_token_id="U",
            down_token_id="D",
            window_start_ns=NOW - 100 * 10**9,
            window_end_ns=NOW + 200 * 10**9,
            ts_recv_ns=NOW,
            price_to_beat=100_000.0,
            price_to_beat_source="gamma",
        ),
        NOW,
    )


def test_book_snapshot_then_deltas_rebuild_depth_and_best() -> None:
    c = core()
    market(c)
    c.handle(
        "md.book.U",
        BookSnapshot(
            asset_id="U",
            best_bid=0.50,
            best_ask=0.52,
            bids=[(0.50, 10.0), (0.49, 20.0)],
            asks=[(0.52, 5.0), (0.53, 7.0)],
            ts_exchange_ns=NOW,
            ts_recv_ns=NOW,
        ),
        NOW,
    )
    c.handle(
        "md.book.U",
        BookSnapshot(
            asset_id="U",
            best_bid=0.51,
            best_ask=0.53,
            bids=[(0.51, 3.0), (0.50, 10.0), (0.49, 20.0)],
            asks=[(0.53, 7.0)],
            ts_exchange_ns=NOW,
            ts_recv_ns=NOW + 10**6,
        ),
        NOW,
    )
    up = views.books_doc(c, NOW + 2 * 10**6)["up"]
    assert up["bids"] == [[0.51, 3.0], [0.50, 10.0], [0.49, 20.0]]
    assert up["asks"] == [[0.53, 7.0]]
    assert (up["best_bid"], up["best_ask"], up["mid"], up["spread"]) == (0.51, 0.53, 0.52, 0.02)
    assert up["bid_depth"] == 33.0 and up["age_ms"] == 1.0
    assert views.books_doc(c, NOW)["down"] is None
    # a signal puts the model's P(Up) next to the market's Up mid on the probability chart
    c.handle(
        "sig.score",
        SignalScore(
            slug="btc-updown-5m-1",
            p_up=0.6,
            side="Up",
            score=0.1,
            edge_up=0.08,
            edge_down=-0.1,
            ts_ns=NOW + 3 * 10**6,
        ),
        NOW + 3 * 10**6,
    )
    assert views.history(c)["prob"][-1][1:] == (0.6, 0.52)


def test_percentiles_are_nearest_rank_and_thresholds_strict() -> None:
    vals = sorted(float(i) for i in range(1, 101))
    assert percentile(vals, 50) == 50.0 and percentile(vals, 99) == 99.0
    assert percentile(vals, 100) == 100.0 and percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)
    assert [severity(x) for x in (200.0, 200.1, 500.0, 500.1, 1000.0, 1000.1)] == [
        "ok",
        "warning",
        "warning",
        "critical",
        "critical",
        "stale",
    ]
    st = LatencyStats(window=10)
    for x in range(20):
        st.add("s", float(x))
    s = st.summary()["s"]
    assert s["count"] == 20 and s["window"] == 10 and s["max"] == 19.0 and s["p50"] == 14.0


def test_latency_breaches_are_logged_once_a_second_with_suppressed_count() -> None:
    c = core()
    out1 = c.handle("exec.latency", LatencySample(stage="x_ms", ms=700.0, ts_ns=NOW), NOW)
    out2 = c.handle("exec.latency", LatencySample(stage="x_ms", ms=800.0, ts_ns=NOW), NOW + 1)
    out3 = c.handle(
        "exec.latency", LatencySample(stage="x_ms", ms=900.0, ts_ns=NOW), NOW + 2 * 10**9
    )
    logs1 = [r for r in out1 if isinstance(r, LogLine)]
    assert logs1 and logs1[0].stream == "latency" and logs1[0].level == "ERROR"
    assert logs1[0].fields["severity"] == "critical"
    assert not [r for r in out2 if isinstance(r, LogLine)]
    logs3 = [r for r in out3 if isinstance(r, LogLine)]
    assert logs3[0].fields["suppressed_since_last"] == 1
    assert c.latency.summary()["x_ms"]["breaches"] == {"critical": 3}


def test_live_pnl_marks_at_the_bid_and_metrics_count_today() -> None:
    c = core()
    market(c)
    c.handle(
        "md.book.U",
        BookSnapshot(
            asset_id="U",
            best_bid=0.60,
            best_ask=0.62,
            bids=[(0.60, 10.0)],
            asks=[(0.62, 5.0)],
            ts_exchange_ns=NOW,
            ts_recv_ns=NOW,
        ),
        NOW,
    )
    c.handle(
        "strat.position",
        PositionState(
            ts_ns=NOW,
            open=True,
            slug="btc-updown-5m-1",
            asset_id="U",
            outcome="Up",
            size=10.0,
            avg_price=0.50,
            cost=5.175,  # strategy's cost includes the entry fees
            fees=0.175,
            mark_price=0.55,
            unrealized_pnl=0.3,
        ),
        NOW,
    )
    pos = views.position_doc(c, NOW)
    assert pos["mark_price"] == 0.60 and pos["unrealized_pnl"] == pytest.approx(0.825)
    out = c.handle(
        "exec.fill",
        OrderFilled(
            client_order_id="a",
            asset_id="U",
            side="BUY",
            price=0.5,
            size=10.0,
            fee=0.175,
            ts_fill_ns=NOW,
        ),
        NOW,
    )
    assert [r.table for r in out if isinstance(r, Row)] == ["trades"]
    c.handle(
        "exec.settlement",
        PositionSettled(
            slug="btc-updown-5m-1",
            asset_id="U",
            outcome="Up",
            won=True,
            size=10.0,
            payout=1.0,
            pnl=4.825,
            ts_ns=NOW,
        ),
        NOW,
    )
    m = views.metrics_doc(c, NOW)
    assert (m["trades_today"], m["wins_today"], m["win_rate"]) == (1, 1, 1.0)
    assert m["daily_pnl"] == 4.825 and m["source"] == "observe"
    # strategy's own counters win once it publishes them for today
    c.handle(
        "risk.state",
        RiskState(
            ts_ns=NOW, halted=False, day=m["day"], daily_pnl=-2.0, trades_today=3, wins_today=1
        ),
        NOW,
    )
    m2 = views.metrics_doc(c, NOW)
    assert (m2["daily_pnl"], m2["trades_today"], m2["source"]) == (-2.0, 3, "strategy")
    # the win rate is of the closed trades (1 win of 1 closed), not of the entries (3, two of
    # them still open or never filled)
    assert (m2["closed_today"], m2["win_rate"]) == (1, 1.0)


def test_recorder_migrates_once_dedups_trades_and_pages(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    rec = Recorder(db)
    assert rec.schema_version == len(MIGRATIONS) == 6
    c = core()
    for i in range(5):
        for r in c.handle(
            "exec.fill",
            OrderFilled(
                client_order_id=f"c{i}",
                asset_id="U",
                side="BUY",
                price=0.5,
                size=1.0,
                fee=0.0,
                ts_fill_ns=NOW + i,
                slug="s",
                trade_id=f"t{i}",
            ),
            NOW,
        ):
            if isinstance(r, Row):
                rec.add(r.table, r.values)
                rec.add(r.table, r.values)  # the same fill twice is one trade
    assert rec.flush() == 10
    page = rec.trades(limit=2, offset=1)
    assert page["total"] == 5 and [t["client_order_id"] for t in page["items"]] == ["c3", "c2"]
    with pytest.raises(ValueError, match="unknown trade filter"):
        rec.trades(colour="red")
    with pytest.raises(ValueError, match="does not own"):
        rec.add("orders", {})
    rec.close()
    again = Recorder(db)  # reopening does not re-run the migration
    assert again.schema_version == 6 and again.count("trades") == 5
    again.close()


def test_config_history_is_per_book(tmp_path: Path) -> None:
    """Each book numbers its config versions: the paper tree's v7, v8 and then a real-mode
    tree's v1 (same database) make two histories, never "v1, then v8, v7"."""
    from common.schema import ConfigSnapshot

    rec = Recorder(tmp_path / "t.db")
    paper = ObserveCore(NOW, 1, venue="sim")
    real = ObserveCore(NOW, 1, venue="sim", dry_run=False, real_trading=True)
    assert paper.book() == ("sim", "paper") and real.book() == ("sim", "real")
    for c, version in ((paper, 7), (paper, 8), (real, 1)):
        snap = ConfigSnapshot(version=version, config={"x": version}, ts_ns=NOW + version)
        for r in c.handle("strat.config", snap, NOW):
            if isinstance(r, Row):
                rec.add(r.table, r.values)
    rec.flush()
    assert [h["version"] for h in rec.config_history(book=("sim", "paper"))] == [8, 7]
    assert [h["version"] for h in rec.config_history(book=("sim", "real"))] == [1]
    last = rec.last_config(("sim", "paper"))
    assert last is not None and last[1] == 8
    rec.close()


def test_a_config_version_named_first_by_a_risk_state_is_still_recorded_once(
    tmp_path: Path,
) -> None:
    """Observe seeded from the database (v13) hears strategy's risk state naming v14 before the
    v14 snapshot (strategy started first): v14 is recorded, once, however often it is re-sent;
    a restarted observe seeded with the recorded versions does not store it again."""
    from common.schema import ConfigSnapshot, RiskState

    rec = Recorder(tmp_path / "t.db")

    def feed(core: ObserveCore, *msgs: object) -> int:
        rows = 0
        for m in msgs:
            topic = "strat.config" if isinstance(m, ConfigSnapshot) else "risk.state"
            for r in core.handle(topic, m, NOW):
                if isinstance(r, Row) and r.table == "config_snapshots":
                    rec.add(r.table, r.values)
                    rows += 1
        rec.flush()
        return rows

    v13 = ConfigSnapshot(version=13, config={"stake_per_trade_usd": 1.5}, ts_ns=NOW, hash="h13")
    first = ObserveCore(NOW, 1, venue="sim")
    assert feed(first, v13) == 1
    core = ObserveCore(NOW, 1, venue="sim")
    core.seed_config(
        {"stake_per_trade_usd": 1.5}, 13, "database", rec.recorded_configs(core.book())
    )
    v14 = ConfigSnapshot(
        version=14,
        config={"stake_per_trade_usd": 1.25},
        ts_ns=NOW + 1,
        source="startup",
        changed={"stake_per_trade_usd": [1.5, 1.25]},
        hash="h14",
    )
    risk = RiskState(ts_ns=NOW + 1, halted=False, config_version=14)
    assert feed(core, risk, v14, risk, v14) == 1
    assert core.config_version == 14
    assert feed(core, v13) == 0  # recorded before: not again
    assert [h["version"] for h in rec.config_history(book=core.book())] == [14, 13]
    again = ObserveCore(NOW, 1, venue="sim")
    again.seed_config({}, 14, "database", rec.recorded_configs(again.book()))
    assert feed(again, v14) == 0
    rec.close()


def test_old_markets_and_their_books_are_forgotten() -> None:
    c = core()
    for i in range(40):
        start = NOW + i * 300 * 10**9
        c.handle(
            "md.market",
            MarketInfo(
                slug=f"m{i}",
                condition_id="c",
                up_token_id=f"U{i}",
                down_token_id=f"D{i}",
                window_start_ns=start,
                window_end_ns=start + 300 * 10**9,
                ts_recv_ns=NOW,
            ),
            NOW,
        )
        c.handle(
            f"md.book.U{i}",
            BookSnapshot(
                asset_id=f"U{i}",
                best_bid=0.5,
                best_ask=0.6,
                bids=[(0.5, 1.0)],
                asks=[(0.6, 1.0)],
                ts_exchange_ns=NOW,
                ts_recv_ns=NOW,
            ),
            NOW,
        )
    assert len(c.markets) == 16 and "m39" in c.markets and "m0" not in c.markets
    assert "U0" not in c.books and len(c.books) <= 17


def test_mode_banner_follows_execution_over_settings() -> None:
    from common.schema import Heartbeat

    c = ObserveCore(NOW, 1, dry_run=False, real_trading=True)
    assert views.mode_doc(c)["label"] == "LIVE" and views.mode_doc(c)["source"] == "settings"
    for mode, label in (("blocked", "BLOCKED"), ("dry_run", "DRY RUN"), ("live", "LIVE")):
        c.handle(
            "sys.heartbeat.execution",
            Heartbeat(
                service="execution",
                state="running",
                pid=2,
                started_ns=NOW,
                ts_ns=NOW,
                detail={"mode": mode},
            ),
            NOW,
        )
        doc = views.live(c, NOW)["data"]
        assert doc["mode"]["label"] == label and doc["mode"]["source"] == "execution"
        assert doc["dry_run"] is (label != "LIVE")


def test_running_brier_of_model_market_and_blend_on_resolved_windows() -> None:
    """Issue 15: the dashboard shows the live running Brier of the model vs the market on
    resolved windows, at the same instants (one sample a second while the Up book had a mid)."""
    c = core()
    market(c)
    slug = "btc-updown-5m-1"
    # two seconds: model 0.8 / market 0.6 / blend 0.65, then 0.9 / 0.7 / 0.75; a second score
    # in the same second is not a new sample; one without a market mid is not scored
    for k, (pm, mk, bl) in enumerate([(0.8, 0.6, 0.65), (0.9, 0.7, 0.75)]):
        for extra_ns in (0, 10**8):
            c.handle(
                "sig.score",
                SignalScore(
                    slug=slug,
                    p_up=bl,
                    side="Up",
                    score=2 * bl - 1,
                    edge_up=0,
                    edge_down=0,
                    ts_ns=NOW + k * 10**9 + extra_ns,
                    inputs={"p_model": pm, "p_market": mk},
                ),
                NOW + k * 10**9 + extra_ns,
            )
    c.handle(
        "sig.score",
        SignalScore(
            slug=slug,
            p_up=0.5,
            side="Up",
            score=0,
            edge_up=0,
            edge_down=0,
            ts_ns=NOW + 5 * 10**9,
            inputs={"p_model": 0.5},
        ),
        NOW + 5 * 10**9,
    )
    assert views.live(c, NOW)["data"]["scores"] == {
        "windows": 0,
        "n": 0,
        "brier_model": None,
        "brier_market": None,
        "brier_blend": None,
    }
    resolved = MarketResolved(slug=slug, winning_outcome="Up", ts_ns=NOW + 300 * 10**9)
    c.handle("md.resolved", resolved, NOW + 300 * 10**9)
    c.handle("md.resolved", resolved, NOW + 301 * 10**9)  # a repeat is not scored twice
    got = views.live(c, NOW)["data"]["scores"]
    assert got["windows"] == 1 and got["n"] == 2
    assert got["brier_model"] == pytest.approx((0.2**2 + 0.1**2) / 2)
    assert got["brier_market"] == pytest.approx((0.4**2 + 0.3**2) / 2)
    assert got["brier_blend"] == pytest.approx((0.35**2 + 0.25**2) / 2)
    assert views.status(c, NOW)["scores"] == got


def test_redeemed_vs_awaiting_redemption_in_status_and_live() -> None:
    """Settled wins are "awaiting redemption" until execution's redemption is confirmed: observe
    shows strategy's totals (else execution's heartbeat) and the latest redemptions with their
    state and why one waits, in /api/status and the live document alike."""
    from common.schema import Heartbeat, PositionRedeemed

    c = core()
    assert views.redemptions_doc(c)["source"] == "observe"
    c.handle(
        "sys.heartbeat.execution",
        Heartbeat(
            service="execution",
            state="running",
            pid=2,
            started_ns=NOW,
            ts_ns=NOW,
            detail={"redemptions_open": 1, "awaiting_redemption_usd": 5.0, "redeemed_usd": 2.5},
        ),
        NOW,
    )
    doc = views.redemptions_doc(c)
    assert (doc["awaiting_redemption_usd"], doc["open"], doc["redeemed_usd"]) == (5.0, 1, 2.5)
    assert doc["source"] == "execution"
    c.handle(
        "exec.redemption",
        PositionRedeemed(
            condition_id="c",
            slug="btc-updown-5m-1",
            state="awaiting",
            shares=9.43,
            cash_expected=9.43,
            ts_ns=NOW,
            detail="relayer unreachable",
            dry_run=False,
        ),
        NOW,
    )
    c.handle(
        "risk.state",
        RiskState(
            ts_ns=NOW,
            halted=False,
            awaiting_redemption_usd=9.43,
            redemptions_open=1,
            redeemed_usd=12.0,
        ),
        NOW,
    )
    for doc in (views.status(c, NOW)["redemptions"], views.live(c, NOW)["data"]["redemptions"]):
        assert (doc["awaiting_redemption_usd"], doc["open"], doc["redeemed_usd"]) == (
            9.43,
            1,
            12.0,
        )
        assert doc["source"] == "strategy"
        (r,) = doc["recent"]
        assert (r["state"], r["detail"], r["cash_expected"]) == (
            "awaiting",
            "relayer unreachable",
            9.43,
        )


def test_a_book_read_lazily_off_the_bus_shows_as_the_whole_book() -> None:
    """observe's runner reads books lazily (levels decoded when a view reads the book): the
    books view of a LazyBookSnapshot is that of the BookSnapshot it was read from."""
    snap = BookSnapshot(
        asset_id="U",
        best_bid=0.50,
        best_ask=0.52,
        bids=[(0.50, 10.0), (0.49, 20.0)],
        asks=[(0.52, 5.0), (0.53, 7.0)],
        ts_exchange_ns=NOW,
        ts_recv_ns=NOW,
    )
    docs = []
    for msg in (snap, msgspec.msgpack.decode(msgspec.msgpack.encode(snap), type=LazyBookSnapshot)):
        c = core()
        market(c)
        c.handle("md.book.U", msg, NOW)
        docs.append(views.books_doc(c, NOW + 10**6)["up"])
    assert docs[0] == docs[1] and docs[1]["bids"] == [[0.50, 10.0], [0.49, 20.0]]


def test_maker_fill_rebate_in_the_trades_row_and_todays_figures(tmp_path: Path) -> None:
    """Issue 18: a maker fill's rebate (USD) goes in its trades row (API /api/trades) and in
    today's `rebates_today` beside `fees_today` (API /api/status metrics, the dashboard)."""
    rec = Recorder(tmp_path / "t.db")
    c = core()
    fills = [
        OrderFilled(
            client_order_id="m",
            asset_id="U",
            side="BUY",
            price=0.48,
            size=10.0,
            fee=0.0,
            ts_fill_ns=NOW,
            slug="s",
            trade_id="tm",
            liquidity="maker",
            rebate_usd=0.03494,
        ),
        OrderFilled(
            client_order_id="t",
            asset_id="U",
            side="SELL",
            price=0.52,
            size=10.0,
            fee=0.17472,
            ts_fill_ns=NOW + 1,
            slug="s",
            trade_id="tt",
        ),
    ]
    for f in fills:
        for r in c.handle("exec.fill", f, NOW):
            if isinstance(r, Row):
                rec.add(r.table, r.values)
    rec.flush()
    rows = {t["client_order_id"]: t for t in rec.trades(limit=10)["items"]}
    assert (rows["m"]["liquidity"], rows["m"]["rebate"], rows["m"]["fee"]) == ("maker", 0.03494, 0)
    assert (rows["t"]["liquidity"], rows["t"]["rebate"]) == ("taker", 0.0)
    m = views.metrics_doc(c, NOW)
    assert (m["fees_today"], m["rebates_today"]) == (0.1747, 0.0349)
    rec.close()


def test_execution_heartbeats_ask_for_the_ledger_and_each_event_counts_once() -> None:
    """A new execution process (the first heard, another pid or start) and one in its first
    seconds ask for a ledger replay; an old one does not. A fill or settlement heard on the bus
    again, or also read from the ledger, counts once."""
    from services.observe.state import LEDGER_REPLAY_FOR_NS

    c = core()
    old = NOW - 10 * LEDGER_REPLAY_FOR_NS

    def beat(pid: int, started_ns: int, ts_ns: int) -> bool:
        c.ledger_replay_due = False
        c.handle(
            "sys.heartbeat.execution",
            Heartbeat(
                service="execution", state="running", pid=pid, started_ns=started_ns, ts_ns=ts_ns
            ),
            ts_ns,
        )
        return c.ledger_replay_due

    assert beat(1, old, NOW)  # the first heard
    assert not beat(1, old, NOW + 10**9)  # the same, long up
    assert beat(2, NOW, NOW + 2 * 10**9)  # a new process
    assert beat(2, NOW, NOW + LEDGER_REPLAY_FOR_NS - 1)  # in its first seconds
    assert not beat(2, NOW, NOW + LEDGER_REPLAY_FOR_NS)
    fill = OrderFilled(
        client_order_id="c1",
        asset_id="U",
        side="BUY",
        price=0.5,
        size=10.0,
        fee=0.1,
        ts_fill_ns=NOW,
        slug="s",
        trade_id="t1",
    )
    settled = PositionSettled(
        slug="s", asset_id="U", outcome="Up", won=True, size=10.0, payout=1.0, pnl=4.9, ts_ns=NOW
    )
    assert any(isinstance(r, Row) for r in c.handle("exec.fill", fill, NOW))
    assert c.handle("exec.fill", fill, NOW) == []  # heard again: nothing recorded, not counted
    out = c.replay_ledger([settled, fill], NOW)
    assert [r.values["event_key"] for r in out if isinstance(r, Row)] == ["settlement:s:U"]
    assert c.replay_ledger([settled, fill], NOW) == []
    assert c.handle("exec.settlement", settled, NOW) == []
    m = views.metrics_doc(c, NOW)
    assert (m["trades_today"], m["settled_today"], m["fees_today"], m["daily_pnl"]) == (
        1,
        1,
        0.1,
        4.9,
    )
    assert (c.duplicates, c.ledger_replays, c.ledger_replayed) == (2, 2, 1)
