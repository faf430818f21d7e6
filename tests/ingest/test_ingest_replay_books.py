"""Real frames at real rates (issue 14): real recorded CLOB `book` frames (CronosVirus00's
"Polymarket BTC Orderbook Dataset", CC BY 4.0: a 120-record subset in
fixtures/clob_books/ with its LICENSE) through ingest's parser and core via
`polyedge replay-books`: every frame parses, no published book is crossed, the cost per frame is
reported. The full 29-market replay is `polyedge replay-books data/real/clob_books/` (README)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from services.commands import replay_books
from tests.conftest import FIXTURES

SUBSET = FIXTURES / "clob_books" / "btc-updown-5m-1776081900.head120.jsonl.gz"


def test_real_recorded_books_parse_and_are_never_published_crossed() -> None:
    rep = replay_books.run([str(SUBSET)])
    t = rep["total"]
    assert (t["frames"], t["parse_errors"]) == (120, 0)
    assert t["books_published"] == 120 and t["crossed_published"] == 0
    assert t["out_of_sync_published"] == 0  # the venue's own snapshots are consistent
    (m,) = rep["markets"]
    assert m["mean_levels"] > 50 and m["frames_per_s"] > 1  # full depth, at the recorded rate
    assert 0 < t["cost_us"]["p50"] <= t["cost_us"]["p99"] and t["cpu_us"]["p50"] > 0


def test_cli_exit_status_and_a_crossed_frame_is_not_published_crossed(tmp_path: Path) -> None:
    assert replay_books.main([str(SUBSET)]) == 0
    # the same market with one frame edited so its book crosses (best bid above best ask)
    lines = gzip.open(SUBSET, "rt").read().splitlines()
    rec = json.loads(lines[5])
    frame = json.loads(rec["frame"])
    best_ask = min(float(a["price"]) for a in frame["asks"])
    frame["bids"].append({"price": f"{best_ask + 0.01:.2f}", "size": "10"})
    rec["frame"] = json.dumps(frame)
    lines[5] = json.dumps(rec)
    lines.append('{"recv_ts": 1776081999.0, "frame": "{not json"}')
    bad = tmp_path / "btc-updown-5m-1776081900.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    rep = replay_books.run([str(bad)])
    t = rep["total"]
    assert t["parse_errors"] == 1 and t["crossed_published"] == 0
    assert t["out_of_sync_published"] >= 1  # marked, trimmed, never crossed
    assert replay_books.main([str(bad)]) == 1  # a parse error fails the run
    assert replay_books.main([str(tmp_path / "missing")]) == 2
