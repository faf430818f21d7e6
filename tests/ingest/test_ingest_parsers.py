"""Every ingest parser against every relevant fixture (expected values read from the fixture
itself), plus the venue's rules the fixtures do not show: arrays, numbers for decimals, missing
optional fields, unknown fields and event types, garbage."""

from __future__ import annotations

import json
import math
import random
from datetime import datetime
from pathlib import Path

import msgspec
import pytest

from common import schema
from common.schema import BookSnapshot, BtcQuote, BtcTrade, MarketInfo, PriceFeedTick
from services.ingest import parsers as P
from services.ingest.parsers import BookDelta
from tests.conftest import FIXTURES

TS = 1_790_000_000_123_456_789


def fx(rel: str) -> str:
    return (FIXTURES / rel).read_text()


def js(rel: str) -> object:
    return json.loads(fx(rel))


def inner(doc: dict) -> dict:
    return doc["data"] if "data" in doc and "stream" in doc else doc


def roundtrip(msg: schema.Msg) -> schema.Msg:
    """What a subscriber would decode: constraints are checked here, so garbage cannot pass."""
    return schema.decode(schema.encode(msg))


# --- Binance ---------------------------------------------------------------------------------------
TRADES = [
    "binance_docs/spot_aggTrade_raw.json",
    "binance_docs/spot_trade_raw.json",
    "live_2026/binance_combined_aggTrade_0.json",
    "nautilus_trader/binance_ws/ws_spot_agg_trade.json",
    "nautilus_trader/binance_ws/ws_spot_trade.json",
]
QUOTES = [
    "binance_docs/spot_bookTicker_raw.json",
    "live_2026/binance_combined_bookTicker.json",
    "nautilus_trader/binance_ws/ws_spot_ticker_book.json",
]


@pytest.mark.parametrize("rel", TRADES)
def test_binance_trade_fixtures(rel: str) -> None:
    d = inner(js(rel))  # type: ignore[arg-type]
    (msg,) = P.parse_binance(fx(rel), TS)
    assert isinstance(msg, BtcTrade)
    assert msg.price == float(d["p"]) and msg.size == float(d["q"])
    assert msg.ts_exchange_ns == d["T"] * 1_000_000
    assert msg.ts_recv_ns == TS
    assert msg.trade_id == d["a" if d["e"] == "aggTrade" else "t"]
    assert msg.buyer_is_maker is d["m"]
    assert msg.symbol == d["s"]
    assert roundtrip(msg) == msg


@pytest.mark.parametrize("rel", QUOTES)
def test_binance_book_ticker_fixtures(rel: str) -> None:
    d = inner(js(rel))  # type: ignore[arg-type]
    (msg,) = P.parse_binance(fx(rel).encode(), TS)  # bytes frames too
    assert isinstance(msg, BtcQuote)
    assert (msg.bid, msg.bid_size, msg.ask, msg.ask_size) == tuple(
        float(d[k]) for k in ("b", "B", "a", "A")
    )
    assert msg.update_id == d["u"]
    assert msg.ts_exchange_ns == (d["E"] * 1_000_000 if "E" in d else 0)
    assert roundtrip(msg) == msg


@pytest.mark.parametrize(
    "rel",
    ["binance_docs/spot_serverShutdown_raw.json", "binance_docs/spot_serverShutdown_combined.json"],
)
def test_binance_server_shutdown(rel: str) -> None:
    (ev,) = P.parse_binance(fx(rel), TS)
    assert isinstance(ev, P.ServerShutdown)
    assert ev.ts_exchange_ns == inner(js(rel))["E"] * 1_000_000  # type: ignore[index]


@pytest.mark.parametrize(
    "rel",
    [
        "binance_docs/spot_subscribe_response.json",
        "binance_docs/spot_list_subscriptions_response.json",
    ],
)
def test_binance_responses_are_known_notices(rel: str) -> None:
    (ev,) = P.parse_binance(fx(rel), TS)
    assert isinstance(ev, P.VenueNotice) and ev.known


def test_binance_numbers_unknown_fields_and_unknown_events() -> None:
    frame = json.dumps(
        {
            "stream": "btcusdt@aggTrade",
            "data": {
                "e": "aggTrade",
                "E": 5,
                "s": "BTCUSDT",
                "a": 1,
                "p": 84000.5,
                "q": 0.25,
                "T": 7,
                "m": False,
                "new_field": {"x": [1]},
            },
        }
    )
    (t,) = P.parse_binance(frame, TS)
    assert (t.price, t.size, t.ts_exchange_ns) == (84000.5, 0.25, 7_000_000)
    (big,) = P.parse_binance('{"e": "trade", "p": "1", "q": "1", "T": 1, "t": 1e300}', TS)
    assert big.trade_id == 0 and roundtrip(big) == big  # an absurd id never breaks the bus
    (n,) = P.parse_binance('{"e": "kline", "E": 1, "k": {}}', TS)
    assert isinstance(n, P.VenueNotice) and not n.known


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[1, 2]",
        '{"e": "aggTrade", "p": "NaN", "q": "1", "T": 1}',
        '{"e": "aggTrade", "p": "-1", "q": "1", "T": 1}',
        '{"e": "aggTrade", "p": "abc", "q": "1", "T": 1}',
        '{"e": "aggTrade", "q": "1", "T": 1}',
        '{"u": 1, "s": "BTCUSDT", "b": "1", "a": "2", "A": "1"}',
        '{"stream": "x", "data": 5}',
        '{"e": "aggTrade", "p": "1", "q": "1", "T": 1e30}',
        '{"e": "aggTrade", "p": "1", "q": "1", "T": -5}',
    ],
)
def test_binance_garbage_raises_parse_error(frame: str) -> None:
    with pytest.raises(P.ParseError):
        P.parse_binance(frame, TS)


# --- Polymarket market channel -----------------------------------------------------------------------
BOOKS = [
    "live_2026/clob_ws_book_TRIMMED.json",
    "polymarket_docs/market_channel_book.json",
    "nautilus_trader/polymarket_rs/ws_market_book_msg.json",
    "nautilus_trader/polymarket_ws_py/book.json",
]


def _levels(raw: list) -> dict[float, float]:
    return {float(x["price"]): float(x["size"]) for x in raw if isinstance(x, dict)}


@pytest.mark.parametrize("rel", BOOKS)
def test_clob_book_fixtures_best_first(rel: str) -> None:
    d = js(rel)
    (snap,) = P.parse_clob(fx(rel), TS)
    assert isinstance(snap, BookSnapshot)
    bids, asks = _levels(d.get("bids", [])), _levels(d.get("asks", []))  # type: ignore[union-attr]
    assert dict(snap.bids) == {p: s for p, s in bids.items() if s > 0}
    assert dict(snap.asks) == {p: s for p, s in asks.items() if s > 0}
    assert [p for p, _ in snap.bids] == sorted(bids, reverse=True)
    assert [p for p, _ in snap.asks] == sorted(asks)
    assert snap.best_bid == (max(bids) if bids else None)
    assert snap.best_ask == (min(asks) if asks else None)
    assert snap.asset_id == d["asset_id"]  # type: ignore[index]
    assert snap.ts_exchange_ns == int(d["timestamp"]) * 1_000_000  # type: ignore[index]
    assert snap.tick_size == (float(d["tick_size"]) if "tick_size" in d else 0.0)  # type: ignore[operator,index]
    assert roundtrip(snap) == snap


def test_clob_book_venue_order_best_is_last() -> None:
    """The venue sends bids ascending and asks descending: best is LAST on the wire."""
    d = js("live_2026/clob_ws_book_TRIMMED.json")
    (snap,) = P.parse_clob(fx("live_2026/clob_ws_book_TRIMMED.json"), TS)
    assert snap.best_ask == float(d["asks"][-1]["price"])  # type: ignore[index]
    assert snap.best_ask != float(d["asks"][0]["price"])  # type: ignore[index]
    d = js("nautilus_trader/polymarket_ws_py/book.json")
    (snap,) = P.parse_clob(fx("nautilus_trader/polymarket_ws_py/book.json"), TS)
    assert snap.best_bid == float(d["bids"][-1]["price"])  # type: ignore[index]
    assert snap.best_ask == float(d["asks"][-1]["price"])  # type: ignore[index]


def test_clob_price_change_current_form() -> None:
    for rel in (
        "nautilus_trader/polymarket_ws_py/price_change_v2.json",
        "nautilus_trader/polymarket_rs/ws_market_price_change_msg.json",
    ):
        d = js(rel)
        deltas = P.parse_clob(fx(rel), TS)
        entries = d["price_changes"]  # type: ignore[index]
        assert {x.asset_id for x in deltas} == {e["asset_id"] for e in entries}
        got = [(c.side, c.price, c.size) for x in deltas for c in x.changes]
        assert got == [(e["side"], float(e["price"]), float(e["size"])) for e in entries]
        for x in deltas:
            assert isinstance(x, BookDelta)
            assert x.best_bid == float(entries[-1]["best_bid"])
            assert x.best_ask == float(entries[-1]["best_ask"])
            assert x.ts_exchange_ns == int(d["timestamp"]) * 1_000_000  # type: ignore[index]
            assert not isinstance(x, schema.Msg)  # ingest's own event: never on the bus


def test_clob_price_change_legacy_forms() -> None:
    legacy = js("polymarket_docs/price_change_legacy_pre_2025_09_15.json")
    (x,) = P.parse_clob(fx("polymarket_docs/price_change_legacy_pre_2025_09_15.json"), TS)
    assert x.asset_id == legacy["asset_id"]  # type: ignore[index]
    assert [(c.side, c.price, c.size) for c in x.changes] == [
        (c["side"], float(c["price"]), float(c["size"]))
        for c in legacy["changes"]  # type: ignore[index]
    ]
    assert x.best_bid is None and x.best_ask is None
    flat = js("nautilus_trader/polymarket_ws_py/price_change.json")
    (y,) = P.parse_clob(fx("nautilus_trader/polymarket_ws_py/price_change.json"), TS)
    assert y.asset_id == flat["asset_id"]  # type: ignore[index]
    assert [(c.side, c.price, c.size) for c in y.changes] == [
        (flat["side"], float(flat["price"]), float(flat["size"]))  # type: ignore[index]
    ]


@pytest.mark.parametrize(
    "rel",
    [
        "nautilus_trader/polymarket_rs/ws_market_tick_size_msg.json",
        "nautilus_trader/polymarket_ws_py/tick_size_change.json",
    ],
)
def test_clob_tick_size_change(rel: str) -> None:
    d = js(rel)
    (ev,) = P.parse_clob(fx(rel), TS)
    assert isinstance(ev, P.TickSizeChange)
    assert ev.new_tick_size == float(d["new_tick_size"])  # type: ignore[index]
    assert ev.old_tick_size == float(d["old_tick_size"])  # type: ignore[index]
    assert ev.asset_id == d["asset_id"]  # type: ignore[index]


def test_clob_other_events() -> None:
    for rel in (
        "live_2026/clob_ws_last_trade_price.json",
        "nautilus_trader/polymarket_rs/ws_market_last_trade_msg.json",
        "nautilus_trader/polymarket_ws_py/last_trade_price.json",
    ):
        d = js(rel)
        (ev,) = P.parse_clob(fx(rel), TS)
        assert isinstance(ev, P.LastTrade)
        assert (ev.price, ev.size, ev.side) == (float(d["price"]), float(d["size"]), d["side"])  # type: ignore[index]
    for rel in (
        "live_2026/clob_ws_best_bid_ask.json",
        "nautilus_trader/polymarket_rs/ws_market_best_bid_ask_msg.json",
    ):
        d = js(rel)
        (ev,) = P.parse_clob(fx(rel), TS)
        assert isinstance(ev, P.BestBidAsk)
        assert (ev.best_bid, ev.best_ask) == (float(d["best_bid"]), float(d["best_ask"]))  # type: ignore[index]
    d = js("nautilus_trader/polymarket_rs/ws_market_resolved_msg.json")
    (ev,) = P.parse_clob(fx("nautilus_trader/polymarket_rs/ws_market_resolved_msg.json"), TS)
    assert isinstance(ev, P.MarketResolvedRaw)
    assert (ev.market, ev.winning_asset_id, ev.winning_outcome) == (
        d["market"],
        d["winning_asset_id"],
        d["winning_outcome"],
    )  # type: ignore[index]
    d = js("nautilus_trader/polymarket_rs/ws_market_new_market_msg.json")
    (ev,) = P.parse_clob(fx("nautilus_trader/polymarket_rs/ws_market_new_market_msg.json"), TS)
    assert isinstance(ev, P.NewMarket) and ev.asset_ids == d["assets_ids"]  # type: ignore[index]


def test_clob_arrays_plain_text_and_unknown_events() -> None:
    book = js("nautilus_trader/polymarket_rs/ws_market_book_msg.json")
    change = js("nautilus_trader/polymarket_ws_py/price_change_v2.json")
    evs = P.parse_clob(json.dumps([book, change, {"event_type": "brand_new", "x": 1}]), TS)
    assert [type(e).__name__ for e in evs] == ["BookSnapshot", "BookDelta", "VenueNotice"]
    assert evs[2].known is False
    assert P.parse_clob("[]", TS) == []
    (n,) = P.parse_clob("NO NEW ASSETS", TS)
    assert isinstance(n, P.VenueNotice) and n.known
    (p,) = P.parse_clob(b"PONG", TS)
    assert isinstance(p, P.Pong)


def test_clob_numbers_missing_optionals_and_array_levels() -> None:
    frame = {
        "event_type": "book",
        "asset_id": "7",
        "bids": [[0.4, 10], {"price": 0.45, "size": "0"}],
        "asks": [{"price": "0.6", "size": 3, "extra": True}],
        "future": {"a": 1},
    }
    (snap,) = P.parse_clob(json.dumps(frame), TS)
    assert snap.bids == [(0.4, 10.0)] and snap.asks == [(0.6, 3.0)]
    assert snap.ts_exchange_ns == 0 and snap.hash == "" and snap.market == ""


@pytest.mark.parametrize(
    "frame",
    [
        "{broken",
        "HELLO",
        "5",
        '{"event_type": "book"}',
        '{"event_type": "book", "asset_id": "1", "bids": [{"price": "x", "size": "1"}]}',
        '{"event_type": "book", "asset_id": "1", "bids": {"price": "1"}}',
        '{"event_type": "price_change", "price_changes": [{"asset_id": "1", "price": "0.5", "size": "1", "side": "HOLD"}]}',
        '{"event_type": "price_change", "price_changes": [{"price": "0.5", "size": "1", "side": "BUY"}]}',
        '{"event_type": "price_change", "asset_id": "1", "changes": [{"price": "inf", "size": "1", "side": "BUY"}]}',
        '{"event_type": "tick_size_change", "asset_id": "1", "new_tick_size": "0"}',
    ],
)
def test_clob_garbage_raises_parse_error(frame: str) -> None:
    with pytest.raises(P.ParseError):
        P.parse_clob(frame, TS)


# --- RTDS ------------------------------------------------------------------------------------------
RTDS = [
    ("live_2026/rtds_crypto_prices_chainlink_update_0.json", "chainlink"),
    ("live_2026/rtds_crypto_prices_twap_sixty_update_0.json", "twap60"),
    ("live_2026/rtds_crypto_prices_update_0.json", "binance"),
    ("polymarket_docs/rtds_crypto_prices_update_solusdt.json", "binance"),
    ("nautilus_trader/polymarket_rs/rtds_crypto_prices_update.json", "binance"),
]


@pytest.mark.parametrize("rel,source", RTDS)
def test_rtds_updates(rel: str, source: str) -> None:
    d = js(rel)
    (t,) = P.parse_rtds(fx(rel), TS)
    assert isinstance(t, PriceFeedTick)
    assert t.source == source
    assert t.symbol == d["payload"]["symbol"]  # type: ignore[index]
    assert t.value == d["payload"]["value"]  # type: ignore[index]
    assert t.ts_exchange_ns == d["payload"]["timestamp"] * 1_000_000  # type: ignore[index]
    assert roundtrip(t) == t


def test_rtds_subscribe_history_pong_and_unknown() -> None:
    d = js("nautilus_trader/polymarket_rs/rtds_crypto_prices_subscribe.json")
    ticks = P.parse_rtds(fx("nautilus_trader/polymarket_rs/rtds_crypto_prices_subscribe.json"), TS)
    assert [(t.value, t.ts_exchange_ns) for t in ticks] == [
        (x["value"], x["timestamp"] * 1_000_000)
        for x in d["payload"]["data"]  # type: ignore[index]
    ]
    assert isinstance(P.parse_rtds("PONG", TS)[0], P.Pong)
    (n,) = P.parse_rtds('{"topic": "comments", "type": "x", "payload": {}}', TS)
    assert isinstance(n, P.VenueNotice) and not n.known
    with pytest.raises(P.ParseError):
        P.parse_rtds(
            '{"topic": "crypto_prices", "payload": {"symbol": "btcusdt", "value": "NaN"}}', TS
        )


# --- Gamma -----------------------------------------------------------------------------------------
def _iso_ns(s: str) -> int:
    return int(datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()) * 1_000_000_000


@pytest.mark.parametrize(
    "rel",
    [
        "live_2026/gamma_event_btc_updown_5m_1790617500.json",
        "live_2026/gamma_market_btc_updown_5m_1790617500.json",
        "nautilus_trader/polymarket_rs/gamma_market.json",
    ],
)
def test_gamma_documents(rel: str) -> None:
    doc = js(rel)
    m = doc["markets"][0] if "markets" in doc else doc  # type: ignore[index,operator]
    for answer in (fx(rel), json.dumps([doc])):  # /events/slug/x (object) and /events?slug= (list)
        info = P.parse_gamma(answer, TS, m["slug"])
        assert isinstance(info, MarketInfo)
        tokens, outcomes = json.loads(m["clobTokenIds"]), json.loads(m["outcomes"])
        assert info.up_token_id == tokens[outcomes.index("Up")]
        assert info.down_token_id == tokens[outcomes.index("Down")]
        assert info.window_start_ns == _iso_ns(m["eventStartTime"])
        assert info.window_end_ns == _iso_ns(m["endDate"])
        assert info.tick_size == m["orderPriceMinTickSize"]
        assert info.min_order_size == m["orderMinSize"]
        assert info.condition_id == m["conditionId"]
        fee = m.get("feeSchedule") or {}
        assert info.fee_rate == fee.get("rate", 0.0)
        cmc = m.get("cryptoMarketConfig") or {}
        assert info.twap_enabled == cmc.get("twapEnabled", False)
        assert info.twap_lookback_s == cmc.get("twapLookbackSeconds", 0)
        assert info.resolution_source == m.get("resolutionSource", "")
        ptb = (doc.get("eventMetadata") or {}).get("priceToBeat")  # type: ignore[union-attr]
        assert info.price_to_beat == ptb
        assert info.price_to_beat_source == ("gamma" if ptb is not None else "")
        assert roundtrip(info) == info


def test_gamma_price_to_beat_and_swapped_outcomes() -> None:
    doc = js("live_2026/gamma_event_btc_updown_5m_1790617500.json")
    doc["eventMetadata"] = {"priceToBeat": 84123.45, "finalPrice": 84200.0}  # type: ignore[index]
    m = doc["markets"][0]  # type: ignore[index]
    tokens = json.loads(m["clobTokenIds"])
    m["outcomes"] = json.dumps(["Down", "Up"])
    m["unknownNewField"] = [1, 2]
    info = P.parse_gamma(json.dumps([doc]), TS)
    assert info.price_to_beat == 84123.45 and info.price_to_beat_source == "gamma"
    assert info.up_token_id == tokens[1] and info.down_token_id == tokens[0]


@pytest.mark.parametrize(
    "answer,needle",
    [
        ("[]", "empty answer"),
        ('[{"slug": "x", "markets": []}]', "without markets"),
        ('{"slug": "btc-updown-5m-1", "clobTokenIds": "[1]", "outcomes": "[]"}', "2 tokens"),
        ('{"clobTokenIds": "[\\"1\\",\\"2\\"]", "outcomes": "[\\"Yes\\",\\"No\\"]"}', "Up/Down"),
        (
            '{"clobTokenIds": "[\\"1\\",\\"2\\"]", "outcomes": "[\\"Up\\",\\"Down\\"]", "slug": "a"}',
            "start",
        ),
    ],
)
def test_gamma_bad_answers_name_the_problem(answer: str, needle: str) -> None:
    with pytest.raises(P.ParseError, match=needle):
        P.parse_gamma(answer, TS)


def test_every_venue_fixture_is_handled_without_crashing() -> None:
    """Market-data fixtures through the parser of their venue: messages or ParseError only."""
    groups = {
        "binance": (
            P.parse_binance,
            ["binance_docs", "live_2026/binance", "nautilus_trader/binance_ws"],
        ),
        "clob": (
            P.parse_clob,
            [
                "live_2026/clob_ws",
                "polymarket_docs/market_channel_book",
                "polymarket_docs/price_change",
                "nautilus_trader/polymarket_rs/ws_market",
                "nautilus_trader/polymarket_ws_py",
            ],
        ),
        "rtds": (
            P.parse_rtds,
            ["live_2026/rtds", "polymarket_docs/rtds", "nautilus_trader/polymarket_rs/rtds"],
        ),
    }
    seen = 0
    for fn, prefixes in groups.values():
        for path in sorted(Path(FIXTURES).rglob("*.json")):
            rel = str(path.relative_to(FIXTURES))
            if not any(rel.startswith(p) for p in prefixes):
                continue
            seen += 1
            try:
                out = fn(path.read_text(), TS)
            except P.ParseError:
                continue
            for m in out:
                if isinstance(m, schema.Msg):
                    assert roundtrip(m) == m
                    for v in msgspec.to_builtins(m).values():
                        assert not (isinstance(v, float) and math.isnan(v))
    assert seen >= 30


WEIRD_VALUES: list[object] = [
    None,
    "",
    "abc",
    -1,
    1e400,
    "1e999",
    [],
    {},
    True,
    "0",
    0,
    "0.5",
    [["0.5", "1"]],
    2**70,
]


def _mutations(doc: object, rng: random.Random, n: int) -> list[object]:
    """Copies of a decoded frame with one field (at any depth) replaced, dropped or re-typed."""
    paths: list[tuple[object, object]] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                paths.append((node, k))
                walk(v)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                paths.append((node, i))
                walk(v)

    out = []
    for _ in range(n):
        copy = json.loads(json.dumps(doc))
        paths.clear()
        walk(copy)
        if not paths:
            break
        parent, key = rng.choice(paths)
        if isinstance(parent, dict) and rng.random() < 0.3:
            del parent[key]
        else:
            parent[key] = rng.choice(WEIRD_VALUES)  # type: ignore[index]
        out.append(copy)
    return out


def test_mutated_venue_frames_give_messages_or_parse_errors_only() -> None:
    """Any field missing or of another type: a clear ParseError or valid bus messages, never a crash."""
    rng = random.Random(4)
    cases = (
        [(P.parse_binance, r) for r in TRADES + QUOTES]
        + [
            (P.parse_clob, r)
            for r in BOOKS[1:]
            + [
                "nautilus_trader/polymarket_ws_py/price_change_v2.json",
                "polymarket_docs/price_change_legacy_pre_2025_09_15.json",
                "nautilus_trader/polymarket_ws_py/price_change.json",
                "nautilus_trader/polymarket_rs/ws_market_tick_size_msg.json",
                "live_2026/clob_ws_best_bid_ask.json",
                "live_2026/clob_ws_last_trade_price.json",
                "nautilus_trader/polymarket_rs/ws_market_resolved_msg.json",
            ]
        ]
        + [(P.parse_rtds, r) for r, _ in RTDS]
        + [
            (
                lambda f, ts: [P.parse_gamma(f, ts)],
                "live_2026/gamma_event_btc_updown_5m_1790617500.json",
            )
        ]
    )
    parsed = errors = 0
    for fn, rel in cases:
        for doc in _mutations(js(rel), rng, 60):
            frame = json.dumps(doc)
            try:
                out = fn(frame, TS)
            except P.ParseError:
                errors += 1
                continue
            parsed += 1
            for m in out:
                if isinstance(m, schema.Msg):
                    assert roundtrip(m) == m, (rel, frame[:200])
    assert parsed > 100 and errors > 100
