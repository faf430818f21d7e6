"""Books (issue 12, item 5): the ledger, positions, day counters and halts are kept per venue
(sim | live) and per mode (paper | real); switching venues never carries anything over."""

from __future__ import annotations

import time
from pathlib import Path

from msgspec.structs import replace as msgspec_replace

from common import db
from common.config import Settings, StrategyConfig, load_settings, trading_book
from common.ledger import ledger_fills, ledger_settlements
from common.schema import (
    ClearEmergencyStop,
    MarketResolved,
    OrderFilled,
    PositionSettled,
    RiskState,
    TriggerEmergencyStop,
)
from services.execution.ledger import Ledger
from services.strategy.core import StrategyCore
from services.strategy.store import STOP_KEY, StateStore, book_key, book_summaries
from tests.conftest import REPO, wait_for
from tests.strategy.test_strategy_process import Harness

NS = 1_000_000_000
T0 = 1_800_000_000 * NS
SLUG = "btc-updown-5m-1800000000"
MKT = "btc-5m"  # the shipped config's market (series key)


def _fill(coid: str, side: str = "BUY", price: float = 0.5, venue: str = "") -> OrderFilled:
    return OrderFilled(
        client_order_id=coid,
        asset_id="U",
        side=side,  # type: ignore[arg-type]
        price=price,
        size=10.0,
        fee=0.175,
        ts_fill_ns=T0,
        slug=SLUG,
        outcome="Up",
        trade_id=coid + ":0",
        venue=venue,
    )


def test_trading_book_is_venue_and_paper_or_real() -> None:
    assert trading_book(Settings(venue="sim")) == ("sim", "paper")
    assert trading_book(Settings(venue="live", dry_run=False, enable_real_trading=True)) == (
        "live",
        "paper",  # no key: orders are blocked, nothing real happens
    )


def test_ledger_rows_name_their_venue_and_books_do_not_mix(tmp_path: Path) -> None:
    path = tmp_path / "trader.db"
    sim, live = Ledger(path, venue="sim"), Ledger(path, venue="live")
    sim.record_fills("pe-1e", [_fill("pe-1e")], T0)
    assert set(sim.positions(dry_run=True)) == {"U"} and live.positions(dry_run=True) == {}
    assert live.positions(dry_run=True) == {} and sim.positions(dry_run=False) == {}
    # the same market settles in each book once
    s = PositionSettled(
        slug=SLUG, asset_id="U", outcome="Up", won=True, size=10, payout=1, pnl=4.8, ts_ns=T0
    )
    assert sim.record_settlement(s) and live.record_settlement(s) and not sim.record_settlement(s)
    conn = db.connect(path, readonly=True)
    rows = conn.execute("SELECT venue, dry_run FROM settlements ORDER BY venue").fetchall()
    assert [tuple(r) for r in rows] == [("live", 1), ("sim", 1)]
    assert [f.venue for f in ledger_fills(conn, "pe", 0, "sim", True)] == ["sim"]
    assert ledger_fills(conn, "pe", 0, "live", True) == []
    assert len(ledger_settlements(conn, SLUG, "live", True)) == 1


def test_a_settlement_in_one_book_leaves_the_other_books_position_in_that_token_open(
    tmp_path: Path,
) -> None:
    """A new user's test (2026-12-01): a real position held 20 Up shares, the tree was restarted
    in paper mode, the paper book bought and settled the same token; back in real mode execution
    had dropped the real position (no settlement row, never redeemed) while strategy booked its
    payout. The real venue's token ids are the same in both books, so this happens whenever
    paper and real hold one outcome of one window."""
    path = tmp_path / "trader.db"
    led = Ledger(path, venue="live")
    real = _fill("pe-1e")
    paper = _fill("pe-2e")
    led.record_fills("pe-1e", [msgspec_replace(real, dry_run=False)], T0)
    led.record_fills("pe-2e", [paper], T0)
    assert set(led.positions(dry_run=False)) == {"U"} and set(led.positions(dry_run=True)) == {"U"}
    paid = PositionSettled(
        slug=SLUG, asset_id="U", outcome="Up", won=True, size=10, payout=10, pnl=4.8, ts_ns=T0
    )
    assert led.record_settlement(paid)  # the paper book's (dry_run defaults to paper)
    assert led.positions(dry_run=True) == {}
    (pos,) = led.positions(dry_run=False).values()
    assert pos.size == 10.0, "the real position must stay open until the real book settles it"
    assert led.record_settlement(msgspec_replace(paid, dry_run=False))
    assert led.positions(dry_run=False) == {}


def test_core_counters_and_halts_are_per_book(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "trader.db")
    sim = StrategyCore(
        StrategyConfig(), store.load(book_key("sim", "paper")), venue="sim", mode="paper"
    )
    sim.step(_fill("pe-1-2-3e"), 0)
    sim.step(TriggerEmergencyStop(request_id="r"), 0)
    sim.step(MarketResolved(slug=SLUG, winning_outcome="Down", ts_ns=T0 + NS), 0)
    assert sim.risk_state().venue == "sim" and sim.halt_reasons() == ["emergency_stop"]
    assert sim.loss_streak == 1 and sim.daily_pnl < 0
    store.save(sim.persistent(), sim.now_ns, book_key("sim", "paper"))
    live = StrategyCore(
        StrategyConfig(), store.load(book_key("live", "paper")), venue="live", mode="paper"
    )
    r = live.risk_state()
    assert (r.halted, r.trades_today, r.daily_pnl, r.loss_streak) == (False, 0, 0.0, 0)
    back = StrategyCore(StrategyConfig(), store.load(book_key("sim", "paper")), venue="sim")
    assert back.emergency_stop and back.loss_streak == 1


def test_state_from_before_books_is_adopted_once(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "trader.db")
    store.save({"emergency_stop": True}, T0)  # the old single key
    assert store.adopt_legacy(book_key("sim", "paper"))
    assert store.load(book_key("sim", "paper")) == {"emergency_stop": True}
    assert not store.adopt_legacy(book_key("live", "paper"))
    assert store.load(book_key("live", "paper")) is None


def test_switching_venue_starts_the_other_books_counters(
    iso_env: dict[str, str], tmp_path: Path
) -> None:
    """The issue's case, with the real process: a sim session's halt of a market (about that
    book's money) is not the live session's (there, it had blocked live paper trading for the
    day). The operator's global emergency stop is every book's: see the next test."""
    cfg = tmp_path / "config.json"
    cfg.write_text((REPO / "config" / "config.json").read_text())
    h = Harness(iso_env, cfg)
    try:
        h.env["POLYEDGE_VENUE"] = "sim"
        h.start()
        reply = h.command(TriggerEmergencyStop(request_id="stop-sim", reason="test", market=MKT))
        assert reply.ok and reply.state["markets"][MKT]["halted"], reply.state
        h.stop()
        for venue, halted in (("live", False), ("sim", True)):
            h.seen.clear()
            h.env["POLYEDGE_VENUE"] = venue
            h.start()
            risk = wait_for(
                lambda v=venue: h.poll(RiskState, lambda r: r.venue == v), 10, what="risk state"
            )
            assert risk.mode == "paper" and risk.markets[MKT]["halted"] is halted, (venue, risk)
            assert not risk.halted, risk  # no global halt in either
            h.stop()
    finally:
        h.close()


def test_the_emergency_stop_holds_in_every_book_until_cleared(
    iso_env: dict[str, str], tmp_path: Path
) -> None:
    """BREAKER3 finding 2: an emergency stop set while paper trading used to stay with the
    paper book; the tree restarted in real mode came up un-halted and bought 20 s later. Now
    the stop set in the paper book halts the real book's process from its start, a clear there
    clears it for the paper book too, and the day's P&L stays per book."""
    cfg = tmp_path / "config.json"
    cfg.write_text((REPO / "config" / "config.json").read_text())
    h = Harness(iso_env, cfg)
    real = {"DRY_RUN": "false", "ENABLE_REAL_TRADING": "true", "PRIVATE_KEY": "0x" + "11" * 32}
    db_path = load_settings(h.env, dotenv=None).database_path

    def start(mode: str) -> RiskState:
        h.seen.clear()
        for k, v in real.items():
            if mode == "real":
                h.env[k] = v
            else:
                h.env.pop(k, None)
        h.start()
        return wait_for(
            lambda: h.poll(RiskState, lambda r: r.mode == mode), 10, what=f"{mode} risk state"
        )

    try:
        h.env["POLYEDGE_VENUE"] = "sim"
        assert not start("paper").halted
        reply = h.command(TriggerEmergencyStop(request_id="stop-paper", reason="looks wrong"))
        assert reply.ok and reply.state["risk"]["emergency_stop"]
        h.stop()
        risk = start("real")  # same database, the other book
        assert (risk.venue, risk.mode) == ("sim", "real")
        assert risk.emergency_stop and risk.halted and "emergency_stop" in risk.reasons, risk
        stop, books = book_summaries(db_path, time.time_ns())
        assert stop == {"emergency_stop": True, "reason": "looks wrong", "book": "core:sim:paper"}
        assert set(books) == {"core:sim:paper", "core:sim:real"}
        reply = h.command(ClearEmergencyStop(request_id="clear-real"))
        assert reply.ok and not reply.state["risk"]["emergency_stop"], reply.state
        h.stop()
        risk = start("paper")  # the clear in the real book cleared it for the paper book
        assert not risk.emergency_stop and not risk.halted, risk
        h.stop()
        assert not StateStore(db_path).stop()["emergency_stop"]
    finally:
        h.close()


def test_a_stop_saved_before_it_was_global_holds_in_every_book(tmp_path: Path) -> None:
    """Upgrade: a stop kept only in a book's row (older versions) is every book's stop."""
    store = StateStore(tmp_path / "trader.db")
    assert store.stop() == {"emergency_stop": False, "reason": "", "book": ""}
    store.save({"emergency_stop": True, "emergency_reason": "old"}, T0, book_key("sim", "paper"))
    assert store.stop() == {"emergency_stop": True, "reason": "old", "book": "core:sim:paper"}
    store.save({"emergency_stop": False, "reason": "", "book": ""}, T0 + 1, STOP_KEY)
    assert not store.stop()["emergency_stop"]  # once it has its own row, that row is the truth
