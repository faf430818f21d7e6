"""Binance's market-data websocket on the simulated venue: raw streams (`/ws/<stream>`, `/ws` then
SUBSCRIBE) and combined streams (`/stream?streams=a/b`, frames wrapped as `{"stream","data"}`),
for every simulated asset (`<asset>usdt@aggTrade|trade|bookTicker`).

Request/answer shapes and limits follow Binance's WebSocket Streams documentation
(https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams): at most 5
incoming messages a second per connection (beyond: disconnected) and at most 1,024 streams per
connection. The answer to a SUBSCRIBE past 1,024 streams is not documented: here an error answer.
"""

from __future__ import annotations

import json
import time
from collections import deque

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from services.simvenue.market import BINANCE_STREAM_KINDS
from services.simvenue.venue import Conn, Venue, serve_socket

MAX_STREAMS = 1024  # per connection
MAX_INCOMING_PER_S = 5  # client messages per connection per second
_recent: dict[int, deque[float]] = {}  # id(conn) -> times of its last messages


def is_stream(name: str) -> bool:
    """`<symbol>@<aggTrade|trade|bookTicker>`, symbol lower case (Binance's stream names)."""
    sym, at, kind = name.partition("@")
    return bool(at) and sym.isalnum() and sym == sym.lower() and kind in BINANCE_STREAM_KINDS


def binance_text(v: Venue, c: Conn, text: str) -> None:
    """One client request: SUBSCRIBE, UNSUBSCRIBE or LIST_SUBSCRIPTIONS, answered by `id`. A
    sixth message within one second closes the connection, as on Binance."""
    seen = _recent.setdefault(id(c), deque(maxlen=MAX_INCOMING_PER_S + 1))
    now = time.monotonic()
    seen.append(now)
    if len(seen) > MAX_INCOMING_PER_S and now - seen[0] < 1.0:
        _recent.pop(id(c), None)
        c.put(None)  # disconnected
        return
    try:
        req = json.loads(text)
        method, rid = req.get("method"), req.get("id")
    except Exception:  # noqa: BLE001
        c.put(json.dumps({"error": {"code": 3, "msg": "Invalid JSON"}, "id": None}))
        return
    params = req.get("params") or []
    if method == "SUBSCRIBE":
        new = {p for p in params if isinstance(p, str) and is_stream(p)}
        if len(c.subs | new) > MAX_STREAMS:
            c.put(
                json.dumps(
                    {
                        "error": {"code": 2, "msg": f"more than {MAX_STREAMS} streams"},
                        "id": rid,
                    }
                )
            )
            return
        c.subs.update(new)
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
    streams = [s for s in ws.query_params.get("streams", "").split("/") if s]
    if len(streams) > MAX_STREAMS:
        await ws.close(code=1008)
        return
    conn.subs.update(streams)
    try:
        await serve_socket(v, ws, conn, binance_text)
    finally:
        _recent.pop(id(conn), None)


routes = [
    WebSocketRoute("/ws", binance_raw),
    WebSocketRoute("/ws/{stream:path}", binance_raw),
    WebSocketRoute("/stream", binance_combined),
]
