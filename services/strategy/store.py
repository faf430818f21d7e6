"""Strategy's durable state in SQLite: the `strategy_state` table (strategy is its only writer).

One row per key, the value a JSON document. The core's `persistent()` document is saved whenever
it changes and handed back to the core on start, so a restart keeps an emergency stop, the day's
P&L and loss streak, and an open position. Each book (venue x paper/real) has its own row
(`book_key`); the operator's global emergency stop has one row for every book (`STOP_KEY`): a
stop set in any book holds in every book until it is cleared (in any book), so restarting the
tree in another mode never lifts it (BREAKER3 finding 2).
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from common.db import connect, migrate
from common.schema import to_json

MIGRATIONS = [
    """CREATE TABLE IF NOT EXISTS strategy_state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        ts_ns INTEGER NOT NULL
    )""",
]
CORE_KEY = "core"  # before books: one state for every venue and mode (adopted once, see below)
STOP_KEY = "emergency_stop"  # the global emergency stop, book-independent (see `StateStore.stop`)


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

    def stop(self) -> dict[str, Any]:
        """The operator's global emergency stop, shared by every book: `{"emergency_stop": bool,
        "reason": str, "book": the book key it was set in ("" when cleared)}`. Before it had its
        own row (older versions kept it in each book's row) it is set when any book's row has
        its stop set, so an upgrade never lifts a stop."""
        return read_stop(self.conn)

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


def read_stop(conn: sqlite3.Connection) -> dict[str, Any]:
    """The global emergency stop from `conn` (see `StateStore.stop`)."""
    row = conn.execute("SELECT value FROM strategy_state WHERE key=?", (STOP_KEY,)).fetchone()
    if row is not None:
        doc = json.loads(row[0])
        return {
            "emergency_stop": bool(doc.get("emergency_stop", False)),
            "reason": str(doc.get("reason", "")),
            "book": str(doc.get("book", "")),
        }
    rows = conn.execute(
        "SELECT key, value FROM strategy_state WHERE key=? OR key LIKE ? ORDER BY ts_ns DESC",
        (CORE_KEY, CORE_KEY + ":%"),
    ).fetchall()
    for key, value in rows:  # the most recently saved stopped book first
        doc = json.loads(value)
        if doc.get("emergency_stop"):
            return {
                "emergency_stop": True,
                "reason": str(doc.get("emergency_reason", "")),
                "book": key,
            }
    return {"emergency_stop": False, "reason": "", "book": ""}


def book_summaries(
    db_path: str | os.PathLike[str], now_ns: int
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """What strategy's saved state holds, read only (for `polyedge up`'s notices): the global
    emergency stop (`read_stop`) and, per book key (`core:<venue>:<mode>`), `{"halts": [halt
    reasons still in force at `now_ns` (ns since the epoch; a day-bound halt ends with its UTC
    day), the global stop left out, a market's as "<market>: <reason>"], "positions": ["<slug>
    <outcome> <shares> sh", open or awaiting resolution], "pending": orders in flight}` or
    `{"error": why the row could not be read}`. The halts and positions are the core's own
    (`StrategyCore.status`/`market_risk`), not a second copy of its rules. ({no stop}, {}) when
    the database or the table does not exist."""
    from common.config import validate_strategy_config
    from common.schema import ClockTick
    from services.strategy.core import StrategyCore

    none: dict[str, Any] = {"emergency_stop": False, "reason": "", "book": ""}
    p = Path(db_path)
    if not p.exists():
        return none, {}
    try:
        conn = connect(p, readonly=True)
        try:
            stop = read_stop(conn)
            rows = conn.execute(
                "SELECT key, value FROM strategy_state WHERE key LIKE ? ORDER BY key",
                (CORE_KEY + ":%",),
            ).fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return none, {}
    out: dict[str, dict[str, Any]] = {}
    for key, value in rows:
        try:
            doc = json.loads(value)
            _, venue, mode = key.split(":", 2)
            cfg = validate_strategy_config(doc.get("config") or {}, f"strategy_state {key}")
            core = StrategyCore(cfg, doc, venue=venue, mode=mode)
            core.step(ClockTick(ts_ns=now_ns), now_ns)  # a new UTC day ends the day's halts
            status = core.status()
        except Exception as e:  # noqa: BLE001 - a notice, never a reason not to start
            out[key] = {"error": f"{type(e).__name__}: {e}"}
            continue
        halts = [r for r in status["halted"] if r != "emergency_stop"]
        positions = []
        for market, risk in core.market_risk().items():
            for r in risk["reasons"]:  # an operator's halt of the market says why
                why = f" ({risk['reason']})" if r == "market_stop" and risk["reason"] else ""
                halts.append(f"{market}: {r}{why}")
            if (pos := risk["position"]) is not None:
                positions.append(f"{pos['slug']} {pos['outcome']} {pos['size']:g} sh")
        positions += [
            f"{a.slug} {a.outcome} {a.size:g} sh (awaiting resolution)"
            for a in core.awaiting.values()
        ]
        out[key] = {"halts": halts, "positions": positions, "pending": len(core.pending)}
    return stop, out


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
