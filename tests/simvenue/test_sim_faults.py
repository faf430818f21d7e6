"""Each fault is observable by a plain client."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from eth_account import Account
from py_clob_client_v2.client import ClobClient
from py_clob_client_v2.clob_types import MarketOrderArgsV2, OrderType
from py_clob_client_v2.exceptions import PolyApiException
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.simvenue.conftest import SimProc, start_sim, stop_sim, wait_for

FSIM_WINDOW_S = 30


@pytest.fixture(scope="module")
def fsim():
    s = start_sim("--window-seconds", str(FSIM_WINDOW_S), "--seed", "9")
    try:
        yield s
    finally:
        stop_sim(s)


@pytest.fixture(autouse=True)
def _clear(fsim: SimProc):
    yield
    httpx.post(f"{fsim.http}/sim/fault/clear")


async def _market_ws(sim: SimProc):  # type: ignore[no-untyped-def]
    st = sim.state()["current"]
    ws = await connect(f"{sim.ws}/ws/market")
    await ws.send(json.dumps({"assets_ids": [st["up_token"], st["down_token"]], "type": "market"}))
    await ws.recv()  # initial books
    return ws


def test_drop_closes_the_socket(fsim: SimProc) -> None:
    async def go() -> None:
        async with connect(f"{fsim.ws}/ws/btcusdt@aggTrade") as ws:
            await asyncio.wait_for(ws.recv(), 5)
            fsim.fault(name="drop", channel="binance")
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(_drain(ws), 5)

    asyncio.run(go())


async def _drain(ws) -> None:  # type: ignore[no-untyped-def]
    while True:
        await ws.recv()


def test_stall_keeps_socket_open_but_silent_then_resumes(fsim: SimProc) -> None:
    async def go() -> None:
        ws = await _market_ws(fsim)
        fsim.fault(name="stall", channel="market", seconds=1.5)
        await asyncio.sleep(0.05)  # frames already in flight may still land
        while True:
            try:
                await asyncio.wait_for(ws.recv(), 0.05)
            except TimeoutError:
                break
        await ws.send("PING")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.7)  # no data, no PONG
        frame = await asyncio.wait_for(ws.recv(), 5)  # resumes after the stall
        assert frame
        await ws.close()

    asyncio.run(go())


@pytest.mark.parametrize("name", ["malformed", "unknown"])
def test_malformed_and_unknown_frames(fsim: SimProc, name: str) -> None:
    async def go() -> list[str]:
        ws = await _market_ws(fsim)
        fsim.fault(name=name, channel="market", count=2)
        got: list[str] = []

        async def loop() -> None:
            while len(got) < 2:
                raw = await ws.recv()
                try:
                    obj = json.loads(raw)
                except ValueError:
                    if name == "malformed":
                        got.append(raw)
                    continue
                if (
                    name == "unknown"
                    and isinstance(obj, dict)
                    and obj.get("event_type") == "sim_unknown_event"
                ):
                    got.append(raw)

        await asyncio.wait_for(loop(), 5)
        await ws.close()
        return got

    assert len(asyncio.run(go())) == 2


@pytest.mark.parametrize("name", ["duplicate_delta", "out_of_order"])
def test_duplicate_and_out_of_order_deltas(fsim: SimProc, name: str) -> None:
    # Deltas already queued for the socket when the fault lands are sent as they are (a loaded
    # machine can queue many between subscribing and the fault): read until the faulted pair shows.
    def seen(deltas: list[str]) -> bool:
        if name == "duplicate_delta":
            return any(a == b for a, b in zip(deltas, deltas[1:], strict=False))
        # A swapped pair shows up as a delta older than the one received before it.
        stamps = [int(json.loads(d)["timestamp"]) for d in deltas]
        return any(a > b for a, b in zip(stamps, stamps[1:], strict=False))

    async def go() -> list[str]:
        ws = await _market_ws(fsim)
        fsim.fault(name=name, count=3)
        deltas: list[str] = []

        async def loop() -> None:
            while not seen(deltas):
                raw = await ws.recv()
                if '"price_change"' in raw:
                    deltas.append(raw)

        try:
            await asyncio.wait_for(loop(), 10)
        except TimeoutError:
            pass
        await ws.close()
        return deltas

    deltas = asyncio.run(go())
    assert seen(deltas), f"no {name} pair in {len(deltas)} deltas"


def test_tick_size_change(fsim: SimProc) -> None:
    async def go() -> dict:
        ws = await _market_ws(fsim)
        at_ms = str(fsim.fault(name="tick_size_change")["fault"]["ts_ns"] // 1_000_000)

        async def loop() -> dict:
            # the forced change is stamped at the fault; a queued one from before (a decided
            # market changes tick by itself) is not it
            while True:
                obj = json.loads(await ws.recv())
                for it in obj if isinstance(obj, list) else [obj]:
                    if (
                        isinstance(it, dict)
                        and it.get("event_type") == "tick_size_change"
                        and it.get("timestamp") == at_ms
                    ):
                        return it

        ev = await asyncio.wait_for(loop(), 10)
        await ws.close()
        return ev

    ev = asyncio.run(go())
    assert ev["old_tick_size"] != ev["new_tick_size"]
    assert fsim.state()["current"]["tick_size"] == ev["new_tick_size"]


def test_gamma_5xx_and_empty(fsim: SimProc) -> None:
    slug = fsim.state()["current"]["slug"]
    fsim.fault(name="gamma_5xx", count=1)
    assert httpx.get(f"{fsim.http}/gamma/events", params={"slug": slug}).status_code >= 500
    assert httpx.get(f"{fsim.http}/gamma/events", params={"slug": slug}).json()[0]["slug"] == slug
    fsim.fault(name="gamma_empty", count=1)
    assert httpx.get(f"{fsim.http}/gamma/markets", params={"slug": slug}).json() == []


@pytest.fixture(scope="module")
def fclient(fsim: SimProc) -> ClobClient:
    c = ClobClient(host=f"{fsim.http}/clob", chain_id=137, key=Account.create().key.hex())
    c.set_api_creds(c.create_or_derive_api_key())
    return c


def _buy(fsim: SimProc, c: ClobClient):  # type: ignore[no-untyped-def]
    """A marketable buy of the current window, which must not close while a fault delays it."""

    def seconds_left() -> float:
        start = int(fsim.state()["current"]["slug"].rsplit("-", 1)[1])
        return start + FSIM_WINDOW_S - time.time()

    def tradeable() -> str | None:
        # time left, and an Up book with $2 of asks at or under the 0.99 limit: a window pinned
        # near 1 has none (a CI run: its FOK was killed, "order couldn't be fully filled")
        if seconds_left() <= 5:
            return None
        token = fsim.state()["current"]["up_token"]
        r = httpx.get(f"{fsim.http}/clob/book", params={"token_id": token})
        if r.status_code != 200:
            return None
        asks = [(float(a["price"]), float(a["size"])) for a in r.json().get("asks", [])]
        usd = sum(p * s for p, s in asks if p <= 0.9)
        return token if usd >= 4.0 else None

    token = wait_for(tradeable, 3 * FSIM_WINDOW_S, what="a window with time left, asks under 0.9")
    return c.create_market_order(
        MarketOrderArgsV2(
            token_id=token, amount=2.0, side="BUY", price=0.99, order_type=OrderType.FOK
        )
    )


def test_order_reject(fsim: SimProc, fclient: ClobClient) -> None:
    fsim.fault(name="order_reject", count=1)
    with pytest.raises(PolyApiException) as ei:
        fclient.post_order(_buy(fsim, fclient), OrderType.FOK)
    assert ei.value.status_code == 400 and "error" in ei.value.error_msg


def test_order_timeout_that_was_placed(fsim: SimProc, fclient: ClobClient) -> None:
    fsim.fault(name="order_timeout_placed", count=1, seconds=1.5)
    before = len(fsim.state()["orders"])
    order = _buy(fsim, fclient)
    from py_clob_client_v2.order_utils.model.order_data_v2 import order_to_json_v2

    body = json.dumps(order_to_json_v2(order, fclient.creds.api_key, "FOK"), separators=(",", ":"))
    headers = fclient._l2_headers("POST", "/order", body=None, serialized_body=body)
    with pytest.raises(httpx.TimeoutException):
        httpx.post(f"{fsim.http}/clob/order", content=body, headers=headers, timeout=0.5)
    # The venue placed (and filled) it even though the client timed out.
    orders = fsim.state()["orders"]
    assert len(orders) == before + 1 and orders[-1]["status"] == "MATCHED"


def test_slow_ack(fsim: SimProc, fclient: ClobClient) -> None:
    fsim.fault(name="slow_ack", count=1, seconds=0.8)
    t0 = time.monotonic()
    resp = fclient.post_order(_buy(fsim, fclient), OrderType.FOK)
    assert resp["success"] is True
    assert time.monotonic() - t0 >= 0.75


def test_unknown_fault_is_a_clear_400(fsim: SimProc) -> None:
    r = httpx.post(f"{fsim.http}/sim/fault", json={"name": "meteor"})
    assert r.status_code == 400 and "unknown fault" in r.json()["error"]
    assert wait_for(lambda: httpx.get(f"{fsim.http}/sim/health").json()["ok"], 2)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"nam": "drop"}, ("missing field 'name'", "nam")),
        ({}, ("missing field 'name'",)),
        (["drop"], ("JSON object",)),
        ({"name": "stall", "seconds": -5}, ("'seconds'", ">= 0")),
        ({"name": "stall", "seconds": "long"}, ("'seconds'", "number")),
        ({"name": "gamma_5xx", "count": 0}, ("'count'", ">= 1")),
        ({"name": "gamma_5xx", "count": 1.5}, ("'count'", "whole number")),
        ({"name": "set_balance"}, ("set_balance", "'usd'")),
        ({"name": "set_balance", "usd": -1}, ("'usd'", ">= 0")),
    ],
)
def test_bad_fault_body_is_a_400_naming_the_field(
    fsim: SimProc, body: object, words: tuple[str, ...]
) -> None:
    before = httpx.get(f"{fsim.http}/sim/faults").json()["log"]
    r = httpx.post(f"{fsim.http}/sim/fault", json=body)
    assert r.status_code == 400, r.text
    assert all(w in r.json()["error"] for w in words), r.json()
    assert httpx.get(f"{fsim.http}/sim/faults").json()["log"] == before  # nothing applied
    # a negative clock skew is a real setting, not an error
    r = httpx.post(f"{fsim.http}/sim/fault", json={"name": "clock_skew", "seconds": -2})
    assert r.status_code == 200, r.text
    httpx.post(f"{fsim.http}/sim/fault", json={"name": "clock_skew", "seconds": 0})
