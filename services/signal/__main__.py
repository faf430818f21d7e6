"""Runner for signal: SUB to ingest, publish scores; forwards the end-to-end probe."""

from __future__ import annotations

from typing import Any

from common import topics
from common.bus import Subscriber
from common.schema import Envelope, Probe
from common.service import ServiceRunner, forward_probe
from services.signal.core import SignalCore


class SignalRunner(ServiceRunner):
    def __init__(self) -> None:
        super().__init__("signal", "signal")
        self.core = SignalCore()

    def state(self) -> tuple[str, dict[str, Any]]:
        return "running", self.core.status()

    def on_md(self, topic: str, env: Envelope) -> None:
        if isinstance(env.msg, Probe):
            self.pub.send(topics.PROBE_PREFIX + "signal", forward_probe(env.msg, "signal"))
            return
        self.publish_all(self.core.handle(topic, env.msg))

    def run(self) -> int:
        md = Subscriber(
            self.settings.bus_endpoint("ingest"), ["md.", topics.PROBE_PREFIX + "ingest"]
        )
        return self.loop({md: self.on_md})


def main() -> int:
    return SignalRunner().run()


if __name__ == "__main__":
    raise SystemExit(main())
