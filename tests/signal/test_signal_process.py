"""The signal process for real: market data in over the bus, scores out, the probe forwarded,
and a config-file edit reloaded without a restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common import topics
from common.bus import Publisher, Subscriber
from common.config import load_settings, load_strategy_config
from common.schema import BookSnapshot, BtcTrade, MarketInfo, Probe, SignalScore
from services.signal.model import blend_up
from tests.conftest import REPO, wait_for

NS = 1_000_000_000


def test_signal_process_scores_forwards_probe_and_reloads(
    iso_env: dict[str, str], tmp_path: Path
) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text((REPO / "config" / "config.json").read_text())
    env = {**os.environ, **iso_env, "POLYEDGE_CONFIG": str(cfg)}
    s = load_settings(environ=env, dotenv=None)
    md = Publisher(s.bus_endpoint("ingest"))
    sub = Subscriber(s.bus_endpoint("signal"), [topics.SIGNAL, topics.PROBE_PREFIX])
    proc = subprocess.Popen([sys.executable, "-m", "services.signal"], cwd=REPO, env=env)
    got: dict[str, object] = {}
    try:
        now = time.time_ns()
        mk = MarketInfo(
            slug="btc-updown-5m-s",
            condition_id="c",
            up_token_id="U",
            down_token_id="D",
            window_start_ns=now - 60 * NS,
            window_end_ns=now + 240 * NS,
            ts_recv_ns=now,
            fee_rate=0.07,
            twap_enabled=True,
            twap_lookback_s=60,
            price_to_beat=85_000.0,
        )

        def pump() -> bool:
            t = time.time_ns()
            md.send(topics.MARKET, mk)
            md.send(
                "md.book.U",
                BookSnapshot(
                    asset_id="U",
                    best_bid=0.5,
                    best_ask=0.52,
                    bids=[(0.5, 10.0)],
                    asks=[(0.52, 10.0)],
                    ts_exchange_ns=t,
                    ts_recv_ns=t,
                ),
            )
            md.send(
                topics.BTC_TRADE, BtcTrade(price=85_100, size=1, ts_exchange_ns=t, ts_recv_ns=t)
            )
            md.send(
                topics.PROBE_PREFIX + "ingest",
                Probe(probe_id=1, ts_origin_ns=t, hops=["ingest"], hop_ns=[t]),
            )
            for _topic, e in sub.drain():
                got[type(e.msg).__name__] = e.msg
            return "SignalScore" in got and "Probe" in got

        wait_for(pump, 15, what="a score and the forwarded probe")
        score = got["SignalScore"]
        assert isinstance(score, SignalScore) and score.inputs["p_model"] > 0.5
        # the published probability is the shipped config's market-aware blend of the two
        shipped = load_strategy_config(cfg)
        mid = (score.inputs["up_bid"] + score.inputs["up_ask"]) / 2
        assert score.p_up == pytest.approx(
            blend_up(
                score.inputs["p_model"],
                mid,
                shipped.blend_market_weight,
                shipped.blend_model_weight,
                shipped.blend_bias,
            )
        )
        assert score.inputs["up_ask"] == 0.52 and score.ts_signal_ns > 0
        probe = got["Probe"]
        assert isinstance(probe, Probe) and probe.hops == ["ingest", "signal"]

        doc = json.loads(cfg.read_text())
        doc["momentum_weight"] = 0.5
        cfg.write_text(json.dumps(doc))
        log = Path(iso_env["LOG_DIR"]) / "signal.jsonl"
        wait_for(lambda: '"config_reloaded"' in log.read_text(), 10, what="config reload")
        cfg.write_text('{"momentum_weight": "lots"}')
        wait_for(lambda: '"config_reload_rejected"' in log.read_text(), 10, what="bad reload")
        assert proc.poll() is None  # a bad file edit is refused, not fatal
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        md.close()
        sub.close()
