"""The observe API against the real observe and strategy processes over the real bus: status
shape, config validation, auth, the emergency-stop round trip, trades, latency, metrics, /ws/live."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets

from common.schema import BtcTrade, LatencySample, OrderFilled, PositionSettled
from tests.conftest import REPO, short_tmpdir, wait_for
from tests.observe.observe_harness import (
    TOKEN,
    UP_TOKEN,
    FakeHotPath,
    Observe,
    make_env,
    read_jsonl,
    start_stack,
)

# a throwaway key that must never come back out of the API or its logs
PRIVATE_KEY = "0x" + "5a" * 32


class Stack:
    def __init__(self) -> None:
        self.root = short_tmpdir()
        self.env, self.obs, self.strategy, self.hot = start_stack(
            self.root, API_TOKEN=TOKEN, PRIVATE_KEY=PRIVATE_KEY
        )

    @property
    def db(self) -> Path:
        return self.root / "data" / "trader.db"

    def rows(self, sql: str, *args: object) -> list[tuple]:
        conn = sqlite3.connect(self.db)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    def close(self) -> None:
        self.obs.stop()
        if self.strategy is not None:
            self.strategy.stop()
        self.hot.close()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    st = Stack()
    try:
        # strategy's own heartbeat reaching observe proves the bus path both ways is up
        wait_for(
            lambda: st.obs.get("/health").json()["services"]["strategy"]["alive"],
            20,
            what="strategy heartbeat seen by observe",
        )
        yield st
    finally:
        st.close()


def test_health_keeps_services_and_pipeline(stack: Stack) -> None:
    doc = wait_for(
        lambda: (d := stack.obs.get("/health").json())["services"]["ingest"]["alive"] and d,
        10,
        what="fake ingest heartbeat",
    )
    assert set(doc["services"]) == {"ingest", "signal", "strategy", "execution", "observe"}
    assert doc["services"]["strategy"]["pid"] == stack.strategy.p.pid
    assert "probes" in doc["pipeline"]


def test_status_shape_and_values(stack: Stack) -> None:
    st = wait_for(
        lambda: (s := stack.obs.status())["market"] and s["books"]["up"] and s["signal"] and s,
        10,
        what="market, books and signal in /api/status",
    )
    for key in (
        "mode",
        "feeds",
        "btc",
        "market",
        "price_to_beat",
        "books",
        "signal",
        "position",
        "metrics",
        "risk",
        "config_version",
        "latency",
        "health",
    ):
        assert key in st, key
    assert st["mode"]["dry_run"] is True and st["mode"]["label"] == "DRY RUN"
    assert abs(st["btc"]["price"] - stack.hot.price) < 300
    assert st["btc"]["age_ms"] is not None and st["btc"]["age_ms"] < 2000
    m = st["market"]
    assert m["slug"] == stack.hot.slug
    assert 0 <= m["seconds_left"] <= 60
    assert st["price_to_beat"] == 97_000.0
    up = st["books"]["up"]
    assert up["asset_id"] == UP_TOKEN and up["best_bid"] == 0.52 and up["best_ask"] == 0.54
    assert up["bids"][0] == [0.52, 120.0] and up["bid_depth"] == 420.0
    assert st["signal"]["side"] == "Up" and st["signal"]["edge_pct"] == 0.01
    assert st["feeds"]["binance"]["connected"] is True and st["feeds"]["binance"]["stale"] is False
    assert st["latency"]["feed_lag_binance_ms"]["count"] > 0
    assert 2.0 <= st["latency"]["feed_lag_binance_ms"]["p50"] < 200
    assert st["risk"]["halted"] is False  # strategy starts active


def test_posts_need_the_token(stack: Stack) -> None:
    for path in (
        "/api/emergency-stop",
        "/api/emergency-stop/clear",
        "/api/force-exit",
        "/api/config",
    ):
        r = stack.obs.post(path, {}, token=None)
        assert r.status_code == 401, (path, r.text)
        assert "token" in r.json()["error"]
        assert stack.obs.post(path, {}, token="wrong-" + TOKEN).status_code == 401
    assert stack.obs.get("/api/status").status_code == 200  # reads stay open on loopback
    # the refused emergency stop really did not reach strategy
    assert stack.obs.status()["risk"]["halted"] is False


def test_config_invalid_is_422_with_field_errors_and_not_applied(stack: Stack) -> None:
    before = stack.obs.get("/api/config").json()
    file_before = Path(stack.env["POLYEDGE_CONFIG"]).read_text()
    bad = {**before["config"], "stake_per_trade_usd": -5, "min_edge_pct": "lots", "no_such_knob": 1}
    r = stack.obs.post("/api/config", bad)
    assert r.status_code == 422
    fe = r.json()["field_errors"]
    assert set(fe) == {"stake_per_trade_usd", "min_edge_pct", "no_such_knob"}
    assert fe["no_such_knob"] == "unknown field"
    assert stack.obs.get("/api/config").json()["version"] == before["version"]
    assert Path(stack.env["POLYEDGE_CONFIG"]).read_text() == file_before
    r = stack.obs.post(
        "/api/config", None, content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and "JSON" in r.json()["error"]
    # an integral float for an int field: said plainly, not msgspec's "Expected `int`"
    r = stack.obs.post("/api/config", {"max_trades_per_day": 2.0})
    assert r.status_code == 422
    assert "whole number" in r.json()["field_errors"]["max_trades_per_day"], r.json()
    # an empty market list would stop every market: refused naming `markets`, nothing applied
    r = stack.obs.post("/api/config", {"markets": []})
    assert r.status_code == 422 and "empty" in r.json()["field_errors"]["markets"], r.json()
    # a body that is not declared JSON (what a cross-site form or text/plain POST sends) is 415
    for ctype in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"Content-Type": ctype} if ctype else {}
        r = stack.obs.post(
            "/api/config", None, content=b'{"max_trades_per_day": 3}', headers=headers
        )
        assert r.status_code == 415 and "application/json" in r.json()["error"], (ctype, r.text)
    assert stack.obs.get("/api/config").json()["version"] == before["version"]
    # a merge patch's own media type (RFC 7396) is JSON too: it reaches validation (422 here)
    r = stack.obs.post(
        "/api/config",
        None,
        content=b'{"max_trades_per_day": 2.5}',
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 422, r.text


def test_config_valid_is_applied_by_strategy(stack: Stack) -> None:
    cur = wait_for(
        lambda: (c := stack.obs.get("/api/config").json())["config"] and c, 10, what="config known"
    )
    new_stake = cur["config"]["stake_per_trade_usd"] + 1.5
    r = stack.obs.post("/api/config", {**cur["config"], "stake_per_trade_usd": new_stake})
    assert r.status_code == 200, r.text
    version = r.json()["config_version"]
    assert version > cur["version"]
    got = wait_for(
        lambda: (c := stack.obs.get("/api/config").json())["version"] == version and c,
        5,
        what="config snapshot from strategy",
    )
    assert got["config"]["stake_per_trade_usd"] == new_stake
    # the operator's change goes to the overrides file in the data dir, never the defaults file
    on_disk = json.loads((Path(stack.env["POLYEDGE_DATA_DIR"]) / "config.json").read_text())
    assert on_disk["stake_per_trade_usd"] == new_stake
    shipped = json.loads(Path(stack.env["POLYEDGE_CONFIG"]).read_text())
    assert shipped["stake_per_trade_usd"] == cur["config"]["stake_per_trade_usd"]
    wait_for(
        lambda: stack.rows("SELECT version FROM config_snapshots WHERE version=?", version),
        5,
        what="config snapshot recorded",
    )


def test_config_post_after_a_refused_hand_edit_is_409_and_keeps_the_file(stack: Stack) -> None:
    """A hand edit strategy refused stays on disk: a POST /api/config meanwhile is refused with
    409 naming the file and its errors (applying it would rewrite the file from the last good
    config and silently drop the edit). Once the file is good, the refusal clears at once and a
    POST applies."""
    path = Path(stack.env["POLYEDGE_DATA_DIR"]) / "config.json"
    before = path.read_text() if path.exists() else None
    bad = '{"stake_per_trade_usd": "lots", "typo_key": 1}'
    try:
        path.write_text(bad)
        wait_for(lambda: stack.obs.get("/health").json()["config_errors"], 10, what="the refusal")
        r = stack.obs.post("/api/config", {"max_trades_per_day": 4})
        assert r.status_code == 409, r.text
        err = r.json()["error"]
        assert str(path) in err and "stake_per_trade_usd" in err and "typo_key" in err, err
        # removing the overrides file is safe, and the message says what it does
        assert "remove it to go back to the shipped config" in err, err
        assert path.read_text() == bad  # the operator's edit is still there, untouched
        assert stack.obs.get("/api/config").json()["config"]["max_trades_per_day"] != 4

        path.write_text(json.dumps({"max_trades_per_day": 5}))  # fixed by hand
        wait_for(
            lambda: not stack.obs.get("/health").json()["config_errors"],
            10,
            what="the refusal to clear once the file is good",
        )
        r = stack.obs.post("/api/config", {"max_trades_per_day": 4})
        assert r.status_code == 200, r.text
        assert json.loads(path.read_text())["max_trades_per_day"] == 4
    finally:
        if before is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(before)


def test_config_post_after_a_refused_edit_of_the_shipped_file_says_to_fix_it(stack: Stack) -> None:
    """BREAKER2 finding 7: with a bad value in the shipped file, the 409 said "Fix or remove that
    file first: applying this change would overwrite it". A POST never writes that file (only
    the overrides), and removing it is refused too (finding 1): the message says to fix it."""
    shipped = Path(stack.env["POLYEDGE_CONFIG"])
    overrides = Path(stack.env["POLYEDGE_DATA_DIR"]) / "config.json"
    before = shipped.read_text()
    doc = json.loads(before)
    try:
        shipped.write_text(json.dumps({**doc, "stake_per_trade_usd": "5"}))
        wait_for(lambda: stack.obs.get("/health").json()["config_errors"], 10, what="the refusal")
        r = stack.obs.post("/api/config", {"max_trades_per_day": 4})
        assert r.status_code == 409, r.text
        err = r.json()["error"]
        assert str(shipped) in err and "stake_per_trade_usd" in err, err
        assert "remove" not in err and "overwrite" not in err, err
        assert "Fix that file" in err and f"strategy never writes {shipped}" in err, err
        assert str(overrides) in err, err  # what a POST does write
        assert shipped.read_text() != before  # untouched
    finally:
        shipped.write_text(before)
    wait_for(
        lambda: not stack.obs.get("/health").json()["config_errors"],
        10,
        what="the refusal to clear once the file is good",
    )


def test_emergency_stop_round_trip_halts_strategy(stack: Stack) -> None:
    r = stack.obs.post("/api/emergency-stop", {"reason": "test"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["state"]["risk"]["halted"] is True and body["risk"]["emergency_stop"] is True
    # strategy's own heartbeat (a different path from the reply) says it is halted
    wait_for(
        lambda: stack.obs.get("/health").json()["services"]["strategy"]["state"] == "halted",
        5,
        what="strategy heartbeat state halted",
    )
    assert stack.obs.status()["risk"]["halted"] is True
    wait_for(
        lambda: stack.rows("SELECT halted FROM risk_events WHERE halted=1"),
        5,
        what="risk event recorded",
    )
    wait_for(
        lambda: any(
            x["event"] == "risk_halted" for x in read_jsonl(stack.root / "logs" / "risk.jsonl")
        ),
        5,
        what="risk.jsonl line",
    )
    r = stack.obs.post("/api/emergency-stop/clear")
    assert r.status_code == 200 and r.json()["risk"]["halted"] is False
    wait_for(
        lambda: stack.obs.get("/health").json()["services"]["strategy"]["state"] == "running",
        5,
        what="strategy running again",
    )


def test_force_exit_answers_and_times_out_when_strategy_hangs(stack: Stack) -> None:
    # flat: strategy answers and refuses, and the API passes its reason on
    r = stack.obs.post("/api/force-exit", {"reason": "test"})
    assert r.status_code == 409, r.text
    assert "no open position" in r.json()["error"]
    os.kill(stack.strategy.p.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        r = stack.obs.post("/api/force-exit", {"reason": "test"})
        took = time.monotonic() - t0
    finally:
        os.kill(stack.strategy.p.pid, signal.SIGCONT)
    assert r.status_code == 504, r.text
    assert "did not confirm" in r.json()["error"]
    assert 2.5 <= took < 6


def test_trades_paging_and_filters(stack: Stack) -> None:
    now = time.time_ns()
    for i in range(7):
        stack.hot.send(
            "execution",
            "exec.fill",
            OrderFilled(
                client_order_id=f"coid-{i}",
                asset_id=UP_TOKEN,
                side="BUY",
                price=0.5 + i / 100,
                size=10.0,
                fee=0.0175,
                ts_fill_ns=now + i,
                slug="slug-a" if i < 5 else "slug-b",
                outcome="Up",
                trade_id=f"t{i}",
                ts_signal_ns=now - 30_000_000,
                origin_ts_recv_ns=now - 40_000_000,
            ),
        )
    stack.hot.send(
        "execution",
        "exec.settlement",
        PositionSettled(
            slug="slug-a",
            asset_id=UP_TOKEN,
            outcome="Up",
            won=True,
            size=10.0,
            payout=1.0,
            pnl=4.8,
            ts_ns=now + 10,
        ),
    )
    page = wait_for(
        lambda: (p := stack.obs.get("/api/trades?limit=3").json())["total"] >= 8 and p,
        5,
        what="8 trades recorded",
    )
    assert page["total"] == 8 and len(page["items"]) == 3
    assert page["items"][0]["kind"] == "settlement" and page["items"][0]["pnl"] == 4.8
    p2 = stack.obs.get("/api/trades?limit=3&offset=3").json()
    ids1 = {t["id"] for t in page["items"]}
    ids2 = {t["id"] for t in p2["items"]}
    assert len(ids2) == 3 and not ids1 & ids2
    assert max(t["ts_ns"] for t in p2["items"]) <= min(t["ts_ns"] for t in page["items"])
    b = stack.obs.get("/api/trades?slug=slug-b").json()
    assert b["total"] == 2 and {t["client_order_id"] for t in b["items"]} == {"coid-5", "coid-6"}
    assert stack.obs.get("/api/trades?kind=settlement").json()["total"] == 1
    # republished fills (a publisher restart) do not double-count
    stack.hot.send(
        "execution",
        "exec.fill",
        OrderFilled(
            client_order_id="coid-0",
            asset_id=UP_TOKEN,
            side="BUY",
            price=0.5,
            size=10.0,
            fee=0.0175,
            ts_fill_ns=now,
            slug="slug-a",
            outcome="Up",
            trade_id="t0",
        ),
    )
    wait_for(
        lambda: re.search(
            r"^polyedge_observe_trade_events_duplicate 1$", stack.obs.get("/metrics").text, re.M
        ),
        5,
        what="duplicate fill handled",
    )
    # heard, not counted again: the day's fees and entries are the seven fills'
    assert len(stack.obs.status()["recent"]["fills"]) == 7
    wait_for(
        lambda: re.search(
            r"^polyedge_observe_db_rows_pending 0$", stack.obs.get("/metrics").text, re.M
        ),
        5,
        what="recorder flushed",
    )
    assert stack.obs.get("/api/trades").json()["total"] == 8
    for bad, word in (
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("colour=red", "colour"),
        ("dry_run=maybe", "dry_run"),
    ):
        r = stack.obs.get(f"/api/trades?{bad}")
        assert r.status_code == 400 and word in r.json()["error"], bad
    # a filter value no trade row can hold is a typo: 400 naming the parameter and what is allowed
    for bad, words in (
        ("kind=nope", ("kind", "fill", "settlement")),
        ("venue=moon", ("venue", "live", "sim")),
        ("mode=x", ("mode", "paper", "real")),
        ("side=hold", ("side", "BUY", "SELL")),
        ("outcome=sideways", ("outcome", "Up", "Down")),
        ("day=30-11-2026", ("day", "YYYY-MM-DD")),
        ("day=2026-13-45", ("day", "YYYY-MM-DD")),
    ):
        r = stack.obs.get(f"/api/trades?{bad}")
        assert r.status_code == 400, (bad, r.text)
        assert all(w in r.json()["error"] for w in words), (bad, r.json())
    # kind, side and outcome in any case find the rows (README: "in any case")
    for kind in ("fill", "settlement"):
        want = stack.obs.get(f"/api/trades?kind={kind}").json()["total"]
        assert stack.obs.get(f"/api/trades?kind={kind.upper()}").json()["total"] == want
    assert stack.obs.get("/api/trades?kind=FILL").json()["total"] == 7
    assert stack.obs.get("/api/trades?side=buy").json()["total"] == 7
    assert stack.obs.get("/api/trades?outcome=up").json()["total"] == 8
    assert stack.obs.get("/api/trades?outcome=DOWN").json()["total"] == 0
    day = page["items"][0]["day"]
    assert stack.obs.get(f"/api/trades?day={day}").json()["total"] == 8
    st = stack.obs.status()
    assert st["metrics"]["fees_today"] >= 7 * 0.0175 - 1e-9


def test_latency_percentiles_thresholds_and_log(stack: Stack) -> None:
    values = [50.0] * 90 + [250.0] * 5 + [600.0] * 3 + [1500.0] * 2
    for i, ms in enumerate(values):
        stack.hot.send(
            "execution",
            "exec.latency",
            LatencySample(stage="signal_to_order_ack_ms", ms=ms, ts_ns=time.time_ns(), ref=f"r{i}"),
        )
    lat = wait_for(
        lambda: (
            (x := stack.obs.get("/api/latency").json())["stages"]["signal_to_order_ack_ms"]["count"]
            >= 100
            and x
        ),
        5,
        what="100 samples",
    )
    s = lat["stages"]["signal_to_order_ack_ms"]
    assert s["p50"] == 50.0 and s["p90"] == 50.0 and s["p99"] == 1500.0 and s["max"] == 1500.0
    assert s["breaches"] == {"warning": 5, "critical": 3, "stale": 2}
    assert s["severity"] == "stale"
    assert lat["thresholds_ms"] == {"warning": 200.0, "critical": 500.0, "stale": 1000.0}
    for stage in (
        "market_to_signal_ms",
        "full_decision_to_fill_ms",
        "feed_lag_binance_ms",
        "feed_lag_clob_ms",
    ):
        assert stage in lat["stages"]
    lines = wait_for(
        lambda: (
            {
                x["severity"]
                for x in read_jsonl(stack.root / "logs" / "latency.jsonl")
                if x.get("stage") == "signal_to_order_ack_ms"
            }
            >= {"warning", "critical", "stale"}
            and read_jsonl(stack.root / "logs" / "latency.jsonl")
        ),
        5,
        what="warning, critical and stale lines in latency.jsonl",
    )
    for x in lines:
        assert {"ts", "service", "event"} <= set(x)
    stale = [x for x in lines if x.get("severity") == "stale"]
    assert stale[0]["level"] == "CRITICAL" and stale[0]["ms"] > 1000
    wait_for(
        lambda: stack.rows("SELECT COUNT(*) FROM latency_events WHERE severity='stale'")[0][0] >= 1,
        5,
        what="latency_events rows",
    )


def test_metrics_prometheus_text(stack: Stack) -> None:
    r = stack.obs.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert re.search(r'^polyedge_service_up\{service="strategy"\} 1$', text, re.M)
    assert re.search(r"^polyedge_btc_price_usd 9\d{4}(\.\d+)?$", text, re.M)
    sample = re.compile(r'^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.e+]+$')
    for line in text.splitlines():
        assert line.startswith("# ") or sample.match(line), line


def test_ws_live_pushes_state_and_needs_token(stack: Stack) -> None:
    url = stack.obs.base.replace("http", "ws") + "/ws/live"

    async def run() -> tuple[list[dict], float, int | None]:
        frames: list[dict] = []
        async with websockets.connect(url + f"?token={TOKEN}") as ws:
            t0 = time.monotonic()
            while time.monotonic() - t0 < 2.0:
                frames.append(json.loads(await asyncio.wait_for(ws.recv(), 2)))
            took = time.monotonic() - t0
        async with websockets.connect(url) as ws:
            try:
                await asyncio.wait_for(ws.recv(), 3)
            except websockets.ConnectionClosed as e:
                return frames, took, e.rcvd.code if e.rcvd else None
        return frames, took, None

    frames, took, refused_code = asyncio.run(run())
    assert refused_code == 4401
    rate = len(frames) / took
    assert 3.0 <= rate <= 8.0, rate  # ~every 200 ms
    d = frames[-1]
    assert d["type"] == "state"
    data = d["data"]
    for key in ("dry_run", "btc_price", "market", "signal", "position", "metrics"):
        assert key in data
    assert data["market"]["slug"] == stack.hot.slug and "seconds_left" in data["market"]
    assert {"side", "score", "edge_pct"} <= set(data["signal"])
    prices = {f["data"]["btc_price"] for f in frames}
    assert len(prices) > 1  # it is live, not a cached document


def test_slow_ws_clients_do_not_slow_the_bus_reader(stack: Stack) -> None:
    url = stack.obs.base.replace("http", "ws") + f"/ws/live?token={TOKEN}"
    burst = 20_000

    async def run() -> tuple[int, int]:
        # 30 clients that never read: their slots just keep the latest state
        idle = [await websockets.connect(url, max_size=2**20) for _ in range(30)]
        before = stack.obs.get("/api/status").json()
        seen_before = before["latency"]["feed_lag_binance_ms"]["count"]
        t = time.time_ns()
        for i in range(burst):
            stack.hot.send(
                "ingest",
                "md.btc.trade",
                BtcTrade(
                    price=90_000.0 + i % 100, size=0.001, ts_exchange_ns=t, ts_recv_ns=t + 1_000_000
                ),
            )
        frames = 0
        async with websockets.connect(url) as live:
            t0 = time.monotonic()
            while time.monotonic() - t0 < 1.5:
                await asyncio.wait_for(live.recv(), 2)
                frames += 1
        for ws in idle:
            await ws.close()
        return seen_before, frames

    seen_before, frames = asyncio.run(run())
    got = wait_for(
        lambda: (
            stack.obs.get("/api/status").json()["latency"]["feed_lag_binance_ms"]["count"]
            >= seen_before + burst
        ),
        10,
        what="observe consumed the whole burst",
    )
    assert got
    assert frames >= 4  # a reading client kept getting ~5 frames/s meanwhile
    metrics = stack.obs.get("/metrics").text
    lost = re.search(r"^polyedge_observe_bus_lost (\S+)$", metrics, re.M)
    assert lost is not None and float(lost.group(1)) == 0


def test_security_host_body_limit(stack: Stack) -> None:
    r = stack.obs.get("/health", headers={"Host": "evil.example"})
    assert r.status_code == 400
    r = stack.obs.post(
        "/api/config",
        None,
        content=b"{" + b" " * 70_000 + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 413 and "larger than" in r.json()["error"]
    r = stack.obs.get("/api/status", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in r.headers


def test_dashboard_and_vendored_chart_served(stack: Stack) -> None:
    r = stack.obs.get("/")
    assert r.status_code == 200 and "uPlot.iife.min.js" in r.text
    js = stack.obs.get("/static/vendor/uplot/uPlot.iife.min.js")
    assert js.status_code == 200 and "uPlot" in js.text[:2000]
    assert (
        (REPO / "services/observe/static/vendor/uplot/LICENSE")
        .read_text()
        .startswith("The MIT License")
    )


def test_refuses_non_loopback_host_without_token() -> None:
    root = short_tmpdir()
    try:
        env = make_env(root, API_HOST="0.0.0.0")
        p = subprocess.run(
            [sys.executable, "-m", "services.observe"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert p.returncode == 2
        assert "API_TOKEN" in p.stderr and "0.0.0.0" in p.stderr
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_control_without_strategy_is_503_at_once_and_state_survives_restart() -> None:
    root = short_tmpdir()
    env = make_env(root)
    hot = FakeHotPath(env).start()
    obs = Observe(env)
    try:
        obs.wait_up()
        t0 = time.monotonic()
        r = obs.post("/api/emergency-stop")
        assert r.status_code == 503 and "not connected" in r.json()["error"]
        assert time.monotonic() - t0 < 1.0
        now = time.time_ns()
        hot.send(
            "execution",
            "exec.settlement",
            PositionSettled(
                slug="s1",
                asset_id=UP_TOKEN,
                outcome="Up",
                won=True,
                size=5.0,
                payout=1.0,
                pnl=2.5,
                ts_ns=now,
            ),
        )
        wait_for(lambda: obs.get("/api/trades").json()["total"] == 1, 5, what="settlement")
        assert obs.stop() == 0
        obs2 = Observe(env)
        try:
            obs2.wait_up()
            st = obs2.status()
            assert st["metrics"]["daily_pnl"] == 2.5 and st["metrics"]["wins_today"] == 1
            assert obs2.get("/api/trades").json()["total"] == 1
        finally:
            obs2.stop()
    finally:
        obs.stop()
        hot.close()
        shutil.rmtree(root, ignore_errors=True)


def test_cross_origin_posts_and_sockets_are_refused(stack: Stack) -> None:
    evil = {"Origin": "http://evil.example"}
    r = stack.obs.post("/api/emergency-stop/clear", {}, headers=evil)
    assert r.status_code == 403 and "cross-origin" in r.json()["error"]
    same = {"Origin": stack.obs.base}
    r = stack.obs.post("/api/force-exit", {}, headers=same)
    assert r.status_code == 409  # reached strategy (which has nothing to exit)
    url = stack.obs.base.replace("http", "ws") + f"/ws/live?token={TOKEN}"

    async def refused() -> int | None:
        async with websockets.connect(url, origin="http://evil.example") as ws:
            try:
                await asyncio.wait_for(ws.recv(), 3)
            except websockets.ConnectionClosed as e:
                return e.rcvd.code if e.rcvd else None
        return None

    assert asyncio.run(refused()) == 4403


def test_private_key_never_comes_out(stack: Stack) -> None:
    secret = PRIVATE_KEY.removeprefix("0x")
    for path in ("/api/status", "/api/config", "/metrics", "/health", "/api/latency"):
        assert secret not in stack.obs.get(path).text, path
    for f in (stack.root / "logs").glob("*.jsonl"):
        assert secret not in f.read_text(), f
