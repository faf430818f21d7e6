"""The whole system trading real (signed) orders against the simulated venue, as issue 13's
"Done when" asks: live mode, 20-second windows and an eager config, trading for 3+ windows with
no manual step, every order accepted (none refused for precision or maker), and the funder's pUSD
at the venue equal to the ledger's cash to the cent (fills at their prices and fees, settlements
at 1 or 0). Every wallet type: a deposit wallet (`SIGNATURE_TYPE=3` with its `FUNDER`), a proxy
(1), a Safe (2) and an EOA (0), all with the venue's `manual_redemption` on, so every winning
token reaches the wallet only through the bot's own redemption: on chain for the EOA, gasless
through the (simulated) relayer for the others, each resolved market once; strategy's risk
state and observe's `/api/status` then say the cash is redeemed, none awaiting."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from eth_account import Account

from common.config import sim_urls
from common.wallets import deposit_wallets, proxy_wallet, safe_wallet
from tests.chaos.chaos_harness import HOLD_CONFIG, Tree, running_tree
from tests.conftest import free_port, wait_for

pytestmark = pytest.mark.whole_system  # starts a supervisord tree (pyproject markers)

START_USD = 1000.0  # the simulated venue's opening balance per wallet


@pytest.fixture(
    scope="module", params=[3, 0, 1, 2], ids=["deposit_wallet", "eoa_redeeming", "proxy", "safe"]
)
def tree(request: pytest.FixtureRequest) -> Iterator[tuple[Tree, str, int]]:
    key = Account.create()  # throwaway, only ever seen by the simulator
    sig_type = int(request.param)
    funder = {
        0: key.address,
        1: proxy_wallet(key.address),
        2: safe_wallet(key.address),
        3: deposit_wallets(key.address)[0],
    }[sig_type]
    sim_port = free_port()
    live = {
        "DRY_RUN": "false",
        "ENABLE_REAL_TRADING": "true",
        "PRIVATE_KEY": key.key.hex(),
        "SIGNATURE_TYPE": str(sig_type),
        **({"FUNDER": funder} if sig_type else {}),
        # a relayer API key for types 1-3 (the simulated relayer wants the headers present)
        "RELAYER_API_KEY": "sim-relayer-key",
        "RELAYER_API_KEY_ADDRESS": key.address,
        "SIM_PORT": str(sim_port),
        **sim_urls(sim_port),  # pinned: nothing in this tree can reach a real venue
    }
    with running_tree(HOLD_CONFIG, window_s=20, extra_env=live, sim_port=sim_port) as t:
        t.fault("manual_redemption")
        yield t, funder, sig_type


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


def test_live_trades_three_windows_and_the_wallet_matches_the_ledger(
    tree: tuple[Tree, str, int],
) -> None:
    t, funder, sig_type = tree

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
    assert mine and all(o["signatureType"] == sig_type for o in mine)
    assert all(int(o["makerAmount"]) > 0 for o in mine)

    def cash_agrees() -> tuple[float, float] | None:
        venue = t.sim_state()["accounts"].get(funder.lower(), {}).get("pusd")
        ours = ledger_cash(t)
        return (venue, ours) if venue is not None and abs(venue - ours) < 0.005 else None

    # every resolved market with a winning position redeemed by the bot, once (EOA on chain,
    # 1-3 through the relayer); one held only on its losing side is not (it would pay nothing)

    def redeemed() -> bool:
        won = t.query(
            "SELECT COUNT(DISTINCT slug) FROM settlements WHERE dry_run=0 AND won=1 AND size > 0"
        )[0][0]
        rows = t.query("SELECT state FROM redemptions WHERE dry_run=0")
        return len(rows) == won and all(r[0] == "confirmed" for r in rows)

    wait_for(redeemed, 60, 0.5, what="every resolved market with a winning position redeemed")
    lost_only = t.query(
        "SELECT slug FROM settlements WHERE dry_run=0 GROUP BY slug HAVING MAX(won) = 0"
    )
    redeemed_slugs = {r[0] for r in t.query("SELECT slug FROM redemptions WHERE dry_run=0")}
    assert not redeemed_slugs & {r[0] for r in lost_only}, "a market that pays nothing redeemed"
    paid = t.sim_state()["accounts"][funder.lower()]["redemptions"]
    n = t.query("SELECT COUNT(*) FROM redemptions WHERE dry_run=0")[0][0]
    assert len({p["condition_id"] for p in paid}) == n
    if sig_type:
        refs = t.query("SELECT tx_hash FROM redemptions WHERE dry_run=0")
        assert all(str(r[0]).startswith("relayer:") for r in refs), refs

    def shown() -> dict | None:
        q = "SELECT cash_returned FROM redemptions WHERE dry_run=0 AND state='confirmed'"
        expected = sum(r[0] for r in t.query(q))
        rd = t.status().get("redemptions") or {}
        ok = rd.get("awaiting_redemption_usd") == 0 and rd.get("open") == 0
        return rd if ok and abs(rd.get("redeemed_usd", -1) - expected) < 1e-6 else None

    wait_for(shown, 15, 0.5, what="/api/status: everything redeemed, nothing awaiting")
    try:
        wait_for(cash_agrees, 30, 0.5, what="the wallet's pUSD equal to the ledger's cash")
    except AssertionError:
        venue = t.sim_state()["accounts"].get(funder.lower(), {}).get("pusd")
        raise AssertionError(f"venue pUSD {venue} vs ledger cash {ledger_cash(t)}") from None
