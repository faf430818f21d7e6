"""Polymarket's CLOB market channel (`/ws/market`) on the simulated venue: subscribe/unsubscribe
by asset id, the books of newly subscribed assets as one JSON array, text `PING` -> `PONG`.
"""

from __future__ import annotations

import json

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from services.simvenue.venue import Conn, Venue, serve_socket


def market_books(v: Venue, c: Conn, tokens: list[str]) -> None:
    """Send the `book` of each known token in `tokens` as one JSON array, as the venue does on
    subscribe."""
    v.sync()
    books = []
    for t in tokens:
        w = v.market.window_by_token(t)
        if w is not None:
            books.append(json.loads(v.market.book_event(w, t, v.clock())))
    if books and v.replay is None:
        v.send(c, json.dumps(books, separators=(",", ":")))


def market_text(v: Venue, c: Conn, text: str) -> None:
    """One client message: `PING`, the initial `{"assets_ids", "type": "market"}`, or
    `{"operation": "subscribe"|"unsubscribe"}`."""
    if text.strip() == "PING":
        if not v.stalled("market"):
            c.put("PONG")
        return
    try:
        req = json.loads(text)
    except Exception:  # noqa: BLE001
        c.put("INVALID OPERATION")
        return
    if not isinstance(req, dict):
        c.put("INVALID OPERATION")
        return
    ids = [str(a) for a in (req.get("assets_ids") or req.get("asset_ids") or [])]
    op = req.get("operation")
    if op == "unsubscribe":
        c.subs.difference_update(ids)
        return
    new = [a for a in ids if a not in c.subs]
    if op == "subscribe" or req.get("type", "").lower() == "market":
        c.subs.update(ids)
        if not new:
            c.put("NO NEW ASSETS")
            return
        market_books(v, c, new)
        return
    c.put("INVALID OPERATION")


async def market_ws(ws: WebSocket) -> None:
    v: Venue = ws.app.state.venue
    await serve_socket(v, ws, Conn("market", ws), market_text)


routes = [
    WebSocketRoute("/ws/market", market_ws),
]
