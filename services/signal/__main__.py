"""Runner for signal: SUB to ingest, publish scores; forwards the end-to-end probe.

Model parameters come from the strategy config (shipped defaults + the operator's overrides in the
data directory); both files are watched so an accepted change (strategy writes the overrides) or
a hand edit reaches the model without a restart."""

from __future__ import annotations

from typing import Any

import msgspec

from common import topics
from common.bus import Subscriber
from common.clock import now_ns
from common.config import ConfigError, StrategyConfigFiles
from common.schema import Envelope, Probe, SignalScore
from common.service import EXIT_CONFIG, ServiceRunner, fail, forward_probe
from services.signal.core import SignalCore

LOG_EVERY_NS = 1_000_000_000  # signal.jsonl gets one full score (with inputs) a second


class SignalRunner(ServiceRunner):
    def __init__(self) -> None:
        super().__init__("signal", "signal")
        self.config_files = StrategyConfigFiles(data_dir=self.settings.data_dir)
        # the last edit of the config files this service refused (None: the files are good)
        self.config_file_error: dict[str, Any] | None = None
        try:
            config = self.config_files.load().config
        except ConfigError as e:
            fail("signal", str(e), EXIT_CONFIG)
        self.core = SignalCore(config)
        self._next_log = 0
        self._last_side = ""

    def state(self) -> tuple[str, dict[str, Any]]:
        detail = self.core.status()
        if self.config_file_error is not None:  # running on the last good config: say why
            detail = {**detail, "config_file_error": self.config_file_error}
        return "running", detail

    def on_md(self, topic: str, env: Envelope) -> None:
        if isinstance(env.msg, Probe):
            self.pub.send(topics.PROBE_PREFIX + "signal", forward_probe(env.msg, "signal"))
            return
        for out_topic, msg in self.core.handle(topic, env.msg):
            if isinstance(msg, SignalScore):
                msg = msgspec.structs.replace(msg, ts_signal_ns=now_ns())
                if msg.ts_ns >= self._next_log or msg.side != self._last_side:
                    self.log.write("signal", "signal", **msgspec.to_builtins(msg))
                    self._next_log = msg.ts_ns + LOG_EVERY_NS
                    self._last_side = msg.side
            self.pub.send(out_topic, msg)

    def on_timer(self, now: int) -> None:
        if not self.config_files.changed():
            return
        try:
            config = self.config_files.load().config
        except ConfigError as e:
            self.log.write("signal", "config_reload_rejected", "WARNING", error=str(e))
            self.config_file_error = {**e.to_dict(), "ts_ns": now}
            return
        self.config_file_error = None
        self.core.set_config(config)
        self.log.write("signal", "config_reloaded", config=msgspec.to_builtins(config))

    def run(self) -> int:
        md = Subscriber(
            self.settings.bus_endpoint("ingest"), ["md.", topics.PROBE_PREFIX + "ingest"]
        )
        return self.loop({md: self.on_md}, on_timer=self.on_timer, timer_ms=500)


def main() -> int:
    return SignalRunner().run()


if __name__ == "__main__":
    raise SystemExit(main())
