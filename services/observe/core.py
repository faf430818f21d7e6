"""Observe's transport-free core: the latest state of every service, built from bus messages."""

from __future__ import annotations

from typing import Any

from common.schema import Heartbeat, Msg, Probe, to_dict

SERVICES = ("ingest", "signal", "strategy", "execution", "observe")
HEARTBEAT_STALE_NS = 3_000_000_000


class ObserveCore:
    def __init__(self, started_ns: int, pid: int) -> None:
        self.heartbeats: dict[str, Heartbeat] = {}
        self.last_probe: Probe | None = None
        self.probes = 0
        self.started_ns = started_ns
        self.pid = pid
        self.latest: dict[str, dict[str, Any]] = {}  # topic -> last message, for the API

    def handle(self, topic: str, msg: Msg) -> None:
        if isinstance(msg, Heartbeat):
            self.heartbeats[msg.service] = msg
        elif isinstance(msg, Probe):
            if msg.hops and msg.hops[-1] == "execution":
                self.last_probe = msg
                self.probes += 1
        else:
            self.latest[topic] = to_dict(msg)

    def health(self, now_ns: int) -> dict[str, Any]:
        services: dict[str, Any] = {}
        for name in SERVICES:
            if name == "observe":
                services[name] = {
                    "state": "running",
                    "pid": self.pid,
                    "age_ms": 0.0,
                    "started_ns": self.started_ns,
                    "alive": True,
                }
                continue
            hb = self.heartbeats.get(name)
            if hb is None:
                services[name] = {"state": "unknown", "alive": False, "age_ms": None}
                continue
            age = now_ns - hb.ts_ns
            services[name] = {
                "state": hb.state,
                "pid": hb.pid,
                "age_ms": round(age / 1e6, 1),
                "started_ns": hb.started_ns,
                "alive": age < HEARTBEAT_STALE_NS,
                "detail": hb.detail,
            }
        pipeline: dict[str, Any] = {"probes": self.probes}
        if self.last_probe is not None:
            p = self.last_probe
            pipeline.update(
                hops=p.hops,
                age_ms=round((now_ns - p.hop_ns[-1]) / 1e6, 1),
                end_to_end_ms=round((p.hop_ns[-1] - p.ts_origin_ns) / 1e6, 3),
            )
        ok = all(s["alive"] for s in services.values())
        return {"ok": ok, "services": services, "pipeline": pipeline}
