"""The command line: --only-if-sim, argument errors, --fault at start-up, and replay."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from services.ingest.capture import CaptureWriter, capture_files
from services.simvenue import main
from tests.simvenue.conftest import ROOT, start_sim, stop_sim


def test_only_if_sim_exits_zero_when_venue_is_live(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("POLYEDGE_VENUE", raising=False)
    monkeypatch.delenv("POLYEDGE_ENV_FILE")  # read ./.env as an operator's start does
    (tmp_path / ".env").write_text("POLYEDGE_VENUE=live\n")
    assert main(["--only-if-sim", "--port", "0"]) == 0


def test_bad_arguments_fail_clearly() -> None:
    for argv in (
        ["--window-seconds", "1"],
        ["--port", "70000"],
        ["--fault", "meteor"],
        ["--replay", "/nonexistent/capture.jsonl"],
    ):
        r = subprocess.run(
            [sys.executable, "-m", "services.simvenue", *argv],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "POLYEDGE_VENUE": "sim"},
        )
        assert r.returncode != 0, argv
        assert "error" in r.stderr.lower(), r.stderr


def test_fault_flag_applies_at_start() -> None:
    s = start_sim("--window-seconds", "10", "--fault", "gamma_5xx:count=2")
    try:
        r = httpx.get(f"{s.http}/gamma/events")
        assert r.status_code == 503
        assert httpx.get(f"{s.http}/sim/state").json()["faults"][0]["name"] == "gamma_5xx"
    finally:
        stop_sim(s)


@pytest.mark.parametrize("gzipped", [False, True], ids=["jsonl", "gzip"])
def test_replay_plays_capture_through_the_sockets(tmp_path: Path, gzipped: bool) -> None:
    """Plain JSON lines, and (BREAKER3 finding 5) ingest's gzip capture as the README's
    `INGEST_CAPTURE=1` workflow writes it, which ended in a UnicodeDecodeError traceback."""
    base = 1_790_877_850_000_000_000
    lines = []
    for i in range(6):
        data = {
            "e": "aggTrade",
            "E": 1,
            "s": "BTCUSDT",
            "a": i,
            "p": "84000.00000000",
            "q": "0.01000000",
            "f": i,
            "l": i,
            "T": 1,
            "m": False,
            "M": True,
        }
        lines.append(
            {
                "ts_recv_ns": base + i * 100_000_000,
                "channel": "binance",
                "frame": json.dumps({"stream": "btcusdt@aggTrade", "data": data}),
            }
        )
    lines.append(
        {
            "ts_recv_ns": base + 700_000_000,
            "channel": "polymarket_market",
            "frame": json.dumps(
                {
                    "event_type": "last_trade_price",
                    "asset_id": "42",
                    "market": "0x1",
                    "price": "0.5",
                    "size": "1",
                    "side": "BUY",
                    "timestamp": "1",
                    "fee_rate_bps": "0",
                }
            ),
        }
    )
    if gzipped:  # written by ingest's own writer
        writer = CaptureWriter(tmp_path)
        for x in lines:
            writer.write(x["ts_recv_ns"], x["channel"], x["frame"])
        writer.close()
        (cap,) = capture_files(tmp_path)
    else:
        cap = tmp_path / "capture.jsonl"
        cap.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n")
    # Half speed: the 0.7 s capture takes 1.4 s, starting when the first client connects.
    s = start_sim("--replay", str(cap), "--speed", "0.5")
    try:

        async def go() -> tuple[list[int], dict]:
            async with (
                connect(f"{s.ws}/ws/btcusdt@aggTrade") as bws,
                connect(f"{s.ws}/ws/market") as mws,
            ):
                await mws.send(json.dumps({"assets_ids": ["42"], "type": "market"}))
                got = [json.loads(await asyncio.wait_for(bws.recv(), 5))["a"] for _ in range(3)]
                m = json.loads(await asyncio.wait_for(mws.recv(), 5))
            return got, m

        got, m = asyncio.run(go())
        assert got == sorted(got) and len(got) == 3
        assert m["event_type"] == "last_trade_price" and m["asset_id"] == "42"
        assert httpx.get(f"{s.http}/sim/health").json()["mode"] == "replay"
    finally:
        stop_sim(s)


def test_a_file_that_is_not_a_capture_is_refused_naming_it(tmp_path: Path) -> None:
    """BREAKER3 finding 5: random bytes (named .jsonl or .jsonl.gz), a gzip of garbage and a
    file without one replayable frame gave a traceback (or a venue replaying nothing); now
    exit 2 and one line naming the file and the problem, before the port is taken."""
    import gzip

    rand = bytes((i * 167 + 13) % 256 for i in range(1000))
    cases = {
        "rand.jsonl": (rand, "not a capture"),
        "rand.jsonl.gz": (rand, "not a capture"),
        "garbage.jsonl.gz": (gzip.compress(b"garbage\n"), "not a capture line"),
        "corrupt.jsonl.gz": (gzip.compress(b"x" * 1000)[:12] + rand, "not a gzip capture"),
        "user_only.jsonl": (b'{"ts_recv_ns": 1, "channel": "user", "frame": "{}"}\n', "no frame"),
    }
    for name, (content, words) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        r = subprocess.run(
            [sys.executable, "-m", "services.commands.cli", "sim", "--replay", str(path)]
            + ["--port", "0"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "POLYEDGE_VENUE": "sim"},
        )
        assert r.returncode == 2, (name, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and str(path) in lines[0] and words in lines[0], (name, r.stderr)
        assert "listening" not in r.stdout
