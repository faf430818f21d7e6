"""Strategy's durable state in SQLite: the `strategy_state` table (strategy is its only writer).

One row per key, the value a JSON document. The core's `persistent()` document is saved whenever
it changes and handed back to the core on start, so a restart keeps an emergency stop, the day's
P&L and loss streak, and an open position.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from common.db import connect, migrate
from common.schema import Fill, Settlement, to_json

MIGRATIONS = [
    """CREATE TABLE IF NOT EXISTS strategy_state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        ts_ns INTEGER NOT NULL
    )""",
]
CORE_KEY = "core"


class StateStore:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.conn: sqlite3.Connection = connect(path)
        migrate(self.conn, "strategy", MIGRATIONS)
        self._last: dict[str, bytes] = {}

    def load(self, key: str = CORE_KEY) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT value FROM strategy_state WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def save(self, doc: dict[str, Any], ts_ns: int, key: str = CORE_KEY) -> bool:
        """Write `doc` if it differs from what was last written; True if it wrote."""
        raw = to_json(doc)
        if self._last.get(key) == raw:
            return False
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.execute(
                "INSERT INTO strategy_state(key, value, ts_ns) VALUES(?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value, ts_ns=excluded.ts_ns",
                (key, raw.decode(), ts_ns),
            )
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self._last[key] = raw
        return True

    def close(self) -> None:
        self.conn.close()


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def ledger_fills(conn: sqlite3.Connection, prefix: str, since_ns: int) -> list[Fill]:
    """Our fills since `since_ns` from execution's ledger (read only; execution owns it),
    replayed into the core on start so a fill published while strategy was down is not lost
    (the core ignores duplicates)."""
    out: list[Fill] = []
    if "fills" in _tables(conn):
        rows = conn.execute(
            "SELECT * FROM fills WHERE client_order_id LIKE ? AND ts_fill_ns >= ? "
            "ORDER BY ts_fill_ns, id",
            (prefix + "-%", since_ns),
        ).fetchall()
        for r in rows:
            out.append(
                Fill(
                    client_order_id=r["client_order_id"],
                    asset_id=r["asset_id"],
                    side=r["side"],
                    price=r["price"],
                    size=r["size"],
                    fee=r["fee"],
                    ts_fill_ns=r["ts_fill_ns"],
                    slug=r["slug"],
                    outcome=r["outcome"],
                    venue_order_id=r["venue_order_id"] or "",
                    trade_id=r["trade_id"],
                    dry_run=bool(r["dry_run"]),
                    reverses_trade_id=(
                        r["reverses_trade_id"] if "reverses_trade_id" in r.keys() else ""
                    ),
                )
            )
    return out


def ledger_order_terms(conn: sqlite3.Connection, client_order_id: str) -> dict[str, Any] | None:
    """The market terms (fee_rate, fee_exponent, tick_size, min_order_size, neg_risk) execution
    recorded with an order, from its `orders` row; None when there is no such row."""
    if "orders" not in _tables(conn):
        return None
    row = conn.execute(
        "SELECT fee_rate, fee_exponent, tick_size, min_order_size, neg_risk FROM orders"
        " WHERE client_order_id=?",
        (client_order_id,),
    ).fetchone()
    return dict(row) if row is not None else None


def ledger_settlements(conn: sqlite3.Connection, slug: str) -> list[Settlement]:
    """Execution's settlement of `slug`, if it settled while strategy was down."""
    out: list[Settlement] = []
    if "settlements" in _tables(conn):
        for r in conn.execute("SELECT * FROM settlements WHERE slug=?", (slug,)).fetchall():
            out.append(
                Settlement(
                    slug=r["slug"],
                    asset_id=r["asset_id"],
                    outcome=r["outcome"],
                    won=bool(r["won"]),
                    size=r["size"],
                    payout=r["payout"],
                    pnl=r["pnl"],
                    ts_ns=r["ts_ns"],
                )
            )
    return out


def running_config_version(db_path: str | os.PathLike[str], config_hash: str) -> int | None:
    """The config version the running strategy applied, when its config has `config_hash`
    (read only, for reports); None when the database, the state or the hash does not match."""
    p = Path(db_path)
    if not p.exists():
        return None
    try:
        conn = connect(p, readonly=True)
        try:
            row = conn.execute(
                "SELECT value FROM strategy_state WHERE key=?", (CORE_KEY,)
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    if row is None:
        return None
    doc = json.loads(row[0])
    if doc.get("config_hash") != config_hash:
        return None
    return int(doc.get("config_version", 0)) or None
