"""Runner for ingest: the asyncio runner loop (uvloop) with the feed clients as its tasks; the
timer drives the core's clock ticks, probes, rolls and feed status; everything the core emits goes
out on the ingest PUB socket."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from common import topics
from common.bus import Subscriber
from common.clock import now_ns
from common.config import ConfigError, IngestSettings, StrategyConfigFiles, market_specs
from common.service import EXIT_CONFIG, ServiceRunner, fail
from services.ingest.capture import CaptureWriter
from services.ingest.core import IngestCore
from services.ingest.feeds import (
    FeedContext,
    binance_feed,
    clob_feed,
    gamma_discovery,
    resolution_poller,
    rtds_feed,
)

TIMER_MS = 20  # well under the 100 ms clock-tick bound
MARKETS_CHECK_S = 0.5  # how often the config files are looked at for a `markets` edit


class IngestRunner(ServiceRunner):
    core: IngestCore

    def __init__(self) -> None:
        super().__init__("ingest", "ingestion")
        self.ctx, self.opts, self.files = build(self)
        self.core = self.ctx.core
        # the last edit of the config files this service refused (None: the files are good),
        # in the heartbeat as signal and strategy report theirs (observe's /health warnings)
        self.config_file_error: dict[str, Any] | None = None

    def state(self) -> tuple[str, dict[str, Any]]:
        summary = self.core.summary()
        feeds = summary["feeds"].items()
        degraded = any(f["stale"] for n, f in feeds if self.core.feed(n).enabled)
        if self.config_file_error is not None:  # running on the markets in force: say why
            summary = {**summary, "config_file_error": self.config_file_error}
        return ("degraded" if degraded else "running"), summary

    def heartbeat(self) -> None:
        super().heartbeat()
        if self.ctx.capture is not None:
            self.ctx.capture.flush()

    async def watch_markets(self) -> None:
        """Hot reload of `markets`: on an edit of either config file (by hand, or strategy
        writing the overrides after `POST /api/config`), follow the markets it names now;
        a bad file keeps the markets in force (logged, and in the heartbeat's
        `config_file_error` until the files are good again)."""
        files, ctx = self.files, self.ctx
        while not ctx.stop.is_set():
            if await ctx.sleep(MARKETS_CHECK_S):
                return
            if not files.changed():
                continue
            try:
                specs = market_specs(files.load().config)
            except ConfigError as e:
                ctx.log("markets_not_reloaded", "WARNING", error=str(e))
                self.config_file_error = {**e.to_dict(), "ts_ns": now_ns()}
                continue
            self.config_file_error = None
            before = sorted(self.core.specs)
            self.core.set_markets(specs, ctx.default_window_s)
            after = sorted(self.core.specs)
            if before != after:
                ctx.log("markets_changed", markets=after, was=before)

    async def run(self) -> int:
        ctx, opts = self.ctx, self.opts
        tasks = [
            asyncio.create_task(binance_feed(ctx), name="binance"),
            asyncio.create_task(clob_feed(ctx), name="clob"),
            asyncio.create_task(gamma_discovery(ctx), name="gamma"),
            asyncio.create_task(resolution_poller(ctx), name="resolution"),
        ]
        tasks.append(asyncio.create_task(self.watch_markets(), name="markets"))
        if opts.price_feed:
            tasks.append(asyncio.create_task(rtds_feed(ctx), name="price_feed"))
        else:
            self.core.feed("price_feed").detail = "disabled (INGEST_PRICE_FEED=0)"
        # strategy's risk state and execution's heartbeat: the windows where they hold a position
        # awaiting resolution (services/ingest/core.py `hold`), resolved even when discovery never
        # found them, and their resolution said again when one of them missed it
        sub = Subscriber(
            [self.settings.bus_endpoint(peer) for peer in ("strategy", "execution")],
            topics.SUBSCRIPTIONS["ingest"],
        )
        try:
            return await self.serve_async(
                [sub],
                tasks,
                TIMER_MS,
                venue=self.settings.venue,
                window_seconds=ctx.default_window_s,
                capture=opts.capture,
                price_feed=opts.price_feed,
                urls=dict(self.settings.urls),
            )
        finally:
            ctx.stop.set()
            sub.close()
            if ctx.capture is not None:
                ctx.capture.close()


def build(runner: ServiceRunner) -> tuple[FeedContext, IngestSettings, StrategyConfigFiles]:
    s = runner.settings
    opts = s.ingest
    files = s.strategy_config_files()
    try:
        config = files.load().config
        specs = market_specs(config)
    except ConfigError as e:
        fail("ingest", str(e), EXIT_CONFIG)
    stale_ms = opts.stale_after_ms or config.stale_after_ms
    window_s = opts.window_seconds or (s.sim.window_seconds if s.venue == "sim" else 300)
    core = IngestCore(
        stale_after_ms=stale_ms,
        gamma_stale_after_ms=max(3 * opts.gamma_refresh_ms, stale_ms),
        release_grace_ns=opts.release_grace_s * 1_000_000_000,
        price_feed_enabled=opts.price_feed,
        price_feed_stale_after_ms=opts.rtds_silence_ms * 2 // 3,
        basis_bound_usd=float(opts.basis_warn_usd or 50),
    )
    core.set_markets(specs, window_s)
    capture = None
    if opts.capture:
        capture = CaptureWriter(
            s.data_dir / "captures",
            rotate_s=opts.capture_rotate_s,
            max_bytes=opts.capture_max_mb * 1024 * 1024,
        )

    def log(event: str, level: str = "INFO", **fields: Any) -> None:
        runner.log.write(runner.stream, event, level, **fields)

    ctx = FeedContext(core, runner.deliver, log, opts, s.urls, window_s, capture)
    # the INGEST_* values in force (from .env or the environment) and what 0 resolved to
    log(
        "ingest_settings",
        stale_after_ms=stale_ms,
        options=msgspec.to_builtins(opts),
        markets=sorted(core.specs),
    )
    return ctx, opts, files


def main() -> int:
    runner = IngestRunner()
    try:
        import uvloop
    except ImportError:  # uvloop is optional off Linux/macOS; the asyncio loop still works
        return asyncio.run(runner.run())
    return uvloop.run(runner.run())


if __name__ == "__main__":
    raise SystemExit(main())
