"""Polymarket's CLOB REST API (`/clob/...`) on the simulated venue, as py-clob-client-v2 calls it:
public market data, L1 (EIP-712 ClobAuth) key issuance, and L2 (HMAC) order, cancel, query,
heartbeat and balance endpoints. Order placement itself is `matching.place_order`.
"""

from __future__ import annotations

import asyncio
import json
import uuid

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.simvenue import gamma, matching
from services.simvenue.market import NS, Window
from services.simvenue.signing import (
    COLLATERAL,
    EXCHANGE_V2,
    ApiKey,
    AuthError,
    check_l1,
    check_l2,
    derive_api_key,
    funder_of,
)
from services.simvenue.venue import Venue, error_response

MAX_UINT = str(2**256 - 1)


def _lower_headers(request: Request) -> dict[str, str]:
    return {k.lower(): v for k, v in request.headers.items()}


def token_window(request: Request) -> tuple[str, Window | None]:
    """The `token_id` query parameter and its window (None when the token is unknown)."""
    v: Venue = request.app.state.venue
    v.sync()
    token = request.query_params.get("token_id", "")
    return token, v.market.window_by_token(token)


async def clob_ok(request: Request) -> Response:
    return JSONResponse("OK")


async def clob_time(request: Request) -> Response:
    v: Venue = request.app.state.venue
    return JSONResponse(int(v.clock() // NS + v.time_skew_s))


async def geoblock(request: Request) -> Response:
    """polymarket.com/api/geoblock: whether this caller's location may trade."""
    v: Venue = request.app.state.venue
    return JSONResponse(
        {
            "blocked": v.geoblocked,
            "ip": request.client.host if request.client else "",
            "country": "XS" if v.geoblocked else "SIM",
            "region": "",
        }
    )


async def clob_version(request: Request) -> Response:
    return JSONResponse({"version": 2})


async def clob_book(request: Request) -> Response:
    v: Venue = request.app.state.venue
    token, w = token_window(request)
    if not token:
        return error_response(400, "Invalid token id")
    if w is None:
        return error_response(404, "No orderbook exists for the requested token id")
    return JSONResponse(v.market.rest_book(w, token, v.clock()))


async def clob_tick_size(request: Request) -> Response:
    token, w = token_window(request)
    if w is None:
        return error_response(404, "No orderbook exists for the requested token id")
    return JSONResponse({"minimum_tick_size": w.tick / 1000})


async def clob_neg_risk(request: Request) -> Response:
    token, w = token_window(request)
    if w is None:
        return error_response(404, "No orderbook exists for the requested token id")
    return JSONResponse({"neg_risk": False})


async def clob_fee_rate(request: Request) -> Response:
    token, w = token_window(request)
    if w is None:
        return error_response(404, "No orderbook exists for the requested token id")
    return JSONResponse({"base_fee": 1000})


async def clob_price(request: Request) -> Response:
    token, w = token_window(request)
    if w is None:
        return error_response(404, "No orderbook exists for the requested token id")
    bb, ba = w.best(token)
    # As on the venue: side=BUY answers the best bid, side=SELL the best ask.
    p = bb if request.query_params.get("side", "BUY").upper() == "BUY" else ba
    return JSONResponse({"price": f"{(p or 0) / 1000:g}"})


async def clob_midpoint(request: Request) -> Response:
    token, w = token_window(request)
    if w is None:
        return error_response(404, "No orderbook exists for the requested token id")
    bb, ba = w.best(token)
    return JSONResponse({"mid": f"{((bb or 0) + (ba or 1000)) / 2000:g}"})


async def clob_spread(request: Request) -> Response:
    token, w = token_window(request)
    if w is None:
        return error_response(404, "No orderbook exists for the requested token id")
    bb, ba = w.best(token)
    return JSONResponse({"spread": f"{((ba or 1000) - (bb or 0)) / 1000:g}"})


async def clob_last_trade(request: Request) -> Response:
    token, w = token_window(request)
    if w is None:
        return error_response(404, "No orderbook exists for the requested token id")
    return JSONResponse({"price": f"{w.last_trade.get(token, 500) / 1000:g}", "side": "BUY"})


async def clob_books(request: Request) -> Response:
    v: Venue = request.app.state.venue
    v.sync()
    try:
        items = json.loads(await request.body())
    except Exception:  # noqa: BLE001
        return error_response(400, "Invalid payload")
    out = []
    for it in items:
        w = v.market.window_by_token(str(it.get("token_id")))
        if w is not None:
            out.append(v.market.rest_book(w, str(it["token_id"]), v.clock()))
    return JSONResponse(out)


async def clob_markets_by_token(request: Request) -> Response:
    v: Venue = request.app.state.venue
    v.sync()
    w = v.market.window_by_token(request.path_params["token"])
    if w is None:
        return error_response(404, "market not found")
    return JSONResponse(
        {
            "condition_id": w.condition_id,
            "primary_token_id": w.up_token,
            "secondary_token_id": w.down_token,
        }
    )


async def clob_market_info(request: Request) -> Response:
    v: Venue = request.app.state.venue
    w = v.market.window_by_condition(request.path_params["cid"])
    if w is None:
        return error_response(404, "market not found")
    return JSONResponse(gamma.clob_market_info(w))


async def clob_market(request: Request) -> Response:
    v: Venue = request.app.state.venue
    w = v.market.window_by_condition(request.path_params["cid"])
    if w is None:
        return error_response(404, "market not found")
    return JSONResponse(gamma.clob_market_doc(w, v.clock()))


def issue_key(request: Request) -> ApiKey | Response:
    """Check the L1 (ClobAuth EIP-712) headers and derive the address's API key; 401 when bad."""
    v: Venue = request.app.state.venue
    try:
        address, nonce = check_l1(_lower_headers(request))
    except AuthError as exc:
        return error_response(401, str(exc))
    key = derive_api_key(v.server_secret, address, nonce)
    v.keys[key.api_key] = key
    return key


async def create_api_key(request: Request) -> Response:
    key = issue_key(request)
    if isinstance(key, Response):
        return key
    return JSONResponse({"apiKey": key.api_key, "secret": key.secret, "passphrase": key.passphrase})


TRADING_PATHS = ("/order", "/orders", "/cancel-all", "/cancel-market-orders")


async def l2(request: Request) -> tuple[ApiKey | None, str, Response | None]:
    """Check the L2 HMAC headers over the path as the client signs it (without `/clob`);
    returns (key, body text, None) or (None, body, the 401 answer)."""
    v: Venue = request.app.state.venue
    body = (await request.body()).decode()
    if v.take_fault("not_ready") is not None:  # the matching engine restarts
        return None, body, error_response(425, matching.SERVICE_NOT_READY)
    path = request.url.path.removeprefix("/clob")
    if request.method in ("POST", "DELETE") and path in TRADING_PATHS:
        # trading paused: disabled refuses cancels too, cancel-only only new orders
        if v.take_fault("trading_disabled") is not None:
            return None, body, error_response(503, matching.TRADING_DISABLED)
        if request.method == "POST" and v.take_fault("cancel_only") is not None:
            return None, body, error_response(503, matching.CANCEL_ONLY)
    try:
        key = check_l2(_lower_headers(request), v.keys, request.method, path, body or None)
    except AuthError as exc:
        return None, body, error_response(401, str(exc))
    return key, body, None


async def get_api_keys(request: Request) -> Response:
    v: Venue = request.app.state.venue
    key, _, bad = await l2(request)
    if bad is not None:
        return bad
    return JSONResponse(
        {"apiKeys": [k.api_key for k in v.keys.values() if k.address == key.address]}
    )


async def post_order(request: Request) -> Response:
    v: Venue = request.app.state.venue
    key, body, bad = await l2(request)
    if bad is not None:
        return bad
    slow = v.take_fault("slow_ack")
    if slow is not None:
        await asyncio.sleep(float(slow.get("seconds") or 2.0))
    try:
        payload = json.loads(body)
    except Exception:  # noqa: BLE001
        return error_response(400, "Invalid order payload")
    order_type = str(payload.get("orderType", "")).upper() if isinstance(payload, dict) else ""
    # the venue's non-final answers: `delayed` (the ~250 ms taker delay of these markets), and
    # `live` for a FAK that matches later (clob-client #317)
    for name, status_word, kinds, wait_key, wait in (
        ("delayed", "delayed", ("FOK", "FAK"), "after_s", 0.25),
        ("fak_live", "live", ("FAK",), "fill_after_s", 1.0),
    ):
        if order_type in kinds and v.counters.get(name, 0) + (v.timed.get(name, 0) > v.clock()):
            f = v.take_fault(name) or {}
            held = matching.hold_order(v, key, payload, status_word)
            if held is not None:
                v.spawn(matching.release_order(v, key, payload, float(f.get(wait_key, wait))))
                return JSONResponse(held)
    late = v.take_fault("order_timeout_placed")
    status, answer = matching.place_order(v, key, payload)
    if late is not None:
        # The order is in the book/ledger already; only the answer is late.
        await asyncio.sleep(float(late.get("seconds") or 15.0))
    headers = {"Retry-After": str(answer["retry_after_seconds"])} if status == 503 else None
    return JSONResponse(answer, status_code=status, headers=headers)


async def post_orders(request: Request) -> Response:
    v: Venue = request.app.state.venue
    key, body, bad = await l2(request)
    if bad is not None:
        return bad
    try:
        payloads = json.loads(body)
    except Exception:  # noqa: BLE001
        return error_response(400, "Invalid order payload")
    out = []
    for p in payloads:
        status, answer = matching.place_order(v, key, p)
        if status == 503:  # post-only mode: the documented per-order shape
            answer = {
                "errorMsg": answer["error"],
                "orderID": "",
                "takingAmount": "",
                "makingAmount": "",
                "status": "",
                "success": True,
            }
        elif status != 200:
            answer = {"success": False, "orderID": "", "errorMsg": answer.get("error", "")}
        out.append(answer)
    return JSONResponse(out)


async def cancel_order(request: Request) -> Response:
    v: Venue = request.app.state.venue
    key, body, bad = await l2(request)
    if bad is not None:
        return bad
    try:
        oid = json.loads(body)["orderID"]
    except Exception:  # noqa: BLE001
        return error_response(400, "Invalid order payload")
    return JSONResponse(matching.cancel_orders(v, key.api_key, [oid]))


async def cancel_orders(request: Request) -> Response:
    v: Venue = request.app.state.venue
    key, body, bad = await l2(request)
    if bad is not None:
        return bad
    try:
        ids = [str(i) for i in json.loads(body)]
    except Exception:  # noqa: BLE001
        return error_response(400, "Invalid order payload")
    return JSONResponse(matching.cancel_orders(v, key.api_key, ids))


async def cancel_all(request: Request) -> Response:
    v: Venue = request.app.state.venue
    key, _, bad = await l2(request)
    if bad is not None:
        return bad
    return JSONResponse(
        matching.cancel_orders(
            v,
            key.api_key,
            [o.id for o in v.orders.values() if o.api_key == key.api_key and o.status == "LIVE"],
        )
    )


async def cancel_market_orders(request: Request) -> Response:
    v: Venue = request.app.state.venue
    key, body, bad = await l2(request)
    if bad is not None:
        return bad
    try:
        q = json.loads(body or "{}")
    except Exception:  # noqa: BLE001
        return error_response(400, "Invalid payload")
    ids = [
        o.id
        for o in v.orders.values()
        if o.api_key == key.api_key
        and o.status == "LIVE"
        and (not q.get("market") or o.market == q["market"])
        and (not q.get("asset_id") or o.token == q["asset_id"])
    ]
    return JSONResponse(matching.cancel_orders(v, key.api_key, ids))


async def get_order(request: Request) -> Response:
    v: Venue = request.app.state.venue
    key, _, bad = await l2(request)
    if bad is not None:
        return bad
    o = v.orders.get(request.path_params["oid"])
    if o is None or o.api_key != key.api_key:
        return JSONResponse(None)
    return JSONResponse(rest_status(v, o.doc(), "ORDER_STATUS_"))


def rest_status(v: Venue, doc: dict, prefix: str) -> dict:
    """`doc` as REST serialises it: with the `prefixed_statuses` mode its status is the venue's
    raw constant (`ORDER_STATUS_LIVE`, `TRADE_STATUS_CONFIRMED`: docs.polymarket.com
    api-spec/clob-openapi.yaml; Polymarket/py-sdk models/clob/account.py), else the plain word
    the user channel sends. A copy: the stored document is left as it is."""
    if not v.prefixed_statuses or not doc.get("status"):
        return doc
    return {**doc, "status": prefix + str(doc["status"]).upper()}


def page(items: list) -> dict:
    """The CLOB's paginated answer (one page, no next cursor)."""
    return {"data": items, "next_cursor": "LTE=", "limit": 500, "count": len(items)}


async def get_orders(request: Request) -> Response:
    v: Venue = request.app.state.venue
    key, _, bad = await l2(request)
    if bad is not None:
        return bad
    qp = request.query_params
    items = [
        rest_status(v, o.doc(), "ORDER_STATUS_")
        for o in v.orders.values()
        if o.api_key == key.api_key
        and o.status == "LIVE"
        and (not qp.get("id") or o.id == qp["id"])
        and (not qp.get("market") or o.market == qp["market"])
        and (not qp.get("asset_id") or o.token == qp["asset_id"])
    ]
    return JSONResponse(page(items))


async def get_trades(request: Request) -> Response:
    v: Venue = request.app.state.venue
    key, _, bad = await l2(request)
    if bad is not None:
        return bad
    qp = request.query_params
    items = [
        rest_status(v, t, "TRADE_STATUS_")
        for t in v.trades.values()
        if t["owner"] == key.api_key
        and (not qp.get("id") or t["id"] == qp["id"])
        and (not qp.get("market") or t["market"] == qp["market"])
        and (not qp.get("asset_id") or t["asset_id"] == qp["asset_id"])
    ]
    return JSONResponse(page(items))


async def heartbeat(request: Request) -> Response:
    v: Venue = request.app.state.venue
    key, body, bad = await l2(request)
    if bad is not None:
        return bad
    # The first accepted heartbeat arms cancel-all-on-silence for this key; no disarm.
    v.heartbeats[key.api_key] = v.clock()
    try:
        hb = json.loads(body or "{}").get("heartbeat_id") or str(uuid.uuid4())
    except Exception:  # noqa: BLE001
        hb = str(uuid.uuid4())
    return JSONResponse({"heartbeat_id": hb})


async def balance_allowance(request: Request) -> Response:
    v: Venue = request.app.state.venue
    key, _, bad = await l2(request)
    if bad is not None:
        return bad
    try:
        sig_type = int(request.query_params.get("signature_type", "0"))
    except ValueError:
        return error_response(400, "invalid signature_type")
    # the funder's wallet for this key and signature type (as the CLOB derives it)
    acct = v.account(funder_of(key.address, sig_type))
    if request.query_params.get("asset_type", "COLLATERAL").upper() == "CONDITIONAL":
        bal = acct["tokens"].get(request.query_params.get("token_id", ""), 0)
    else:
        bal = acct["usdc"]
    return JSONResponse(
        {
            "balance": str(bal),
            "allowances": {EXCHANGE_V2: MAX_UINT} if acct["approved"] else {},
            "collateral": COLLATERAL,
        }
    )


# ---------------------------------------------------------------- sim control


routes = [
    Route("/api/geoblock", geoblock),
    Route("/clob/", clob_ok),
    Route("/clob/ok", clob_ok),
    Route("/clob/time", clob_time),
    Route("/clob/version", clob_version),
    Route("/clob/book", clob_book),
    Route("/clob/books", clob_books, methods=["POST"]),
    Route("/clob/tick-size", clob_tick_size),
    Route("/clob/neg-risk", clob_neg_risk),
    Route("/clob/fee-rate", clob_fee_rate),
    Route("/clob/price", clob_price),
    Route("/clob/midpoint", clob_midpoint),
    Route("/clob/spread", clob_spread),
    Route("/clob/last-trade-price", clob_last_trade),
    Route("/clob/markets-by-token/{token}", clob_markets_by_token),
    Route("/clob/clob-markets/{cid}", clob_market_info),
    Route("/clob/markets/{cid}", clob_market),
    Route("/clob/auth/api-key", create_api_key, methods=["POST"]),
    Route("/clob/auth/derive-api-key", create_api_key, methods=["GET"]),
    Route("/clob/auth/api-keys", get_api_keys),
    Route("/clob/order", post_order, methods=["POST"]),
    Route("/clob/order", cancel_order, methods=["DELETE"]),
    Route("/clob/orders", post_orders, methods=["POST"]),
    Route("/clob/orders", cancel_orders, methods=["DELETE"]),
    Route("/clob/cancel-all", cancel_all, methods=["DELETE"]),
    Route("/clob/cancel-market-orders", cancel_market_orders, methods=["DELETE"]),
    Route("/clob/data/order/{oid}", get_order),
    Route("/clob/data/orders", get_orders),
    Route("/clob/data/trades", get_trades),
    Route("/clob/v1/heartbeats", heartbeat, methods=["POST"]),
    Route("/clob/balance-allowance", balance_allowance),
    Route("/clob/balance-allowance/update", balance_allowance),
]
