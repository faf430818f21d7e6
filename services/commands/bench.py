"""`polyedge bench`: latency of the hot path, compared with a floor measured in the same run.

The floor is a bare relay over the same ZeroMQ hops as ingest -> signal -> strategy -> execution
(PUB -> SUB/PUB -> SUB/PUSH -> PULL), in four processes that only decode and re-encode. The
pipeline figures come from the real processes (see `pipeline`); both run at the realistic rate and
at a 10x burst, so the ratio pipeline/floor isolates what our own code costs.
"""

from __future__ import annotations

import argparse
import json
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


def percentiles(samples: list[float]) -> dict[str, float | int]:
    """p50/p90/p99/max (nearest-rank) and the count, in the samples' unit, rounded to 1 us."""
    if not samples:
        return {"count": 0}
    s = sorted(samples)

    def rank(q: float) -> float:
        return s[min(len(s) - 1, max(0, int(round(q * len(s) + 0.5)) - 1))]

    return {
        "count": len(s),
        "p50": round(rank(0.50), 3),
        "p90": round(rank(0.90), 3),
        "p99": round(rank(0.99), 3),
        "max": round(s[-1], 3),
    }


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


def floor(rate: float, seconds: float, tmp: Path) -> dict[str, Any]:
    """Source PUB -> relay SUB/PUB -> relay SUB/PUSH -> sink PULL; latency source->sink in ms."""
    eps = [f"ipc://{tmp}/floor-{i}-{os.getpid()}.sock" for i in range(3)]
    sink = Puller(eps[2], drop_expired=False)
    src = Publisher(eps[0])
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "services.commands.bench", "_role", "relay_pub", eps[0], eps[1]],
            stdout=subprocess.PIPE,
            text=True,
        ),
        subprocess.Popen(
            [sys.executable, "-m", "services.commands.bench", "_role", "relay_push", eps[1], eps[2]],
            stdout=subprocess.PIPE,
            text=True,
        ),
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
        lat = lat.samples
        return {**percentiles(lat), "sent": sent, "lost": sent - len(lat)}
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


def _warm_up(src: Publisher, sink: Puller) -> None:
    """PUB/SUB joins late: send until the first message comes through, then drain."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        t = now_ns()
        src.send("md.btc.trade", BtcTrade(price=1.0, size=1.0, ts_exchange_ns=t, ts_recv_ns=t))
        if sink.recv(timeout_ms=50) is not None:
            time.sleep(0.2)
            sink.drain()
            return
    raise RuntimeError("floor relay chain never delivered a message")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_role":
        return _role(argv[1:])
    ap = argparse.ArgumentParser(prog="polyedge bench", description=__doc__)
    ap.add_argument("--seconds", type=float, default=10.0, help="per measurement (default 10)")
    ap.add_argument("--rate", type=float, default=REALISTIC_RATE, help="realistic msg/s")
    ap.add_argument("--floor-only", action="store_true", help="only the bare relay floor")
    args = ap.parse_args(argv)
    if args.seconds <= 0 or args.rate <= 0:
        ap.error("--seconds and --rate must be > 0")
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="pe-bench-", dir="/tmp"))
    result: dict[str, Any] = {
        "rate": args.rate,
        "burst_rate": args.rate * BURST_FACTOR,
        "seconds": args.seconds,
    }
    from services.ingest import bench as ingest_bench

    result["ingest_parse_to_publish_us"] = ingest_bench.run(20_000)
    result["floor"] = {
        "realistic": floor(args.rate, args.seconds, tmp),
        "burst": floor(args.rate * BURST_FACTOR, args.seconds, tmp),
    }
    if not args.floor_only:
        from services import bench_pipeline

        result["pipeline"] = bench_pipeline.run(args, tmp, result["floor"])
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
