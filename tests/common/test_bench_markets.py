"""`polyedge bench --markets FILE` (issue 17, capacity): the tree trading several markets at the
venue's real per-market rates; tick -> signal in total and per market, loss, CPU seconds per
service, CPU per market. The whole run is short here (the README has the measured figures)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.bus import Publisher
from common.schema import SignalScore
from services.commands.bench import MIN_SAMPLES
from services.commands.bench_markets import P99_BOUND_MS, load_markets, verdict
from services.commands.bench_pipeline import Collector
from services.commands.supervise import REPO, short_tmpdir, wait_for


def test_markets_file_is_checked_and_named(tmp_path: Path) -> None:
    assert [m["asset"] for m in load_markets(REPO / "config" / "markets-8.json")] == [
        "btc",
        "btc",
        "eth",
        "eth",
        "sol",
        "sol",
        "xrp",
        "xrp",
    ]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"markets": [{"asset": "eth", "window": "7m"}]}))
    with pytest.raises(ValueError, match=r"bad\.json.*markets\[0\]"):
        load_markets(bad)
    none = tmp_path / "none.json"
    none.write_text(json.dumps({"stake_per_trade_usd": 5}))
    with pytest.raises(ValueError, match="no non-empty 'markets' list"):
        load_markets(none)
    with pytest.raises(ValueError, match="cannot read"):
        load_markets(tmp_path / "missing.json")


def test_as_configured_goes_with_markets(capsys: pytest.CaptureFixture[str]) -> None:
    from services.commands.bench import main

    with pytest.raises(SystemExit) as e:
        main(["--as-configured"])
    assert e.value.code == 2
    assert "--as-configured goes with --markets" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--markets", "config/markets-8.json", "--capacity"])
    assert "pick one" in capsys.readouterr().err


def test_verdict_needs_samples_no_loss_and_p99_under_the_bound() -> None:
    def run(count: int, p99: float, lost: int) -> dict:
        return {
            "tick_to_signal": {"count": count, "p99": p99},
            "loss": {"lost": {"signal": lost, "collector": 0}},
        }

    assert verdict(run(MIN_SAMPLES, P99_BOUND_MS - 0.1, 0)) == ""
    assert "too few" in verdict(run(MIN_SAMPLES - 1, 0.1, 0))
    assert "loss" in verdict(run(MIN_SAMPLES, 0.1, 3))
    assert "p99" in verdict(run(MIN_SAMPLES, P99_BOUND_MS, 0))  # "stays under": 5.0 misses


def test_collector_files_market_data_signals_per_market_too() -> None:
    ep = f"ipc://{short_tmpdir()}/pub.sock"
    pub = Publisher(ep)
    col = Collector([ep], per_market=True)
    try:
        t, ms = 1_000_000_000_000, 1_000_000
        sig = SignalScore(
            slug="s",
            p_up=0.6,
            side="Up",
            score=0.2,
            edge_up=0.0,
            edge_down=0.0,
            ts_ns=t,
            origin_ts_exchange_ns=t - ms,
            origin_ts_recv_ns=t,
            ts_signal_ns=t + 2 * ms,
            market="eth-15m",
        )
        wait_for(lambda: pub.send("sig.score", sig) or col.signals_seen > 0, 10)
        col.recording = True
        pub.send("sig.score", sig)
        wait_for(lambda: "market_to_signal_ms@eth-15m" in col.stages, 10)
    finally:
        col.close()  # its thread joined: nothing more is filed
        pub.close()
    # warm-up sends still in flight may be filed as well: every one under both names
    per_market = col.stages["market_to_signal_ms@eth-15m"]
    assert per_market and set(per_market) == {2.0}
    assert col.stages["market_to_signal_ms"] == per_market


@pytest.mark.whole_system  # starts a supervisord tree (pyproject markers)
def test_bench_markets_runs_the_tree_and_prints_the_fields(tmp_path: Path) -> None:
    """Two markets of two assets, a few seconds: the JSON carries tick -> signal in total and
    per market with counts, the loss on every subscription, CPU seconds of every service, CPU per
    market and per 1,000 msg/s, the idle baseline and the machine; the human lines say them."""
    cfg = tmp_path / "two.json"
    cfg.write_text(
        json.dumps(
            {"markets": [{"asset": "btc", "window": "5m"}, {"asset": "eth", "window": "15m"}]}
        )
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("PYTEST_CURRENT_TEST", None)
    cmd = [sys.executable, "-m", "services.commands.bench", "--markets", str(cfg)]
    r = subprocess.run(
        cmd + ["--seconds", "2", "--floor-seconds", "1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(r.stdout)
    assert doc["markets"] == ["btc-5m", "eth-15m"]
    assert doc["offered"]["symbols"] == 2
    assert doc["strategy"] == "BENCH_STRATEGY + markets"
    assert doc["venue_frames_per_s"] > 0
    assert doc["tick_to_signal"]["count"] > 0 and "p99" in doc["tick_to_signal"]
    assert set(doc["tick_to_signal_per_market"]) <= {"btc-5m", "eth-15m"}
    assert doc["tick_to_signal_per_market"]  # at least one market's signals were filed
    assert doc["floor_2hop"]["count"] > 0
    services = {"ingest", "signal", "strategy", "execution", "observe", "simvenue"}
    assert set(doc["cpu_seconds"]) == services
    assert all(v > 0 for v in doc["cpu_seconds"].values()), doc["cpu_seconds"]
    assert {"signal", "strategy", "execution", "collector"} <= set(doc["loss"]["lost"])
    assert doc["loss"]["bus"]["signal"]["received"] > 0
    assert doc["cpu_pct_per_market"]["system"] > 0
    assert doc["cpu_pct_per_1000_msg_s"]["hot_path"] > 0
    assert set(doc["idle_baseline"]["cpu_pct"]) == services
    assert doc["machine_before"]["cpus"] and doc["machine_after"]["load_average"]
    assert doc["verdict"]  # "ok" or why not (a short run has too few samples)
    for words in ("tick -> signal:", "btc-5m", "lost:", "CPU seconds", "per market", "verdict"):
        assert words in r.stderr, words
