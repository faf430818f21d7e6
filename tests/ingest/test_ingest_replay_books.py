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


def test_a_file_that_is_not_a_recording_is_named_and_a_bad_frame_is_a_parse_error(
    tmp_path: Path,
) -> None:
    """BREAKER3 finding 9: random bytes named .gz said `Not a gzipped file (b'mV')` without the
    file; a recording whose only frame is not JSON said "no frame names an asset" (exit 2)
    where the README promises exit 1 on a parse error. In the real CLI now: exit 2 naming the
    file for what is not a recording; a frame that does not parse is a parse error, exit 1."""
    import subprocess
    import sys

    from tests.conftest import REPO

    def cli(*paths: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "services.commands.cli", "replay-books", *map(str, paths)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )

    noise = bytes((i * 167 + 13) % 256 for i in range(1000))
    refused = {
        "rand.jsonl.gz": (noise, "not a readable gzip file"),
        "cut.jsonl.gz": (SUBSET.read_bytes()[:300], "not a readable gzip file"),
        "rand.jsonl": (noise, "not UTF-8"),
        "garbage.jsonl.gz": (gzip.compress(b"garbage\n"), "not a {recv_ts, frame} record"),
        "empty.jsonl": (b"", "no frame"),
    }
    for name, (content, words) in refused.items():
        (tmp_path / name).write_bytes(content)
        r = cli(tmp_path / name)
        assert r.returncode == 2 and not r.stdout, (name, r.stdout, r.stderr)
        line = r.stderr.strip()
        assert "\n" not in line and str(tmp_path / name) in line and words in line, (name, line)
    notjson = tmp_path / "btc-updown-5m-1776081900.jsonl"
    notjson.write_text('{"recv_ts": 1, "frame": "not json"}\n')
    r = subprocess.run(
        [sys.executable, "-m", "services.commands.cli", "replay-books", str(notjson), "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1, r.stderr
    total = json.loads(r.stdout)["total"]
    assert (total["frames"], total["parse_errors"], total["books_published"]) == (1, 1, 0)
    assert total["frames_per_s"] == 0.0  # one frame spans no time
    # a frame that parses but names no asset (an empty event list) is still not a recording
    (tmp_path / "none.jsonl").write_text('{"recv_ts": 1, "frame": "[]"}\n')
    r = cli(tmp_path / "none.jsonl")
    assert r.returncode == 2 and "no frame names an asset" in r.stderr, r.stderr
