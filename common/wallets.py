"""Which Polymarket wallet a key controls: the CREATE2 addresses of its proxy (signature type 1),
Safe (2) and deposit wallet (3), so `polyedge doctor` can tell a FUNDER that belongs to another
wallet type, or to another key, before any order is refused, and so the simulated venue knows
which maker a signer may sign for (venue knowledge shared like `common.money`).

Source: the derivation of the official unified SDK, `polymarket-client` 0.14 (MIT),
`polymarket/_internal/wallet.py` and the production `_WalletDerivation` in
`polymarket/environments.py` (Polygon mainnet factories and init code). Pure math, no network.
"""

from __future__ import annotations

from eth_abi.abi import encode as abi_encode
from eth_abi.packed import encode_packed
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

SIGNATURE_TYPES = {0: "EOA", 1: "POLY_PROXY", 2: "POLY_GNOSIS_SAFE", 3: "POLY_1271 deposit wallet"}

PROXY_FACTORY = "0xaB45c5A4B0c941a2F231C04C3f49182e1A254052"
PROXY_IMPLEMENTATION = "0x44e999d5c2F66Ef0861317f9A4805AC2e90aEB4f"
SAFE_FACTORY = "0xaacFeEa03eb1561C4e67d661e40682Bd20E3541b"
SAFE_INIT_CODE_HASH = "0x2bce2127ff07fb632d16c8347c4ebf501f4841168bed00d9e6ef715ddb6fcecf"
DEPOSIT_WALLET_FACTORY = "0x00000000000Fb5C9ADea0298D729A0CB3823Cc07"
DEPOSIT_WALLET_IMPLEMENTATION = "0x58CA52ebe0DadfdF531Cde7062e76746de4Db1eB"
DEPOSIT_WALLET_BEACON = "0x7A18EDfe055488A3128f01F563e5B479D92ffc3a"

_PROXY_BYTECODE_TEMPLATE = (
    "3d3d606380380380913d393d73"
    "{factory}"
    "5af4602a57600080fd5b602d8060366000396000f3363d3d373d3d3d363d73"
    "{impl}"
    "5af43d82803e903d91602b57fd5bf352e831dd"
    "0000000000000000000000000000000000000000000000000000000000000020"
    "0000000000000000000000000000000000000000000000000000000000000000"
)
_ERC1967_CONST1 = bytes.fromhex("cc3735a920a3ca505d382bbc545af43d6000803e6038573d6000fd5b3d6000f3")
_ERC1967_CONST2 = bytes.fromhex("5155f3363d3d373d3d363d7f360894a13ba1a3210667c828492db98dca3e2076")
_ERC1967_PREFIX_BASE = 0x61003D3D8160233D3973
_BEACON_CONST1 = bytes.fromhex("b3582b35133d50545afa5036515af43d6000803e604d573d6000fd5b3d6000f3")
_BEACON_CONST2 = bytes.fromhex("1b60e01b36527fa3f0ad74e5423aebfd80d3ef4346578335a9a72aeaee59ff6c")
_BEACON_CONST3 = bytes.fromhex("60195155f3363d3d373d3d363d602036600436635c60da")
_BEACON_PREFIX_BASE = 0x6100523D8160233D3973


def _hex(x: str) -> bytes:
    return bytes.fromhex(x.removeprefix("0x").removeprefix("0X"))


def _create2(factory: str, salt: bytes, bytecode_hash: bytes) -> str:
    return to_checksum_address(
        "0x" + keccak(b"\xff" + _hex(factory) + salt + bytecode_hash)[12:].hex()
    )


def proxy_wallet(signer: str) -> str:
    """The POLY_PROXY wallet (email / Magic accounts, signature type 1) of `signer`."""
    code = bytes.fromhex(
        _PROXY_BYTECODE_TEMPLATE.format(
            factory=PROXY_FACTORY[2:].lower(), impl=PROXY_IMPLEMENTATION[2:].lower()
        )
    )
    salt = keccak(encode_packed(["address"], [to_checksum_address(signer)]))
    return _create2(PROXY_FACTORY, salt, keccak(code))


def safe_wallet(signer: str) -> str:
    """The Gnosis Safe (browser-wallet accounts, signature type 2) of `signer`."""
    salt = keccak(abi_encode(["address"], [to_checksum_address(signer)]))
    return _create2(SAFE_FACTORY, salt, _hex(SAFE_INIT_CODE_HASH))


def _deposit_args(signer: str) -> bytes:
    return abi_encode(
        ["address", "bytes32"], [DEPOSIT_WALLET_FACTORY, _hex(signer).rjust(32, b"\x00")]
    )


def deposit_wallets(signer: str) -> tuple[str, str]:
    """The deposit wallet (signature type 3) of `signer`: (beacon-proxy form, current; UUPS form,
    the legacy one). Which one a key uses depends on when it was created."""
    args = _deposit_args(to_checksum_address(signer))
    n = len(args)
    beacon_code = (
        (_BEACON_PREFIX_BASE + (n << 56)).to_bytes(10, "big")
        + _hex(DEPOSIT_WALLET_BEACON)
        + _BEACON_CONST3
        + _BEACON_CONST2
        + _BEACON_CONST1
        + args
    )
    uups_code = (
        (_ERC1967_PREFIX_BASE + (n << 56)).to_bytes(10, "big")
        + _hex(DEPOSIT_WALLET_IMPLEMENTATION)
        + bytes.fromhex("6009")
        + _ERC1967_CONST2
        + _ERC1967_CONST1
        + args
    )
    salt = keccak(args)
    return (
        _create2(DEPOSIT_WALLET_FACTORY, salt, keccak(beacon_code)),
        _create2(DEPOSIT_WALLET_FACTORY, salt, keccak(uups_code)),
    )


def wallet_type_of(signer: str, funder: str) -> int | None:
    """The signature type whose wallet `funder` is for `signer` (0 when it is the key's own
    address), or None when it is none of this key's wallets."""
    f = to_checksum_address(funder)
    if f == to_checksum_address(signer):
        return 0
    if f in deposit_wallets(signer):
        return 3
    if f == proxy_wallet(signer):
        return 1
    if f == safe_wallet(signer):
        return 2
    return None


# --- relayer transactions (signature types 1-3) ------------------------------------------------
# How a proxy, Safe or deposit wallet sends a call gasless through Polymarket's relayer: what the
# key signs for each wallet type. Source: polymarket-client 0.14 (MIT),
# `polymarket/_internal/actions/relayer/` (`gasless.py` payloads, `calls.py` encodings,
# `signing/proxy.py`, `signing/safe.py`, `signing/deposit_wallet.py`) and the production
# `relay_hub` / `safe_multisend` of `polymarket/environments.py`. Shared by the bot (signing) and
# the simulated venue (verifying), like `common.money`; checked against vectors computed with the
# SDK's own functions (tests/execution/test_exec_relayer.py).
RELAY_HUB = "0xD216153c06E857cD7f72665E0aF1d7D82172F494"
SAFE_MULTISEND = "0xA238CBeb142c10Ef7Ad8442C6D1f9E89e07e7761"
PROXY_CALL_SELECTOR = keccak(text="proxy((uint8,address,uint256,bytes)[])")[:4]
MULTISEND_SELECTOR = keccak(text="multiSend(bytes)")[:4]
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"

Call = tuple[str, bytes]  # (target contract, calldata); value is always 0 here


def proxy_call_data(calls: list[Call]) -> bytes:
    """Calldata of the proxy factory's `proxy((uint8 typeCode, address to, uint256 value,
    bytes data)[])`, typeCode 1 = CALL (SDK `encode_proxy_call`)."""
    return PROXY_CALL_SELECTOR + abi_encode(
        ["(uint8,address,uint256,bytes)[]"], [[(1, to, 0, data) for to, data in calls]]
    )


def decode_proxy_call_data(data: bytes) -> list[Call]:
    """The calls of `proxy_call_data`; ValueError when `data` is not such a call."""
    from eth_abi.abi import decode as abi_decode

    if data[:4] != PROXY_CALL_SELECTOR:
        raise ValueError("not a proxy((uint8,address,uint256,bytes)[]) call")
    (items,) = abi_decode(["(uint8,address,uint256,bytes)[]"], data[4:])
    return [(to_checksum_address(to), bytes(d)) for _code, to, _value, d in items]


def safe_multisend_data(calls: list[Call]) -> bytes:
    """Calldata of the Safe MultiSend `multiSend(bytes)`: per call operation 0, to, value 0,
    data length, data, packed (SDK `encode_safe_multisend_call`)."""
    inner = b"".join(
        b"\x00" + _hex(to) + (0).to_bytes(32, "big") + len(d).to_bytes(32, "big") + d
        for to, d in calls
    )
    return MULTISEND_SELECTOR + abi_encode(["bytes"], [inner])


def decode_safe_multisend_data(data: bytes) -> list[Call]:
    """The calls of `safe_multisend_data`; ValueError when `data` is not such a call."""
    from eth_abi.abi import decode as abi_decode

    if data[:4] != MULTISEND_SELECTOR:
        raise ValueError("not a multiSend(bytes) call")
    (inner,) = abi_decode(["bytes"], data[4:])
    out, i = [], 0
    while i < len(inner):
        to = to_checksum_address("0x" + inner[i + 1 : i + 21].hex())
        n = int.from_bytes(inner[i + 53 : i + 85], "big")
        out.append((to, bytes(inner[i + 85 : i + 85 + n])))
        i += 85 + n
    return out


def proxy_relay_hash(
    signer: str,
    to: str,
    data: bytes,
    gas_limit: int,
    nonce: int,
    relay: str,
    relayer_fee: int = 0,
    gas_price: int = 0,
    relay_hub: str = RELAY_HUB,
) -> bytes:
    """What a proxy wallet's key signs (EIP-191 personal message) for a relayer transaction:
    keccak("rlx:" + from + to + data + relayerFee + gasPrice + gasLimit + nonce + relayHub +
    relay), numbers as 32-byte words (SDK `build_proxy_transaction_hash`)."""
    return keccak(
        b"rlx:"
        + _hex(signer)
        + _hex(to)
        + data
        + relayer_fee.to_bytes(32, "big")
        + gas_price.to_bytes(32, "big")
        + gas_limit.to_bytes(32, "big")
        + nonce.to_bytes(32, "big")
        + _hex(relay_hub)
        + _hex(relay)
    )


def safe_tx_typed_data(
    safe: str, to: str, data: bytes, operation: int, nonce: int, chain_id: int = 137
) -> dict:
    """The Safe's EIP-712 `SafeTx` (domain: chainId, verifyingContract = the Safe; no gas
    refund, value 0). The key signs its digest as an EIP-191 personal message and the signature's
    v is raised by 4 (`pack_safe_signature`) (SDK `sign_safe_transaction`)."""
    return {
        "domain": {"chainId": chain_id, "verifyingContract": safe},
        "types": {
            "EIP712Domain": [
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "SafeTx": [
                {"name": "to", "type": "address"},
                {"name": "value", "type": "uint256"},
                {"name": "data", "type": "bytes"},
                {"name": "operation", "type": "uint8"},
                {"name": "safeTxGas", "type": "uint256"},
                {"name": "baseGas", "type": "uint256"},
                {"name": "gasPrice", "type": "uint256"},
                {"name": "gasToken", "type": "address"},
                {"name": "refundReceiver", "type": "address"},
                {"name": "nonce", "type": "uint256"},
            ],
        },
        "primaryType": "SafeTx",
        "message": {
            "to": to,
            "value": 0,
            "data": data,
            "operation": operation,
            "safeTxGas": 0,
            "baseGas": 0,
            "gasPrice": 0,
            "gasToken": ZERO_ADDRESS,
            "refundReceiver": ZERO_ADDRESS,
            "nonce": nonce,
        },
    }


def safe_tx_digest(typed: dict) -> bytes:
    """keccak(0x19 0x01 domainSeparator structHash) of a `safe_tx_typed_data`."""
    from eth_account.messages import encode_typed_data

    m = encode_typed_data(full_message=typed)
    return keccak(b"\x19" + m.version + m.header + m.body)


def deposit_wallet_batch_typed_data(
    wallet: str, calls: list[Call], nonce: int, deadline: int, chain_id: int = 137
) -> dict:
    """The deposit wallet's EIP-712 `Batch(address wallet, uint256 nonce, uint256 deadline,
    Call[] calls)`, `Call(address target, uint256 value, bytes data)`, domain
    ("DepositWallet", "1", chainId, the wallet); the key signs it directly (the wallet's owner;
    a session key would wrap its signature) (SDK `sign_deposit_wallet_batch`)."""
    return {
        "domain": {
            "chainId": chain_id,
            "name": "DepositWallet",
            "verifyingContract": wallet,
            "version": "1",
        },
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Batch": [
                {"name": "wallet", "type": "address"},
                {"name": "nonce", "type": "uint256"},
                {"name": "deadline", "type": "uint256"},
                {"name": "calls", "type": "Call[]"},
            ],
            "Call": [
                {"name": "target", "type": "address"},
                {"name": "value", "type": "uint256"},
                {"name": "data", "type": "bytes"},
            ],
        },
        "primaryType": "Batch",
        "message": {
            "wallet": wallet,
            "nonce": nonce,
            "deadline": deadline,
            "calls": [{"target": t, "value": 0, "data": d} for t, d in calls],
        },
    }
