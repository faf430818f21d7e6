"""Soak run (documented, not in CI): the real supervisord tree on the simulated venue with short
windows and a trading-happy strategy config, for `--minutes`, sampling every process's resident
memory, CPU and open file descriptors from /proc, and printing a JSON report with start / end /
max per process and a growth verdict against a stated bound.

    python -m tests.soak --minutes 30 [--window-seconds 20] [--interval 5] [--out report.json]

Exit status 0 when every process stayed within the bound (and none restarted), 1 otherwise.

The bound: after a warm-up (the first 10 % of the run, at least 60 s, so imports, caches and the
first windows are loaded), the median RSS of the last 10 % of samples may exceed the median of
the first post-warm-up 10 % by at most max(RSS_BOUND_MB, RSS_BOUND_PCT of it), and the open file
descriptors by at most FD_BOUND. While it runs, the API is read like a dashboard would (status,
metrics, trades) so observe's request path is part of the soak.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.chaos.chaos_harness import HOLD_CONFIG, Tree, running_tree

PROGRAMS = ("simvenue", "ingest", "signal", "strategy", "execution", "observe")
RSS_BOUND_MB = 16.0
RSS_BOUND_PCT = 0.10
FD_BOUND = 8
SOAK_CONFIG: dict[str, Any] = {  # enter often, exit on small moves: the ledger keeps growing
    **HOLD_CONFIG,
    "take_profit_pct": 0.05,
    "stop_loss_pct": 0.05,
    "refuse_entry_inside_stop_loss": False,  # churn on purpose (quick 5 % exits)
    "min_seconds_before_close": 3,
}
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20


@dataclass
class Sample:
    t: float  # seconds since the start of sampling
    rss_mb: float
    cpu_s: float  # user + system CPU seconds so far
    fds: int


@dataclass
class Proc:
    name: str
    pid: int = 0
    pids: list[int] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)


def read_proc(pid: int) -> tuple[float, float, int] | None:
    """(rss MB, cpu seconds, open fds) of one process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            rss_pages = int(f.read().split()[1])
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        fields = stat[stat.rindex(")") + 2 :].split()
        cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError, IndexError):
        return None
    return rss_pages * PAGE_MB, cpu, fds


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else 0.0


def summarize(p: Proc, warmup_s: float, duration_s: float) -> dict[str, Any]:
    s = p.samples
    if not s:
        return {"error": "no samples"}
    after = [x for x in s if x.t >= warmup_s] or s
    k = max(1, len(after) // 10)
    base_rss, end_rss = (
        median([x.rss_mb for x in after[:k]]),
        median([x.rss_mb for x in after[-k:]]),
    )
    base_fds, end_fds = median([x.fds for x in after[:k]]), median([x.fds for x in after[-k:]])
    bound_mb = max(RSS_BOUND_MB, RSS_BOUND_PCT * base_rss)
    cpu_pct = [
        100.0 * (b.cpu_s - a.cpu_s) / (b.t - a.t)
        for a, b in zip(s, s[1:], strict=False)
        if b.t > a.t and b.cpu_s >= a.cpu_s  # a restart resets the counter
    ]
    span = after[-1].t - after[0].t
    slope = (
        (after[-1].rss_mb - after[0].rss_mb) / span * 3600 if span > 0 else 0.0
    )  # MB per hour, first to last post-warm-up sample (informative; the verdict uses medians)
    growth_mb = end_rss - base_rss
    ok = growth_mb <= bound_mb and end_fds - base_fds <= FD_BOUND and len(p.pids) == 1
    return {
        "pids": p.pids,
        "restarts": len(p.pids) - 1,
        "rss_mb": {
            "start": round(s[0].rss_mb, 1),
            "baseline": round(base_rss, 1),
            "end": round(end_rss, 1),
            "max": round(max(x.rss_mb for x in s), 1),
            "growth": round(growth_mb, 1),
            "bound": round(bound_mb, 1),
            "slope_mb_per_h": round(slope, 1),
        },
        "fds": {
            "start": s[0].fds,
            "baseline": base_fds,
            "end": end_fds,
            "max": max(x.fds for x in s),
            "growth": end_fds - base_fds,
            "bound": FD_BOUND,
        },
        "cpu_pct": {
            "mean": round(100.0 * (s[-1].cpu_s - s[0].cpu_s) / max(1e-9, s[-1].t - s[0].t), 1)
            if len(p.pids) == 1
            else None,
            "p50": round(median(cpu_pct), 1),
            "max": round(max(cpu_pct, default=0.0), 1),
        },
        "samples": len(s),
        "verdict": "ok" if ok else "GROWTH" if growth_mb > bound_mb else "FAIL",
    }


def activity(tree: Tree) -> dict[str, Any]:
    q = tree.query
    out: dict[str, Any] = {
        "orders": q("SELECT COUNT(*) FROM orders")[0][0],
        "fills": q("SELECT COUNT(*) FROM fills")[0][0],
        "settlements": q("SELECT COUNT(*) FROM settlements")[0][0],
        "ledger_problems": tree.ledger_problems()[:5],
    }
    try:
        health = tree.get("/health").json()
        out["pipeline"] = health.get("pipeline")
    except (httpx.HTTPError, ValueError) as e:
        out["pipeline"] = f"unavailable: {e}"
    try:
        out["windows_seen"] = len(
            {s.msg.slug for s in tree.recorder.since(0, "md.market")}  # type: ignore[union-attr]
        )
        out["bus"] = tree.recorder.stats and {
            "gaps": sum(st.gaps for st in tree.recorder.stats.values()),
            "lost": sum(st.lost for st in tree.recorder.stats.values()),
            "restarts": sum(st.restarts for st in tree.recorder.stats.values()),
        }
    except Exception as e:  # noqa: BLE001 - informative only
        out["bus"] = f"unavailable: {e}"
    return out


def soak(minutes: float, window_s: int, interval_s: float, log: Any) -> dict[str, Any]:
    duration = minutes * 60
    warmup = max(60.0, duration * 0.10) if duration >= 300 else duration * 0.2
    procs = {n: Proc(n) for n in PROGRAMS}
    api_errors = 0
    with running_tree(SOAK_CONFIG, window_s=window_s) as tree:
        t0 = time.monotonic()
        log(f"soak: tree up in {tree.root}; sampling every {interval_s}s for {minutes} min")
        next_print = 0.0
        while (now := time.monotonic() - t0) < duration:
            for p in procs.values():
                pid = p.pid
                if not pid or read_proc(pid) is None:
                    try:
                        pid = tree.sup.pid(p.name)
                    except (ValueError, OSError):
                        pid = 0
                if pid and pid != p.pid:
                    p.pid = pid
                    p.pids.append(pid)
                r = read_proc(p.pid) if p.pid else None
                if r is not None:
                    p.samples.append(Sample(now, *r))
            for path in ("/api/status", "/metrics", "/api/trades?limit=20"):
                try:
                    if tree.get(path, 5.0).status_code >= 500:
                        api_errors += 1
                except httpx.HTTPError:
                    api_errors += 1
            if now >= next_print:
                line = " ".join(
                    f"{p.name}={p.samples[-1].rss_mb:.0f}MB/{p.samples[-1].fds}fd"
                    for p in procs.values()
                    if p.samples
                )
                log(f"soak: t={now:6.0f}s {line}")
                next_print = now + 60
            time.sleep(max(0.0, interval_s - ((time.monotonic() - t0) - now)))
        per = {n: summarize(p, warmup, duration) for n, p in procs.items()}
        report = {
            "minutes": minutes,
            "window_seconds": window_s,
            "interval_s": interval_s,
            "warmup_s": warmup,
            "bound": {
                "rss_mb": f"median of the last 10% of samples minus median of the first 10% "
                f"after warm-up <= max({RSS_BOUND_MB} MB, {RSS_BOUND_PCT:.0%} of the baseline)",
                "fds": f"growth <= {FD_BOUND}",
                "restarts": 0,
            },
            "processes": per,
            "activity": activity(tree),
            "api_errors": api_errors,
            "machine": {"cpus": os.cpu_count(), "loadavg": os.getloadavg()},
        }
    bad = [n for n, r in per.items() if r.get("verdict") != "ok"]
    report["verdict"] = (
        "ok"
        if not bad and not report["activity"]["ledger_problems"]
        else (f"failed: {bad or 'ledger'}")
    )
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--window-seconds", type=int, default=20)
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    ap.add_argument("--out", help="also write the JSON report to this file")
    args = ap.parse_args(argv)
    if args.minutes <= 0 or args.interval <= 0 or args.window_seconds < 2:
        ap.error("--minutes and --interval must be > 0, --window-seconds >= 2")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    report = soak(args.minutes, args.window_seconds, args.interval, log)
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0 if report["verdict"] == "ok" else 1


if __name__ == "__main__":
    raise SystemExit(main())
