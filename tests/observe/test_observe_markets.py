"""Observe with several markets at once (issue 17): the fold keeps books, signal, position,
P&L and countdown per market series; the views list every market and serve any one in detail;
/metrics labels per-market series by `market`; the recorder keeps each row's market."""

from __future__ import annotations

from pathlib import Path

from common.schema import (
    BookSnapshot,
    BtcTrade,
    ConfigSnapshot,
    Decision,
    MarketInfo,
    MarketResolved,
    OrderFilled,
    PositionSettled,
    PositionState,
    RiskState,
    SignalScore,
    TradeClosed,
)
from services.observe import views
from services.observe.health import health
from services.observe.metrics import metrics_text
from services.observe.recorder import Recorder
from services.observe.state import ObserveCore, Row, series_of_slug

NOW = 1_795_000_200_000_000_000
S = 1_000_000_000
DAY = "2026-11-18"  # utc_day(NOW)
MARKETS = [
    {"asset": "btc", "window": "5m"},
    {"asset": "eth", "window": "15m", "stake_per_trade_usd": 3},
    {"asset": "sol", "window": "5m"},
]


def window(asset: str, win: str, start_s: int, span_s: int, ptb: float) -> MarketInfo:
    return MarketInfo(
        slug=f"{asset}-updown-{win}-{start_s}",
        condition_id=f"c-{asset}-{win}-{start_s}",
        up_token_id=f"{asset}{win}{start_s}U",
        down_token_id=f"{asset}{win}{start_s}D",
        window_start_ns=start_s * S,
        window_end_ns=(start_s + span_s) * S,
        ts_recv_ns=NOW,
        price_to_beat=ptb,
        price_to_beat_source="gamma",
        asset=asset,
        window=win,
    )


BTC = window("btc", "5m", NOW // S - 100, 300, 100_000.0)  # 200 s left
ETH = window("eth", "15m", NOW // S - 300, 900, 3_500.0)  # 600 s left
SOL = window("sol", "5m", NOW // S - 250, 300, 180.0)  # 50 s left


def book(token: str, bid: float) -> BookSnapshot:
    return BookSnapshot(
        asset_id=token,
        best_bid=bid,
        best_ask=round(bid + 0.02, 2),
        bids=[(bid, 10.0)],
        asks=[(round(bid + 0.02, 2), 10.0)],
        ts_exchange_ns=NOW,
        ts_recv_ns=NOW,
    )


def signal(m: MarketInfo, p_up: float, p_model: float) -> SignalScore:
    return SignalScore(
        slug=m.slug,
        p_up=p_up,
        side="Up" if p_up >= 0.5 else "Down",
        score=0.1,
        edge_up=0.02,
        edge_down=-0.02,
        ts_ns=NOW,
        inputs={"p_model": p_model, "p_market": 0.5, "price": m.price_to_beat or 0.0},
        market=m.series,
    )


def three_markets(markets: list[dict] | None = None) -> ObserveCore:
    """btc-5m, eth-15m and sol-5m each with a window, books, spot and a signal; eth holds an
    Up position; btc and eth closed a trade today."""
    c = ObserveCore(NOW, 1, venue="sim")
    c.seed_config({"markets": MARKETS if markets is None else markets}, 1, "test")
    for m, bid, p_up, p_model, spot in (
        (BTC, 0.52, 0.55, 0.58, 100_050.0),
        (ETH, 0.40, 0.45, 0.43, 3_490.0),
        (SOL, 0.70, 0.72, 0.80, 181.5),
    ):
        c.handle("md.market", m, NOW)
        c.handle(f"md.book.{m.up_token_id}", book(m.up_token_id, bid), NOW)
        c.handle(f"md.book.{m.down_token_id}", book(m.down_token_id, round(0.96 - bid, 2)), NOW)
        trade = BtcTrade(
            price=spot,
            size=1.0,
            ts_exchange_ns=NOW,
            ts_recv_ns=NOW,
            symbol=f"{m.asset.upper()}USDT",
            asset=m.asset,
        )
        c.handle(f"md.{m.asset}.trade", trade, NOW)
        c.handle("sig.score", signal(m, p_up, p_model), NOW)
    c.handle(
        "strat.position",
        PositionState(
            ts_ns=NOW,
            open=True,
            slug=ETH.slug,
            asset_id=ETH.up_token_id,
            outcome="Up",
            size=10.0,
            avg_price=0.35,
            cost=3.6,
            market="eth-15m",
        ),
        NOW,
    )
    for key, slug, pnl, won in (
        ("btc-5m", BTC.slug, -1.5, False),
        ("eth-15m", ETH.slug, 2.25, True),
    ):
        c.handle(
            "strat.trade",
            TradeClosed(
                slug=slug,
                asset_id="U",
                outcome="Up",
                how="exit",
                closing_key=f"fill:{key}:x",
                entry_client_order_id=f"{key}-e",
                size=10.0,
                entry_price=0.5,
                exit_price=0.5,
                fees=0.0,
                pnl=pnl,
                won=won,
                opened_ns=NOW,
                closed_ns=NOW,
                day=DAY,
                venue="sim",
                mode="paper",
                market=key,
            ),
            NOW,
        )
    return c


def by_market(doc: dict) -> dict[str, dict]:
    return {r["market"]: r for r in doc["markets"]}


def test_series_of_a_clock_built_slug() -> None:
    assert series_of_slug("eth-updown-15m-1795504500") == "eth-15m"
    assert series_of_slug("btc-updown-5m-1") == "btc-5m"
    assert series_of_slug("bitcoin-up-or-down-november-30-4pm-et") is None


def test_every_market_has_its_own_window_books_signal_position_and_pnl() -> None:
    c = three_markets()
    doc = views.markets_doc(c, NOW)
    assert doc["default"] == "btc-5m"
    assert [r["market"] for r in doc["markets"]] == ["btc-5m", "eth-15m", "sol-5m"]
    rows = by_market(doc)
    # countdowns from each market's own window
    assert [rows[k]["seconds_left"] for k in rows] == [200.0, 600.0, 50.0]
    assert [rows[k]["window_seconds"] for k in rows] == [300.0, 900.0, 300.0]
    assert rows["eth-15m"]["slug"] == ETH.slug and rows["sol-5m"]["price_to_beat"] == 180.0
    # spot per asset, model and published P(Up) against the market's own Up mid
    assert [rows[k]["spot"] for k in rows] == [100_050.0, 3_490.0, 181.5]
    assert [rows[k]["p_model"] for k in rows] == [0.58, 0.43, 0.8]
    assert [rows[k]["p_up"] for k in rows] == [0.55, 0.45, 0.72]
    assert [rows[k]["p_market"] for k in rows] == [0.53, 0.41, 0.71]
    assert [rows[k]["side"] for k in rows] == ["Up", "Down", "Up"]
    # the position is eth's alone, marked at eth's Up bid
    assert not rows["btc-5m"]["position"]["open"] and not rows["sol-5m"]["position"]["open"]
    pos = rows["eth-15m"]["position"]
    assert pos["open"] and pos["outcome"] == "Up"
    assert pos["mark_price"] == 0.40 and pos["unrealized_pnl"] == round(10 * 0.40 - 3.6, 4)
    # today's P&L per market (observe's count: strategy has not reported per-market figures)
    assert [rows[k]["risk"]["daily_pnl"] for k in rows] == [-1.5, 2.25, 0.0]
    assert [rows[k]["risk"]["source"] for k in rows] == ["observe"] * 3
    assert views.metrics_doc(c, NOW)["daily_pnl"] == 0.75  # the whole book's


def test_detail_of_any_market_and_the_default_keeps_the_single_market_shape() -> None:
    c = three_markets()
    eth = views.status(c, NOW, "eth-15m")
    assert eth["selected"] == "eth-15m"
    assert eth["market"]["slug"] == ETH.slug and eth["market"]["market"] == "eth-15m"
    assert eth["market"]["window"] == "15m" and eth["market"]["seconds_left"] == 600.0
    assert eth["books"]["up"]["best_bid"] == 0.40 and eth["books"]["down"]["best_bid"] == 0.56
    assert eth["signal"]["market"] == "eth-15m" and eth["signal"]["p_model"] == 0.43
    assert eth["position"]["open"] is True
    assert len(eth["markets"]) == 3
    # no market named: btc-5m, as the single-market API always answered
    plain = views.status(c, NOW)
    assert plain["market"]["slug"] == BTC.slug and plain["books"]["up"]["best_bid"] == 0.52
    assert plain["signal"]["p_up"] == 0.55 and plain["position"] == {"open": False}
    assert plain["btc"]["price"] == 100_050.0  # BTC's price stays BTC's
    live = views.live(c, NOW)["data"]
    assert live["market"]["slug"] == BTC.slug and live["default_market"] == "btc-5m"
    assert set(live["details"]) == {"btc-5m", "eth-15m", "sol-5m"}
    assert live["details"]["sol-5m"]["books"]["up"]["best_bid"] == 0.70
    hist = views.history(c, "eth-15m")
    assert hist["asset"] == "eth" and [p for _, p in hist["spot"]] == [3_490.0]
    assert [p for _, p, _ in hist["prob"]] == [0.45]
    assert [p for _, p in views.history(c)["spot"]] == [100_050.0]


def test_default_market_and_resolving_a_market_parameter() -> None:
    c = three_markets()
    assert c.resolve_market(None) == c.resolve_market("") == "btc-5m"
    assert c.resolve_market("sol-5m") == "sol-5m"
    assert c.resolve_market(ETH.slug) == "eth-15m"  # a window's slug names its market
    assert c.resolve_market("doge-5m") is None
    assert c.resolve_market("eth-updown-15m-0") is None  # a window never heard
    # a config without btc-5m: the first configured market is the default
    c2 = three_markets([{"asset": "eth", "window": "15m"}, {"asset": "sol", "window": "5m"}])
    assert c2.default_key() == "eth-15m"
    assert views.status(c2, NOW)["market"]["slug"] == ETH.slug
    # btc-5m was heard but is not configured: still listed, after the configured ones
    assert [r["market"] for r in views.markets_doc(c2, NOW)["markets"]] == [
        "eth-15m",
        "sol-5m",
        "btc-5m",
    ]
    assert not by_market(views.markets_doc(c2, NOW))["btc-5m"]["configured"]
    # no `markets` in the config: today's one market
    c3 = ObserveCore(NOW, 1)
    assert c3.configured() == ["btc-5m"] and c3.default_key() == "btc-5m"
    assert [r["market"] for r in views.markets_doc(c3, NOW)["markets"]] == ["btc-5m"]


def test_per_market_halts_and_figures_from_strategys_risk_state() -> None:
    c = three_markets()
    risk = RiskState(
        ts_ns=NOW,
        halted=False,
        emergency_stop=False,
        reasons=[],
        daily_pnl=0.5,
        trades_today=4,
        day=DAY,
        markets={
            "eth-15m": {
                "halted": True,
                "reasons": ["operator", "daily_loss"],
                "reason": "operator",
                "daily_pnl": 1.0,
                "trades_today": 3,
            },
            "sol-5m": {"halted": True, "reason": "operator"},  # no list of reasons: the reason
            "btc-5m": {"halted": False, "reason": "", "daily_pnl": -0.5, "trades_today": 1},
        },
    )
    c.day = DAY
    c.handle("risk.state", risk, NOW)
    rows = by_market(views.markets_doc(c, NOW))
    assert rows["eth-15m"]["risk"]["halted"] is True
    assert rows["eth-15m"]["risk"]["reasons"] == ["operator", "daily_loss"]
    assert rows["sol-5m"]["risk"]["halted"] is True and rows["sol-5m"]["risk"]["reasons"] == [
        "operator"
    ]
    assert rows["btc-5m"]["risk"]["halted"] is False
    assert (rows["eth-15m"]["risk"]["daily_pnl"], rows["eth-15m"]["risk"]["trades_today"]) == (
        1.0,
        3,
    )
    assert rows["eth-15m"]["risk"]["source"] == "strategy"
    assert rows["sol-5m"]["risk"]["source"] == "observe"  # strategy named no figures for it
    assert rows["sol-5m"]["risk"]["daily_pnl"] == 0.0
    # a global halt halts every market, saying why
    c.handle(
        "risk.state",
        RiskState(
            ts_ns=NOW + 1,
            halted=True,
            emergency_stop=True,
            reasons=["emergency_stop"],
            day=DAY,
            markets=risk.markets,
        ),
        NOW,
    )
    rows = by_market(views.markets_doc(c, NOW))
    assert all(r["risk"]["halted"] for r in rows.values())
    assert rows["btc-5m"]["risk"]["reasons"] == ["global: emergency_stop"]


def test_skips_are_logged_per_market_and_decisions_name_their_market() -> None:
    c = three_markets()

    def skip(m: MarketInfo) -> list:
        return c.handle(
            "strat.decision",
            Decision(ts_ns=NOW, slug=m.slug, action="skip", reason="no_edge", market=m.series),
            NOW,
        )

    assert len(skip(BTC)) == 1 and len(skip(ETH)) == 1  # each market's first skip is logged
    assert skip(BTC) == [] and skip(ETH) == []  # repeats are not
    assert by_market(views.markets_doc(c, NOW))["eth-15m"]["decision"]["reason"] == "no_edge"
    assert list(c.decisions)[-1]["market"] == "eth-15m"


def test_windows_kept_per_market_so_a_busy_market_does_not_evict_another() -> None:
    c = three_markets()
    for i in range(40):  # forty more btc windows (and their books)
        m = window("btc", "5m", NOW // S + 300 * (i + 1), 300, 1.0)
        c.handle("md.market", m, NOW)
        c.handle(f"md.book.{m.up_token_id}", book(m.up_token_id, 0.5), NOW)
    assert ETH.slug in c.markets and ETH.up_token_id in c.books  # eth's window and book kept
    assert len(c.series["btc-5m"].markets) == 16
    assert views.market_doc(c, NOW, "eth-15m")["slug"] == ETH.slug


def test_metrics_label_per_market_series_by_market() -> None:
    c = three_markets()
    text = metrics_text(c, NOW)
    lines = set(text.splitlines())
    assert 'polyedge_market_seconds_left{market="eth-15m"} 600' in lines
    assert 'polyedge_market_seconds_left{market="sol-5m"} 50' in lines
    assert 'polyedge_market_position_open{market="eth-15m"} 1' in lines
    assert 'polyedge_market_position_open{market="btc-5m"} 0' in lines
    # the unlabelled gauge says whether any market holds a position (btc-5m, the default, is flat)
    assert "polyedge_position_open 1" in lines
    assert 'polyedge_market_daily_pnl_usd{market="btc-5m"} -1.5' in lines
    assert 'polyedge_market_p_model{market="sol-5m"} 0.8' in lines
    assert 'polyedge_market_up_mid{market="eth-15m"} 0.41' in lines
    assert 'polyedge_spot_price_usd{asset="eth"} 3490' in lines
    # the whole book's figures stay unlabelled
    assert "polyedge_daily_pnl_usd 0.75" in lines
    assert "polyedge_btc_price_usd 100050" in lines


def test_unmanaged_names_an_open_position_in_any_market() -> None:
    c = three_markets()
    doc = health(c, NOW)  # no strategy or execution heartbeat: both count as down
    assert doc["unmanaged"] and ETH.slug in doc["unmanaged"]


def test_recorded_rows_name_their_market_and_charts_come_back_per_market(tmp_path: Path) -> None:
    rec = Recorder(tmp_path / "t.db")
    c = ObserveCore(NOW, 1, venue="sim")
    c.seed_config({"markets": MARKETS}, 1, "test")
    out = []
    for m in (BTC, ETH):
        out += c.handle("md.market", m, NOW)
    for i in range(3):
        t = NOW + i * S
        for m, p, price in ((BTC, 0.5, 100_000.0), (ETH, 0.4, 3_500.0)):
            out += c.handle("sig.score", signal(m, p + i / 100, p), t)
            out += c.handle(
                f"md.{m.asset}.trade",
                BtcTrade(price=price + i, size=1, ts_exchange_ns=t, ts_recv_ns=t, asset=m.asset),
                t,
            )
    out += c.handle(
        "exec.fill",
        OrderFilled(
            client_order_id="e1",
            asset_id=ETH.up_token_id,
            side="BUY",
            price=0.4,
            size=5.0,
            fee=0.01,
            ts_fill_ns=NOW,
            slug=ETH.slug,
            trade_id="t1",
            dry_run=True,
            venue="sim",
        ),
        NOW,
    )
    out += c.handle(
        "exec.settlement",
        PositionSettled(
            slug=ETH.slug,
            asset_id=ETH.up_token_id,
            outcome="Up",
            size=5.0,
            payout=1.0,
            pnl=2.99,
            won=True,
            ts_ns=NOW + 2 * S,
            dry_run=True,
            venue="sim",
        ),
        NOW,
    )
    for r in out:
        if isinstance(r, Row):
            rec.add(r.table, r.values)
    rec.flush()
    eth_rows = rec.trades(market="eth-15m")
    assert eth_rows["total"] == 2 and {t["market"] for t in eth_rows["items"]} == {"eth-15m"}
    assert rec.trades(market="btc-5m")["total"] == 0
    # a restarted observe rebuilds each market's chart and each asset's spot from the signals
    fresh = ObserveCore(NOW + 10 * S, 1, venue="sim")
    fresh.seed_config({"markets": MARKETS}, 1, "test")
    fresh.seed_history(*rec.chart_history(NOW - 60 * S))
    assert [round(p, 2) for _, p, _ in views.history(fresh, "eth-15m")["prob"]] == [0.4, 0.41, 0.42]
    assert [p for _, p in views.history(fresh, "eth-15m")["spot"]] == [3_500.0] * 3
    assert [round(p, 2) for _, p, _ in views.history(fresh)["prob"]] == [0.5, 0.51, 0.52]
    # and today's figures per market from the recorded trades
    fresh.seed_today(rec.trades_of_day(DAY), DAY)
    rows = by_market(views.markets_doc(fresh, NOW + 10 * S))
    assert (
        rows["eth-15m"]["risk"]["daily_pnl"] == 2.99
        and rows["eth-15m"]["risk"]["trades_today"] == 1
    )
    assert rows["btc-5m"]["risk"]["trades_today"] == 0
    rec.close()


def test_brier_scores_per_market_and_of_all() -> None:
    c = three_markets()  # one sample each: btc 0.55 (model 0.58), eth 0.45 (model 0.43)
    c.handle(
        "md.resolved",
        MarketResolved(
            slug=ETH.slug, condition_id=ETH.condition_id, winning_outcome="Down", ts_ns=NOW
        ),
        NOW,
    )
    eth = views.detail_doc(c, NOW, "eth-15m")["scores"]
    assert (eth["windows"], eth["n"], eth["brier_model"], eth["brier_blend"]) == (
        1,
        1,
        round(0.43**2, 6),
        round(0.45**2, 6),
    )
    assert eth["brier_market"] == 0.25  # the signal's p_market 0.5
    assert views.detail_doc(c, NOW, "btc-5m")["scores"]["windows"] == 0
    assert c.scores.doc()["windows"] == 1  # of all markets
    assert views.status(c, NOW, "eth-15m")["market_scores"] == eth


def test_a_config_reload_adds_and_removes_markets_in_the_overview() -> None:
    c = three_markets()
    keys = lambda: [r["market"] for r in views.markets_doc(c, NOW)["markets"]]  # noqa: E731
    added = [*MARKETS, {"asset": "xrp", "window": "1h"}]
    c.handle("strat.config", ConfigSnapshot(version=2, config={"markets": added}, ts_ns=NOW), NOW)
    assert keys() == ["btc-5m", "eth-15m", "sol-5m", "xrp-1h"]
    xrp = by_market(views.markets_doc(c, NOW))["xrp-1h"]
    assert xrp["configured"] and xrp["slug"] is None and xrp["seconds_left"] is None
    # eth removed while it holds a position: still shown (heard on the bus), not configured
    left = [MARKETS[0], MARKETS[2]]
    c.handle("strat.config", ConfigSnapshot(version=3, config={"markets": left}, ts_ns=NOW), NOW)
    assert keys() == ["btc-5m", "sol-5m", "eth-15m"]
    assert not by_market(views.markets_doc(c, NOW))["eth-15m"]["configured"]
    assert 'polyedge_market_configured{market="eth-15m"} 0' in metrics_text(c, NOW)
