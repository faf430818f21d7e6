"""The simulated venue with several series at once (issue 17): correlated spot paths with the
assets' relative volatilities, every series with its own books, resolution and settlement
feed, the real venues' message rates, and Binance's connection limits on the socket."""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import pytest
import websockets

from services.simvenue.market import ASSETS, NS, SimMarkets
from tests.conftest import FIXTURES, REPO, free_port, short_tmpdir, wait_for

T0 = 1_790_617_500 * NS + 3 * NS
EIGHT = [(a, w, s) for a in ("btc", "eth", "sol", "xrp") for w, s in (("5m", 10), ("15m", 30))]


def test_paths_do_not_depend_on_which_assets_are_listed() -> None:
    """BTC leads whether or not it is listed: eight series and the same without BTC's two move
    BTC and ETH alike (same seed, same start), chunked differently."""
    multi = SimMarkets(5, EIGHT, T0)
    alts = SimMarkets(5, [s for s in EIGHT if s[0] != "btc"], T0)
    for k in (1, 7, 20):
        multi.advance(T0 + k * NS)
        for j in range(1, 4):
            alts.advance(T0 + (k - 1) * NS + j * NS // 3)
        alts.advance(T0 + k * NS)
        assert multi.markets["btc-5m"].log_price == alts.group.leader.log_price
        assert multi.markets["eth-5m"].log_price == alts.markets["eth-5m"].log_price
    assert "btcusdt" not in {p.symbol for p in alts.group.paths.values()}


def test_correlated_paths_with_relative_volatilities() -> None:
    """1-second log returns over 30 simulated minutes: ETH/SOL/XRP follow BTC with about their
    configured correlation (beta) and volatility ratio (the figures in market.ASSETS)."""
    m = SimMarkets(11, [(a, "5m", 300) for a in ("btc", "eth", "sol", "xrp")], T0)
    paths = m.group.paths
    prices: dict[str, list[float]] = defaultdict(list)
    for k in range(1, 1801):
        m.advance(T0 + k * NS)
        m.out.heap.clear()  # the frames are not the point here
        for a, p in paths.items():
            prices[a].append(p.log_price)
    raw = {a: [b - x for x, b in zip(v, v[1:], strict=False)] for a, v in prices.items()}
    # the diffusion's co-movement, without the seconds where an asset jumped on its own
    mad = {a: statistics.median(abs(x) for x in r) for a, r in raw.items()}
    keep = [
        i for i in range(len(raw["btc"])) if all(abs(r[i]) < 8 * mad[a] for a, r in raw.items())
    ]
    assert len(keep) > 1700
    rets = {a: [r[i] for i in keep] for a, r in raw.items()}
    sd = {a: statistics.pstdev(r) for a, r in rets.items()}
    for a in ("eth", "sol", "xrp"):
        corr = statistics.correlation(rets["btc"], rets[a])
        assert abs(corr - ASSETS[a][3]) < 0.06, (a, corr)  # ~1,800 samples: sd ~0.01-0.02
        ratio, want = sd[a] / sd["btc"], ASSETS[a][2] / ASSETS["btc"][2]
        assert abs(ratio / want - 1) < 0.2, (a, ratio, want)
    assert statistics.correlation(rets["eth"], rets["sol"]) > 0.5  # through BTC: 0.9 x 0.8
    assert sd["btc"] * math.sqrt(365 * 24 * 3600) == pytest.approx(0.45, rel=0.25)


def test_every_series_has_books_resolution_and_a_settlement_feed_at_real_rates() -> None:
    m = SimMarkets(3, EIGHT, T0, book_ticker_hz=100.0, clob_update_hz=60.0)
    frames = m.advance(T0 + 65 * NS)
    by = Counter(ch for _, ch, _ in frames)
    secs = 65
    for a in ("btc", "eth", "sol", "xrp"):
        # Binance ~100 bookTicker + ~7 aggTrade a second per symbol (PROTOCOLS.md section 1)
        assert 90 <= by[f"binance:{a}usdt@bookTicker"] / secs <= 110, a
        assert 4 <= by[f"binance:{a}usdt@aggTrade"] / secs <= 10, a
    feeds = Counter(
        json.loads(fr)["payload"]["symbol"]
        for _, ch, fr in frames
        if ch == "rtds:crypto_prices_chainlink"
    )
    assert set(feeds) == {"btc/usd", "eth/usd", "sol/usd", "xrp/usd"}
    # per active market ~60 price_change a second (PROTOCOLS.md section 2: ~57/s observed)
    pc: Counter[str] = Counter()
    resolved: set[str] = set()
    for _, ch, fr in frames:
        if ch.startswith("market:"):
            d = json.loads(fr)
            if d.get("event_type") == "price_change":
                pc[ch] += 1
            elif d.get("event_type") == "market_resolved":
                w = m.window_by_condition(d["market"])
                assert w is not None and d["winning_outcome"] == w.winner
                resolved.add(w.key)
    per_series: dict[str, list[float]] = defaultdict(list)
    for ch, n in pc.items():
        w = m.window_by_condition(ch.split(":", 1)[1])
        assert w is not None
        per_series[w.key].append(n / min(secs, w.window_s))
    assert set(per_series) == {f"{a}-{w}" for a, w, _ in EIGHT}
    for key, rates in per_series.items():
        assert 45 <= max(rates) <= 75, (key, rates)
    assert resolved == {f"{a}-{w}" for a, w, _ in EIGHT}  # 10 s and 30 s windows ended
    st = m.state()
    assert set(st["markets"]) == set(per_series) and set(st["prices"]) == set(ASSETS)
    slugs = {k: v["current"]["slug"] for k, v in st["markets"].items()}
    assert slugs["eth-15m"].startswith("eth-updown-15m-") and slugs["xrp-5m"].startswith(
        "xrp-updown-5m-"
    )


def test_a_series_added_while_running_is_listed_at_once() -> None:
    m = SimMarkets(3, [("btc", "5m", 10)], T0)
    m.advance(T0 + 2 * NS)
    assert m.add_series("eth", "1h", 120) and not m.add_series("btc", "5m", 10)
    frames = m.advance(T0 + 4 * NS)
    cur = m.markets["eth-1h"].current_window()
    assert cur is not None and cur.price_to_beat is not None
    assert cur.slug.startswith("ethereum-up-or-down-1h-")  # not a clock slug: found on Gamma
    books = [f for _, ch, f in frames if ch == "market:" + cur.condition_id and '"book"' in f]
    assert len(books) >= 2
    assert any(ch == "binance:ethusdt@bookTicker" for _, ch, _ in frames)


def test_the_real_15m_slug_is_the_clock_slug() -> None:
    """clob_rest_market_btc_updown_15m_resolved.json (a real BTC 15m market) is named
    `btc-updown-15m-<start>`, start a multiple of 900: the venue's slug for that window."""
    real = json.loads(
        (FIXTURES / "live_2026" / "clob_rest_market_btc_updown_15m_resolved.json").read_text()
    )
    start = int(real["market_slug"].rsplit("-", 1)[1])
    assert start % 900 == 0
    m = SimMarkets(1, [("btc", "15m", 900)], (start + 100) * NS)
    assert m.markets["btc-15m"].current_window().slug == real["market_slug"]


# ---------------------------------------------------------------- Binance limits on the socket
@pytest.fixture(scope="module")
def venue() -> str:
    root = short_tmpdir()
    port = free_port()
    cfg = Path(root) / "config.json"
    cfg.write_text(
        json.dumps(
            {"markets": [{"asset": "btc", "window": "5m"}, {"asset": "eth", "window": "15m"}]}
        )
    )
    env = {
        **__import__("os").environ,
        "POLYEDGE_CONFIG": str(cfg),
        "SIM_WINDOW_SECONDS": "10",
        "SIM_MARKETS": "sol-1h,btc-5m",
    }
    p = subprocess.Popen(
        [sys.executable, "-m", "services.simvenue", "--port", str(port), "--seed", "2"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(
            lambda: httpx.get(f"http://127.0.0.1:{port}/sim/health", timeout=1).status_code == 200,
            30,
            what="simvenue up",
        )
        yield f"127.0.0.1:{port}"
    finally:
        p.terminate()
        p.wait(10)


def test_binance_socket_streams_every_asset_and_enforces_the_limits(venue: str) -> None:
    async def run() -> tuple[set[str], bool, dict]:
        url = f"ws://{venue}/stream?streams=btcusdt@aggTrade/ethusdt@bookTicker"
        async with websockets.connect(url) as ws:
            seen: set[str] = set()
            while len(seen) < 2:
                seen.add(json.loads(await ws.recv())["stream"].split("@")[0])
            big = [f"s{i}usdt@trade" for i in range(1024)]
            await ws.send(json.dumps({"method": "SUBSCRIBE", "params": big, "id": 1}))
            answer: dict = {}
            while "id" not in answer:
                answer = json.loads(await ws.recv())
        # six messages within a second: Binance disconnects (5 incoming messages/s)
        async with websockets.connect(f"ws://{venue}/ws") as ws:
            for i in range(6):
                await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
            closed = False
            try:
                for _ in range(20):
                    await asyncio.wait_for(ws.recv(), 5)
            except websockets.ConnectionClosed:
                closed = True
        return seen, closed, answer

    seen, closed, answer = asyncio.run(run())
    assert seen == {"btcusdt", "ethusdt"}
    assert answer["id"] == 1 and "1024" in answer["error"]["msg"]
    assert closed


def test_the_venue_lists_the_config_markets_and_sim_markets_on_gamma(venue: str) -> None:
    """The config names btc-5m and eth-15m, SIM_MARKETS adds sol-1h (btc-5m once): all three
    listed, each Gamma event naming its series; the 1h one found by tag or series, its slug no
    clock slug."""
    st = httpx.get(f"http://{venue}/sim/state", timeout=5).json()
    assert set(st["markets"]) == {"btc-5m", "eth-15m", "sol-1h"}
    events = httpx.get(
        f"http://{venue}/gamma/events", params={"tag_slug": "up-or-down"}, timeout=5
    ).json()
    series = {e["seriesSlug"] for e in events}
    assert series == {"btc-up-or-down-5m", "eth-up-or-down-15m", "sol-up-or-down-1h"}
    sol = httpx.get(
        f"http://{venue}/gamma/events", params={"series_slug": "sol-up-or-down-1h"}, timeout=5
    ).json()
    assert sol and all(e["slug"].startswith("solana-up-or-down-1h-") for e in sol)
    cmc = sol[0]["markets"][0]["cryptoMarketConfig"]
    assert (cmc["asset"], cmc["duration"]) == ("sol", "1h")
    assert sol[0]["markets"][0]["resolutionSource"].endswith("sol-usd-twap-60s-streams")


def test_a_bad_sim_markets_entry_is_refused_by_name() -> None:
    env = {**__import__("os").environ, "SIM_MARKETS": "sol-2m"}
    r = subprocess.run(
        [sys.executable, "-m", "services.simvenue", "--port", "0"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2 and "SIM_MARKETS" in r.stderr and "markets[0].window" in r.stderr


def test_ended_windows_are_still_answered_after_their_books_go_and_after_a_restart(
    tmp_path: Path,
) -> None:
    """The real Gamma keeps closed markets (`/markets/slug/{slug}` answers them long after;
    PROTOCOLS.md section 7); the venue drops a window's books a few windows after its end and
    forgets everything on a restart (breaker finding 2: a restarted sim answered [] for a past
    slug). A dropped window is rebuilt with its ids and the resolution it had, from the archive
    on disk after a restart; one that ended while the venue was down gets a coin drawn from
    seed, series and start, withheld like any resolution until its delay has passed."""
    archive = tmp_path / "windows.jsonl"
    series = [("btc", "5m", 10), ("eth", "15m", 30)]
    m = SimMarkets(4, series, T0, archive_path=archive)
    btc = m.markets["btc-5m"]
    first = btc.current_window()
    assert first is not None
    seen = (first.slug, first.condition_id, first.up_token, first.down_token)
    m.advance(T0 + 200 * NS)  # past 4 windows + 120 s: the first one's books are gone
    assert first.start_s not in btc.windows and first.resolved
    again = m.window_by_slug(first.slug)
    assert again is not None and again is not first
    assert (again.slug, again.condition_id, again.up_token, again.down_token) == seen
    assert (again.resolved, again.winner, again.final_price) == (
        True,
        first.winner,
        first.final_price,
    )
    assert m.window_by_condition(first.condition_id).slug == first.slug
    assert not m.is_trading(again, m.t_ns)

    # a restart 60 s later: the archive answers for what the first run resolved
    t1 = T0 + 260 * NS
    m2 = SimMarkets(4, series, t1, archive_path=archive)
    back = m2.window_by_slug(first.slug)
    assert back is not None and (back.resolved, back.winner) == (True, first.winner)
    # a window that ended while the venue was down: same ids, a seeded outcome, same each time
    down_start = (T0 + 230 * NS) // NS // 10 * 10
    slug = f"btc-updown-5m-{down_start}"
    w = m2.window_by_slug(slug)
    assert w is not None and w.resolved and w.winner in ("Up", "Down")
    m3 = SimMarkets(4, series, t1 + 30 * NS)
    assert m3.window_by_slug(slug).winner == w.winner
    assert m3.window_by_slug(slug).condition_id == w.condition_id
    # withheld until min(54 s, 15 % of the window) after its end, as a live window's
    m4 = SimMarkets(4, series, (down_start + 10) * NS + NS // 2)
    late = m4.window_by_slug(slug)
    assert late is not None and not late.resolved and late.resolved_ns == (down_start + 11) * NS
    # not on the grid, not ended, or a series not listed: none
    assert m2.window_by_slug(f"btc-updown-5m-{down_start + 3}") is None
    assert m2.window_by_slug(f"btc-updown-5m-{t1 // NS // 10 * 10 + 100}") is None
    assert m2.window_by_slug(f"sol-updown-5m-{down_start}") is None
