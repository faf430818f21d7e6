"""Runner for observe: SUB to every publisher (drained on fd wake-ups), serve the API."""

from __future__ import annotations

import asyncio
import os
import sys

import uvicorn
import zmq

from common.bus import BusError, Subscriber
from common.service import EXIT_CONFIG, EXIT_INTERNAL, ServiceRunner, fail
from common.topics import PUBLISHERS
from services.observe.app import build_app
from services.observe.core import ObserveCore

LOOPBACK = ("127.0.0.1", "localhost", "::1")


async def serve(runner: ServiceRunner) -> int:
    s = runner.settings
    core = ObserveCore(runner.started_ns, os.getpid())
    sub = Subscriber([s.bus_endpoint(p) for p in PUBLISHERS])
    fault: list[str] = []
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(core),
            host=s.api_host,
            port=s.api_port,
            log_level="warning",
            lifespan="off",
            access_log=False,
        )
    )

    def on_readable() -> None:
        try:
            for topic, env in sub.drain():
                core.handle(topic, env.msg)
            if sub.sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                loop.call_soon(on_readable)  # drain hit its limit; the fd will not fire again
        except BusError as e:
            fault.append(str(e))
            server.should_exit = True

    loop = asyncio.get_running_loop()
    loop.add_reader(sub.fileno(), on_readable)
    loop.call_soon(on_readable)  # the fd is edge-triggered: drain whatever came before
    runner.log.write("latency", "service_started", api=f"http://{s.api_host}:{s.api_port}")
    try:
        await server.serve()
    finally:
        loop.remove_reader(sub.fileno())
        sub.close()
    if fault:
        runner.log.error("bus_internal_fault", error=fault[0])
        return EXIT_INTERNAL
    if not server.started:
        return 1
    return 0


def main() -> int:
    runner = ServiceRunner("observe", "latency", publish=False)
    s = runner.settings
    if s.api_host not in LOOPBACK and s.api_token is None:
        fail(
            "observe",
            f"API_HOST={s.api_host} is not loopback and API_TOKEN is not set: "
            "refusing to expose the API without a token",
            EXIT_CONFIG,
        )
    code = asyncio.run(serve(runner))
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
