"""The pipeline half of `polyedge bench`: the real five processes on the simulated venue.

Each phase starts the simulated venue at a given event rate and the supervisord tree pointed at
it, then a collector subscribes to every publisher and turns the timestamps each message carries
into per-stage latencies. Phases: realistic rate, the same while observe serves 50 WebSocket
clients and 20 REST requests a second (loaded), and a 10x burst.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from common.bus import Subscriber
from common.config import config_hash, load_settings, validate_strategy_config
from common.schema import (
    BookSnapshot,
    BtcTrade,
    Decision,
    Heartbeat,
    OrderAccepted,
    OrderFilled,
    OrderRejected,
    Probe,
    SignalScore,
)
from common.topics import PUBLISHERS
from services.commands.bench import BURST_FACTOR, MIN_SAMPLES, percentiles, progress, ratio
from services.commands.supervise import Supervised, free_port, wait_for

BTC_SHARE = 100 / 160  # of the realistic 160 msg/s, ~100 are Binance and ~60 CLOB
WINDOW_SECONDS = 300  # real length: 30 s windows are decided (p near 0 or 1) most of the time
WS_CLIENTS = 50
REST_PER_S = 20
SERVICES = ("simvenue", "execution", "strategy", "signal", "ingest", "observe")
# Eager gates: every gate still runs (the code path is the one a session takes), but they let
# nearly every signal through, a position is exited on the next book (0.1 % take profit or
# stop loss) and the next entry follows. A position blocks entries until it is out, so the
# stake is large for the simulated book (~200-400 shares against a best level of median 220,
# bought at the ask: no slippage): about two entries in three find too little at the ask and
# the FOK is killed (no position, the next signal enters again), the rest fill and cycle.
# A phase so carries ~10 intents a second at the realistic rate (paper trading on the
# simulated venue, never the operator's config).
BENCH_STRATEGY = {
    "stake_per_trade_usd": 100.0,
    "limit_slippage": 0.0,
    "min_signal_score": 0.0,
    "min_edge_pct": 0.0,
    "entry_window_min_sec": 0,
    "min_seconds_before_close": 1,
    "max_trades_per_day": 10000,
    "max_daily_loss_usd": 1e6,
    "max_consecutive_losses": 1000,
    "max_entries_per_window": 1000,
    "max_capital_at_risk_usd": 1e6,
    "take_profit_pct": 0.001,
    "stop_loss_pct": 0.001,
    "refuse_entry_inside_stop_loss": False,  # churn on purpose: every entry stops out at once
    "max_entry_price": 0.999,
    "require_settlement_price_to_beat": False,
}
BENCH_QUOTER_NOISE_SD = 0.6  # /sim/market: the default 0.07 leaves an edge on few signals
MS = 1e6
HOT_STAGES = ("market_to_signal_ms", "tick_to_intent_at_execution_ms")  # the targets' stages
STAGES = HOT_STAGES + (  # printed in every phase, with count 0 when none came
    "clock_tick_to_signal_ms",
    "market_tick_to_intent_at_execution_ms",
    "clock_tick_to_intent_at_execution_ms",
    "signal_to_intent_at_execution_ms",
    "exit_tick_to_intent_at_execution_ms",
    "intent_to_ack_ms",
    "exec_recv_to_ack_ms",
    "signal_to_order_ack_ms",
    "full_decision_to_fill_ms",
    "probe_ingest_to_execution_ms",
)


class Collector:
    """Subscribes to every publisher on a thread and files each timestamp pair under its stage.

    tick -> signal is split by what triggered the signal: market data (a BTC trade or a book
    change, `origin_ts_exchange_ns` set) in `market_to_signal_ms`, ingest's 100 ms clock ticks
    in `clock_tick_to_signal_ms`. tick -> intent is for entries (intents from a signal: ingest's
    stamp -> signal -> strategy -> execution, the 3 hops of the floor), split again by the
    signal's trigger; exits (strategy's decision on a book or clock tick, one hop) are
    `exit_tick_to_intent_at_execution_ms`. Acks and fills carry the time execution finished with
    them (paper: after the ledger commit). `decisions` counts strategy's decisions by
    action:reason while recording."""

    def __init__(
        self, endpoints: list[str], topics: tuple[str, ...] = ("",), per_market: bool = False
    ) -> None:
        self.sub = Subscriber(endpoints, list(topics))
        self.per_market = per_market  # also file market-data tick -> signal per series key
        self.stages: dict[str, list[float]] = {}
        self.recording = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self.signals_seen = 0
        self.intents_seen = 0
        self.bus: dict[str, dict[str, int]] = {}  # service -> its heartbeat's bus counters
        self._signal_kind: dict[int, bool] = {}  # ts_signal_ns -> from market data
        self._filled: dict[str, None] = {}  # client order ids with a fill seen (ordered set)
        self.decisions: dict[str, int] = {}  # "action:reason" -> count while recording

    def _add(self, stage: str, end_ns: int, start_ns: int) -> None:
        if start_ns and end_ns and self.recording:
            self.stages.setdefault(stage, []).append((end_ns - start_ns) / MS)

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self.sub.recv(timeout_ms=50)
            if item is None:
                continue
            m = item[1].msg
            if isinstance(m, BtcTrade):
                self._add("venue_to_ingest_btc_ms", m.ts_recv_ns, m.ts_exchange_ns)
            elif isinstance(m, BookSnapshot):
                self._add("venue_to_ingest_book_ms", m.ts_recv_ns, m.ts_exchange_ns)
            elif isinstance(m, SignalScore):
                self.signals_seen += 1
                market = bool(m.origin_ts_exchange_ns)
                stage = "market_to_signal_ms" if market else "clock_tick_to_signal_ms"
                self._add(stage, m.ts_signal_ns, m.origin_ts_recv_ns)
                if market and self.per_market:  # "market_to_signal_ms@eth-15m"
                    self._add(f"{stage}@{m.market}", m.ts_signal_ns, m.origin_ts_recv_ns)
                self._signal_kind[m.ts_signal_ns] = market
                if len(self._signal_kind) > 20_000:
                    del self._signal_kind[next(iter(self._signal_kind))]
            elif isinstance(m, OrderAccepted | OrderRejected):
                self.intents_seen += 1
                recv = m.ts_exec_recv_ns
                if m.ts_signal_ns:  # an entry, from a signal: ingest's tick -> 3 hops
                    self._add("tick_to_intent_at_execution_ms", recv, m.origin_ts_recv_ns)
                    market = self._signal_kind.get(m.ts_signal_ns)
                    if market is not None:
                        sub = "market_tick" if market else "clock_tick"
                        self._add(f"{sub}_to_intent_at_execution_ms", recv, m.origin_ts_recv_ns)
                    self._add("signal_to_intent_at_execution_ms", recv, m.ts_signal_ns)
                else:  # an exit: from strategy's clock at its decision (the stamp of the book
                    # or clock tick that triggered it, when newest): ingest -> strategy -> here
                    self._add("exit_tick_to_intent_at_execution_ms", recv, m.origin_ts_recv_ns)
                if isinstance(m, OrderAccepted):
                    self._add("intent_to_ack_ms", m.ts_ack_ns, m.ts_intent_ns)
                    self._add("exec_recv_to_ack_ms", m.ts_ack_ns, m.ts_exec_recv_ns)
                    if m.ts_signal_ns:
                        self._add("signal_to_order_ack_ms", m.ts_ack_ns, m.ts_signal_ns)
            elif isinstance(m, OrderFilled):
                # entries (an exit's origin is strategy's, not a tick), once an order (a FOK
                # that walks several levels fills in several trades, stamped alike)
                if m.ts_signal_ns and m.client_order_id not in self._filled:
                    self._filled[m.client_order_id] = None
                    if len(self._filled) > 20_000:
                        del self._filled[next(iter(self._filled))]
                    self._add("full_decision_to_fill_ms", m.ts_fill_ns, m.origin_ts_recv_ns)
            elif isinstance(m, Decision):
                if self.recording:
                    key = f"{m.action}:{m.reason.split(':')[0]}"
                    self.decisions[key] = self.decisions.get(key, 0) + 1
            elif isinstance(m, Heartbeat):
                self.bus[m.service] = dict(m.detail.get("bus", {}))
            elif isinstance(m, Probe) and m.hops and m.hops[-1] == "execution":
                self._add("probe_ingest_to_execution_ms", m.hop_ns[-1], m.hop_ns[0])

    def result(self) -> dict[str, Any]:
        """Every stage (the expected ones also when empty) with its count and percentiles."""
        names = sorted(set(self.stages) | set(STAGES))
        return {stage: percentiles(self.stages.get(stage, [])) for stage in names}

    def close(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join()
        totals = self.sub.totals()
        self.sub.close()
        return totals


def service_bus_totals(col: Collector) -> dict[str, dict[str, int]]:
    """Each service's bus counters (received, gaps, lost, restarts) from its latest heartbeat
    (not from observe's API, which a saturated machine may leave unanswered)."""
    return {n: dict(v) for n, v in col.bus.items()}


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds each process (and its children: observe runs under `nice`)
    has used so far, from /proc/<pid>/stat."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for name, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[name] = (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            out[name] = float("nan")
    return out


class Tree:
    """The supervisord tree on the simulated venue in its own directory, with the bench's
    strategy config, the simulated venue at `rate` frames/s (Binance/CLOB split as in reality)
    and a collector on every publisher. `strategy` replaces the bench's strategy config (e.g.
    BENCH_STRATEGY with a `markets` list); `per_market` has the collector file tick -> signal
    per series key too."""

    def __init__(
        self,
        name: str,
        rate: float,
        tmp: Path,
        topics: tuple[str, ...] = ("",),
        strategy: dict[str, Any] | None = None,
        per_market: bool = False,
    ) -> None:
        self.topics = topics
        self.per_market = per_market
        self.root = Path(tmp) / name
        (self.root / "data" / "run").mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(exist_ok=True)
        cfg = self.root / "strategy.json"
        cfg.write_text(json.dumps(BENCH_STRATEGY if strategy is None else strategy))
        self.api_port = free_port()
        self.sim_port = free_port()
        btc = rate * BTC_SHARE
        self.env = {
            "POLYEDGE_DATA_DIR": str(self.root / "data"),
            "LOG_DIR": str(self.root / "logs"),
            "DATABASE_URL": f"sqlite:{self.root / 'data' / 'trader.db'}",
            "API_PORT": str(self.api_port),
            "POLYEDGE_ROOT": str(self.root),
            "POLYEDGE_CONFIG": str(cfg),
            "POLYEDGE_VENUE": "sim",
            "SIM_PORT": str(self.sim_port),
            "SIM_WINDOW_SECONDS": str(WINDOW_SECONDS),
            "SIM_BOOK_TICKER_HZ": f"{btc:.1f}",
            "SIM_CLOB_HZ": f"{rate - btc:.1f}",
            "LOG_LEVEL": "WARNING",
        }
        self.sup = Supervised(self.env)
        self.col: Collector | None = None

    def start(self) -> None:
        self.sup.start()
        self.sup.wait_running(SERVICES, 60)
        # the venue's quoters misprice more than by default, so the model sees an edge often
        # and the eager gates turn signals into intents (the bot's code path is unchanged)
        wait_for(lambda: self.market(quoter_noise_sd=BENCH_QUOTER_NOISE_SD), 60, what="simvenue")
        settings = load_settings({**os.environ, **self.env}, dotenv=None)
        endpoints = [settings.bus_endpoint(p) for p in PUBLISHERS]
        self.col = Collector(endpoints, self.topics, self.per_market)
        wait_for(lambda: self.col and self.col.signals_seen > 10, 90, what="signals")
        wait_for(lambda: len(self.col.bus) >= 4, 30, what="heartbeats with bus counters")

    def pids(self) -> dict[str, int]:
        return {n: self.sup.pid(n) for n in SERVICES}

    def market(self, **knobs: float) -> dict[str, Any]:
        """POST the simulated venue's market knobs (`/sim/market`); its answer."""
        import httpx

        r = httpx.post(f"http://127.0.0.1:{self.sim_port}/sim/market", json=knobs, timeout=5)
        r.raise_for_status()
        return r.json()

    def set_rate(self, rate: float) -> dict[str, Any]:
        """Offer `rate` frames/s (Binance bookTicker and CLOB updates in the realistic split)."""
        btc = rate * BTC_SHARE
        return self.market(book_ticker_hz=btc, clob_update_hz=rate - btc)

    def frames_sent(self) -> int:
        import httpx

        return int(
            httpx.get(f"http://127.0.0.1:{self.sim_port}/sim/market", timeout=5).json()[
                "frames_sent"
            ]
        )

    def stop(self) -> None:
        if self.col is not None:
            self.col.close()
            self.col = None
        self.sup.stop()


def measure(
    tree: Tree, seconds: float, max_seconds: float | None = None, enough: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Record for `seconds`, then on (up to `max_seconds`) until every stage in `enough` has
    MIN_SAMPLES samples: the collector's stages, per-service CPU (percent of one core), bus
    loss in every service and the collector, and the frames the venue really sent."""
    assert tree.col is not None
    pids = tree.pids()
    before = service_bus_totals(tree.col)
    col_before = tree.col.sub.totals()
    cpu0, frames0, t0 = cpu_seconds(pids), tree.frames_sent(), time.monotonic()
    tree.col.stages, tree.col.decisions = {}, {}
    tree.col.recording = True
    t_min, t_max = t0 + seconds, t0 + max(seconds, max_seconds or seconds)
    col = tree.col

    def done() -> bool:
        return all(len(col.stages.get(st, ())) >= MIN_SAMPLES for st in enough)

    while (t := time.monotonic()) < t_max and (t < t_min or not done()):
        time.sleep(0.2)
    tree.col.recording = False
    elapsed = time.monotonic() - t0
    cpu1, frames1 = cpu_seconds(pids), tree.frames_sent()
    time.sleep(1.2)  # a heartbeat (1/s) from after the measurement carries its counters
    after = service_bus_totals(tree.col)
    col_after = tree.col.sub.totals()
    lost = {n: after.get(n, {}).get("lost", 0) - before.get(n, {}).get("lost", 0) for n in after}
    lost["collector"] = col_after["lost"] - col_before["lost"]
    return {
        "seconds": round(elapsed, 2),
        "venue_frames_per_s": round((frames1 - frames0) / elapsed, 1),
        "stages": tree.col.result(),
        "cpu_pct": {n: round(100 * (cpu1[n] - cpu0[n]) / elapsed, 1) for n in pids},
        "lost": lost,
        "decisions": dict(sorted(tree.col.decisions.items(), key=lambda kv: -kv[1])),
    }


def phase(
    name: str,
    rate: float,
    seconds: float,
    tmp: Path,
    loaded: bool,
    nice_load: bool = False,
    max_seconds: float | None = None,
    enough: tuple[str, ...] = HOT_STAGES,
) -> dict[str, Any]:
    """One phase on its own tree: measured for `seconds`, then on (up to `max_seconds`) until
    every stage in `enough` has MIN_SAMPLES samples."""
    tree = Tree(name, rate, tmp)
    load: subprocess.Popen[str] | None = None
    try:
        tree.start()
        if loaded:
            # the clients run at normal priority, beside the tree, as browsers on this machine
            # would (`--nice-load`: at nice 19, a labelled second run)
            cmd = [sys.executable, "-m", "services.commands.bench_pipeline", "_load"]
            cmd += [str(tree.api_port), str(max(seconds, max_seconds or seconds))]
            load = subprocess.Popen(
                (["nice", "-n", "19"] if nice_load else []) + cmd,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert load.stdout is not None
            if load.stdout.readline().strip() != "loaded":
                raise RuntimeError("load generator failed to connect its clients")
        out: dict[str, Any] = {"rate": rate, **measure(tree, seconds, max_seconds, enough)}
        if load is not None:  # it ran as long as the measurement: stop it, take its counts
            load.send_signal(signal.SIGUSR1)
            out["load"] = json.loads(load.communicate(timeout=60)[0].splitlines()[-1])
            out["load"]["nice"] = 19 if nice_load else 0
        for stage in HOT_STAGES:
            progress(f"{name} {stage}", out["stages"][stage], f" over {out['seconds']} s")
        return out
    finally:
        if load is not None and load.poll() is None:
            load.kill()
        tree.stop()


def judge(
    idle: dict[str, Any], loaded: dict[str, Any], burst: dict[str, Any], floor: dict[str, Any]
) -> tuple[dict[str, float | str], dict[str, bool | str]]:
    """The same-run ratios (p99 over p99) and the targets on them from three phases' `stages`
    and the floors; a ratio or target on a stage with fewer than MIN_SAMPLES samples is
    "too few" (never a number)."""

    def st(doc: dict[str, Any], stage: str) -> dict[str, Any] | None:
        return doc["stages"].get(stage)

    sig, intent = HOT_STAGES
    ratios: dict[str, float | str] = {
        "tick_to_signal_over_floor_2hop_p99": ratio(st(idle, sig), floor["realistic_2hop"]),
        "tick_to_intent_over_floor_3hop_p99": ratio(st(idle, intent), floor["realistic_3hop"]),
        "burst_tick_to_signal_over_floor_2hop_p99": ratio(st(burst, sig), floor["burst_2hop"]),
        "burst_tick_to_intent_over_floor_3hop_p99": ratio(st(burst, intent), floor["burst_3hop"]),
        "loaded_over_idle_p99_tick_to_signal": ratio(st(loaded, sig), st(idle, sig)),
        "loaded_over_idle_p99_tick_to_intent": ratio(st(loaded, intent), st(idle, intent)),
    }

    def target(value: float | str, bound: float) -> bool | str:
        return value if isinstance(value, str) else value <= bound

    targets: dict[str, bool | str] = {
        "tick_to_signal_p99<=2x_floor_2hop": target(
            ratios["tick_to_signal_over_floor_2hop_p99"], 2.0
        ),
        "tick_to_intent_p99<=2x_floor_3hop": target(
            ratios["tick_to_intent_over_floor_3hop_p99"], 2.0
        ),
        "loaded_over_idle_p99<=1.2 (tick_to_signal)": target(
            ratios["loaded_over_idle_p99_tick_to_signal"], 1.2
        ),
        "loaded_over_idle_p99<=1.2 (tick_to_intent)": target(
            ratios["loaded_over_idle_p99_tick_to_intent"], 1.2
        ),
        "no_loss_at_burst": not any(burst["lost"].values()),
    }
    return ratios, targets


def run(args: Any, tmp: Path, floor: dict[str, Any]) -> dict[str, Any]:
    nice_load = bool(getattr(args, "nice_load", False))
    most = getattr(args, "max_seconds", None)
    idle = phase("realistic", args.rate, args.seconds, tmp, False, max_seconds=most)
    loaded = phase("loaded", args.rate, args.seconds, tmp, True, nice_load, most)
    # the targets are on the realistic and loaded phases; at 10x a position's round trips are
    # slower than the signals, so the burst waits for tick -> signal only (its tick -> intent
    # is printed with its count, a ratio on it only from MIN_SAMPLES)
    burst_rate = args.rate * BURST_FACTOR
    burst = phase("burst", burst_rate, args.seconds, tmp, False, False, most, HOT_STAGES[:1])

    ratios, targets = judge(idle, loaded, burst, floor)
    cfg = validate_strategy_config(BENCH_STRATEGY, "BENCH_STRATEGY")
    return {
        # the config every phase ran with (its own file per phase, never the operator's)
        "config": {
            "path": "services/commands/bench_pipeline.py:BENCH_STRATEGY over the built-ins",
            "overrides_path": None,
            "version": None,
            "hash": config_hash(cfg),
        },
        "realistic": idle,
        "loaded": loaded,
        "burst": burst,
        "ratios": ratios,
        "targets_met": targets,
    }


# --- load generator (its own process, so it competes with observe, not with the collector) ---
async def _load(api_port: int, seconds: float) -> dict[str, Any]:
    import httpx
    import websockets

    token = load_settings().api.token
    headers = {"Authorization": f"Bearer {token.reveal()}"} if token else {}
    received = [0]
    rest = {"ok": 0, "failed": 0}
    stop = asyncio.Event()

    async def client() -> None:
        async with websockets.connect(
            f"ws://127.0.0.1:{api_port}/ws/live", additional_headers=headers, max_size=None
        ) as ws:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(ws.recv(), 1.0)
                    received[0] += 1
                except TimeoutError:
                    pass

    clients = [asyncio.create_task(client()) for _ in range(WS_CLIENTS)]
    deadline = time.monotonic() + 20
    while received[0] < WS_CLIENTS and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, stop.set)  # measured: done
    print("loaded", flush=True)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}") as http:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not stop.is_set():
            t = time.monotonic()
            for _ in range(REST_PER_S // 10):
                try:
                    r = await http.get("/api/status", timeout=5)
                    rest["ok" if r.status_code == 200 else "failed"] += 1
                except httpx.HTTPError:
                    rest["failed"] += 1
            await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - t)))
    stop.set()
    await asyncio.gather(*clients, return_exceptions=True)
    return {"ws_clients": WS_CLIENTS, "ws_messages": received[0], "rest": rest}


def _load_main(argv: list[str]) -> int:
    print(json.dumps(asyncio.run(_load(int(argv[0]), float(argv[1])))), flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_load":
        raise SystemExit(_load_main(sys.argv[2:]))
    raise SystemExit("usage: polyedge bench")
