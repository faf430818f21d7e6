"""The simulated venue enforces the real venue's order and account rules (issue 13), so a bot that
breaks them fails here: the precision of signed amounts with the venue's own text, maker and
signer per signature type (proxy / Safe / deposit wallet of the key), EOA makers refused as a
mode; and the venue's non-final and failing behaviours as faults: `delayed`, `fak_live`,
`trade_failed`, `not_ready` (425, then post-only), `revoke_approval`, `set_balance`,
`clock_skew`, `geoblock`. Orders are signed by execution's own adapter and by the SDK."""

from __future__ import annotations

import json
import time
from decimal import Decimal as D

import httpx
import msgspec
import pytest
from eth_account import Account
from py_clob_client_v2.client import ClobClient
from py_clob_client_v2.clob_types import (
    OrderArgsV2,
    OrderType,
    PartialCreateOrderOptions,
    TradeParams,
)
from py_clob_client_v2.exceptions import PolyApiException

from common.config import Secret
from common.money import ERR_MARKET_BUY_PRECISION
from common.schema import OrderIntent
from common.wallets import deposit_wallets, proxy_wallet, safe_wallet
from services.execution.core import VenueError
from services.execution.live import LiveVenue
from services.simvenue.market import FEE_EXPONENT, FEE_RATE
from tests.simvenue.conftest import SimProc, start_sim, stop_sim, wait_for

WINDOW_S = 60


@pytest.fixture(scope="module")
def vsim():
    s = start_sim("--window-seconds", str(WINDOW_S), "--seed", "5")
    try:
        yield s
    finally:
        stop_sim(s)


def window(sim: SimProc) -> dict:
    def with_time_left() -> dict | None:
        st = sim.state()
        start = int(st["current"]["slug"].rsplit("-", 1)[1])
        return st["current"] if start + WINDOW_S - time.time() > 15 else None

    return wait_for(with_time_left, WINDOW_S, what="a window with time left")


def adapter(sim: SimProc, signature_type: int = 0, key: str | None = None) -> LiveVenue:
    k = key or Account.create().key.hex()
    addr = Account.from_key(k).address
    funder = {0: "", 1: proxy_wallet(addr), 2: safe_wallet(addr), 3: deposit_wallets(addr)[0]}
    v = LiveVenue(
        f"{sim.http}/clob",
        Secret(k),
        log=lambda *a, **kw: None,
        signature_type=signature_type,
        funder=funder[signature_type],
    )
    assert v.start()
    return v


def buy(token: str, kind: str = "FAK", limit: float = 0.99, size: float = 5.0) -> OrderIntent:
    return OrderIntent(
        client_order_id=f"c{time.time_ns()}",
        slug="s",
        asset_id=token,
        outcome="Up",
        side="BUY",
        order_type=kind,  # type: ignore[arg-type]
        limit_price=limit,
        size=size,
        expires_ns=0,
        ts_intent_ns=0,
        tick_size=0.01,
    )


def post(v: LiveVenue, it: OrderIntent):
    signed = v.sign(it, D(str(it.limit_price)), D(str(it.size)))
    return signed, v.post(signed, it)


@pytest.mark.parametrize("signature_type", [0, 1, 2, 3])
def test_sim_every_wallet_type_trades_from_its_funder(vsim: SimProc, signature_type: int) -> None:
    v = adapter(vsim, signature_type)
    token = window(vsim)["up_token"]
    signed, r = post(v, buy(token))
    assert r.outcome == "accepted" and r.trades, r
    st = vsim.state()
    order = next(o for o in st["orders"] if o["id"] == signed.order_id)
    assert order["signatureType"] == signature_type
    assert order["maker"].lower() == v.funder.lower()
    assert int(order["makerAmount"]) % 10_000 == 0  # whole cents of pUSD
    funder = st["accounts"][v.funder.lower()]
    assert funder["pusd"] < 1000 and funder["tokens"][token] > 0
    assert funder["approvals"]["pusd_ctf_exchange"] is True
    bal, allowances = v.collateral()
    assert bal == pytest.approx(funder["pusd"]) and allowances
    v.close()


def test_sim_refuses_amount_precision_with_the_venue_text(vsim: SimProc) -> None:
    token = window(vsim)["up_token"]
    c = ClobClient(host=f"{vsim.http}/clob", chain_id=137, key=Account.create().key.hex())
    c.set_api_creds(c.create_or_derive_api_key())
    # a FOK BUY signed as a limit order: $5 at 0.53 = 9.43 shares / 4.9979 pUSD (issue 13)
    order = c.create_order(
        OrderArgsV2(token_id=token, price=0.53, size=9.43, side="BUY"),
        PartialCreateOrderOptions(tick_size="0.01", neg_risk=False),
    )
    assert order.makerAmount == "4997900"
    with pytest.raises(PolyApiException) as e:
        c.post_order(order, OrderType.FOK)
    assert e.value.status_code == 400 and ERR_MARKET_BUY_PRECISION in str(e.value.error_msg)
    # the adapter maps the text to its own code
    v = adapter(vsim)
    assert v._from_post(
        {"success": False, "errorMsg": ERR_MARKET_BUY_PRECISION}, buy(token)
    ).code == ("amount_precision")


def test_sim_maker_must_be_the_keys_wallet_and_eoa_makers_can_be_refused(vsim: SimProc) -> None:
    token = window(vsim)["up_token"]
    key = Account.create().key.hex()
    other = Account.create().address
    v = LiveVenue(
        f"{vsim.http}/clob",
        Secret(key),
        log=lambda *a, **kw: None,
        signature_type=2,
        funder=safe_wallet(other),  # somebody else's Safe
    )
    assert v.start()
    _, r = post(v, buy(token))
    assert r.outcome == "rejected" and r.code == "auth" and "invalid signature" in r.reason
    vsim.fault(name="refuse_eoa_makers")
    try:
        _, r = post(adapter(vsim, 0), buy(token))
        assert r.outcome == "rejected" and r.code == "maker_not_allowed"
        assert "deposit wallet flow" in r.reason
        _, r = post(adapter(vsim, 3), buy(token))  # the deposit wallet flow still trades
        assert r.outcome == "accepted"
    finally:
        vsim.fault(name="refuse_eoa_makers", on=False)


def test_sim_delayed_and_fak_live_answers_resolve_later(vsim: SimProc) -> None:
    token = window(vsim)["up_token"]
    v = adapter(vsim)
    vsim.fault(name="delayed", count=1)
    signed, r = post(v, buy(token))
    assert r.outcome == "accepted" and r.venue_status == "delayed" and not r.terminal
    assert not r.trades
    done = wait_for(
        lambda: (x := v.lookup(signed.order_id, buy(token))).terminal and x, 10, what="matched"
    )
    assert done.venue_status == "matched" and done.trades
    vsim.fault(name="fak_live", count=1, fill_after_s=1.0)
    signed, r = post(v, buy(token))
    assert (r.venue_status, r.terminal) == ("live", False)
    assert v.lookup(signed.order_id, buy(token)).venue_status == "live"
    done = wait_for(
        lambda: (x := v.lookup(signed.order_id, buy(token))).terminal and x, 10, what="filled"
    )
    assert done.trades and sum(t.size for t in done.trades) > 0


def test_sim_trade_failed_is_undone_at_the_venue(vsim: SimProc) -> None:
    token = window(vsim)["up_token"]
    v = adapter(vsim)
    vsim.fault(name="trade_failed", count=1)
    signed, r = post(v, buy(token))
    assert r.trades
    tid = r.trades[0].trade_id.split(":")[0]
    wait_for(lambda: v.trade_states([tid]).get(tid) == "FAILED", 15, what="FAILED")
    acct = vsim.state()["accounts"][v.address.lower()]
    # the match is undone: the pUSD it took (fee included) is back, the shares are gone
    assert acct["pusd"] == pytest.approx(1000.0) and acct["tokens"].get(token, 0) == 0


def test_sim_not_ready_then_post_only(vsim: SimProc) -> None:
    token = window(vsim)["up_token"]
    v = adapter(vsim)
    vsim.fault(name="not_ready", seconds=1.5, post_only_seconds=2)
    _, r = post(v, buy(token))
    assert (r.outcome, r.code) == ("rejected", "venue_not_ready")
    assert v.gate("SELL")[0] == "venue_not_ready"
    wait_for(
        lambda: vsim.state()["modes"]["not_ready_until_ns"] < time.time_ns(), 5, what="425 over"
    )
    _, r = post(v, buy(token))
    assert r.outcome == "rejected" and r.code == "venue_post_only"
    wait_for(lambda: vsim.state()["modes"]["post_only_until_ns"] < time.time_ns(), 5, what="over")
    _, r = post(v, buy(token))
    assert r.outcome == "accepted"


def test_sim_account_faults_show_in_balance_allowance_and_time(vsim: SimProc) -> None:
    v = adapter(vsim)
    token = window(vsim)["up_token"]
    vsim.fault(name="revoke_approval", address=v.address)
    _, allowances = v.collateral()
    assert allowances == {}
    _, r = post(v, buy(token))
    assert r.code == "insufficient_balance"
    vsim.fault(name="revoke_approval", address=v.address, restore=True)
    vsim.fault(name="set_balance", address=v.address, usd=0)
    assert v.collateral()[0] == 0.0
    vsim.fault(name="clock_skew", seconds=30)
    try:
        assert v.server_time() - time.time() == pytest.approx(30, abs=2)
    finally:
        vsim.fault(name="clock_skew", seconds=0)
    vsim.fault(name="geoblock")
    try:
        assert httpx.get(f"{vsim.http}/api/geoblock", timeout=5).json()["blocked"] is True
    finally:
        vsim.fault(name="geoblock", on=False)


# --- the venue's words as REST spells them; the funder on trade records; 503 back-off -------
def test_sim_rest_prefixed_statuses_are_read_as_plain_words(vsim: SimProc) -> None:
    """REST serialises raw constants: GET /data/order `ORDER_STATUS_LIVE` ... (docs.polymarket.com
    api-spec/clob-openapi.yaml, api-reference/trade/get-user-orders),
    /data/trades `TRADE_STATUS_CONFIRMED` (Polymarket/py-sdk src/polymarket/models/clob/
    account.py: "REST endpoints serialize the raw prefixed constants"). A live quote must stay
    LIVE and a delayed taker order must be followed to its real fill, not taken for cancelled."""
    w = window(vsim)
    key = Account.create().key.hex()
    v = adapter(vsim, key=key)
    assert v.client is not None

    def best_ask(t: str) -> float:
        asks = v.client.get_order_book(t)["asks"]
        return min((float(a["price"]) for a in asks), default=1.0)

    # a bid at 0.02 that cannot cross: on the token whose best ask is the higher one
    token = max((w["up_token"], w["down_token"]), key=best_ask)
    cheap = w["down_token"] if token == w["up_token"] else w["up_token"]  # a FAK at 0.99 fills
    vsim.fault(name="prefixed_statuses")
    try:
        quote = v.sign_resting(token, "BUY", D("0.02"), D("5"), tick=D("0.01"))
        r = v.post_resting(quote)
        assert r.outcome == "accepted" and not r.terminal, r
        assert v.client.get_order(quote.order_id)["status"] == "ORDER_STATUS_LIVE"  # REST's word
        assert v.resting_state(quote.order_id) == ("LIVE", 0.0)
        v.cancel([quote.order_id])
        assert v.resting_state(quote.order_id) == ("CANCELED", 0.0)
        # a delayed taker order: REST says ORDER_STATUS_DELAYED, then ORDER_STATUS_MATCHED
        vsim.fault(name="delayed", count=1, after_s=1.0)
        it = buy(cheap)
        signed, r = post(v, it)
        assert (r.venue_status, r.terminal) == ("delayed", False)
        first = v.lookup(signed.order_id, it)
        assert first.venue_status in ("delayed", "matched") and first.outcome == "accepted"
        done = wait_for(
            lambda: (x := v.lookup(signed.order_id, it)).terminal and x, 10, what="matched"
        )
        assert done.venue_status == "matched" and done.trades
        # trade states from REST only (a fresh adapter has no user-channel events)
        rest_only = adapter(vsim, key=key)
        tid = done.trades[0].trade_id.split(":")[0]
        assert v.client.get_trades(TradeParams(id=tid))[0]["status"].startswith("TRADE_STATUS_")
        state = wait_for(
            lambda: rest_only.trade_states([tid]).get(tid) == "CONFIRMED", 20, what="CONFIRMED"
        )
        assert state
        rest_only.close()
    finally:
        vsim.fault(name="prefixed_statuses", on=False)
        v.close()


@pytest.mark.parametrize("signature_type", [0, 2, 3])
def test_sim_timeout_lookup_finds_the_trades_of_a_funder_wallet(
    vsim: SimProc, signature_type: int
) -> None:
    """An order whose POST answer was lost is looked up among our taker trades; a trade record's
    `maker_address` is the funder, not the signer (Polymarket/real-time-data-client README:
    "maker_address ... Maker's address (funder)"), so a proxy/Safe/deposit wallet's real fill
    must be found, not concluded "not placed"."""
    token = window(vsim)["up_token"]
    key = Account.create().key.hex()
    v = adapter(vsim, signature_type, key=key)
    it = buy(token)
    sent_ns = time.time_ns()
    signed, r = post(v, it)
    assert r.outcome == "accepted" and r.trades, r
    fresh = adapter(vsim, signature_type, key=key)  # the answer was lost: nothing known locally
    assert fresh.funder.lower() != fresh.address.lower() or signature_type == 0
    found = fresh.lookup("", it, sent_ns)
    assert (found.outcome, found.venue_status) == ("accepted", "matched"), found
    assert found.venue_order_id == signed.order_id
    assert sum(t.size for t in found.trades) == pytest.approx(sum(t.size for t in r.trades))
    v.close()
    fresh.close()


def test_sim_post_only_503_retry_after_holds_back_entries(vsim: SimProc) -> None:
    """A 503 `{"code": "post_only_mode", ..., "retry_after_seconds": N}` (docs.polymarket.com
    resources/error-codes; Polymarket/ts-sdk's transport reads `code` and `retry_after_seconds`)
    is a refusal, and no entry is sent again before N seconds; exits are still tried."""
    token = window(vsim)["up_token"]
    v = adapter(vsim)  # credentials first: every L2 call answers 425 during the restart
    vsim.fault(name="not_ready", seconds=0.1, post_only_seconds=3)
    wait_for(
        lambda: vsim.state()["modes"]["not_ready_until_ns"] < time.time_ns(), 5, what="425 over"
    )
    _, r = post(v, buy(token))
    assert (r.outcome, r.code) == ("rejected", "venue_post_only"), r
    assert v.gate("BUY")[0] == "venue_post_only" and "retry_after_seconds" in v.gate("BUY")[1]
    assert v.gate("SELL") == ("", "")
    wait_for(lambda: v.gate("BUY") == ("", ""), 6, what="the retry-after over")
    v.close()


def test_sim_buy_fee_is_paid_in_pusd_on_top_of_the_notional(vsim: SimProc) -> None:
    """The V2 exchange takes a BUY taker's fee from the pUSD balance, on top of the notional, and
    delivers every share (py-clob-client-v2 #107, a live fill: "the fee is charged in USDC out of
    the balance — not deducted in shares ... 3.39 spent, i.e. 3.25 notional + 0.14 fee"; the
    SDK's `adjust_market_buy_amount` reserves notional + fee). A balance of the notional alone is
    not enough."""
    w = window(vsim)
    v = adapter(vsim)
    assert v.client is not None

    def best_ask(t: str) -> float:
        return min((float(a["price"]) for a in v.client.get_order_book(t)["asks"]), default=1.0)

    # the token whose ask is nearer 0.5 (the larger fee), bought at its ask for >= $2
    token = min((w["up_token"], w["down_token"]), key=lambda t: abs(best_ask(t) - 0.5))
    ask = best_ask(token)
    size = float(max(5, int(2 / ask) + 1))
    it = buy(token, limit=ask, size=size)
    signed = v.sign(it, D(str(ask)), D(str(size)))
    notional = D(json.loads(signed.body)["order"]["makerAmount"]) / 1_000_000
    vsim.fault(name="set_balance", address=v.address, usd=float(notional))
    r = v.post(signed, it)
    assert (r.outcome, r.code) == ("rejected", "insufficient_balance"), r
    vsim.fault(name="set_balance", address=v.address, usd=float(notional) + 0.5)
    before = vsim.state()["accounts"][v.address.lower()]["pusd"]
    # the market's feeSchedule, so the adapter's fills carry the fee the venue charged
    it = msgspec.structs.replace(
        buy(token, limit=ask, size=size), fee_rate=FEE_RATE, fee_exponent=FEE_EXPONENT
    )
    signed, r = post(v, it)
    assert r.outcome == "accepted" and r.trades, r
    after = vsim.state()["accounts"][v.address.lower()]
    shares = sum(t.size for t in r.trades)
    fee = sum(t.fee for t in r.trades)
    assert fee > 0
    assert after["tokens"][token] == pytest.approx(shares)  # every share, none taken as the fee
    spent = sum(t.price * t.size for t in r.trades) + fee
    assert before - after["pusd"] == pytest.approx(spent, abs=1e-6)
    v.close()


def test_sim_cancel_only_and_disabled_trading_are_refusals(vsim: SimProc) -> None:
    """503 "Trading is currently cancel-only. New orders are not accepted, but cancels are
    allowed." and "Trading is currently disabled. ..." (docs.polymarket.com resources/error-codes
    "Global Errors": no order is accepted) mean the order was not placed: `venue_not_accepting`,
    not "outcome unknown" (which would hold every entry while execution looks for the order)."""
    token = window(vsim)["up_token"]
    v = adapter(vsim)
    vsim.fault(name="cancel_only", count=1)
    signed, r = post(v, buy(token))
    assert (r.outcome, r.code) == ("rejected", "venue_not_accepting"), r
    assert "cancel-only" in r.reason
    assert not any(o["id"] == signed.order_id for o in vsim.state()["orders"])
    assert v.gate("BUY") == ("", "")  # no retry_after_seconds: the next order is tried
    vsim.fault(name="trading_disabled", count=2)
    _, r = post(v, buy(token))
    assert (r.outcome, r.code) == ("rejected", "venue_not_accepting"), r
    with pytest.raises(VenueError, match="disabled"):  # cancels are refused too
        v.cancel_all()
    _, r = post(v, buy(token))
    assert r.outcome == "accepted", r
    v.close()
