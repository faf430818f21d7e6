"""Observe's Prometheus text exposition (version 0.0.4) of an `ObserveCore` state, served at
`/metrics`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.observe import views

if TYPE_CHECKING:
    from services.observe.state import ObserveCore


def metrics_text(core: ObserveCore, now_ns: int, extra: dict[str, float] | None = None) -> str:
    """Prometheus text exposition (version 0.0.4)."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float | None]]):
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            if value is None:
                continue
            lines.append(f"{name}{labels} {float(value):.6g}")

    health = views.health(core, now_ns)
    metric(
        "polyedge_health_ok",
        "gauge",
        "1 when /health is ok: every service alive, every needed feed up",
        [("", 1.0 if health["ok"] else 0.0)],
    )
    metric(
        "polyedge_trading_unmanaged",
        "gauge",
        "1 when a position is open and strategy or execution is not alive",
        [("", 1.0 if health["unmanaged"] else 0.0)],
    )
    metric(
        "polyedge_service_up",
        "gauge",
        "1 when supervisord runs the service and its heartbeat is fresh",
        [(f'{{service="{k}"}}', 1.0 if v["alive"] else 0.0) for k, v in health["services"].items()],
    )
    metric(
        "polyedge_heartbeat_age_seconds",
        "gauge",
        "Age of the last heartbeat",
        [
            (f'{{service="{k}"}}', v["age_ms"] / 1e3 if v["age_ms"] is not None else None)
            for k, v in health["services"].items()
        ],
    )
    metric(
        "polyedge_service_restarts_total",
        "counter",
        "Restarts of each service seen by this observe (a new pid in its heartbeat)",
        [(f'{{service="{k}"}}', float(n)) for k, n in sorted(core.restarts.items())],
    )
    metric("polyedge_probes_total", "counter", "End-to-end probes completed", [("", core.probes)])
    metric("polyedge_btc_price_usd", "gauge", "Last BTC trade price", [("", core.btc_price)])
    feeds = views.feeds_doc(core, now_ns)
    metric(
        "polyedge_feed_age_seconds",
        "gauge",
        "Age of the last message per feed",
        [
            (f'{{feed="{k}"}}', v["age_ms"] / 1e3 if v["age_ms"] is not None else None)
            for k, v in feeds.items()
        ],
    )
    metric(
        "polyedge_feed_stale",
        "gauge",
        "1 when a feed is stale or disconnected",
        [(f'{{feed="{k}"}}', 1.0 if v["stale"] else 0.0) for k, v in feeds.items()],
    )
    lat = core.latency.summary()
    qs: list[tuple[str, float | None]] = []
    for stage, v in lat.items():
        for q, key in (("0.5", "p50"), ("0.9", "p90"), ("0.99", "p99"), ("1", "max")):
            qs.append((f'{{stage="{stage}",quantile="{q}"}}', v[key]))
    metric("polyedge_latency_ms", "summary", "Latency per stage over the recent window", qs)
    metric(
        "polyedge_latency_samples_total",
        "counter",
        "Latency samples per stage",
        [(f'{{stage="{k}"}}', v["count"]) for k, v in lat.items()],
    )
    metric(
        "polyedge_latency_breaches_total",
        "counter",
        "Samples above 200 (warning), 500 (critical), 1000 ms (stale)",
        [
            (f'{{stage="{k}",severity="{s}"}}', n)
            for k, v in lat.items()
            for s, n in v["breaches"].items()
        ],
    )
    risk = views.risk_doc(core)
    metric(
        "polyedge_risk_halted",
        "gauge",
        "1 when strategy is halted",
        [("", None if risk["halted"] is None else float(bool(risk["halted"])))],
    )
    metric(
        "polyedge_emergency_stop",
        "gauge",
        "1 when the emergency stop is set",
        [("", None if risk["emergency_stop"] is None else float(bool(risk["emergency_stop"])))],
    )
    m = views.metrics_doc(core, now_ns)
    metric("polyedge_daily_pnl_usd", "gauge", "Today's realised P&L", [("", m["daily_pnl"])])
    metric("polyedge_trades_today", "gauge", "Entries today", [("", m["trades_today"])])
    # per market series, labelled `market` (series key "eth-15m"); the unlabelled figures
    # are the whole book's
    rows = views.markets_doc(core, now_ns)["markets"]
    any_open = bool(core.position and core.position.open) or any(
        r["position"].get("open") for r in rows
    )
    metric(
        "polyedge_position_open",
        "gauge",
        "1 when any market holds an open position (per market: polyedge_market_position_open)",
        [("", 1.0 if any_open else 0.0)],
    )

    def per_market(name: str, help_: str, value: Any) -> None:
        metric(name, "gauge", help_, [(f'{{market="{r["market"]}"}}', value(r)) for r in rows])

    per_market(
        "polyedge_market_configured",
        "1 when the config in force names the market (0: heard on the bus only)",
        lambda r: 1.0 if r["configured"] else 0.0,
    )
    per_market(
        "polyedge_market_seconds_left",
        "Seconds left in the market's current window",
        lambda r: r["seconds_left"],
    )
    per_market(
        "polyedge_market_p_up",
        "The published (blended) P(Up) of the market's current window",
        lambda r: r["p_up"],
    )
    per_market(
        "polyedge_market_p_model",
        "The model's own P(Up) of the market's current window",
        lambda r: r["p_model"],
    )
    per_market(
        "polyedge_market_up_mid",
        "The market's Up book mid (the market's own probability of Up)",
        lambda r: r["p_market"],
    )
    per_market(
        "polyedge_market_position_open",
        "1 when the market has an open position",
        lambda r: 1.0 if r["position"].get("open") else 0.0,
    )
    per_market(
        "polyedge_market_unrealized_pnl_usd",
        "Live P&L of the market's open position, marked at the bid",
        lambda r: r["position"].get("unrealized_pnl"),
    )
    per_market(
        "polyedge_market_daily_pnl_usd",
        "The market's realised P&L today (UTC)",
        lambda r: r["risk"]["daily_pnl"],
    )
    per_market(
        "polyedge_market_trades_today",
        "The market's entries today (UTC)",
        lambda r: r["risk"]["trades_today"],
    )
    per_market(
        "polyedge_market_halted",
        "1 when the market is halted (its own halt or a global one)",
        lambda r: None if r["risk"]["halted"] is None else float(r["risk"]["halted"]),
    )
    metric(
        "polyedge_spot_price_usd",
        "gauge",
        "Last Binance trade price per asset",
        [(f'{{asset="{a}"}}', p) for a, (p, _) in sorted(core.spot.items())],
    )
    metric(
        "polyedge_config_version",
        "gauge",
        "Strategy config version",
        [("", core.config_version)],
    )
    metric(
        "polyedge_observe_messages_total",
        "counter",
        "Bus messages handled by observe",
        [("", core.messages)],
    )
    for name, value in (extra or {}).items():
        metric(
            f"polyedge_observe_{name}",
            "gauge",
            f"observe {name.replace('_', ' ')}",
            [("", value)],
        )
    return "\n".join(lines) + "\n"
