"""Bus topics and stream names in one place, so publishers and subscribers cannot drift apart."""

from __future__ import annotations

from collections.abc import Iterable

# PUB streams, by owning service (each binds its own endpoint)
PUBLISHERS = ("ingest", "signal", "strategy", "execution")
# PUSH/PULL streams: name -> owner that binds the PULL side
ORDERS = "orders"  # strategy -> execution
CONTROL = "control"  # observe -> strategy

BTC_TRADE = "md.btc.trade"
BTC_QUOTE = "md.btc.quote"
BOOK_PREFIX = "md.book."  # + asset_id
MARKET = "md.market"
RESOLVED = "md.resolved"
PRICE_FEED_PREFIX = "md.price."  # + source
CLOCK = "md.clock"
FEED_STATUS_PREFIX = "md.status."  # + feed
BASIS = "md.basis"  # Binance vs Chainlink basis and Chainlink lag

SIGNAL = "sig.score"

DECISION = "strat.decision"
POSITION = "strat.position"
TRADE_CLOSED = "strat.trade"
CONTROL_REPLY = "strat.control.reply"
CONFIG_SNAPSHOT = "strat.config"
RISK_STATE = "risk.state"

ORDER_INTENT = "order"  # topic frame on the orders PUSH stream
# a CancelOrder on the orders PUSH stream: starts with ORDER_INTENT, so execution's
# subscription to ORDER_INTENT takes it
CANCEL_ORDER = "order.cancel"
CONTROL_CMD = "control"  # topic frame on the control PUSH stream

ACK = "exec.ack"
REJECT = "exec.reject"
FILL = "exec.fill"
SETTLEMENT = "exec.settlement"
REDEMPTION = "exec.redemption"  # a resolved market's redemption, on every change of state
LATENCY = "exec.latency"

HEARTBEAT_PREFIX = "sys.heartbeat."  # + service
PROBE_PREFIX = "sys.probe."  # + the hop that published it


def book_topic(asset_id: str) -> str:
    return BOOK_PREFIX + asset_id


def trade_topic(asset: str) -> str:
    """Binance trades of one asset: "btc" -> "md.btc.trade" (BTC_TRADE)."""
    return f"md.{asset}.trade"


def quote_topic(asset: str) -> str:
    """Binance best bid/ask of one asset: "eth" -> "md.eth.quote" (BTC_QUOTE for btc)."""
    return f"md.{asset}.quote"


def spot_topics(assets: Iterable[str]) -> tuple[str, ...]:
    """The trade topics a spot-price subscriber takes, one per asset, deduplicated, in order:
    ("btc", "eth", "btc") -> ("md.btc.trade", "md.eth.trade")."""
    return tuple(dict.fromkeys(trade_topic(a) for a in assets))


# What each service's runner takes in: SUB topic prefixes plus the PUSH/PULL stream it pulls (its
# topic frame). The runners subscribe with these and common/engine.py routes by them in-process,
# so a backtest wires the cores exactly as the running system does.
# Only what a core handles: a subscribed topic a core ignores still costs its decode (and
# strategy's commit) per message; Binance quotes (~60 % of market data) are read by nobody on the
# hot path (profiled at 5,000 msg/s: 45 % of signal's busy time was decoding them).
SUBSCRIPTIONS: dict[str, tuple[str, ...]] = {
    "signal": (BTC_TRADE, BOOK_PREFIX, PRICE_FEED_PREFIX, MARKET, RESOLVED, CLOCK, BASIS)
    + (PROBE_PREFIX + "ingest",),
    "strategy": (BTC_TRADE, BOOK_PREFIX, MARKET, RESOLVED, CLOCK, FEED_STATUS_PREFIX)
    + ("sig.", "exec.", PROBE_PREFIX + "signal", CONTROL_CMD)
    # a new execution process: its first heartbeat shows strategy is joined to it (on_heartbeat)
    + (HEARTBEAT_PREFIX + "execution",),
    "execution": (BOOK_PREFIX, MARKET, RESOLVED, CLOCK, ORDER_INTENT),
    # the windows where strategy (its risk state) or execution (its heartbeat's `unsettled`)
    # holds a position awaiting resolution (services/ingest/core.py `hold`)
    "ingest": (RISK_STATE, HEARTBEAT_PREFIX + "execution"),
}
