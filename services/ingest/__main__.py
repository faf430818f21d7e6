"""Runner for ingest: an asyncio loop (uvloop) running the feed clients, clock ticks, probes,
feed status and heartbeats, publishing everything the core returns on the ingest PUB socket."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from common.bus import BusError
from common.clock import now_ns
from common.config import ConfigError, load_strategy_config
from common.schema import Msg
from common.service import EXIT_CONFIG, EXIT_INTERNAL, ServiceRunner, fail
from services.ingest.capture import CaptureWriter
from services.ingest.core import IngestCore
from services.ingest.feeds import (
    FeedContext,
    IngestOptions,
    binance_feed,
    clob_feed,
    gamma_discovery,
    resolution_poller,
    rtds_feed,
)

TIMER_S = 0.02  # well under the 100 ms clock-tick bound
HEARTBEAT_NS = 1_000_000_000


def build(runner: ServiceRunner) -> tuple[FeedContext, IngestOptions]:
    try:
        opts = IngestOptions.from_env()
        stale_ms = opts.stale_after_ms or load_strategy_config(data_dir=runner.settings.data_dir).stale_after_ms
    except ConfigError as e:
        fail("ingest", str(e), EXIT_CONFIG)
    s = runner.settings
    window_s = opts.window_seconds or (s.sim_window_seconds if s.venue == "sim" else 300)
    core = IngestCore(
        stale_after_ms=stale_ms,
        gamma_stale_after_ms=max(3 * opts.gamma_refresh_ms, stale_ms),
        release_grace_ns=opts.release_grace_s * 1_000_000_000,
        price_feed_enabled=opts.price_feed,
        basis_bound_usd=float(opts.basis_warn_usd or 50),
    )
    capture = None
    if opts.capture:
        capture = CaptureWriter(
            s.data_dir / "captures",
            rotate_s=opts.capture_rotate_s,
            max_bytes=opts.capture_max_mb * 1024 * 1024,
        )

    def publish(out: list[tuple[str, Msg]]) -> None:
        runner.publish_all(out)

    def log(event: str, level: str = "INFO", **fields: Any) -> None:
        runner.log.write(runner.stream, event, level, **fields)

    ctx = FeedContext(core, publish, log, opts, s.urls, window_s, capture)
    return ctx, opts


async def run(runner: ServiceRunner) -> int:
    ctx, opts = build(runner)
    core = ctx.core
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, ctx.stop.set)

    def state() -> tuple[str, dict[str, Any]]:
        summary = core.summary()
        degraded = any(f["stale"] for n, f in summary["feeds"].items() if core.feed(n).enabled)
        return ("degraded" if degraded else "running"), summary

    runner.state = state  # type: ignore[method-assign]
    runner.log.write(
        runner.stream,
        "service_started",
        venue=runner.settings.venue,
        window_seconds=ctx.default_window_s,
        capture=opts.capture,
        price_feed=opts.price_feed,
        urls=dict(runner.settings.urls),
    )
    tasks = [
        asyncio.create_task(binance_feed(ctx), name="binance"),
        asyncio.create_task(clob_feed(ctx), name="clob"),
        asyncio.create_task(gamma_discovery(ctx), name="gamma"),
        asyncio.create_task(resolution_poller(ctx), name="resolution"),
    ]
    if opts.price_feed:
        tasks.append(asyncio.create_task(rtds_feed(ctx), name="price_feed"))
    else:
        core.feed("price_feed").detail = "disabled (INGEST_PRICE_FEED=0)"
    code = 0
    next_hb = 0
    try:
        while not ctx.stop.is_set():
            now = now_ns()
            runner.publish_all(core.on_timer(now))
            if now >= next_hb:
                runner.heartbeat()
                next_hb = now + HEARTBEAT_NS
                if ctx.capture is not None:
                    ctx.capture.flush()
            for t in tasks:
                if t.done() and not t.cancelled() and t.exception() is not None:
                    # a bug in a feed client is an internal fault: exit for supervisord
                    exc = t.exception()
                    runner.log.error("feed_task_crashed", feed=t.get_name(), error=repr(exc))
                    ctx.stop.set()
                    code = EXIT_INTERNAL
            await ctx.sleep(TIMER_S)
    except BusError as e:
        runner.log.error("bus_internal_fault", error=str(e))
        code = EXIT_INTERNAL
    finally:
        ctx.stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if ctx.capture is not None:
            ctx.capture.close()
        runner.log.write(runner.stream, "service_stopping", code=code)
        if runner.pub is not None:
            runner.pub.close()
    return code


def main() -> int:
    runner = ServiceRunner("ingest", "ingestion")
    try:
        import uvloop
    except ImportError:  # uvloop is optional off Linux/macOS; the asyncio loop still works
        return asyncio.run(run(runner))
    return uvloop.run(run(runner))


if __name__ == "__main__":
    raise SystemExit(main())
