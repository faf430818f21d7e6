"""Orders on the simulated venue: validation of a signed V2 order as the CLOB does it, the match
of FOK/FAK/GTC/GTD orders against the simulated book (`SimMarket.take`), balances, the trade
lifecycle (MATCHED -> MINED -> CONFIRMED) and the user-channel `order`/`trade` events.

Error texts are the venue's own (py-clob-client-v2 and captured answers; see README.md).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from common import money
from services.simvenue.market import MS, NS, SIM_FEE, fmt_price
from services.simvenue.signing import ApiKey, order_hash, order_wallet_error

if TYPE_CHECKING:
    from services.simvenue.venue import Venue

FOK_KILLED = money.ERR_FOK_NOT_FILLED  # the venue's texts, kept with the other ones in money
FAK_NO_MATCH = money.ERR_FAK_NOT_FILLED
NOT_ENOUGH_BALANCE = "not enough balance / allowance"
SERVICE_NOT_READY = "service not ready"  # HTTP 425 while the matching engine restarts
# after a restart only post-only orders are accepted for ~2 minutes (PROTOCOLS.md section 7);
# the others get 503 with this text, `code: "post_only_mode"` and `retry_after_seconds` (also
# the `Retry-After` header); in a batch, a per-order `errorMsg` with `success: true`
# (docs.polymarket.com resources/error-codes, "POST order" / "POST orders")
POST_ONLY_MODE = "post-only mode: only post-only orders and cancels are allowed"
# trading paused (faults `cancel_only`, `trading_disabled`): 503 with only the text, no `code`
# (docs.polymarket.com resources/error-codes "Global Errors"; Polymarket/ts-sdk's transport:
# "Cancel-only responses carry no structured code, only the message text")
CANCEL_ONLY = (
    "Trading is currently cancel-only. New orders are not accepted, but cancels are allowed."
)
TRADING_DISABLED = "Trading is currently disabled. Check polymarket.com for updates"
# post-only (docs.polymarket.com resources/error-codes "Order Processing Errors", and the CLOB's
# INVALID_POST_ONLY_ORDER / INVALID_POST_ONLY_ORDER_TYPE codes): a post-only order that would
# match at once is refused, and post-only is for GTC/GTD only (py-clob-client-v2 `post_order`
# refuses it client-side for FOK/FAK too)
POST_ONLY_CROSSES = "invalid post-only order: order crosses book"
POST_ONLY_TYPE = "invalid post-only order: only GTC and GTD order types are allowed"
# GTD (docs.polymarket.com trading/place-orders): "GTD orders expire one minute before their
# stated expiration as a security threshold ... the expiration must be at least 3 minutes in the
# future - orders expiring sooner are rejected"; polymarket-client (Polymarket/py-sdk PR #134,
# 2026-07) checks `expiration >= now + 180` before sending. The venue's answer is 400 "invalid
# expiration" (error-codes page). Earlier (2026-05, py-sdk #44/#46) the minimum was 60 s.
INVALID_EXPIRATION = "invalid expiration"
GTD_MIN_LIFETIME_S = 180
GTD_SECURITY_THRESHOLD_S = 60


@dataclass
class SimOrder:
    """One order as the venue keeps it: sizes in centi-shares, price as the venue prints it."""

    id: str
    api_key: str
    maker: str
    token: str
    market: str
    outcome: str
    side: str
    price: str
    original_centi: int
    order_type: str
    created_s: int
    expiration: str
    matched_centi: int = 0
    status: str = "LIVE"
    trades: list[str] = field(default_factory=list)
    signed: dict = field(default_factory=dict)  # makerAmount, takerAmount, signatureType, ...

    def doc(self) -> dict:
        return {
            "id": self.id,
            "status": self.status,
            "owner": self.api_key,
            "maker_address": self.maker,
            "market": self.market,
            "asset_id": self.token,
            "side": self.side,
            "original_size": _centi(self.original_centi),
            "size_matched": _centi(self.matched_centi),
            "price": self.price,
            "outcome": self.outcome,
            "created_at": self.created_s,
            "expiration": self.expiration,
            "order_type": self.order_type,
            "associate_trades": list(self.trades),
        }

    def state_doc(self) -> dict:
        """`doc()` plus what the order was signed with (for `/sim/state`)."""
        return {**self.doc(), **self.signed}


def _centi(c: int) -> str:
    s = f"{c / 100:.2f}".rstrip("0").rstrip(".")
    return s or "0"


def cancel_orders(v: Venue, api_key: str, ids: list[str], status: str = "CANCELED") -> dict:
    """Cancel `api_key`'s LIVE orders among `ids` (off the book, a CANCELLATION event each);
    answers `{canceled, not_canceled}` as the CLOB."""
    canceled, not_canceled = [], {}
    for oid in ids:
        o = v.orders.get(oid)
        if o is None or o.api_key != api_key:
            not_canceled[oid] = "order not found"
        elif o.status != "LIVE":
            not_canceled[oid] = "already canceled or matched"
        else:
            o.status = status
            v.market.unrest(oid)
            canceled.append(oid)
            order_event(v, o, "CANCELLATION")
    return {"canceled": canceled, "not_canceled": not_canceled}


def reserved(v: Venue, maker: str, token: str | None = None) -> int:
    """Micro-units held by `maker`'s resting orders: pUSD of its LIVE BUYs (token None), or the
    shares of `token` its LIVE SELLs offer. The venue checks new orders against the balance
    less what open orders hold ("not enough balance / allowance")."""
    total = 0
    for oid, r in v.market.resting.items():
        o = v.orders.get(oid)
        if o is None or o.maker.lower() != maker.lower() or o.status != "LIVE":
            continue
        if token is None and r.side == "BUY":
            total += r.price * r.remaining * 10
        elif token is not None and r.side == "SELL" and r.token == token:
            total += r.remaining * 10_000
    return total


def apply_maker_fills(v: Venue) -> None:
    """Book the simulated flow's fills of resting orders (`SimMarket.maker_fills`): the maker's
    balances move at its own price with no fee (the taker pays it: feeSchedule takerOnly), the
    order's `size_matched` grows (UPDATE event; MATCHED when whole), and a trade goes MATCHED ->
    MINED -> CONFIRMED on the user channel with `trader_side` MAKER and the order in
    `maker_orders`, as the real venue reports a maker fill (tests/fixtures/nautilus_trader/
    polymarket_ws_py/user_trade3.json). The maker rebate is not paid here: the venue pays it
    daily (common.money.maker_rebate)."""
    fills, v.market.maker_fills = v.market.maker_fills, []
    for mf in fills:
        o = v.orders.get(mf.order_id)
        if o is None or o.status != "LIVE":
            continue
        w = v.market.window_by_token(o.token)
        if w is None:
            continue
        acct = v.account(o.maker)
        usdc, shares = mf.price * mf.centi * 10, mf.centi * 10_000
        if o.side == "BUY":
            usdc_delta, token_delta = -usdc, shares
        else:
            usdc_delta, token_delta = usdc, -shares
        acct["usdc"] += usdc_delta
        acct["tokens"][o.token] = acct["tokens"].get(o.token, 0) + token_delta
        o.matched_centi += mf.centi
        n = len(o.trades)
        tid = str(uuid.uuid5(uuid.NAMESPACE_OID, f"{o.id}:maker:{n}"))
        tx = "0x" + uuid.uuid5(uuid.NAMESPACE_OID, f"{o.id}:maker-tx:{n}").hex * 2
        o.trades.append(tid)
        t_s = str(mf.t_ns // NS)
        v.trades[tid] = {
            "id": tid,
            "taker_order_id": "0x" + uuid.uuid5(uuid.NAMESPACE_OID, f"{tid}:taker").hex * 2,
            "market": w.condition_id,
            "asset_id": mf.taker_token,
            "side": mf.taker_side,
            "size": _centi(mf.centi),
            "fee_rate_bps": "0",
            "price": fmt_price(mf.taker_price),
            "status": "MATCHED",
            "match_time": t_s,
            "last_update": t_s,
            "outcome": w.outcome_of(mf.taker_token),
            "bucket_index": 0,
            "owner": o.api_key,
            "trade_owner": o.api_key,
            "maker_address": o.maker,
            "transaction_hash": tx,
            "trader_side": "MAKER",
            "maker_orders": [
                {
                    "order_id": o.id,
                    "owner": o.api_key,
                    "maker_address": o.maker,
                    "matched_amount": _centi(mf.centi),
                    "price": o.price,
                    "fee_rate_bps": "0",
                    "asset_id": o.token,
                    "outcome": o.outcome,
                    "side": o.side,
                }
            ],
        }
        if o.matched_centi >= o.original_centi:
            o.status = "MATCHED"
        order_event(v, o, "UPDATE")
        trade_event(v, tid)
        v.trade_effects[tid] = (o.maker, o.token, usdc_delta, token_delta)
        v.spawn(advance_trade(v, tid, fail=v.take_fault("trade_failed") is not None))


def expire_orders(v: Venue, now: int) -> None:
    """Take resting orders off at the end of their life: a GTD one minute before its stated
    expiration (the venue's security threshold, `GTD_SECURITY_THRESHOLD_S`), any order when its
    market's window ends (the market closes). Each gets a CANCELLATION event. The status word
    the real venue uses for an expired GTD is not documented: CANCELED here."""
    for oid in list(v.market.resting):
        o = v.orders.get(oid)
        if o is None or o.status != "LIVE":
            v.market.unrest(oid)
            continue
        w = v.market.window_by_token(o.token)
        ended = w is None or now >= w.end_s * NS
        exp = int(o.expiration or 0) if o.order_type == "GTD" else 0
        if ended or (exp and now >= (exp - GTD_SECURITY_THRESHOLD_S) * NS):
            o.status = "CANCELED"
            v.market.unrest(oid)
            order_event(v, o, "CANCELLATION")


def order_event(v: Venue, o: SimOrder, typ: str, status: str | None = None) -> None:
    """Send a user-channel `order` event (`typ` PLACEMENT/CANCELLATION) to the owner's sockets."""
    now = v.clock()
    v.user_event(
        o.api_key,
        o.market,
        {
            "asset_id": o.token,
            "associate_trades": list(o.trades) or None,
            "created_at": str(o.created_s),
            "event_type": "order",
            "expiration": o.expiration,
            "id": o.id,
            "maker_address": o.maker,
            "market": o.market,
            "order_owner": o.api_key,
            "order_type": o.order_type,
            "original_size": _centi(o.original_centi),
            "outcome": o.outcome,
            "owner": o.api_key,
            "price": o.price,
            "side": o.side,
            "size_matched": _centi(o.matched_centi),
            "status": status or o.status,
            "timestamp": str(now // MS),
            "type": typ,
        },
    )


def trade_event(v: Venue, tid: str) -> None:
    """Send the user-channel `trade` event for trade `tid` in its current status."""
    t = v.trades[tid]
    doc = dict(t)
    doc["event_type"] = "trade"
    doc["type"] = "TRADE"
    doc["timestamp"] = str(v.clock() // MS)
    v.user_event(t["owner"], t["market"], doc)


async def advance_trade(v: Venue, tid: str, fail: bool = False) -> None:
    """Move trade `tid` to MINED after `mine_seconds`, then CONFIRMED after `confirm_seconds`;
    with `fail` (fault `trade_failed`): RETRYING, then FAILED, and the match is undone (the
    balances it moved are moved back), as when the settlement transaction fails on chain."""
    await asyncio.sleep(v.opts.mine_seconds)
    if fail:
        v.trades[tid]["status"] = "RETRYING"
        v.trades[tid]["last_update"] = str(v.clock() // NS)
        trade_event(v, tid)
        await asyncio.sleep(max(0.0, v.opts.confirm_seconds - v.opts.mine_seconds))
        v.trades[tid]["status"] = "FAILED"
        v.trades[tid]["last_update"] = str(v.clock() // NS)
        wallet, token, usdc, shares = v.trade_effects.pop(tid)
        acct = v.account(wallet)
        acct["usdc"] -= usdc
        acct["tokens"][token] = acct["tokens"].get(token, 0) - shares
        trade_event(v, tid)
        return
    v.trades[tid]["status"] = "MINED"
    v.trades[tid]["last_update"] = str(v.clock() // NS)
    trade_event(v, tid)
    await asyncio.sleep(max(0.0, v.opts.confirm_seconds - v.opts.mine_seconds))
    v.trades[tid]["status"] = "CONFIRMED"
    v.trades[tid]["last_update"] = str(v.clock() // NS)
    trade_event(v, tid)


def hold_order(v: Venue, key: ApiKey, body: dict, status: str) -> dict | None:
    """Answer a POST /order with `status` (`delayed` or `live`) before matching it: the order is
    visible at once with that status and nothing matched; `place_order` runs later
    (`release_order`). None when the body is not even readable (the caller answers 400)."""
    try:
        order = body["order"]
        oid = order_hash(order)
        token = str(order["tokenId"])
        side = {"0": "BUY", "1": "SELL", 0: "BUY", 1: "SELL"}.get(order["side"], order["side"])
        shares = int(order["takerAmount"] if side == "BUY" else order["makerAmount"]) // 10_000
    except (KeyError, TypeError, ValueError):
        return None
    w = v.market.window_by_token(token)
    if w is None or oid in v.orders:
        return None
    now = v.clock()
    o = SimOrder(
        oid,
        key.api_key,
        order.get("maker", ""),
        token,
        w.condition_id,
        w.outcome_of(token),
        side,
        "0",
        shares,
        str(body.get("orderType", "FAK")),
        now // NS,
        str(order.get("expiration", "0")),
        status=status.upper(),
    )
    o.signed = {
        "makerAmount": str(order.get("makerAmount")),
        "takerAmount": str(order.get("takerAmount")),
        "signatureType": int(order.get("signatureType", 0)),
    }
    v.orders[oid] = o
    order_event(v, o, "PLACEMENT")
    return {
        "success": True,
        "orderID": oid,
        "errorMsg": "",
        "status": status,
        "makingAmount": "",
        "takingAmount": "",
        "transactionsHashes": [],
        "tradeIDs": [],
    }


async def release_order(v: Venue, key: ApiKey, body: dict, after_s: float) -> None:
    """After `after_s`, match a held order for real; when it is refused or finds nothing, it
    ends UNMATCHED (or CANCELED for a killed FOK) instead of disappearing."""
    await asyncio.sleep(after_s)
    oid = order_hash(body["order"])
    held = v.orders.pop(oid, None)
    status, answer = place_order(v, key, body)
    if status != 200 and oid not in v.orders and held is not None:
        held.status = "UNMATCHED"
        v.orders[oid] = held
        order_event(v, held, "CANCELLATION", status="UNMATCHED")


def place_order(v: Venue, key: ApiKey, body: dict) -> tuple[int, dict]:
    """Validate and execute a POST /order body; returns (HTTP status, JSON answer)."""
    try:
        order = body["order"]
        order_type = str(body.get("orderType", "GTC")).upper()
        owner = body.get("owner")
        maker_amt = int(order["makerAmount"])
        taker_amt = int(order["takerAmount"])
        side = order["side"]
        side = {"0": "BUY", "1": "SELL", 0: "BUY", 1: "SELL"}.get(side, side)
        token = str(order["tokenId"])
        for k in (
            "salt",
            "maker",
            "signer",
            "signatureType",
            "timestamp",
            "metadata",
            "builder",
            "signature",
        ):
            order[k]  # noqa: B018 - presence check
    except (KeyError, TypeError, ValueError):
        return 400, {"error": "Invalid order payload"}
    if side not in ("BUY", "SELL") or order_type not in ("GTC", "GTD", "FOK", "FAK"):
        return 400, {"error": "Invalid order payload"}
    post_only = body.get("postOnly") is True
    if post_only and order_type not in ("GTC", "GTD"):
        return 400, {"error": POST_ONLY_TYPE}
    if owner != key.api_key:
        return 400, {"error": "the order owner has to be the owner of the API KEY"}
    bad = order_wallet_error(order, key.address, refuse_eoa_makers=v.refuse_eoa_makers)
    if bad:
        return 400, {"error": bad}
    if maker_amt <= 0 or taker_amt <= 0:
        return 400, {"error": "Invalid order payload"}
    if v.post_only_until > v.clock() and not body.get("postOnly"):
        left = max(1, -(-(v.post_only_until - v.clock()) // NS))
        return 503, {"error": POST_ONLY_MODE, "code": "post_only_mode", "retry_after_seconds": left}
    # the venue's decimal rules for the signed amounts (common.money: the venue's own texts)
    precision = money.amounts_error(
        side, maker_amt, taker_amt, marketable=order_type in ("FOK", "FAK"), min_size=money.ZERO
    )
    if "accuracy" in precision:
        return 400, {"error": precision}
    if v.take_fault("order_reject") is not None:
        return 400, {"error": NOT_ENOUGH_BALANCE}
    now = v.clock()
    v.sync(now)
    w = v.market.window_by_token(token)
    if w is None:
        return 400, {"error": "Invalid order payload: unknown token id"}
    if now >= w.end_s * NS or w.halted:
        # halted: an earlier run of the sim stopped during this window (market.py `resume`)
        return 400, {"error": "the market is closed, orders are not accepted"}
    if order_type == "GTD":
        try:
            expiration = int(order.get("expiration") or 0)
        except (TypeError, ValueError):
            return 400, {"error": INVALID_EXPIRATION}
        if expiration < now // NS + GTD_MIN_LIFETIME_S:
            return 400, {"error": INVALID_EXPIRATION}
    oid = order_hash(order)  # the real venue's order id is the signed order's EIP-712 hash
    if oid in v.orders:
        return 400, {"error": "order already exists"}
    buy = side == "BUY"
    price_num, price_den = (maker_amt, taker_amt) if buy else (taker_amt, maker_amt)
    price = price_num / price_den
    tick = w.tick / 1000
    if order_type in ("GTC", "GTD"):
        on_grid = abs(round(price / tick) * tick - price) < 1e-9
        if not on_grid or not (tick <= price <= 1 - tick):
            return 400, {
                "error": f"order {oid} is invalid. Price ({price:g}) breaks minimum "
                f"tick size rule: {tick:g}"
            }
    acct = v.account(order["maker"])  # the funder's wallet holds the funds (types 1-3)
    # a marketable BUY pays its taker fee in pUSD on top of the notional, so it needs both (the
    # V2 exchange: py-clob-client-v2 #107; the SDK's `adjust_market_buy_amount` reserves the fee
    # at the order's price, as here). How the real venue checks is not public: this is the SDK's.
    need = maker_amt
    if buy and order_type in ("FOK", "FAK"):
        shares, limit = Decimal(taker_amt) / 1_000_000, Decimal(maker_amt) / Decimal(taker_amt)
        fee = money.taker_fee(shares, limit, SIM_FEE)
        need += int(fee * 1_000_000)
    if not acct["approved"] or (buy and acct["usdc"] - reserved(v, order["maker"]) < need):
        return 400, {"error": NOT_ENOUGH_BALANCE}
    if not buy and acct["tokens"].get(token, 0) - reserved(v, order["maker"], token) < maker_amt:
        return 400, {"error": NOT_ENOUGH_BALANCE}
    marketable_buy = buy and order_type in ("FOK", "FAK")
    if marketable_buy and maker_amt < 1_000_000:
        return 400, {
            "error": f"invalid amount for a marketable BUY order "
            f"(${maker_amt / 1e6:g}), min size: $1"
        }
    shares_centi = (taker_amt if buy else maker_amt) // 10_000
    if order_type in ("GTC", "GTD") and shares_centi < 500:
        # the error-codes page: "order {id} is invalid. Size ({size}) lower than the minimum: {min}"
        return 400, {
            "error": f"order {oid} is invalid. Size ({shares_centi / 100:g}) lower than the "
            "minimum: 5"
        }
    price_milli = round(price * 1000)
    if post_only and v.market.crosses(token, side, price_milli):
        return 400, {"error": POST_ONLY_CROSSES}
    res = v.market.take(
        token,
        side,
        price_num,
        price_den,
        maker_amt if (marketable_buy or not buy) else taker_amt,
        marketable_buy,
        order_type,
        now,
    )
    price_str = f"{price:.4f}".rstrip("0").rstrip(".")
    o = SimOrder(
        oid,
        key.api_key,
        order["maker"],
        token,
        w.condition_id,
        w.outcome_of(token),
        side,
        price_str,
        shares_centi if not marketable_buy else res.filled_centi or shares_centi,
        order_type,
        now // NS,
        str(order.get("expiration", "0")),
    )
    o.signed = {
        "makerAmount": str(maker_amt),
        "takerAmount": str(taker_amt),
        "signatureType": int(order["signatureType"]),
        "maker": order["maker"],
        "signer": order["signer"],
    }
    if res.status == "killed" or (res.status == "unmatched" and order_type == "FOK"):
        v.orders[oid] = o
        o.status = "CANCELED"
        order_event(v, o, "CANCELLATION", status="CANCELED_" + FOK_KILLED)
        return 400, {"error": FOK_KILLED}
    if res.status == "unmatched" and order_type == "FAK":
        return 400, {"error": FAK_NO_MATCH}
    v.orders[oid] = o
    answer: dict[str, Any] = {
        "success": True,
        "orderID": oid,
        "errorMsg": "",
        "transactionsHashes": [],
        "tradeIDs": [],
    }
    if res.status == "matched":
        fee_micro = res.fee_micro  # common.money.taker_fee per level, as paper charges it
        shares_micro = res.filled_centi * 10_000
        if buy:
            usdc_delta, token_delta = -(res.cost_micro + fee_micro), shares_micro
        else:
            usdc_delta, token_delta = res.cost_micro - fee_micro, -shares_micro
        acct["usdc"] += usdc_delta
        acct["tokens"][token] = acct["tokens"].get(token, 0) + token_delta
        o.matched_centi = res.filled_centi
        avg = res.cost_micro / shares_micro if shares_micro else 0
        tid = str(uuid.uuid5(uuid.NAMESPACE_OID, oid + ":trade"))
        tx = "0x" + uuid.uuid5(uuid.NAMESPACE_OID, oid + ":tx").hex * 2
        o.trades.append(tid)
        v.trades[tid] = {
            "id": tid,
            "taker_order_id": oid,
            "market": w.condition_id,
            "asset_id": token,
            "side": side,
            "size": _centi(res.filled_centi),
            "fee_rate_bps": "1000",
            "price": f"{avg:.4f}".rstrip("0").rstrip("."),
            "status": "MATCHED",
            "match_time": str(now // NS),
            "last_update": str(now // NS),
            "outcome": w.outcome_of(token),
            "bucket_index": 0,
            "owner": key.api_key,
            "trade_owner": key.api_key,
            "maker_address": order["maker"],
            "transaction_hash": tx,
            "trader_side": "TAKER",
            "maker_orders": [
                {
                    "order_id": "0x" + uuid.uuid5(uuid.NAMESPACE_OID, f"{oid}:{p}").hex * 2,
                    "owner": "00000000-0000-4000-8000-00000000beef",
                    "maker_address": "0x000000000000000000000000000000000000bEEF",
                    "matched_amount": _centi(c),
                    "price": f"{p / 1000:g}",
                    "fee_rate_bps": "0",
                    "asset_id": token,
                    "outcome": w.outcome_of(token),
                    "side": "SELL" if buy else "BUY",
                }
                for p, c in res.fills
            ],
        }
        rest = o.original_centi - o.matched_centi
        o.status = "MATCHED" if (rest <= 0 or order_type in ("FOK", "FAK")) else "LIVE"
        if o.status == "LIVE":
            v.market.rest(oid, token, side, price_milli, rest)
        order_event(v, o, "PLACEMENT")
        trade_event(v, tid)
        v.trade_effects[tid] = (order["maker"], token, usdc_delta, token_delta)
        v.spawn(advance_trade(v, tid, fail=v.take_fault("trade_failed") is not None))
        if order_type == "FAK" and rest > 0 and not marketable_buy:
            order_event(v, o, "CANCELLATION", status="CANCELED")
        answer.update(
            {
                "status": "matched",
                "makingAmount": f"{(res.cost_micro if buy else shares_micro) / 1e6:g}",
                "takingAmount": f"{(shares_micro if buy else res.cost_micro) / 1e6:g}",
                "transactionsHashes": [tx],
                "tradeIDs": [tid],
            }
        )
    else:
        o.status = "LIVE"
        v.market.rest(oid, token, side, price_milli, o.original_centi)
        order_event(v, o, "PLACEMENT")
        answer.update({"status": "live", "makingAmount": "", "takingAmount": ""})
    v.sync(now)
    return 200, answer
