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
from common.schema import OrderFilled, PositionSettled, to_json

MIGRATIONS = [
    """CREATE TABLE IF NOT EXISTS strategy_state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        ts_ns INTEGER NOT NULL
    )""",
]
CORE_KEY = "core"  # before books: one state for every venue and mode (adopted once, see below)


def book_key(venue: str, mode: str) -> str:
    """The state row of one book: `core:<venue>:<mode>` (e.g. `core:sim:paper`)."""
    return f"{CORE_KEY}:{venue}:{mode}"


class StateStore:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.conn: sqlite3.Connection = connect(path)
        migrate(self.conn, "strategy", MIGRATIONS)
        self._last: dict[str, bytes] = {}

    def load(self, key: str = CORE_KEY) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT value FROM strategy_state WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def adopt_legacy(self, key: str) -> bool:
        """Move the state saved before books (key `core`) to `key` when `key` has none yet, so
        an open position or a halt survives the upgrade (in the book started first after it).
        True if it moved."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            have = self.conn.execute("SELECT 1 FROM strategy_state WHERE key=?", (key,)).fetchone()
            cur = None
            if have is None:
                cur = self.conn.execute(
                    "UPDATE strategy_state SET key=? WHERE key=?", (key, CORE_KEY)
                )
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return bool(cur is not None and cur.rowcount)

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


def _book_filter(
    conn: sqlite3.Connection, table: str, venue: str | None, dry_run: bool | None
) -> tuple[str, list[Any]]:
    """SQL for one book's rows (venue, with rows from before books; paper or real)."""
    cols = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
    where, args = "", []
    if venue is not None and "venue" in cols:
        where += " AND venue IN (?, '')"
        args.append(venue)
    if dry_run is not None and "dry_run" in cols:
        where += " AND dry_run = ?"
        args.append(int(dry_run))
    return where, args


def ledger_fills(
    conn: sqlite3.Connection,
    prefix: str,
    since_ns: int,
    venue: str | None = None,
    dry_run: bool | None = None,
) -> list[OrderFilled]:
    """Our fills since `since_ns` from execution's ledger (read only; execution owns it), of one
    book when `venue`/`dry_run` are given, replayed into the core on start so a fill published
    while strategy was down is not lost (the core ignores duplicates)."""
    out: list[OrderFilled] = []
    if "fills" in _tables(conn):
        where, args = _book_filter(conn, "fills", venue, dry_run)
        rows = conn.execute(
            f"SELECT * FROM fills WHERE client_order_id LIKE ? AND ts_fill_ns >= ?{where} "
            "ORDER BY ts_fill_ns, id",
            (prefix + "-%", since_ns, *args),
        ).fetchall()
        for r in rows:
            out.append(
                OrderFilled(
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
                    venue=r["venue"] if "venue" in r.keys() else "",
                )
            )
    return out


def ledger_redemptions(
    conn: sqlite3.Connection, venue: str | None = None, dry_run: bool | None = None
) -> list[dict[str, Any]]:
    """Execution's redemption rows (of one book when given), oldest first, as dicts with
    `condition_id`, `slug`, `state`, `cash_expected`, `cash_returned` (USD); [] before execution
    has made the table."""
    if "redemptions" not in _tables(conn):
        return []
    where, args = _book_filter(conn, "redemptions", venue, dry_run)
    where = where.replace(" AND ", " WHERE ", 1) if where else ""
    return [
        dict(r)
        for r in conn.execute(
            "SELECT condition_id, slug, state, cash_expected, cash_returned FROM redemptions"
            f"{where} ORDER BY id",
            args,
        ).fetchall()
    ]


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


def ledger_settlements(
    conn: sqlite3.Connection, slug: str, venue: str | None = None, dry_run: bool | None = None
) -> list[PositionSettled]:
    """Execution's settlement of `slug` (in one book when given), if it settled while strategy
    was down."""
    out: list[PositionSettled] = []
    if "settlements" in _tables(conn):
        where, args = _book_filter(conn, "settlements", venue, dry_run)
        for r in conn.execute(
            f"SELECT * FROM settlements WHERE slug=?{where}", (slug, *args)
        ).fetchall():
            out.append(
                PositionSettled(
                    slug=r["slug"],
                    asset_id=r["asset_id"],
                    outcome=r["outcome"],
                    won=bool(r["won"]),
                    size=r["size"],
                    payout=r["payout"],
                    pnl=r["pnl"],
                    ts_ns=r["ts_ns"],
                    venue=r["venue"] if "venue" in r.keys() else "",
                    dry_run=bool(r["dry_run"]) if "dry_run" in r.keys() else True,
                )
            )
    return out


def running_config_version(
    db_path: str | os.PathLike[str], config_hash: str, book: str | None = None
) -> int | None:
    """The config version the running strategy applied, when its config has `config_hash`
    (read only, for reports); None when the database, the state or the hash does not match.
    `book` (`book_key(venue, mode)`, the settings' own): only that book's state counts: each
    book numbers its versions itself, so another book's v1 is not this tree's v8."""
    p = Path(db_path)
    if not p.exists():
        return None
    try:
        conn = connect(p, readonly=True)
        try:
            if book is not None:
                rows = conn.execute(
                    "SELECT value FROM strategy_state WHERE key=?", (book,)
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT value FROM strategy_state WHERE key=? OR key LIKE ? "
                    "ORDER BY ts_ns DESC",
                    (CORE_KEY, CORE_KEY + ":%"),
                ).fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    for row in rows:  # the most recently saved book first
        doc = json.loads(row[0])
        if doc.get("config_hash") == config_hash:
            return int(doc.get("config_version", 0)) or None
    return None
