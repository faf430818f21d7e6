"""Polymarket's relayer (under `/relayer`): the gasless path through which proxy (signature type
1), Safe (2) and deposit-wallet (3) accounts redeem winnings and set approvals.

Endpoints and payloads as the official SDK uses them (polymarket-client 0.14,
`polymarket/_internal/actions/relayer/`: `deployed.py`, `nonce.py`, `submit.py`, `poll.py`):
`GET /deployed?address=`, `GET /relay-payload?address=&type=PROXY` (relay address and nonce),
`GET /v1/account/transactions/params?address=&type=SAFE|WALLET` (nonce), `POST /submit`
(answers `transactionID`, `transactionHash`, `state`), `GET /v1/account/transactions/{id}`
(`transaction_id`, `transaction_hash`, `state` STATE_NEW ... STATE_CONFIRMED | STATE_FAILED |
STATE_INVALID, `error_msg`). Each submission is checked the way the real relayer must before
paying gas: the relayer API key headers are present, the signature recovers to `from` over the
structure that wallet type signs (common/wallets.py), the wallet is `from`'s own proxy / Safe /
deposit wallet, the nonce is the next one, a deposit-wallet batch's deadline has not passed.
A valid one is applied at once (services/simvenue/rpc.py `apply_call`: a redemption pays the
wallet's winning tokens in pUSD and is listed in the account's `redemptions` in `/sim/state`);
a call that reverts makes the transaction STATE_FAILED. Fault `relayer_down` (`count` or
`seconds`): `/submit` answers 503 and submits nothing. Not confirmed from public sources: the
real relayer's error texts (these name the problem) and how it binds an API key to an address
(here any non-empty key and address are accepted).
"""

from __future__ import annotations

import time
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from common import wallets
from services.simvenue.rpc import apply_call
from services.simvenue.signing import CHAIN_ID
from services.simvenue.venue import Venue, error_response

RELAY_ADDRESS = "0x7Ee8e1Ac0F1f7bC0b6a1f1D0F1e1dE8aAaBbCcDd"  # the relay the sim names (any)
KINDS = ("PROXY", "SAFE", "WALLET")


class Refused(Exception):
    pass


def _auth(request: Request) -> None:
    # polymarket-client `auth.py`: a relayer API key sends RELAYER_API_KEY and
    # RELAYER_API_KEY_ADDRESS; a builder key sends POLY_BUILDER_* (not accepted here)
    if not request.headers.get("RELAYER_API_KEY") or not request.headers.get(
        "RELAYER_API_KEY_ADDRESS"
    ):
        raise PermissionError("missing RELAYER_API_KEY / RELAYER_API_KEY_ADDRESS headers")


def _nonce_key(address: str, kind: str) -> str:
    return f"relayer:{kind}:{address.lower()}"


async def deployed(request: Request) -> Response:
    # every wallet of the simulated chain exists: the bot never deploys one
    return JSONResponse({"deployed": True})


async def nonce(request: Request) -> Response:
    v: Venue = request.app.state.venue
    address = request.query_params.get("address", "")
    kind = request.query_params.get("type", "")
    if kind not in KINDS or not address:
        return error_response(400, f"address and type ({', '.join(KINDS)}) are required")
    n = v.nonces.get(_nonce_key(address, kind), 0)
    relay = RELAY_ADDRESS if request.url.path.endswith("/relay-payload") else address
    return JSONResponse({"address": relay, "nonce": str(n)})


def _recover(digest_msg: Any, sig_hex: str) -> str:
    return Account.recover_message(digest_msg, signature=bytes.fromhex(sig_hex.removeprefix("0x")))


def verify(v: Venue, body: dict[str, Any]) -> tuple[str, list[wallets.Call], str]:
    """(wallet, calls, nonce key) of a valid submission; raises Refused naming the problem."""
    kind = str(body.get("type", ""))
    signer = to_checksum_address(str(body.get("from", "")))
    want_nonce = v.nonces.get(_nonce_key(signer, kind), 0)
    if str(body.get("nonce", "")) != str(want_nonce):
        raise Refused(f"invalid nonce {body.get('nonce')!r}: expected {want_nonce}")
    sig = str(body.get("signature", ""))
    if kind == "PROXY":
        wallet = to_checksum_address(str(body.get("proxyWallet", "")))
        if wallet != wallets.proxy_wallet(signer):
            raise Refused(f"proxyWallet {wallet} is not the proxy wallet of {signer}")
        if to_checksum_address(str(body.get("to", ""))) != wallets.PROXY_FACTORY:
            raise Refused("to must be the proxy factory")
        p = body.get("signatureParams") or {}
        data = bytes.fromhex(str(body.get("data", "")).removeprefix("0x"))
        h = wallets.proxy_relay_hash(
            signer,
            wallets.PROXY_FACTORY,
            data,
            int(p["gasLimit"]),
            int(want_nonce),
            str(p["relay"]),
            int(p.get("relayerFee", 0)),
            int(p.get("gasPrice", 0)),
            str(p.get("relayHub", wallets.RELAY_HUB)),
        )
        if _recover(encode_defunct(primitive=h), sig) != signer:
            raise Refused("invalid signature: does not recover to from")
        return wallet, wallets.decode_proxy_call_data(data), _nonce_key(signer, kind)
    if kind == "SAFE":
        wallet = to_checksum_address(str(body.get("proxyWallet", "")))
        if wallet != wallets.safe_wallet(signer):
            raise Refused(f"proxyWallet {wallet} is not the Safe of {signer}")
        p = body.get("signatureParams") or {}
        operation = int(p.get("operation", 0))
        to = to_checksum_address(str(body.get("to", "")))
        data = bytes.fromhex(str(body.get("data", "")).removeprefix("0x"))
        digest = wallets.safe_tx_digest(
            wallets.safe_tx_typed_data(wallet, to, data, operation, int(want_nonce), CHAIN_ID)
        )
        raw = bytes.fromhex(sig.removeprefix("0x"))
        if len(raw) != 65 or raw[64] not in (31, 32):
            raise Refused("invalid signature: a Safe eth_sign signature has v 31 or 32")
        unpacked = raw[:64] + bytes([raw[64] - 4])
        if Account.recover_message(encode_defunct(primitive=digest), signature=unpacked) != signer:
            raise Refused("invalid signature: does not recover to from")
        if operation == 1:
            if to != to_checksum_address(wallets.SAFE_MULTISEND):
                raise Refused("a delegatecall must go to the MultiSend contract")
            calls = wallets.decode_safe_multisend_data(data)
        else:
            calls = [(to, data)]
        return wallet, calls, _nonce_key(signer, kind)
    if kind == "WALLET":
        params = body.get("depositWalletParams") or {}
        wallet = to_checksum_address(str(params.get("depositWallet", "")))
        if wallet not in wallets.deposit_wallets(signer):
            raise Refused(f"depositWallet {wallet} is not the deposit wallet of {signer}")
        deadline = int(params.get("deadline", 0))
        if deadline < v.clock() // 1_000_000_000:
            raise Refused(f"deadline {deadline} has passed")
        calls = [
            (
                to_checksum_address(str(c["target"])),
                bytes.fromhex(str(c["data"]).removeprefix("0x")),
            )
            for c in params.get("calls") or []
        ]
        typed = wallets.deposit_wallet_batch_typed_data(
            wallet, calls, int(want_nonce), deadline, CHAIN_ID
        )
        if _recover(encode_typed_data(full_message=typed), sig) != signer:
            raise Refused("invalid signature: does not recover to from")
        return wallet, calls, _nonce_key(signer, kind)
    raise Refused(f"unknown transaction type {kind!r}")


async def submit(request: Request) -> Response:
    v: Venue = request.app.state.venue
    if v.take_fault("relayer_down") is not None:  # counted or timed: nothing is submitted
        return error_response(503, "relayer unavailable (simulated)")
    try:
        _auth(request)
    except PermissionError as e:
        return error_response(401, str(e))
    try:
        body = await request.json()
        if not isinstance(body, dict):
            raise ValueError("not an object")
        wallet, calls, nkey = verify(v, body)
    except Refused as e:
        v.counters["relayer_refused"] = v.counters.get("relayer_refused", 0) + 1
        return error_response(400, str(e))
    except (KeyError, TypeError, ValueError) as e:
        return error_response(400, f"invalid payload: {type(e).__name__}: {e}")
    v.nonces[nkey] = v.nonces.get(nkey, 0) + 1
    tx_id = f"sim-{len(v.relayer_txs) + 1:06d}-{time.time_ns() % 10**6:06d}"
    tx_hash = "0x" + keccak(text=tx_id).hex()
    ok = all(apply_call(v, wallet, to, data, tx_hash) for to, data in calls)
    v.relayer_txs[tx_id] = {
        "transaction_id": tx_id,
        "transaction_hash": tx_hash,
        "state": "STATE_CONFIRMED" if ok else "STATE_FAILED",
        "error_msg": "" if ok else "execution reverted",
        "from": str(body.get("from")),
        "wallet": wallet,
        "type": str(body.get("type")),
        "metadata": str(body.get("metadata", "")),
    }
    v.counters["relayer_submitted"] = v.counters.get("relayer_submitted", 0) + 1
    return JSONResponse({"transactionID": tx_id, "transactionHash": tx_hash, "state": "STATE_NEW"})


async def transaction(request: Request) -> Response:
    v: Venue = request.app.state.venue
    tx = v.relayer_txs.get(request.path_params["tx_id"])
    if tx is None:
        return error_response(404, "transaction not found")
    return JSONResponse(
        {k: tx[k] for k in ("transaction_id", "transaction_hash", "state", "error_msg")}
    )


routes = [
    Route("/relayer/deployed", deployed, methods=["GET"]),
    Route("/relayer/relay-payload", nonce, methods=["GET"]),
    Route("/relayer/v1/account/transactions/params", nonce, methods=["GET"]),
    Route("/relayer/submit", submit, methods=["POST"]),
    Route("/relayer/v1/account/transactions/{tx_id}", transaction, methods=["GET"]),
]
