"""Book statistics of the real recorded markets beside the simulated venue's, the same way for
both: `python -m services.simvenue.calibrate [--real DIR] [--seed N] [--windows K] [--json]`.

Real: `data/real/clob_books/` (CronosVirus00's recordings, CC BY 4.0: full-depth `book` frames
~10 a second per token). Sim: `SimMarket` frames through ingest's parser and books
(`services.ingest.book.BookSet`), sampled every 0.1 s per token like the recorder. Statistics
(per token, while the mid is within 0.1-0.9, i.e. not decided): spread (share at 1, 2, >= 3
ticks), top-of-book size, depth within 5 ticks of the best (shares), levels per side, top-of-book
changes per second, mid change over 1 s and 10 s (sd, median absolute, share unchanged). And for
the sim, whether its books give away its own fair value: sd of (sim fair value - mid) and the
share of that gap the mid closes within 10 s (a lagging book a model can read is free money).
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics as st
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

DEFAULT_REAL = "/work/shared/data/real/clob_books"
S = 1_000_000_000
SAMPLE_NS = S // 10  # the recorder's ~10 frames a second per token


class _Acc:
    """Accumulates one source's samples: (ts_s, bids, asks) per token, best first."""

    def __init__(self) -> None:
        self.spread: list[float] = []
        self.top: list[float] = []
        self.depth5: list[float] = []
        self.levels: list[int] = []
        self.top_changes_per_s: list[float] = []
        self.d1: list[float] = []
        self.d10: list[float] = []

    def token(
        self, rows: list[tuple[float, list[tuple[float, float]], list[tuple[float, float]]]]
    ) -> None:
        rows = [r for r in rows if r[1] and r[2]]
        if len(rows) < 20:
            return
        span = rows[-1][0] - rows[0][0]
        tops = [(r[1][0][0], r[2][0][0]) for r in rows]
        if span > 0:
            self.top_changes_per_s.append(
                sum(1 for a, b in zip(tops, tops[1:], strict=False) if a != b) / span
            )
        mids = [(r[0], (r[1][0][0] + r[2][0][0]) / 2) for r in rows]
        step = max(1, len(rows) // 400)
        for _ts, bids, asks in rows[::step]:
            bb, ba = bids[0][0], asks[0][0]
            if not 0.1 <= (bb + ba) / 2 <= 0.9:
                continue
            self.spread.append(round(ba - bb, 4))
            self.top.append((bids[0][1] + asks[0][1]) / 2)
            self.depth5.append(
                (
                    sum(s for p, s in bids if p >= bb - 0.045)
                    + sum(s for p, s in asks if p <= ba + 0.045)
                )
                / 2
            )
            self.levels.append((len(bids) + len(asks)) // 2)
        k1 = k10 = 0
        for i, (ts, m) in enumerate(mids):
            if not 0.1 <= m <= 0.9:
                continue
            for lag, out in ((1.0, self.d1), (10.0, self.d10)):
                k = max(i, k1 if lag == 1.0 else k10)
                while k < len(mids) and mids[k][0] < ts + lag:
                    k += 1
                if lag == 1.0:
                    k1 = k
                else:
                    k10 = k
                if k < len(mids) and mids[k][0] - ts < lag + 1.0:
                    out.append(mids[k][1] - m)

    def summary(self) -> dict[str, Any]:
        def q(xs: list[float], p: float) -> float:
            xs = sorted(xs)
            return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")

        def share(xs: Iterable[float], f: Any) -> float:
            xs = list(xs)
            return round(sum(1 for x in xs if f(x)) / len(xs), 3) if xs else float("nan")

        return {
            "tokens": len(self.top_changes_per_s),
            "spread_median": q(self.spread, 0.5),
            "spread_mean": round(st.mean(self.spread), 4) if self.spread else None,
            "spread_1_tick": share(self.spread, lambda s: abs(s - 0.01) < 1e-6),
            "spread_2_ticks": share(self.spread, lambda s: abs(s - 0.02) < 1e-6),
            "spread_3plus_ticks": share(self.spread, lambda s: s >= 0.0299),
            "top_size_median": round(q(self.top, 0.5), 1),
            "depth5_median": round(q(self.depth5, 0.5), 1),
            "depth5_p10_p90": [round(q(self.depth5, 0.1), 1), round(q(self.depth5, 0.9), 1)],
            "levels_per_side_median": q([float(x) for x in self.levels], 0.5),
            "top_changes_per_s_median": round(q(self.top_changes_per_s, 0.5), 2),
            "mid_change_1s_sd": round(st.pstdev(self.d1), 4) if self.d1 else None,
            "mid_change_1s_mad": round(q([abs(x) for x in self.d1], 0.5), 4),
            "mid_unchanged_1s": share(self.d1, lambda x: abs(x) < 1e-9),
            "mid_change_10s_sd": round(st.pstdev(self.d10), 4) if self.d10 else None,
            "mid_change_10s_mad": round(q([abs(x) for x in self.d10], 0.5), 4),
            "mid_unchanged_10s": share(self.d10, lambda x: abs(x) < 1e-9),
        }


def _levels(raw: list[dict[str, str]], bids: bool) -> list[tuple[float, float]]:
    lv = [(float(x["price"]), float(x["size"])) for x in raw]
    return sorted(lv, key=lambda x: -x[0] if bids else x[0])


def real_stats(folder: str = DEFAULT_REAL) -> dict[str, Any]:
    acc = _Acc()
    for f in sorted(Path(folder).glob("*.jsonl.gz")):
        per: dict[str, list[Any]] = {}
        with gzip.open(f, "rt") as fh:
            for line in fh:
                r = json.loads(line)
                fr = json.loads(r["frame"])
                per.setdefault(fr["asset_id"], []).append(
                    (r["recv_ts"], _levels(fr["bids"], True), _levels(fr["asks"], False))
                )
        for rows in per.values():
            rows.sort(key=lambda x: x[0])
            acc.token(rows)
    return acc.summary()


def sim_stats(seed: int = 1, windows: int = 6, window_s: int = 300) -> dict[str, Any]:
    """The simulated market's books as ingest builds them, sampled like the recorder; plus how
    much of its own fair value the book gives away."""
    from services.ingest.book import BookSet
    from services.ingest.parsers import BookSnapshot, parse_clob
    from services.simvenue.market import SimMarket

    start = 1_800_000_000 // window_s * window_s * S + S
    m = SimMarket(seed, window_s, start)
    books = BookSet()
    per: dict[str, list[Any]] = {}
    gaps: list[tuple[float, float, float]] = []  # (t, fair - mid now, fair-gap closed in 10 s)
    pending: list[tuple[float, float, float]] = []  # (t, fair, mid) waiting for t + 10 s
    t = start
    end = start + windows * window_s * S
    next_sample = start
    while t < end:
        t += SAMPLE_NS
        for _, channel, frame in m.advance(t):
            if not channel.startswith("market"):
                continue
            for ev in parse_clob(frame, t):
                a = getattr(ev, "asset_id", "")
                if a and a not in books.books:
                    books.follow(a)
                if isinstance(ev, BookSnapshot):
                    books.on_snapshot(ev)
                elif type(ev).__name__ == "BookDelta":
                    books.on_delta(ev, t)
        if t < next_sample:
            continue
        next_sample += SAMPLE_NS
        w = m.current_window()
        if w is None:
            continue
        for token in w.tokens:
            b = books.books.get(token)
            if b is None or not b.in_sync:
                continue
            per.setdefault(token, []).append((t / S, list(b.bids), list(b.asks)))
        b = books.books.get(w.up_token)
        if b is not None and b.mid is not None and w.price_to_beat is not None:
            # the sim's own truth (Binance now, the true basis to Chainlink): what a model that
            # knew the sim's process would price; a book that trails it predictably is an edge
            fair = m.fair_up(w, t, m.log_price, 1.0, getattr(m, "basis", 0.0))
            mid = b.mid
            pending.append((t / S, fair, mid))
            while pending and pending[0][0] <= t / S - 10:
                t0, f0, m0 = pending.pop(0)
                if 0.1 <= f0 <= 0.9 and abs(f0 - m0) > 1e-9:
                    gaps.append((t0, f0 - m0, (mid - m0) / (f0 - m0)))
    acc = _Acc()
    for rows in per.values():
        acc.token(rows)
    out = acc.summary()
    if gaps:
        out["fair_minus_mid_sd"] = round(st.pstdev(g[1] for g in gaps), 4)
        big = [g for g in gaps if abs(g[1]) >= 0.03]
        out["gap_closed_in_10s_median"] = round(st.median(g[2] for g in big), 3) if big else None
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m services.simvenue.calibrate", description=__doc__)
    ap.add_argument("--real", default=DEFAULT_REAL, help="folder of real book recordings")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--windows", type=int, default=6)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    real = real_stats(args.real) if Path(args.real).is_dir() else {}
    sim = sim_stats(args.seed, args.windows)
    # what this report ran with (it uses the simulated market's own parameters, no strategy
    # config): so two reports can be told apart
    used = {
        "real": args.real if real else None,
        "seed": args.seed,
        "windows": args.windows,
        "strategy_config": None,
    }
    if args.json:
        print(json.dumps({"config": used, "real": real, "sim": sim}, indent=1))
        return 0
    print(
        f"config: real {used['real'] or '(none found)'}  sim seed {args.seed}  "
        f"windows {args.windows}  (no strategy config: book statistics only)"
    )
    keys = list(dict.fromkeys([*real, *sim]))
    print(f"{'statistic':32} {'real':>22} {'sim':>22}")
    for k in keys:
        print(f"{k:32} {str(real.get(k, '-')):>22} {str(sim.get(k, '-')):>22}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
