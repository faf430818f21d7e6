"""Ingest's transport-free core: clock ticks and end-to-end probes on event time.

Feed clients (Binance, Polymarket, Gamma, price feed) hand their normalised messages to the
runner, which publishes them; this core owns what ingest emits on its own schedule."""

from __future__ import annotations

from common import topics
from common.clock import CLOCK_TICK_INTERVAL_NS
from common.schema import ClockTick, Msg, Probe

PROBE_INTERVAL_NS = 1_000_000_000


class IngestCore:
    def __init__(self) -> None:
        self._next_tick = 0
        self._next_probe = 0
        self._probe_id = 0

    def on_timer(self, now_ns: int) -> list[tuple[str, Msg]]:
        out: list[tuple[str, Msg]] = []
        if now_ns >= self._next_tick:
            out.append((topics.CLOCK, ClockTick(ts_ns=now_ns)))
            self._next_tick = now_ns + CLOCK_TICK_INTERVAL_NS
        if now_ns >= self._next_probe:
            self._probe_id += 1
            out.append(
                (
                    topics.PROBE_PREFIX + "ingest",
                    Probe(
                        probe_id=self._probe_id,
                        ts_origin_ns=now_ns,
                        hops=["ingest"],
                        hop_ns=[now_ns],
                    ),
                )
            )
            self._next_probe = now_ns + PROBE_INTERVAL_NS
        return out
