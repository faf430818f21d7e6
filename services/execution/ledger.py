"""Execution's durable order ledger in SQLite (common.db: WAL, synchronous=FULL, BEGIN IMMEDIATE).

Execution is the only writer of `orders`, `order_events`, `fills` and `settlements`; strategy and
observe may read them. The intent row is committed before anything is sent to a venue, keyed by
the client order id, so a duplicate intent is a no-op and a crash between send and ack leaves a row
whose outcome is `unknown` until reconciliation on the next start.

Order status moves: intent -> sending -> (acked | unknown) -> filled | partial | rejected, or
intent -> expired | rejected | blocked. `OPEN_STATUSES` are the ones a restart must reconcile.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import db
from common.schema import OrderFilled, OrderIntent, PositionSettled, to_json

OWNER = "execution"
OPEN_STATUSES = ("intent", "sending", "unknown")

MIGRATIONS = [
    """
    CREATE TABLE IF NOT EXISTS orders (
        client_order_id TEXT PRIMARY KEY,
        mode TEXT NOT NULL,
        status TEXT NOT NULL,
        slug TEXT NOT NULL,
        asset_id TEXT NOT NULL,
        outcome TEXT NOT NULL,
        side TEXT NOT NULL,
        order_type TEXT NOT NULL,
        limit_price REAL NOT NULL,
        size REAL NOT NULL,
        tick_size REAL NOT NULL,
        min_order_size REAL NOT NULL,
        neg_risk INTEGER NOT NULL,
        fee_rate REAL NOT NULL,
        fee_exponent REAL NOT NULL,
        expires_ns INTEGER NOT NULL,
        ts_intent_ns INTEGER NOT NULL,
        ts_signal_ns INTEGER NOT NULL,
        origin_ts_recv_ns INTEGER NOT NULL,
        ts_received_ns INTEGER NOT NULL,
        ts_sent_ns INTEGER,
        ts_ack_ns INTEGER,
        ts_done_ns INTEGER,
        venue_order_id TEXT NOT NULL DEFAULT '',
        venue_status TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL DEFAULT '',
        code TEXT NOT NULL DEFAULT '',
        filled_size REAL NOT NULL DEFAULT 0,
        avg_price REAL NOT NULL DEFAULT 0,
        fee REAL NOT NULL DEFAULT 0,
        signal_to_order_ack_ms REAL,
        full_decision_to_fill_ms REAL,
        book_json TEXT NOT NULL DEFAULT '',
        signed_order_json TEXT NOT NULL DEFAULT '',
        intent_json TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS orders_status ON orders(status);
    CREATE INDEX IF NOT EXISTS orders_slug ON orders(slug);
    CREATE TABLE IF NOT EXISTS order_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        client_order_id TEXT NOT NULL,
        ts_ns INTEGER NOT NULL,
        event TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX IF NOT EXISTS order_events_coid ON order_events(client_order_id);
    CREATE TABLE IF NOT EXISTS fills (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        trade_id TEXT NOT NULL UNIQUE,
        client_order_id TEXT NOT NULL,
        venue_order_id TEXT NOT NULL DEFAULT '',
        slug TEXT NOT NULL,
        asset_id TEXT NOT NULL,
        outcome TEXT,
        side TEXT NOT NULL,
        price REAL NOT NULL,
        size REAL NOT NULL,
        fee REAL NOT NULL,
        ts_fill_ns INTEGER NOT NULL,
        dry_run INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS fills_coid ON fills(client_order_id);
    CREATE TABLE IF NOT EXISTS settlements (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        slug TEXT NOT NULL,
        asset_id TEXT NOT NULL,
        outcome TEXT NOT NULL,
        won INTEGER NOT NULL,
        size REAL NOT NULL,
        payout REAL NOT NULL,
        pnl REAL NOT NULL,
        ts_ns INTEGER NOT NULL,
        UNIQUE(slug, asset_id)
    );
    CREATE TABLE IF NOT EXISTS exec_latency (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        client_order_id TEXT NOT NULL,
        stage TEXT NOT NULL,
        ms REAL NOT NULL,
        ts_ns INTEGER NOT NULL
    )
    """,
    # trade states (MATCHED -> MINED -> CONFIRMED, or RETRYING -> FAILED): a live fill is
    # provisional until CONFIRMED; a FAILED one is undone by a reversing fill
    """
    ALTER TABLE fills ADD COLUMN trade_status TEXT NOT NULL DEFAULT '';
    ALTER TABLE fills ADD COLUMN reverses_trade_id TEXT NOT NULL DEFAULT ''
    """,
    # books (issue 12): every row names its venue (sim | live); fills and settlements also say
    # paper or real (dry_run). Rows from before this have venue '' and count for any venue.
    """
    ALTER TABLE orders ADD COLUMN venue TEXT NOT NULL DEFAULT '';
    ALTER TABLE fills ADD COLUMN venue TEXT NOT NULL DEFAULT '';
    CREATE TABLE settlements_books (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        slug TEXT NOT NULL,
        asset_id TEXT NOT NULL,
        outcome TEXT NOT NULL,
        won INTEGER NOT NULL,
        size REAL NOT NULL,
        payout REAL NOT NULL,
        pnl REAL NOT NULL,
        ts_ns INTEGER NOT NULL,
        venue TEXT NOT NULL DEFAULT '',
        dry_run INTEGER NOT NULL DEFAULT 1,
        UNIQUE(venue, dry_run, slug, asset_id)
    );
    INSERT INTO settlements_books(id, slug, asset_id, outcome, won, size, payout, pnl, ts_ns)
        SELECT id, slug, asset_id, outcome, won, size, payout, pnl, ts_ns FROM settlements;
    DROP TABLE settlements;
    ALTER TABLE settlements_books RENAME TO settlements;
    CREATE INDEX IF NOT EXISTS fills_venue ON fills(venue, dry_run)
    """,
    # redemption (issue 13): winning tokens pay nothing until redeemed; one row per resolved
    # market held, written before and after each venue or chain call
    """
    CREATE TABLE IF NOT EXISTS redemptions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        venue TEXT NOT NULL DEFAULT '',
        dry_run INTEGER NOT NULL,
        condition_id TEXT NOT NULL,
        slug TEXT NOT NULL,
        shares REAL NOT NULL,
        cash_expected REAL NOT NULL,
        state TEXT NOT NULL,
        tx_hash TEXT NOT NULL DEFAULT '',
        cash_returned REAL NOT NULL DEFAULT 0,
        detail TEXT NOT NULL DEFAULT '',
        ts_request_ns INTEGER NOT NULL,
        ts_done_ns INTEGER,
        UNIQUE(venue, dry_run, condition_id)
    )
    """,
    # maker fills (issue 18): which side of the trade the fill was (taker pays `fee`, maker pays
    # none and earns `rebate_usd`, common.money.maker_rebate)
    """
    ALTER TABLE fills ADD COLUMN liquidity TEXT NOT NULL DEFAULT 'taker';
    ALTER TABLE fills ADD COLUMN rebate_usd REAL NOT NULL DEFAULT 0
    """,
]
REDEMPTION_OPEN = ("requested", "sent", "awaiting")
FINAL_TRADE_STATUSES = ("CONFIRMED", "FAILED")


@dataclass
class Position:
    """A held outcome-token position rebuilt from fills minus settlements."""

    slug: str
    asset_id: str
    outcome: str
    size: float = 0.0
    cost: float = 0.0  # collateral paid including fees less rebates, less the cost of shares sold

    def apply(self, side: str, price: float, size: float, fee: float, rebate: float = 0.0) -> float:
        """Fold one fill in: a BUY adds its cost plus `fee` less the maker `rebate` (USD). Returns
        the P&L it realised (USD): 0 for a BUY; for a SELL its proceeds less `fee` plus `rebate`
        less the average cost of the shares sold."""
        if side == "BUY":
            self.size += size
            self.cost += price * size + fee - rebate
            return 0.0
        avg = self.cost / self.size if self.size > 0 else 0.0
        sold = min(size, self.size)
        self.cost -= avg * sold
        self.size = max(0.0, self.size - size)
        return price * sold - fee + rebate - avg * sold


class Ledger:
    """All of execution's writes. Each public write is one `BEGIN IMMEDIATE` transaction."""

    def __init__(self, path: str | Path, venue: str = "") -> None:
        """`venue` ("sim" | "live") is stamped on every row written and selects the rows read
        (with rows from before books, venue ''), so two venues never share orders, fills,
        positions or settlements."""
        self.conn = db.connect(path)
        self.venue = venue
        db.migrate(self.conn, OWNER, MIGRATIONS)

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def _event(self, coid: str, ts_ns: int, event: str, detail: dict[str, Any]) -> None:
        self.conn.execute(
            "INSERT INTO order_events(client_order_id, ts_ns, event, detail) VALUES(?,?,?,?)",
            (coid, ts_ns, event, json.dumps(detail, default=str)),
        )

    # --- writes ------------------------------------------------------------------------------
    def record_intent(self, intent: OrderIntent, mode: str, ts_ns: int, book_json: str) -> bool:
        """Insert the intent row; False (and nothing written) if this client order id exists."""
        with self.tx() as c:
            cur = c.execute(
                "INSERT INTO orders(client_order_id, mode, status, slug, asset_id, outcome, side,"
                " order_type, limit_price, size, tick_size, min_order_size, neg_risk, fee_rate,"
                " fee_exponent, expires_ns, ts_intent_ns, ts_signal_ns, origin_ts_recv_ns,"
                " ts_received_ns, book_json, intent_json, venue)"
                " VALUES(?,?,'intent',?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT(client_order_id) DO NOTHING",
                (
                    intent.client_order_id,
                    mode,
                    intent.slug,
                    intent.asset_id,
                    intent.outcome,
                    intent.side,
                    intent.order_type,
                    intent.limit_price,
                    intent.size,
                    intent.tick_size,
                    intent.min_order_size,
                    int(intent.neg_risk),
                    intent.fee_rate,
                    intent.fee_exponent,
                    intent.expires_ns,
                    intent.ts_intent_ns,
                    intent.ts_signal_ns,
                    intent.origin_ts_recv_ns,
                    ts_ns,
                    book_json,
                    to_json(intent).decode(),
                    self.venue,
                ),
            )
            if cur.rowcount == 0:
                return False
            self._event(intent.client_order_id, ts_ns, "intent", {"mode": mode})
        return True

    def update(self, coid: str, ts_ns: int, event: str, **fields: Any) -> None:
        """Set order columns and append an order event, atomically."""
        with self.tx() as c:
            if fields:
                cols = ", ".join(f"{k}=?" for k in fields)
                c.execute(
                    f"UPDATE orders SET {cols} WHERE client_order_id=?", (*fields.values(), coid)
                )
            self._event(coid, ts_ns, event, fields)

    def record_fills(
        self,
        coid: str,
        fills: list[OrderFilled],
        ts_ns: int,
        trade_status: str = "MATCHED",
        **fields: Any,
    ) -> int:
        """Append fills (a trade id seen before is skipped) and set order columns; returns new.
        A live fill starts provisional with `trade_status` (the venue's trade status)."""
        new = 0
        with self.tx() as c:
            for f in fills:
                cur = c.execute(
                    "INSERT INTO fills(trade_id, client_order_id, venue_order_id, slug, asset_id,"
                    " outcome, side, price, size, fee, ts_fill_ns, dry_run, trade_status,"
                    " reverses_trade_id, venue, liquidity, rebate_usd)"
                    " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(trade_id) DO NOTHING",
                    (
                        f.trade_id,
                        coid,
                        f.venue_order_id,
                        f.slug,
                        f.asset_id,
                        f.outcome,
                        f.side,
                        f.price,
                        f.size,
                        f.fee,
                        f.ts_fill_ns,
                        int(f.dry_run),
                        "" if f.dry_run or f.reverses_trade_id else trade_status,
                        f.reverses_trade_id,
                        f.venue or self.venue,
                        f.liquidity,
                        f.rebate_usd,
                    ),
                )
                new += cur.rowcount
            if fields:
                cols = ", ".join(f"{k}=?" for k in fields)
                c.execute(
                    f"UPDATE orders SET {cols} WHERE client_order_id=?", (*fields.values(), coid)
                )
            self._event(coid, ts_ns, "fills", {"new": new, **fields})
        return new

    def provisional_trades(self) -> dict[str, str]:
        """Live trades not final yet: venue trade id (the part before any `:level`) -> client
        order id. A trade is final once CONFIRMED or FAILED."""
        marks = ",".join("?" * len(FINAL_TRADE_STATUSES))
        rows = self.conn.execute(
            "SELECT trade_id, client_order_id FROM fills WHERE dry_run=0 AND reverses_trade_id=''"
            f" AND trade_status NOT IN ({marks})",
            FINAL_TRADE_STATUSES,
        )
        return {r[0].split(":")[0]: r[1] for r in rows}

    def trade_fills(self, trade_id: str) -> list[sqlite3.Row]:
        """The fill rows of one venue trade (`trade_id` or `trade_id:<level>`)."""
        return self.conn.execute(
            "SELECT * FROM fills WHERE (trade_id=? OR trade_id LIKE ?) AND reverses_trade_id=''"
            " ORDER BY id",
            (trade_id, trade_id + ":%"),
        ).fetchall()

    def set_trade_status(self, trade_id: str, status: str, ts_ns: int, coid: str) -> None:
        """Record a venue trade's new status on its fills, with an order event."""
        with self.tx() as c:
            c.execute(
                "UPDATE fills SET trade_status=? WHERE (trade_id=? OR trade_id LIKE ?)"
                " AND reverses_trade_id=''",
                (status, trade_id, trade_id + ":%"),
            )
            self._event(coid, ts_ns, "trade_status", {"trade_id": trade_id, "status": status})

    def request_redemption(
        self, condition_id: str, slug: str, dry_run: bool, shares: float, cash: float, ts_ns: int
    ) -> bool:
        """The redemption row of a resolved market, written before anything is sent; False when
        it exists already (a restart, a second resolution message: never doubled). Shares add up
        when two positions of the market (Up and Down) resolve."""
        with self.tx() as c:
            cur = c.execute(
                "INSERT INTO redemptions(venue, dry_run, condition_id, slug, shares, cash_expected,"
                " state, ts_request_ns) VALUES(?,?,?,?,?,?,'requested',?)"
                " ON CONFLICT(venue, dry_run, condition_id) DO NOTHING",
                (self.venue, int(dry_run), condition_id, slug, shares, cash, ts_ns),
            )
            return cur.rowcount > 0

    def update_redemption(self, condition_id: str, dry_run: bool, **fields: Any) -> None:
        with self.tx() as c:
            cols = ", ".join(f"{k}=?" for k in fields)
            c.execute(
                f"UPDATE redemptions SET {cols} WHERE venue=? AND dry_run=? AND condition_id=?",
                (*fields.values(), self.venue, int(dry_run), condition_id),
            )

    def redemptions(self, dry_run: bool, open_only: bool = False) -> list[sqlite3.Row]:
        """This book's redemption rows (oldest first); `open_only`: not confirmed or failed."""
        q = "SELECT * FROM redemptions WHERE venue=? AND dry_run=?"
        if open_only:
            q += f" AND state IN ({','.join('?' * len(REDEMPTION_OPEN))})"
        return self.conn.execute(
            q + " ORDER BY id",
            (self.venue, int(dry_run), *(REDEMPTION_OPEN if open_only else ())),
        ).fetchall()

    def record_settlement(self, s: PositionSettled) -> bool:
        with self.tx() as c:
            cur = c.execute(
                "INSERT INTO settlements(slug, asset_id, outcome, won, size, payout, pnl, ts_ns,"
                " venue, dry_run) VALUES(?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                (
                    s.slug,
                    s.asset_id,
                    s.outcome,
                    int(s.won),
                    s.size,
                    s.payout,
                    s.pnl,
                    s.ts_ns,
                    s.venue or self.venue,
                    int(s.dry_run),
                ),
            )
            return cur.rowcount > 0

    def record_latency(self, coid: str, stage: str, ms: float, ts_ns: int) -> None:
        column = {"signal_to_order_ack_ms", "full_decision_to_fill_ms"}
        with self.tx() as c:
            c.execute(
                "INSERT INTO exec_latency(client_order_id, stage, ms, ts_ns) VALUES(?,?,?,?)",
                (coid, stage, ms, ts_ns),
            )
            if stage in column:
                c.execute(f"UPDATE orders SET {stage}=? WHERE client_order_id=?", (ms, coid))

    # --- reads -------------------------------------------------------------------------------
    def order(self, coid: str) -> sqlite3.Row | None:
        return self.conn.execute("SELECT * FROM orders WHERE client_order_id=?", (coid,)).fetchone()

    def open_orders(self) -> list[sqlite3.Row]:
        marks = ",".join("?" * len(OPEN_STATUSES))
        return self.conn.execute(
            f"SELECT * FROM orders WHERE status IN ({marks}) AND venue IN (?, '')"
            " ORDER BY ts_received_ns",
            (*OPEN_STATUSES, self.venue),
        ).fetchall()

    def resting_orders(self) -> list[sqlite3.Row]:
        """Resting (GTC/GTD) orders of this venue that may be on the book: being posted
        (signed, with their venue id), acked, or partly filled, and not final. At start these
        were left by a previous run."""
        return self.conn.execute(
            "SELECT * FROM orders WHERE status IN ('sending', 'acked', 'partial')"
            " AND order_type IN ('GTC', 'GTD') AND venue IN (?, '') ORDER BY ts_received_ns",
            (self.venue,),
        ).fetchall()

    def claimed_ids(self, except_coid: str) -> frozenset[str]:
        """Venue order ids already owned by other orders (so reconciliation never takes them)."""
        rows = self.conn.execute(
            "SELECT venue_order_id FROM orders WHERE venue_order_id != '' AND client_order_id != ?",
            (except_coid,),
        )
        return frozenset(r[0] for r in rows)

    def fills_of(self, coid: str) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT * FROM fills WHERE client_order_id=? ORDER BY id", (coid,)
        ).fetchall()

    def positions(self, dry_run: bool | None = None) -> dict[str, Position]:
        """This venue's open positions by asset (paper or real ones with `dry_run`): every fill
        replayed, assets already settled (their market is over) left out."""
        return self.book(dry_run)[0]

    def book(self, dry_run: bool | None = None) -> tuple[dict[str, Position], dict[str, float]]:
        """`(open positions by asset, realised P&L by slug)` of this venue (paper or real with
        `dry_run`): every fill replayed in time order (sells realise against the average cost),
        plus each settlement's P&L (USD). A position is over once ITS book settled its asset: a
        settlement of the same token in the other book (paper and real in one window) leaves
        it open (found by a new user's test, 2026-12-01: a real position vanished unsettled
        and was never redeemed after the paper book settled the same token)."""
        held: dict[str, Position] = {}
        realized: dict[str, float] = {}
        where, args = "venue IN (?, '')", [self.venue]
        if dry_run is not None:
            where += " AND dry_run = ?"
            args.append(int(dry_run))
        settled = {
            r["asset_id"]
            for r in self.conn.execute(f"SELECT asset_id FROM settlements WHERE {where}", args)
        }
        for r in self.conn.execute(
            f"SELECT * FROM fills WHERE {where} ORDER BY ts_fill_ns, id", args
        ):
            pos = held.setdefault(
                r["asset_id"], Position(r["slug"], r["asset_id"], r["outcome"] or "")
            )
            pnl = pos.apply(r["side"], r["price"], r["size"], r["fee"], r["rebate_usd"])
            if pnl:
                realized[r["slug"]] = realized.get(r["slug"], 0.0) + pnl
        for r in self.conn.execute(f"SELECT slug, pnl FROM settlements WHERE {where}", args):
            realized[r["slug"]] = realized.get(r["slug"], 0.0) + r["pnl"]
        positions = {k: p for k, p in held.items() if p.size > 1e-9 and k not in settled}
        return positions, realized

    def counts(self) -> dict[str, int]:
        return {
            r["status"]: r["n"]
            for r in self.conn.execute("SELECT status, COUNT(*) AS n FROM orders GROUP BY status")
        }
