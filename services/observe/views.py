"""Observe's view documents: the JSON the API and `/ws/live` serve (`health`, `status`, `live`,
`history` and their parts), read from an `ObserveCore` state (state.py) at wall time `now_ns`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from common.schema import to_dict
from services.observe.health import data_flow, feeds_doc, health

if TYPE_CHECKING:
    from common.book import Book
    from services.observe.state import ObserveCore

NS = 1_000_000_000
BOOK_DEPTH = 5
LIVE_LATENCY_CACHE_NS = 500_000_000


def book_doc(book: Book, now_ns: int) -> dict[str, Any]:
    """One token's book for the API: best prices, mid, spread, the top BOOK_DEPTH levels,
    whether ingest holds it in sync."""
    mid, spread = book.mid, book.spread
    return {
        "asset_id": book.asset_id,
        "best_bid": book.best_bid,
        "best_ask": book.best_ask,
        "mid": round(mid, 4) if mid is not None else None,
        "spread": round(spread, 4) if spread is not None else None,
        "bids": [[p, s] for p, s in book.bids[:BOOK_DEPTH]],
        "asks": [[p, s] for p, s in book.asks[:BOOK_DEPTH]],
        "bid_depth": round(book.total("BUY"), 2),
        "ask_depth": round(book.total("SELL"), 2),
        "age_ms": _age_ms(now_ns, book.ts_recv_ns),
        "in_sync": book.in_sync,
    }


def _age_ms(now_ns: int, ts_ns: int) -> float | None:
    return round((now_ns - ts_ns) / 1e6, 1) if ts_ns else None


def market_doc(core: ObserveCore, now_ns: int, key: str | None = None) -> dict[str, Any] | None:
    """Market series `key`'s (default: the default market's) current window (slug, series,
    window, seconds left, price to beat, tokens), None before one."""
    key = key or core.default_key()
    m = core.current_market(now_ns, key)
    if m is None:
        return None
    ser = core.series[key]
    nxt = ser.markets.get(ser.next_slug)
    return {
        "slug": m.slug,
        "market": key,
        "asset": m.asset,
        "window": m.window,
        "question": m.question,
        "condition_id": m.condition_id,
        "window_start_ns": m.window_start_ns,
        "window_end_ns": m.window_end_ns,
        "window_seconds": round((m.window_end_ns - m.window_start_ns) / NS, 3),
        "seconds_left": round(max(0.0, (m.window_end_ns - now_ns) / NS), 1),
        "price_to_beat": m.price_to_beat,
        "price_to_beat_source": m.price_to_beat_source,
        "up_token_id": m.up_token_id,
        "down_token_id": m.down_token_id,
        "tick_size": m.tick_size,
        "twap_enabled": m.twap_enabled,
        "resolution_source": m.resolution_source,
        "accepting_orders": m.accepting_orders,
        "next_slug": nxt.slug if nxt and nxt.slug != m.slug else None,
    }


def books_doc(core: ObserveCore, now_ns: int, key: str | None = None) -> dict[str, Any]:
    """`{"up", "down"}`: market series `key`'s (default: the default market's) current window's
    two books (`book_doc`), None when not heard."""
    m = core.current_market(now_ns, key)
    out: dict[str, Any] = {"up": None, "down": None}
    if m is not None:
        for name, token in (("up", m.up_token_id), ("down", m.down_token_id)):
            book = core.books.get(token)
            out[name] = book_doc(book, now_ns) if book else None
    return out


def signal_doc(core: ObserveCore, key: str | None = None) -> dict[str, Any] | None:
    """Market series `key`'s (default: the default market's) last signal: side, score, P(Up)
    (the published blend), the model's own P(Up) and the edges (fractions), None before one."""
    ser = core.series.get(key or core.default_key())
    s = ser.signal if ser is not None else None
    if s is None:
        return None
    edge = s.edge_up if s.side == "Up" else s.edge_down
    p_model = s.inputs.get("p_model")
    return {
        "slug": s.slug,
        "market": ser.key,
        "p_model": round(p_model, 4) if p_model is not None else None,
        "side": s.side,
        "score": round(s.score, 4),
        "p_up": round(s.p_up, 4),
        "edge_up": round(s.edge_up, 4),
        "edge_down": round(s.edge_down, 4),
        "edge_pct": round(edge, 4),  # a fraction, in the units of config's min_edge_pct
        "ts_ns": s.ts_ns,
    }


def position_doc(core: ObserveCore, now_ns: int, key: str | None = None) -> dict[str, Any]:
    """Market series `key`'s (default: the default market's) open position with live P&L
    marked at the bid (USD), or `{"open": False}`."""
    ser = core.series.get(key or core.default_key())
    p = ser.position if ser is not None else None
    if p is None or not p.open:
        return {"open": False}
    doc = to_dict(p)
    doc.pop("kind", None)
    book = core.books.get(p.asset_id)
    # live P&L marks at the bid: what the position would fetch if sold now (cost includes the
    # entry fees already)
    if book is not None and book.best_bid is not None:
        doc["mark_price"] = book.best_bid
        doc["unrealized_pnl"] = round(p.size * book.best_bid - p.cost, 4)
        doc["mark_source"] = "book_bid"
    else:
        doc["mark_source"] = "strategy"
    return money(doc, "size", "avg_price", "cost", "fees", "mark_price", "unrealized_pnl")


def money(doc: dict[str, Any], *keys: str, decimals: int = 6) -> dict[str, Any]:
    """Round the money fields of an API document (prices, sizes, USD) so float noise such as
    0.48000000000000004 never reaches a client."""
    for k in keys:
        v = doc.get(k)
        if isinstance(v, float):
            doc[k] = round(v, decimals)
    return doc


def metrics_doc(core: ObserveCore, now_ns: int) -> dict[str, Any]:
    """Today's (UTC) P&L (USD), trades, wins, win rate and fees; strategy's figures when it
    reported today, else observe's own count."""
    core.roll_day(now_ns)
    r = core.risk
    if r is not None and r.day == core.day:
        trades, wins, pnl = r.trades_today, r.wins_today, r.daily_pnl
        source = "strategy"
    else:
        trades, wins, pnl = core.entries_today, core.wins_today, core.pnl_today
        source = "observe"
    settled = core.settled_today
    # wins over the trades closed today (an exit or a settlement), never over the entries: an
    # open position or an entry that got no fill is not yet a win nor a loss
    decided = max(core.closed_today, wins)
    return {
        "day": core.day,
        "daily_pnl": round(pnl, 4),
        "trades_today": trades,
        "wins_today": wins,
        "settled_today": settled,
        "closed_today": core.closed_today,
        "win_rate": round(wins / decided, 4) if decided else None,
        "fees_today": round(core.fees_today, 4),
        # maker rebates earned today (USD, issue 18; in the P&L), per fill in the trades rows
        "rebates_today": round(core.rebates_today, 4),
        "source": source,
        "venue": core.book()[0],  # the book these figures belong to
        "mode": core.book()[1],
    }


def redemptions_doc(core: ObserveCore) -> dict[str, Any]:
    """Settled wins "redeemed" vs "awaiting redemption" (USD; winning tokens pay nothing until
    redeemed, PROTOCOLS.md section 7): totals from strategy's risk state, else execution's
    heartbeat, else what observe saw; `recent` the latest redemptions execution published
    (`state` requested | sent | awaiting | confirmed | failed)."""
    r = core.risk
    hb = core.heartbeats.get("execution")
    seen = list(core.redemptions.values())
    if r is not None:
        awaiting, n_open, redeemed = r.awaiting_redemption_usd, r.redemptions_open, r.redeemed_usd
        source = "strategy"
    elif hb is not None and "redeemed_usd" in hb.detail:
        d = hb.detail
        awaiting = float(d.get("awaiting_redemption_usd") or 0.0)
        n_open = int(d.get("redemptions_open") or 0)
        redeemed = float(d.get("redeemed_usd") or 0.0)
        source = "execution"
    else:
        waiting = [m for m in seen if m.state not in ("confirmed", "failed")]
        awaiting = sum(m.cash_expected for m in waiting)
        n_open = len(waiting)
        redeemed = sum(m.cash_returned for m in seen if m.state == "confirmed")
        source = "observe"
    return {
        "redeemed_usd": round(redeemed, 6),
        "awaiting_redemption_usd": round(awaiting, 6),
        "open": n_open,
        "source": source,
        "recent": [
            money(
                {
                    "slug": m.slug,
                    "condition_id": m.condition_id,
                    "state": m.state,
                    "shares": m.shares,
                    "cash_expected": m.cash_expected,
                    "cash_returned": m.cash_returned,
                    "tx_hash": m.tx_hash,
                    "detail": m.detail,
                    "ts_ns": m.ts_ns,
                },
                "shares",
                "cash_expected",
                "cash_returned",
            )
            for m in seen[-10:]
        ],
    }


def risk_doc(core: ObserveCore) -> dict[str, Any]:
    """Halted / emergency stop and why: from risk.state, else strategy's heartbeat, else unknown."""
    r = core.risk
    if r is not None:
        doc = to_dict(r)
        doc.pop("kind", None)
        doc["source"] = "risk.state"
        return doc
    hb = core.heartbeats.get("strategy")
    if hb is not None and "emergency_stop" in hb.detail:
        # strategy only publishes risk.state on change; its heartbeat tells a late joiner
        es = bool(hb.detail.get("emergency_stop"))
        listed = hb.detail.get("halted")
        reasons = [str(r) for r in listed] if isinstance(listed, list) else []
        if es and "emergency_stop" not in reasons:
            reasons.append("emergency_stop")
        return {
            "halted": hb.state == "halted" or es or bool(reasons),
            "emergency_stop": es,
            "reasons": reasons,
            "source": "heartbeat",
            "config_version": hb.detail.get("config_version", 0),
        }
    return {"halted": None, "emergency_stop": None, "reasons": [], "source": "unknown"}


def basis_doc(core: ObserveCore, now_ns: int) -> dict[str, Any] | None:
    """Binance - Chainlink basis and Chainlink lag as ingest measures them (USD, ms)."""
    b = core.basis
    if b is None:
        return None
    return {
        "basis_usd": b.basis_usd,
        "basis_mean_usd": b.basis_mean_usd,
        "basis_sd_usd": b.basis_sd_usd,
        "lag_ms": b.lag_ms,
        "lag_mean_ms": b.lag_mean_ms,
        "samples": b.samples,
        "bound_usd": b.bound_usd,
        "warn": b.warn,
        "age_ms": _age_ms(now_ns, b.ts_ns),
    }


def mode_doc(core: ObserveCore) -> dict[str, Any]:
    """What execution really does with orders. Its heartbeat is the truth (it alone checks
    all three switches, key included); until it is heard, observe's own settings decide, and
    they err towards showing LIVE."""
    hb = core.heartbeats.get("execution")
    exec_mode = hb.detail.get("mode") if hb is not None else None
    if exec_mode in ("live", "dry_run", "blocked"):
        label = {"live": "LIVE", "dry_run": "DRY RUN", "blocked": "BLOCKED"}[exec_mode]
        source = "execution"
    else:
        label = "LIVE" if not core.dry_run and core.real_trading else "DRY RUN"
        source = "settings"
    return {
        "dry_run": label != "LIVE",
        "label": label,
        "source": source,
        "venue": core.venue,
        "settings_dry_run": core.dry_run,
        "real_trading_enabled": core.real_trading,
    }


def market_risk_doc(core: ObserveCore, key: str) -> dict[str, Any]:
    """Market series `key`'s halt and today's figures: strategy's per-market risk state
    (`RiskState.markets[key]`) when it has one, else observe's own count; a global halt (the
    emergency stop, a global limit) halts every market. `{"halted": bool | None, "reasons",
    "daily_pnl" (USD), "trades_today", "wins_today", "capital_at_risk" (USD or None), "source"}`."""
    ser = core.series.get(key)
    r = core.risk
    own: dict[str, Any] = (r.markets.get(key) or {}) if r is not None else {}
    reasons: list[str] = []
    if r is not None and r.halted:
        reasons += [f"global: {x}" for x in r.reasons] or ["global halt"]
    if own.get("halted"):
        # strategy names the market's own halt reasons (`reasons`), the operator's in `reason`
        listed = own.get("reasons")
        if isinstance(listed, list) and listed:
            reasons += [str(x) for x in listed]
        else:
            reasons.append(str(own.get("reason") or "halted"))
    today = r is not None and r.day == core.day
    if own and today and "daily_pnl" in own:
        pnl, trades, source = own.get("daily_pnl"), own.get("trades_today"), "strategy"
        wins = own.get("wins_today", ser.wins_today if ser else 0)
    else:
        pnl = ser.pnl_today if ser else 0.0
        trades = ser.entries_today if ser else 0
        wins = ser.wins_today if ser else 0
        source = "observe"
    return {
        "halted": None if r is None else bool(r.halted or own.get("halted")),
        "reasons": reasons,
        "daily_pnl": round(float(pnl or 0.0), 4),
        "trades_today": int(trades or 0),
        "wins_today": int(wins or 0),
        "open_positions": own.get("open_positions"),
        "capital_at_risk": own.get("capital_at_risk"),
        "source": source,
    }


def market_summary(core: ObserveCore, now_ns: int, key: str) -> dict[str, Any]:
    """One market's row of the overview: its window and countdown, spot vs price to beat, the
    model's and the published P(Up) against the market's Up mid, the position with live P&L,
    today's P&L and trades, the halt and the last decision."""
    asset, _, window = key.partition("-")
    m = market_doc(core, now_ns, key) if key in core.series else None
    s = signal_doc(core, key) if key in core.series else None
    pos = position_doc(core, now_ns, key)
    up = core.up_book(key, now_ns) if key in core.series else None
    mid = up.mid if up is not None else None
    spot = core.spot.get(asset)
    ser = core.series.get(key)
    dec = ser.decision if ser is not None else None
    return {
        "market": key,
        "asset": asset,
        "window": window,
        "configured": key in core.configured(),
        "slug": m["slug"] if m else None,
        "window_start_ns": m["window_start_ns"] if m else None,
        "window_end_ns": m["window_end_ns"] if m else None,
        "window_seconds": m["window_seconds"] if m else None,
        "seconds_left": m["seconds_left"] if m else None,
        "price_to_beat": m["price_to_beat"] if m else None,
        "spot": spot[0] if spot else None,
        "spot_age_ms": _age_ms(now_ns, spot[1]) if spot else None,
        "side": s["side"] if s else None,
        "p_up": s["p_up"] if s else None,
        "p_model": (s["p_model"] if s["p_model"] is not None else s["p_up"]) if s else None,
        "p_market": round(mid, 4) if mid is not None else None,
        "edge_pct": s["edge_pct"] if s else None,
        "signal_age_ms": _age_ms(now_ns, s["ts_ns"]) if s else None,
        "position": pos,
        "risk": market_risk_doc(core, key),
        "decision": (
            {"action": dec.get("action"), "reason": dec.get("reason"), "ts_ns": dec.get("ts_ns")}
            if dec
            else None
        ),
    }


def markets_doc(core: ObserveCore, now_ns: int) -> dict[str, Any]:
    """GET /api/markets: `{"default": series key, "markets": [market_summary, ...]}`, the
    configured markets in config order, then any other heard on the bus."""
    return {
        "default": core.default_key(),
        "markets": [market_summary(core, now_ns, k) for k in core.market_keys()],
    }


def detail_doc(core: ObserveCore, now_ns: int, key: str) -> dict[str, Any]:
    """The detail view of one market: its window, books, signal, position and the Brier
    scores of its resolved windows (RunningScores.doc)."""
    ser = core.series.get(key)
    return {
        "market": market_doc(core, now_ns, key),
        "books": books_doc(core, now_ns, key),
        "signal": signal_doc(core, key),
        "position": position_doc(core, now_ns, key),
        "scores": ser.scores.doc() if ser is not None else None,
    }


def status(core: ObserveCore, now_ns: int, key: str | None = None) -> dict[str, Any]:
    """The full snapshot behind GET /api/status: `market`, `books`, `signal` and `position` of
    market series `key` (default: the default market), `markets` the overview of all."""
    key = key or core.default_key()
    market = market_doc(core, now_ns, key)
    return {
        "ts_ns": now_ns,
        "selected": key,
        "markets": [market_summary(core, now_ns, k) for k in core.market_keys()],
        "mode": mode_doc(core),
        "health": health(core, now_ns),
        "feeds": feeds_doc(core, now_ns),
        "basis": basis_doc(core, now_ns),
        "scores": core.scores.doc(),
        "btc": {
            "price": core.btc_price,
            "age_ms": _age_ms(now_ns, core.btc_ts_ns),
            "bid": core.btc_quote.bid if core.btc_quote else None,
            "ask": core.btc_quote.ask if core.btc_quote else None,
            "price_feeds": {
                k: {"value": v.value, "age_ms": _age_ms(now_ns, v.ts_recv_ns)}
                for k, v in core.price_feeds.items()
            },
        },
        "spot": {
            a: {"price": p, "age_ms": _age_ms(now_ns, ts)} for a, (p, ts) in core.spot.items()
        },
        "market": market,
        "price_to_beat": market["price_to_beat"] if market else None,
        "books": books_doc(core, now_ns, key),
        "signal": signal_doc(core, key),
        "position": position_doc(core, now_ns, key),
        "market_risk": market_risk_doc(core, key),
        "market_scores": core.series[key].scores.doc() if key in core.series else None,
        "metrics": metrics_doc(core, now_ns),
        "redemptions": redemptions_doc(core),
        "risk": risk_doc(core),
        "config_version": core.config_version,
        "latency": core.latency.summary(),
        "recent": {
            "decisions": list(core.decisions)[-10:],
            "fills": list(core.recent_fills)[-10:],
            "orders": list(core.orders)[-10:],
            "resolved": [to_dict(r) for r in list(core.resolved)[-5:]],
        },
    }


def live(core: ObserveCore, now_ns: int) -> dict[str, Any]:
    """The /ws/live state document: the README's shape (its `market`, `books`, `signal` and
    `position` are the default market's) plus what the dashboard draws: `markets` the overview
    of every market, `details` each market's detail view (detail_doc) by series key."""
    market = market_doc(core, now_ns)
    keys = core.market_keys()
    mode = mode_doc(core)
    latency = _live_latency(core, now_ns)
    feeds = feeds_doc(core, now_ns, latency)
    h = health(core, now_ns, feeds)
    return {
        "type": "state",
        "data": {
            "ts_ns": now_ns,
            "dry_run": mode["dry_run"],
            "mode": mode,
            "btc_price": core.btc_price,
            "btc_age_ms": _age_ms(now_ns, core.btc_ts_ns),
            "default_market": core.default_key(),
            "markets": [market_summary(core, now_ns, k) for k in keys],
            "details": {k: detail_doc(core, now_ns, k) for k in keys},
            "market": market,
            "books": books_doc(core, now_ns),
            "signal": signal_doc(core),
            "position": position_doc(core, now_ns),
            "metrics": metrics_doc(core, now_ns),
            "redemptions": redemptions_doc(core),
            "risk": risk_doc(core),
            "config_version": core.config_version,
            "config_source": core.config_source,
            "feeds": feeds,
            "basis": basis_doc(core, now_ns),
            "scores": core.scores.doc(),
            "data_flow": data_flow(feeds),
            "health": {k: h[k] for k in ("ok", "problems", "warnings", "unmanaged")},
            "config_errors": h["config_errors"],
            "services": {
                k: {
                    "state": v["state"],
                    "supervisor_state": v["supervisor_state"],
                    "alive": v["alive"],
                    "reason": v["reason"],
                    "age_ms": v["age_ms"],
                }
                for k, v in h["services"].items()
            },
            "latency": {
                k: {
                    "p50": v["p50"],
                    "p99": v["p99"],
                    "count": v["count"],
                    "severity": v["severity"],
                    "thresholds": v["thresholds"],
                }
                for k, v in latency.items()
            },
            "fills": list(core.recent_fills)[-8:],
            "decisions": list(core.decisions)[-8:],
        },
    }


def _live_latency(core: ObserveCore, now_ns: int) -> dict[str, dict[str, Any]]:
    # sorting every stage's window 5x a second costs more than the rest of the document;
    # percentiles that are half a second old are fine to watch
    if now_ns - core.lat_cache_ns >= LIVE_LATENCY_CACHE_NS or not core.lat_cache:
        core.lat_cache = core.latency.summary()
        core.lat_cache_ns = now_ns
    return core.lat_cache


def history(core: ObserveCore, key: str | None = None) -> dict[str, Any]:
    """GET /api/history: the chart series of market series `key` (default: the default market):
    `spot` its asset's price (unix s, USD), `prob` (unix s, P(Up), Up mid); `btc` BTC's price
    whatever the market (the single-market API's series)."""
    key = key or core.default_key()
    asset = key.partition("-")[0]
    ser = core.series.get(key)
    return {
        "market": key,
        "asset": asset,
        "btc": list(core.btc_history),
        "spot": list(core.spot_history.get(asset, ())),
        "prob": list(ser.prob_history) if ser is not None else [],
    }
