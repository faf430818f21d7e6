"""Binance's market-data websocket on the simulated venue: raw streams (`/ws/<stream>`, `/ws` then
SUBSCRIBE) and combined streams (`/stream?streams=a/b`, frames wrapped as `{"stream","data"}`).

Request/answer shapes follow Binance's WebSocket Streams documentation
(https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams).
"""

from __future__ import annotations

import json

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from services.simvenue.market import BINANCE_STREAMS
from services.simvenue.venue import Conn, Venue, serve_socket


def binance_text(v: Venue, c: Conn, text: str) -> None:
    """One client request: SUBSCRIBE, UNSUBSCRIBE or LIST_SUBSCRIPTIONS, answered by `id`."""
    try:
        req = json.loads(text)
        method, rid = req.get("method"), req.get("id")
    except Exception:  # noqa: BLE001
        c.put(json.dumps({"error": {"code": 3, "msg": "Invalid JSON"}, "id": None}))
        return
    params = req.get("params") or []
    if method == "SUBSCRIBE":
        c.subs.update(p for p in params if p in BINANCE_STREAMS)
        c.put(json.dumps({"result": None, "id": rid}))
    elif method == "UNSUBSCRIBE":
        c.subs.difference_update(params)
        c.put(json.dumps({"result": None, "id": rid}))
    elif method == "LIST_SUBSCRIPTIONS":
        c.put(json.dumps({"result": sorted(c.subs), "id": rid}))
    else:
        c.put(
            json.dumps(
                {
                    "error": {"code": 2, "msg": f"Invalid request: unknown method {method}"},
                    "id": rid,
                }
            )
        )


async def binance_raw(ws: WebSocket) -> None:
    v: Venue = ws.app.state.venue
    stream = ws.path_params.get("stream", "")
    conn = Conn("binance", ws)
    conn.subs.update(s for s in stream.split("/") if s)
    await serve_socket(v, ws, conn, binance_text)


async def binance_combined(ws: WebSocket) -> None:
    v: Venue = ws.app.state.venue
    conn = Conn("binance", ws, combined=True)
    conn.subs.update(s for s in ws.query_params.get("streams", "").split("/") if s)
    await serve_socket(v, ws, conn, binance_text)


routes = [
    WebSocketRoute("/ws", binance_raw),
    WebSocketRoute("/ws/{stream:path}", binance_raw),
    WebSocketRoute("/stream", binance_combined),
]
