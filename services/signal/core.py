"""Signal's transport-free core: turns market data into a probability that the window ends Up."""

from __future__ import annotations

from common.schema import BtcTrade, Msg


class SignalCore:
    def __init__(self) -> None:
        self.last_price: float | None = None
        self.trades = 0

    def handle(self, topic: str, msg: Msg) -> list[tuple[str, Msg]]:
        if isinstance(msg, BtcTrade):
            self.last_price = msg.price
            self.trades += 1
        return []

    def status(self) -> dict[str, object]:
        return {"last_price": self.last_price, "trades": self.trades}
