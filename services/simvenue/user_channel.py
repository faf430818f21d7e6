"""Polymarket's CLOB user channel (`/ws/user`) on the simulated venue: the socket authenticates
with the API key's creds in its first message and then gets that key's `order` and `trade` events
(sent by `matching`), optionally only for the listed markets.
"""

from __future__ import annotations

import json

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from services.simvenue.signing import AuthError
from services.simvenue.venue import Conn, Venue, serve_socket


def user_text(v: Venue, c: Conn, text: str) -> None:
    """`PING`, or the auth message; bad JSON or bad creds close the socket."""
    if text.strip() == "PING":
        if not v.stalled("user"):
            c.put("PONG")
        return
    try:
        req = json.loads(text)
        auth = req.get("auth") or {}
        key = v.keys.get(auth.get("apiKey", ""))
        if (
            key is None
            or auth.get("secret") != key.secret
            or auth.get("passphrase") != key.passphrase
        ):
            raise AuthError("invalid auth")
    except Exception:  # noqa: BLE001 - bad JSON or bad credentials end the socket
        c.put(json.dumps({"error": "Unauthorized/Invalid api key"}))
        c.put(None)
        return
    c.api_key = key.api_key
    c.markets = {str(m) for m in req.get("markets") or []}


async def user_ws(ws: WebSocket) -> None:
    v: Venue = ws.app.state.venue
    await serve_socket(v, ws, Conn("user", ws), user_text)


routes = [
    WebSocketRoute("/ws/user", user_ws),
]
