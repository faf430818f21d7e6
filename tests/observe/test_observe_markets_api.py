"""The observe API with several markets (issue 17), against the real observe process over the
real bus: the market list, `?market=` on status and history (a series key or a slug; unknown is
a 404 naming the known ones), per-market /metrics, and control POSTs forwarding their `market`
to strategy's control stream (a stand-in strategy binds it and records what arrives)."""

from __future__ import annotations

import queue
import shutil
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from common import topics
from common.bus import Publisher, Puller
from common.config import load_settings
from common.schema import (
    ClearEmergencyStop,
    ControlReply,
    ForceExit,
    Heartbeat,
    Msg,
    PositionState,
    RiskState,
    TriggerEmergencyStop,
)
from tests.conftest import short_tmpdir, wait_for
from tests.observe.observe_harness import TOKEN, start_stack

EXTRA = ("eth-15m", "sol-5m")
KEYS = ["btc-5m", "eth-15m", "sol-5m"]


class FakeStrategy:
    """Binds strategy's control PULL and its PUB: records every command, answers each ok."""

    def __init__(self, env: dict[str, str]) -> None:
        s = load_settings(env, dotenv=None)
        self.puller = Puller(s.bus_endpoint("control"))
        self.pub = Publisher(s.bus_endpoint("strategy"))
        self.commands: list[Any] = []
        self.outbox: queue.Queue[tuple[str, Msg]] = queue.Queue()  # published by the thread
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            if n % 5 == 1:  # alive for observe's health
                now = time.time_ns()
                hb = Heartbeat(service="strategy", state="running", pid=1, started_ns=1, ts_ns=now)
                self.pub.send("sys.heartbeat.strategy", hb)
            while not self.outbox.empty():
                self.pub.send(*self.outbox.get())
            got = self.puller.recv(100)
            if got is None:
                continue
            msg = got[1].msg
            self.commands.append(msg)
            reply = ControlReply(request_id=msg.request_id, ok=True, ts_ns=time.time_ns())
            self.pub.send("strat.control.reply", reply)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.puller.close()
        self.pub.close()


class Stack:
    def __init__(self) -> None:
        self.root = short_tmpdir()
        self.env, self.obs, _, self.hot = start_stack(
            self.root, with_strategy=False, markets=EXTRA, API_TOKEN=TOKEN
        )
        self.strategy = FakeStrategy(self.env)

    def close(self) -> None:
        self.obs.stop()
        self.strategy.close()
        self.hot.close()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    st = Stack()
    try:

        def all_live() -> bool:
            rows = st.obs.get("/api/markets").json()["markets"]
            return [r["market"] for r in rows] == KEYS and all(
                r["seconds_left"] is not None and r["p_market"] is not None for r in rows
            )

        wait_for(all_live, 20, what="every market's window and book in /api/markets")
        yield st
    finally:
        st.close()


def test_the_market_list(stack: Stack) -> None:
    doc = stack.obs.get("/api/markets").json()
    assert doc["default"] == "btc-5m"
    rows = {r["market"]: r for r in doc["markets"]}
    assert all(r["configured"] for r in rows.values())
    assert rows["eth-15m"]["slug"].startswith("eth-updown-15m-")
    assert rows["sol-5m"]["slug"].startswith("sol-updown-5m-")
    # each market with its own book, signal and spot (the stand-in's figures)
    assert (rows["eth-15m"]["p_market"], rows["eth-15m"]["p_model"]) == (0.62, 0.7)
    assert (rows["sol-5m"]["p_market"], rows["sol-5m"]["side"]) == (0.34, "Down")
    assert 3_400 < rows["eth-15m"]["spot"] < 3_600 and 170 < rows["sol-5m"]["spot"] < 190
    # eth's window is twice as long as sol's
    assert rows["eth-15m"]["window_seconds"] == 2 * rows["sol-5m"]["window_seconds"]


def test_status_and_history_take_a_market(stack: Stack) -> None:
    plain = stack.obs.status()  # no parameter: btc-5m, as always
    assert plain["selected"] == "btc-5m" and plain["market"]["slug"] == stack.hot.slug
    assert plain["books"]["up"]["best_bid"] == 0.52
    eth = stack.obs.get("/api/status", params={"market": "eth-15m"}).json()
    assert eth["selected"] == "eth-15m" and eth["market"]["slug"].startswith("eth-updown-15m-")
    assert eth["books"]["up"]["best_bid"] == 0.61 and eth["signal"]["market"] == "eth-15m"
    by_slug = stack.obs.get("/api/status", params={"market": eth["market"]["slug"]}).json()
    assert by_slug["selected"] == "eth-15m"
    hist = wait_for(
        lambda: (h := stack.obs.get("/api/history?market=sol-5m").json())["prob"] and h,
        10,
        what="sol's chart",
    )
    assert hist["asset"] == "sol" and all(170 < p < 190 for _, p in hist["spot"])
    assert {round(p, 2) for _, p, _ in hist["prob"]} == {0.3}
    for path in ("/api/status", "/api/history"):
        r = stack.obs.get(path, params={"market": "doge-5m"})
        assert r.status_code == 404, r.text
        err = r.json()["error"]
        assert "unknown market 'doge-5m'" in err and "eth-15m" in err, err
    r = stack.obs.get("/api/trades", params={"market": "eth-15m"})
    assert r.status_code == 200 and r.json()["total"] == 0


def test_control_posts_forward_their_market(stack: Stack) -> None:
    cmds = stack.strategy.commands
    r = stack.obs.post("/api/emergency-stop", {"reason": "eth only", "market": "eth-15m"})
    assert r.status_code == 200, r.text
    assert isinstance(cmds[-1], TriggerEmergencyStop)
    assert (cmds[-1].market, cmds[-1].reason) == ("eth-15m", "eth only")
    assert r.json()["market"] == "eth-15m" and "halted" in r.json()["market_risk"]
    slug = stack.obs.status()["markets"][2]["slug"]
    r = stack.obs.post(f"/api/force-exit?market={slug}")  # a slug names its market
    assert r.status_code == 200, r.text
    assert isinstance(cmds[-1], ForceExit) and cmds[-1].market == "sol-5m"
    r = stack.obs.post("/api/emergency-stop/clear", {"market": "eth-15m"})
    assert r.status_code == 200 and isinstance(cmds[-1], ClearEmergencyStop)
    assert cmds[-1].market == "eth-15m"
    r = stack.obs.post("/api/emergency-stop", {})  # no market: every market, as before
    assert r.status_code == 200 and cmds[-1].market == ""
    n = len(cmds)
    r = stack.obs.post("/api/force-exit", {"market": "doge-5m"})
    assert r.status_code == 404 and "nothing was sent" in r.json()["error"]
    r = stack.obs.post("/api/emergency-stop", {"market": 5})
    assert r.status_code == 400
    # the next command strategy receives is the next one sent: the refused ones never went
    assert stack.obs.post("/api/emergency-stop/clear").status_code == 200
    assert len(cmds) == n + 1 and isinstance(cmds[n], ClearEmergencyStop)


def test_metrics_label_markets(stack: Stack) -> None:
    text = stack.obs.get("/metrics").text
    for key in KEYS:
        assert f'polyedge_market_seconds_left{{market="{key}"}}' in text
        assert f'polyedge_market_up_mid{{market="{key}"}}' in text
    assert 'polyedge_spot_price_usd{asset="sol"}' in text


def test_a_single_market_tree_lists_btc_5m_only() -> None:
    root = short_tmpdir()
    env, obs, _, hot = start_stack(root, with_strategy=False)
    try:
        rows = wait_for(
            lambda: (m := obs.get("/api/markets").json()["markets"])[0]["slug"] and m,
            15,
            what="btc's window",
        )
        assert [r["market"] for r in rows] == ["btc-5m"] and rows[0]["slug"] == hot.slug
        assert obs.get("/api/status?market=btc-5m").json()["market"]["slug"] == hot.slug
    finally:
        obs.stop()
        hot.close()
        shutil.rmtree(root, ignore_errors=True)


def test_control_posts_refuse_what_would_act_on_the_wrong_markets(stack: Stack) -> None:
    """An empty, misspelled or mistyped `market`, an unknown field or a repeated `?market=` is
    a 400 naming it, and nothing reaches strategy; null (or no market) is every market."""
    cmds = stack.strategy.commands
    n = len(cmds)
    cases: list[tuple[str, str, Any, tuple[str, ...]]] = [
        ("/api/emergency-stop/clear", "", {"market": ""}, ("'market'", "empty", "null")),
        ("/api/emergency-stop/clear", "", {"mkt": "eth-15m"}, ("'mkt'", "unknown field")),
        ("/api/emergency-stop", "", {"reason": "x", "extra": 1}, ("'extra'",)),
        ("/api/force-exit", "", {"market": 123}, ("'market'", "string", "a number")),
        ("/api/emergency-stop", "", {"market": ["eth-15m"]}, ("'market'", "string", "an array")),
        ("/api/emergency-stop", "", {"reason": 5}, ("'reason'", "string")),
        ("/api/emergency-stop", "?market=eth-15m&market=sol-5m", None, ("'market'", "once")),
        ("/api/emergency-stop", "?market=", None, ("'market'", "empty")),
        ("/api/emergency-stop", "?mkt=eth-15m", None, ("'mkt'",)),
        ("/api/force-exit", "?market=sol-5m", {"market": "eth-15m"}, ("sol-5m", "eth-15m")),
    ]
    for path, query, body, words in cases:
        r = stack.obs.post(path + query, body)
        assert r.status_code == 400, (path, query, body, r.text)
        err = r.json()["error"]
        assert all(w in err for w in words) and "nothing was sent" in err, (body, err)
    assert len(cmds) == n  # none of them reached strategy
    r = stack.obs.post("/api/emergency-stop", {"reason": "all", "market": None})
    assert r.status_code == 200, r.text
    assert isinstance(cmds[-1], TriggerEmergencyStop) and cmds[-1].market == ""
    assert stack.obs.post("/api/emergency-stop/clear", {"market": None}).status_code == 200
    assert len(cmds) == n + 2 and cmds[-1].market == ""


def test_a_repeated_query_parameter_is_refused(stack: Stack) -> None:
    for path in ("/api/status", "/api/history", "/api/trades"):
        r = stack.obs.get(path + "?market=eth-15m&market=sol-5m")
        assert r.status_code == 400, (path, r.text)
        assert "'market'" in r.json()["error"] and "more than once" in r.json()["error"]
    r = stack.obs.post("/api/config?replace=false&replace=true", {"stake_per_trade_usd": 9.0})
    assert r.status_code == 400 and "'replace'" in r.json()["error"], r.text


def test_trades_of_an_unknown_market_is_a_404_and_a_slug_names_its_market(stack: Stack) -> None:
    r = stack.obs.get("/api/trades", params={"market": "nope"})
    assert r.status_code == 404, r.text
    err = r.json()["error"]
    assert "unknown market 'nope'" in err and "eth-15m" in err and "sol-5m" in err, err
    slug = stack.obs.get("/api/status", params={"market": "eth-15m"}).json()["market"]["slug"]
    r = stack.obs.get("/api/trades", params={"market": slug})
    assert r.status_code == 200 and r.json()["total"] == 0, r.text


def test_the_slug_of_a_held_window_no_longer_heard_names_its_market(stack: Stack) -> None:
    """A position awaiting resolution in a window observe never heard (or forgot) still
    resolves `?market=<its slug>`; so does a slug strategy lists as awaiting resolution."""
    held = "eth-updown-15m-1700000100"  # an ended window no MarketInfo named
    waiting = "sol-updown-5m-1700000400"
    for path in ("/api/status", "/api/trades"):
        assert stack.obs.get(path, params={"market": held}).status_code == 404
    now = time.time_ns()
    pos = PositionState(
        ts_ns=now, open=True, slug=held, asset_id="tok", outcome="Up", size=10.0,
        avg_price=0.5, cost=5.0, awaiting_resolution=True, market="eth-15m",
    )  # fmt: skip
    stack.strategy.outbox.put((topics.POSITION, pos))
    risk = RiskState(ts_ns=now, halted=False, awaiting_resolution=[held, waiting])
    stack.strategy.outbox.put((topics.RISK_STATE, risk))

    def selected(name: str) -> str | None:
        r = stack.obs.get("/api/status", params={"market": name})
        return r.json()["selected"] if r.status_code == 200 else None

    assert wait_for(lambda: selected(held), 10, what="the held slug resolved") == "eth-15m"
    assert wait_for(lambda: selected(waiting), 10, what="the awaiting slug") == "sol-5m"
    assert stack.obs.get("/api/trades", params={"market": held}).status_code == 200
    n = len(stack.strategy.commands)
    assert stack.obs.post("/api/force-exit", {"market": held}).status_code == 200
    assert stack.strategy.commands[n].market == "eth-15m"
