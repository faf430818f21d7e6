"""`polyedge bench`: latency of the hot path, compared with floors measured in the same run, and
(`--capacity`) the highest simulated-venue rate the tree carries with tick -> signal p99 <= 5 ms
and no loss.

The floors are bare relays over the same ZeroMQ hops as the pipeline, in processes that only
decode and re-encode: 2 hops PUB -> SUB/PUB -> SUB (what tick -> signal is compared with) and
3 hops PUB -> SUB/PUB -> SUB/PUSH -> PULL (ingest -> signal -> strategy -> execution, what tick ->
intent is compared with). The pipeline figures come from the real processes
(`bench_pipeline`). No ratio or target is computed from a stage with fewer than `MIN_SAMPLES`
samples: it says "too few".
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.bus import Publisher, Puller, Pusher, Subscriber
from common.clock import now_ns
from common.schema import BtcTrade

REALISTIC_RATE = 160  # Binance ~100 msg/s + CLOB ~60 msg/s
BURST_FACTOR = 10
MIN_SAMPLES = 1000  # fewer: a p99 is close to the maximum; no ratio or target is built on it
TOO_FEW = "too few"


def percentiles(samples: list[float]) -> dict[str, float | int]:
    """count, p50/p90/p99/p99.9 (nearest rank) and max, in the samples' unit (ms), rounded to
    1 us. An empty list gives `{"count": 0}`."""
    if not samples:
        return {"count": 0}
    s = sorted(samples)

    def rank(q: float) -> float:  # nearest rank: the ceil(q * n)-th smallest
        return s[min(len(s) - 1, max(0, math.ceil(q * len(s) - 1e-9) - 1))]

    return {
        "count": len(s),
        "p50": round(rank(0.50), 3),
        "p90": round(rank(0.90), 3),
        "p99": round(rank(0.99), 3),
        "p99_9": round(rank(0.999), 3),
        "max": round(s[-1], 3),
    }


def p99_of(stats: dict[str, Any] | None) -> float | None:
    """The p99 of a `percentiles` result when it has at least MIN_SAMPLES samples, else None."""
    if not stats or stats.get("count", 0) < MIN_SAMPLES:
        return None
    return stats.get("p99")


def ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | str:
    """p99(a) / p99(b), or "too few" when either has fewer than MIN_SAMPLES samples."""
    x, y = p99_of(a), p99_of(b)
    if x is None or y is None or y <= 0:
        return TOO_FEW
    return round(x / y, 2)


def progress(what: str, stats: dict[str, Any], extra: str = "") -> None:
    """One human line on stderr (the JSON goes to stdout at the end): a stage's count and
    p50/p99, with the load average."""
    print(
        f"# {what}: p50 {stats.get('p50', '-')} p99 {stats.get('p99', '-')} ms "
        f"(n={stats.get('count', 0)}){extra}, load {os.getloadavg()[0]:.1f}",
        file=sys.stderr,
        flush=True,
    )


def floor_seconds(rate: float, seconds: float) -> float:
    """How long a floor runs at `rate` msg/s: `seconds`, or longer when that would carry fewer
    than 1.5 x MIN_SAMPLES messages."""
    return max(seconds, math.ceil(1.5 * MIN_SAMPLES / rate))


def _paced(rate: float, seconds: float):  # type: ignore[no-untyped-def]
    """Yield at `rate` per second for `seconds`, sleeping between sends, never bunching up."""
    interval = 1.0 / rate
    start = time.perf_counter()
    n = int(rate * seconds)
    for i in range(n):
        target = start + i * interval
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        yield i


# --- floor relay processes -------------------------------------------------------------------
def _role(argv: list[str]) -> int:
    role, a, b = argv[0], argv[1], argv[2] if len(argv) > 2 else ""
    if role == "relay_pub":  # SUB a -> PUB b (signal's shape)
        sub, pub = Subscriber(a, [""]), Publisher(b)
        print("ready", flush=True)
        while True:
            item = sub.recv(timeout_ms=20_000)
            if item is None:
                return 0
            pub.send(item[0], item[1].msg)
    if role == "relay_push":  # SUB a -> PUSH b (strategy's shape)
        sub, push = Subscriber(a, [""]), Pusher(b, timeout_ms=1000)
        print("ready", flush=True)
        while True:
            item = sub.recv(timeout_ms=20_000)
            if item is None:
                return 0
            push.send("order", item[1].msg)
    raise SystemExit(f"unknown bench role {role!r}")


def floor(rate: float, seconds: float, tmp: Path, hops: int = 3) -> dict[str, Any]:
    """The bare relay chain's latency source -> sink in ms at `rate` msg/s for `seconds`:
    3 hops PUB -> SUB/PUB -> SUB/PUSH -> PULL, or 2 hops PUB -> SUB/PUB -> SUB."""
    if hops not in (2, 3):
        raise ValueError(f"hops must be 2 or 3, got {hops}")
    eps = [f"ipc://{tmp}/floor{hops}-{i}-{os.getpid()}.sock" for i in range(3)]
    sink: Puller | Subscriber
    sink = Puller(eps[2], drop_expired=False) if hops == 3 else Subscriber(eps[1], [""])
    src = Publisher(eps[0])
    roles = [("relay_pub", eps[0], eps[1])]
    if hops == 3:
        roles.append(("relay_push", eps[1], eps[2]))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "services.commands.bench", "_role", *r],
            stdout=subprocess.PIPE,
            text=True,
        )
        for r in roles
    ]
    try:
        for p in procs:
            if p.stdout is None or p.stdout.readline().strip() != "ready":
                raise RuntimeError("floor relay failed to start")
        _warm_up(src, sink)
        lat = collect(sink, lambda m: m.ts_recv_ns)
        sent = 0
        for i in _paced(rate, seconds):
            t = now_ns()
            src.send(
                "md.btc.trade", BtcTrade(price=1.0 + i, size=1.0, ts_exchange_ns=t, ts_recv_ns=t)
            )
            sent += 1
        lat.wait_for(sent, timeout=5)
        samples = lat.samples
        return {"hops": hops, **percentiles(samples), "sent": sent, "lost": sent - len(samples)}
    finally:
        for p in procs:
            p.kill()
            p.wait()
        src.close()
        sink.close()


class collect:  # noqa: N801 - used like a function that returns a running collector
    """Receive on a thread (a blocking recv releases the GIL) and record now - origin, in ms."""

    def __init__(self, sock: Puller | Subscriber, origin: Callable[[Any], int]) -> None:
        self.samples: list[float] = []
        self._sock, self._origin = sock, origin
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self._sock.recv(timeout_ms=50)
            if item is not None:
                self.samples.append((now_ns() - self._origin(item[1].msg)) / 1e6)

    def wait_for(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.samples) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        self._stop.set()
        self._thread.join()


def _warm_up(src: Publisher, sink: Puller | Subscriber) -> None:
    """PUB/SUB joins late: send until the first message comes through, then drain."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        t = now_ns()
        src.send("md.btc.trade", BtcTrade(price=1.0, size=1.0, ts_exchange_ns=t, ts_recv_ns=t))
        if sink.recv(timeout_ms=50) is not None:
            time.sleep(0.2)
            while sink.recv(timeout_ms=0) is not None:
                pass
            return
    raise RuntimeError("floor relay chain never delivered a message")


def machine() -> dict[str, Any]:
    """What the figures were measured on: CPUs, model, load average (1/5/15 min), Python."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
        "executable": sys.executable,
    }


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_role":
        return _role(argv[1:])
    ap = argparse.ArgumentParser(prog="polyedge bench", description=__doc__)
    ap.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="per measurement (default 20; with --capacity 10 per step)",
    )
    ap.add_argument(
        "--max-seconds",
        type=float,
        default=150.0,
        help="a phase goes on past --seconds until tick -> signal and tick -> intent have "
        f"{MIN_SAMPLES} samples, for at most this long (default 150)",
    )
    ap.add_argument("--rate", type=float, default=REALISTIC_RATE, help="realistic msg/s")
    ap.add_argument(
        "--floor-seconds",
        type=float,
        default=10.0,
        help=f"per floor, at least long enough for 1.5 x {MIN_SAMPLES} messages (default 10)",
    )
    ap.add_argument("--floor-only", action="store_true", help="only the bare relay floors")
    ap.add_argument(
        "--nice-load",
        action="store_true",
        help="run the loaded phase's clients at nice 19 (a labelled second run; default normal)",
    )
    ap.add_argument(
        "--capacity",
        action="store_true",
        help="step the simulated venue's rate up; print per step tick -> signal p50/p99, CPU "
        "per service and loss; the capacity is the highest rate with p99 <= 5 ms and no loss",
    )
    ap.add_argument(
        "--rates",
        default="",
        help="--capacity: comma-separated offered rates, msg/s (default 1000,2000,...,6000,8000)",
    )
    ap.add_argument(
        "--markets",
        default="",
        help="a strategy config with a `markets` list (e.g. config/markets-8.json): run the tree "
        "trading all of them at the venue's real per-market rates; print tick -> signal "
        "(total and per market), loss, CPU seconds per service and CPU per market",
    )
    ap.add_argument(
        "--as-configured",
        action="store_true",
        help="with --markets: the file's own strategy parameters (its gates: few trades), not "
        "the bench's eager ones",
    )
    args = ap.parse_args(argv)
    if args.as_configured and not args.markets:
        ap.error("--as-configured goes with --markets")
    if args.markets and args.capacity:
        ap.error("--markets and --capacity are separate runs: pick one")
    if args.seconds is None and args.markets:
        args.seconds = 30.0
    if args.seconds is None:
        args.seconds = 10.0 if args.capacity else 20.0
    if args.seconds <= 0 or args.rate <= 0 or args.floor_seconds <= 0:
        ap.error("--seconds, --floor-seconds and --rate must be > 0")
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="pe-bench-", dir="/tmp"))
    if args.markets:
        from services.commands import bench_markets

        try:
            bench_markets.load_markets(Path(args.markets))
        except ValueError as e:
            ap.error(str(e))
        return bench_markets.main(
            Path(args.markets), args.seconds, tmp, args.floor_seconds, args.as_configured
        )
    if args.capacity:
        from services.commands import bench_capacity

        try:
            rates = [float(x) for x in args.rates.split(",") if x.strip()] or None
        except ValueError:
            ap.error(f"--rates must be numbers separated by commas, got {args.rates!r}")
        print(json.dumps(bench_capacity.run(args.seconds, tmp, rates), indent=2))
        return 0
    result: dict[str, Any] = {
        "machine_before": machine(),
        "rate": args.rate,
        "burst_rate": args.rate * BURST_FACTOR,
        "seconds": args.seconds,
        "floor_seconds": args.floor_seconds,
        "min_samples": MIN_SAMPLES,
    }
    from services.commands import ingest_bench

    result["ingest_parse_to_publish_us"] = ingest_bench.run(20_000)
    result["floor"] = {}
    for name, rate in (("realistic", args.rate), ("burst", args.rate * BURST_FACTOR)):
        for hops in (2, 3):
            f = floor(rate, floor_seconds(rate, args.floor_seconds), tmp, hops)
            result["floor"][f"{name}_{hops}hop"] = f
            progress(f"floor {name} {hops} hops", f)
    if not args.floor_only:
        from services.commands import bench_pipeline

        result["pipeline"] = bench_pipeline.run(args, tmp, result["floor"])
    result["machine_after"] = machine()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
