"""`polyedge bench --markets FILE`: the tree trading every market of a config at real rates.

One supervised tree on the simulated venue with the bench's eager strategy config
(`bench_pipeline.BENCH_STRATEGY`) and the `markets` list of FILE (e.g. `config/markets-8.json`:
btc, eth, sol, xrp x 5m, 15m; real window lengths). The venue runs at the real per-market rates:
Binance bookTicker ~100 frames/s per symbol and CLOB ~60 updates/s per active market
(PROTOCOLS.md section 1; the venue's defaults), and ingest subscribes each series' next window
before it starts, as it does live. Measured over `seconds` (on until MIN_SAMPLES market-data
tick -> signal samples, at most 4x):

- tick -> signal (market-data ticks: ingest's receive stamp -> signal's publish stamp)
  p50/p90/p99/p99.9/max with the count, in total and per market (series key);
- loss: every service's and the collector's bus counters over the run (messages received,
  sequence gaps, messages missing in them; every topic's publisher numbers its messages, so a
  message published and not received is counted as lost);
- CPU seconds of every service over the run, the CPU per market (services' CPU / markets, % of
  one core) and per 1,000 msg/s the venue sent;
- a same-run floor: bare 2-hop relays at the offered rate (`bench.floor`);
- a same-run idle baseline: the same tree with the venue's feeds silenced, CPU per service (the
  fixed cost of timers, heartbeats and 100 ms clock ticks), so the per-market figure can be read
  as fixed + marginal;
- the machine (CPUs, model, load average before and after).

The bound of issue 17 is tick -> signal p99 < `P99_BOUND_MS` with nothing lost (`verdict`).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from common.config import ConfigError, market_specs
from services.commands.bench import (
    MIN_SAMPLES,
    REALISTIC_RATE,
    floor,
    floor_seconds,
    machine,
    progress,
)
from services.commands.bench_pipeline import (
    BENCH_STRATEGY,
    Tree,
    cpu_seconds,
    measure,
    service_bus_totals,
)

P99_BOUND_MS = 5.0
STAGE = "market_to_signal_ms"
HOT = ("ingest", "signal", "strategy", "execution")
SYSTEM = HOT + ("observe",)  # the trading system's services (simvenue is the venue, not ours)
SETTLE_S = 3.0
# the collector takes signals, heartbeats, decisions and execution's answers: not market data
TOPICS = ("sig.", "sys.heartbeat.", "strat.decision", "exec.")


def load_markets(path: Path) -> list[dict[str, Any]]:
    """The `markets` list of a strategy config file (JSON object with a non-empty `markets`
    list, each entry valid as `common.config.market_specs` reads it).

    Raises ValueError naming the file and the problem."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"--markets {path}: cannot read a JSON config: {e}") from None
    markets = doc.get("markets") if isinstance(doc, dict) else None
    if not isinstance(markets, list) or not markets:
        raise ValueError(f"--markets {path}: no non-empty 'markets' list")
    try:
        market_specs({"markets": markets})
    except ConfigError as e:
        raise ValueError(f"--markets {path}: {e}") from None
    return markets


def verdict(result: dict[str, Any]) -> str:
    """ "" when tick -> signal p99 < P99_BOUND_MS over >= MIN_SAMPLES samples and nothing was
    lost, else why not (in words)."""
    st = result["tick_to_signal"]
    if st.get("count", 0) < MIN_SAMPLES:
        return f"too few tick -> signal samples ({st.get('count', 0)} < {MIN_SAMPLES})"
    lost = {k: v for k, v in result["loss"]["lost"].items() if v}
    if lost:
        return f"loss {lost}"
    if st["p99"] >= P99_BOUND_MS:
        return f"p99 {st['p99']} ms >= {P99_BOUND_MS} ms"
    return ""


def _bus_delta(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]
) -> dict[str, dict[str, int]]:
    keys = ("received", "gaps", "lost", "restarts")
    return {
        n: {k: after[n].get(k, 0) - before.get(n, {}).get(k, 0) for k in keys}
        for n in sorted(after)
    }


def run(
    markets_path: Path,
    seconds: float,
    tmp: Path,
    idle_seconds: float = 10.0,
    floor_s: float = 10.0,
    as_configured: bool = False,
) -> dict[str, Any]:
    """Run the tree with the markets of `markets_path` at real rates for `seconds` (the idle
    baseline for `idle_seconds`, the floor for at least `floor_s`); the figures above as a
    dict (JSON-ready). The strategy config is BENCH_STRATEGY's eager gates with the file's
    `markets`, or with `as_configured` the whole file as it is (its own gates: few trades).
    Raises ValueError on a bad markets file or non-positive seconds."""
    if seconds <= 0 or idle_seconds < 0:
        raise ValueError(
            f"seconds must be > 0 and idle_seconds >= 0, got {seconds}, {idle_seconds}"
        )
    markets = load_markets(markets_path)
    strategy = (
        json.loads(Path(markets_path).read_text())
        if as_configured
        else {**BENCH_STRATEGY, "markets": markets}
    )
    keys = [f"{m['asset']}-{m['window']}" for m in markets if m.get("enabled", True)]
    assets = sorted({m["asset"] for m in markets if m.get("enabled", True)})
    out: dict[str, Any] = {
        "machine_before": machine(),
        "markets_file": str(markets_path),
        "strategy": "as configured in the file" if as_configured else "BENCH_STRATEGY + markets",
        "markets": keys,
        "offered": {
            "book_ticker_hz_per_symbol": REALISTIC_RATE * 100 / 160,
            "clob_updates_hz_per_market": REALISTIC_RATE * 60 / 160,
            "symbols": len(assets),
        },
        "p99_bound_ms": P99_BOUND_MS,
        "min_samples": MIN_SAMPLES,
    }
    # the same-run floor: bare 2-hop relays (PUB -> SUB/PUB -> SUB, tick -> signal's hops) at the
    # rate the venue offers, so the tail can be read against what the machine gives any relay
    offered = len(assets) * REALISTIC_RATE * 100 / 160 + len(keys) * REALISTIC_RATE * 60 / 160
    out["floor_2hop"] = floor(offered, floor_seconds(offered, floor_s), tmp, 2)
    progress("floor 2 hops", out["floor_2hop"], f" at {offered:.0f} msg/s")
    # rate 160 = the venue's per-symbol 100 bookTicker/s and per-market 60 CLOB updates/s
    tree = Tree(
        "markets",
        REALISTIC_RATE,
        tmp,
        topics=TOPICS,
        strategy=strategy,
        per_market=True,
    )
    try:
        tree.start()
        assert tree.col is not None
        time.sleep(SETTLE_S)
        pids = tree.pids()
        bus0 = service_bus_totals(tree.col)
        col0 = tree.col.sub.totals()
        intents0 = tree.col.intents_seen
        m = measure(tree, seconds, seconds * 4, (STAGE,))
        bus = _bus_delta(bus0, service_bus_totals(tree.col))
        col1 = tree.col.sub.totals()
        bus["collector"] = {k: col1[k] - col0[k] for k in ("received", "gaps", "lost", "restarts")}
        elapsed, fps = m["seconds"], m["venue_frames_per_s"]
        cpu_s = {n: round(m["cpu_pct"][n] * elapsed / 100, 2) for n in pids}
        per_market = {
            k[len(STAGE) + 1 :]: v for k, v in m["stages"].items() if k.startswith(STAGE + "@")
        }
        system_pct = sum(m["cpu_pct"][n] for n in SYSTEM)
        hot_pct = sum(m["cpu_pct"][n] for n in HOT)
        n = max(1, len(keys))
        out.update(
            {
                "seconds": elapsed,
                "venue_frames_per_s": fps,
                "tick_to_signal": m["stages"][STAGE],
                "tick_to_signal_per_market": dict(sorted(per_market.items())),
                "clock_tick_to_signal": m["stages"].get("clock_tick_to_signal_ms", {"count": 0}),
                "intents": tree.col.intents_seen - intents0,
                "decisions": m["decisions"],
                "loss": {"lost": m["lost"], "bus": bus},
                "cpu_seconds": cpu_s,
                "cpu_pct": m["cpu_pct"],
                "cpu_pct_per_market": {
                    "system": round(system_pct / n, 2),
                    "hot_path": round(hot_pct / n, 2),
                },
                "cpu_pct_per_1000_msg_s": {
                    "system": round(system_pct * 1000 / fps, 2) if fps else None,
                    "hot_path": round(hot_pct * 1000 / fps, 2) if fps else None,
                    "simvenue": round(m["cpu_pct"]["simvenue"] * 1000 / fps, 2) if fps else None,
                },
            }
        )
        out["verdict"] = verdict(out) or "ok"
        progress(f"{n} markets tick -> signal", out["tick_to_signal"], f" over {elapsed} s")
        if idle_seconds:
            out["idle_baseline"] = idle(tree, idle_seconds)
    finally:
        tree.stop()
    out["machine_after"] = machine()
    return out


def idle(tree: Tree, seconds: float) -> dict[str, Any]:
    """The same tree with the venue's bookTicker and CLOB updates off for `seconds`: CPU per
    service (% of one core) and the frames the venue still sent (trades, RTDS, books)."""
    tree.market(book_ticker_hz=0, clob_update_hz=0)
    time.sleep(SETTLE_S)
    pids = tree.pids()
    c0, f0, t0 = cpu_seconds(pids), tree.frames_sent(), time.monotonic()
    time.sleep(seconds)
    c1, f1, dt = cpu_seconds(pids), tree.frames_sent(), time.monotonic() - t0
    pct = {n: round(100 * (c1[n] - c0[n]) / dt, 1) for n in pids}
    return {
        "seconds": round(dt, 2),
        "venue_frames_per_s": round((f1 - f0) / dt, 1),
        "cpu_pct": pct,
        "cpu_pct_system": round(sum(pct[n] for n in SYSTEM), 1),
    }


def lines(r: dict[str, Any]) -> list[str]:
    """The figures as human lines (stderr), one per topic."""

    def st(s: dict[str, Any]) -> str:
        return (
            f"p50 {s.get('p50', '-')} p99 {s.get('p99', '-')} p99.9 {s.get('p99_9', '-')} "
            f"max {s.get('max', '-')} ms (n={s.get('count', 0)})"
        )

    out = [
        f"# markets {len(r['markets'])}: {', '.join(r['markets'])}; venue sent "
        f"{r['venue_frames_per_s']} frames/s over {r['seconds']} s",
        f"# tick -> signal: {st(r['tick_to_signal'])}",
    ]
    if "floor_2hop" in r:
        out.append(f"#   floor, 2 bare hops, same run: {st(r['floor_2hop'])}")
    out += [f"#   {k}: {st(v)}" for k, v in r["tick_to_signal_per_market"].items()]
    lost = {k: v for k, v in r["loss"]["lost"].items() if v}
    out.append(f"# lost: {lost or 0}; intents {r['intents']}")
    out.append(f"# CPU seconds: {r['cpu_seconds']}")
    out.append(
        f"# CPU % of one core per market: {r['cpu_pct_per_market']}; per 1,000 msg/s: "
        f"{r['cpu_pct_per_1000_msg_s']}"
    )
    if "idle_baseline" in r:
        out.append(f"# idle baseline CPU %: {r['idle_baseline']['cpu_pct']}")
    out.append(f"# verdict: {r['verdict']}")
    return out


def main(
    markets_path: Path,
    seconds: float,
    tmp: Path,
    floor_s: float = 10.0,
    as_configured: bool = False,
) -> int:
    """Run, print the human lines on stderr and the JSON on stdout; 0."""
    r = run(markets_path, seconds, tmp, min(10.0, seconds), floor_s, as_configured)
    for line in lines(r):
        print(line, file=sys.stderr, flush=True)
    print(json.dumps(r, indent=2))
    return 0
