"""Runner for strategy: SUB to ingest, signal and execution; PULL control; PUSH order intents."""

from __future__ import annotations

from typing import Any

from common import topics
from common.bus import Puller, Pusher, Subscriber
from common.config import ConfigError, load_strategy_config
from common.schema import Envelope, Msg, Probe
from common.service import EXIT_CONFIG, ServiceRunner, fail, forward_probe
from services.strategy.core import StrategyCore


class StrategyRunner(ServiceRunner):
    def __init__(self) -> None:
        super().__init__("strategy", "strategy")
        try:
            config = load_strategy_config()
        except ConfigError as e:
            fail("strategy", str(e), EXIT_CONFIG)
        self.core = StrategyCore(config)
        self.orders = Pusher(self.settings.bus_endpoint(topics.ORDERS))

    def state(self) -> tuple[str, dict[str, Any]]:
        return ("halted" if self.core.emergency_stop else "running"), self.core.status()

    def route(self, out: list[tuple[str, Msg]]) -> None:
        for topic, msg in out:
            if topic == topics.ORDER_INTENT:
                if not self.orders.send(topic, msg):
                    self.log.error("order_not_delivered", reason="execution did not take it")
            else:
                self.pub.send(topic, msg)

    def on_bus(self, topic: str, env: Envelope) -> None:
        if isinstance(env.msg, Probe):
            # NOBLOCK-ish: a probe is not worth stalling the hot path when execution is down
            self.orders.send(topics.ORDER_INTENT, forward_probe(env.msg, "strategy"))
            return
        self.route(self.core.handle(topic, env.msg))

    def on_control(self, topic: str, env: Envelope) -> None:
        self.log.write("risk", "control_command", kind=type(env.msg).__name__)
        self.route(self.core.on_control(env.msg))

    def run(self) -> int:
        s = self.settings
        sub = Subscriber(
            [s.bus_endpoint("ingest"), s.bus_endpoint("signal"), s.bus_endpoint("execution")],
            ["md.", "sig.", "exec.", topics.PROBE_PREFIX + "signal"],
        )
        control = Puller(s.bus_endpoint(topics.CONTROL))
        self.pub.send(topics.CONFIG_SNAPSHOT, self.core.config_snapshot("startup"))
        try:
            return self.loop({sub: self.on_bus, control: self.on_control})
        finally:
            self.orders.close()


def main() -> int:
    return StrategyRunner().run()


if __name__ == "__main__":
    raise SystemExit(main())
