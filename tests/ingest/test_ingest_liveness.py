"""Liveness by data on every ingest socket (issue 14): a socket that keeps answering keep-alives
(PONG to our PING, non-data answers) but has stopped sending data is replaced, and its feed is
stale meanwhile. Real local WebSocket servers stand in for Binance, the CLOB market channel and
the RTDS price feed; each sends data once and then only keep-alives."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from common.config import IngestSettings
from common.liveness import DataLiveness
from common.schema import MarketInfo
from services.ingest.core import IngestCore
from services.ingest.feeds import FeedContext, binance_feed, clob_feed, rtds_feed

TRADE = json.dumps(
    {
        "stream": "btcusdt@aggTrade",
        "data": {
            "e": "aggTrade",
            "E": 1,
            "s": "BTCUSDT",
            "a": 1,
            "p": "84000.10",
            "q": "0.5",
            "f": 1,
            "l": 1,
            "T": 1,
            "m": False,
            "M": True,
        },
    }
)
RTDS_TICK = json.dumps(
    {
        "topic": "crypto_prices_chainlink",
        "type": "update",
        "timestamp": 1,
        "payload": {"symbol": "btc/usd", "timestamp": 1, "value": 84000.0},
    }
)


class KeepAliveOnly:
    """Sends `first` once per connection, then answers PING with PONG (and, for Binance, which
    never gets a PING from us, sends a non-data answer every 100 ms) and nothing else."""

    def __init__(self, first: Callable[[dict[str, Any]], str], chatter: str = "") -> None:
        self.first = first
        self.chatter = chatter
        self.conns: list[list[str]] = []

    async def handler(self, ws: ServerConnection) -> None:
        log: list[str] = []
        self.conns.append(log)

        async def chatter() -> None:
            while self.chatter:
                await ws.send(self.chatter)
                await asyncio.sleep(0.1)

        ch = asyncio.create_task(chatter())
        sent = False
        try:
            if self.chatter:
                await ws.send(self.first({}))
                sent = True
            async for m in ws:
                log.append(str(m))
                if m == "PING":
                    await ws.send("PONG")
                elif not sent:
                    await ws.send(self.first(json.loads(m)))
                    sent = True
        except Exception:  # noqa: BLE001 - the client aborting is the point
            pass
        finally:
            ch.cancel()


async def _run(
    fake: KeepAliveOnly,
    feed: Callable[[FeedContext], Awaitable[None]],
    url_key: str,
    opts: IngestSettings,
    name: str,
) -> tuple[IngestCore, list[tuple[str, dict[str, Any]]]]:
    logs: list[tuple[str, dict[str, Any]]] = []
    async with serve(fake.handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        core = IngestCore(stale_after_ms=300)
        now = time.time_ns()
        core.step(
            MarketInfo(
                slug="btc-updown-5m-1",
                condition_id="0xm",
                up_token_id="A",
                down_token_id="B",
                window_start_ns=now - 10**9,
                window_end_ns=now + 300 * 10**9,
                ts_recv_ns=now,
            ),
            now,
        )
        base = f"ws://127.0.0.1:{port}"
        url = {"POLYMARKET_WS_URL": f"{base}/ws", "PRICE_FEED_WS_URL": base}.get(url_key, base)
        ctx = FeedContext(
            core,
            lambda out: None,
            lambda e, level="INFO", **f: logs.append((e, f)),
            opts,
            {url_key: url},
            300,
        )
        task = asyncio.create_task(feed(ctx))
        try:
            deadline = time.monotonic() + 6
            saw_stale_while_connected = False
            while len(fake.conns) < 2:
                assert time.monotonic() < deadline, f"{name}: keep-alive-only socket not replaced"
                h = core.feed(name)
                if h.connected and h.last_data_ns and h.stale(time.time_ns()):
                    saw_stale_while_connected = True
                await asyncio.sleep(0.02)
            assert saw_stale_while_connected, f"{name}: never stale while only keep-alives came"
        finally:
            ctx.stop.set()
            await asyncio.wait_for(task, 5)
    return core, logs


FAST = dict(backoff_base_ms=50, backoff_max_ms=100)


def _book(req: dict[str, Any]) -> str:
    return json.dumps(
        [
            {
                "event_type": "book",
                "asset_id": a,
                "market": "0xm",
                "timestamp": "1",
                "bids": [{"price": "0.45", "size": "5"}],
                "asks": [{"price": "0.55", "size": "3"}],
            }
            for a in req.get("assets_ids", [])
        ]
    )


@pytest.mark.parametrize(
    ("name", "feed", "url_key", "fake", "opts"),
    [
        (
            "clob",
            clob_feed,
            "POLYMARKET_WS_URL",
            KeepAliveOnly(_book),
            IngestSettings(clob_ping_ms=100, clob_silence_ms=800, **FAST),
        ),
        (
            "price_feed",
            rtds_feed,
            "PRICE_FEED_WS_URL",
            KeepAliveOnly(lambda req: RTDS_TICK),
            IngestSettings(rtds_ping_ms=100, rtds_silence_ms=800, **FAST),
        ),
        (
            "binance",
            binance_feed,
            "BINANCE_WS_URL",
            KeepAliveOnly(lambda req: TRADE, chatter=json.dumps({"result": None, "id": 1})),
            IngestSettings(binance_silence_ms=800, **FAST),
        ),
    ],
)
def test_socket_answering_only_keepalives_is_replaced(
    name: str, feed: Any, url_key: str, fake: KeepAliveOnly, opts: IngestSettings
) -> None:
    core, logs = asyncio.run(_run(fake, feed, url_key, opts, name))
    if name != "binance":
        assert fake.conns[0].count("PING") >= 3  # it kept answering them
    assert core.feed(name).reconnects >= 1
    reasons = [f["reason"] for e, f in logs if e == "feed_disconnected"]
    assert any("no data" in r and "keep-alives still answered" in r for r in reasons), reasons


def test_data_liveness_verdicts() -> None:
    t = [0.0]
    live = DataLiveness("clob", silence_s=10, keepalive_s=30, clock=lambda: t[0])
    t[0] = 9.0
    live.frame()
    assert live.verdict() == ""
    t[0] = 10.5
    assert "no data for 10.5 s" in live.verdict() and "keep-alives" in live.verdict()
    live.both()
    t[0] = 15.0
    assert live.verdict() == ""
    with pytest.raises(ValueError, match="clob"):
        DataLiveness("clob", silence_s=0)
