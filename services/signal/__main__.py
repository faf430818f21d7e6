"""Runner for signal: SUB to ingest, publish scores; the end-to-end probe passes through the core.

Model parameters come from the strategy config (shipped defaults + the operator's overrides in the
data directory); both files are watched so an accepted change (strategy writes the overrides) or
a hand edit reaches the model without a restart."""

from __future__ import annotations

from typing import Any

import msgspec

from common import topics
from common.bus import Subscriber
from common.config import ConfigError
from common.service import EXIT_CONFIG, ServiceRunner, fail
from services.signal.core import SignalCore

TIMER_MS = 500  # how often the config files' mtimes are looked at


class SignalRunner(ServiceRunner):
    core: SignalCore

    def __init__(self) -> None:
        super().__init__("signal", "signal")
        self.config_files = self.settings.strategy_config_files()
        # the last edit of the config files this service refused (None: the files are good)
        self.config_file_error: dict[str, Any] | None = None
        try:
            config = self.config_files.load().config
        except ConfigError as e:
            fail("signal", str(e), EXIT_CONFIG)
        self.core = SignalCore(config)
        self.md: Subscriber | None = None

    def state(self) -> tuple[str, dict[str, Any]]:
        detail = self.core.status()
        if self.config_file_error is not None:  # running on the last good config: say why
            detail = {**detail, "config_file_error": self.config_file_error}
        return "running", detail

    def on_timer(self, now: int) -> None:
        super().on_timer(now)
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
        if self.md is not None:  # a market of a new asset: its trades from now on
            added = self.md.subscribe(topics.spot_topics(self.core.spot_assets()))
            if added:
                self.log.write("signal", "subscribed", topics=added)

    def run(self) -> int:
        wanted = (*topics.SUBSCRIPTIONS["signal"], *topics.spot_topics(self.core.spot_assets()))
        # the core reads a book's best prices only: its levels are never decoded
        self.md = md = Subscriber(
            self.settings.bus_endpoint("ingest"), list(dict.fromkeys(wanted)), lazy_books=True
        )
        return self.serve([md], TIMER_MS)


def main() -> int:
    return SignalRunner().run()


if __name__ == "__main__":
    raise SystemExit(main())
