"""The supervised tree (the README's first command, supervisord.conf) with the 8-market config
(config/markets-8.json: btc, eth, sol, xrp x 5m, 15m) on the simulated venue, offline: every
market gets its books from ingest and its signals from signal, and the operator's config file
can add a market without a restart."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from common.bus import Subscriber
from common.config import market_specs, read_config_file
from common.schema import BookSnapshot, MarketInfo, SignalScore
from services.commands.supervise import Supervised
from tests.conftest import REPO, wait_for

pytestmark = pytest.mark.whole_system  # starts a supervisord tree (pyproject markers)

CONFIG = REPO / "config" / "markets-8.json"
SERVICES = ("simvenue", "ingest", "signal", "strategy", "execution", "observe")


def test_eight_markets_get_books_and_signals(iso_env: dict[str, str]) -> None:
    keys = {m.key for m in market_specs(read_config_file(CONFIG))}
    assert len(keys) == 8
    extra = {
        "POLYEDGE_VENUE": "sim",
        "POLYEDGE_CONFIG": str(CONFIG),
        "SIM_WINDOW_SECONDS": "20",  # 5m windows last 20 s, 15m ones 60 s
        "SIM_SEED": "4",
    }
    run = Path(iso_env["POLYEDGE_DATA_DIR"]) / "run"
    sup = Supervised(iso_env, extra)
    sup.start()
    md = sig = None
    try:
        sup.wait_running(SERVICES, 60)
        md = Subscriber(f"ipc://{run.resolve()}/ingest.sock", ["md.market", "md.book."])
        sig = Subscriber(f"ipc://{run.resolve()}/signal.sock", ["sig."])
        markets: dict[str, MarketInfo] = {}
        books: set[str] = set()
        signals: dict[str, SignalScore] = {}

        def pump() -> None:
            for _t, env in md.drain(200_000):
                m = env.msg
                if isinstance(m, MarketInfo):
                    markets[m.slug] = m
                elif isinstance(m, BookSnapshot) and m.bids and m.asks:
                    books.add(m.asset_id)
            for _t, env in sig.drain(200_000):
                if isinstance(env.msg, SignalScore):
                    signals[env.msg.market] = env.msg

        def booked() -> set[str]:
            return {
                m.series
                for m in markets.values()
                if m.role == "current" and {m.up_token_id, m.down_token_id} <= books
            }

        wait_for(
            lambda: (pump() or True) and booked() >= keys,
            90,
            what=f"a current market with both books for each of {sorted(keys)}",
        )
        wait_for(
            lambda: (pump() or True) and set(signals) >= keys,
            90,
            what=f"signals for each of {sorted(keys)}",
        )
        for key in keys:  # each signal is about its own market's window
            s = signals[key]
            slugs = {m.slug for m in markets.values() if m.series == key}
            assert s.slug in slugs, (key, s.slug)
        # the operator adds a ninth market through the API (strategy applies it and writes the
        # data directory's config.json, which ingest and the venue follow): no restart
        pids = {n: sup.pid(n) for n in ("simvenue", "ingest", "signal")}
        doc = read_config_file(CONFIG)
        api = f"http://127.0.0.1:{iso_env['API_PORT']}"
        r = httpx.post(
            api + "/api/config",
            json={"markets": [*doc["markets"], {"asset": "btc", "window": "1h"}]},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        bad = httpx.post(
            api + "/api/config", json={"markets": [{"asset": "btc", "window": "2m"}]}, timeout=10
        )
        assert bad.status_code == 422 and "markets[0].window" in bad.text
        wait_for(
            lambda: (pump() or True) and "btc-1h" in booked(),
            90,
            what="btc-1h found on Gamma and booked after the config edit",
        )
        assert {n: sup.pid(n) for n in pids} == pids
        wait_for(  # strategy applied the same edit (observe shows its config in force)
            lambda: len(httpx.get(api + "/api/config", timeout=5).json()["config"]["markets"]) == 9,
            30,
            what="the nine markets in the config in force",
        )
    finally:
        for s in (md, sig):
            if s is not None:
                s.close()
        sup.stop()
