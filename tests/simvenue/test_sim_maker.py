"""Maker orders on the simulated venue (issue 18), through py-clob-client-v2 with a throwaway key:
post-only refused when it would cross (the venue's own text), post-only only for GTC/GTD, GTD's
minimum expiry, the 5-share minimum, the four cancels, a resting order filled by the simulated
flow and reported on the user channel as the venue reports a maker fill (trade with
`maker_orders`, MATCHED -> MINED -> CONFIRMED; the order's `size_matched`), the window's end
taking resting orders off, and the heartbeat dead-man switch.

Sources of each rule: services/simvenue/matching.py (POST_ONLY_*, INVALID_EXPIRATION,
GTD_*), services/simvenue/venue.py (HEARTBEAT_TIMEOUT_NS)."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from eth_account import Account
from py_clob_client_v2.client import ClobClient
from py_clob_client_v2.clob_types import (
    OpenOrderParams,
    OrderArgsV2,
    OrderMarketCancelParams,
    OrderPayload,
    OrderType,
    PartialCreateOrderOptions,
)
from py_clob_client_v2.endpoints import POST_ORDER
from py_clob_client_v2.exceptions import PolyApiException
from py_clob_client_v2.order_utils.model.order_data_v2 import order_to_json_v2
from websockets.asyncio.client import connect

from services.commands.supervise import holds
from services.simvenue import matching
from services.simvenue.market import NS, SimMarkets
from services.simvenue.matching import SimOrder
from services.simvenue.venue import SimOptions, Venue
from tests.simvenue.conftest import (
    SimProc,
    assert_same_shape,
    fixture_json,
    start_sim,
    stop_sim,
    wait_for,
)

WINDOW_S = 60


@pytest.fixture(scope="module")
def msim():
    s = start_sim("--window-seconds", str(WINDOW_S), "--seed", "4")
    try:
        yield s
    finally:
        stop_sim(s)


def new_client(sim: SimProc) -> ClobClient:
    c = ClobClient(host=f"{sim.http}/clob", chain_id=137, key=Account.create().key.hex())
    c.set_api_creds(c.create_or_derive_api_key())
    return c


def market(sim: SimProc, time_left: float = 25) -> dict:
    """The current market once it has `time_left` seconds to go and a two-sided book away from
    the extremes (tick 0.01)."""

    def ready() -> dict | None:
        cur = sim.state()["current"]
        start = int(cur["slug"].rsplit("-", 1)[1])
        book = cur["books"][cur["up_token"]]
        ok = (
            cur["tick_size"] == "0.01"
            and book["best_bid"] is not None
            and book["best_ask"] is not None
            and 0.1 <= float(book["best_bid"]) <= float(book["best_ask"]) <= 0.9
        )
        return cur if ok and start + WINDOW_S - time.time() > time_left else None

    return wait_for(ready, 2 * WINDOW_S, what="a market with time left")


def limit(c: ClobClient, token: str, price: float, size: float, side: str = "BUY", exp: int = 0):
    return c.create_order(
        OrderArgsV2(token_id=token, price=price, size=size, side=side, expiration=exp),
        PartialCreateOrderOptions(tick_size="0.01", neg_risk=False),
    )


def post_at_best_bid(c: ClobClient, sim: SimProc, token: str) -> tuple[dict, float]:
    """A post-only BUY of 5 at the current best bid; the book moves under us (~60 changes a
    second), so a placement the venue refuses as crossing is retried at the new best bid."""
    for _ in range(10):
        bid = float(sim.state()["current"]["books"][token]["best_bid"])
        try:
            return c.post_order(limit(c, token, bid, 5), OrderType.GTC, post_only=True), bid
        except PolyApiException as e:
            assert e.error_msg == {"error": matching.POST_ONLY_CROSSES}, e.error_msg
    raise AssertionError("the best bid kept crossing")


def resting(sim: SimProc, oid: str) -> dict | None:
    return next((r for r in sim.state()["resting"] if r["id"] == oid), None)


def test_post_only_that_would_cross_is_refused_with_the_venue_text(msim: SimProc) -> None:
    c = new_client(msim)
    cur = market(msim)
    # five ticks through the best ask: still through it however the book moves meanwhile
    through = round(float(cur["books"][cur["up_token"]]["best_ask"]) + 0.05, 2)
    with pytest.raises(PolyApiException) as e:
        c.post_order(limit(c, cur["up_token"], through, 5), OrderType.GTC, post_only=True)
    assert e.value.status_code == 400
    assert e.value.error_msg == {"error": "invalid post-only order: order crosses book"}
    # at the best bid it rests, at the back of the quoters' queue there
    resp, bid = post_at_best_bid(c, msim, cur["up_token"])
    assert resp["success"] is True and resp["status"] == "live"
    r = resting(msim, resp["orderID"])
    assert r is not None and r["remaining"] == 5 and r["price"] == bid
    c.cancel_all()


def test_post_only_is_for_gtc_and_gtd_only(msim: SimProc) -> None:
    """The SDK refuses post-only FOK/FAK itself; the venue does too (a raw POST)."""
    c = new_client(msim)
    cur = market(msim)
    order = limit(c, cur["up_token"], 0.5, 10)
    with pytest.raises(ValueError, match="post_only"):
        c.post_order(order, OrderType.FOK, post_only=True)
    body = order_to_json_v2(order, c.creds.api_key, "FAK", True)
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    headers = c._l2_headers("POST", POST_ORDER, body=body, serialized_body=text)
    r = httpx.post(f"{msim.http}/clob{POST_ORDER}", content=text, headers=headers, timeout=5)
    assert r.status_code == 400 and r.json() == {"error": matching.POST_ONLY_TYPE}


def test_gtd_minimum_expiry_and_resting_minimum_size(msim: SimProc) -> None:
    c = new_client(msim)
    cur = market(msim)
    token = cur["up_token"]
    now = int(time.time())
    with pytest.raises(PolyApiException) as e:
        c.post_order(limit(c, token, 0.05, 10, exp=now + 120), OrderType.GTD, post_only=True)
    assert e.value.error_msg == {"error": "invalid expiration"}
    ok = c.post_order(limit(c, token, 0.05, 10, exp=now + 240), OrderType.GTD, post_only=True)
    assert ok["status"] == "live" and c.get_order(ok["orderID"])["order_type"] == "GTD"
    with pytest.raises(PolyApiException) as e:
        c.post_order(limit(c, token, 0.05, 4), OrderType.GTC, post_only=True)
    msg = e.value.error_msg["error"]
    assert msg.startswith("order 0x") and msg.endswith(
        "is invalid. Size (4) lower than the minimum: 5"
    )
    c.cancel_all()


def test_single_batch_all_and_market_cancels(msim: SimProc) -> None:
    c = new_client(msim)
    cur = market(msim)
    token, down = cur["up_token"], cur["down_token"]
    ids = [
        c.post_order(limit(c, tok, p, 5), OrderType.GTC, post_only=True)["orderID"]
        for tok, p in ((token, 0.05), (token, 0.06), (token, 0.07), (down, 0.05), (token, 0.08))
    ]
    assert all(resting(msim, i) for i in ids)
    assert c.cancel_order(OrderPayload(orderID=ids[0]))["canceled"] == [ids[0]]
    out = c.cancel_orders([ids[1], ids[2], ids[0]])
    assert sorted(out["canceled"]) == sorted(ids[1:3])
    assert out["not_canceled"] == {ids[0]: "already canceled or matched"}
    out = c.cancel_market_orders(OrderMarketCancelParams(asset_id=down))
    assert out["canceled"] == [ids[3]]
    assert c.cancel_all()["canceled"] == [ids[4]]
    assert not any(resting(msim, i) for i in ids)
    assert c.get_open_orders(OpenOrderParams(market=cur["condition_id"])) == []
    assert all(c.get_order(i)["status"] == "CANCELED" for i in ids)


def trade_through(sim: SimProc, oids: list[str]) -> None:
    """The `flow_trade` test control on the first of `oids` still resting: a taker of the
    simulated flow trades through it by the venue's rules (the quoters ahead of it first). An
    order the flow already filled (or is filling) is no longer resting: the next one, or none."""
    for oid in oids:
        r = httpx.post(
            f"{sim.http}/sim/fault", json={"name": "flow_trade", "order_id": oid}, timeout=5
        )
        if r.status_code == 200:
            assert r.json()["fault"]["traded_shares"] >= 5, r.text
            return
        assert r.status_code == 400 and "is not resting" in r.json()["error"], r.text


# a maker fill's trade goes MATCHED -> MINED -> CONFIRMED within the venue's own cadence
# (SimOptions: mine_seconds, confirm_seconds): twice that, plus slack for a loaded machine
CONFIRM_DEADLINE_S = 2 * (SimOptions().mine_seconds + SimOptions().confirm_seconds) + 10


def test_resting_order_is_filled_by_the_flow_as_a_maker_fill(msim: SimProc) -> None:
    """Post-only BUYs at the best bid of both tokens wait behind the quoters' size there; the
    simulated flow fills them: its own takers and quoters may (whichever way the price goes, one
    of the two is in its way), and the `flow_trade` control makes it certain in time: one taker
    of the flow trades through the first order still resting, the quoters ahead of it first.
    The fill comes on the user channel as the venue sends a maker fill and moves the balance at
    the order's price, no fee."""
    c = new_client(msim)
    creds = c.creds

    async def go() -> tuple[dict, dict[str, str], list[dict]]:
        cur = market(msim, time_left=45)
        async with connect(f"{msim.ws}/ws/user") as ws:
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
            await asyncio.sleep(0.1)
            orders = {}
            for token in (cur["up_token"], cur["down_token"]):
                resp, _ = await asyncio.to_thread(post_at_best_bid, c, msim, token)
                orders[resp["orderID"]] = token
            await asyncio.to_thread(trade_through, msim, list(orders))
            events: list[dict] = []

            async def loop() -> None:
                while not any(
                    e.get("event_type") == "trade" and e.get("status") == "CONFIRMED"
                    for e in events
                ):
                    events.append(json.loads(await ws.recv()))

            await asyncio.wait_for(loop(), CONFIRM_DEADLINE_S)
            return cur, orders, events

    cur, orders, events = asyncio.run(go())
    c.cancel_all()
    trades = [e for e in events if e["event_type"] == "trade"]
    first = trades[0]["id"]
    assert [t["status"] for t in trades if t["id"] == first] == ["MATCHED", "MINED", "CONFIRMED"]
    t = trades[0]
    assert t["trader_side"] == "MAKER" and t["owner"] == creds.api_key
    mine = t["maker_orders"][0]
    assert mine["order_id"] in orders and mine["owner"] == creds.api_key and mine["side"] == "BUY"
    assert mine["fee_rate_bps"] == "0" and mine["asset_id"] == orders[mine["order_id"]]
    assert_same_shape(t, fixture_json("nautilus_trader/polymarket_ws_py/user_trade3.json"))
    assert_same_shape(
        mine, fixture_json("nautilus_trader/polymarket_ws_py/user_trade3.json")["maker_orders"][0]
    )
    updates = [e for e in events if e["event_type"] == "order" and e["type"] == "UPDATE"]
    assert updates and updates[0]["id"] == mine["order_id"]
    assert float(updates[0]["size_matched"]) == float(mine["matched_amount"])
    # after the cancel nothing moves: every maker fill (REST trades) against the orders and the
    # balance, which moved by exactly price x shares (a maker pays no fee)
    fills = [x["maker_orders"][0] for x in c.get_trades() if x.get("trader_side") == "MAKER"]
    spent = sum(float(f["price"]) * float(f["matched_amount"]) for f in fills)
    for oid, token in orders.items():
        got = sum(float(f["matched_amount"]) for f in fills if f["order_id"] == oid)
        assert float(c.get_order(oid)["size_matched"]) == pytest.approx(got) and got <= 5
        funder = msim.state()["accounts"][Account.from_key(c.signer.private_key).address.lower()]
        assert funder["tokens"].get(token, 0) == pytest.approx(got)
    assert funder["pusd"] == pytest.approx(1000 - spent, abs=1e-6) and spent > 0


def test_window_end_takes_resting_orders_off(msim: SimProc) -> None:
    c = new_client(msim)
    cur = market(msim, time_left=3)
    # a deep bid on the likely winner: its price heads for 1, away from our 0.02, so the flow
    # does not fill it first (near the end the loser's price falls through everything)
    fav = max(
        (cur["up_token"], cur["down_token"]),
        key=lambda t: float(cur["books"][t]["best_bid"] or 0),
    )
    resp = c.post_order(limit(c, fav, 0.02, 5), OrderType.GTC, post_only=True)
    end = int(cur["slug"].rsplit("-", 1)[1]) + WINDOW_S
    wait_for(
        lambda: c.get_order(resp["orderID"])["status"] == "CANCELED",
        end - time.time() + 10,
        what="the order cancelled at the window's end",
    )
    assert time.time() >= end and resting(msim, resp["orderID"]) is None


def test_heartbeat_dead_man_switch_cancels_after_silence(msim: SimProc) -> None:
    c = new_client(msim)
    cur = market(msim, time_left=35)  # the window outlives the test: its end cancels nothing
    fav = max(
        (cur["up_token"], cur["down_token"]),
        key=lambda t: float(cur["books"][t]["best_bid"] or 0),
    )
    hb = c.post_heartbeat("")["heartbeat_id"]
    resp = c.post_order(limit(c, fav, 0.03, 5), OrderType.GTC, post_only=True)
    beat = [hb]

    def heartbeat() -> bool:
        beat[0] = c.post_heartbeat(beat[0])["heartbeat_id"]
        return True

    # heartbeats every 2 s keep it resting past the 10 s limit
    holds(heartbeat, 12, 2, what="heartbeats every 2 s")
    assert c.get_order(resp["orderID"])["status"] == "LIVE"
    silent = time.monotonic()
    wait_for(
        lambda: c.get_order(resp["orderID"])["status"] == "CANCELED",
        15,
        what="the dead-man switch",
    )
    waited = time.monotonic() - silent
    assert 8 <= waited <= 13, waited


def test_gtd_expires_a_minute_before_its_stated_expiration() -> None:
    """On a venue with a hand-driven clock: a GTD order stated to expire at E is taken off at
    E - 60 s (the venue's security threshold), with a CANCELLATION."""
    now = [1_800_000_030 * NS]
    v = Venue(SimOptions(window_seconds=300), clock=lambda: now[0])
    w = v.market.current_window()
    assert w is not None
    exp = 1_800_000_030 + 200
    o = SimOrder(
        "0xg",
        "k",
        "0xm",
        w.up_token,
        w.condition_id,
        "Up",
        "BUY",
        "0.05",
        500,
        "GTD",
        1_800_000_030,
        str(exp),
    )
    v.orders[o.id] = o
    v.market.rest(o.id, w.up_token, "BUY", 50, 500)
    now[0] = (exp - 61) * NS
    matching.expire_orders(v, now[0])
    assert o.status == "LIVE" and o.id in v.market.resting
    now[0] = (exp - 60) * NS
    matching.expire_orders(v, now[0])
    assert o.status == "CANCELED" and o.id not in v.market.resting
    assert isinstance(v.market, SimMarkets)  # the venue lists every series through one


def test_flow_trade_control_fills_a_resting_order_behind_the_quoters_ahead() -> None:
    """The `flow_trade` test control on a venue with a hand-driven clock: one taker of the
    flow at the order's price takes the quoters' size ahead of it first (price-time priority),
    then the order whole at its own price, no fee; an order not resting is a 400-style error."""

    async def go() -> None:  # the venue spawns its trades' MINED/CONFIRMED steps
        now = [1_800_000_030 * NS]
        v = Venue(SimOptions(window_seconds=300), clock=lambda: now[0])
        v.sync(now[0])
        w = v.market.current_window()
        assert w is not None
        bid, _ = w.best(w.up_token)
        assert bid is not None
        o = SimOrder(
            "0xf",
            "k",
            "0xm",
            w.up_token,
            w.condition_id,
            "Up",
            "BUY",
            f"{bid / 1000:g}",
            500,
            "GTC",
            0,
            "0",
        )
        v.orders[o.id] = o
        r = v.market.rest(o.id, w.up_token, "BUY", bid, 500)
        ahead = r.ahead
        assert ahead > 0
        entry = v.apply_fault({"name": "flow_trade", "order_id": o.id})
        assert entry["traded_shares"] * 100 >= ahead + 500
        assert o.id not in v.market.resting and o.matched_centi == 500 and o.status == "MATCHED"
        acct = v.account("0xm")
        before = int(v.opts.balance_usd * 1e6)
        assert acct["tokens"][w.up_token] == 5_000_000  # 5 shares, micro
        assert acct["usdc"] == before - bid * 500 * 10  # at its own price, no fee (micro pUSD)
        with pytest.raises(ValueError, match="is not resting"):
            v.apply_fault({"name": "flow_trade", "order_id": o.id})
        with pytest.raises(ValueError, match="order_id"):
            v.apply_fault({"name": "flow_trade"})

    asyncio.run(go())


def test_post_only_mode_after_a_restart_refuses_the_others_with_503(msim: SimProc) -> None:
    """After the engine's 425 minutes, only post-only orders: the others get the venue's 503
    with `code: post_only_mode`, `retry_after_seconds` and `Retry-After`; post-only ones rest."""
    c = new_client(msim)
    cur = market(msim, time_left=10)
    token = cur["up_token"]
    msim.fault(name="not_ready", seconds=0.2, post_only_seconds=5)
    wait_for(
        lambda: msim.state()["modes"]["not_ready_until_ns"] < time.time_ns(), 5, what="425 over"
    )
    order = limit(c, token, 0.05, 5)
    body = order_to_json_v2(order, c.creds.api_key, "GTC", False)
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    headers = c._l2_headers("POST", POST_ORDER, body=body, serialized_body=text)
    r = httpx.post(f"{msim.http}/clob{POST_ORDER}", content=text, headers=headers, timeout=5)
    assert r.status_code == 503
    doc = r.json()
    assert doc["error"] == "post-only mode: only post-only orders and cancels are allowed"
    assert doc["code"] == "post_only_mode" and 1 <= doc["retry_after_seconds"] <= 5
    assert r.headers["retry-after"] == str(doc["retry_after_seconds"])
    ok = c.post_order(limit(c, token, 0.05, 5), OrderType.GTC, post_only=True)
    assert ok["status"] == "live"
    c.cancel_all()
    wait_for(lambda: msim.state()["modes"]["post_only_until_ns"] < time.time_ns(), 8, what="over")
