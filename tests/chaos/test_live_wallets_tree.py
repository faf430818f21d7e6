"""The whole system trading real (signed) orders against the simulated venue, as issue 13's
"Done when" asks: live mode, a deposit wallet (`SIGNATURE_TYPE=3` with its `FUNDER`), 20-second
windows and an eager config. It must trade for 3+ windows with no manual step, every order
accepted (none refused for precision or maker), and the funder's pUSD at the venue equal to the
ledger's cash to the cent (fills at their prices and fees, settlements at 1 or 0; the simulated
venue pays a resolved position into the wallet, which stands in for redemption)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from eth_account import Account

from common.config import sim_urls
from common.wallets import deposit_wallets
from tests.chaos.chaos_harness import HOLD_CONFIG, Tree, running_tree
from tests.conftest import free_port, wait_for

START_USD = 1000.0  # the simulated venue's opening balance per wallet
SIGNATURE_TYPE = int(os.environ.get("POLYEDGE_TEST_SIGNATURE_TYPE", "3"))


@pytest.fixture(scope="module")
def tree() -> Iterator[tuple[Tree, str]]:
    key = Account.create()  # throwaway, only ever seen by the simulator
    sig_type = SIGNATURE_TYPE
    funder = deposit_wallets(key.address)[0] if sig_type == 3 else key.address
    sim_port = free_port()
    live = {
        "DRY_RUN": "false",
        "ENABLE_REAL_TRADING": "true",
        "PRIVATE_KEY": key.key.hex(),
        "SIGNATURE_TYPE": str(sig_type),
        **({"FUNDER": funder} if sig_type else {}),
        "SIM_PORT": str(sim_port),
        **sim_urls(sim_port),  # pinned: nothing in this tree can reach a real venue
    }
    with running_tree(HOLD_CONFIG, window_s=20, extra_env=live, sim_port=sim_port) as t:
        yield t, funder


def ledger_cash(tree: Tree) -> float:
    """Opening balance - what BUYs paid (fees included) + what SELLs got + settlement payouts."""
    cash = START_USD
    for side, price, size, fee in tree.query(
        "SELECT side, price, size, fee FROM fills WHERE dry_run=0"
    ):
        cash += -(price * size + fee) if side == "BUY" else price * size - fee
    for size, payout in tree.query("SELECT size, payout FROM settlements"):
        cash += size * payout
    return cash


def test_live_deposit_wallet_trades_three_windows_and_cash_matches(
    tree: tuple[Tree, str],
) -> None:
    t, funder = tree

    def settled_windows() -> int | None:
        n = t.query("SELECT COUNT(DISTINCT slug) FROM settlements")[0][0]
        return n if n >= 3 else None

    wait_for(settled_windows, 240, 1.0, what="3 windows traded and settled")
    refused = t.query(
        "SELECT client_order_id, code, reason FROM orders WHERE mode='live' AND code IN "
        "('amount_precision', 'auth', 'invalid_order', 'venue_rejected')"
    )
    assert refused == [], refused
    state = t.sim_state()
    mine = [o for o in state["orders"] if o.get("maker", "").lower() == funder.lower()]
    assert mine and all(o["signatureType"] == SIGNATURE_TYPE for o in mine)
    assert all(int(o["makerAmount"]) > 0 for o in mine)

    def cash_agrees() -> tuple[float, float] | None:
        venue = t.sim_state()["accounts"].get(funder.lower(), {}).get("pusd")
        ours = ledger_cash(t)
        return (venue, ours) if venue is not None and abs(venue - ours) < 0.005 else None

    try:
        wait_for(cash_agrees, 30, 0.5, what="the wallet's pUSD equal to the ledger's cash")
    except AssertionError:
        venue = t.sim_state()["accounts"].get(funder.lower(), {}).get("pusd")
        raise AssertionError(f"venue pUSD {venue} vs ledger cash {ledger_cash(t)}") from None
