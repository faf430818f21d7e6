"""Chaos: `kill -9` execution while a paper entry waits out its simulated latency (BREAKER2
finding 6). The restarted execution rejects the order it never sent (`restart_not_sent`) at once,
before strategy's SUB socket has reconnected to its new publisher, so that answer used to be lost:
strategy logged `intent_unanswered` ~7 s later and kept the entry counted in `trades_today`.

Now strategy, on the first heartbeat of a new execution process, asks about every order it sent
before that process started (a `CancelOrder` naming it), and execution answers an order that is
already final with its final answer again. And `trades_today` counts entries that filled, so it
matches the ledger, also after a strategy restart."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from common import topics
from common.schema import Decision, RiskState
from tests.chaos.chaos_harness import HOLD_CONFIG, Tree, ns, running_tree
from tests.conftest import wait_for

pytestmark = pytest.mark.whole_system  # starts a supervisord tree (pyproject markers)

# entries as in the other chaos tests, each filled 1.5 s after its intent: a kill -9 in that
# time leaves the order in execution's latency queue, never sent
CONFIG = {**HOLD_CONFIG, "dry_run_latency_ms": 1500}
UNANSWERED_AFTER_S = 7.0  # strategy gives up on an intent this long after it (ttl + grace)


@pytest.fixture(scope="module")
def tree() -> Iterator[Tree]:
    with running_tree(CONFIG, window_s=20) as t:
        yield t


def _filled_entries(tree: Tree) -> int:
    """Entries with at least one fill in the ledger (the trades strategy should count)."""
    rows = tree.query(
        "SELECT COUNT(DISTINCT client_order_id) FROM fills WHERE side = 'BUY' AND dry_run = 1"
    )
    return int(rows[0][0])


def _counts_agree(tree: Tree) -> tuple[int, int] | None:
    st = tree.strategy_state()
    got = (int(st.get("trades_today", -1)), _filled_entries(tree))
    return got if got[0] == got[1] else None


def test_rejection_of_an_unsent_order_reaches_strategy_after_kill9(tree: Tree) -> None:
    tree.all_running()
    t0 = ns()
    enter = tree.recorder.first(
        topics.DECISION,
        lambda m: isinstance(m, Decision) and m.action == "enter" and bool(m.client_order_id),
        t0,
        60,
    )
    old_pid, t_kill = tree.kill9("execution")
    coid = enter.msg.client_order_id  # type: ignore[union-attr]
    assert (t_kill - enter.t_ns) / 1e9 < 1.0, "the kill came after the paper latency"
    tree.wait_restarted("execution", old_pid)

    def ledger_answer() -> tuple[str, str] | None:
        rows = tree.query("SELECT status, code FROM orders WHERE client_order_id = ?", (coid,))
        return (
            (rows[0][0], rows[0][1]) if rows and rows[0][0] not in ("intent", "sending") else None
        )

    status, code = wait_for(ledger_answer, 20, what=f"the ledger's outcome of {coid}")
    assert status == "rejected" and code in ("restart_not_sent", "expired"), (status, code)
    assert tree.query("SELECT COUNT(*) FROM fills WHERE client_order_id = ?", (coid,)) == [(0,)]

    # strategy acts on the rejection (a "skip" naming the order), well before it would have
    # given the intent up as unanswered
    skip = tree.recorder.first(
        topics.DECISION,
        lambda m: isinstance(m, Decision) and m.action == "skip" and m.client_order_id == coid,
        t_kill,
        UNANSWERED_AFTER_S + 10,
    )
    took = (skip.t_ns - enter.t_ns) / 1e9
    assert took < UNANSWERED_AFTER_S, f"the rejection reached strategy only {took:.1f} s later"
    assert skip.msg.reason.startswith("order_rejected:"), skip.msg  # type: ignore[union-attr]
    risk = [
        json.loads(line)
        for line in (tree.root / "logs" / "risk.jsonl").read_text().splitlines()
        if line.strip()
    ]
    assert not [
        r for r in risk if r["event"] == "intent_unanswered" and r.get("client_order_id") == coid
    ], "strategy gave the intent up as unanswered"
    asked = (tree.root / "logs" / "strategy.jsonl").read_text()
    assert '"order_asked_again"' in asked and coid in asked, "strategy did not ask about it"

    # trades_today counts filled entries only: the rejected one is not a trade
    agreed = wait_for(lambda: _counts_agree(tree), 15, what="trades_today = filled entries")
    bus = tree.recorder.first(topics.RISK_STATE, lambda m: isinstance(m, RiskState), ns(), 10).msg
    assert bus.trades_today <= _filled_entries(tree)  # type: ignore[union-attr]

    # a strategy restart keeps the count consistent with the ledger
    pid = tree.sup.pid("strategy")
    tree.sup.ctl("restart", "strategy")
    tree.wait_restarted("strategy", pid, 30)
    after = wait_for(lambda: _counts_agree(tree), 15, what="trades_today = filled entries")
    assert after[0] >= agreed[0]
