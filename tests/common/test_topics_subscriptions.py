"""The hot-path services subscribe to exactly the market-data topics their cores handle: a
handled message on a topic not subscribed is silently never seen, and a subscribed topic the
core ignores costs a decode per message (and strategy's state commit) for nothing."""

from __future__ import annotations

import pytest

from common import topics
from common.core import handler_name
from common.schema import (
    BookSnapshot,
    BtcQuote,
    BtcTrade,
    ClockTick,
    FeedStatus,
    MarketInfo,
    MarketResolved,
    PriceBasis,
    PriceFeedTick,
)
from services.execution.core import ExecutionCore
from services.signal.core import SignalCore
from services.strategy.core import StrategyCore

# every md.* message type and a topic ingest publishes it on
MARKET_DATA = {
    BtcTrade: topics.BTC_TRADE,
    BtcQuote: topics.BTC_QUOTE,
    BookSnapshot: topics.book_topic("123"),
    MarketInfo: topics.MARKET,
    MarketResolved: topics.RESOLVED,
    PriceFeedTick: topics.PRICE_FEED_PREFIX + "chainlink",
    ClockTick: topics.CLOCK,
    FeedStatus: topics.FEED_STATUS_PREFIX + "binance",
    PriceBasis: topics.BASIS,
}


@pytest.mark.parametrize(
    "service, core",
    [("signal", SignalCore), ("strategy", StrategyCore), ("execution", ExecutionCore)],
)
def test_subscriptions_match_the_handlers(service: str, core: type) -> None:
    subs = topics.SUBSCRIPTIONS[service]
    for kind, topic in MARKET_DATA.items():
        handled = hasattr(core, handler_name(kind))
        subscribed = any(topic.startswith(p) for p in subs)
        assert handled == subscribed, f"{service}: {kind.__name__} on {topic} is " + (
            "handled but not subscribed" if handled else "subscribed but not handled"
        )
