"""Ingest's transport-free pieces with plain messages: the L2 book, window roles and rollover,
price-to-beat sources, stale flags and status, backoff, the client send limit, options, capture."""

from __future__ import annotations

import json
import random

import pytest

from common import topics
from common.config import ConfigError, load_settings
from common.core import Timer
from common.schema import BookSnapshot, FeedStatus, MarketInfo, MarketResolved, PriceFeedTick
from services.ingest.book import BookSet
from services.ingest.capture import CaptureWriter, capture_files, read_capture
from services.ingest.core import IngestCore
from services.ingest.feeds import Backoff
from services.ingest.parsers import parse_binance, parse_clob

S = 1_000_000_000
T0 = 1_800_000_000 * S


def book_frame(
    asset: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]], tick: str = "0.01"
) -> str:
    # venue order: bids ascending, asks descending (best LAST)
    return json.dumps(
        {
            "event_type": "book",
            "asset_id": asset,
            "market": "0xm",
            "timestamp": "1800000000000",
            "bids": [{"price": p, "size": s} for p, s in sorted(bids, key=lambda x: float(x[0]))],
            "asks": [{"price": p, "size": s} for p, s in sorted(asks, key=lambda x: -float(x[0]))],
            "tick_size": tick,
        }
    )


def change_frame(
    asset: str, changes: list[tuple[str, str, str]], bb: str | None = None, ba: str | None = None
) -> str:
    entries = []
    for side, p, s in changes:
        e = {"asset_id": asset, "price": p, "size": s, "side": side}
        if bb is not None:
            e["best_bid"], e["best_ask"] = bb, ba
        entries.append(e)
    return json.dumps(
        {
            "event_type": "price_change",
            "market": "0xm",
            "price_changes": entries,
            "timestamp": "1800000000001",
        }
    )


def apply(bs: BookSet, frame: str, now: int = T0) -> list[BookSnapshot]:
    out = []
    for ev in parse_clob(frame, now):
        if type(ev).__name__ == "BookSnapshot":
            r = bs.on_snapshot(ev)
        elif type(ev).__name__ == "BookDelta":
            r = bs.on_delta(ev, now)
        elif type(ev).__name__ == "TickSizeChange":
            r = bs.on_tick_size(ev.asset_id, ev.new_tick_size, now)
        else:
            r = None
        if r is not None:
            out.append(r)
    return out


def test_book_snapshot_then_deltas_best_first_and_seq() -> None:
    bs = BookSet()
    bs.follow("A")
    (s1,) = apply(
        bs, book_frame("A", [("0.48", "10"), ("0.50", "5")], [("0.53", "7"), ("0.52", "3")])
    )
    assert s1.best_bid == 0.50 and s1.best_ask == 0.52
    assert s1.bids == [(0.50, 5.0), (0.48, 10.0)] and s1.asks == [(0.52, 3.0), (0.53, 7.0)]
    (s2,) = apply(
        bs, change_frame("A", [("BUY", "0.51", "4"), ("SELL", "0.52", "0")], "0.51", "0.53")
    )
    assert s2.best_bid == 0.51 and s2.best_ask == 0.53
    assert s2.book_seq == s1.book_seq + 1
    assert bs.stats.mismatches == 0
    (s3,) = apply(bs, change_frame("A", [("SELL", "0.53", "0")]))
    assert s3.asks == [] and s3.best_ask is None  # empty side -> null best


def test_book_drops_deltas_until_snapshot_and_unknown_assets() -> None:
    bs = BookSet()
    bs.follow("A")
    assert apply(bs, change_frame("A", [("BUY", "0.5", "1")])) == []
    assert bs.stats.dropped_unsynced == 1
    assert apply(bs, book_frame("Z", [("0.5", "1")], [])) == []
    assert bs.stats.dropped_unknown == 1
    apply(bs, book_frame("A", [("0.4", "1")], [("0.6", "1")]))
    bs.unsync()  # e.g. after a reconnect
    assert apply(bs, change_frame("A", [("BUY", "0.45", "1")])) == []
    assert bs.books["A"].levels()[0] == [(0.4, 1.0)]


def test_book_tick_size_change_snaps_and_waits_for_snapshot() -> None:
    bs = BookSet()
    bs.follow("A")
    apply(bs, book_frame("A", [("0.961", "2"), ("0.965", "3")], [("0.968", "4")], tick="0.001"))
    frame = json.dumps(
        {
            "event_type": "tick_size_change",
            "asset_id": "A",
            "market": "0xm",
            "old_tick_size": "0.001",
            "new_tick_size": "0.01",
            "timestamp": "1",
        }
    )
    (snap,) = apply(bs, frame, T0)
    assert snap.tick_size == 0.01
    assert snap.bids == [(0.96, 5.0)] and snap.asks == [(0.97, 4.0)]  # bids down, asks up, merged
    assert bs.needing_resync(T0 + S, S) == ["A"]
    apply(bs, book_frame("A", [("0.96", "1")], [("0.97", "1")]))
    assert bs.needing_resync(T0 + 2 * S, S) == []


def test_book_best_mismatch_marks_out_of_sync_at_once_until_a_snapshot() -> None:
    bs = BookSet()
    bs.follow("A")
    apply(bs, book_frame("A", [("0.40", "1")], [("0.60", "1")]))
    (snap,) = apply(bs, change_frame("A", [("BUY", "0.41", "1")], "0.45", "0.60"))
    assert bs.stats.mismatches == 1 and not snap.in_sync  # published as not to be trusted
    assert bs.needing_resync(T0, S) == ["A"]  # at once, not after a grace period
    bs.resync_requested(["A"], T0)
    assert bs.needing_resync(T0 + S // 2, S) == []  # asked: wait before asking again
    assert bs.needing_resync(T0 + S, S) == ["A"]
    assert apply(bs, change_frame("A", [("BUY", "0.42", "1")], "0.42", "0.60")) == []
    assert bs.stats.dropped_unsynced == 1  # nothing applied to a book we know is wrong
    (snap,) = apply(bs, book_frame("A", [("0.45", "1")], [("0.60", "1")]))
    assert snap.in_sync and bs.needing_resync(T0 + 5 * S, S) == []
    assert bs.stats.resynced == 1
    bs.books["A"].replace([(0.45, 1.0)], [])  # (the ask side empties)
    assert bs.on_best("A", 0.45, 0.0, T0) is None  # an ask of 0 states an empty side too
    bs.books["A"].replace([(0.45, 1.0)], [(0.60, 1.0)])
    assert bs.on_best("A", 0.0, 1.0, T0) is not None  # venue's 'empty'; ours is not empty
    assert bs.stats.mismatches == 2 and bs.stats.out_of_sync == 2


def market(start_s: int, length_s: int, ptb: float | None = None, tag: str = "") -> MarketInfo:
    return MarketInfo(
        slug=f"btc-updown-5m-{start_s}",
        condition_id=f"0xc{start_s}",
        up_token_id=f"up{start_s}{tag}",
        down_token_id=f"down{start_s}{tag}",
        window_start_ns=start_s * S,
        window_end_ns=(start_s + length_s) * S,
        ts_recv_ns=0,
        price_to_beat=ptb,
        price_to_beat_source="gamma" if ptb is not None else "",
    )


def of(out: list, kind: type) -> list:
    return [m for _, m in out if isinstance(m, kind)]


def test_roles_rollover_release_and_resolution() -> None:
    core = IngestCore(release_grace_ns=5 * S)
    now = 1000 * S + S // 2
    cur, nxt = market(1000, 10), market(1010, 10)
    core.step(cur, now)
    out = core.step(nxt, now)
    roles = {m.slug: m.role for m in of(out, MarketInfo)}
    assert roles == {cur.slug: "current", nxt.slug: "next"}
    assert core.wanted_assets() == {"up1000", "down1000", "up1010", "down1010"}
    assert core.wanted_slugs(now, 300) == [cur.slug, nxt.slug]  # length from the market itself
    out = core.step(Timer(1010 * S), 1010 * S)
    roles = {m.slug: m.role for m in of(out, MarketInfo)}
    assert roles == {cur.slug: "past", nxt.slug: "current"}
    assert "up1000" in core.wanted_assets()  # not released before resolution / grace
    assert core.wanted_slugs(1010 * S, 300) == [nxt.slug, "btc-updown-5m-1020"]
    res = parse_clob(
        json.dumps(
            {
                "event_type": "market_resolved",
                "market": cur.condition_id,
                "winning_asset_id": "down1000",
                "winning_outcome": "Down",
                "timestamp": "1010500",
            }
        ),
        1011 * S,
    )
    (r,) = of(core.on_clob(res, 1011 * S), MarketResolved)
    assert (r.slug, r.winning_outcome) == (cur.slug, "Down")
    core.step(Timer(1011 * S), 1011 * S)
    assert core.wanted_assets() == {"up1010", "down1010"}
    # an unresolved past market goes after the grace period
    core.step(market(1020, 10), 1011 * S)
    core.step(Timer(1020 * S + 4 * S), 1020 * S + 4 * S)
    assert "up1010" in core.wanted_assets()
    core.step(Timer(1020 * S + 5 * S), 1020 * S + 5 * S)
    assert "up1010" not in core.wanted_assets()


def test_price_to_beat_sources_ranked_and_labelled() -> None:
    core = IngestCore()
    start = 2000
    core.step(market(start, 20), (start - 5) * S)
    trade = '{"e":"aggTrade","E":%d,"s":"BTCUSDT","a":1,"p":"%s","q":"1","T":%d,"m":false}'
    core.on_binance(parse_binance(trade % (start * 1000 - 300, "100.0", start * 1000 - 300), 0), 0)
    core.on_binance(parse_binance(trade % (start * 1000 + 50, "101.0", start * 1000 + 50), 0), 0)
    (m,) = [
        x
        for x in of(core.step(Timer(start * S + S // 10), start * S + S // 10), MarketInfo)
        if x.role == "current"
    ]
    assert (m.price_to_beat, m.price_to_beat_source) == (
        100.0,
        "binance",
    )  # last trade before start

    def tick(source: str, value: float, ts_s: int) -> list:
        return [
            PriceFeedTick(
                source=source, symbol="btc/usd", value=value, ts_exchange_ns=ts_s * S, ts_recv_ns=0
            )
        ]

    core.on_price_feed(tick("chainlink", 99.5, start), 0)
    (m,) = [
        x
        for x in of(core.step(Timer(start * S + S), start * S + S), MarketInfo)
        if x.role == "current"
    ]
    assert (m.price_to_beat, m.price_to_beat_source) == (99.5, "chainlink")
    core.on_price_feed(tick("twap60", 99.8, start - 1) + tick("twap60", 99.9, start), 0)
    (m,) = [
        x
        for x in of(core.step(Timer(start * S + 2 * S), start * S + 2 * S), MarketInfo)
        if x.role == "current"
    ]
    assert (m.price_to_beat, m.price_to_beat_source) == (99.9, "twap")
    out = core.step(market(start, 20, ptb=99.95), start * S + 3 * S)
    (m,) = [x for x in of(out, MarketInfo) if x.role == "current"]
    assert (m.price_to_beat, m.price_to_beat_source) == (99.95, "gamma")


TRADE_FRAME = json.dumps(
    {
        "e": "aggTrade",
        "E": 1,
        "s": "BTCUSDT",
        "a": 1,
        "p": "85000.1",
        "q": "0.1",
        "f": 1,
        "l": 1,
        "T": 1,
        "m": False,
        "M": True,
    }
)


def test_feed_status_stale_by_data_not_keepalives() -> None:
    core = IngestCore(stale_after_ms=500)
    for name in ("binance", "clob", "price_feed"):
        core.feed(name).connected = True
    core.on_binance(parse_binance(TRADE_FRAME, T0), T0)
    core.on_clob(parse_clob("PONG", T0), T0)
    core.on_price_feed([], T0)
    for k in range(1, 20):  # keep-alives keep coming every 100 ms, data stopped at T0
        t = T0 + k * 100_000_000
        core.on_binance([], t)
        core.on_clob(parse_clob("PONG", t), t)
    st = {m.feed: m for m in of(core.step(Timer(T0 + 2 * S), T0 + 2 * S), FeedStatus)}
    assert st["binance"].stale and st["binance"].last_data_age_ms == pytest.approx(2000.0)
    assert st["binance"].last_msg_age_ms == pytest.approx(100.0)
    assert st["clob"].stale and st["clob"].last_data_age_ms == -1.0
    assert st["price_feed"].stale


def test_feed_status_stale_flag_and_cadence() -> None:
    core = IngestCore(stale_after_ms=500, price_feed_enabled=False)
    core.feed("binance").connected = True
    core.on_binance([], T0 - 10**9)  # a frame without data (a keep-alive, an answer)
    core.on_binance(parse_binance(TRADE_FRAME, T0), T0)
    core.on_binance([], T0 + 50_000_000)
    st = {m.feed: m for m in of(core.step(Timer(T0 + 100_000_000), T0 + 100_000_000), FeedStatus)}
    assert set(st) == {"binance", "clob", "gamma", "price_feed"}
    assert st["binance"].stale is False and st["binance"].last_msg_age_ms == pytest.approx(50.0)
    assert st["binance"].last_data_age_ms == pytest.approx(100.0)
    assert st["clob"].stale is True and st["clob"].last_msg_age_ms == -1.0
    assert st["price_feed"].stale is True and "disabled" in st["price_feed"].detail
    assert (
        of(core.step(Timer(T0 + 200_000_000), T0 + 200_000_000), FeedStatus) == []
    )  # nothing changed, < 1 s
    st = {m.feed: m for m in of(core.step(Timer(T0 + 600_000_000), T0 + 600_000_000), FeedStatus)}
    assert st["binance"].stale is True  # the flip is published at once
    st = {
        m.feed: m for m in of(core.step(Timer(T0 + 1_700_000_000), T0 + 1_700_000_000), FeedStatus)
    }
    assert set(st) == {"binance", "clob", "gamma", "price_feed"}  # again within a second


def test_clock_ticks_every_100ms_and_probe() -> None:
    core = IngestCore()
    ticks, probes = [], []
    for i in range(0, 1_000_000_000, 20_000_000):
        for topic, m in core.step(Timer(T0 + i), T0 + i):
            if topic == topics.CLOCK:
                ticks.append(m.ts_ns)
            if topic.startswith(topics.PROBE_PREFIX):
                probes.append(m)
    assert max(b - a for a, b in zip(ticks, ticks[1:], strict=False)) <= 100_000_000
    assert len(probes) == 1 and probes[0].hops == ["ingest"]


def test_backoff_bounds_jitter_cap_and_reset() -> None:
    b = Backoff(0.5, 8.0, jitter=0.2, rng=random.Random(1))
    delays = []
    for _ in range(8):
        bound = b.bound()
        d = b.next()
        assert 0 < d <= bound
        delays.append(d)
    assert delays[0] <= 0.6 and delays[3] >= 0.5 * 8 * 0.8
    assert max(delays) <= 8.0
    b.reset()
    assert b.next() <= 0.6


def test_options_from_env_names_bad_fields() -> None:
    o = load_settings({"INGEST_CAPTURE": "1", "INGEST_CLOB_PING_MS": "200"}, dotenv=None).ingest
    assert o.capture is True and o.clob_ping_ms == 200
    with pytest.raises(ConfigError) as e:
        load_settings({"INGEST_CAPTURE": "maybe", "INGEST_CLOB_PING_MS": "fast"}, dotenv=None)
    assert set(e.value.errors) == {"INGEST_CAPTURE", "INGEST_CLOB_PING_MS"}


def test_capture_rotates_and_reads_back(tmp_path) -> None:  # noqa: ANN001
    w = CaptureWriter(tmp_path, rotate_s=3600, max_bytes=400)
    frames = [
        (T0 + i, "clob" if i % 2 else "binance", f'{{"i": {i}, "s": "x\\n\\u00e9"}}')
        for i in range(20)
    ]
    for ts, ch, fr in frames:
        w.write(ts, ch, fr)
    w.close()
    files = capture_files(tmp_path)
    assert len(files) > 1 and all(f.suffix == ".gz" for f in files)
    back = [line for f in files for line in read_capture(f)]
    assert back == frames


def test_price_feed_is_judged_by_its_own_cadence() -> None:
    """Chainlink ticks ~1/s with gaps of several seconds: a 5 s gap is not stale for the price
    feed (its own bound, 10 s here) while the same age is stale for Binance (3 s)."""
    core = IngestCore(stale_after_ms=3000, price_feed_stale_after_ms=10_000)
    for name in ("binance", "price_feed"):
        core.feed(name).connected = True
    core.on_binance(parse_binance(TRADE_FRAME, T0), T0)
    tick = PriceFeedTick(
        source="chainlink", symbol="btc/usd", value=85_000.0, ts_exchange_ns=T0, ts_recv_ns=T0
    )
    core.on_price_feed([tick], T0)
    st = {m.feed: m for m in of(core.step(Timer(T0 + 5 * S), T0 + 5 * S), FeedStatus)}
    assert st["binance"].stale and not st["price_feed"].stale
    st = {m.feed: m for m in of(core.step(Timer(T0 + 11 * S), T0 + 11 * S), FeedStatus)}
    assert st["price_feed"].stale


def test_md_market_is_one_message_per_known_market_each_second() -> None:
    """README: ingest republishes every known market (past ones awaiting resolution, current,
    next) every second; with 20 s windows that is several md.market per second, not one."""
    from common import topics
    from common.core import Timer
    from common.schema import MarketInfo
    from services.ingest.core import IngestCore

    s = 1_000_000_000
    start = 1_800_000_000 * s
    core = IngestCore()
    for k in range(-2, 2):  # two past (unresolved), the current, the next
        w0 = start + k * 20 * s
        core.step(
            MarketInfo(
                slug=f"btc-updown-5m-{w0 // s}",
                condition_id=f"0x{k + 2}",
                up_token_id=f"u{k}",
                down_token_id=f"d{k}",
                window_start_ns=w0,
                window_end_ns=w0 + 20 * s,
                ts_recv_ns=start,
                fee_rate=0.07,
            ),
            start + 5 * s,
        )
    counts = []
    for i in range(1, 4):
        t = start + 5 * s + i * s
        out = core.step(Timer(t), t)
        counts.append(sum(1 for topic, _ in out if topic == topics.MARKET))
    assert counts == [4, 4, 4], counts
