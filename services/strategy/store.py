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
from common.schema import to_json

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
