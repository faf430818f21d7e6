"""Execution's transport-free core: turns order intents into acks, fills or rejects."""

from __future__ import annotations

from common import topics
from common.schema import BookSnapshot, Msg, OrderIntent, OrderReject


class ExecutionCore:
    def __init__(self) -> None:
        self.books: dict[str, BookSnapshot] = {}

    def handle(self, topic: str, msg: Msg) -> list[tuple[str, Msg]]:
        if isinstance(msg, BookSnapshot):
            self.books[msg.asset_id] = msg
        return []

    def on_intent(self, intent: OrderIntent, now_ns: int) -> list[tuple[str, Msg]]:
        reason = "no book for asset" if intent.asset_id not in self.books else "not implemented"
        return [
            (
                topics.REJECT,
                OrderReject(client_order_id=intent.client_order_id, reason=reason, ts_ns=now_ns),
            )
        ]

    def status(self) -> dict[str, object]:
        return {"books": len(self.books)}
