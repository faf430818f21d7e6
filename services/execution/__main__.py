"""Runner for execution: PULL order intents (bound: execution owns the stream), SUB to market data."""

from __future__ import annotations

from typing import Any

from common import topics
from common.bus import Puller, Subscriber
from common.clock import now_ns
from common.schema import Envelope, OrderIntent, Probe
from common.service import ServiceRunner, forward_probe
from services.execution.core import ExecutionCore


class ExecutionRunner(ServiceRunner):
    def __init__(self) -> None:
        super().__init__("execution", "execution")
        self.core = ExecutionCore()

    def state(self) -> tuple[str, dict[str, Any]]:
        return "running", self.core.status()

    def on_md(self, topic: str, env: Envelope) -> None:
        self.publish_all(self.core.handle(topic, env.msg))

    def on_order(self, topic: str, env: Envelope) -> None:
        msg = env.msg
        if isinstance(msg, Probe):
            self.pub.send(topics.PROBE_PREFIX + "execution", forward_probe(msg, "execution"))
        elif isinstance(msg, OrderIntent):
            self.publish_all(self.core.on_intent(msg, now_ns()))

    def run(self) -> int:
        s = self.settings
        orders = Puller(s.bus_endpoint(topics.ORDERS))
        md = Subscriber(
            s.bus_endpoint("ingest"),
            [topics.BOOK_PREFIX, topics.MARKET, topics.RESOLVED, topics.CLOCK],
        )
        return self.loop({orders: self.on_order, md: self.on_md})


def main() -> int:
    return ExecutionRunner().run()


if __name__ == "__main__":
    raise SystemExit(main())
