"""Ingest as a real process against the simulated venue (a real process on a free port), read
from its real PUB socket: live data, a window roll, and every venue fault the issue names, each
followed by the check that the local book equals the venue's own book (GET /sim/state)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from common.bus import Subscriber
from common.schema import (
    BookSnapshot,
    BtcQuote,
    BtcTrade,
    FeedStatus,
    Heartbeat,
    MarketInfo,
    MarketResolved,
)
from services.ingest.capture import capture_files, read_capture
from services.ingest.parsers import (
    ParseError,
    parse_binance,
    parse_clob,
    parse_clob_market_resolution,
    parse_gamma,
    parse_gamma_resolution,
    parse_rtds,
)
from tests.conftest import REPO, free_port, short_tmpdir, wait_for

WINDOW_S = 8
BACKOFF_BASE_S = 0.2
JITTER = 0.2
INGEST_ENV = {
    "INGEST_BACKOFF_BASE_MS": str(int(BACKOFF_BASE_S * 1000)),
    "INGEST_BACKOFF_MAX_MS": "2000",
    "INGEST_STABLE_S": "1",
    "INGEST_BINANCE_SILENCE_MS": "1000",
    "INGEST_CLOB_PING_MS": "250",
    "INGEST_CLOB_PONG_TIMEOUT_MS": "1000",
    "INGEST_RTDS_PING_MS": "1000",
    "INGEST_RTDS_SILENCE_MS": "1500",
    "INGEST_GAMMA_REFRESH_MS": "500",
    "INGEST_GAMMA_RETRY_MAX_MS": "1000",
    "INGEST_STALE_AFTER_MS": "800",
    "INGEST_RELEASE_GRACE_S": "30",
}


class Tap:
    """Everything ingest publishes, kept by kind (drained on demand, no threads)."""

    def __init__(self, endpoint: str) -> None:
        self.sub = Subscriber(endpoint, ["md.", "sys.heartbeat.ingest"])
        self.books: dict[str, deque[BookSnapshot]] = defaultdict(lambda: deque(maxlen=3000))
        self.first_book: dict[str, BookSnapshot] = {}
        self.markets: list[MarketInfo] = []
        self.status: dict[str, FeedStatus] = {}
        self.status_log: list[FeedStatus] = []
        self.resolved: list[MarketResolved] = []
        self.heartbeat: Heartbeat | None = None
        self.trades = 0
        self.quotes = 0

    def pump(self) -> Tap:
        for _topic, env in self.sub.drain(100_000):
            m = env.msg
            if isinstance(m, BookSnapshot):
                self.books[m.asset_id].append(m)
                self.first_book.setdefault(m.asset_id, m)
            elif isinstance(m, BtcTrade):
                self.trades += 1
            elif isinstance(m, BtcQuote):
                self.quotes += 1
            elif isinstance(m, MarketInfo):
                self.markets.append(m)
            elif isinstance(m, FeedStatus):
                self.status[m.feed] = m
                self.status_log.append(m)
            elif isinstance(m, MarketResolved):
                self.resolved.append(m)
            elif isinstance(m, Heartbeat):
                self.heartbeat = m
        return self

    def latest_market(self, role: str) -> MarketInfo | None:
        ms = [m for m in self.markets if m.role == role]
        return ms[-1] if ms else None


class Rig:
    def __init__(
        self, root: Path, port: int, sim: subprocess.Popen, ingest: subprocess.Popen, tap: Tap
    ) -> None:
        self.root, self.port, self.sim, self.ingest, self.tap = root, port, sim, ingest, tap
        self.url = f"http://127.0.0.1:{port}"

    def state(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/sim/state", timeout=5).json()

    def fault(self, **f: Any) -> dict[str, Any]:
        """Apply a venue fault; returns its log entry (`/sim/fault`'s `fault`)."""
        r = httpx.post(f"{self.url}/sim/fault", json=f, timeout=5)
        assert r.status_code == 200, r.text
        return r.json()["fault"]

    def log_events(self, event: str) -> list[dict[str, Any]]:
        p = self.root / "logs" / "ingestion.jsonl"
        out = []
        for line in p.read_text().splitlines():
            d = json.loads(line)
            if d.get("event") == event:
                out.append(d)
        return out

    def book_matches_venue(self, timeout: float = 5.0) -> None:
        """The venue's current books (both tokens) appear exactly among ingest's snapshots."""

        def check() -> bool:
            st = self.state()
            cur = st["current"]
            assert cur is not None
            want = {
                tok: (
                    [(float(p), float(s)) for p, s in b["bids"]],
                    [(float(p), float(s)) for p, s in b["asks"]],
                    float(cur["tick_size"]),
                )
                for tok, b in cur["books"].items()
            }

            def seen() -> bool:
                self.tap.pump()
                return all(
                    any((s.bids, s.asks, s.tick_size) == w for s in self.tap.books[tok])
                    for tok, w in want.items()
                )

            try:
                return wait_for(seen, 1.5, what="venue book among ingest's snapshots")
            except AssertionError:
                return False

        wait_for(check, timeout, interval=0.01, what="local book == venue book")


def _start(root: Path, port: int, extra: dict[str, str]) -> tuple[subprocess.Popen, dict[str, str]]:
    env = {
        **os.environ,
        "POLYEDGE_VENUE": "sim",
        "SIM_PORT": str(port),
        "SIM_WINDOW_SECONDS": str(WINDOW_S),
        "POLYEDGE_DATA_DIR": str(root / "data"),
        "LOG_DIR": str(root / "logs"),
        **INGEST_ENV,
        **extra,
    }
    (root / "data" / "run").mkdir(parents=True, exist_ok=True)
    (root / "logs").mkdir(exist_ok=True)
    p = subprocess.Popen(
        [sys.executable, "-m", "services.ingest"],
        cwd=REPO,
        env=env,
        stdout=open(root / "ingest.out", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    return p, env


def _stop(p: subprocess.Popen) -> int:
    if p.poll() is None:
        p.terminate()
        try:
            return p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            return p.wait(5)
    return p.returncode


@pytest.fixture(scope="module")
def sim() -> Iterator[tuple[int, subprocess.Popen, Path]]:
    root = short_tmpdir()
    port = free_port()
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.simvenue",
            "--port",
            str(port),
            "--seed",
            "7",
            "--window-seconds",
            str(WINDOW_S),
        ],
        cwd=REPO,
        stdout=open(root / "sim.out", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    wait_for(
        lambda: httpx.get(f"http://127.0.0.1:{port}/sim/health", timeout=1).status_code == 200,
        20,
        what="simvenue up",
    )
    yield port, p, root
    _stop(p)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def rig(sim: tuple[int, subprocess.Popen, Path]) -> Iterator[Rig]:
    port, sp, _ = sim
    root = short_tmpdir()
    ip, env = _start(root, port, {"INGEST_CAPTURE": "1"})
    tap = Tap(f"ipc://{(root / 'data' / 'run').resolve()}/ingest.sock")
    r = Rig(root, port, sp, ip, tap)
    yield r
    code = _stop(ip)
    tap.sub.close()
    out = (root / "ingest.out").read_text()
    shutil.rmtree(root, ignore_errors=True)
    assert code == 0, out[-3000:]


def _reconnect_delays(rig: Rig, feed: str, after_ns: int) -> list[float]:
    """Seconds from each disconnect (after `after_ns`) to the next successful connect."""
    downs = [
        d["ts_ns"]
        for d in rig.log_events("feed_disconnected")
        if d["feed"] == feed and d["ts_ns"] >= after_ns
    ]
    ups = [d["ts_ns"] for d in rig.log_events("feed_connected") if d["feed"] == feed]
    out = []
    for t in downs:
        nxt = [u for u in ups if u > t]
        if nxt:
            out.append((min(nxt) - t) / 1e9)
    return out


def test_live_trades_books_markets_and_status(rig: Rig) -> None:
    tap = rig.tap
    wait_for(lambda: tap.pump().trades > 3 and tap.quotes > 20, 20, what="btc trades and quotes")
    wait_for(
        lambda: tap.pump().latest_market("current") and tap.latest_market("next"),
        20,
        what="markets",
    )
    wait_for(
        lambda: (
            all(not s.stale and s.connected for s in tap.pump().status.values())
            and len(tap.status) == 4
        ),
        20,
        what="all four feeds fresh",
    )
    cur = tap.latest_market("current")
    nxt = tap.latest_market("next")
    assert cur is not None and nxt is not None
    assert nxt.window_start_ns == cur.window_end_ns
    assert cur.window_end_ns - cur.window_start_ns == WINDOW_S * 1_000_000_000
    assert cur.twap_enabled and cur.fee_rate > 0 and cur.resolution_source
    for snap in (tap.books[cur.up_token_id][-1], tap.books[cur.down_token_id][-1]):
        assert snap.bids == sorted(snap.bids, key=lambda lv: -lv[0])
        assert snap.asks == sorted(snap.asks)
        assert snap.best_bid == snap.bids[0][0] and snap.best_ask == snap.asks[0][0]
    rig.book_matches_venue()

    # price to beat: labelled, and equal to the venue's when it came from the TWAP feed or Gamma
    def ptb_ok() -> bool:
        tap.pump()
        st = rig.state()["current"]
        m = tap.latest_market("current")
        return (
            m is not None
            and m.slug == st["slug"]
            and m.price_to_beat_source in ("twap", "gamma")
            and st["price_to_beat"] is not None
            and abs(m.price_to_beat - st["price_to_beat"]) < 1e-6
        )

    wait_for(ptb_ok, WINDOW_S * 2 + 5, what="price to beat from twap/gamma equal to the venue's")
    sources = {m.price_to_beat_source for m in tap.markets if m.price_to_beat is not None}
    assert sources <= {"gamma", "twap", "chainlink", "binance"}


def test_window_roll_subscribes_next_before_start_and_releases_old(rig: Rig) -> None:
    tap = rig.tap
    nxt = wait_for(lambda: tap.pump().latest_market("next"), 10, what="a next market")
    # its book arrived before its window opened: subscribed ahead of the roll
    wait_for(
        lambda: tap.pump().first_book.get(nxt.up_token_id), WINDOW_S + 2, what="next market's book"
    )
    assert tap.first_book[nxt.up_token_id].ts_recv_ns < nxt.window_start_ns
    subs = [
        d
        for d in rig.log_events("clob_subscribe") + rig.log_events("clob_subscribed")
        if nxt.up_token_id in d["assets"]
    ]
    assert subs and min(d["ts_ns"] for d in subs) < nxt.window_start_ns
    # it becomes current at its start, then the old one resolves and is released after its end
    wait_for(
        lambda: any(m.slug == nxt.slug and m.role == "current" for m in tap.pump().markets),
        WINDOW_S * 2 + 3,
        what="next market rolled to current",
    )
    wait_for(
        lambda: any(r.slug == nxt.slug for r in tap.pump().resolved),
        WINDOW_S * 3,
        what="resolution",
    )
    res = next(r for r in tap.resolved if r.slug == nxt.slug)
    venue = next(w for w in [rig.state()] if w)  # noqa: F841 - venue still up
    assert res.winning_outcome in ("Up", "Down")
    unsub = wait_for(
        lambda: [d for d in rig.log_events("clob_unsubscribe") if nxt.up_token_id in d["assets"]],
        5,
        what="old tokens unsubscribed",
    )
    assert unsub[0]["ts_ns"] >= nxt.window_end_ns
    assert any(m.slug == nxt.slug and m.role == "past" for m in tap.markets)


def test_dropped_connections_back_within_backoff_bound(rig: Rig) -> None:
    tap = rig.tap
    tap.pump()
    before = {f: s.reconnects for f, s in tap.status.items()}
    t0 = time.time_ns()
    rig.fault(name="drop", channel="all")
    for feed in ("binance", "clob", "price_feed"):
        wait_for(
            lambda f=feed: (
                (s := tap.pump().status.get(f)) and s.connected and s.reconnects > before[f]
            ),
            10,
            what=f"{feed} reconnected",
        )
        delays = _reconnect_delays(rig, feed, t0)
        assert delays, f"no reconnect logged for {feed}"
        # first retry after a drop: base * (1 + jitter), plus a local handshake
        assert delays[0] <= BACKOFF_BASE_S * (1 + JITTER) + 0.5, (feed, delays)
    rig.book_matches_venue()


def test_silent_stall_is_detected_and_replaced(rig: Rig) -> None:
    tap = rig.tap
    tap.pump()
    before = {f: s.reconnects for f, s in tap.status.items()}
    n_status = len(tap.status_log)
    t0 = time.monotonic()
    rig.fault(name="stall", channel="all", seconds=3)
    for feed in ("binance", "clob", "price_feed"):
        wait_for(
            lambda f=feed: tap.pump().status[f].reconnects > before[f], 6, what=f"{feed} replaced"
        )
    replaced_after = time.monotonic() - t0
    assert replaced_after < 3.0, "the silent sockets were replaced while the stall still lasted"
    stale = {s.feed for s in tap.status_log[n_status:] if s.stale}
    assert {"binance", "clob", "price_feed"} <= stale
    wait_for(
        lambda: all(not tap.pump().status[f].stale for f in ("binance", "clob", "price_feed")),
        10,
        what="fresh again after the stall",
    )
    rig.book_matches_venue()


def test_malformed_and_unknown_frames_are_counted_and_skipped(rig: Rig) -> None:
    tap = rig.tap
    tap.pump()
    before = {f: (s.parse_errors, s.reconnects) for f, s in tap.status.items()}
    trades = tap.trades
    rig.fault(name="malformed", channel="all", count=3)
    rig.fault(name="unknown", channel="all", count=2)
    for feed in ("binance", "clob", "price_feed"):
        wait_for(
            lambda f=feed: tap.pump().status[f].parse_errors >= before[f][0] + 3,
            5,
            what=f"{feed} parse errors counted",
        )

    def unknown_counted() -> bool:
        tap.pump()
        feeds = tap.heartbeat.detail["feeds"] if tap.heartbeat else {}
        return all(
            feeds.get(f, {}).get("unknown", 0) >= 2 for f in ("binance", "clob", "price_feed")
        )

    wait_for(unknown_counted, 5, what="unknown events counted")
    logged = {
        (d["feed"], d["event"])
        for d in rig.log_events("unknown_event") + rig.log_events("parse_error")
    }
    for feed in ("binance", "clob", "price_feed"):
        assert {(feed, "unknown_event"), (feed, "parse_error")} <= logged
    for feed in ("binance", "clob", "price_feed"):
        assert tap.status[feed].reconnects == before[feed][1], (
            f"{feed} should not reconnect on garbage"
        )
    wait_for(lambda: tap.pump().trades > trades + 2, 5, what="trades keep flowing")
    rig.book_matches_venue()


def test_gamma_5xx_and_empty_answers_are_retried(rig: Rig) -> None:
    tap = rig.tap
    tap.pump()
    rig.fault(name="gamma_5xx", count=3)
    rig.fault(name="gamma_empty", count=2)

    def counted() -> bool:
        tap.pump()
        c = tap.heartbeat.detail.get("counts", {}) if tap.heartbeat else {}
        return c.get("gamma_5xx", 0) >= 3 and c.get("gamma_empty", 0) >= 2

    wait_for(counted, 10, what="gamma faults seen by ingest")
    n = len(tap.markets)
    t = time.time_ns()
    # discovery carries on: fresh answers again, market info still published, gamma not stale
    wait_for(
        lambda: (
            len(tap.pump().markets) > n
            and not tap.status["gamma"].stale
            and tap.status["gamma"].ts_ns > t
            and tap.status["gamma"].last_msg_age_ms < 1000
        ),
        10,
        what="gamma answering again",
    )
    assert tap.status["gamma"].connected


def test_tick_size_change_resyncs_the_book(rig: Rig) -> None:
    tap = rig.tap
    tap.pump()

    # With WINDOW_S = 8 the sim's market rolls every 8 s, and its quoters change the tick by
    # themselves once the price is beyond 0.965 / 0.035 (most windows get there within seconds,
    # as on the real venue: PROTOCOLS.md), so a tick read before the fault may be stale by the
    # time the fault flips it. Fault early in a window, and take the before/after ticks and the
    # market from the venue's own record of the fault.
    def fresh_window() -> dict[str, Any] | None:
        st = rig.state()
        cur = st["current"]
        return cur if cur and cur["end"] - st["t_ns"] / 1e9 >= WINDOW_S / 2 else None

    cur = wait_for(fresh_window, 2 * WINDOW_S, interval=0.05, what="a window with 4 s left")
    changed = rig.fault(name="tick_size_change")["market"]
    assert changed is not None and changed["slug"] == cur["slug"], (changed, cur["slug"])
    old_tick, new_tick = float(changed["old_tick_size"]), float(changed["new_tick_size"])
    assert {old_tick, new_tick} == {0.01, 0.001}
    after = rig.state()["current"]
    assert after["slug"] == cur["slug"] and float(after["tick_size"]) == new_tick
    wait_for(
        lambda: tap.pump().books[cur["up_token"]][-1].tick_size == new_tick,
        5,
        what="new tick in book",
    )
    rig.book_matches_venue()


def test_duplicated_and_reordered_deltas_end_in_the_venue_book(rig: Rig) -> None:
    rig.tap.pump()
    rig.fault(name="duplicate_delta", count=10)
    rig.fault(name="out_of_order", count=10)
    # duplicates are idempotent (size is the level's new total); a swapped pair can leave a
    # level wrong until the venue's best_bid_ask disagrees (resync) or its next snapshot
    rig.book_matches_venue(timeout=10)


def test_capture_holds_every_channel_and_parses_back(rig: Rig) -> None:
    cap_dir = rig.root / "data" / "captures"
    files = wait_for(lambda: capture_files(cap_dir), 5, what="capture file")
    channels: dict[str, int] = defaultdict(int)
    bad = 0
    parsers = {"binance": parse_binance, "clob": parse_clob, "rtds": parse_rtds}
    for f in files:
        for ts, ch, frame in read_capture(f):
            assert ts > 0
            channels[ch] += 1
            try:
                if ch == "gamma":
                    parse_gamma(frame, ts)
                elif ch == "resolution:gamma":
                    parse_gamma_resolution(frame, ts)
                elif ch == "resolution:clob_rest":
                    parse_clob_market_resolution(frame, ts)
                else:
                    parsers[ch](frame, ts)
            except ParseError:
                bad += 1
    assert {"binance", "clob", "rtds", "gamma"} <= set(channels)
    assert channels["binance"] > 50 and channels["clob"] > 10
    assert bad >= 3  # the malformed frames injected above are in the capture as received


def test_without_price_feed_everything_else_works(sim: tuple[int, subprocess.Popen, Path]) -> None:
    port = sim[0]
    root = short_tmpdir()
    p, _ = _start(root, port, {"INGEST_PRICE_FEED": "0"})
    tap = Tap(f"ipc://{(root / 'data' / 'run').resolve()}/ingest.sock")
    try:
        wait_for(
            lambda: tap.pump().trades > 0 and tap.latest_market("current") and tap.books,
            20,
            what="trades, market and books without the price feed",
        )
        wait_for(
            lambda: "price_feed" in tap.pump().status and "binance" in tap.status, 5, what="status"
        )
        pf = tap.status["price_feed"]
        assert pf.stale and not pf.connected and "disabled" in pf.detail
        wait_for(
            lambda: not tap.pump().status["clob"].stale and not tap.status["binance"].stale,
            10,
            what="other feeds fresh",
        )
        m = tap.latest_market("current")
        assert m is not None and m.price_to_beat_source in ("", "gamma", "binance")
    finally:
        code = _stop(p)
        tap.sub.close()
        out = (root / "ingest.out").read_text()
        shutil.rmtree(root, ignore_errors=True)
    assert code == 0, out[-3000:]


def test_withheld_market_resolved_is_taken_from_rest(rig: Rig) -> None:
    """The venue resolves but its `market_resolved` frame never comes: ingest publishes the
    resolution from Gamma / the CLOB market (issue 14), naming the source."""
    tap = rig.tap
    tap.pump()
    rig.fault(name="withhold_resolved", count=3)
    n = len(tap.resolved)
    wait_for(lambda: len(tap.pump().resolved) > n, 4 * WINDOW_S, what="a resolution")
    got = tap.resolved[n]
    assert got.source in ("gamma", "clob_rest"), got
    assert rig.state()["withheld_resolutions"] >= 1


def test_a_clean_stop_writes_no_traceback(sim: tuple[int, subprocess.Popen, Path]) -> None:
    """SIGTERM (supervisorctl stop) with every feed connected: exit 0 and nothing on stderr
    about the sessions it closed (it wrote "Task exception was never retrieved ...
    ConnectionClosedError" tracebacks for binance, clob and the price feed)."""
    port = sim[0]
    root = short_tmpdir()
    p, _ = _start(root, port, {})
    tap = Tap(f"ipc://{(root / 'data' / 'run').resolve()}/ingest.sock")
    try:
        wait_for(
            lambda: all(
                f in tap.pump().status and not tap.status[f].stale
                for f in ("binance", "clob", "price_feed")
            ),
            20,
            what="every socket feed connected",
        )
    finally:
        code = _stop(p)
        tap.sub.close()
        out = (root / "ingest.out").read_text()
        shutil.rmtree(root, ignore_errors=True)
    assert code == 0, out[-3000:]
    assert "Traceback" not in out and "never retrieved" not in out, out[-3000:]
