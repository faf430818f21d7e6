"""Issue 17's "done when", on the whole tree against the simulated venue: with the 8 markets of
`config/markets-8.json` (btc, eth, sol, xrp x 5m, 15m) the paper tree enters in every one of
them, each entry's fill recorded in execution's ledger under its own market, and strategy's risk
state lists every market."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx
import pytest

from common.config import series_of_slug
from tests.conftest import REPO, SEED_MODEL, Supervised, wait_for

pytestmark = pytest.mark.whole_system  # starts a supervisord tree (pyproject markers)

# trades often (the bench's settings), so every market enters within a few short windows
TRADE_HAPPY = {
    "min_signal_score": 0.0,
    "min_edge_pct": 0.0,
    "entry_window_min_sec": 0,
    "min_seconds_before_close": 2,
    "max_trades_per_day": 10000,
    "max_daily_loss_usd": 1e6,
    "max_capital_at_risk_usd": 1000.0,
    "max_consecutive_losses": 1000,
    "take_profit_pct": 0.01,
    "stop_loss_pct": 0.01,
    "refuse_entry_inside_stop_loss": False,  # churn on purpose (quick 1 % exits)
    "require_settlement_price_to_beat": False,
    **SEED_MODEL,
}


def test_all_eight_markets_trade_in_paper_mode(iso_env: dict[str, str]) -> None:
    markets = json.loads((REPO / "config" / "markets-8.json").read_text())["markets"]
    keys = {f"{m['asset']}-{m['window']}" for m in markets}
    assert len(keys) == 8
    doc = {**TRADE_HAPPY, "markets": markets}
    (Path(iso_env["POLYEDGE_DATA_DIR"]) / "config.json").write_text(json.dumps(doc))
    extra = {"POLYEDGE_VENUE": "sim", "SIM_WINDOW_SECONDS": "20", "SIM_SEED": "5"}
    db = Path(iso_env["DATABASE_URL"].removeprefix("sqlite:"))
    api = f"http://127.0.0.1:{iso_env['API_PORT']}"
    sup = Supervised(iso_env, extra)
    sup.start()
    try:
        sup.wait_running(("simvenue", "ingest", "signal", "strategy", "execution", "observe"), 60)

        def traded() -> set[str]:
            if not db.exists():
                return set()
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
            try:
                rows = conn.execute(
                    "SELECT DISTINCT slug FROM fills WHERE side='BUY' AND dry_run=1"
                ).fetchall()
            except sqlite3.OperationalError:  # execution has not made its tables yet
                return set()
            finally:
                conn.close()
            return {series_of_slug(r[0]) for r in rows}

        try:
            wait_for(lambda: traded() >= keys, 240, interval=2.0, what="an entry in all 8 markets")
        except AssertionError:
            raise AssertionError(
                f"markets with a filled entry: {sorted(traded())}\n"
                + sup.log_tail("strategy")
                + sup.log_tail("signal")
            ) from None
        risk = wait_for(
            lambda: (
                (r := httpx.get(api + "/api/status", timeout=5).json().get("risk") or {}).get(
                    "markets"
                )
                and r
            ),
            30,
            what="strategy's risk state with its markets in observe",
        )
        assert set(risk["markets"]) == keys
    finally:
        sup.stop()


def test_a_market_added_by_a_config_post_trades_without_a_restart(
    iso_env: dict[str, str],
) -> None:
    """POST /api/config with a new `markets` list: ingest, signal and strategy take the new
    market (and its asset's trades) without any restart, and it trades in paper mode."""
    doc = {**TRADE_HAPPY, "markets": [{"asset": "btc", "window": "5m"}]}
    (Path(iso_env["POLYEDGE_DATA_DIR"]) / "config.json").write_text(json.dumps(doc))
    extra = {"POLYEDGE_VENUE": "sim", "SIM_WINDOW_SECONDS": "20", "SIM_SEED": "6"}
    db = Path(iso_env["DATABASE_URL"].removeprefix("sqlite:"))
    api = f"http://127.0.0.1:{iso_env['API_PORT']}"
    sup = Supervised(iso_env, extra)
    sup.start()
    try:
        names = ("simvenue", "ingest", "signal", "strategy", "execution", "observe")
        sup.wait_running(names, 60)
        wait_for(
            lambda: httpx.get(api + "/api/config", timeout=5).json().get("hash"),
            30,
            what="strategy's config in observe",
        )
        pids = {n: sup.pid(n) for n in names}
        markets = [{"asset": "btc", "window": "5m"}, {"asset": "eth", "window": "5m"}]
        r = httpx.post(api + "/api/config", json={"markets": markets}, timeout=10)
        assert r.status_code == 200, r.text

        def traded() -> set[str]:
            if not db.exists():
                return set()
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
            try:
                rows = conn.execute("SELECT DISTINCT slug FROM fills WHERE side='BUY'").fetchall()
            except sqlite3.OperationalError:
                return set()
            finally:
                conn.close()
            return {series_of_slug(s) for (s,) in rows}

        try:
            wait_for(lambda: "eth-5m" in traded(), 180, interval=2.0, what="an ETH entry")
        except AssertionError:
            raise AssertionError(
                f"markets traded: {sorted(traded())}\n"
                + sup.log_tail("strategy")
                + sup.log_tail("signal")
                + sup.log_tail("ingest")
            ) from None
        assert {n: sup.pid(n) for n in names} == pids  # nothing restarted
        # signal and strategy took ETH's trades on the bus they were already subscribed to
        for service in ("signal", "strategy"):
            lines = (Path(iso_env["LOG_DIR"]) / f"{service}.jsonl").read_text().splitlines()
            events = [json.loads(x) for x in lines]
            subscribed = [e for e in events if e.get("event") == "subscribed"]
            assert any("md.eth.trade" in e.get("topics", []) for e in subscribed), service
    finally:
        sup.stop()
