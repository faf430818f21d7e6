"""The shipped Prometheus rules (config/prometheus/) and Grafana dashboard (config/grafana/) chart
and alert on metrics that exist: every `polyedge_*` name they use is in the /metrics output of a
real observe process (with strategy and a stand-in hot path on the bus), and every `stage` label
they select is a stage observe measures."""

from __future__ import annotations

import json
import re

import yaml

from services.observe.latency import CORE_STAGES
from tests.conftest import REPO, wait_for
from tests.observe.observe_harness import start_stack

RULES = REPO / "config" / "prometheus" / "polyedge-rules.yml"
SCRAPE = REPO / "config" / "prometheus" / "prometheus.yml"
DASHBOARD = REPO / "config" / "grafana" / "polyedge-dashboard.json"
NAME = re.compile(r"\bpolyedge_[a-z0-9_]+")
STAGE = re.compile(r'stage="([^"]+)"')


def rule_exprs() -> list[str]:
    doc = yaml.safe_load(RULES.read_text())
    rules = [r for g in doc["groups"] for r in g["rules"]]
    assert rules and all(r["alert"] and r["expr"] and r["labels"]["severity"] for r in rules)
    return [str(r["expr"]) for r in rules]


def dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p["targets"]]
    assert doc["uid"] and len(doc["panels"]) >= 10 and all(exprs)
    return exprs


def test_the_files_are_what_prometheus_and_grafana_load() -> None:
    scrape = yaml.safe_load(SCRAPE.read_text())
    assert scrape["rule_files"] == [RULES.name]
    assert scrape["scrape_configs"][0]["metrics_path"] == "/metrics"
    exprs = rule_exprs() + dashboard_exprs()
    used = {n for e in exprs for n in NAME.findall(e)}
    # what the issue asks to chart: latency by stage, feed ages, P&L, halts, restarts
    for needed in (
        "polyedge_latency_ms",
        "polyedge_feed_age_seconds",
        "polyedge_daily_pnl_usd",
        "polyedge_risk_halted",
        "polyedge_service_restarts_total",
        # per market (issue 17), labelled `market`
        "polyedge_market_daily_pnl_usd",
        "polyedge_market_halted",
        "polyedge_market_p_model",
    ):
        assert needed in used, needed


def test_every_metric_they_use_is_in_observes_metrics_output() -> None:
    env, obs, strategy, hot = start_stack()
    try:

        def scraped() -> str | None:
            text = obs.get("/metrics").text
            # risk state (strategy) and a hot-path latency (the stand-in's signals) have arrived
            ready = "polyedge_risk_halted " in text and 'stage="market_to_signal_ms"' in text
            return text if ready else None

        text = wait_for(scraped, 30, interval=0.2, what="observe's /metrics with risk and latency")
    finally:
        hot.close()
        if strategy is not None:
            strategy.stop()
        obs.stop()
    exposed = {ln.split()[2] for ln in text.splitlines() if ln.startswith("# TYPE ")}
    missing: dict[str, list[str]] = {}
    for source, exprs in (("rules", rule_exprs()), ("dashboard", dashboard_exprs())):
        for e in exprs:
            for name in NAME.findall(e):
                if name not in exposed:
                    missing.setdefault(name, []).append(f"{source}: {e}")
    assert not missing, f"not in /metrics: {missing}"
    measured = set(CORE_STAGES) | set(STAGE.findall(text)) | {"probe_end_to_end_ms"}
    state_src = (REPO / "services" / "observe" / "state.py").read_text()
    assert '"probe_end_to_end_ms"' in state_src  # the stage name observe records probes under
    for e in rule_exprs() + dashboard_exprs():
        for stage in STAGE.findall(e):
            assert stage in measured, f"{stage} is not a stage observe measures ({e})"
