"""A stand-in for ingest's publisher, run as its own process by the bus chaos test: it binds the
ingest endpoint, ticks slowly until told to burst, then sends a burst far larger than a stopped
subscriber's queue can hold (so the subscriber must lose messages and count a gap).

Usage: python -m tests.chaos.chaos_bus_peer ENDPOINT BURST   (stdin: "burst", then "exit")
"""

from __future__ import annotations

import sys
import threading
import time

from common import topics
from common.bus import Publisher
from common.schema import ClockTick


def main() -> None:
    endpoint, burst = sys.argv[1], int(sys.argv[2])
    pub = Publisher(endpoint, hwm=1000)
    print("ready", pub.epoch, flush=True)
    commands: list[str] = []
    wake = threading.Event()  # set by every command, so the loop answers it at once

    def read() -> None:
        for ln in sys.stdin:
            commands.append(ln.strip())
            wake.set()
        wake.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while True:
        if "exit" in commands or not reader.is_alive() and not commands:
            break
        if "burst" in commands:
            commands.remove("burst")
            for _ in range(burst):
                pub.send(topics.CLOCK, ClockTick(ts_ns=time.time_ns()))
            print("sent", pub.sent, flush=True)
        pub.send(topics.CLOCK, ClockTick(ts_ns=time.time_ns()))
        wake.wait(0.01)  # a slow tick rate between bursts (like ingest's clock) until told
        wake.clear()
    pub.close()


if __name__ == "__main__":
    main()
