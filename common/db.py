"""SQLite access shared by the services. One database file (DATABASE_URL), one writer per table:
execution owns orders/order_events/fills/settlements, strategy owns strategy_state, observe owns
trades/signals/latency_events/config_snapshots/risk_events. WAL lets readers run beside writers;
synchronous=FULL makes a committed intent survive a power cut."""

from __future__ import annotations

import sqlite3
from pathlib import Path

BUSY_TIMEOUT_MS = 5000


class DatabaseUnavailable(sqlite3.OperationalError):
    """The database file cannot be created or opened for writing; the message names the path and
    `DATABASE_URL` (sqlite's own "unable to open database file" names neither)."""

    def __init__(self, path: Path, why: object) -> None:
        self.path = path
        super().__init__(
            f"cannot open the database {path.resolve()} (DATABASE_URL; by default trader.db in "
            f"POLYEDGE_DATA_DIR): {why}"
        )


def connect(path: str | Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (use `BEGIN IMMEDIATE` explicitly for write transactions).
    Raises DatabaseUnavailable (an sqlite3.OperationalError) when a writable database cannot be
    created or opened (a directory that cannot be made, a read-only file, a path under /proc)."""
    p = Path(path)
    if readonly:
        conn = sqlite3.connect(
            f"file:{p}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
    else:
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(p, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
        except (OSError, sqlite3.OperationalError) as e:
            raise DatabaseUnavailable(p, e) from None
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.row_factory = sqlite3.Row
    return conn


def check_writable(path: str | Path) -> None:
    """Open the database as a service will (creating it and its directory when missing) and
    close it: `polyedge up`'s check before starting anything. Raises DatabaseUnavailable."""
    p = Path(path)
    conn = connect(p)
    try:
        conn.execute("BEGIN IMMEDIATE")  # the write lock a service's first migration takes
        conn.execute("ROLLBACK")
    except sqlite3.OperationalError as e:
        raise DatabaseUnavailable(p, e) from None
    finally:
        conn.close()


def migrate(conn: sqlite3.Connection, owner: str, migrations: list[str]) -> int:
    """Apply `owner`'s migrations not applied yet (each a script); return the schema version."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_versions (owner TEXT PRIMARY KEY, "
        "version INTEGER NOT NULL)"
    )
    row = conn.execute("SELECT version FROM schema_versions WHERE owner=?", (owner,)).fetchone()
    version = row[0] if row else 0
    for i, script in enumerate(migrations[version:], start=version + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for stmt in filter(str.strip, script.split(";")):
                conn.execute(stmt)
            conn.execute(
                "INSERT INTO schema_versions(owner, version) VALUES(?, ?) ON CONFLICT"
                "(owner) DO UPDATE SET version=excluded.version",
                (owner, i),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return len(migrations)
