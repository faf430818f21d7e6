"""The dashboard with several markets (issue 17) in real headless Chromium: the overview lists
every market with its countdown, model vs market probability, position and P&L; clicking one
shows its detail (window, spot, books, signal, charts); the choice survives a reload; the
controls can act on the selected market only."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from common.schema import PositionState, TriggerEmergencyStop
from tests.conftest import short_tmpdir, wait_for
from tests.observe.observe_harness import TOKEN, start_stack
from tests.observe.test_observe_browser import CHROMIUM, page_factory, text  # noqa: F401
from tests.observe.test_observe_markets_api import FakeStrategy

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason="needs Debian's chromium: apt-get update && apt-get install -y chromium",
)

EXTRA = ("eth-15m", "sol-5m", "xrp-15m")
KEYS = ["btc-5m", *EXTRA]


def row(page: Any, key: str) -> Any:
    return page.locator(f'#markets tr[data-market="{key}"]')


def test_overview_of_every_market_and_the_detail_of_the_selected_one(
    page_factory: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    root = short_tmpdir()
    env, obs, _, hot = start_stack(root, with_strategy=False, markets=EXTRA, API_TOKEN=TOKEN)
    strategy = FakeStrategy(env)
    try:
        # sol holds a position (strategy's PositionState), marked at sol's own Up bid
        sol_slug = wait_for(
            lambda: obs.get("/api/status?market=sol-5m").json()["market"], 15, what="sol window"
        )["slug"]
        position = PositionState(
            ts_ns=1,
            open=True,
            slug=sol_slug,
            asset_id="sol-5m-UP-TOKEN",
            outcome="Up",
            size=10.0,
            avg_price=0.30,
            cost=3.05,
            market="sol-5m",
        )

        def sol_open() -> bool:
            strategy.pub.send("strat.position", position)
            return obs.get("/api/status?market=sol-5m").json()["position"]["open"]

        wait_for(sol_open, 10, what="sol's position in observe")

        page = page_factory()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.add_init_script(f"localStorage.setItem('polyedge.apiToken', '{TOKEN}')")
        page.goto(obs.base + "/")

        # the overview: one row per market, in config order, each live
        wait_for(
            lambda: page.locator("#markets tr[data-market]").count() == len(KEYS),
            15,
            what="a row per market",
        )
        assert [
            page.locator("#markets tr[data-market]").nth(i).get_attribute("data-market")
            for i in range(len(KEYS))
        ] == KEYS
        wait_for(
            lambda: (
                all(re.fullmatch(r"\d\d:\d\d", text(page, f"#mkt-{k} .mkt-left")) for k in KEYS)
                and all(text(page, f"#mkt-{k} .mkt-market") != "—" for k in KEYS)
            ),
            15,
            what="every market's countdown and market probability",
        )
        # model vs market per market, as the stand-in publishes them
        assert text(page, "#mkt-eth-15m .mkt-model") == "70.0%"
        assert text(page, "#mkt-eth-15m .mkt-market") == "62.0%"
        assert text(page, "#mkt-sol-5m .mkt-model") == "27.0%"
        assert text(page, "#mkt-sol-5m .mkt-market") == "34.0%"
        # the position and its market's P&L columns
        assert "Up" in text(page, "#mkt-sol-5m .mkt-pos") and "10.00" in text(
            page, "#mkt-sol-5m .mkt-pos"
        )
        assert text(page, "#mkt-btc-5m .mkt-pos") == "flat"
        assert text(page, "#mkt-eth-15m .mkt-pnl") == "$0.00"
        # nothing chosen yet: btc-5m in detail, as the single-market dashboard showed
        assert "selected" in (row(page, "btc-5m").get_attribute("class") or "")
        wait_for(lambda: text(page, "#market-slug") == hot.slug, 10, what="btc in detail")
        assert text(page, "#spot-label") == "BTC / USD"

        # click eth: its detail
        row(page, "eth-15m").click()
        wait_for(
            lambda: text(page, "#market-slug").startswith("eth-updown-15m-"),
            5,
            what="eth's window in detail",
        )
        assert "selected" in (row(page, "eth-15m").get_attribute("class") or "")
        assert "selected" not in (row(page, "btc-5m").get_attribute("class") or "")
        assert text(page, "#spot-label") == "ETH / USD"
        assert text(page, "#ptb") == "3,500.00"
        wait_for(lambda: "0.610" in text(page, "#book-up"), 5, what="eth's Up book")
        assert text(page, "#sig-side") == "Up" and text(page, "#sig-pup") == "66.0%"
        assert text(page, "#mkt-up") == "62.0%"
        assert re.fullmatch(r"\d\d:\d\d", text(page, "#countdown"))
        # the charts now draw eth: its spot, not BTC's
        wait_for(
            lambda: page.evaluate("chartKey === 'eth-15m' && btcData[1].length > 0"),
            5,
            what="eth's chart",
        )
        assert page.evaluate("btcData[1].every((p) => p > 3000 && p < 4000)")

        # click sol: its detail with its position
        row(page, "sol-5m").click()
        wait_for(lambda: text(page, "#sig-side") == "Down", 5, what="sol's signal")
        assert text(page, "#market-slug") == sol_slug
        assert "0.330" in text(page, "#book-up") and text(page, "#spot-label") == "SOL / USD"
        assert "Up" in text(page, "#position") and "10.00 sh" in text(page, "#position")
        # live P&L marked at sol's Up bid: 10 x 0.33 - 3.05
        assert text(page, "#pos-pnl") == "+0.25"
        shot = tmp_path / "dashboard-markets.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 20_000
        keep = os.environ.get("OBSERVE_SCREENSHOT_DIR")
        if keep:
            shutil.copy(shot, Path(keep) / "dashboard-markets.png")

        # one market's feed stops while the others flow: its row says its figures are old
        assert "stale" not in text(page, "#mkt-xrp-15m .mkt-spot")
        hot.paused.add("xrp-15m")
        wait_for(
            lambda: (
                "stale" in text(page, "#mkt-xrp-15m .mkt-spot")
                and "stale" in text(page, "#mkt-xrp-15m .mkt-model")
            ),
            10,
            what="xrp's row marked stale",
        )
        assert "stale" not in text(page, "#mkt-eth-15m .mkt-spot")
        hot.paused.discard("xrp-15m")
        wait_for(
            lambda: "stale" not in text(page, "#mkt-xrp-15m .mkt-spot"), 10, what="xrp fresh again"
        )

        # the choice survives a reload
        page.reload()
        wait_for(lambda: text(page, "#market-slug") == sol_slug, 10, what="sol after reload")

        # the controls act on the selected market only when asked to
        page.select_option("#ctl-scope", "selected")
        page.click("#btn-estop")
        page.click("#confirm-yes")
        wait_for(lambda: "confirmed" in text(page, "#control-msg"), 10, what="confirmation")
        assert "for sol-5m" in text(page, "#control-msg")
        cmd = strategy.commands[-1]
        assert isinstance(cmd, TriggerEmergencyStop) and cmd.market == "sol-5m"
        page.select_option("#ctl-scope", "")
        page.click("#btn-estop")
        page.click("#confirm-yes")
        wait_for(lambda: len(strategy.commands) == 2, 10, what="the second stop")
        assert strategy.commands[-1].market == ""

        # the config editor shows `markets` as JSON text; a bad entry is named under it and
        # nothing reaches strategy
        wait_for(lambda: page.locator("#cfg-markets").count() == 1, 10, what="markets field")
        shown = json.loads(page.locator("#cfg-markets").input_value())
        assert [f"{m['asset']}-{m['window']}" for m in shown] == KEYS
        shown[1]["window"] = "7m"
        page.fill("#cfg-markets", json.dumps(shown))
        page.click("#cfg-save")
        wait_for(lambda: page.locator("#cfgerr-markets").is_visible(), 5, what="markets error")
        assert "markets[1].window" in text(page, "#cfgerr-markets")
        assert "7m" in text(page, "#cfgerr-markets")
        assert "nothing applied" in text(page, "#cfg-msg")
        assert len(strategy.commands) == 2
        assert errors == []
    finally:
        obs.stop()
        strategy.close()
        hot.close()
        shutil.rmtree(root, ignore_errors=True)
