"""A config change made while the tree was down is named in the config history at the next start,
also when strategy starts before observe (the real processes over the real bus and SQLite)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

from tests.conftest import short_tmpdir, wait_for
from tests.observe.observe_harness import FakeHotPath, Observe, Proc, make_env, read_jsonl


def _versions(db: Path) -> list[int]:
    conn = sqlite3.connect(db)
    try:
        return [r[0] for r in conn.execute("SELECT version FROM config_snapshots ORDER BY id")]
    finally:
        conn.close()


def _history(obs: Observe) -> list[int]:
    return [h["version"] for h in obs.get("/api/config").json()["history"]]


def test_a_start_up_version_is_recorded_when_strategy_starts_first() -> None:
    root = short_tmpdir()
    env = make_env(root)
    db = root / "data" / "trader.db"
    hot = FakeHotPath(env).start()
    procs: list[Proc] = []
    try:
        # first run: both up, the start-up version recorded
        strategy, obs = Proc("strategy", env), Observe(env)
        procs += [strategy, obs]
        obs.wait_up()
        first = wait_for(
            lambda: (c := obs.get("/api/config").json())["history"] and c,
            20,
            what="first config version recorded",
        )
        v1 = first["version"]
        stake = first["config"]["stake_per_trade_usd"]
        obs.stop()
        strategy.stop()
        # edited while down (the data dir's overrides file, as an operator would)
        overrides = Path(env["POLYEDGE_DATA_DIR"]) / "config.json"
        overrides.write_text(json.dumps({"stake_per_trade_usd": stake - 0.25}))
        # strategy first, alone: its start-up snapshot goes out while nobody listens
        strategy = Proc("strategy", env)
        procs.append(strategy)

        def applied() -> dict | None:
            rows = [
                r
                for r in read_jsonl(root / "logs" / "risk.jsonl")
                if r.get("event") == "config_applied" and r.get("source") == "startup"
            ]
            return rows[-1] if rows else None

        line = wait_for(
            applied, 20, what="strategy's start-up config_applied (files changed while down)"
        )
        v2 = line["version"]
        assert v2 > v1 and "stake_per_trade_usd" in line["changed"], line
        obs = Observe(env)
        procs.append(obs)
        obs.wait_up()
        # observe hears strategy's risk state (which names v2) and its re-published snapshot:
        # the version is recorded once, with what it changed
        wait_for(lambda: v2 in _history(obs), 20, what=f"v{v2} in /api/config history")
        doc = obs.get("/api/config").json()
        assert doc["version"] == v2
        top = doc["history"][0]
        assert top["version"] == v2 and top["source"] == "startup", top
        assert top["changed"]["stake_per_trade_usd"] == [stake, stake - 0.25]
        wait_for(lambda: v2 in _versions(db), 10, what=f"v{v2} in config_snapshots")
        # strategy keeps re-publishing it: wait for two more risk states, still one row
        seen = obs.get("/api/status").json()["risk"].get("ts_ns") or 0
        wait_for(
            lambda: (obs.get("/api/status").json()["risk"].get("ts_ns") or 0) > seen,
            15,
            what="a later risk state",
        )
        assert _versions(db).count(v2) == 1 and _versions(db).count(v1) == 1, _versions(db)
    finally:
        for p in reversed(procs):
            p.stop()
        hot.close()
        shutil.rmtree(root, ignore_errors=True)
