"""Runner for execution: PULL order intents (bound: execution owns the stream), SUB to market data,
the ledger at DATABASE_URL, and the live venue adapter only when all three switches allow it.

`dry_run_latency_ms` comes from the strategy config (shipped defaults + the operator's overrides in
the data directory); both files are watched, as signal and ingest watch them, so an accepted
change (strategy writes the overrides after `POST /api/config`) or a hand edit reaches the paper
executor without a restart."""

from __future__ import annotations

from typing import Any

from common import topics
from common.bus import Puller, Subscriber
from common.clock import now_ns
from common.config import ConfigError
from common.core import Emitted
from common.db import DatabaseUnavailable
from common.service import EXIT_CONFIG, ServiceRunner, fail
from services.execution.core import ExecutionCore, Venue
from services.execution.ledger import Ledger
from services.execution.switches import TradingMode

TIMER_MS = 50  # dry-run latency releases and reconcile lookups
CONFIG_CHECK_NS = 500_000_000  # how often the config files' mtimes are looked at (as signal)


class ExecutionRunner(ServiceRunner):
    core: ExecutionCore

    def __init__(self) -> None:
        super().__init__("execution", "execution")
        self.config_files = self.settings.strategy_config_files()
        # the last edit of the config files this service refused (None: the files are good)
        self.config_file_error: dict[str, Any] | None = None
        self._next_config_check = 0
        try:
            cfg = self.config_files.load().config
        except ConfigError as e:
            fail("execution", str(e), EXIT_CONFIG)
        s = self.settings
        self.mode = TradingMode.from_settings(s)
        try:
            self.ledger = Ledger(s.database_path, venue=s.venue)  # this venue's book only
        except DatabaseUnavailable as e:
            fail("execution", str(e), EXIT_CONFIG)
        venue: Venue | None = None
        if self.mode.live:
            from services.execution.live import LiveVenue  # the one module importing the SDK

            venue = LiveVenue(
                s.urls["CLOB_API_URL"],
                s.private_key,  # type: ignore[arg-type]
                log=self.log.write,
                user_ws_url=s.urls["POLYMARKET_WS_URL"] + "/user",
                timeout_s=s.execution.order_timeout_ms / 1000,
                grace_s=s.execution.reconcile_grace_ms / 1000,
                signature_type=s.signature_type,
                funder=s.funder or "",
                rpc_url=s.urls["POLYGON_RPC_URL"],
                relayer_url=s.urls["RELAYER_URL"],
                relayer_api_key=s.relayer_api_key,
                relayer_api_key_address=s.relayer_api_key_address or "",
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
        if self.config_file_error is not None:  # running on the last good config: say why
            st = {**st, "config_file_error": self.config_file_error}
        return ("degraded" if st.get("to_reconcile") else "running"), st

    def on_timer(self, now: int) -> None:
        super().on_timer(now)
        if now < self._next_config_check:
            return
        self._next_config_check = now + CONFIG_CHECK_NS
        if not self.config_files.changed():
            return
        try:
            cfg = self.config_files.load().config
        except ConfigError as e:
            self.log.write("execution", "config_reload_rejected", "WARNING", error=str(e))
            self.config_file_error = {**e.to_dict(), "ts_ns": now}
            return
        self.config_file_error = None
        was = self.core.dry_run_latency_ns // 1_000_000
        if cfg.dry_run_latency_ms != was:
            self.core.set_dry_run_latency_ms(cfg.dry_run_latency_ms)
            self.log.write(
                "execution",
                "config_reloaded",
                dry_run_latency_ms=cfg.dry_run_latency_ms,
                was=was,
            )

    def run(self) -> int:
        s = self.settings
        # expired intents are dropped by the core, which records why
        orders = Puller(s.bus_endpoint(topics.ORDERS), drop_expired=False)
        md = Subscriber(
            s.bus_endpoint("ingest"),
            [t for t in topics.SUBSCRIPTIONS["execution"] if t != topics.ORDER_INTENT],
            lazy_books=True,  # a book's levels are decoded when read (an order)
        )
        # startup and crash recovery share one path: reconcile before reading any new intent
        self.deliver(Emitted(self.core.recover(), self.core.take_logs()))
        try:
            return self.serve([orders, md], TIMER_MS)
        finally:
            if self.venue is not None and self.core.resting:
                # nothing of ours rests once execution is gone (issue 18; a crash: heartbeat)
                try:
                    self.venue.cancel_all()
                except Exception as e:  # noqa: BLE001 - shutting down: say so, go on
                    self.log.error("cancel_all_at_shutdown_failed", error=str(e)[:200])
            if self.venue is not None:
                self.venue.close()
            self.ledger.close()


def main() -> int:
    return ExecutionRunner().run()


if __name__ == "__main__":
    raise SystemExit(main())
