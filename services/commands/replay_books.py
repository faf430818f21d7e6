"""`polyedge replay-books PATH...`: real recorded CLOB market-channel frames through ingest's own
parser and core (books, the checks that mark a book out of sync), at the recording's own rate,
reporting parse errors, crossed or out-of-sync books published, and the per-frame cost.

Input: files (or folders of them) of JSON lines `{"recv_ts": <unix s>, "frame": "<text>"}`,
gzipped or not: the format of `data/real/clob_books/` (CronosVirus00's BTC 5-minute book
recordings, CC BY 4.0; one file per market `btc-updown-5m-<start>.jsonl.gz`). Each file is one
market: its tokens are followed as their first frame names them, window times come from the slug.
Per-frame cost is parse + core (book checks) + the snapshot to publish, as wall time and as the
thread's CPU time (the latter without the preemption of a loaded machine). Exit status 1 when any
frame failed to parse or any published book was crossed.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common.schema import BookSnapshot, MarketInfo
from services.ingest import parsers
from services.ingest.core import IngestCore

S = 1_000_000_000


def files_of(paths: list[str]) -> list[Path]:
    """Every `*.jsonl` / `*.jsonl.gz` under the given files or folders, sorted; ValueError
    naming a path that does not exist or holds none."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted([*p.glob("*.jsonl.gz"), *p.glob("*.jsonl")])
            if not found:
                raise ValueError(f"{p}: no *.jsonl or *.jsonl.gz files")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise ValueError(f"{p}: no such file or folder")
    return out


def frames_of(path: Path) -> Iterator[tuple[int, str]]:
    """(receive time ns, frame text) per line; ValueError naming the file (and line) that is
    not a recording: not gzip (a `.gz` name), corrupt, not UTF-8, a line that is not a record."""
    try:
        yield from _records(path)
    except (gzip.BadGzipFile, EOFError, zlib.error, UnicodeDecodeError) as e:
        what = "not UTF-8 text" if isinstance(e, UnicodeDecodeError) else "not a readable gzip file"
        raise ValueError(f"{path}: {what} ({e})") from None


def _records(path: Path) -> Iterator[tuple[int, str]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:  # type: ignore[operator]
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                ts = int(round(float(rec["recv_ts"]) * S))
                frame = rec["frame"]
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{path}:{n}: not a {{recv_ts, frame}} record ({e})") from None
            if not isinstance(frame, str):
                raise ValueError(f"{path}:{n}: frame is not a text frame")
            yield ts, frame


def _fails(text: str) -> bool:
    try:
        parsers.parse_clob(text, 0)
    except parsers.ParseError:
        return True
    return False


def _window(path: Path, first_assets: list[str]) -> MarketInfo:
    slug = path.name.split(".")[0]
    start = parsers.slug_start_s(slug) or 0
    return MarketInfo(
        slug=slug,
        condition_id="",
        up_token_id=first_assets[0],
        down_token_id=first_assets[1] if len(first_assets) > 1 else first_assets[0] + "-other",
        window_start_ns=start * S,
        window_end_ns=(start + 300) * S,
        ts_recv_ns=start * S,
    )


def _pct(xs: list[int], q: float) -> float:
    if not xs:
        return 0.0
    return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))] / 1000.0


def replay_file(path: Path) -> dict[str, Any]:
    """One market's recording through a fresh ingest core; its figures."""
    frames = list(frames_of(path))
    assets: list[str] = []
    for _, text in frames:  # tokens as the recording names them, in order of appearance
        try:
            for ev in parsers.parse_clob(text, 0):
                a = getattr(ev, "asset_id", "")
                if a and a not in assets:
                    assets.append(a)
        except parsers.ParseError:
            continue
        if len(assets) >= 2:
            break
    if not assets:
        if not frames:
            raise ValueError(f"{path}: no frame (an empty recording)")
        if not any(_fails(text) for _, text in frames):
            raise ValueError(f"{path}: no frame names an asset")
        # frames that don't parse are the parse errors this command reports (exit 1), the same
        # as in a recording whose other frames parse
        assets = ["unknown"]
    core = IngestCore()
    core.feed("clob").connected = True
    core.step(_window(path, assets), frames[0][0] if frames else 0)
    costs: list[int] = []
    cpu: list[int] = []  # thread CPU time: the cost without the machine's other load
    errors = published = crossed = out_of_sync = levels = 0
    first = last = 0
    for ts, text in frames:
        first = first or ts
        last = ts
        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        try:
            out = core.on_clob(parsers.parse_clob(text, ts), ts)
        except parsers.ParseError:
            errors += 1
            continue
        cpu.append(time.thread_time_ns() - c0)
        costs.append(time.perf_counter_ns() - t0)
        for _, msg in out:
            if isinstance(msg, BookSnapshot):
                published += 1
                levels += len(msg.bids) + len(msg.asks)
                if msg.best_bid is not None and msg.best_ask is not None:
                    crossed += msg.best_bid >= msg.best_ask
                out_of_sync += not msg.in_sync
    costs.sort()
    cpu.sort()
    span = (last - first) / S
    st = core.books.stats
    return {
        "file": path.name,
        "frames": len(frames),
        "parse_errors": errors,
        "books_published": published,
        "crossed_published": crossed,
        "out_of_sync_published": out_of_sync,
        "book_checks": {
            "crossed": st.crossed,
            "mismatches": st.mismatches,
            "sequence": st.sequence,
            "dropped_unknown": st.dropped_unknown,
        },
        "seconds": round(span, 1),
        "frames_per_s": round(len(frames) / span, 1) if span > 0 else 0.0,
        "mean_levels": round(levels / published, 1) if published else 0.0,
        "cost_us": {
            "p50": _pct(costs, 0.5),
            "p99": _pct(costs, 0.99),
            "max": _pct(costs, 1.0),
            "mean": round(sum(costs) / len(costs) / 1000.0, 2) if costs else 0.0,
        },
        "cpu_us": {
            "p50": _pct(cpu, 0.5),
            "p99": _pct(cpu, 0.99),
            "mean": round(sum(cpu) / len(cpu) / 1000.0, 2) if cpu else 0.0,
        },
        "_costs": costs,
        "_cpu": cpu,
    }


def run(paths: list[str]) -> dict[str, Any]:
    per = [replay_file(p) for p in files_of(paths)]
    costs = sorted(c for r in per for c in r.pop("_costs"))
    cpu = sorted(c for r in per for c in r.pop("_cpu"))
    span = sum(r["seconds"] for r in per)
    total = {
        "markets": len(per),
        "frames": sum(r["frames"] for r in per),
        "parse_errors": sum(r["parse_errors"] for r in per),
        "books_published": sum(r["books_published"] for r in per),
        "crossed_published": sum(r["crossed_published"] for r in per),
        "out_of_sync_published": sum(r["out_of_sync_published"] for r in per),
        "frames_per_s": round(sum(r["frames"] for r in per) / span, 1) if span > 0 else 0.0,
        "cost_us": {
            "p50": _pct(costs, 0.5),
            "p99": _pct(costs, 0.99),
            "max": _pct(costs, 1.0),
            "mean": round(sum(costs) / len(costs) / 1000.0, 2) if costs else 0.0,
        },
        "cpu_us": {
            "p50": _pct(cpu, 0.5),
            "p99": _pct(cpu, 0.99),
            "mean": round(sum(cpu) / len(cpu) / 1000.0, 2) if cpu else 0.0,
        },
    }
    return {"total": total, "markets": per}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="polyedge replay-books", description=__doc__)
    ap.add_argument("paths", nargs="+", help="recording files or folders of them")
    ap.add_argument("--json", action="store_true", help="the full report as JSON")
    args = ap.parse_args(argv)
    try:
        rep = run(args.paths)
    except (ValueError, OSError) as e:
        print(f"polyedge replay-books: {e}", file=sys.stderr)
        return 2
    t = rep["total"]
    if args.json:
        print(json.dumps(rep, indent=1))
    else:
        for r in rep["markets"]:
            print(
                f"{r['file']}: {r['frames']} frames ({r['frames_per_s']}/s), "
                f"{r['parse_errors']} parse errors, {r['books_published']} books, "
                f"{r['crossed_published']} crossed, {r['out_of_sync_published']} out of sync, "
                f"cost p50 {r['cost_us']['p50']} us p99 {r['cost_us']['p99']} us"
            )
        print(
            f"TOTAL {t['markets']} markets, {t['frames']} frames ({t['frames_per_s']}/s), "
            f"{t['parse_errors']} parse errors, {t['books_published']} books published, "
            f"{t['crossed_published']} crossed, {t['out_of_sync_published']} out of sync; "
            f"per frame (wall) p50 {t['cost_us']['p50']} us, p99 {t['cost_us']['p99']} us, "
            f"mean {t['cost_us']['mean']} us; (CPU) p50 {t['cpu_us']['p50']} us, "
            f"p99 {t['cpu_us']['p99']} us"
        )
    return 1 if t["parse_errors"] or t["crossed_published"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
