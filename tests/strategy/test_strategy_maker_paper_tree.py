"""Maker mode in paper mode on the whole tree (issue 18): execution holds the post-only quotes
and fills them with the queue model from the simulated venue's books; the ledger has maker
fills with no fee and the rebate, and nothing rests at the venue itself (/sim/state)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.chaos.chaos_harness import HOLD_CONFIG, Tree, running_tree
from tests.conftest import wait_for

pytestmark = pytest.mark.whole_system  # starts a supervisord tree (pyproject markers)


@pytest.fixture(scope="module")
def tree() -> Iterator[Tree]:
    cfg = {**HOLD_CONFIG, "order_type": "maker", "min_seconds_before_close": 8}
    with running_tree(cfg, window_s=30) as t:
        yield t


def test_paper_maker_fills_from_the_queue_model(tree: Tree) -> None:
    rows = wait_for(
        lambda: (
            tree.query(
                "SELECT f.price, f.fee, f.rebate_usd, o.limit_price, o.order_type, f.dry_run "
                "FROM fills f JOIN orders o USING (client_order_id) WHERE f.liquidity='maker'"
            )
            or None
        ),
        150,
        0.5,
        what="a paper maker fill",
    )
    for price, fee, rebate, limit, order_type, dry_run in rows:
        assert fee == 0 and price == pytest.approx(limit) and dry_run == 1
        assert order_type in ("GTC", "GTD") and rebate >= 0
    assert not [o for o in tree.sim_state().get("orders") or [] if o.get("status") == "LIVE"]
    # the quote became the position: strategy counts it as the entry
    assert tree.query("SELECT COUNT(*) FROM orders WHERE order_type IN ('GTC','GTD')")[0][0] > 0
