"""Polymarket's real-time data socket (RTDS, `/rtds`) on the simulated venue: subscribe by topic
(`market.RTDS_TOPICS`) with optional symbol filters; text `PING` -> `PONG`.
"""

from __future__ import annotations

import json

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from services.simvenue.market import RTDS_TOPICS
from services.simvenue.venue import Conn, Venue, serve_socket


def rtds_text(v: Venue, c: Conn, text: str) -> None:
    """`PING`, or `{"action": "subscribe"|"unsubscribe", "subscriptions": [{"topic", "filters"}]}`."""
    if text.strip() == "PING":
        if not v.stalled("rtds"):
            c.put("PONG")
        return
    try:
        req = json.loads(text)
        subs = req.get("subscriptions") or []
        action = req.get("action")
    except Exception:  # noqa: BLE001
        return
    for s in subs:
        topic = s.get("topic")
        if topic not in RTDS_TOPICS:
            continue
        if action == "unsubscribe":
            c.subs.discard(topic)
            c.rtds_filters.pop(topic, None)
        else:
            c.subs.add(topic)
            flt = s.get("filters") or ""
            c.rtds_filters[topic] = flt if isinstance(flt, str) else ",".join(flt)


async def rtds_ws(ws: WebSocket) -> None:
    v: Venue = ws.app.state.venue
    await serve_socket(v, ws, Conn("rtds", ws), rtds_text)


# ---------------------------------------------------------------- gamma


routes = [
    WebSocketRoute("/rtds", rtds_ws),
]
