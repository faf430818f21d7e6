"""`polyedge backtest-speed`: the backtest's wall time now against an older commit, side by side.

    polyedge backtest-speed [--old 491d042] [--sim-seed 1] [--windows 20] [--rounds 1] [--json]

The old commit is extracted with `git archive` into a temporary directory and its backtest run
there (`python -m services.backtest ...` before the commands moved, else
`python -m services.commands.backtest ...`); this tree's backtest runs twice (its two outputs
must be byte-identical). The runs alternate old, new, new per round so a busy machine slows both
alike. Prints each run's wall and CPU seconds (user + sys of the run and its worker, from
`getrusage(RUSAGE_CHILDREN)` deltas), the medians, the ratios old / new (wall and CPU) and the
1-minute load average at the start and the end. Both sides run with their own shipped config
(POLYEDGE_CONFIG is not passed on). Exit 1
when this tree's two outputs differ or a run fails.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OLD = "491d042"  # the commit issue 11 measures against


def extract(commit: str, dest: Path) -> Path:
    """`commit`'s tree (git archive) unpacked under `dest`; raises ValueError naming an unknown
    commit or a checkout without git."""
    try:
        tar = subprocess.run(
            ["git", "-C", str(REPO), "archive", "--format=tar", commit],
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        err = getattr(e, "stderr", b"") or b""
        raise ValueError(f"cannot archive commit {commit!r}: {err.decode(errors='replace')}") from e
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        tf.extractall(dest, filter="data")
    return dest


def backtest_module(tree: Path) -> str:
    """Where that tree keeps the backtest command."""
    if (tree / "services" / "commands" / "backtest.py").exists():
        return "services.commands.backtest"
    return "services.backtest"


def timed(cmd: list[str], cwd: Path) -> dict[str, Any]:
    """Run `cmd` in `cwd` with only that tree importable; wall and CPU seconds and its stdout."""
    # both sides with their own shipped config: a POLYEDGE_CONFIG written for this tree (new
    # fields) would make the old commit refuse to start
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "POLYEDGE_CONFIG")}
    env["PYTHONPATH"] = str(cwd)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "rc": p.returncode,
        "stdout": p.stdout,
        "stderr": p.stderr.decode(errors="replace")[-2000:],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="polyedge backtest-speed", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--old", default=DEFAULT_OLD, help=f"commit to compare with ({DEFAULT_OLD})")
    ap.add_argument("--sim-seed", type=int, default=1)
    ap.add_argument("--windows", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=1, help="old/new/new rounds (medians taken)")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    args = ap.parse_args(argv)
    if args.windows < 1 or args.rounds < 1:
        ap.error("--windows and --rounds must be >= 1")
    bt_args = ["--sim-seed", str(args.sim_seed), "--windows", str(args.windows), "--json"]
    load_start = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="polyedge-old-"))
    try:
        try:
            old_tree = extract(args.old, tmp)
        except ValueError as e:
            print(f"polyedge backtest-speed: {e}", file=sys.stderr)
            return 2
        old_cmd = [sys.executable, "-m", backtest_module(old_tree), *bt_args]
        new_cmd = [sys.executable, "-m", backtest_module(REPO), *bt_args]
        runs: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
        for _ in range(args.rounds):
            runs["old"].append(timed(old_cmd, old_tree))
            runs["new"].append(timed(new_cmd, REPO))
            runs["new"].append(timed(new_cmd, REPO))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    failed = [r for rs in runs.values() for r in rs if r["rc"] != 0]
    outputs = {r["stdout"] for r in runs["new"]}
    old_wall = statistics.median(r["wall_s"] for r in runs["old"])
    new_wall = statistics.median(r["wall_s"] for r in runs["new"])
    doc = {
        "command": "polyedge backtest " + " ".join(bt_args),
        "old_commit": args.old,
        "old": {
            "wall_s": [r["wall_s"] for r in runs["old"]],
            "cpu_s": [r["cpu_s"] for r in runs["old"]],
        },
        "new": {
            "wall_s": [r["wall_s"] for r in runs["new"]],
            "cpu_s": [r["cpu_s"] for r in runs["new"]],
        },
        "old_wall_median_s": old_wall,
        "new_wall_median_s": new_wall,
        "ratio_wall": round(old_wall / new_wall, 2) if new_wall else None,
        "ratio_cpu": round(
            statistics.median(r["cpu_s"] for r in runs["old"])
            / max(1e-9, statistics.median(r["cpu_s"] for r in runs["new"])),
            2,
        ),
        "new_outputs_identical": len(outputs) == 1,
        "load_avg_1m_start": round(load_start, 2),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "failed": [r["stderr"] for r in failed],
    }
    if args.json:
        sys.stdout.write(json.dumps(doc) + "\n")
    else:
        print(f"command       {doc['command']}")
        print(f"old ({args.old})  wall {doc['old']['wall_s']} s  cpu {doc['old']['cpu_s']} s")
        print(f"new (this tree) wall {doc['new']['wall_s']} s  cpu {doc['new']['cpu_s']} s")
        print(f"ratio old/new  wall {doc['ratio_wall']}  cpu {doc['ratio_cpu']}")
        print(f"new outputs byte-identical: {doc['new_outputs_identical']}")
        print(
            f"load average (1 min): {doc['load_avg_1m_start']} at the start, "
            f"{doc['load_avg_1m']} at the end"
        )
        for err in doc["failed"]:
            print(f"a run failed:\n{err}", file=sys.stderr)
    return 0 if doc["new_outputs_identical"] and not failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
