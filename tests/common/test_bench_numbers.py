"""`polyedge bench`'s numbers: percentiles with counts, no ratio from fewer than MIN_SAMPLES
samples, the 2- and 3-hop floors, and process trees started on the bench's own interpreter."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import msgspec

from common.bus import Publisher
from common.schema import (
    Heartbeat,
    OrderAccepted,
    OrderFilled,
    OrderRejected,
    SignalScore,
)
from services.commands.bench import MIN_SAMPLES, TOO_FEW, floor, percentiles, ratio
from services.commands.bench_capacity import P99_BOUND_MS, too_few, verdict
from services.commands.bench_pipeline import Collector, judge
from services.commands.supervise import Supervised, short_tmpdir, wait_for


def test_percentiles_carry_counts_and_the_tail() -> None:
    s = [float(i) for i in range(1, 1001)]
    p = percentiles(s)
    assert p == {
        "count": 1000,
        "p50": 500.0,
        "p90": 900.0,
        "p99": 990.0,
        "p99_9": 999.0,
        "max": 1000.0,
    }
    assert percentiles([]) == {"count": 0}


def test_no_ratio_from_too_few_samples() -> None:
    many = percentiles([1.0] * MIN_SAMPLES)
    few = percentiles([1.0] * (MIN_SAMPLES - 1))
    assert ratio(many, many) == 1.0
    assert ratio(few, many) == TOO_FEW and ratio(many, few) == TOO_FEW
    assert ratio(None, many) == TOO_FEW


def test_floors_of_two_and_three_hops(tmp_path: Path) -> None:
    tmp = short_tmpdir()
    two, three = floor(500, 2.2, tmp, hops=2), floor(500, 2.2, tmp, hops=3)
    for f, hops in ((two, 2), (three, 3)):
        assert f["hops"] == hops and f["sent"] == 1100 and f["lost"] == 0
        assert f["count"] == 1100 and 0 < f["p50"] <= f["p99"] <= f["max"]


def test_trees_run_on_the_interpreter_that_starts_them() -> None:
    root = short_tmpdir()
    sup = Supervised({"POLYEDGE_ROOT": str(root)})
    text = sup.conf.read_text()
    assert "=python3 " not in text and " python3 " not in text
    assert text.count(f"{sys.executable} -m services.") == 6
    assert sup.env["PATH"].split(":")[0] == str(Path(sys.executable).parent)


def _phase(**stages: int) -> dict[str, Any]:
    """A phase's result with `stages` of that many 1 ms samples each, and no loss."""
    return {"stages": {k: percentiles([1.0] * n) for k, n in stages.items()}, "lost": {}}


def test_targets_are_too_few_below_min_samples_and_judged_at_it() -> None:
    floor_ = {k: percentiles([0.6] * MIN_SAMPLES) for k in ("realistic_2hop", "realistic_3hop")}
    floor_ |= {k: percentiles([0.6] * MIN_SAMPLES) for k in ("burst_2hop", "burst_3hop")}
    enough = _phase(market_to_signal_ms=MIN_SAMPLES, tick_to_intent_at_execution_ms=MIN_SAMPLES)
    few = _phase(market_to_signal_ms=MIN_SAMPLES, tick_to_intent_at_execution_ms=MIN_SAMPLES - 1)
    ratios, targets = judge(enough, enough, enough, floor_)
    assert ratios["tick_to_intent_over_floor_3hop_p99"] == round(1.0 / 0.6, 2)
    assert targets["tick_to_intent_p99<=2x_floor_3hop"] is True
    assert targets["loaded_over_idle_p99<=1.2 (tick_to_intent)"] is True
    ratios, targets = judge(few, enough, few, floor_)
    assert ratios["tick_to_signal_over_floor_2hop_p99"] == round(1.0 / 0.6, 2)
    for key in ("tick_to_intent_over_floor_3hop_p99", "loaded_over_idle_p99_tick_to_intent"):
        assert ratios[key] == TOO_FEW
    assert targets["tick_to_intent_p99<=2x_floor_3hop"] == TOO_FEW
    assert targets["loaded_over_idle_p99<=1.2 (tick_to_intent)"] == TOO_FEW
    assert targets["tick_to_signal_p99<=2x_floor_2hop"] is True


def test_collector_files_each_message_under_its_stage_and_counts_it() -> None:
    """Entries (intents from a signal) are tick -> intent, split by the signal's trigger; exits
    are a stage of their own; a fill is counted once an order; every expected stage is printed,
    with count 0 when empty; nothing is filed while not recording."""
    ep = f"ipc://{short_tmpdir()}/pub.sock"
    pub = Publisher(ep)
    col = Collector([ep])
    try:
        t = 1_000_000_000_000
        ms = 1_000_000
        beat = Heartbeat(service="x", state="running", pid=1, started_ns=t, ts_ns=t)
        wait_for(lambda: pub.send("sys.heartbeat.x", beat) or col.bus.get("x") is not None, 10)
        col.recording = True
        market = SignalScore(
            slug="s",
            p_up=0.6,
            side="Up",
            score=0.2,
            edge_up=0.0,
            edge_down=0.0,
            ts_ns=t,
            origin_ts_exchange_ns=t - ms,
            origin_ts_recv_ns=t,
            ts_signal_ns=t + ms,
        )
        clock = msgspec.structs.replace(market, origin_ts_exchange_ns=0, ts_signal_ns=t + 2 * ms)
        pub.send("sig.score", market)
        pub.send("sig.score", clock)
        for coid, sig in (("e1", market), ("e2", clock)):
            pub.send(
                "exec.ack",
                OrderAccepted(
                    client_order_id=coid,
                    status="dry_run",
                    ts_ack_ns=sig.ts_signal_ns + 4 * ms,
                    origin_ts_recv_ns=t,
                    ts_signal_ns=sig.ts_signal_ns,
                    ts_intent_ns=sig.ts_signal_ns + ms,
                    ts_exec_recv_ns=sig.ts_signal_ns + 2 * ms,
                ),
            )
        exit_ = OrderRejected(
            client_order_id="x1",
            reason="killed",
            ts_ns=t,
            origin_ts_recv_ns=t,
            ts_exec_recv_ns=t + ms,
        )
        pub.send("exec.reject", exit_)
        fill = dict(asset_id="a", side="BUY", price=0.5, size=1.0, fee=0.0)
        fill |= dict(origin_ts_recv_ns=t, ts_signal_ns=t + ms)
        for trade in ("1", "2"):  # one order, two trades
            pub.send(
                "exec.fill",
                OrderFilled(
                    client_order_id="e1",
                    trade_id=trade,
                    ts_fill_ns=t + 9 * ms,
                    **fill,  # type: ignore[arg-type]
                ),
            )
        done = lambda: col.intents_seen == 3 and "full_decision_to_fill_ms" in col.stages  # noqa: E731
        wait_for(done, 10, what=f"3 intents and a fill ({col.stages})")
        res = col.result()
        count = {k: v["count"] for k, v in res.items()}
        assert count["market_to_signal_ms"] == 1 and count["clock_tick_to_signal_ms"] == 1
        assert count["tick_to_intent_at_execution_ms"] == 2
        assert count["market_tick_to_intent_at_execution_ms"] == 1
        assert count["clock_tick_to_intent_at_execution_ms"] == 1
        assert count["exit_tick_to_intent_at_execution_ms"] == 1
        assert count["signal_to_order_ack_ms"] == 2 and count["exec_recv_to_ack_ms"] == 2
        assert count["probe_ingest_to_execution_ms"] == 0
        assert res["market_tick_to_intent_at_execution_ms"]["max"] == 3.0  # t -> t + 3 ms
        assert res["exec_recv_to_ack_ms"]["max"] == 2.0
        assert res["full_decision_to_fill_ms"] == percentiles([9.0])  # once, not per trade
        col.recording = False
        pub.send("sig.score", market)
        wait_for(lambda: col.signals_seen == 3, 10)
        assert col.result()["market_to_signal_ms"]["count"] == 1
    finally:
        col.close()
        pub.close()


def test_a_capacity_step_is_judged_only_on_enough_samples() -> None:
    def step(n: int, p99: float, lost: int = 0, sent: float = 5000.0) -> dict[str, Any]:
        st = percentiles([p99] * n)
        return {
            "tick_to_signal": st,
            "lost": {"signal": lost},
            "rate": 5000.0,
            **{"venue_frames_per_s": sent},
        }

    assert too_few(step(MIN_SAMPLES - 1, 1.0)) and verdict(step(MIN_SAMPLES - 1, 1.0)).startswith(
        "too few"
    )
    assert not too_few(step(MIN_SAMPLES, 1.0)) and verdict(step(MIN_SAMPLES, 1.0)) == ""
    assert verdict(step(MIN_SAMPLES, 5.1)) == f"p99 5.1 ms > {P99_BOUND_MS} ms"
    assert verdict(step(MIN_SAMPLES, 1.0, lost=1)) == "loss {'signal': 1}"
    assert verdict(step(MIN_SAMPLES, 1.0, sent=4000.0)).startswith("the venue offered only")
