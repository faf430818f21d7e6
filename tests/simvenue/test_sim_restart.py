"""A restart of the simulated venue keeps every outcome it announced (breaker3 finding 4).

The real venue resolves each window once, from its own price path, and Gamma keeps closed markets
with that resolution (PROTOCOLS.md section 7). A restarted sim starts a new path (README: the path
is a function of seed and start time), and before this fix its silent warm-up resolved the window
before its first one again from that new path and appended the result to
`data/sim/windows-seed<N>.jsonl`, overriding what the first run had announced (ingest then
published `market_resolved` twice for one window, Down then Up). Here: two consecutive real
processes on one data dir and seed, as the report's reproduction did."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from services.simvenue.market import NS, SimMarkets
from tests.simvenue.conftest import ROOT, SimProc, start_sim, stop_sim, wait_for

WINDOW_S = 12
SEED = 21
RESOLVE_DELAY_S = max(1, int(min(54.0, 0.15 * WINDOW_S)))  # market.py `_resolve_at`


def _answers(sim: SimProc, slug: str) -> dict:
    """What the venue's REST says about `slug`: Gamma's event (price to beat, final price, the
    market's outcome prices and resolution status) and the CLOB market's winning outcome."""
    ev = httpx.get(f"{sim.http}/gamma/events/slug/{slug}", timeout=5)
    assert ev.status_code == 200, (slug, ev.status_code, ev.text)
    doc = ev.json()
    m = doc["markets"][0]
    clob = httpx.get(f"{sim.http}/clob/markets/{m['conditionId']}", timeout=5).json()
    return {
        "price_to_beat": doc["eventMetadata"].get("priceToBeat"),
        "final_price": doc["eventMetadata"].get("finalPrice"),
        "outcome_prices": m["outcomePrices"],
        "uma": m["umaResolutionStatus"],
        "clob_winner": [t["outcome"] for t in clob["tokens"] if t["winner"]],
    }


def _outcomes(path: Path) -> dict[int, set[tuple[str, float | None]]]:
    """Every (winner, price to beat) the windows file holds, by window start."""
    out: dict[int, set[tuple[str, float | None]]] = {}
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if "winner" in rec:
            out.setdefault(rec["start_s"], set()).add((rec["winner"], rec["price_to_beat"]))
    return out


def _winner(a: dict) -> str:
    return "Up" if json.loads(a["outcome_prices"]) == ["1", "0"] else "Down"


def test_a_restart_keeps_every_outcome_and_price_to_beat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYEDGE_DATA_DIR", str(tmp_path / "data"))
    archive = tmp_path / "data" / "sim" / f"windows-seed{SEED}.jsonl"
    args = ("--window-seconds", str(WINDOW_S), "--seed", str(SEED))

    run1 = start_sim(*args)
    try:
        s0 = run1.state()["current"]["start"]
        # stop 2-5 s into a window whose predecessor has resolved (1 s after its end), so run 2
        # starts inside the window run 1 stopped in: its warm-up then passes through the window
        # before, which run 1 resolved (the window the old venue resolved a second time)
        wait_for(
            lambda: (t := time.time()) >= s0 + 2 * WINDOW_S + 2 and 2 <= t % WINDOW_S <= 5,
            4 * WINDOW_S,
            0.05,
            what="2 s into a window after two resolved ones",
        )
        stopped_in = run1.state()["current"]["start"]
        ended = list(range(s0, stopped_in, WINDOW_S))
        before = {s: _answers(run1, f"btc-updown-5m-{s}") for s in ended}
    finally:
        stop_sim(run1)
    assert len(ended) >= 2
    for s, a in before.items():
        assert a["uma"] == "resolved" and a["price_to_beat"] is not None, (s, a)
        assert a["clob_winner"] == [_winner(a)], (s, a)

    run2 = start_sim(*args)
    try:
        # a second venue on the same windows file is refused while this one runs
        third = subprocess.run(
            [sys.executable, "-m", "services.simvenue", "--port", "0", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert third.returncode == 3, third.stdout + third.stderr
        assert str(archive) in third.stderr and "another simulated venue" in third.stderr

        # every window run 1 resolved: the same answers from run 2
        for s in ended:
            assert _answers(run2, f"btc-updown-5m-{s}") == before[s], s

        # the window run 1 stopped in resolves once, as run 1 fixed it when it stopped
        file_rec = [
            r
            for r in map(json.loads, archive.read_text().splitlines())
            if r["start_s"] == stopped_in and "winner" in r
        ]
        assert len(file_rec) == 1 and file_rec[0]["stopped_s"] >= stopped_in, file_rec
        slug = f"btc-updown-5m-{stopped_in}"
        if run2.state()["current"]["start"] == stopped_in:  # run 2 started inside it
            cur = run2.state()["current"]
            assert cur["stopped_s"] == file_rec[0]["stopped_s"] and not cur["void"]
            m = httpx.get(f"{run2.http}/gamma/markets/slug/{slug}", timeout=5).json()
            assert m["acceptingOrders"] is False
        stopped = wait_for(
            lambda: (a := _answers(run2, slug))["uma"] == "resolved" and a,
            WINDOW_S + RESOLVE_DELAY_S + 10,
            0.2,
            what="the stopped window to resolve in run 2",
        )
        assert _winner(stopped) == file_rec[0]["winner"]
        assert stopped["clob_winner"] == [file_rec[0]["winner"]]
        assert stopped["price_to_beat"] == file_rec[0]["price_to_beat"]
        assert stopped["final_price"] == file_rec[0]["final_price"]

        # run 2's own next window resolves from its own path, once
        own = stopped_in + WINDOW_S
        wait_for(
            lambda: _answers(run2, f"btc-updown-5m-{own}")["uma"] == "resolved",
            2 * WINDOW_S + RESOLVE_DELAY_S + 10,
            0.2,
            what="run 2's first own window to resolve",
        )
    finally:
        stop_sim(run2)

    # the file: one outcome per window, and run 1's for the windows run 1 resolved
    outcomes = _outcomes(archive)
    assert all(len(v) == 1 for v in outcomes.values()), outcomes
    for s in ended:
        assert outcomes[s] == {(_winner(before[s]), before[s]["price_to_beat"])}, s
    assert own in outcomes


def test_a_window_whose_venue_was_killed_is_void_and_never_resolves(tmp_path: Path) -> None:
    """Killed (no `stop`) during a window, the venue wrote no outcome for it: the restarted venue
    has no path for it, so it never resolves (no invented outcome), neither when the restart
    comes inside it nor after its end; the file gets no outcome for it."""
    archive = tmp_path / "windows.jsonl"
    series = [("btc", "5m", 10)]
    t0 = 1_796_000_003 * NS
    m1 = SimMarkets(3, series, t0, archive_path=archive)
    m1.advance(t0 + 20 * NS)  # into the window starting at ..020: opened, not ended; then killed
    killed = m1.first.current_window()
    assert killed is not None and killed.start_s == 1_796_000_020
    ptb = killed.price_to_beat

    m2 = SimMarkets(3, series, t0 + 24 * NS, archive_path=archive)  # restarted inside it
    w = m2.first.current_window()
    assert w is not None and w.start_s == killed.start_s
    assert w.void and w.halted and w.price_to_beat == ptb and not w.up_bids and not w.up_asks
    frames = m2.advance(t0 + 50 * NS)  # past its end and its resolution time
    assert not w.resolved and w.winner is None
    # nobody quotes it; its empty books still go out, so a client's market feed is not silent
    books = [json.loads(f) for _, ch, f in frames if ch == "market:" + w.condition_id]
    assert books and all(b["event_type"] == "book" for b in books), books[:3]
    assert all(b["bids"] == [] and b["asks"] == [] for b in books)
    assert not any(w.condition_id in f and "market_resolved" in f for _, _, f in frames)
    m3 = SimMarkets(3, series, t0 + 60 * NS, archive_path=archive)  # restarted after its end
    again = m3.window_by_slug(killed.slug)
    assert again is not None and again.void and not again.resolved
    # the windows the first run resolved kept their outcome in every later run
    first = 1_796_000_010
    assert m3.window_by_slug(f"btc-updown-5m-{first}").winner == m1.first.archive[first]["winner"]
    assert killed.start_s not in _outcomes(archive)
    assert all(len(v) == 1 for v in _outcomes(archive).values())
