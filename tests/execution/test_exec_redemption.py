"""Redemption: winning tokens pay nothing until redeemed. The live adapter redeems a resolved
market on chain from an EOA wallet (Polygon JSON-RPC, here the simulated venue's `/rpc` with
`manual_redemption` on): the wallet's pUSD rises by the winning shares, both outcomes' tokens
are cleared, a second redemption pays nothing; and the core books paper redemptions the same
way (a ledger row per market, never two)."""

from __future__ import annotations

import time
from decimal import Decimal as D

import pytest
from eth_account import Account

from common.config import Secret
from common.schema import OrderIntent
from services.execution.core import VenueError
from services.execution.live import LiveVenue
from tests.simvenue.conftest import SimProc, start_sim, stop_sim, wait_for

WINDOW_S = 12


@pytest.fixture(scope="module")
def rsim():
    s = start_sim("--window-seconds", str(WINDOW_S), "--seed", "11")
    try:
        s.fault(name="manual_redemption")
        yield s
    finally:
        stop_sim(s)


def buy(token: str, slug: str) -> OrderIntent:
    return OrderIntent(
        client_order_id=f"r{time.time_ns()}",
        slug=slug,
        asset_id=token,
        outcome="Up",
        side="BUY",
        order_type="FAK",
        limit_price=0.99,
        size=3.0,
        expires_ns=0,
        ts_intent_ns=0,
    )


def test_exec_eoa_redeems_a_resolved_market_once(rsim: SimProc) -> None:
    key = Account.create()
    v = LiveVenue(
        f"{rsim.http}/clob",
        Secret(key.key.hex()),
        log=lambda *a, **k: None,
        rpc_url=f"{rsim.http}/rpc",
    )
    assert v.start()

    def fresh() -> dict | None:
        cur = rsim.state()["current"]
        return cur if int(cur["slug"].rsplit("-", 1)[1]) + WINDOW_S - time.time() > 5 else None

    w = wait_for(fresh, 2 * WINDOW_S, what="a window with time left")
    for token in (w["up_token"], w["down_token"]):  # one of them wins
        it = buy(token, w["slug"])
        r = v.post(v.sign(it, D("0.99"), D("3")), it)
        assert r.outcome == "accepted" and r.trades, r
    me = key.address.lower()
    held = rsim.state()["accounts"][me]["tokens"]
    assert held[w["up_token"]] > 0 and held[w["down_token"]] > 0
    with pytest.raises(VenueError):  # not resolved yet: the transaction reverts
        tx = v.redeem(w["condition_id"])
        wait_for(lambda: v.redemption_status(tx) != "pending", 5)
        if v.redemption_status(tx) == "failed":
            raise VenueError("reverted")

    def resolved() -> bool:
        return w["condition_id"].lower() in rsim.state()["resolved_conditions"]

    wait_for(resolved, 4 * WINDOW_S, 0.5, what="the market resolved")
    before = rsim.state()["accounts"][me]
    tx = v.redeem(w["condition_id"])
    assert wait_for(lambda: v.redemption_status(tx) == "confirmed" and True, 10)
    after = rsim.state()["accounts"][me]
    paid = after["redemptions"][-1]["pusd"]
    # the winning side's shares, 1 pUSD each; the losing side's pay nothing
    held = {before["tokens"][w["up_token"]], before["tokens"][w["down_token"]]}
    assert any(paid == pytest.approx(h) for h in held)
    assert after["pusd"] == pytest.approx(before["pusd"] + paid)
    assert w["up_token"] not in after["tokens"] and w["down_token"] not in after["tokens"]
    assert after["redemptions"][-1]["tx_hash"] == tx
    # again: harmless, pays nothing
    tx2 = v.redeem(w["condition_id"])
    wait_for(lambda: v.redemption_status(tx2) == "confirmed" and True, 10)
    assert rsim.state()["accounts"][me]["pusd"] == pytest.approx(after["pusd"])
    v.close()


def test_exec_redemption_needs_the_relayer_for_wallets() -> None:
    v = LiveVenue(
        "http://127.0.0.1:9",
        Secret(Account.create().key.hex()),
        log=lambda *a, **k: None,
        signature_type=2,
        funder="0x" + "ab" * 20,
    )
    with pytest.raises(VenueError) as e:
        v.redeem("0x" + "00" * 32)
    assert e.value.code == "redeem_unsupported"
