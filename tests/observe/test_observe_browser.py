"""The dashboard in real headless Chromium (Debian's `chromium`, driven by Playwright): it loads,
prices move, emergency stop halts strategy and the API agrees, the config editor shows field
errors inline, and the page says so while its WebSocket is down and recovers by itself."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from common.bus import Publisher
from common.config import load_settings
from common.schema import FeedStatus, PositionState
from tests.conftest import SEED_MODEL, short_tmpdir, wait_for
from tests.observe.observe_harness import TOKEN, Observe, make_env, start_stack

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason="needs Debian's chromium: apt-get update && apt-get install -y chromium",
)


def launch(pw: Any) -> Any:
    return pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


@pytest.fixture
def page_factory() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            yield lambda: browser.new_page(viewport={"width": 1600, "height": 1000})
        finally:
            browser.close()


def text(page: Any, sel: str) -> str:
    return page.locator(sel).inner_text()


def test_dashboard_live_controls_and_reconnect(page_factory: Any, tmp_path: Path) -> None:
    root = short_tmpdir()
    env, obs, strategy, hot = start_stack(root, API_TOKEN=TOKEN)
    obs2: Observe | None = None
    try:
        wait_for(
            lambda: obs.get("/health").json()["services"]["strategy"]["alive"],
            20,
            what="strategy heartbeat",
        )
        page = page_factory()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.add_init_script(f"localStorage.setItem('polyedge.apiToken', '{TOKEN}')")
        page.goto(obs.base + "/")

        # the page loads and goes live
        wait_for(lambda: "live" in text(page, "#conn-status"), 10, what="websocket live")
        assert text(page, "#mode-banner") == "DRY RUN · live venue"
        first = wait_for(
            lambda: (t := text(page, "#btc-price")) != "—" and t, 10, what="a BTC price on the page"
        )
        wait_for(lambda: text(page, "#btc-price") != first, 10, what="the BTC price to change")
        wait_for(lambda: text(page, "#market-slug") == hot.slug, 10, what="market slug")
        assert re.fullmatch(r"\d\d:\d\d", text(page, "#countdown"))
        assert "0.520" in text(page, "#book-up") and "0.460" in text(page, "#book-down")
        assert text(page, "#sig-side") == "Up"
        assert text(page, "#ptb") == "97,000.00"
        wait_for(lambda: text(page, "#risk-state") == "ACTIVE", 10, what="risk ACTIVE")
        # settled wins "redeemed" vs "awaiting redemption", as strategy's risk state says
        rd = obs.status()["redemptions"]
        assert rd["source"] == "strategy"
        assert text(page, "#m-redeemed") == f"${rd['redeemed_usd']:.2f}"
        assert text(page, "#m-awaiting-redemption") == f"${rd['awaiting_redemption_usd']:.2f}"
        assert "feed_lag_binance" in text(page, "#latency")
        # the chart library drew something: uPlot's canvas exists with a real size
        box = page.locator("#chart-btc canvas").first.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 100

        # emergency stop: confirmation first, then the halted state the API agrees with
        page.click("#btn-estop")
        assert page.locator("#modal").is_visible()
        assert obs.status()["risk"]["halted"] is False  # nothing sent before confirming
        page.click("#confirm-yes")
        wait_for(lambda: "HALTED" in text(page, "#risk-state"), 10, what="HALTED on the page")
        assert "confirmed by strategy" in text(page, "#control-msg")
        st = obs.status()
        assert st["risk"]["halted"] is True and st["risk"]["emergency_stop"] is True
        wait_for(
            lambda: obs.get("/health").json()["services"]["strategy"]["state"] == "halted",
            5,
            what="strategy heartbeat halted",
        )
        shot = tmp_path / "dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 20_000
        keep = os.environ.get("OBSERVE_SCREENSHOT_DIR")
        if keep:
            shutil.copy(shot, Path(keep) / "dashboard.png")

        # the config editor shows validation errors inline and applies nothing
        version = obs.get("/api/config").json()["version"]
        page.fill("#cfg-stake_per_trade_usd", "-3")
        page.click("#cfg-save")
        wait_for(
            lambda: page.locator("#cfgerr-stake_per_trade_usd").is_visible(),
            5,
            what="inline field error",
        )
        assert "0.0" in text(page, "#cfgerr-stake_per_trade_usd")
        assert "nothing applied" in text(page, "#cfg-msg")
        assert obs.get("/api/config").json()["version"] == version

        # clear the stop from the page
        page.click("#btn-clear")
        page.click("#confirm-yes")
        wait_for(lambda: text(page, "#risk-state") == "ACTIVE", 10, what="ACTIVE again")
        assert obs.status()["risk"]["halted"] is False

        # BREAKER3 finding 10: the only configured market halted on its own (the book itself
        # is not) read "ACTIVE"; nothing can enter, so the box says HALTED and names it
        r = obs.post("/api/emergency-stop", {"market": "btc-5m", "reason": "one market"})
        assert r.status_code == 200, r.text
        wait_for(lambda: text(page, "#risk-state") == "HALTED", 10, what="HALTED, one market")
        assert obs.status()["risk"]["halted"] is False  # the book's own state: not halted
        assert "every market halted: btc-5m (" in text(page, "#risk-reasons")
        assert "HALTED" in text(page, "#mkt-btc-5m .mkt-state")
        r = obs.post("/api/emergency-stop/clear", {"market": "btc-5m"})
        assert r.status_code == 200, r.text
        wait_for(lambda: text(page, "#risk-state") == "ACTIVE", 10, what="ACTIVE after clear")
        assert text(page, "#mkt-btc-5m .mkt-state") == "active"

        # a feed goes down: the feeds table and the health strip give ingest's reason, /health
        # names it, and the market data still flowing keeps the dot "live"
        why = "connect failed: gaierror(-2, 'Name or service not known')"
        hot.send(
            "ingest",
            "md.status.price_feed",
            FeedStatus(
                feed="price_feed", connected=False, stale=True, ts_ns=time.time_ns(), detail=why
            ),
        )
        wait_for(lambda: why in text(page, "#feeds"), 5, what="the feed's reason in the table")
        assert "down" in text(page, "#feed-price_feed")
        assert f"feed price_feed down: {why}" in text(page, "#health-banner")
        doc = obs.get("/health").json()
        assert doc["ok"] is False and f"feed price_feed down: {why}" in doc["problems"]
        assert text(page, "#conn-status") == "● live"

        # observe goes away: the page says so; it comes back: the page reconnects by itself.
        # First let the recorder hold some seconds of history (on an idle machine the steps
        # above take under 3 s, and the rebuilt chart below must reach back before the restart)
        wait_for(
            lambda: (h := obs.get("/api/history").json()["btc"]) and h[0][0] < time.time() - 4.5,
            15,
            what="4.5 s of BTC history before the restart",
        )
        t_restart = time.time()
        assert obs.stop() == 0
        wait_for(lambda: page.locator("#conn-banner").is_visible(), 10, what="banner shown")
        assert "reconnecting" in text(page, "#conn-banner")
        # BREAKER3 finding 10: the last values stay on screen, greyed (they were in full colour)
        opacity = "el => Number(getComputedStyle(el).opacity)"
        assert page.evaluate("document.body.classList.contains('stale')")
        wait_for(lambda: page.locator("main").evaluate(opacity) < 0.6, 5, what="greyed values")
        assert (
            page.locator("#risk-state")
            .evaluate("el => getComputedStyle(el.closest('.tb-block')).filter")
            .startswith("grayscale")
        )
        assert page.locator("#conn-banner").evaluate(opacity) == 1  # the banner itself is not
        obs2 = Observe(env)
        obs2.wait_up()
        wait_for(
            lambda: not page.locator("#conn-banner").is_visible(),
            15,
            what="banner gone after reconnect",
        )
        wait_for(lambda: "live" in text(page, "#conn-status"), 5, what="live again")
        assert not page.evaluate("document.body.classList.contains('stale')")
        wait_for(lambda: page.locator("main").evaluate(opacity) == 1, 5, what="values in colour")

        # the restarted observe rebuilt the BTC chart from the recorder: a page opened now
        # draws the minutes before the restart too
        hist = obs2.get("/api/history").json()
        assert hist["btc"] and hist["btc"][0][0] < t_restart - 3, hist["btc"][:3]
        page2 = page_factory()
        page2.goto(obs2.base + "/")
        first_t = wait_for(
            lambda: page2.evaluate("btcData[0].length && btcData[0][0]"), 10, what="BTC chart"
        )
        assert first_t < t_restart - 3

        # BREAKER3 finding 10: strategy down while a position is open: the banner said TRADING
        # UNMANAGED but the market's row said "active"; it says so too now (and "no strategy"
        # while flat)
        assert strategy is not None
        strategy.stop()
        strategy = None
        wait_for(lambda: text(page, "#risk-state") == "NO STRATEGY", 20, what="NO STRATEGY")
        wait_for(lambda: text(page, "#mkt-btc-5m .mkt-state") == "no strategy", 5, what="row")
        # a position strategy published before it stopped (played here on its endpoint)
        settings = load_settings(env, dotenv=None)
        stand_in = Publisher(settings.bus_endpoint("strategy"))
        held = PositionState(
            ts_ns=time.time_ns(), open=True, slug=hot.slug, asset_id="U", outcome="Up",
            size=12.5, avg_price=0.4, cost=5.0, market="btc-5m",
        )  # fmt: skip

        def unmanaged() -> bool:
            stand_in.send("strat.position", held)  # again until observe's SUB has joined
            return text(page, "#mkt-btc-5m .mkt-state") == "UNMANAGED"

        try:
            wait_for(unmanaged, 15, what="the market's row to say UNMANAGED")
        finally:
            stand_in.close()
        assert page.locator("#unmanaged-banner").is_visible()
        title = page.locator("#mkt-btc-5m .mkt-state").get_attribute("title")
        assert "strategy" in title and "nothing manages its exit" in title, title
        assert errors == []
    finally:
        if obs2 is not None:
            obs2.stop()
        obs.stop()
        if strategy is not None:
            strategy.stop()
        hot.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.whole_system
def test_whole_system_on_simulated_venue(
    page_factory: Any, iso_env: dict[str, str], tmp_path: Path
) -> None:
    """The real supervisord tree (POLYEDGE_VENUE=sim, 20 s windows) seen through the browser."""
    from tests.conftest import REPO, Supervised

    root = Path(iso_env["POLYEDGE_ROOT"])
    cfg = root / "config.json"
    # gates opened wide so the dry-run system trades inside 20-second windows
    doc = json.loads((REPO / "config" / "config.json").read_text())
    doc.update(
        entry_window_min_sec=0,
        min_seconds_before_close=3,
        min_edge_pct=0.0,
        min_signal_score=0.0,
        max_trades_per_day=1000,
        max_daily_loss_usd=1000,
        max_consecutive_losses=1000,
        **SEED_MODEL,
    )
    cfg.write_text(json.dumps(doc))
    sup = Supervised(
        iso_env,
        {
            "POLYEDGE_VENUE": "sim",
            "SIM_WINDOW_SECONDS": "20",
            "API_TOKEN": TOKEN,
            "POLYEDGE_CONFIG": str(cfg),  # strategy writes accepted config back: not the repo's
        },
    )
    base = f"http://127.0.0.1:{iso_env['API_PORT']}"
    sup.start()
    try:
        import httpx

        sup.wait_running(("simvenue", "execution", "strategy", "signal", "ingest", "observe"), 30)
        wait_for(
            lambda: httpx.get(base + "/health", timeout=2).json()["ok"],
            30,
            what=f"/health ok (observe log: {sup.log_tail('observe')[-500:]})",
        )
        page = page_factory()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.add_init_script(f"localStorage.setItem('polyedge.apiToken', '{TOKEN}')")
        page.goto(base + "/")
        wait_for(lambda: "live" in text(page, "#conn-status"), 10, what="websocket live")
        first = wait_for(
            lambda: (t := text(page, "#btc-price")) != "—" and t, 15, what="sim BTC price"
        )
        wait_for(lambda: text(page, "#btc-price") != first, 15, what="the sim price to move")
        wait_for(
            lambda: text(page, "#market-slug").startswith("btc-updown-5m-"), 15, what="sim market"
        )
        wait_for(lambda: text(page, "#book-up") != "no book", 15, what="sim Up book")
        wait_for(lambda: text(page, "#sig-side") in ("Up", "Down"), 15, what="a signal")
        wait_for(
            lambda: httpx.get(base + "/health", timeout=2).json()["pipeline"]["probes"] > 0,
            10,
            what="end-to-end probes",
        )

        # the dry-run system trades: fills reach the recorded trades table and the order path
        # latencies fill in
        wait_for(lambda: re.search(r"\bfill\b", text(page, "#trades")), 30, what="a recorded fill")
        lat = httpx.get(base + "/api/latency", timeout=5).json()["stages"]
        assert lat["signal_to_order_ack_ms"]["count"] > 0
        assert lat["full_decision_to_fill_ms"]["p50"] is not None
        wait_for(lambda: "signal_to_order_ack" in text(page, "#latency"), 5, what="latency row")

        page.click("#btn-estop")
        page.click("#confirm-yes")
        wait_for(lambda: "HALTED" in text(page, "#risk-state"), 10, what="HALTED on the page")
        st = httpx.get(base + "/api/status", timeout=5).json()
        assert st["risk"]["halted"] is True and st["risk"]["emergency_stop"] is True
        wait_for(
            lambda: (
                httpx.get(base + "/health", timeout=2).json()["services"]["strategy"]["state"]
                == "halted"
            ),
            5,
            what="strategy heartbeat halted",
        )
        shot = tmp_path / "dashboard_sim.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 20_000
        keep = os.environ.get("OBSERVE_SCREENSHOT_DIR")
        if keep:
            shutil.copy(shot, Path(keep) / "dashboard_sim.png")
        assert errors == []
    finally:
        sup.stop()


def test_first_load_is_clean_with_no_data(page_factory: Any) -> None:
    """An observe with nothing on the bus: the page loads with no failed request and no console
    error (the favicon was a 404), the empty charts' time axes show today rather than 1 Jan 1970,
    and the config editor offers order_type as a choice of the values the config accepts."""
    root = short_tmpdir()
    obs = Observe(make_env(root))
    try:
        obs.wait_up()
        page = page_factory()
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on(
            "console",
            lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
        )
        page.on(
            "response",
            lambda r: problems.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None,
        )
        page.on("requestfailed", lambda r: problems.append(f"failed {r.url}"))
        page.goto(obs.base + "/", wait_until="load")
        # the page is connected, but no market data flows: the dot must not say "live"
        wait_for(
            lambda: text(page, "#conn-status") == "● connected · no market data",
            10,
            what="the dot to say no data flows",
        )
        assert "binance: no data yet" in page.locator("#conn-status").get_attribute("title")
        wait_for(lambda: page.locator("#cfg-order_type").count() == 1, 10, what="config editor")
        page.wait_for_load_state("networkidle")

        now = time.time()
        for chart in ("btcChart", "probChart"):
            lo, hi = page.evaluate(f"[{chart}.scales.x.min, {chart}.scales.x.max]")
            assert now - 3600 < lo < hi < now + 3600, (chart, lo, hi)
        # uPlot draws axis labels on the canvas; its own formatter is what printed "1/1/70"
        labels = page.evaluate(
            "btcChart.axes[0]._values || []"  # the tick labels of the last draw
        )
        assert not any("1/1/70" in str(v) for v in labels), labels

        sel = page.locator("#cfg-order_type")
        assert sel.evaluate("el => el.tagName") == "SELECT"
        # the values the config accepts (common.config.config_choices), FOK and FAK among them
        choices = obs.get("/api/config").json()["choices"]["order_type"]
        assert sel.locator("option").all_inner_texts() == choices
        assert {"FOK", "FAK"} <= set(choices)
        assert sel.input_value() == obs.get("/api/config").json()["config"]["order_type"]
        assert problems == [], problems
    finally:
        obs.stop()
        shutil.rmtree(root, ignore_errors=True)
