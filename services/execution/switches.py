"""The three switches that gate real orders: DRY_RUN=false AND ENABLE_REAL_TRADING=true AND
PRIVATE_KEY set. Anything else blocks every order that would have gone live, with a fixed tag."""

from __future__ import annotations

from dataclasses import dataclass

from common.config import Settings

BLOCKED_DRY_RUN = "REAL_TRADING_BLOCKED_DRY_RUN_TRUE"
BLOCKED_ENABLE = "REAL_TRADING_BLOCKED_ENABLE_FALSE"
BLOCKED_KEY = "REAL_TRADING_BLOCKED_PRIVATE_KEY_MISSING"


@dataclass(frozen=True)
class TradingMode:
    """What execution does with an order. `live` only when all three switches agree.

    `block_tag` names the first switch that blocks real trading (checked in the order the issue
    lists them), `block_tags` every one that does. Holds no secret: only whether a key is set.
    """

    dry_run: bool
    enable_real_trading: bool
    has_private_key: bool

    @classmethod
    def from_settings(cls, s: Settings) -> TradingMode:
        return cls(s.dry_run, s.enable_real_trading, s.private_key is not None)

    @property
    def block_tags(self) -> tuple[str, ...]:
        tags = []
        if self.dry_run:
            tags.append(BLOCKED_DRY_RUN)
        if not self.enable_real_trading:
            tags.append(BLOCKED_ENABLE)
        if not self.has_private_key:
            tags.append(BLOCKED_KEY)
        return tuple(tags)

    @property
    def live(self) -> bool:
        return not self.block_tags

    @property
    def block_tag(self) -> str:
        tags = self.block_tags
        return tags[0] if tags else ""

    @property
    def name(self) -> str:
        return "live" if self.live else ("dry_run" if self.dry_run else "blocked")
