"""Maker mode on the whole tree in live mode against the simulated venue (issue 18): strategy's
post-only quotes rest at the venue (/sim/state), and none is left resting after its window's
entry cut-off, after a halt (emergency stop), or after a `kill -9` of execution (nobody
heartbeats: the venue's dead-man switch would cancel them ~10 s later, PROTOCOLS.md section 4,
and the restarted execution cancels at once those its ledger shows resting and never re-sends
them). A throwaway key; every venue URL pinned to the local
simulator (nothing here can reach a real venue)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from eth_account import Account

from common import topics
from common.config import sim_urls
from services.execution.core import MAKER_RECONCILE_INTERVAL_NS
from tests.chaos.chaos_harness import HOLD_CONFIG, Tree, ns, running_tree
from tests.conftest import free_port, holds, wait_for

pytestmark = pytest.mark.whole_system  # starts a supervisord tree (pyproject markers)

WINDOW_S = 30
CUTOFF_S = 8  # min_seconds_before_close: quotes are cancelled 1 s before it
MAKER_CONFIG: dict[str, Any] = {
    **HOLD_CONFIG,
    "order_type": "maker",
    "min_seconds_before_close": CUTOFF_S,
}


KEY = Account.create().key.hex()  # throwaway, only ever seen by the simulator
PORTS: dict[str, int] = {}


@pytest.fixture(scope="module")
def tree() -> Iterator[Tree]:
    sim_port = PORTS["sim"] = free_port()
    live = {
        "DRY_RUN": "false",
        "ENABLE_REAL_TRADING": "true",
        "PRIVATE_KEY": KEY,
        "SIM_PORT": str(sim_port),
        **sim_urls(sim_port),
    }
    with running_tree(MAKER_CONFIG, window_s=WINDOW_S, extra_env=live, sim_port=sim_port) as t:
        yield t


def live_orders(tree: Tree) -> list[dict[str, Any]]:
    return [o for o in tree.sim_state().get("orders") or [] if o.get("status") == "LIVE"]


def slug_of(tree: Tree, venue_order_id: str) -> str:
    rows = tree.query("SELECT slug FROM orders WHERE venue_order_id=?", (venue_order_id,))
    return rows[0][0] if rows else ""


def wait_quote(tree: Tree, timeout: float = 90) -> list[dict[str, Any]]:
    return wait_for(lambda: live_orders(tree) or None, timeout, 0.2, what="a quote resting")


def test_quotes_rest_and_none_outlives_its_window_cut_off(tree: Tree) -> None:
    first = wait_quote(tree)
    assert all(o["side"] == "BUY" and o["order_type"] in ("GTC", "GTD") for o in first)
    rows = tree.query(
        "SELECT order_type, status FROM orders WHERE venue_order_id=?", (first[0]["id"],)
    )
    assert rows and rows[0][0] in ("GTC", "GTD"), rows
    # watch two windows: a quote seen resting is never past its window's cut-off (+1 s slack
    # for the cancel's round trip under load)
    seen: set[str] = set()
    late: list[str] = []  # quotes seen resting past their cut-off

    def none_past_cut_off() -> bool:
        now = time.time()
        for o in live_orders(tree):
            slug = slug_of(tree, o["id"])
            if not slug:
                continue  # placed, the ledger row not written with its id yet
            seen.add(o["id"])
            cutoff = int(slug.rsplit("-", 1)[1]) + WINDOW_S - CUTOFF_S
            if now >= cutoff + 1.0:
                late.append(f"{o['id']} ({slug}) rests {now - cutoff:.1f} s after cut-off")
        return not late

    t0 = ns()
    try:
        holds(none_past_cut_off, 2 * WINDOW_S, 0.25, what="no quote past its cut-off")
    except AssertionError as e:
        raise AssertionError(f"{e}: {late}") from None
    # a quote rests only until it fills (then the position is held to resolution) or the book
    # moves: a CI run under load caught none resting at a poll over two windows. Watch on, the
    # same check, until one is seen (two more windows at most), and name strategy's decisions
    # when none ever is, so a strategy that stopped quoting is told from bad luck
    try:
        wait_for(lambda: none_past_cut_off() and seen, 2 * WINDOW_S, 0.25, what="a quote resting")
    except AssertionError:
        pass  # said below, with the reason
    assert not late, late
    reasons = Counter(
        f"{s.msg.action}:{s.msg.reason}"  # type: ignore[attr-defined]
        for s in tree.recorder.since(t0, topics.DECISION)
    )
    assert seen, f"no quote was seen resting over four windows; strategy's decisions: {reasons}"
    # every quote cancelled by strategy is answered "cancelled" in the ledger
    assert tree.query("SELECT COUNT(*) FROM orders WHERE status='cancelled'")[0][0] > 0


def test_a_halt_cancels_every_resting_quote(tree: Tree) -> None:
    wait_quote(tree)
    r = tree.post("/api/emergency-stop", {"reason": "maker test"})
    assert r.status_code == 200, r.text
    try:
        wait_for(lambda: not live_orders(tree), 5, 0.1, what="no quote resting after the halt")
        holds(lambda: not live_orders(tree), 2, 0.1, what="no quote placed while halted")
    finally:
        r = tree.post("/api/emergency-stop/clear")
        assert r.status_code == 200, r.text


def test_kill9_of_execution_leaves_nothing_resting(tree: Tree) -> None:
    ids = {o["id"] for o in wait_quote(tree)}
    old_pid, _ = tree.kill9("execution")
    tree.wait_restarted("execution", old_pid)

    def gone() -> bool:
        states = {o["id"]: o["status"] for o in tree.sim_state().get("orders") or []}
        return all(states.get(i) != "LIVE" for i in ids)

    # the restarted execution cancels what its ledger shows resting; the venue's dead-man
    # switch (the heartbeat stopped with the process) would ~10 s later
    wait_for(gone, 25, 0.25, what="the killed execution's quotes cancelled by the venue")


def trade_through_a_quote(tree: Tree) -> str:
    """The simulated venue's `flow_trade` test control (services/simvenue/README.md) on a quote
    in execution's ledger: one taker of the venue's own flow trades through it by price-time
    priority (the quoters ahead of it first). The flow's own takers reach a quote only by
    chance (~0.8 trades a second, half on its side, most smaller than the size ahead of it), so
    the test makes the fill certain this way. A quote strategy replaced or cancelled just
    before the control is not resting any more (400): the next one. Returns the order id."""
    for _ in range(10):
        quotes = wait_for(
            lambda: [o for o in live_orders(tree) if slug_of(tree, o["id"])] or None,
            3 * WINDOW_S,
            0.2,
            what="a quote resting and in the ledger",
        )
        for o in quotes:
            r = httpx.post(
                tree.sim + "/sim/fault", json={"name": "flow_trade", "order_id": o["id"]}, timeout=5
            )
            if r.status_code == 200:
                return o["id"]
            assert r.status_code == 400 and "is not resting" in r.json()["error"], r.text
    pytest.fail("ten quotes in a row left the book before the flow trade")


# execution books a maker fill from the user channel (polled every MAKER_POLL_INTERVAL_NS) or,
# failing that, REST (every MAKER_RECONCILE_INTERVAL_NS): a few reconciles, slack for load
FILL_DEADLINE_S = 4 * MAKER_RECONCILE_INTERVAL_NS / 1e9 + 10


def test_live_maker_fills_reach_the_ledger_as_maker_with_the_rebate(tree: Tree) -> None:
    """The simulated flow fills a resting quote (made certain by the `flow_trade` control):
    execution reads the venue's trades (the adapter's `resting_fills`) and books a maker fill:
    no fee, the rebate earned."""
    oid = trade_through_a_quote(tree)
    rows = wait_for(
        lambda: (
            tree.query(
                "SELECT f.price, f.size, f.fee, f.rebate_usd, o.limit_price FROM fills f "
                "JOIN orders o USING (client_order_id) WHERE f.liquidity='maker' "
                "AND o.venue_order_id=?",
                (oid,),
            )
            or None
        ),
        FILL_DEADLINE_S,
        0.5,
        what="the traded-through quote's maker fill in the ledger",
    )
    for price, size, fee, rebate, limit in rows:
        assert fee == 0 and price == pytest.approx(limit) and size > 0
        assert rebate >= 0


def test_strategy_shutdown_cancels_its_quotes(tree: Tree) -> None:
    """Execution keeps heartbeating when strategy stops, so only strategy's CancelOrder at
    shutdown takes its quotes off: a quote with its cut-off well ahead is gone within 5 s."""

    def early_quote() -> str | None:
        for o in live_orders(tree):
            slug = slug_of(tree, o["id"])
            if slug and int(slug.rsplit("-", 1)[1]) + WINDOW_S - CUTOFF_S - time.time() > 8:
                return o["id"]
        return None

    oid = wait_for(early_quote, 2 * WINDOW_S, 0.2, what="a quote with its cut-off 8 s away")
    tree.sup.ctl("stop", "strategy", check=True)
    try:
        states = lambda: {o["id"]: o["status"] for o in tree.sim_state().get("orders") or []}  # noqa: E731
        wait_for(lambda: states().get(oid) != "LIVE", 5, 0.1, what="the quote cancelled")
        assert states()[oid] in ("CANCELED", "MATCHED"), states()[oid]
    finally:
        tree.sup.ctl("start", "strategy", check=True)
        tree.sup.wait_running(("strategy",), 30)


def test_a_venue_cancel_frees_strategy_s_quote_at_once(tree: Tree) -> None:
    """The venue takes a resting quote off by itself (as its dead-man switch, a GTD's expiry or
    the market closing would; here a DELETE with the tree's own API key, behind execution's
    back): execution hears the user channel's CANCELLATION and tells strategy (OrderAccepted
    "cancelled", ledger reason `venue: CANCELED`) within seconds, and strategy frees its quote
    at once (before the window's cut-off) instead of waiting for the pending quote to expire 5 s
    after it, so it may quote that window again."""
    from common.config import Secret
    from services.execution.live import LiveVenue

    def early_quote() -> tuple[str, str] | None:
        for o in live_orders(tree):
            slug = slug_of(tree, o["id"])
            if slug and int(slug.rsplit("-", 1)[1]) + WINDOW_S - CUTOFF_S - time.time() > 12:
                return o["id"], slug
        return None

    v = LiveVenue(sim_urls(PORTS["sim"])["CLOB_API_URL"], Secret(KEY), log=lambda *a, **k: None)
    assert v.start()
    reasons: list[str] = []
    try:
        # a quote may be filled or replaced just before the DELETE (the DELETE then cancels
        # nothing), or strategy may cancel it in the same instant (execution's own cancel is then
        # in flight and the ledger names strategy's reason: `replace` in a CI run,
        # `price_above_max_entry` in another): the scenario did not happen cleanly, so it is
        # tried again on another quote, five times at most
        for _ in range(5):
            oid, slug = wait_for(
                early_quote, 3 * WINDOW_S, 0.2, what="a quote with its cut-off 12 s away"
            )
            if v.cancel([oid])["canceled"] != [oid]:
                reasons.append("left the book before the DELETE")
                continue
            t0 = time.monotonic()
            reason = wait_for(
                lambda oid=oid: (
                    (
                        r := tree.query(
                            "SELECT reason FROM orders WHERE venue_order_id=? AND status='cancelled'",
                            (oid,),
                        )
                    )
                    and r[0][0]
                ),
                10,
                0.1,
                what="the venue's cancel in execution's ledger",
            )
            if reason.startswith("venue:"):
                break
            reasons.append(f"cancelled by strategy at the same instant ({reason})")
        else:
            pytest.fail(f"five quotes in a row: {reasons}")
    finally:
        v.close()
    assert reason == "venue: CANCELED" and time.monotonic() - t0 < 5

    # strategy frees the quote on execution's answer (a `skip` decision `order_cancelled` naming
    # the quote), well before the cut-off, not by the pending quote's expiry 5 s after it. Whether
    # it then quotes the window again depends on the model's price at that moment (the simulated
    # market moves at random), so the freeing itself is what is checked (a CI run once waited 10 s
    # for a new quote the model no longer wanted).
    coid = tree.query("SELECT client_order_id FROM orders WHERE venue_order_id=?", (oid,))[0][0]
    freed = tree.recorder.first(
        topics.DECISION,
        lambda m: m.client_order_id == coid and m.reason == "order_cancelled",
        timeout=10,
    )
    cut_off = int(slug.rsplit("-", 1)[1]) + WINDOW_S - CUTOFF_S
    assert freed.t_ns < cut_off * 1_000_000_000, "freed only after the cut-off"
