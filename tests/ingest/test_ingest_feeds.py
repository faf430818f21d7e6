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

from common.config import IngestSettings
from services.commands import ingest_bench as bench
from services.ingest.core import IngestCore
from services.ingest.feeds import FeedContext, binance_feed

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


async def _binance_session(opts: IngestSettings, script: Any, run_s: float) -> dict[str, Any]:
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
    opts = IngestSettings(backoff_base_ms=5_000, backoff_max_ms=5_000)
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

    opts = IngestSettings(binance_max_conn_s=1, backoff_base_ms=5_000, backoff_max_ms=5_000)
    r = asyncio.run(_binance_session(opts, script, 2.6))
    assert len(r["connects"]) >= 2
    gaps = [b - a for a, b in zip(r["connects"], r["connects"][1:], strict=False)]
    assert all(1.0 <= g < 1.5 for g in gaps), gaps
    assert any(e == "binance_planned_reconnect" for e, _ in r["logs"])


def test_binance_refused_connection_backs_off_and_counts() -> None:
    async def main() -> tuple[IngestCore, list[tuple[str, dict[str, Any]]]]:
        logs: list[tuple[str, dict[str, Any]]] = []
        core = IngestCore()
        opts = IngestSettings(backoff_base_ms=100, backoff_max_ms=400)
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


class FakeClob:
    """A market channel that answers subscriptions with books, PING with PONG (unless mute), and
    records every client message per connection."""

    def __init__(self, mute: bool = False) -> None:
        self.mute = mute
        self.conns: list[list[str]] = []
        self.tick = "0.01"
        self.sockets: list[ServerConnection] = []

    def book(self, asset: str) -> dict[str, Any]:
        return {
            "event_type": "book",
            "asset_id": asset,
            "market": "0xm",
            "timestamp": "1",
            "bids": [{"price": "0.40", "size": "10"}, {"price": "0.45", "size": "5"}],
            "asks": [{"price": "0.60", "size": "7"}, {"price": "0.55", "size": "3"}],
            "tick_size": self.tick,
        }

    async def handler(self, ws: ServerConnection) -> None:
        log: list[str] = []
        self.conns.append(log)
        self.sockets.append(ws)
        async for m in ws:
            log.append(str(m))
            if m == "PING":
                if not self.mute:
                    await ws.send("PONG")
                continue
            req = json.loads(m)
            if req.get("operation") == "unsubscribe":
                continue
            await ws.send(json.dumps([self.book(a) for a in req["assets_ids"]]))


async def _clob_run(fake: FakeClob, opts: IngestSettings, body: Any) -> IngestCore:
    from common.schema import MarketInfo
    from services.ingest.feeds import clob_feed

    async with serve(fake.handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        core = IngestCore()
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
        ctx = FeedContext(
            core,
            lambda out: None,
            lambda e, level="INFO", **f: None,
            opts,
            {"POLYMARKET_WS_URL": f"ws://127.0.0.1:{port}/ws"},
            300,
        )
        task = asyncio.create_task(clob_feed(ctx))
        try:
            await body(core)
        finally:
            ctx.stop.set()
            await asyncio.wait_for(task, 5)
    return core


async def _until(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def test_clob_tick_change_without_venue_snapshot_resubscribes_on_open_socket() -> None:
    fake = FakeClob()
    opts = IngestSettings(resync_after_ms=300, clob_ping_ms=200)

    async def body(core: IngestCore) -> None:
        await _until(lambda: core.books.books["A"].in_sync, 5, "first snapshot")
        first = json.loads(fake.conns[0][0])
        assert sorted(first["assets_ids"]) == ["A", "B"] and first["type"] == "market"
        fake.tick = "0.001"
        await fake.sockets[0].send(
            json.dumps(
                {
                    "event_type": "tick_size_change",
                    "asset_id": "A",
                    "market": "0xm",
                    "old_tick_size": "0.01",
                    "new_tick_size": "0.001",
                    "timestamp": "2",
                }
            )
        )
        await _until(
            lambda: (
                core.books.books["A"].tick_size == 0.001
                and core.books.books["A"].in_sync
                and not core.books.books["A"].resync_since_ns
            ),
            5,
            "resynced book",
        )
        ops = [json.loads(m) for m in fake.conns[0][1:] if m != "PING"]
        assert {"operation": "unsubscribe", "assets_ids": ["A"]} in ops
        # the flag on every subscribe: the venue applies it per update, so one without it
        # would turn the custom events off (Polymarket/py-sdk streams/clob/market_protocol.py)
        assert first["custom_feature_enabled"] is True
        sub = {"operation": "subscribe", "assets_ids": ["A"], "custom_feature_enabled": True}
        assert sub in ops
        assert len(fake.conns) == 1  # on the open socket, no reconnect
        assert "PING" in fake.conns[0]

    asyncio.run(_clob_run(fake, opts, body))


def test_clob_socket_without_pong_is_replaced() -> None:
    fake = FakeClob(mute=True)
    opts = IngestSettings(clob_ping_ms=100, clob_pong_timeout_ms=600, backoff_base_ms=50)

    async def body(core: IngestCore) -> None:
        await _until(lambda: len(fake.conns) >= 2, 5, "a replacement connection")
        # the first socket was alive with frames, then went quiet: replaced after the timeout
        assert fake.conns[0].count("PING") >= 3
        assert core.feed("clob").reconnects >= 1

    t0 = time.monotonic()
    asyncio.run(_clob_run(fake, opts, body))
    assert time.monotonic() - t0 < 4
