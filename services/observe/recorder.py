"""Observe's SQLite recorder: the versioned schema of the tables observe owns (trades, signals,
latency_events, config_snapshots, risk_events), batched writes, and the reads behind the API."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import deque
from pathlib import Path
from typing import Any

from common import db

OWNER = "observe"
MAX_PENDING = 200_000  # rows held while the database is unwritable; oldest dropped past this

MIGRATIONS = [
    """
    CREATE TABLE IF NOT EXISTS trades (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        event_key TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL CHECK (kind IN ('fill', 'settlement')),
        ts_ns INTEGER NOT NULL,
        day TEXT NOT NULL,
        slug TEXT NOT NULL DEFAULT '',
        outcome TEXT,
        side TEXT,
        asset_id TEXT NOT NULL DEFAULT '',
        price REAL,
        size REAL,
        fee REAL NOT NULL DEFAULT 0,
        pnl REAL,
        won INTEGER,
        client_order_id TEXT NOT NULL DEFAULT '',
        trade_id TEXT NOT NULL DEFAULT '',
        dry_run INTEGER NOT NULL DEFAULT 1
    );
    CREATE INDEX IF NOT EXISTS trades_ts ON trades(ts_ns);
    CREATE INDEX IF NOT EXISTS trades_slug ON trades(slug);
    CREATE INDEX IF NOT EXISTS trades_day ON trades(day);
    CREATE TABLE IF NOT EXISTS signals (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts_ns INTEGER NOT NULL,
        slug TEXT NOT NULL,
        p_up REAL NOT NULL,
        side TEXT NOT NULL,
        score REAL NOT NULL,
        edge_up REAL NOT NULL,
        edge_down REAL NOT NULL,
        inputs TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX IF NOT EXISTS signals_ts ON signals(ts_ns);
    CREATE TABLE IF NOT EXISTS latency_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts_ns INTEGER NOT NULL,
        stage TEXT NOT NULL,
        ms REAL NOT NULL,
        severity TEXT NOT NULL,
        ref TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX IF NOT EXISTS latency_events_ts ON latency_events(ts_ns);
    CREATE TABLE IF NOT EXISTS config_snapshots (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts_ns INTEGER NOT NULL,
        version INTEGER NOT NULL,
        source TEXT NOT NULL DEFAULT '',
        config TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS risk_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts_ns INTEGER NOT NULL,
        event TEXT NOT NULL,
        halted INTEGER NOT NULL,
        emergency_stop INTEGER NOT NULL,
        reasons TEXT NOT NULL DEFAULT '[]',
        daily_pnl REAL,
        trades_today INTEGER,
        loss_streak INTEGER,
        config_version INTEGER
    )
    """,
    # issue 12: every trade row names its book; each config version names what it changed
    """
    ALTER TABLE trades ADD COLUMN venue TEXT NOT NULL DEFAULT '';
    ALTER TABLE trades ADD COLUMN mode TEXT NOT NULL DEFAULT '';
    ALTER TABLE config_snapshots ADD COLUMN changed TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE config_snapshots ADD COLUMN hash TEXT NOT NULL DEFAULT '';
    CREATE INDEX IF NOT EXISTS trades_book ON trades(venue, mode, day)
    """,
    # the book (venue, paper/real) whose halts and counters a risk event is about
    """
    ALTER TABLE risk_events ADD COLUMN venue TEXT NOT NULL DEFAULT '';
    ALTER TABLE risk_events ADD COLUMN mode TEXT NOT NULL DEFAULT ''
    """,
    # each book numbers its config versions: a version row names its book
    """
    ALTER TABLE config_snapshots ADD COLUMN venue TEXT NOT NULL DEFAULT '';
    ALTER TABLE config_snapshots ADD COLUMN mode TEXT NOT NULL DEFAULT ''
    """,
    # issue 17: several markets at once; each trade and signal row names its market's series
    # key ("eth-15m"; rows from before were BTC 5-minute ones)
    """
    ALTER TABLE trades ADD COLUMN market TEXT NOT NULL DEFAULT 'btc-5m';
    ALTER TABLE signals ADD COLUMN market TEXT NOT NULL DEFAULT 'btc-5m';
    CREATE INDEX IF NOT EXISTS trades_market ON trades(market, day)
    """,
    # issue 18: a fill's side of the trade ("maker" rests and earns `rebate` USD, no fee)
    """
    ALTER TABLE trades ADD COLUMN liquidity TEXT NOT NULL DEFAULT '';
    ALTER TABLE trades ADD COLUMN rebate REAL NOT NULL DEFAULT 0
    """,
]

COLUMNS = {
    "trades": (
        "event_key",
        "kind",
        "ts_ns",
        "day",
        "slug",
        "outcome",
        "side",
        "asset_id",
        "price",
        "size",
        "fee",
        "pnl",
        "won",
        "client_order_id",
        "trade_id",
        "dry_run",
        "venue",
        "mode",
        "market",
        "liquidity",
        "rebate",
    ),
    "signals": (
        "ts_ns",
        "slug",
        "market",
        "p_up",
        "side",
        "score",
        "edge_up",
        "edge_down",
        "inputs",
    ),
    "latency_events": ("ts_ns", "stage", "ms", "severity", "ref"),
    "config_snapshots": (
        "ts_ns",
        "version",
        "source",
        "config",
        "changed",
        "hash",
        "venue",
        "mode",
    ),
    "risk_events": (
        "ts_ns",
        "event",
        "halted",
        "emergency_stop",
        "reasons",
        "daily_pnl",
        "trades_today",
        "loss_streak",
        "config_version",
        "venue",
        "mode",
    ),
}
JSON_COLUMNS = {"inputs", "config", "reasons", "changed"}
TRADE_FILTERS = ("slug", "market", "kind", "side", "outcome", "day", "venue", "mode")
UPDATABLE = {"trades": ("pnl", "won")}  # columns set after the row (by its event_key)
MONEY_DECIMALS = 6  # prices, sizes, fees and P&L leave the API rounded (no 0.48000000000000004)
MONEY_COLUMNS = ("price", "size", "fee", "pnl")


def _sql_value(col: str, v: Any) -> Any:
    if col in JSON_COLUMNS:
        return json.dumps(v, separators=(",", ":"))
    if isinstance(v, bool):
        return int(v)
    return v


class Recorder:
    """Buffers rows from the event loop; `flush` writes them in one transaction (any thread)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.conn = db.connect(self.path)
        self.schema_version = db.migrate(self.conn, OWNER, MIGRATIONS)
        self._lock = threading.Lock()
        # (table, values) to insert, or (table, values with "event_key") to update
        self.pending: deque[tuple[str, dict[str, Any], bool]] = deque()
        self.written = 0
        self.dropped = 0
        self.failures = 0
        self.last_error = ""

    def add(self, table: str, values: dict[str, Any]) -> None:
        if table not in COLUMNS:
            raise ValueError(f"observe does not own table {table!r}")
        if len(self.pending) >= MAX_PENDING:
            self.pending.popleft()
            self.dropped += 1
        self.pending.append((table, values, False))

    def update(self, table: str, event_key: str, values: dict[str, Any]) -> None:
        """Set columns of the row with this `event_key`, after every insert added before it."""
        bad = set(values) - set(UPDATABLE.get(table, ()))
        if bad:
            raise ValueError(f"observe does not update {sorted(bad)} of {table!r}")
        if len(self.pending) >= MAX_PENDING:
            self.pending.popleft()
            self.dropped += 1
        self.pending.append((table, {**values, "event_key": event_key}, True))

    def flush(self) -> int:
        """Write everything pending; on a database error keep it for the next try and raise."""
        with self._lock:
            batch = list(self.pending)
            if not batch:
                return 0
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                try:
                    for table, values, is_update in batch:
                        if is_update:
                            sets = [c for c in values if c != "event_key"]
                            self.conn.execute(
                                f"UPDATE {table} SET {', '.join(f'{c}=?' for c in sets)}"
                                " WHERE event_key=?",
                                [*(_sql_value(c, values[c]) for c in sets), values["event_key"]],
                            )
                            continue
                        cols = COLUMNS[table]
                        verb = "INSERT OR IGNORE" if table == "trades" else "INSERT"
                        self.conn.execute(
                            f"{verb} INTO {table} ({','.join(cols)}) "
                            f"VALUES ({','.join('?' * len(cols))})",
                            [_sql_value(c, values.get(c)) for c in cols],
                        )
                    self.conn.execute("COMMIT")
                except BaseException:
                    self.conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                self.failures += 1
                self.last_error = str(e)
                raise
            for _ in range(len(batch)):
                self.pending.popleft()
            self.written += len(batch)
            return len(batch)

    # --- reads ----------------------------------------------------------------------------------
    def trades(
        self,
        *,
        limit: int = 50,
        offset: int = 0,
        since_ns: int | None = None,
        until_ns: int | None = None,
        dry_run: bool | None = None,
        **filters: str,
    ) -> dict[str, Any]:
        where: list[str] = []
        args: list[Any] = []
        for key, value in filters.items():
            if key not in TRADE_FILTERS:
                raise ValueError(f"unknown trade filter {key!r}")
            where.append(f"{key} = ?")
            args.append(value)
        if since_ns is not None:
            where.append("ts_ns >= ?")
            args.append(since_ns)
        if until_ns is not None:
            where.append("ts_ns < ?")
            args.append(until_ns)
        if dry_run is not None:
            where.append("dry_run = ?")
            args.append(int(dry_run))
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._lock:
            total = self.conn.execute(f"SELECT COUNT(*) FROM trades{clause}", args).fetchone()[0]
            rows = self.conn.execute(
                f"SELECT * FROM trades{clause} ORDER BY ts_ns DESC, id DESC LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
        items = []
        for r in rows:
            d = dict(r)
            d["dry_run"] = bool(d["dry_run"])
            if d["won"] is not None:
                d["won"] = bool(d["won"])
            for c in MONEY_COLUMNS:
                if d.get(c) is not None:
                    d[c] = round(d[c], MONEY_DECIMALS)
            items.append(d)
        return {"total": total, "limit": limit, "offset": offset, "items": items}

    def trade_markets(self) -> list[str]:
        """The series keys ("eth-15m") the recorded trades name, sorted."""
        with self._lock:
            rows = self.conn.execute("SELECT DISTINCT market FROM trades").fetchall()
        return sorted(r[0] for r in rows)

    def trades_of_day(
        self, day: str, venue: str | None = None, mode: str | None = None
    ) -> list[dict[str, Any]]:
        """The day's rows; of one book when given (rows from before books, venue '', too)."""
        sql, args = "SELECT * FROM trades WHERE day = ?", [day]
        if venue is not None:
            sql += " AND venue IN (?, '')"
            args.append(venue)
        if mode is not None:
            sql += " AND mode IN (?, '')"
            args.append(mode)
        with self._lock:
            rows = self.conn.execute(sql, args).fetchall()
        return [dict(r) for r in rows]

    @staticmethod
    def _book_where(book: tuple[str, str] | None) -> tuple[str, tuple[Any, ...]]:
        """SQL filter on a config row's book (rows from before books, venue '', match any)."""
        if book is None:
            return "", ()
        return " WHERE (venue=? AND mode=?) OR venue=''", book

    def config_history(
        self, limit: int = 20, book: tuple[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """The latest config versions seen, newest first: version, time, source, the fields it
        changed (`{field: [old, new]}`), the config's hash and its book. `book` (venue, mode):
        that book's versions only (each book numbers its own: real's v1 is not paper's v8)."""
        where, args = self._book_where(book)
        with self._lock:
            rows = self.conn.execute(
                "SELECT ts_ns, version, source, changed, hash, venue, mode FROM config_snapshots"
                f"{where} ORDER BY id DESC LIMIT ?",
                (*args, limit),
            ).fetchall()
        return [{**dict(r), "changed": json.loads(r["changed"] or "{}")} for r in rows]

    def recorded_configs(self, book: tuple[str, str] | None = None) -> set[tuple[int, str]]:
        """Every config version recorded (of `book` when given), as (version, hash) pairs."""
        where, args = self._book_where(book)
        with self._lock:
            rows = self.conn.execute(
                f"SELECT DISTINCT version, hash FROM config_snapshots{where}", args
            ).fetchall()
        return {(int(r[0]), str(r[1])) for r in rows}

    def last_config(
        self, book: tuple[str, str] | None = None
    ) -> tuple[dict[str, Any], int, int] | None:
        """The last config row seen (of `book` when given): (config, version, ts_ns)."""
        where, args = self._book_where(book)
        with self._lock:
            r = self.conn.execute(
                f"SELECT config, version, ts_ns FROM config_snapshots{where}"
                " ORDER BY id DESC LIMIT 1",
                args,
            ).fetchone()
        return (json.loads(r[0]), r[1], r[2]) if r else None

    def chart_history(
        self, since_ns: int
    ) -> tuple[
        dict[str, list[tuple[float, float]]], dict[str, list[tuple[float, float, float | None]]]
    ]:
        """The dashboard's chart series rebuilt from the recorded signals (about one a second
        per market), so a restarted observe shows the minutes before it: `(spot, prob)` with
        spot `{asset: [(unix seconds, price USD)]}` (the price each signal priced from; of an
        asset's markets, the first one's) and prob `{series key: [(unix seconds, P(Up),
        market Up mid or None)]}`, oldest first, from `since_ns` on."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT ts_ns, market, p_up, json_extract(inputs, '$.price'), "
                "json_extract(inputs, '$.up_bid'), json_extract(inputs, '$.up_ask') "
                "FROM signals WHERE ts_ns >= ? ORDER BY ts_ns",
                (since_ns,),
            ).fetchall()
        spot: dict[str, list[tuple[float, float]]] = {}
        prob: dict[str, list[tuple[float, float, float | None]]] = {}
        spot_from: dict[str, str] = {}  # asset -> the market its prices are taken from
        for ts_ns, market, p_up, price, bid, ask in rows:
            t = round(ts_ns / 1e9, 3)
            asset = market.partition("-")[0]
            if isinstance(price, int | float) and spot_from.setdefault(asset, market) == market:
                spot.setdefault(asset, []).append((t, float(price)))
            mid = round((bid + ask) / 2, 4) if bid is not None and ask is not None else None
            prob.setdefault(market, []).append((t, p_up, mid))
        return spot, prob

    def count(self, table: str) -> int:
        if table not in COLUMNS:
            raise ValueError(f"observe does not own table {table!r}")
        with self._lock:
            return self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self.conn.close()
