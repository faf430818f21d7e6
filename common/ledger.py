"""Read-only views of execution's ledger (its `fills`, `settlements`, `redemptions` and `orders`
tables in the shared SQLite database; execution is their only writer, services/execution/ledger.py)
for the services that rebuild what they heard on the bus from it: strategy at its start and after
an execution restart, observe after an execution restart (PUB/SUB drops what a new process
publishes before a subscriber has rejoined it).

Each reader takes an open connection (read-only is enough) and returns [] / None while execution
has not made its tables yet. Rows from before books (venue '') count for any venue.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from common.schema import OrderFilled, PositionSettled


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
    prefix: str | None,
    since_ns: int,
    venue: str | None = None,
    dry_run: bool | None = None,
) -> list[OrderFilled]:
    """Fills with `ts_fill_ns >= since_ns` (ns) from execution's ledger, oldest first, as the
    `OrderFilled` messages execution published (without the latency stamps, which the ledger
    does not keep; a paper fill carries the book time it filled at, its message the commit time):
    of client order ids `<prefix>-...` (None: every order), of one book when `venue`/`dry_run`
    are given. Readers dedupe by trade id (each trade is one row: `fills.trade_id` is unique)."""
    out: list[OrderFilled] = []
    if "fills" in _tables(conn):
        where, args = _book_filter(conn, "fills", venue, dry_run)
        if prefix is not None:
            where += " AND client_order_id LIKE ?"
            args.append(prefix + "-%")
        rows = conn.execute(
            f"SELECT * FROM fills WHERE ts_fill_ns >= ?{where} ORDER BY ts_fill_ns, id",
            (since_ns, *args),
        ).fetchall()
        for r in rows:
            keys = r.keys()
            liquidity = r["liquidity"] if "liquidity" in keys else "taker"
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
                        r["reverses_trade_id"] if "reverses_trade_id" in keys else ""
                    ),
                    venue=r["venue"] if "venue" in keys else "",
                    liquidity="maker" if liquidity == "maker" else "taker",
                    rebate_usd=float(r["rebate_usd"]) if "rebate_usd" in keys else 0.0,
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
    conn: sqlite3.Connection,
    slug: str | None,
    venue: str | None = None,
    dry_run: bool | None = None,
    since_ns: int = 0,
) -> list[PositionSettled]:
    """Execution's settlements, as the `PositionSettled` messages it published, oldest first:
    of window `slug` (None: every window), in one book when `venue`/`dry_run` are given, with
    `ts_ns >= since_ns` (ns; a settlement's `ts_ns` is its market's resolution time, which can be
    earlier than the booking when execution was down at the resolution)."""
    out: list[PositionSettled] = []
    if "settlements" in _tables(conn):
        where, args = _book_filter(conn, "settlements", venue, dry_run)
        if slug is not None:
            where += " AND slug = ?"
            args.append(slug)
        for r in conn.execute(
            f"SELECT * FROM settlements WHERE ts_ns >= ?{where} ORDER BY ts_ns, id",
            (since_ns, *args),
        ).fetchall():
            keys = r.keys()
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
                    venue=r["venue"] if "venue" in keys else "",
                    dry_run=bool(r["dry_run"]) if "dry_run" in keys else True,
                )
            )
    return out
