"""Runner for ingest: an asyncio loop (uvloop) that publishes feed data, clock ticks and probes."""

from __future__ import annotations

import asyncio
import signal

from common.clock import now_ns
from common.service import ServiceRunner
from services.ingest.core import IngestCore

TIMER_S = 0.02  # well under the 100 ms clock-tick bound


async def run(runner: ServiceRunner) -> int:
    core = IngestCore()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner.log.write(runner.stream, "service_started", venue=runner.settings.venue)
    next_hb = 0
    try:
        while not stop.is_set():
            now = now_ns()
            runner.publish_all(core.on_timer(now))
            if now >= next_hb:
                runner.heartbeat()
                next_hb = now + 1_000_000_000
            try:
                await asyncio.wait_for(stop.wait(), TIMER_S)
            except TimeoutError:
                pass
    finally:
        runner.log.write(runner.stream, "service_stopping")
        if runner.pub is not None:
            runner.pub.close()
    return 0


def main() -> int:
    runner = ServiceRunner("ingest", "ingestion")
    try:
        import uvloop

        return uvloop.run(run(runner))
    except ImportError:
        return asyncio.run(run(runner))


if __name__ == "__main__":
    raise SystemExit(main())
