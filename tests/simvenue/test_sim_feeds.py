"""Plain websockets/httpx clients read frames shaped like the fixtures (same keys and types)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.simvenue.conftest import SimProc, assert_same_shape, fixture_json


async def _recv_json(ws, pred, timeout: float = 10.0) -> dict:  # type: ignore[no-untyped-def]
    """First JSON frame (object, or object inside an array) satisfying `pred`."""

    async def loop() -> dict:
        while True:
            raw = await ws.recv()
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            for item in obj if isinstance(obj, list) else [obj]:
                if isinstance(item, dict) and pred(item):
                    return item

    return await asyncio.wait_for(loop(), timeout)


def test_binance_raw_and_combined_streams_match_fixtures(sim: SimProc) -> None:
    async def go() -> None:
        async with connect(f"{sim.ws}/ws/btcusdt@aggTrade") as ws:
            agg = await _recv_json(ws, lambda d: d.get("e") == "aggTrade")
        assert_same_shape(agg, fixture_json("binance_docs/spot_aggTrade_raw.json"))
        assert agg["s"] == "BTCUSDT" and float(agg["p"]) > 1000 and "." in agg["q"]
        url = f"{sim.ws}/stream?streams=btcusdt@trade/btcusdt@bookTicker"
        async with connect(url) as ws:
            bt = await _recv_json(ws, lambda d: d.get("stream") == "btcusdt@bookTicker")
            tr = await _recv_json(ws, lambda d: d.get("stream") == "btcusdt@trade")
            await ws.send(
                json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@aggTrade"], "id": 1})
            )
            reply = await _recv_json(ws, lambda d: d.get("id") == 1)
            await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 3}))
            listed = await _recv_json(ws, lambda d: d.get("id") == 3)
            await ws.send(
                json.dumps({"method": "UNSUBSCRIBE", "params": ["btcusdt@trade"], "id": 312})
            )
            unsub = await _recv_json(ws, lambda d: d.get("id") == 312)
            combined_agg = await _recv_json(ws, lambda d: d.get("stream") == "btcusdt@aggTrade")
        assert_same_shape(bt, fixture_json("live_2026/binance_combined_bookTicker.json"))
        assert_same_shape(tr["data"], fixture_json("binance_docs/spot_trade_raw.json"))
        assert_same_shape(combined_agg, fixture_json("live_2026/binance_combined_aggTrade_0.json"))
        assert reply == fixture_json("binance_docs/spot_subscribe_response.json")
        assert set(listed["result"]) == {"btcusdt@trade", "btcusdt@bookTicker", "btcusdt@aggTrade"}
        assert unsub == {"result": None, "id": 312}

    asyncio.run(go())


def test_market_channel_book_price_change_and_operations(sim: SimProc) -> None:
    st = sim.state()
    # the current and the next window: best_bid_ask comes only when a top of book moves, and a
    # window near its end can sit pinned at 0.99 until it resolves; the next one then trades
    tokens = [st[w][k] for w in ("current", "next") for k in ("up_token", "down_token")]
    up, down = tokens[:2]

    async def go() -> None:
        async with connect(f"{sim.ws}/ws/market") as ws:
            await ws.send(
                json.dumps({"assets_ids": tokens, "type": "market", "custom_feature_enabled": True})
            )
            book = await _recv_json(ws, lambda d: d.get("event_type") == "book")
            pc = await _recv_json(ws, lambda d: d.get("event_type") == "price_change")
            bba = await _recv_json(ws, lambda d: d.get("event_type") == "best_bid_ask", 30)
            await ws.send("PING")
            pong = await asyncio.wait_for(_first_text(ws, "PONG"), 5)
            nxt = sim.state()["next"]["up_token"]
            await ws.send(json.dumps({"operation": "subscribe", "assets_ids": [nxt]}))
            nbook = await _recv_json(
                ws, lambda d: d.get("event_type") == "book" and d["asset_id"] == nxt
            )
            await ws.send(json.dumps({"operation": "unsubscribe", "assets_ids": [up, down]}))
        return book, pc, bba, pong, nbook, nxt

    book, pc, bba, pong, nbook, nxt = asyncio.run(go())
    want_book = fixture_json("live_2026/clob_ws_book_TRIMMED.json")
    assert_same_shape(book, want_book)
    bids = [float(b["price"]) for b in book["bids"]]
    asks = [float(a["price"]) for a in book["asks"]]
    assert bids == sorted(bids) and asks == sorted(asks, reverse=True)  # best level last
    want_pc = fixture_json("nautilus_trader/polymarket_ws_py/price_change_v2.json")
    assert_same_shape(pc, want_pc)
    for entry in pc["price_changes"]:
        assert_same_shape(entry, want_pc["price_changes"][0])
        assert entry["asset_id"] in tokens
    assert_same_shape(bba, fixture_json("live_2026/clob_ws_best_bid_ask.json"))
    assert pong == "PONG"
    assert nbook["asset_id"] == nxt


async def _first_text(ws, text: str) -> str:  # type: ignore[no-untyped-def]
    while True:
        raw = await ws.recv()
        if raw == text:
            return raw


def test_market_channel_trades_roll_and_resolution(sim: SimProc) -> None:
    """Over a window roll (6 s windows): last_trade_price, new_market and market_resolved."""
    st = sim.state()
    cur = st["current"]

    async def go() -> tuple[dict, dict, dict]:
        async with connect(f"{sim.ws}/ws/market") as ws:
            await ws.send(
                json.dumps(
                    {
                        "assets_ids": [cur["up_token"], cur["down_token"]],
                        "type": "market",
                        "custom_feature_enabled": True,
                    }
                )
            )
            seen: dict[str, dict] = {}

            async def loop() -> None:
                while not {"last_trade_price", "new_market", "market_resolved"} <= set(seen):
                    obj = json.loads(await ws.recv())
                    for it in obj if isinstance(obj, list) else [obj]:
                        seen.setdefault(it.get("event_type"), it)

            await asyncio.wait_for(loop(), 20)
            return seen["last_trade_price"], seen["new_market"], seen["market_resolved"]

    ltp, nm, res = asyncio.run(go())
    assert_same_shape(ltp, fixture_json("live_2026/clob_ws_last_trade_price.json"))
    assert_same_shape(
        nm, fixture_json("nautilus_trader/polymarket_rs/ws_market_new_market_msg.json")
    )
    assert_same_shape(
        res, fixture_json("nautilus_trader/polymarket_rs/ws_market_resolved_msg.json")
    )
    assert res["market"] == cur["condition_id"]
    assert res["winning_asset_id"] in (cur["up_token"], cur["down_token"])


def test_rtds_chainlink_and_twap(sim: SimProc) -> None:
    async def go() -> tuple[dict, dict, str]:
        async with connect(f"{sim.ws}/rtds") as ws:
            await ws.send(
                json.dumps(fixture_json("live_2026/rtds_subscribe_frame_unfiltered.json"))
            )
            cl = await _recv_json(ws, lambda d: d.get("topic") == "crypto_prices_chainlink")
            tw = await _recv_json(ws, lambda d: d.get("topic") == "crypto_prices_twap_sixty")
            await ws.send("PING")
            pong = await asyncio.wait_for(_first_text(ws, "PONG"), 5)
        return cl, tw, pong

    cl, tw, pong = asyncio.run(go())
    assert_same_shape(cl, fixture_json("live_2026/rtds_crypto_prices_chainlink_update_0.json"))
    assert_same_shape(tw, fixture_json("live_2026/rtds_crypto_prices_twap_sixty_update_0.json"))
    assert cl["payload"]["symbol"] == "btc/usd" and tw["payload"]["window_s"] == 6
    assert pong == "PONG"


@pytest.mark.parametrize("form", ["query", "slug"])
def test_gamma_event_and_market_shapes(sim: SimProc, form: str) -> None:
    st = sim.state()
    slug = st["current"]["slug"]
    if form == "query":
        ev = httpx.get(f"{sim.http}/gamma/events", params={"slug": slug}).json()[0]
        mk = httpx.get(f"{sim.http}/gamma/markets", params={"slug": slug}).json()[0]
    else:
        ev = httpx.get(f"{sim.http}/gamma/events/slug/{slug}").json()
        mk = httpx.get(f"{sim.http}/gamma/markets/slug/{slug}").json()
    want = fixture_json("live_2026/gamma_market_btc_updown_5m_1790617500.json")
    for key in (
        "eventStartTime",
        "endDate",
        "clobTokenIds",
        "outcomes",
        "orderPriceMinTickSize",
        "orderMinSize",
        "feeSchedule",
        "cryptoMarketConfig",
        "resolutionSource",
        "conditionId",
        "slug",
        "closed",
        "acceptingOrders",
    ):
        assert type(mk[key]) is type(want[key]), key
    assert json.loads(mk["clobTokenIds"]) == [
        st["current"]["up_token"],
        st["current"]["down_token"],
    ]
    assert json.loads(mk["outcomes"]) == ["Up", "Down"]
    assert mk["cryptoMarketConfig"]["twapLookbackSeconds"] == 6
    assert ev["markets"][0]["slug"] == slug and "eventMetadata" in ev
    # The next window is listed ahead.
    nxt = httpx.get(f"{sim.http}/gamma/events/slug/{st['next']['slug']}")
    assert nxt.status_code == 200
    assert httpx.get(f"{sim.http}/gamma/events/slug/btc-updown-5m-1").status_code == 404


def test_gamma_price_to_beat_appears_late_then_final_price(sim: SimProc) -> None:
    slug = sim.state()["current"]["slug"]

    def meta() -> dict:
        return httpx.get(f"{sim.http}/gamma/events/slug/{slug}").json()["eventMetadata"]

    from tests.simvenue.conftest import wait_for

    wait_for(lambda: "priceToBeat" in meta(), 10, what="priceToBeat")
    final = wait_for(lambda: meta() if "finalPrice" in meta() else None, 15, what="finalPrice")
    assert isinstance(final["finalPrice"], float) and isinstance(final["priceToBeat"], float)
    closed = httpx.get(f"{sim.http}/gamma/events", params={"slug": slug}).json()
    assert closed == []  # closed markets are omitted unless closed=true
    again = httpx.get(f"{sim.http}/gamma/events", params={"slug": slug, "closed": "true"}).json()
    assert again and again[0]["closed"] is True
