"""The whole process tree on the simulated venue: signal publishes scores with their inputs and
strategy publishes reasoned decisions and risk state (what `polyedge tap --topic sig.` and
`--topic strat.` show)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common import topics
from common.bus import Subscriber
from common.config import load_settings
from common.schema import Decision, RiskState, SignalScore
from tests.conftest import REPO, Supervised, wait_for

pytestmark = pytest.mark.whole_system  # starts a supervisord tree (pyproject markers)


def test_scores_and_decisions_on_the_sim_venue(iso_env: dict[str, str]) -> None:
    root = Path(iso_env["POLYEDGE_ROOT"])
    cfg = json.loads((REPO / "config" / "config.json").read_text())
    cfg.update(entry_window_min_sec=3, min_seconds_before_close=3)
    (root / "config.json").write_text(json.dumps(cfg))
    extra = {
        "POLYEDGE_VENUE": "sim",
        "SIM_WINDOW_SECONDS": "20",
        "SIM_SEED": "7",
        "POLYEDGE_CONFIG": str(root / "config.json"),
    }
    sup = Supervised(iso_env, extra)
    settings = load_settings(environ={**iso_env, **extra}, dotenv=None)
    sub = Subscriber(
        [settings.bus_endpoint("signal"), settings.bus_endpoint("strategy")],
        [topics.SIGNAL, topics.DECISION, topics.RISK_STATE],
    )
    seen: dict[type, list] = {SignalScore: [], Decision: [], RiskState: []}

    def got_all() -> bool:
        for _, env in sub.drain():
            if type(env.msg) in seen:
                seen[type(env.msg)].append(env.msg)
        return all(seen.values())

    sup.start()
    try:
        sup.wait_running(("signal", "strategy", "ingest"), 40)
        try:
            wait_for(got_all, 60, interval=0.2, what="scores, decisions and risk state")
        except AssertionError:
            raise AssertionError(
                f"seen {[(k.__name__, len(v)) for k, v in seen.items()]}\n"
                + sup.log_tail("ingest")
                + sup.log_tail("signal")
                + sup.log_tail("strategy")
            ) from None
        s = seen[SignalScore][-1]
        assert 0.0 <= s.p_up <= 1.0 and s.slug.startswith("btc-updown-5m-")
        assert {"price", "price_to_beat", "sigma", "tau_s"} <= set(s.inputs)
        d = seen[Decision][-1]
        assert d.action in ("enter", "skip", "exit", "hold", "settle") and d.reason
        sig_log = root / "logs" / "signal.jsonl"
        assert wait_for(
            lambda: sig_log.exists() and '"event":"signal"' in sig_log.read_text(),
            10,
            what="signal.jsonl",
        )
    finally:
        sub.close()
        sup.stop()
