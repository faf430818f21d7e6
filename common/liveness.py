"""Liveness of a venue socket judged by its DATA, not by its keep-alives.

A socket that keeps answering PING with PONG (or WebSocket ping frames) but has stopped sending
market data is dead for a trading system (PROTOCOLS.md section 6: "sockets that stay open but go
silent"). Every socket keeps a `DataLiveness`: `frame()` on any frame, `data()` on a frame that
carried data; `verdict()` says why the socket must be replaced, judged against that feed's own
expected cadence. Times are seconds from a monotonic clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# Expected data cadence per feed (seconds between data messages when healthy) and how many
# expected intervals of silence make a socket dead. Observed rates: Binance bookTicker ~106/s,
# CLOB price_change ~57/s for one BTC 5m market, RTDS Chainlink ~1/s (PROTOCOLS.md 1, 2, 5).
SILENT_INTERVALS = 10


class DataLiveness:
    """One socket's last frame and last data message.

    `silence_s`: data silence after which the socket is dead (also when keep-alives still come
    back). `keepalive_s`: silence of every kind after which it is dead (0: not judged)."""

    def __init__(
        self,
        feed: str,
        silence_s: float,
        keepalive_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if silence_s <= 0:
            raise ValueError(f"{feed}: data silence bound must be > 0 s, got {silence_s!r}")
        self.feed = feed
        self.silence_s = silence_s
        self.keepalive_s = keepalive_s
        self._clock = clock
        now = clock()
        self.last_frame = now
        self.last_data = now  # a fresh socket gets one full bound to deliver its first data
        self.frames = 0
        self.data_messages = 0

    def frame(self) -> None:
        """Any frame arrived (data, PONG, subscription answer)."""
        self.last_frame = self._clock()
        self.frames += 1

    def data(self) -> None:
        """A frame carrying data arrived (call `frame()` too, or use `both()`)."""
        self.last_data = self._clock()
        self.data_messages += 1

    def both(self) -> None:
        self.frame()
        self.data()

    def data_age(self) -> float:
        return self._clock() - self.last_data

    def verdict(self) -> str:
        """ "" while alive; else why the socket must be replaced."""
        now = self._clock()
        if self.keepalive_s and now - self.last_frame > self.keepalive_s:
            return f"{self.feed}: no frame at all for {now - self.last_frame:.1f} s"
        if now - self.last_data > self.silence_s:
            answering = now - self.last_frame <= self.silence_s
            return (
                f"{self.feed}: no data for {now - self.last_data:.1f} s "
                f"(bound {self.silence_s:g} s)"
                + ("; keep-alives still answered" if answering else "")
            )
        return ""
