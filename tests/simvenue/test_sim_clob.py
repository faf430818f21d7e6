"""CLOB REST through py-clob-client-v2 with a throwaway key, and the user channel."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from eth_account import Account
from py_clob_client_v2.client import ClobClient
from py_clob_client_v2.clob_types import (
    BalanceAllowanceParams,
    MarketOrderArgsV2,
    OrderArgsV2,
    OrderType,
    PartialCreateOrderOptions,
)
from py_clob_client_v2.exceptions import PolyApiException
from websockets.asyncio.client import connect

from tests.simvenue.conftest import (
    SimProc,
    assert_same_shape,
    fixture_json,
    start_sim,
    stop_sim,
    wait_for,
)

CSIM_WINDOW_S = 30


@pytest.fixture(scope="module")
def csim():
    # 30 s windows: orders never straddle a roll; a large balance for the big FAK.
    s = start_sim("--window-seconds", str(CSIM_WINDOW_S), "--seed", "3", "--balance", "100000000")
    try:
        yield s
    finally:
        stop_sim(s)


@pytest.fixture(scope="module")
def client(csim: SimProc) -> ClobClient:
    c = ClobClient(host=f"{csim.http}/clob", chain_id=137, key=Account.create().key.hex())
    c.set_api_creds(c.create_or_derive_api_key())
    return c


def _up(csim: SimProc) -> tuple[str, dict]:
    """The current window's Up token, once the window has time left for the test's orders."""

    def with_time_left() -> dict | None:
        st = csim.state()
        start = int(st["current"]["slug"].rsplit("-", 1)[1])
        book = st["current"]["books"][st["current"]["up_token"]]
        # and a book not yet decided (its asks and bids away from 0 and 1), so a far-from-the-
        # market order rests and a deep book does not end at the first level
        mid_priced = (
            book["best_bid"] is not None
            and book["best_ask"] is not None
            and 0.05 <= float(book["best_bid"]) <= float(book["best_ask"]) <= 0.95
        )
        return st if start + CSIM_WINDOW_S - time.time() > 8 and mid_priced else None

    st = wait_for(with_time_left, CSIM_WINDOW_S, what="a window with time left")
    return st["current"]["up_token"], st["current"]


def test_api_key_derivation_and_l1_l2_checks(csim: SimProc, client: ClobClient) -> None:
    again = client.derive_api_key()
    assert again.api_key == client.creds.api_key
    r = httpx.get(
        f"{csim.http}/clob/auth/derive-api-key",
        headers={
            "POLY_ADDRESS": client.get_address(),
            "POLY_SIGNATURE": "0x00",
            "POLY_TIMESTAMP": "1",
            "POLY_NONCE": "0",
        },
    )
    assert r.status_code == 401 and "error" in r.json()
    bal = client.get_balance_allowance(BalanceAllowanceParams(asset_type="COLLATERAL"))
    assert int(bal["balance"]) > 0
    r = httpx.get(
        f"{csim.http}/clob/balance-allowance",
        headers={
            "POLY_ADDRESS": client.get_address(),
            "POLY_API_KEY": client.creds.api_key,
            "POLY_PASSPHRASE": client.creds.api_passphrase,
            "POLY_TIMESTAMP": "1",
            "POLY_SIGNATURE": "bad",
        },
    )
    assert r.status_code == 401


def test_market_parameters_and_book(csim: SimProc, client: ClobClient) -> None:
    token, cur = _up(csim)
    assert client.get_tick_size(token) in ("0.01", "0.001")
    assert client.get_neg_risk(token) is False
    book = client.get_order_book(token)
    assert_same_shape(
        book, fixture_json("live_2026/clob_rest_book_TRIMMED.json"), ignore=("_note",)
    )
    assert client.post_heartbeat("")["heartbeat_id"]


def test_fok_buy_accepted_and_filled_with_user_events(csim: SimProc, client: ClobClient) -> None:
    token, cur = _up(csim)
    creds = client.creds

    async def go() -> tuple[dict, list[dict]]:
        async with connect(f"{csim.ws}/ws/user") as ws:
            await ws.send(
                json.dumps(
                    {
                        "auth": {
                            "apiKey": creds.api_key,
                            "secret": creds.api_secret,
                            "passphrase": creds.api_passphrase,
                        },
                        "markets": [cur["condition_id"]],
                        "type": "user",
                    }
                )
            )
            await asyncio.sleep(0)  # let the auth frame go out before the order
            order = client.create_market_order(
                MarketOrderArgsV2(
                    token_id=token, amount=5.0, side="BUY", price=0.99, order_type=OrderType.FOK
                )
            )
            resp = await asyncio.to_thread(client.post_order, order, OrderType.FOK)
            events: list[dict] = []

            async def loop() -> None:
                while not any(e.get("status") == "CONFIRMED" for e in events):
                    events.append(json.loads(await ws.recv()))

            await asyncio.wait_for(loop(), 10)
            return resp, events

    resp, events = asyncio.run(go())
    assert resp["success"] is True and resp["status"] == "matched"
    assert float(resp["makingAmount"]) > 0 and float(resp["takingAmount"]) > 5 - 1e-9
    trade_status = [e["status"] for e in events if e["event_type"] == "trade"]
    assert trade_status == ["MATCHED", "MINED", "CONFIRMED"]
    placement = next(e for e in events if e["event_type"] == "order")
    assert_same_shape(
        placement,
        fixture_json("nautilus_trader/polymarket_ws_py/order_placement.json"),
        ignore=("associate_trades", "expiration"),
    )
    trade = next(e for e in events if e["event_type"] == "trade")
    assert_same_shape(trade, fixture_json("nautilus_trader/polymarket_ws_py/user_trade2.json"))


def test_tampered_signature_rejected(csim: SimProc, client: ClobClient) -> None:
    token, _ = _up(csim)
    order = client.create_order(
        OrderArgsV2(token_id=token, price=0.5, size=10, side="BUY"),
        PartialCreateOrderOptions(tick_size=client.get_tick_size(token), neg_risk=False),
    )
    order.takerAmount = str(int(order.takerAmount) + 1_000_000)
    with pytest.raises(PolyApiException) as ei:
        client.post_order(order, OrderType.GTC)
    assert ei.value.status_code == 400
    assert ei.value.error_msg == {"error": "invalid signature"}


def test_fok_larger_than_book_is_killed(csim: SimProc, client: ClobClient) -> None:
    token, _ = _up(csim)
    order = client.create_market_order(
        MarketOrderArgsV2(
            token_id=token, amount=10_000_000.0, side="BUY", price=0.99, order_type=OrderType.FOK
        )
    )
    with pytest.raises(PolyApiException) as ei:
        client.post_order(order, OrderType.FOK)
    assert ei.value.status_code == 400
    assert "FOK orders are fully filled or killed" in ei.value.error_msg["error"]


def test_fak_partially_fills(csim: SimProc, client: ClobClient) -> None:
    token, cur = _up(csim)
    ask = float(cur["books"][token]["best_ask"] or 0.5)
    limit = round(min(ask + 0.03, 0.99), 2)
    depth = sum(float(s) for p, s in cur["books"][token]["asks"] if float(p) <= limit + 1e-9)
    order = client.create_order(
        OrderArgsV2(token_id=token, price=limit, size=200_000, side="BUY"),
        PartialCreateOrderOptions(tick_size="0.01", neg_risk=False),
    )
    resp = client.post_order(order, OrderType.FAK)
    assert resp["success"] is True and resp["status"] == "matched"
    got = float(resp["takingAmount"])
    assert 0 < got < 200_000
    assert got < depth * 3  # bounded by what the book held near the limit
    trades = client.get_trades()
    assert any(t["id"] in resp["tradeIDs"] for t in trades)


def test_gtc_rests_and_cancels(csim: SimProc, client: ClobClient) -> None:
    token, _ = _up(csim)
    order = client.create_order(
        OrderArgsV2(token_id=token, price=0.01, size=10, side="BUY"),
        PartialCreateOrderOptions(tick_size="0.01", neg_risk=False),
    )
    resp = client.post_order(order, OrderType.GTC)
    assert resp["status"] == "live"
    assert client.get_order(resp["orderID"])["status"] == "LIVE"
    from py_clob_client_v2.clob_types import OrderPayload

    out = client.cancel_order(OrderPayload(orderID=resp["orderID"]))
    assert out["canceled"] == [resp["orderID"]]
