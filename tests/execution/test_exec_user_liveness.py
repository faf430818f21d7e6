"""Execution's user channel is judged by its data too (issue 14): while an accepted order's
events are owed, a socket that only answers PING is replaced (REST polling covers the gap)."""

from __future__ import annotations

import time
from typing import Any

from tests.conftest import wait_for


def test_user_channel_answering_only_pong_is_replaced_when_an_order_is_owed() -> None:
    """Execution's user channel: it carries data only about our orders, so it is judged while
    an accepted order's events are owed; a socket that then only answers PING is replaced."""
    import threading

    from py_clob_client_v2.clob_types import ApiCreds
    from websockets.sync.server import serve as sync_serve

    from common.config import Secret
    from services.execution.live import LiveVenue

    conns: list[float] = []
    pings: list[int] = []

    def handler(ws: Any) -> None:
        conns.append(time.monotonic())
        pings.append(0)
        try:
            for m in ws:
                if m == "PING":
                    pings[-1] += 1
                    ws.send("PONG")
        except Exception:  # noqa: BLE001 - the client dropping us is the point
            pass

    with sync_serve(handler, "127.0.0.1", 0) as server:
        port = server.socket.getsockname()[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        logs: list[tuple[str, dict[str, Any]]] = []
        venue = LiveVenue(
            "http://127.0.0.1:9",
            Secret("0x" + "11" * 32),
            log=lambda stream, event, level="INFO", **f: logs.append((event, f)),
            user_ws_url=f"ws://127.0.0.1:{port}/ws/user",
        )
        venue.user_data_silence_s, venue.user_keepalive_s = 0.6, 0.9
        venue._creds = ApiCreds("test-key", "test-secret-value", "test-passphrase")
        t = threading.Thread(target=venue._user_loop, daemon=True)
        t.start()
        try:
            # nothing owed: PONGs keep it (keep-alive bound)
            wait_for(lambda: pings and pings[0] >= 3, 5, interval=0.02, what="three keep-alives")
            assert len(conns) == 1
            venue.expect_user_data()  # an order was accepted: its events are owed
            owed_at = time.monotonic()
            wait_for(
                lambda: len(conns) >= 2, 10, interval=0.02, what="the PONG-only socket replaced"
            )
            assert conns[1] - owed_at >= 0.6
            assert venue.counts.get("user_ws_replaced", 0) >= 1
            errs = [f["error"] for e, f in logs if e == "user_channel_error"]
            assert any("keep-alives still answered" in e for e in errs), errs
        finally:
            venue.close()
            t.join(5)
            server.shutdown()
