"""Several markets at once (issue 17): ingest's core routes every configured asset and series,
the parsers read asset and window from real venue documents, and ingest as a real process
follows the markets of the config on the simulated venue, including a hot reload that adds and
removes one without a restart."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import httpx
import msgspec
import pytest

from common import topics
from common.bus import Subscriber
from common.config import market_specs
from common.schema import BookSnapshot, BtcQuote, BtcTrade, MarketInfo, PriceBasis, PriceFeedTick
from services.ingest.core import IngestCore, VenueEvents, feed_asset
from services.ingest.feeds import BINANCE_MAX_STREAMS, binance_streams, event_series
from services.ingest.parsers import RestResolution, parse_binance, parse_gamma, parse_rtds
from tests.conftest import FIXTURES, REPO, free_port, short_tmpdir, wait_for

S = 1_000_000_000
LIVE = FIXTURES / "live_2026"


def specs(*keys: str) -> list:
    return list(
        market_specs(
            {"markets": [{"asset": k.split("-")[0], "window": k.split("-")[1]} for k in keys]}
        )
    )


def info(slug: str, asset: str, window: str, start_s: int, length_s: int) -> MarketInfo:
    return MarketInfo(
        slug=slug,
        condition_id="0x" + slug,
        up_token_id=f"{slug}-up",
        down_token_id=f"{slug}-down",
        window_start_ns=start_s * S,
        window_end_ns=(start_s + length_s) * S,
        ts_recv_ns=0,
        asset=asset,
        window=window,
    )


# ---------------------------------------------------------------- parsers on real documents
def test_real_frames_carry_their_asset() -> None:
    """Real captures of other assets than BTC: binance_combined_aggTrade_0.json is XRPUSDT
    (2026-10-01, data-stream.binance.vision), binance_combined_bookTicker.json BTCUSDT, and
    rtds_crypto_prices_chainlink_update_0.json is Chainlink `hype/usd` (see their .source.txt)."""
    (trade,) = parse_binance((LIVE / "binance_combined_aggTrade_0.json").read_bytes(), 1)
    assert (trade.asset, trade.symbol) == ("xrp", "XRPUSDT")
    (quote,) = parse_binance((LIVE / "binance_combined_bookTicker.json").read_bytes(), 1)
    assert (quote.asset, quote.symbol) == ("btc", "BTCUSDT")
    (tick,) = parse_rtds((LIVE / "rtds_crypto_prices_chainlink_update_0.json").read_bytes(), 1)
    assert feed_asset(tick.symbol) == "hype"
    # ingest follows them only when configured
    core = IngestCore()
    assert core.step(VenueEvents("binance", [trade]), 2) == []
    core.set_markets(specs("xrp-5m", "hype-15m"))
    assert [t for t, _ in core.step(VenueEvents("binance", [trade]), 2)] == ["md.xrp.trade"]
    assert [t for t, _ in core.step(VenueEvents("price_feed", [tick]), 2)] == ["md.price.chainlink"]


def test_real_gamma_documents_name_their_series() -> None:
    """The real event (gamma_event_btc_updown_5m_1790617500.json: its market's
    cryptoMarketConfig {asset: btc, duration: 5m} and series recurrence 5m)."""
    raw = (LIVE / "gamma_event_btc_updown_5m_1790617500.json").read_bytes()
    m = parse_gamma(raw, 1, "btc-updown-5m-1790617500")
    assert (m.asset, m.window, m.series) == ("btc", "5m", "btc-5m")
    doc = json.loads(raw)
    doc = doc[0] if isinstance(doc, list) else doc
    assert event_series(doc) == ("btc", "5m")
    # without cryptoMarketConfig: the series' recurrence and slug say it
    for mk in doc["markets"]:
        mk.pop("cryptoMarketConfig", None)
    doc["series"][0]["recurrence"] = "hourly"
    doc["series"][0]["slug"] = "bitcoin-up-or-down-hourly"
    assert event_series(doc) == ("btc", "1h")


def test_binance_streams_one_connection_within_the_limit() -> None:
    assert binance_streams(["eth", "btc"]) == [
        "btcusdt@aggTrade",
        "btcusdt@bookTicker",
        "ethusdt@aggTrade",
        "ethusdt@bookTicker",
    ]
    assert len(binance_streams([f"a{i}" for i in range(BINANCE_MAX_STREAMS // 2)])) == 1024
    with pytest.raises(ValueError, match="1024"):
        binance_streams([f"a{i}" for i in range(BINANCE_MAX_STREAMS // 2 + 1)])


# ---------------------------------------------------------------- core
def test_core_routes_every_configured_asset_and_drops_others() -> None:
    core = IngestCore()
    core.set_markets(specs("btc-5m", "eth-15m", "xrp-5m"))
    trade = BtcTrade(price=3000.0, size=1.0, ts_exchange_ns=5 * S, ts_recv_ns=5 * S)
    out = core.step(
        VenueEvents(
            "binance",
            [
                msgspec.structs.replace(trade, symbol="ETHUSDT", asset="eth"),
                msgspec.structs.replace(trade, price=85_000.0),
                msgspec.structs.replace(trade, symbol="SOLUSDT", asset="sol"),
                BtcQuote(
                    bid=2.0,
                    bid_size=1,
                    ask=2.0001,
                    ask_size=1,
                    ts_recv_ns=5 * S,
                    symbol="XRPUSDT",
                    asset="xrp",
                ),
            ],
        ),
        5 * S,
    )
    got = [(t, m.asset) for t, m in out]
    assert got == [("md.eth.trade", "eth"), ("md.btc.trade", "btc"), ("md.xrp.quote", "xrp")]
    assert topics.BTC_TRADE == "md.btc.trade" and core.counts["binance_other_symbol"] == 1
    # the settlement feed per symbol: eth/usd measures ETH's basis, never BTC's
    tick = PriceFeedTick(
        source="chainlink", symbol="eth/usd", value=2999.0, ts_exchange_ns=5 * S, ts_recv_ns=6 * S
    )
    core.step(VenueEvents("price_feed", [tick]), 6 * S)
    assert core.bases["eth"].samples == 1 and core.basis.samples == 0
    out = core.on_timer(None, 7 * S)  # type: ignore[arg-type]
    basis = [m for t, m in out if isinstance(m, PriceBasis)]
    assert [(b.asset, b.basis_usd) for b in basis] == [("eth", 1.0)]


def test_core_roles_per_series_and_clock_slugs() -> None:
    core = IngestCore()
    core.set_markets(specs("btc-5m", "eth-15m", "sol-1h"))
    now = 1_800_000_100 * S  # 100 s into a 5m window (1_800_000_000 is a multiple of 900 too)
    wanted = core.wanted(now)
    assert set(wanted) == {
        "btc-updown-5m-1800000000",
        "btc-updown-5m-1800000300",
        "eth-updown-15m-1800000000",
        "eth-updown-15m-1800000900",
    }  # sol-1h is never built from the clock: it is searched on Gamma
    assert [m.key for m in core.searched_series()] == ["sol-1h"]
    for slug, spec in wanted.items():
        start = int(slug.rsplit("-", 1)[1])
        core.step(info(slug, spec.asset, spec.window, start, spec.window_s), now)
    out = core.on_timer(None, now)  # type: ignore[arg-type]
    roles = {(m.series, m.role) for t, m in out if isinstance(m, MarketInfo)}
    assert roles == {
        ("btc-5m", "current"),
        ("btc-5m", "next"),
        ("eth-15m", "current"),
        ("eth-15m", "next"),
    }
    # a market of a series not configured is not followed
    core.step(info("xrp-updown-5m-1800000000", "xrp", "5m", 1_800_000_000, 300), now)
    assert "xrp-updown-5m-1800000000" not in core.windows
    # hot reload drops eth-15m: no new window of it is looked for or taken, but the current
    # one keeps its books until it ends and resolves (a position there is still managed)
    core.set_markets(specs("btc-5m"))
    assert all(s.startswith("btc-") for s in core.wanted(now))
    assert "eth-updown-15m-1800000000-up" in core.wanted_assets()
    core.step(info("eth-updown-15m-1800001800", "eth", "15m", 1_800_001_800, 900), now)
    assert "eth-updown-15m-1800001800" not in core.windows
    later = 1_800_000_000 * S + 901 * S
    core.step(
        RestResolution(
            source="gamma",
            condition_id="",
            slug="eth-updown-15m-1800000000",
            outcome="Up",
            winning_asset_id="",
            ts_recv_ns=later,
        ),
        later,
    )
    core.on_timer(None, later)  # type: ignore[arg-type]
    assert "eth-updown-15m-1800000000-up" not in core.wanted_assets()


# ---------------------------------------------------------------- ingest + simulated venue
WINDOW_S = 8
ENV = {
    "INGEST_BACKOFF_BASE_MS": "200",
    "INGEST_BACKOFF_MAX_MS": "2000",
    "INGEST_GAMMA_REFRESH_MS": "500",
    "INGEST_GAMMA_RETRY_MAX_MS": "1000",
    "INGEST_STALE_AFTER_MS": "2000",
    "SIM_WINDOW_SECONDS": str(WINDOW_S),
}


def _run(args: list[str], root: Path, env: dict[str, str], name: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=REPO,
        env=env,
        stdout=open(root / f"{name}.out", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )


def _stop(p: subprocess.Popen) -> int:
    if p.poll() is None:
        p.terminate()
        try:
            return p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            return p.wait(5)
    return p.returncode


def test_ingest_follows_the_configured_markets_and_a_hot_reload() -> None:
    """btc-5m, eth-15m and sol-1h (found by search, never built) on one simulated venue: ingest
    publishes each series' markets and books, every asset's trades on its own topic and basis
    per asset; adding xrp-5m to the operator's config file is followed without a restart (a
    SUBSCRIBE on the open Binance socket), removing eth-15m too."""
    root = short_tmpdir()
    port = free_port()
    (root / "data" / "run").mkdir(parents=True)
    (root / "logs").mkdir()
    cfg = root / "config.json"
    base = {
        "markets": [
            {"asset": "btc", "window": "5m"},
            {"asset": "eth", "window": "15m"},
            {"asset": "sol", "window": "1h"},
        ]
    }
    cfg.write_text(json.dumps(base))
    env = {
        **os.environ,
        **ENV,
        "POLYEDGE_VENUE": "sim",
        "SIM_PORT": str(port),
        "POLYEDGE_CONFIG": str(cfg),
        "POLYEDGE_DATA_DIR": str(root / "data"),
        "LOG_DIR": str(root / "logs"),
    }
    sim = _run(["-m", "services.simvenue", "--port", str(port), "--seed", "5"], root, env, "sim")
    procs = [sim]
    try:
        wait_for(
            lambda: httpx.get(f"http://127.0.0.1:{port}/sim/health", timeout=1).status_code == 200,
            30,
            what="simvenue up",
        )
        ingest = _run(["-m", "services.ingest"], root, env, "ingest")
        procs.append(ingest)
        sub = Subscriber(f"ipc://{(root / 'data' / 'run').resolve()}/ingest.sock", ["md."])
        markets: dict[str, MarketInfo] = {}
        topics_seen: dict[str, int] = defaultdict(int)
        books: dict[str, BookSnapshot] = {}
        bases: dict[str, PriceBasis] = {}

        def pump() -> None:
            for topic, env_ in sub.drain(100_000):
                m = env_.msg
                topics_seen[topic if not topic.startswith("md.book.") else "book"] += 1
                if isinstance(m, MarketInfo):
                    markets[m.slug] = m
                elif isinstance(m, BookSnapshot):
                    books[m.asset_id] = m
                elif isinstance(m, PriceBasis):
                    bases[m.asset] = m

        def series_with_books(role: str = "current") -> set[str]:
            pump()
            return {
                m.series
                for m in markets.values()
                if m.role == role and m.up_token_id in books and m.down_token_id in books
            }

        wait_for(
            lambda: series_with_books() >= {"btc-5m", "eth-15m", "sol-1h"},
            40,
            what="a current market with both books for btc-5m, eth-15m and sol-1h",
        )
        sol = next(m for m in markets.values() if m.series == "sol-1h")
        assert not sol.slug.startswith("sol-updown-")  # found by search: no clock slug
        assert sol.window_end_ns - sol.window_start_ns == 12 * WINDOW_S * S
        wait_for(
            lambda: (
                (pump() or True)
                and all(topics_seen[f"md.{a}.trade"] > 0 for a in ("btc", "eth", "sol"))
            ),
            20,
            what="trades of btc, eth and sol on their own topics",
        )
        wait_for(
            lambda: (pump() or True) and {"btc", "eth", "sol"} <= set(bases),
            30,
            what="a basis per asset",
        )
        assert topics_seen["md.xrp.trade"] == 0
        # hot reload: the operator's overrides add xrp-5m and drop eth-15m
        overrides = root / "data" / "config.json"
        overrides.write_text(
            json.dumps(
                {
                    "markets": [
                        {"asset": "btc", "window": "5m"},
                        {"asset": "sol", "window": "1h"},
                        {"asset": "xrp", "window": "5m"},
                    ]
                }
            )
        )
        wait_for(lambda: "xrp-5m" in series_with_books(), 30, what="xrp-5m followed after reload")
        wait_for(
            lambda: (pump() or True) and topics_seen["md.xrp.trade"] > 0,
            20,
            what="xrp trades after the reload",
        )
        log = [json.loads(x) for x in (root / "logs" / "ingestion.jsonl").read_text().splitlines()]
        events = [d.get("event") for d in log]
        assert "binance_subscribe" in events and "markets_changed" in events
        connects = [
            d for d in log if d.get("event") == "feed_connected" and d.get("feed") == "binance"
        ]
        assert len(connects) == 1, "the Binance socket was kept (streams changed on it)"
        # eth-15m is no longer followed: no eth market is published any more
        pump()
        n = len([m for m in markets.values() if m.series == "eth-15m"])
        seen_before = topics_seen["md.market"]
        wait_for(
            lambda: (pump() or True) and topics_seen["md.market"] > seen_before + 20,
            20,
            what="more market messages",
        )
        assert len([m for m in markets.values() if m.series == "eth-15m"]) == n
    finally:
        codes = [_stop(p) for p in reversed(procs)]
        out = (root / "ingest.out").read_text() if (root / "ingest.out").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
    assert codes[0] == 0, out[-3000:]
