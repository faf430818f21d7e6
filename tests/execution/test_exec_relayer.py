"""Gasless redemption and approvals of proxy (1), Safe (2) and deposit-wallet (3) accounts
through Polymarket's relayer.

What the key signs is checked against vectors computed with polymarket-client 0.14's own
functions (`polymarket/_internal/actions/relayer/calls.py` `encode_proxy_call`,
`encode_safe_multisend_call`, `ctf_redeem_positions_call`; `signing/proxy.py`
`build_proxy_transaction_hash` + `sign_proxy_message`; `signing/safe.py`
`sign_safe_transaction`; `signing/deposit_wallet.py` `sign_deposit_wallet_batch`) for the key
0x11..11 (its Safe and deposit wallet derived as the SDK does); the wheel was read, not installed.
Then the adapter against the simulated venue's relayer, which verifies each signature as the real
relayer must: a resolved market's winnings come back as pUSD to the wallet, once."""

from __future__ import annotations

import time
from decimal import Decimal as D

import httpx
import pytest
from eth_account import Account

from common import wallets
from common.config import Secret
from common.schema import OrderIntent
from services.execution.core import VenueError
from services.execution.live import COLLATERAL_ADAPTER, PUSD, LiveVenue
from tests.simvenue.conftest import SimProc, start_sim, stop_sim, wait_for

KEY = "0x" + "11" * 32
SIGNER = "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A"
SAFE = "0x75F00B003FBBBA193FABEB06284c3187a4C1232E"
DEPOSIT_WALLET = "0x8154deDBDAAA46c07453E47b5b6C0Ff60B8542b9"
RELAY = "0x7Ee8e1Ac0F1f7bC0b6a1f1D0F1e1dE8aAaBbCcDd"
REDEEM_DATA = (
    "0x01b7037c000000000000000000000000c011a7e12a19f7b1f670d46f03b03f3342e82dfb00000000000000"
    "00000000000000000000000000000000000000000000000000ababababababababababababababababababab"
    "ababababababababababababab00000000000000000000000000000000000000000000000000000000000000"
    "8000000000000000000000000000000000000000000000000000000000000000020000000000000000000000"
    "0000000000000000000000000000000000000000010000000000000000000000000000000000000000000000"
    "000000000000000002"
)
PROXY_DATA = (
    "0x34ee9791000000000000000000000000000000000000000000000000000000000000002000000000000000"
    "0000000000000000000000000000000000000000000000000200000000000000000000000000000000000000"
    "0000000000000000000000004000000000000000000000000000000000000000000000000000000000000001"
    "e000000000000000000000000000000000000000000000000000000000000000010000000000000000000000"
    "00ada100db00ca00073811820692005400218fce1f0000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000080000000"
    "00000000000000000000000000000000000000000000000000000000e401b7037c0000000000000000000000"
    "00c011a7e12a19f7b1f670d46f03b03f3342e82dfb0000000000000000000000000000000000000000000000"
    "000000000000000000abababababababababababababababababababababababababababababababab000000"
    "0000000000000000000000000000000000000000000000000000000080000000000000000000000000000000"
    "0000000000000000000000000000000002000000000000000000000000000000000000000000000000000000"
    "0000000001000000000000000000000000000000000000000000000000000000000000000200000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000001000000000000000000000000c011a7e12a19f7b1f670d46f03b03f3342e82dfb000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000080000000000000000000000000000000000000000000000000000000"
    "0000000044095ea7b30000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "00000000000000000000000000"
)
MULTISEND_DATA = (
    "0x8d80ff0a000000000000000000000000000000000000000000000000000000000000002000000000000000"
    "000000000000000000000000000000000000000000000001d200ada100db00ca00073811820692005400218f"
    "ce1f000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000e401b7037c000000000000000000000000c011a7e12a19"
    "f7b1f670d46f03b03f3342e82dfb000000000000000000000000000000000000000000000000000000000000"
    "0000abababababababababababababababababababababababababababababababab00000000000000000000"
    "0000000000000000000000000000000000000000008000000000000000000000000000000000000000000000"
    "0000000000000000000200000000000000000000000000000000000000000000000000000000000000010000"
    "00000000000000000000000000000000000000000000000000000000000200c011a7e12a19f7b1f670d46f03"
    "b03f3342e82dfb00000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000044095ea7b300000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000"
)
PROXY_HASH = "0x8b0106710b5bc5aff55d5de426d3f6e782a86b65697b114074962e339347a753"
PROXY_SIG = (
    "0x4567584fb24bf183ef2645c84e51c87189659827b5e4dbccff00d7a9986a8d50594af545001b97acc16c09"
    "bbe968896d46727f864a58d2556e460a3e231dad2a1c"
)
SAFE_SIG = (
    "0x17c4fdc37f30420680d95a302adc51c4f3593826c97d431e4a458411fdd872294e1973622e7cfabe99a847"
    "16d5dcb1e3c1b41b3440ada062fb4aa1cc19287cc720"
)
DEPOSIT_WALLET_SIG = (
    "0xeb4ff24c928d5a3df68898ba5c7def53d9914ec718aa5266753221bc476f0ec61d71683c92452653d31424"
    "c76138d9d97bea23fca98e04eb2008e5fa17e88fc51b"
)
CALLS = [
    (COLLATERAL_ADAPTER, bytes.fromhex(REDEEM_DATA[2:])),
    (PUSD, bytes.fromhex("095ea7b3" + "00" * 64)),
]
WINDOW_S = 12
RELAYER_KEY = {"relayer_api_key": Secret("sim-relayer-key")}


def venue(signature_type: int, funder: str, key: str = KEY, **kw: object) -> LiveVenue:
    return LiveVenue(
        "http://127.0.0.1:9",
        Secret(key),
        log=lambda *a, **k: None,
        signature_type=signature_type,
        funder=funder,
        **kw,  # type: ignore[arg-type]
    )


def test_relayer_bodies_are_signed_as_the_sdk_signs_them() -> None:
    assert Account.from_key(KEY).address == SIGNER
    assert (wallets.safe_wallet(SIGNER), wallets.deposit_wallets(SIGNER)[0]) == (
        SAFE,
        DEPOSIT_WALLET,
    )
    # the redemption call itself: redeemPositions(pUSD, 0x0, conditionId, [1, 2]) on the adapter
    assert venue(0, SIGNER).redeem_call("0x" + "ab" * 32) == CALLS[0]
    # proxy: the "rlx:" hash of the factory call, personal-signed
    proxy = venue(1, wallets.proxy_wallet(SIGNER))
    body = proxy.relayer_body(CALLS, "", nonce=7, relay=RELAY, gas_limit=200_000)
    assert body["data"] == PROXY_DATA and body["to"] == wallets.PROXY_FACTORY
    assert (
        "0x"
        + wallets.proxy_relay_hash(
            SIGNER, wallets.PROXY_FACTORY, bytes.fromhex(PROXY_DATA[2:]), 200_000, 7, RELAY
        ).hex()
        == PROXY_HASH
    )
    assert body["signature"] == PROXY_SIG
    assert body["signatureParams"]["relayHub"] == wallets.RELAY_HUB
    # Safe: two calls go through MultiSend (delegatecall), the SafeTx signature's v raised by 4
    body = venue(2, SAFE).relayer_body(CALLS, "", nonce=3)
    assert (body["to"], body["data"], body["signatureParams"]["operation"]) == (
        wallets.SAFE_MULTISEND,
        MULTISEND_DATA,
        "1",
    )
    assert body["signature"] == SAFE_SIG and body["proxyWallet"] == SAFE
    # deposit wallet: the EIP-712 Batch signed by its owner key
    body = venue(3, DEPOSIT_WALLET).relayer_body(CALLS, "", nonce=5, deadline=1_800_000_000)
    assert body["signature"] == DEPOSIT_WALLET_SIG
    assert body["depositWalletParams"]["calls"][0]["data"] == REDEEM_DATA
    assert wallets.decode_proxy_call_data(bytes.fromhex(PROXY_DATA[2:])) == CALLS
    assert wallets.decode_safe_multisend_data(bytes.fromhex(MULTISEND_DATA[2:])) == CALLS


def test_relayer_needs_its_api_key() -> None:
    v = venue(3, DEPOSIT_WALLET, relayer_url="http://127.0.0.1:9/relayer")
    with pytest.raises(VenueError) as e:
        v.redeem("0x" + "00" * 32)
    assert e.value.code == "redeem_unsupported" and "RELAYER_API_KEY" in e.value.reason


@pytest.fixture(scope="module")
def rsim():
    s = start_sim("--window-seconds", str(WINDOW_S), "--seed", "13")
    try:
        s.fault(name="manual_redemption")
        yield s
    finally:
        stop_sim(s)


def funder_of(signature_type: int, address: str) -> str:
    return {
        1: wallets.proxy_wallet,
        2: wallets.safe_wallet,
        3: lambda a: wallets.deposit_wallets(a)[0],
    }[signature_type](address)


def test_wallets_redeem_through_the_relayer_once(rsim: SimProc) -> None:
    """Each of types 1-3 holds both outcomes of one market; after resolution each redeems through
    the simulated relayer (signatures verified): the funder's pUSD rises by its winning shares,
    its tokens are cleared, the relayer transaction is CONFIRMED and listed in the account's
    `redemptions`; redeeming again pays nothing; a body signed by another key is refused."""
    relayer = f"{rsim.http}/relayer"
    vs = {}
    for t in (1, 2, 3):
        key = Account.create()
        vs[t] = LiveVenue(
            f"{rsim.http}/clob",
            Secret(key.key.hex()),
            log=lambda *a, **k: None,
            signature_type=t,
            funder=funder_of(t, key.address),
            relayer_url=relayer,
            relayer_api_key_address=key.address,
            rpc_url=f"{rsim.http}/rpc",
            **RELAYER_KEY,  # type: ignore[arg-type]
        )
        assert vs[t].start()

    def fresh() -> dict | None:
        cur = rsim.state()["current"]
        return cur if int(cur["slug"].rsplit("-", 1)[1]) + WINDOW_S - time.time() > 6 else None

    w = wait_for(fresh, 2 * WINDOW_S, what="a window with time left")
    for v in vs.values():
        for token in (w["up_token"], w["down_token"]):
            it = OrderIntent(
                client_order_id=f"r{time.time_ns()}",
                slug=w["slug"],
                asset_id=token,
                outcome="Up",
                side="BUY",
                order_type="FAK",
                limit_price=0.99,
                size=2.0,
                expires_ns=0,
                ts_intent_ns=0,
            )
            r = v.post(v.sign(it, D("0.99"), D("2")), it)
            assert r.outcome == "accepted" and r.trades, r
    wait_for(
        lambda: w["condition_id"].lower() in rsim.state()["resolved_conditions"],
        4 * WINDOW_S,
        0.5,
        what="the market resolved",
    )
    for t, v in vs.items():
        before = rsim.state()["accounts"][v.funder.lower()]
        held = {before["tokens"][w["up_token"]], before["tokens"][w["down_token"]]}
        ref = v.redeem(w["condition_id"])
        assert ref.startswith("relayer:")
        assert wait_for(lambda v=v, ref=ref: v.redemption_status(ref) == "confirmed", 10)
        after = rsim.state()["accounts"][v.funder.lower()]
        paid = after["redemptions"][-1]["pusd"]
        assert any(paid == pytest.approx(h) for h in held), (t, paid, held)
        assert after["pusd"] == pytest.approx(before["pusd"] + paid)
        assert w["up_token"] not in after["tokens"] and w["down_token"] not in after["tokens"]
        txs = {x["transaction_id"]: x for x in rsim.state()["relayer_transactions"]}
        tx = txs[ref.removeprefix("relayer:")]
        assert tx["state"] == "STATE_CONFIRMED" and tx["wallet"].lower() == v.funder.lower()
        assert tx["type"] == LiveVenue.RELAYER_TYPES[t]
        assert after["redemptions"][-1]["tx_hash"] == tx["transaction_hash"]
        # again: confirmed, pays nothing
        ref2 = v.redeem(w["condition_id"])
        wait_for(lambda v=v, ref2=ref2: v.redemption_status(ref2) == "confirmed", 10)
        assert rsim.state()["accounts"][v.funder.lower()]["pusd"] == pytest.approx(after["pusd"])
    # the relayer checks the signature: a body for wallet 3 signed by another key is refused
    v3 = vs[3]
    other = venue(3, v3.funder, key=Account.create().key.hex())
    nonce = httpx.get(
        f"{relayer}/v1/account/transactions/params",
        params={"address": v3.address, "type": "WALLET"},
    ).json()["nonce"]
    body = other.relayer_body(CALLS[:1], "", nonce=int(nonce), deadline=int(time.time()) + 600)
    body["from"] = v3.address
    r = httpx.post(
        f"{relayer}/submit",
        json=body,
        headers={"RELAYER_API_KEY": "k", "RELAYER_API_KEY_ADDRESS": v3.address},
    )
    assert r.status_code == 400 and "signature" in r.json()["error"]
    r = httpx.post(f"{relayer}/submit", json=body)  # and without the relayer key headers
    assert r.status_code == 401 and "RELAYER_API_KEY" in r.json()["error"]
    for v in vs.values():
        v.close()


def test_safe_sets_its_approvals_through_the_relayer(rsim: SimProc) -> None:
    key = Account.create()
    safe = wallets.safe_wallet(key.address)
    rsim.fault(name="revoke_approval", address=safe)
    assert rsim.state()["accounts"][safe.lower()]["approvals"]["pusd_ctf_exchange"] is False
    v = LiveVenue(
        f"{rsim.http}/clob",
        Secret(key.key.hex()),
        log=lambda *a, **k: None,
        signature_type=2,
        funder=safe,
        relayer_url=f"{rsim.http}/relayer",
        relayer_api_key_address=key.address,
        **RELAYER_KEY,  # type: ignore[arg-type]
    )
    sent = v.set_approvals(wait_s=10)
    assert len(sent) == 3 and len({ref for _n, ref in sent}) == 1  # one relayer transaction
    assert all(v.redemption_status(ref) == "confirmed" for _n, ref in sent)
    approvals = rsim.state()["accounts"][safe.lower()]["approvals"]
    assert approvals["pusd_ctf_exchange"] is True
    assert {
        "0xe111180000d2663c0091e4f400237545b87b996b",
        COLLATERAL_ADAPTER.lower(),
    } <= set(approvals["ctf_operators"])


def test_relayer_redemption_is_neither_lost_nor_doubled_across_restarts(
    rsim: SimProc, tmp_path
) -> None:
    """Execution's core with a deposit wallet and a ledger row written before anything was sent
    (a crash right after it): the relayer refuses the first submission (fault `relayer_down`),
    the row waits with the reason; a restarted core sends it once; another restart follows the
    relayer transaction to CONFIRMED without sending it again; the wallet is paid once."""
    from common import topics
    from services.execution.core import ExecutionCore
    from services.execution.ledger import Ledger
    from services.execution.switches import TradingMode

    key = Account.create()
    funder = funder_of(3, key.address)
    v = LiveVenue(
        f"{rsim.http}/clob",
        Secret(key.key.hex()),
        log=lambda *a, **k: None,
        signature_type=3,
        funder=funder,
        relayer_url=f"{rsim.http}/relayer",
        relayer_api_key_address=key.address,
        **RELAYER_KEY,  # type: ignore[arg-type]
    )
    assert v.start()

    def fresh() -> dict | None:
        cur = rsim.state()["current"]
        return cur if int(cur["slug"].rsplit("-", 1)[1]) + WINDOW_S - time.time() > 6 else None

    w = wait_for(fresh, 2 * WINDOW_S, what="a window with time left")
    for token in (w["up_token"], w["down_token"]):
        it = OrderIntent(
            client_order_id=f"x{time.time_ns()}",
            slug=w["slug"],
            asset_id=token,
            outcome="Up",
            side="BUY",
            order_type="FAK",
            limit_price=0.99,
            size=2.0,
            expires_ns=0,
            ts_intent_ns=0,
        )
        assert v.post(v.sign(it, D("0.99"), D("2")), it).outcome == "accepted"
    wait_for(
        lambda: w["condition_id"].lower() in rsim.state()["resolved_conditions"],
        4 * WINDOW_S,
        0.5,
        what="the market resolved",
    )
    before = rsim.state()["accounts"][funder.lower()]
    held = {before["tokens"][w["up_token"]], before["tokens"][w["down_token"]]}
    win = max(held)  # what the ledger expects does not steer what the venue pays
    cid = w["condition_id"]
    live = TradingMode(False, True, True)
    ledger = Ledger(tmp_path / "trader.db", venue="sim")
    assert ledger.request_redemption(cid, w["slug"], False, 4.0, win, 1)

    def mine() -> list[dict]:
        return [
            x for x in rsim.state()["relayer_transactions"] if x["wallet"].lower() == funder.lower()
        ]

    rsim.fault(name="relayer_down", count=1)
    out = ExecutionCore(ledger, live, venue=v).check_redemptions()
    (row,) = ledger.redemptions(False)
    assert row["state"] == "awaiting" and "503" in row["detail"]
    assert [m.state for t, m in out if t == topics.REDEMPTION] == ["awaiting"]
    assert mine() == []
    # restart: the waiting row is sent, once
    ExecutionCore(ledger, live, venue=v).check_redemptions()
    (row,) = ledger.redemptions(False)
    assert row["state"] == "sent" and row["tx_hash"].startswith("relayer:")
    assert len(mine()) == 1
    # restart again: followed to CONFIRMED, not re-sent
    out = ExecutionCore(ledger, live, venue=v).check_redemptions()
    (row,) = ledger.redemptions(False)
    assert (row["state"], row["cash_returned"]) == ("confirmed", win)
    assert [m.state for t, m in out if t == topics.REDEMPTION] == ["confirmed"]
    assert len(mine()) == 1
    after = rsim.state()["accounts"][funder.lower()]
    (paid,) = after["redemptions"]  # paid once: the winning side's shares, 1 pUSD each
    assert any(paid["pusd"] == pytest.approx(h) for h in held)
    assert after["pusd"] == pytest.approx(before["pusd"] + paid["pusd"])
    assert paid["tx_hash"] == mine()[0]["transaction_hash"]
    ledger.close()
    v.close()
