"""Runner for execution: PULL order intents (bound: execution owns the stream), SUB to market data,
the ledger at DATABASE_URL, and the live venue adapter only when all three switches allow it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from common import topics
from common.bus import Puller, Subscriber
from common.clock import now_ns
from common.config import ConfigError, load_strategy_config, parse_dotenv
from common.core import Emitted
from common.service import EXIT_CONFIG, ServiceRunner, fail
from services.execution.core import ExecutionCore, Venue
from services.execution.ledger import Ledger
from services.execution.switches import TradingMode

TIMER_MS = 50  # dry-run latency releases and reconcile lookups


def _env_ms(name: str, default: int) -> int:
    """An execution tuning knob in milliseconds from the environment; bad values fail clearly."""
    raw = {**parse_dotenv(Path(".env")), **os.environ}.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 600_000:
        fail(
            "execution",
            f"{name}: expected milliseconds between 1 and 600000, got {raw!r}",
            EXIT_CONFIG,
        )
    return int(raw)


class ExecutionRunner(ServiceRunner):
    core: ExecutionCore

    def __init__(self) -> None:
        super().__init__("execution", "execution")
        try:
            cfg = load_strategy_config(data_dir=self.settings.data_dir)
        except ConfigError as e:
            fail("execution", str(e), EXIT_CONFIG)
        s = self.settings
        self.mode = TradingMode.from_settings(s)
        self.ledger = Ledger(s.database_path, venue=s.venue)  # this venue's book only
        venue: Venue | None = None
        if self.mode.live:
            from services.execution.live import LiveVenue  # the one module importing the SDK

            venue = LiveVenue(
                s.urls["CLOB_API_URL"],
                s.private_key,  # type: ignore[arg-type]
                log=self.log.write,
                user_ws_url=s.urls["POLYMARKET_WS_URL"] + "/user",
                timeout_s=_env_ms("EXEC_ORDER_TIMEOUT_MS", 5000) / 1000,
                grace_s=_env_ms("EXEC_RECONCILE_GRACE_MS", 10_000) / 1000,
            )
            venue.start()
        else:
            self.log.write(
                "execution",
                self.mode.block_tag,
                "INFO",
                tags=list(self.mode.block_tags),
                detail="real trading disabled at start; no venue client created",
            )
        self.venue = venue
        self.core = ExecutionCore(
            self.ledger,
            self.mode,
            venue=venue,
            clock=now_ns,
            dry_run_latency_ms=cfg.dry_run_latency_ms,
        )

    def state(self) -> tuple[str, dict[str, Any]]:
        st = self.core.status()
        return ("degraded" if st.get("to_reconcile") else "running"), st

    def run(self) -> int:
        s = self.settings
        # expired intents are dropped by the core, which records why
        orders = Puller(s.bus_endpoint(topics.ORDERS), drop_expired=False)
        md = Subscriber(
            s.bus_endpoint("ingest"),
            [t for t in topics.SUBSCRIPTIONS["execution"] if t != topics.ORDER_INTENT],
        )
        # startup and crash recovery share one path: reconcile before reading any new intent
        self.deliver(Emitted(self.core.recover(), self.core.take_logs()))
        try:
            return self.serve([orders, md], TIMER_MS)
        finally:
            if self.venue is not None:
                self.venue.close()
            self.ledger.close()


def main() -> int:
    return ExecutionRunner().run()


if __name__ == "__main__":
    raise SystemExit(main())
