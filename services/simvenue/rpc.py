"""The subset of Polygon JSON-RPC (`POST /rpc`) that redeeming and approving from an EOA wallet
use: chain id, nonce, gas price and estimate, `eth_call` of pUSD `allowance` and CTF
`isApprovedForAll`, `eth_sendRawTransaction` of a signed legacy
transaction calling `redeemPositions(pUSD, 0x0, conditionId, [1, 2])` on the collateral adapter,
pUSD `approve(spender, amount)` or CTF `setApprovalForAll(operator, bool)`, and receipts.

A redemption pays the sender's winning tokens of that condition 1 pUSD each and clears both
outcomes' tokens (the losing ones pay 0), once the market is resolved; redeeming again pays
nothing; an unresolved condition reverts (receipt status 0). Each one is appended to the
account's `redemptions` in `/sim/state`. Only what a redemption needs is checked: this is not a
chain.
"""

from __future__ import annotations

from typing import Any

import rlp
from eth_abi.abi import decode as abi_decode
from eth_account import Account
from eth_utils.crypto import keccak
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.simvenue.signing import CHAIN_ID, COLLATERAL, EXCHANGE_V2
from services.simvenue.venue import Venue

COLLATERAL_ADAPTER = "0xAdA100Db00Ca00073811820692005400218FcE1f"
NEG_RISK_COLLATERAL_ADAPTER = "0xadA2005600Dec949baf300f4C6120000bDB6eAab"
REDEEM_SELECTOR = keccak(text="redeemPositions(address,bytes32,bytes32,uint256[])")[:4]
APPROVE_SELECTOR = keccak(text="approve(address,uint256)")[:4]
SET_APPROVAL_FOR_ALL_SELECTOR = keccak(text="setApprovalForAll(address,bool)")[:4]
CTF = "0x4D97DCd97eC945f40cF65F87097ACe5EA0476045"
GAS_PRICE = 30 * 10**9
REDEEM_GAS = 180_000


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def apply_call(v: Venue, wallet: str, to_addr: str, data: bytes, tx_hash: str) -> bool:
    """Apply one call made by `wallet` (an EOA's transaction, or a call a proxy / Safe / deposit
    wallet makes through the relayer: services/simvenue/relayer.py): a pUSD approval, a CTF
    operator approval or a redemption. False when it reverts (a call this venue does not know, a
    redemption of an unresolved condition)."""
    selector = data[:4]
    if to_addr.lower() == COLLATERAL.lower() and selector == APPROVE_SELECTOR:
        spender, amount = abi_decode(["address", "uint256"], data[4:])
        acct = v.account(wallet)
        acct["allowances"][spender.lower()] = amount
        acct["approved"] = acct["allowances"].get(EXCHANGE_V2.lower(), 0) > 0
        return True
    if to_addr.lower() == CTF.lower() and selector == SET_APPROVAL_FOR_ALL_SELECTOR:
        operator, on = abi_decode(["address", "bool"], data[4:])
        ops = v.account(wallet)["operators"]
        if on:
            ops.add(operator.lower())
        else:
            ops.discard(operator.lower())
        return True
    if (
        to_addr.lower() not in (COLLATERAL_ADAPTER.lower(), NEG_RISK_COLLATERAL_ADAPTER.lower())
        or selector != REDEEM_SELECTOR
    ):
        return False  # a call this venue does not know reverts
    collateral, _parent, condition, index_sets = abi_decode(
        ["address", "bytes32", "bytes32", "uint256[]"], data[4:]
    )
    cid = "0x" + bytes(condition).hex()
    outcome = v.resolved_conditions.get(cid.lower())
    if collateral.lower() != COLLATERAL.lower() or sorted(index_sets) != [1, 2] or not outcome:
        return False
    win, lose = outcome
    acct = v.account(wallet)
    paid = acct["tokens"].pop(win, 0)
    acct["tokens"].pop(lose, None)
    acct["usdc"] += paid  # micro-shares pay 1 micro-pUSD each
    acct["redemptions"].append(
        {"condition_id": cid, "tx_hash": tx_hash, "pusd": paid / 1e6, "ts_ns": v.clock()}
    )
    return True


def send_raw(v: Venue, raw_hex: str) -> str:
    """Apply a signed redemption; returns its transaction hash. Raises RpcError."""
    try:
        raw = bytes.fromhex(raw_hex.removeprefix("0x"))
        sender = Account.recover_transaction(raw).lower()
        nonce, _gas_price, _gas, to, _value, data, *_sig = rlp.decode(raw)
    except Exception as exc:  # noqa: BLE001 - anything undecodable
        raise RpcError(-32000, f"invalid transaction: {type(exc).__name__}") from None
    expected = v.nonces.get(sender, 0)
    if int.from_bytes(nonce, "big") != expected:
        raise RpcError(-32000, f"nonce too low: expected {expected}")
    tx_hash = "0x" + keccak(raw).hex()
    v.nonces[sender] = expected + 1
    to_addr = "0x" + bytes(to).hex()
    status = "0x1" if apply_call(v, sender, to_addr, bytes(data), tx_hash) else "0x0"
    v.receipts[tx_hash] = {
        "transactionHash": tx_hash,
        "status": status,
        "from": sender,
        "to": to_addr,
        "blockNumber": hex(len(v.receipts) + 1),
        "gasUsed": hex(REDEEM_GAS),
        "logs": [],
    }
    return tx_hash


ALLOWANCE_SELECTOR = keccak(text="allowance(address,address)")[:4]
IS_APPROVED_FOR_ALL_SELECTOR = keccak(text="isApprovedForAll(address,address)")[:4]
MAX_UINT = 2**256 - 1


def call(v: Venue, to_addr: str, data: bytes) -> str:
    """`eth_call` of the two reads the approvals need: pUSD `allowance(owner, spender)` and CTF
    `isApprovedForAll(owner, operator)`; a 32-byte word. Raises RpcError for any other call."""
    selector = data[:4]
    if to_addr.lower() == COLLATERAL.lower() and selector == ALLOWANCE_SELECTOR:
        owner, spender = abi_decode(["address", "address"], data[4:])
        acct = v.account(owner)
        amount = acct["allowances"].get(spender.lower(), 0)
        if spender.lower() == EXCHANGE_V2.lower():  # the venue's `approved` flag is the truth
            amount = (amount or MAX_UINT) if acct["approved"] else 0
        return "0x" + amount.to_bytes(32, "big").hex()
    if to_addr.lower() == CTF.lower() and selector == IS_APPROVED_FOR_ALL_SELECTOR:
        owner, operator = abi_decode(["address", "address"], data[4:])
        on = operator.lower() in v.account(owner)["operators"]
        return "0x" + int(on).to_bytes(32, "big").hex()
    raise RpcError(-32000, "execution reverted")


def handle(v: Venue, method: str, params: list[Any]) -> Any:
    if method == "eth_call":
        req = params[0]
        return call(v, str(req["to"]), bytes.fromhex(str(req["data"]).removeprefix("0x")))
    if method == "eth_chainId":
        return hex(CHAIN_ID)
    if method == "eth_blockNumber":
        return hex(len(v.receipts) + 1)
    if method == "eth_getTransactionCount":
        return hex(v.nonces.get(str(params[0]).lower(), 0))
    if method == "eth_gasPrice":
        return hex(GAS_PRICE)
    if method == "eth_estimateGas":
        return hex(REDEEM_GAS)
    if method == "eth_sendRawTransaction":
        return send_raw(v, str(params[0]))
    if method == "eth_getTransactionReceipt":
        return v.receipts.get(str(params[0]))
    raise RpcError(-32601, f"the method {method} does not exist/is not available")


async def rpc(request: Request) -> Response:
    v: Venue = request.app.state.venue
    try:
        doc = await request.json()
        method, params, rid = str(doc["method"]), list(doc.get("params") or []), doc.get("id")
    except Exception:  # noqa: BLE001
        return JSONResponse(
            {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}}
        )
    try:
        result = handle(v, method, params)
    except RpcError as e:
        return JSONResponse(
            {"jsonrpc": "2.0", "id": rid, "error": {"code": e.code, "message": e.message}}
        )
    except (IndexError, TypeError, ValueError) as e:
        return JSONResponse(
            {
                "jsonrpc": "2.0",
                "id": rid,
                "error": {"code": -32602, "message": f"invalid params: {e}"},
            }
        )
    return JSONResponse({"jsonrpc": "2.0", "id": rid, "result": result})


routes = [Route("/rpc", rpc, methods=["POST"])]
