"""Strategy's transport-free core: gates, exits, risk halts and operator control commands."""

from __future__ import annotations

from typing import Any

from common import topics
from common.config import (
    ConfigError,
    StrategyConfig,
    config_to_dict,
    validate_strategy_config,
)
from common.schema import (
    ClearEmergencyStop,
    ClockTick,
    ConfigSnapshot,
    ConfigUpdate,
    ControlReply,
    EmergencyStop,
    ForceExit,
    Msg,
    RiskState,
)


class StrategyCore:
    def __init__(self, config: StrategyConfig) -> None:
        self.config = config
        self.config_version = 1
        self.emergency_stop = False
        self.now_ns = 0

    def risk_state(self) -> RiskState:
        reasons = ["emergency_stop"] if self.emergency_stop else []
        return RiskState(
            ts_ns=self.now_ns,
            halted=bool(reasons),
            emergency_stop=self.emergency_stop,
            reasons=reasons,
            config_version=self.config_version,
        )

    def handle(self, topic: str, msg: Msg) -> list[tuple[str, Msg]]:
        if isinstance(msg, ClockTick):
            self.now_ns = msg.ts_ns
        return []

    def on_control(self, msg: Msg) -> list[tuple[str, Msg]]:
        out: list[tuple[str, Msg]] = []
        ok, error, field_errors = True, "", {}
        if isinstance(msg, EmergencyStop):
            self.emergency_stop = True
        elif isinstance(msg, ClearEmergencyStop):
            self.emergency_stop = False
        elif isinstance(msg, ForceExit):
            pass  # no position is held by this core yet
        elif isinstance(msg, ConfigUpdate):
            try:
                self.config = validate_strategy_config(msg.config, "config update")
                self.config_version += 1
                out.append((topics.CONFIG_SNAPSHOT, self.config_snapshot("config update")))
            except ConfigError as e:
                ok, error, field_errors = False, str(e), e.errors
        else:
            return []
        risk = self.risk_state()
        out.append((topics.RISK_STATE, risk))
        state: dict[str, Any] = {
            "risk": {
                "halted": risk.halted,
                "reasons": risk.reasons,
                "emergency_stop": risk.emergency_stop,
            },
            "config_version": self.config_version,
        }
        out.append(
            (
                topics.CONTROL_REPLY,
                ControlReply(
                    request_id=msg.request_id,
                    ok=ok,
                    ts_ns=self.now_ns,
                    error=error,
                    field_errors=field_errors,
                    state=state,
                ),
            )
        )
        return out

    def config_snapshot(self, source: str) -> ConfigSnapshot:
        return ConfigSnapshot(
            version=self.config_version,
            config=config_to_dict(self.config),
            ts_ns=self.now_ns,
            source=source,
        )

    def status(self) -> dict[str, Any]:
        return {"emergency_stop": self.emergency_stop, "config_version": self.config_version}
