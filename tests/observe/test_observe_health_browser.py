"""Health that tells the truth, seen in real headless Chromium against the whole supervisord tree
on the simulated venue: with a position open, a config file edit strategy refuses shows on the
dashboard as it happens; then strategy is killed and cannot come back (the bad file), and within
5 s /health says not ok naming strategy, the dashboard shows the red "trading unmanaged" banner
and strategy's chip in red with supervisord's state; a good file brings it back and clears both."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.chaos_harness import API_TOKEN, HOLD_CONFIG, Tree, running_tree
from tests.conftest import wait_for
from tests.observe.test_observe_browser import CHROMIUM, launch, text

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason="needs Debian's chromium: apt-get update && apt-get install -y chromium",
)

pytestmark = pytest.mark.whole_system  # starts a supervisord tree (pyproject markers)

BANNER_BOUND_S = 5.0  # the "within 5 s of killing strategy with a position open"


@pytest.fixture
def tree() -> Iterator[Tree]:
    with running_tree(HOLD_CONFIG, window_s=40) as t:
        yield t


@pytest.fixture
def page(tree: Tree) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            pg = browser.new_page(viewport={"width": 1600, "height": 1000})
            pg.add_init_script(f"localStorage.setItem('polyedge.apiToken', '{API_TOKEN}')")
            yield pg
        finally:
            browser.close()


def _health(tree: Tree) -> dict[str, Any]:
    return tree.get("/health", 2.0).json()


def test_killed_strategy_with_a_position_open_turns_health_red_within_5s(
    tree: Tree, page: Any, tmp_path: Path
) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(tree.api + "/")
    wait_for(lambda: text(page, "#conn-status") == "● live", 15, what="market data flowing")
    doc = wait_for(lambda: (d := _health(tree))["ok"] and d, 30, what="/health ok")
    assert doc["supervised"] and doc["services"]["strategy"]["supervisor_state"] == "RUNNING"
    assert not page.locator("#unmanaged-banner").is_visible()
    wait_for(lambda: "simvenue · running" in text(page, "#services"), 5, what="simvenue chip")

    # the price feed's lag (~1.4 s by the venue's design) reads the same in both panels: judged
    # by its own bounds, which its latency row states
    def lag_cells() -> tuple[str, str, str] | None:
        feed_lag = page.locator("#feed-price_feed td").nth(3)
        row = page.locator("#latency tr", has_text="feed_lag_price_feed")
        if feed_lag.inner_text() == "—" or row.count() == 0:
            return None
        return (
            feed_lag.get_attribute("class") or "",
            row.locator("td").nth(1).get_attribute("class") or "",
            row.locator("td").nth(0).inner_text(),
        )

    feed_cls, p50_cls, label = wait_for(lag_cells, 15, what="price feed lag in both panels")
    assert "sev-ok" in feed_cls and "sev-ok" in p50_cls, (feed_cls, p50_cls)
    assert "2000/3000/5000" in label

    pos = tree.wait_position(min_left_s=15, timeout=100)  # may need the next 40 s window
    wait_for(lambda: tree.status()["position"].get("open"), 5, what="observe to see the position")

    # an edit strategy refuses: it keeps trading on its last good config and says why, at once
    cfg = Path(tree.sup.env["POLYEDGE_CONFIG"])
    good = cfg.read_text()
    cfg.write_text(json.dumps({**json.loads(good), "stake_per_trade_usd": -1}))
    t_edit = time.monotonic()
    wait_for(
        lambda: "strategy refused" in text(page, "#cfg-file-error"),
        5,
        what="strategy's refusal of the config file on the dashboard",
    )
    edit_shown_s = time.monotonic() - t_edit
    assert page.locator("#cfg-file-error").is_visible()
    assert "stake_per_trade_usd" in text(page, "#cfg-file-error")

    # kill strategy: supervisord restarts it, the bad file stops it at start, it ends in BACKOFF
    os.kill(tree.sup.pid("strategy"), signal.SIGKILL)
    t_kill = time.monotonic()
    seen: dict[str, float] = {}

    def both_red() -> bool:
        if "health" not in seen and not _health(tree)["ok"]:
            seen["health"] = time.monotonic() - t_kill
        if "banner" not in seen and page.locator("#unmanaged-banner").is_visible():
            seen["banner"] = time.monotonic() - t_kill
        return len(seen) == 2

    wait_for(both_red, 15, 0.02, what="/health false and the red banner")
    print(
        f"\nkill -9 strategy -> /health ok=false {seen['health']:.2f} s, red banner "
        f"{seen['banner']:.2f} s; refused config edit shown after {edit_shown_s:.2f} s"
    )
    assert seen["health"] <= BANNER_BOUND_S and seen["banner"] <= BANNER_BOUND_S, seen

    banner = text(page, "#unmanaged-banner")
    assert "TRADING UNMANAGED" in banner and "strategy" in banner
    assert pos["slug"] in banner
    doc = _health(tree)
    assert doc["ok"] is False and doc["unmanaged"] and "strategy" in doc["unmanaged"]
    assert any(p.startswith("strategy ") for p in doc["problems"]), doc["problems"]
    # supervisord's word for it, in red, with the reason strategy gave when it refused to start
    wait_for(
        lambda: "BACKOFF" in text(page, "#svc-strategy"), 15, what="strategy · BACKOFF on the page"
    )
    assert "bad" in page.locator("#svc-strategy").get_attribute("class")
    reason = wait_for(
        lambda: (r := _health(tree)["services"]["strategy"]["reason"]) and "stake" in r and r,
        10,
        what="strategy's reason naming the bad field",
    )
    assert "invalid configuration" in reason
    # supervisord alternates STARTING and BACKOFF while it retries: wait for a BACKOFF moment
    wait_for(
        lambda: "strategy BACKOFF" in text(page, "#health-banner"), 15, what="BACKOFF in the strip"
    )
    # the risk pill is strategy's word: with strategy down it no longer claims ACTIVE
    assert text(page, "#risk-state") == "NO STRATEGY"
    shot = tmp_path / "dashboard_unmanaged.png"
    page.screenshot(path=str(shot), full_page=True)
    keep = os.environ.get("OBSERVE_SCREENSHOT_DIR")
    if keep:
        shutil.copy(shot, Path(keep) / shot.name)

    # a good file: supervisord's next retry starts strategy, and the page and /health recover
    cfg.write_text(good)
    wait_for(
        lambda: not page.locator("#unmanaged-banner").is_visible(), 30, what="the banner to clear"
    )
    # supervisord retries a program in BACKOFF after 1, 2, 3 ... s: the next try may be seconds away
    wait_for(lambda: _health(tree)["services"]["strategy"]["alive"], 30, what="strategy alive")
    wait_for(lambda: "strategy · running" in text(page, "#services"), 10, what="strategy chip")
    assert errors == []
