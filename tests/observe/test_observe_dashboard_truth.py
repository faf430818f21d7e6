"""The dashboard never shows a stale or safe-looking state it does not have, in real headless
Chromium: the "Not healthy" strip clears as soon as /health is ok again (the strip's className
write dropped "hidden"); with no data (API_TOKEN set, no token in the browser) the mode badge and
the position say unknown, not "DRY RUN" and "flat"; Enter in the token dialog saves the token; the
page fits a 420 px phone; a boolean config field is a choice, not free text; a signal that
stopped is marked stale."""

from __future__ import annotations

import json
import shutil
import threading
import time
from typing import Any

from common.schema import FeedStatus
from tests.conftest import REPO, short_tmpdir, wait_for
from tests.observe.observe_harness import TOKEN, Observe, make_env, start_stack
from tests.observe.test_observe_browser import page_factory, pytestmark, text  # noqa: F401


def _feed_pump(hot: Any, state: dict[str, Any], stop: threading.Event) -> None:
    """Publishes the price feed's status every 0.2 s: down, or switched off by the operator
    (the one feed a tree may run without; the stand-in hot path sends no price ticks)."""
    while not stop.is_set():
        down = state["down"]
        hot.send(
            "ingest",
            "md.status.price_feed",
            FeedStatus(
                feed="price_feed",
                connected=not down,
                stale=False,
                ts_ns=time.time_ns(),
                detail="test: feed cut" if down else "disabled by the test",
            ),
        )
        stop.wait(0.2)


def _visible(page: Any, sel: str) -> bool:
    return bool(page.locator(sel).is_visible())


def test_health_strip_clears_when_health_is_ok(page_factory: Any) -> None:  # noqa: F811
    root = short_tmpdir()
    # the fake market's windows are 60 s: an entry window that fits them, or strategy rightly
    # warns that no entry can happen (45 s + 30 s), and a warning is a strip of its own
    cfg = json.loads((REPO / "config" / "config.json").read_text())
    cfg.update(entry_window_min_sec=20, min_seconds_before_close=10)
    (root / "config.json").write_text(json.dumps(cfg))
    env, obs, strategy, hot = start_stack(root)
    state = {"down": False}
    stop = threading.Event()
    pump = threading.Thread(target=_feed_pump, args=(hot, state, stop), daemon=True)
    pump.start()
    try:
        page = page_factory()
        page.goto(obs.base + "/")
        wait_for(
            lambda: (h := obs.get("/health").json())["ok"] and not h["warnings"],
            20,
            what="/health ok with no warning",
        )
        wait_for(lambda: not _visible(page, "#health-banner"), 5, what="no strip when healthy")

        state["down"] = True
        wait_for(
            lambda: (
                _visible(page, "#health-banner")
                and "feed price_feed down" in text(page, "#health-banner")
            ),
            5,
            what="the strip for a fault",
        )
        assert "Not healthy" in text(page, "#health-banner")
        assert "bad" in (page.locator("#health-banner").get_attribute("class") or "")

        state["down"] = False
        wait_for(lambda: obs.get("/health").json()["ok"], 10, what="/health ok again")
        # before the fix the strip stayed on screen (an empty bar) once health was ok
        wait_for(lambda: not _visible(page, "#health-banner"), 5, what="the strip to clear")
        assert obs.get("/health").json()["ok"] is True
    finally:
        stop.set()
        pump.join(2)
        obs.stop()
        if strategy is not None:
            strategy.stop()
        hot.close()
        shutil.rmtree(root, ignore_errors=True)


def test_no_data_looks_unknown_and_token_dialog_saves_on_enter(page_factory: Any) -> None:  # noqa: F811
    root = short_tmpdir()
    env, obs, strategy, hot = start_stack(root, API_TOKEN=TOKEN)
    try:
        page = page_factory()
        page.goto(obs.base + "/")
        wait_for(
            lambda: "API token required" in text(page, "#conn-status"), 10, what="auth refused"
        )
        # nothing was heard: the badge and the position must not read as a safe state
        assert text(page, "#mode-banner") == "—"
        assert "DRY RUN" not in text(page, "#mode-banner")
        assert "unknown" in (page.locator("#mode-banner").get_attribute("class") or "")
        assert "flat" not in text(page, "#position") and "no data" in text(page, "#position")

        # Enter in the token field saves it, and the page goes live with the real mode and venue
        page.click("#btn-token")
        page.fill("#modal-input", TOKEN)
        page.press("#modal-input", "Enter")
        wait_for(lambda: not _visible(page, "#modal"), 5, what="the dialog to close on Enter")
        assert page.evaluate("localStorage.getItem('polyedge.apiToken')") == TOKEN
        mode = obs.status()["mode"]
        want = f"{mode['label']} · {mode['venue']} venue"
        wait_for(lambda: text(page, "#mode-banner") == want, 10, what=f"badge {want!r}")
        wait_for(lambda: "flat" in text(page, "#position"), 10, what="the position heard")

        # a boolean config field is a choice of true/false, not a free-text box
        sel = page.locator("#cfg-require_settlement_price_to_beat")
        wait_for(lambda: sel.count() == 1, 10, what="config editor")
        assert sel.evaluate("el => el.tagName") == "SELECT"
        assert sel.locator("option").all_inner_texts() == ["true", "false"]
        want_b = obs.get("/api/config").json()["config"]["require_settlement_price_to_beat"]
        assert sel.input_value() == str(want_b).lower()
    finally:
        obs.stop()
        if strategy is not None:
            strategy.stop()
        hot.close()
        shutil.rmtree(root, ignore_errors=True)


def test_page_fits_a_phone(page_factory: Any) -> None:  # noqa: F811
    root = short_tmpdir()
    obs = Observe(make_env(root))
    try:
        obs.wait_up()
        page = page_factory()
        page.set_viewport_size({"width": 420, "height": 900})
        page.goto(obs.base + "/", wait_until="load")
        wait_for(lambda: page.locator("#cfg-order_type").count() == 1, 10, what="config editor")
        # the document is no wider than the viewport (it rendered 834 px wide at 420)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 420, width
    finally:
        obs.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_a_signal_that_stopped_is_marked_stale(page_factory: Any) -> None:  # noqa: F811
    root = short_tmpdir()
    env, obs, strategy, hot = start_stack(root, with_strategy=False)
    try:
        page = page_factory()
        page.goto(obs.base + "/")
        wait_for(lambda: text(page, "#sig-age").startswith("age "), 10, what="a fresh signal")
        assert "sev-warning" not in (page.locator("#sig-age").get_attribute("class") or "")
        hot.stop_flag.set()  # the stand-in hot path (signal among it) goes quiet
        hot.thread.join(5)
        wait_for(lambda: "stale" in text(page, "#sig-age"), 10, what="the signal marked stale")
        assert "sev-warning" in (page.locator("#sig-age").get_attribute("class") or "")
        assert text(page, "#sig-side") == "Up"  # the last score, still shown, but marked
    finally:
        obs.stop()
        hot.close()
        shutil.rmtree(root, ignore_errors=True)
