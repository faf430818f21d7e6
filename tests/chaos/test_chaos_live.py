"""Chaos with real (signed, V2) orders against the simulated venue: the whole tree in live mode
(all three switches on, a throwaway key, every venue URL pinned to the local simulator). An order
is placed at the venue but its answer is held back, and execution is `kill -9`ed while it waits.
After the restart the order must be reconciled from the venue exactly once: no second placement,
the fill in the ledger matching what the venue matched, and the strategy holding that position."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account

from common.config import sim_urls
from tests.chaos.chaos_harness import HOLD_CONFIG, Tree, ns, running_tree
from tests.conftest import free_port, wait_for

pytestmark = pytest.mark.whole_system  # starts a supervisord tree (pyproject markers)


@pytest.fixture(scope="module")
def tree() -> Iterator[Tree]:
    sim_port = free_port()
    live = {
        "DRY_RUN": "false",
        "ENABLE_REAL_TRADING": "true",
        "PRIVATE_KEY": Account.create().key.hex(),  # throwaway, only ever seen by the simulator
        "EXEC_RECONCILE_GRACE_MS": "4000",
        "SIM_PORT": str(sim_port),
        **sim_urls(sim_port),  # pinned: nothing in this tree can reach a real venue
    }
    with running_tree(HOLD_CONFIG, window_s=20, extra_env=live, sim_port=sim_port) as t:
        yield t


def venue_orders(tree: Tree) -> list[dict[str, Any]]:
    return list(tree.sim_state().get("orders") or [])


def test_kill9_execution_while_the_venue_holds_the_answer(tree: Tree) -> None:
    # live trading works at all: a signed order was matched at the venue and filled in the ledger
    wait_for(
        lambda: tree.query("SELECT 1 FROM orders WHERE mode='live' AND status='filled'"),
        60,
        what="a first live fill",
    )
    known = {o["id"] for o in venue_orders(tree)}
    t_fault = ns()
    tree.fault("order_timeout_placed", "clob", count=1, seconds=20)

    def held() -> tuple[str, dict[str, Any]] | None:
        new = [o for o in venue_orders(tree) if o["id"] not in known]
        if not new:
            return None
        o = new[0]  # the ledger may not know the venue's id yet: match the order itself
        # the first order of that token and side that execution actually sent after the fault
        rows = tree.query(
            "SELECT o.client_order_id FROM orders o WHERE o.mode='live' AND o.ts_received_ns > ? "
            "AND o.asset_id=? AND o.side=? AND EXISTS (SELECT 1 FROM order_events e "
            "WHERE e.client_order_id=o.client_order_id AND e.event='sending') "
            "ORDER BY o.ts_received_ns",
            (t_fault, o["asset_id"], o["side"]),
        )
        return (rows[0][0], o) if rows else None

    try:
        coid, placed = wait_for(held, 90, 0.05, what="an order placed at the venue, answer held")
    except AssertionError as e:
        new = [
            {k: o.get(k) for k in ("id", "side", "original_size", "status", "created_at")}
            for o in venue_orders(tree)
            if o["id"] not in known
        ]
        rows = tree.query(
            "SELECT client_order_id, side, size, status, reason FROM orders WHERE ts_received_ns > ?",
            (t_fault,),
        )
        raise AssertionError(
            f"{e}; new venue orders: {new}; ledger since the fault: {rows}"
        ) from None
    old_pid, _ = tree.kill9("execution")
    tree.wait_restarted("execution", old_pid)

    def settled() -> tuple[Any, ...] | None:
        rows = tree.query(
            "SELECT status, filled_size, venue_order_id FROM orders WHERE client_order_id=?",
            (coid,),
        )
        return rows[0] if rows and rows[0][0] in ("filled", "rejected", "cancelled") else None

    status, filled, venue_id = wait_for(settled, 30, what=f"{coid} reconciled after the restart")
    after = [o for o in venue_orders(tree) if o["id"] not in known]
    from_intent = [o for o in after if o["id"] == placed["id"]]
    assert len(from_intent) == 1
    others = [o for o in after if o["id"] != placed["id"]]
    # anything else placed since must be a later, distinct intent (never a re-send of this one)
    later = {
        r[0]
        for r in tree.query("SELECT venue_order_id FROM orders WHERE client_order_id!=?", (coid,))
    }
    assert all(o["id"] in later for o in others), (others, later)

    matched = float(from_intent[0]["size_matched"] or 0)  # the venue's word, after the answer
    events = tree.query(
        "SELECT event, detail FROM order_events WHERE client_order_id=? ORDER BY id", (coid,)
    )
    assert matched == 0 or venue_id == placed["id"], (
        f"{coid} ended {status} (filled {filled}) with venue id {venue_id!r}, but the venue "
        f"placed it as {placed['id']} and matched {matched}; ledger events: {events}"
    )
    assert status == "filled" if matched > 0 else status in ("rejected", "cancelled"), status
    assert filled == pytest.approx(matched), (filled, matched)
    fills = tree.query("SELECT SUM(size), COUNT(*) FROM fills WHERE client_order_id=?", (coid,))[0]
    assert (fills[0] or 0.0) == pytest.approx(matched)
    assert tree.ledger_problems() == []
    if matched > 0 and placed["side"] == "BUY":
        wait_for(
            lambda: (
                (p := tree.position())
                and p["asset_id"] == placed["asset_id"]
                and p["size"] == pytest.approx(matched)
            ),
            10,
            what="strategy to hold the reconciled position",
        )
