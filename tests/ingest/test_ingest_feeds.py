"""Feed clients over real local sockets, for venue behaviour the simulated venue does not produce:
Binance `serverShutdown` and the planned reconnect before the 24 h limit (both without backoff),
no client messages to Binance, and the benchmark entry point."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import websockets
from websockets.asyncio.server import ServerConnection, serve

from services.ingest import bench
from services.ingest.core import IngestCore
from services.ingest.feeds import FeedContext, IngestOptions, binance_feed

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
SHUTDOWN = json.dumps({"stream": "!serverShutdown", "data": {"e": "serverShutdown", "E": 2}})


async def _binance_session(opts: IngestOptions, script: Any, run_s: float) -> dict[str, Any]:
    connects: list[float] = []
    client_msgs: list[str] = []
    published: list[Any] = []
    logs: list[tuple[str, dict[str, Any]]] = []

    async def handler(ws: ServerConnection) -> None:
        connects.append(time.monotonic())
        assert ws.request is not None
        assert ws.request.path == "/stream?streams=btcusdt@aggTrade/btcusdt@bookTicker"

        async def reader() -> None:
            async for m in ws:
                client_msgs.append(str(m))

        rt = asyncio.create_task(reader())
        try:
            await script(ws, len(connects))
        except websockets.ConnectionClosed:
            pass
        finally:
            rt.cancel()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        core = IngestCore()
        ctx = FeedContext(
            core,
            published.extend,
            lambda event, level="INFO", **f: logs.append((event, f)),
            opts,
            {"BINANCE_WS_URL": f"ws://127.0.0.1:{port}"},
            300,
        )
        task = asyncio.create_task(binance_feed(ctx))
        await asyncio.sleep(run_s)
        ctx.stop.set()
        await asyncio.wait_for(task, 5)
    return {
        "connects": connects,
        "client_msgs": client_msgs,
        "published": published,
        "logs": logs,
        "core": core,
    }


def test_binance_server_shutdown_reconnects_at_once_without_client_messages() -> None:
    async def script(ws: ServerConnection, n: int) -> None:
        await ws.send(TRADE)
        if n == 1:
            await ws.send(SHUTDOWN)
        await ws.wait_closed()

    # a large backoff proves the reconnect after serverShutdown does not wait for it
    opts = IngestOptions(backoff_base_ms=5_000, backoff_max_ms=5_000)
    r = asyncio.run(_binance_session(opts, script, 1.5))
    assert len(r["connects"]) == 2
    assert r["connects"][1] - r["connects"][0] < 1.0
    assert r["client_msgs"] == []  # streams are in the URL: nothing counts against 5 msg/s
    assert any(e == "binance_server_shutdown" for e, _ in r["logs"])
    trades = [m for t, m in r["published"] if t == "md.btc.trade"]
    assert len(trades) == 2 and trades[0].price == 84000.10
    assert r["core"].feed("binance").reconnects == 1


def test_binance_planned_reconnect_before_connection_age_limit() -> None:
    async def script(ws: ServerConnection, n: int) -> None:
        for _ in range(400):
            await ws.send(TRADE)
            await asyncio.sleep(0.01)

    opts = IngestOptions(binance_max_conn_s=1, backoff_base_ms=5_000, backoff_max_ms=5_000)
    r = asyncio.run(_binance_session(opts, script, 2.6))
    assert len(r["connects"]) >= 2
    gaps = [b - a for a, b in zip(r["connects"], r["connects"][1:], strict=False)]
    assert all(1.0 <= g < 1.5 for g in gaps), gaps
    assert any(e == "binance_planned_reconnect" for e, _ in r["logs"])


def test_binance_refused_connection_backs_off_and_counts() -> None:
    async def main() -> tuple[IngestCore, list[tuple[str, dict[str, Any]]]]:
        logs: list[tuple[str, dict[str, Any]]] = []
        core = IngestCore()
        opts = IngestOptions(backoff_base_ms=100, backoff_max_ms=400)
        ctx = FeedContext(
            core,
            lambda out: None,
            lambda e, level="INFO", **f: logs.append((e, f)),
            opts,
            {"BINANCE_WS_URL": "ws://127.0.0.1:9"},
            300,
        )
        task = asyncio.create_task(binance_feed(ctx))
        await asyncio.sleep(1.5)
        ctx.stop.set()
        await asyncio.wait_for(task, 5)
        return core, logs

    core, logs = asyncio.run(main())
    delays = [f["retry_in_s"] for e, f in logs if e == "feed_disconnected"]
    assert len(delays) >= 3
    assert all(d <= 0.4 for d in delays) and delays[-1] > delays[0]  # grows, capped
    assert not core.feed("binance").connected


def test_bench_reports_every_frame_type() -> None:
    r = bench.run(300)
    assert set(r) == {*bench.frames(), "publish_only"}
    for name, st in r.items():
        assert st["n"] == 300 and 0 < st["p50_us"] <= st["p99_us"], name
        assert st["msgs_per_s"] > 0
