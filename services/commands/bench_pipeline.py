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
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from common.bus import Subscriber
from common.config import config_hash, load_settings, validate_strategy_config
from common.schema import BookSnapshot, BtcTrade, Fill, OrderAck, OrderReject, Probe, SignalScore
from common.topics import PUBLISHERS
from services.commands.bench import BURST_FACTOR, percentiles
from services.commands.supervise import Supervised, free_port, wait_for

BTC_SHARE = 100 / 160  # of the realistic 160 msg/s, ~100 are Binance and ~60 CLOB
WINDOW_SECONDS = 30
WS_CLIENTS = 50
REST_PER_S = 20
# trades often, so intents are frequent enough to measure (paper trading on the simulated venue)
BENCH_STRATEGY = {
    "min_signal_score": 0.0,
    "min_edge_pct": 0.0,
    "entry_window_min_sec": 0,
    "min_seconds_before_close": 2,
    "max_trades_per_day": 10000,
    "max_daily_loss_usd": 1e6,
    "max_consecutive_losses": 1000,
    "take_profit_pct": 0.01,
    "stop_loss_pct": 0.01,
}
MS = 1e6


class Collector:
    """Subscribes to every publisher on a thread and files each timestamp pair under its stage."""

    def __init__(self, endpoints: list[str]) -> None:
        self.sub = Subscriber(endpoints, [""])
        self.stages: dict[str, list[float]] = {}
        self.recording = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self.signals_seen = 0

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
                self._add("market_to_signal_ms", m.ts_signal_ns, m.origin_ts_recv_ns)
            elif isinstance(m, OrderAck | OrderReject):
                recv = getattr(m, "ts_exec_recv_ns", 0)
                self._add("tick_to_intent_at_execution_ms", recv, m.origin_ts_recv_ns)
                self._add("signal_to_intent_at_execution_ms", recv, m.ts_signal_ns)
                if isinstance(m, OrderAck):
                    self._add("intent_to_ack_ms", m.ts_ack_ns, m.ts_intent_ns)
                    self._add("signal_to_order_ack_ms", m.ts_ack_ns, m.ts_signal_ns)
            elif isinstance(m, Fill):
                self._add("full_decision_to_fill_ms", m.ts_fill_ns, m.origin_ts_recv_ns)
            elif isinstance(m, Probe) and m.hops and m.hops[-1] == "execution":
                self._add("probe_ingest_to_execution_ms", m.hop_ns[-1], m.hop_ns[0])

    def result(self) -> dict[str, Any]:
        return {stage: percentiles(v) for stage, v in sorted(self.stages.items())}

    def close(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join()
        totals = self.sub.totals()
        self.sub.close()
        return totals


def _service_bus_totals(api_port: int) -> dict[str, dict[str, int]]:
    import httpx

    doc = httpx.get(f"http://127.0.0.1:{api_port}/health", timeout=5).json()
    return {n: s.get("detail", {}).get("bus", {}) for n, s in doc["services"].items()}


def phase(name: str, rate: float, seconds: float, tmp: Path, loaded: bool) -> dict[str, Any]:
    root = Path(tmp) / name
    (root / "data" / "run").mkdir(parents=True, exist_ok=True)
    (root / "logs").mkdir(exist_ok=True)
    cfg = root / "strategy.json"
    cfg.write_text(json.dumps(BENCH_STRATEGY))
    api_port = free_port()
    btc = rate * BTC_SHARE
    env = {
        "POLYEDGE_DATA_DIR": str(root / "data"),
        "LOG_DIR": str(root / "logs"),
        "DATABASE_URL": f"sqlite:{root / 'data' / 'trader.db'}",
        "API_PORT": str(api_port),
        "POLYEDGE_ROOT": str(root),
        "POLYEDGE_CONFIG": str(cfg),
        "POLYEDGE_VENUE": "sim",
        "SIM_PORT": str(free_port()),
        "SIM_WINDOW_SECONDS": str(WINDOW_SECONDS),
        "SIM_BOOK_TICKER_HZ": f"{btc:.1f}",
        "SIM_CLOB_HZ": f"{rate - btc:.1f}",
        "LOG_LEVEL": "WARNING",
    }
    tree = Supervised(env)
    load: subprocess.Popen[str] | None = None
    try:
        tree.start()
        tree.wait_running(("simvenue", "execution", "strategy", "signal", "ingest", "observe"), 30)
        settings = load_settings({**os.environ, **env}, dotenv=None)
        col = Collector([settings.bus_endpoint(p) for p in PUBLISHERS])
        wait_for(lambda: col.signals_seen > 10, 60, what="signals from the pipeline")
        if loaded:
            # the clients stand in for browsers on other machines: their own CPU should not
            # count against our hot path, so they run at the lowest priority
            load = subprocess.Popen(
                [
                    "nice",
                    "-n",
                    "19",
                    sys.executable,
                    "-m",
                    "services.commands.bench_pipeline",
                    "_load",
                    str(api_port),
                    str(seconds),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert load.stdout is not None
            if load.stdout.readline().strip() != "loaded":
                raise RuntimeError("load generator failed to connect its clients")
        before = _service_bus_totals(api_port)
        col.recording = True
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            time.sleep(0.2)
        col.recording = False
        after = _service_bus_totals(api_port)
        out: dict[str, Any] = {"rate": rate, "seconds": seconds, "stages": col.result()}
        totals = col.close()
        out["collector_bus"] = totals
        out["lost_in_services"] = {
            n: after.get(n, {}).get("lost", 0) - before.get(n, {}).get("lost", 0) for n in after
        }
        if load is not None:  # it runs as long as the measurement: collect its own counts
            out["load"] = json.loads(load.communicate(timeout=60)[0].splitlines()[-1])
        return out
    finally:
        if load is not None and load.poll() is None:
            load.kill()
        tree.stop()


def run(args: Any, tmp: Path, floor: dict[str, Any]) -> dict[str, Any]:
    idle = phase("realistic", args.rate, args.seconds, tmp, loaded=False)
    loaded = phase("loaded", args.rate, args.seconds, tmp, loaded=True)
    burst = phase("burst", args.rate * BURST_FACTOR, args.seconds, tmp, loaded=False)

    def p99(doc: dict[str, Any], stage: str) -> float | None:
        return doc["stages"].get(stage, {}).get("p99")

    hot = "tick_to_intent_at_execution_ms"
    if not idle["stages"].get(hot, {}).get("count"):
        hot = "probe_ingest_to_execution_ms"
    ratios: dict[str, Any] = {"hot_path_stage": hot}
    for label, doc, base in (
        ("pipeline_over_floor_p99", idle, floor["realistic"]["p99"]),
        ("burst_pipeline_over_floor_p99", burst, floor["burst"]["p99"]),
    ):
        v = p99(doc, hot)
        ratios[label] = round(v / base, 2) if v and base else None
    for stage in ("market_to_signal_ms", hot):
        a, b = p99(loaded, stage), p99(idle, stage)
        ratios[f"loaded_over_idle_p99_{stage}"] = round(a / b, 2) if a and b else None
    targets = {
        "tick_to_signal_p99_ms<1": (p99(idle, "market_to_signal_ms") or 1e9) < 1,
        "tick_to_intent_at_execution_p99_ms<2": (p99(idle, hot) or 1e9) < 2,
        "pipeline_over_floor_p99<=3": (ratios["pipeline_over_floor_p99"] or 1e9) <= 3,
        "loaded_over_idle_p99<=1.2": (ratios[f"loaded_over_idle_p99_{hot}"] or 1e9) <= 1.2,
        "no_loss_at_burst": not any(burst["lost_in_services"].values())
        and burst["collector_bus"]["lost"] == 0,
    }
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
    print("loaded", flush=True)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}") as http:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
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
