"""Observe after an execution restart (a CI run of tests/chaos/test_chaos_exec_resolution.py
lost a settlement row this way): a new execution process books fills and settlements at its start
(its recovery, a window that resolved while it was down) and publishes them before observe's SUB
socket has rejoined it (ZeroMQ reconnects every 100 ms; PUB drops until the subscription
arrives). They are in its ledger (booked before published): on the new process's heartbeats
observe reads the ledger and folds what the bus did not bring, each event once.

The real observe process; the test plays execution: its heartbeats (an old process, then a new
one) and its ledger (services/execution/ledger.py, the same file as observe's tables)."""

from __future__ import annotations

import re
import shutil
import time
from typing import Any

from common import topics
from common.config import load_settings, trading_book
from common.schema import Heartbeat, OrderFilled, PositionSettled
from services.execution.ledger import Ledger
from tests.conftest import short_tmpdir, wait_for
from tests.observe.observe_harness import (
    DOWN_TOKEN,
    UP_TOKEN,
    FakeHotPath,
    Observe,
    make_env,
    read_jsonl,
)

NS = 1_000_000_000


def _metric(obs: Observe, name: str) -> float:
    m = re.search(rf"^polyedge_observe_{name} (\S+)$", obs.get("/metrics").text, re.M)
    assert m is not None, f"no metric polyedge_observe_{name}"
    return float(m.group(1))


def test_fills_and_settlements_a_new_execution_published_unheard_come_from_its_ledger() -> None:
    root = short_tmpdir()
    env = make_env(root)
    settings = load_settings(env, dotenv=None)
    venue = trading_book(settings)[0]
    ledger = Ledger(settings.database_path, venue=venue)
    hot = FakeHotPath(env)
    hot.beating.discard("execution")  # the test plays execution's heartbeats
    hot.start()
    obs = Observe(env)
    try:
        obs.wait_up()
        n = 0

        def beat(pid: int, started_ns: int) -> int:
            nonlocal n
            n += 1
            hot.send(
                "execution",
                topics.HEARTBEAT_PREFIX + "execution",
                Heartbeat(
                    service="execution",
                    state="running",
                    pid=pid,
                    started_ns=started_ns,
                    ts_ns=time.time_ns(),
                    detail={"n": n},
                ),
            )
            return n

        def heard(k: int) -> bool:
            ex = obs.get("/health").json()["services"]["execution"]
            return (ex.get("detail") or {}).get("n", 0) >= k

        # process A, up for ten minutes: observe reads the ledger once on hearing it first
        a_pid, a_started = 1001, time.time_ns() - 600 * NS
        wait_for(
            lambda: heard(beat(a_pid, a_started)) and _metric(obs, "ledger_replays") >= 1,
            15,
            0.2,
            what="observe to hear execution process A and read the ledger once",
        )
        t = time.time_ns()
        slug_x, slug_y = "btc-updown-5m-1700000000", "btc-updown-5m-1700000300"
        f1 = OrderFilled(
            client_order_id="pe-1700000000-1-1e",
            asset_id=UP_TOKEN,
            side="BUY",
            price=0.45,
            size=10.0,
            fee=0.1733,
            ts_fill_ns=t,
            slug=slug_x,
            outcome="Up",
            trade_id="t-f1",
            dry_run=True,
            venue=venue,
        )
        # booked and published by A: heard on the bus, and in the ledger
        ledger.record_fills(f1.client_order_id, [f1], t, status="filled")
        hot.send("execution", topics.FILL, f1)
        wait_for(lambda: obs.get("/api/trades").json()["total"] == 1, 10, what="the published fill")
        # then A crashes; B's recovery books a maker fill and a settlement and publishes them to
        # nobody (observe's SUB socket has not rejoined B yet)
        f2 = OrderFilled(
            client_order_id="pe-1700000300-2-2q",
            asset_id=DOWN_TOKEN,
            side="BUY",
            price=0.40,
            size=5.0,
            fee=0.0,
            ts_fill_ns=t + NS,
            slug=slug_y,
            outcome="Down",
            trade_id="t-f2",
            dry_run=True,
            venue=venue,
            liquidity="maker",
            rebate_usd=0.0125,
        )
        ledger.record_fills(f2.client_order_id, [f2], t + NS, status="filled")
        settled = PositionSettled(
            slug=slug_x,
            asset_id=UP_TOKEN,
            outcome="Up",
            won=True,
            size=10.0,
            payout=1.0,
            pnl=round(10.0 - 4.5 - 0.1733, 6),
            ts_ns=t + 2 * NS,
            venue=venue,
            dry_run=True,
        )
        assert ledger.record_settlement(settled)
        # A's later heartbeats (an old process) do not read the ledger again
        k = beat(a_pid, a_started)
        wait_for(lambda: heard(k), 10, what="a later heartbeat of A")
        assert obs.get("/api/trades").json()["total"] == 1
        assert _metric(obs, "ledger_replays") == 1

        b_pid, b_started = 1002, time.time_ns()

        def folded() -> dict[str, Any] | None:
            beat(b_pid, b_started)  # B's heartbeats, once observe has rejoined it
            page = obs.get("/api/trades").json()
            return page if page["total"] >= 3 else None

        page = wait_for(folded, 15, 0.3, what="the ledger's fill and settlement in observe")
        # B's next heartbeats (its first seconds) read the ledger again: nothing counts twice
        replays = _metric(obs, "ledger_replays")
        wait_for(
            lambda: heard(beat(b_pid, b_started)) and _metric(obs, "ledger_replays") >= replays + 3,
            15,
            0.3,
            what="three more reads of the ledger on B's heartbeats",
        )
        page = obs.get("/api/trades?limit=50").json()
        keys = sorted(r["event_key"] for r in page["items"])
        assert keys == sorted(
            [
                f"fill:{f1.client_order_id}:t-f1",
                f"fill:{f2.client_order_id}:t-f2",
                f"settlement:{slug_x}:{UP_TOKEN}",
            ]
        ), keys
        by_key = {r["event_key"]: r for r in page["items"]}
        row = by_key[f"settlement:{slug_x}:{UP_TOKEN}"]
        assert row["pnl"] == settled.pnl and row["won"] is True and row["kind"] == "settlement"
        row = by_key[f"fill:{f2.client_order_id}:t-f2"]
        assert (row["liquidity"], row["rebate"], row["size"]) == ("maker", 0.0125, 5.0)
        m = obs.status()["metrics"]
        assert m["source"] == "observe"  # no strategy here: observe's own count of the day
        assert (m["trades_today"], m["settled_today"], m["closed_today"]) == (2, 1, 1), m
        assert m["fees_today"] == round(f1.fee, 4), m
        assert m["rebates_today"] == round(f2.rebate_usd, 4), m
        assert m["daily_pnl"] == round(settled.pnl, 4), m
        assert _metric(obs, "ledger_replayed_events") == 2
        # the execution stream has each fill and the settlement once, and says what was read
        lines = read_jsonl(root / "logs" / "execution.jsonl")
        fills = [x["trade_id"] for x in lines if x["event"] == "fill"]
        assert sorted(fills) == ["t-f1", "t-f2"], fills
        assert [x["slug"] for x in lines if x["event"] == "settlement"] == [slug_x]
        replayed = [x for x in lines if x["event"] == "ledger_replayed"]
        assert [x["added"] for x in replayed] == [
            [f"fill:{f2.client_order_id}:t-f2", f"settlement:{slug_x}:{UP_TOKEN}"]
        ], replayed
    finally:
        obs.stop()
        hot.close()
        ledger.close()
        shutil.rmtree(root, ignore_errors=True)
