"""A bus peer run as a separate process by the bus tests (publisher or pusher)."""

from __future__ import annotations

import sys
import time

from common.bus import Publisher, Pusher
from common.schema import BtcTrade, OrderIntent


def intent(coid: str, expires_ns: int) -> OrderIntent:
    return OrderIntent(
        client_order_id=coid,
        slug="btc-updown-5m-0",
        asset_id="1",
        outcome="Up",
        side="BUY",
        order_type="FOK",
        limit_price=0.5,
        size=10.0,
        expires_ns=expires_ns,
        ts_intent_ns=time.time_ns(),
    )


def main() -> None:
    role, endpoint, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if role == "pub":
        hwm = int(sys.argv[4]) if len(sys.argv) > 4 else 100_000
        pub = Publisher(endpoint, hwm=hwm)
        print("ready", pub.epoch, flush=True)
        sys.stdin.readline()  # the test says go once its subscriber is connected
        for i in range(count):
            pub.send(
                "md.btc.trade", BtcTrade(price=100.0 + i, size=1.0, ts_exchange_ns=i, ts_recv_ns=i)
            )
        print("sent", count, flush=True)
        sys.stdin.readline()  # stay alive until the test has read what it needs
    elif role == "push":
        push = Pusher(endpoint, timeout_ms=5000)
        now = time.time_ns()
        ok1 = push.send("order", intent("stale-1", now - 1_000_000_000))
        ok2 = push.send("order", intent("fresh-1", now + 60_000_000_000))
        print("pushed", ok1, ok2, flush=True)
        sys.stdin.readline()


if __name__ == "__main__":
    main()
