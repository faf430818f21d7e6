"""What the simulated CLOB checks, mirroring py-clob-client-v2's own signing/ and headers/:
V2 order EIP-712 signatures, L1 ClobAuth headers, L2 HMAC headers, and API-key derivation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass

CHAIN_ID = 137
EXCHANGE_V2 = "0xE111180000d2663C0091e4f400237545B87B996B"
NEG_RISK_EXCHANGE_V2 = "0xe2222d279d744050d28e00520010520000310F59"
COLLATERAL = "0xC011a7E12a19f7B1f670d46F03B03f3342E82DFB"
CLOB_AUTH_MESSAGE = "This message attests that I control the given wallet"
MAX_CLOCK_SKEW_S = 300

ORDER_TYPES = [
    {"name": "salt", "type": "uint256"},
    {"name": "maker", "type": "address"},
    {"name": "signer", "type": "address"},
    {"name": "tokenId", "type": "uint256"},
    {"name": "makerAmount", "type": "uint256"},
    {"name": "takerAmount", "type": "uint256"},
    {"name": "side", "type": "uint8"},
    {"name": "signatureType", "type": "uint8"},
    {"name": "timestamp", "type": "uint256"},
    {"name": "metadata", "type": "bytes32"},
    {"name": "builder", "type": "bytes32"},
]
DOMAIN_TYPES = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]


class AuthError(Exception):
    """A request failed authentication; `args[0]` is the venue's error text."""


def _b32(hex_str: str) -> bytes:
    return bytes.fromhex(hex_str.removeprefix("0x").zfill(64))


def _order_typed_data(order: dict, exchange: str, chain_id: int) -> dict:
    side = order["side"]
    side_int = 0 if side in ("BUY", 0, "0") else 1
    return {
        "primaryType": "Order",
        "types": {"EIP712Domain": DOMAIN_TYPES, "Order": ORDER_TYPES},
        "domain": {
            "name": "Polymarket CTF Exchange",
            "version": "2",
            "chainId": chain_id,
            "verifyingContract": exchange,
        },
        "message": {
            "salt": int(order["salt"]),
            "maker": order["maker"],
            "signer": order["signer"],
            "tokenId": int(order["tokenId"]),
            "makerAmount": int(order["makerAmount"]),
            "takerAmount": int(order["takerAmount"]),
            "side": side_int,
            "signatureType": int(order["signatureType"]),
            "timestamp": int(order["timestamp"]),
            "metadata": _b32(order["metadata"]),
            "builder": _b32(order["builder"]),
        },
    }


def recover_order_signer(order: dict, exchange: str = EXCHANGE_V2, chain_id: int = CHAIN_ID) -> str:
    """Address that signed a V2 order body (`order` as posted: side "BUY"/"SELL")."""
    from eth_account import Account  # imported here: it takes ~0.5 s to load
    from eth_account.messages import encode_typed_data

    signable = encode_typed_data(full_message=_order_typed_data(order, exchange, chain_id))
    return Account.recover_message(signable, signature=order["signature"])


def order_hash(order: dict, neg_risk: bool = False, chain_id: int = CHAIN_ID) -> str:
    """The EIP-712 digest of the order, which the venue uses as its order id."""
    from eth_account.messages import _hash_eip191_message, encode_typed_data

    exchange = NEG_RISK_EXCHANGE_V2 if neg_risk else EXCHANGE_V2
    signable = encode_typed_data(full_message=_order_typed_data(order, exchange, chain_id))
    return "0x" + _hash_eip191_message(signable).hex()


def verify_order_signature(order: dict, neg_risk: bool = False) -> bool:
    """True when the EOA signature recovers to `signer` and the signer is the maker."""
    try:
        exchange = NEG_RISK_EXCHANGE_V2 if neg_risk else EXCHANGE_V2
        recovered = recover_order_signer(order, exchange)
    except Exception:
        return False
    if recovered.lower() != str(order.get("signer", "")).lower():
        return False
    # EOA orders (type 0) must be signed by the maker itself; proxy types sign for a funder.
    if int(order.get("signatureType", 0)) == 0:
        return recovered.lower() == str(order.get("maker", "")).lower()
    return True


TYPED_DATA_SIGN_TYPES = [
    {"name": "contents", "type": "Order"},
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
    {"name": "salt", "type": "bytes32"},
]
INVALID_SIGNATURE = "invalid signature"
EOA_MAKER_REFUSED = "maker address not allowed, please use the deposit wallet flow"


def recover_1271_owner(order: dict, exchange: str = EXCHANGE_V2, chain_id: int = CHAIN_ID) -> str:
    """The key that signed a POLY_1271 (deposit wallet, type 3) order: the first 65 bytes of the
    signature are an ECDSA signature over the ERC-7739 `TypedDataSign` wrapping of the order
    (domain: the exchange; wrapper: name "DepositWallet", version "1", the wallet as
    verifyingContract, zero salt), followed by the app domain separator, the contents hash, the
    contents type and its length (py-clob-client-v2 `_build_poly_1271_order_signature`,
    polymarket-client 0.14 `build_order_signature`). Raises ValueError when the trailer does not
    match the order."""
    from eth_account import Account  # imported here: it takes ~0.5 s to load
    from eth_account.messages import encode_typed_data

    sig = bytes.fromhex(str(order["signature"]).removeprefix("0x"))
    std = _order_typed_data(order, exchange, chain_id)
    typed = {
        "primaryType": "TypedDataSign",
        "types": {
            "EIP712Domain": DOMAIN_TYPES,
            "Order": ORDER_TYPES,
            "TypedDataSign": TYPED_DATA_SIGN_TYPES,
        },
        "domain": std["domain"],
        "message": {
            "contents": std["message"],
            "name": "DepositWallet",
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": order["signer"],
            "salt": b"\x00" * 32,
        },
    }
    signable = encode_typed_data(full_message=typed)
    if len(sig) < 65 + 64 + 2 or sig[65:97] != signable.header:
        raise ValueError("POLY_1271 trailer does not carry this exchange's domain")
    return Account.recover_message(signable, signature=sig[:65])


def order_wallet_error(
    order: dict, api_address: str, neg_risk: bool = False, refuse_eoa_makers: bool = False
) -> str:
    """The venue's error text for who signed an order and for whom, or "" when it is valid.

    Signature types (PROTOCOLS.md section 7): 0 EOA: the key signs for itself (maker = signer);
    1 POLY_PROXY / 2 POLY_GNOSIS_SAFE: the key (signer) signs for its proxy / Safe (maker), the
    wallet CREATE2-derived from it (`common.wallets`); 3 POLY_1271: the deposit wallet is maker
    and signer and the key's ERC-7739 signature is checked against it. API credentials are bound
    to the key in every case. `refuse_eoa_makers`: the venue's newer rule for new API users
    (py-clob-client-v2 #50, #111)."""
    from common.wallets import deposit_wallets, proxy_wallet, safe_wallet

    exchange = NEG_RISK_EXCHANGE_V2 if neg_risk else EXCHANGE_V2
    try:
        sig_type = int(order.get("signatureType", 0))
        maker, signer = str(order["maker"]).lower(), str(order["signer"]).lower()
        if sig_type == 3:
            owner = recover_1271_owner(order, exchange).lower()
            if maker != signer or maker not in [w.lower() for w in deposit_wallets(owner)]:
                return INVALID_SIGNATURE
            if owner != api_address.lower():
                return "the order signer address has to be the address of the API KEY"
            return ""
        recovered = recover_order_signer(order, exchange).lower()
    except Exception:  # noqa: BLE001 - anything unreadable is a bad signature
        return INVALID_SIGNATURE
    if recovered != signer:
        return INVALID_SIGNATURE
    if signer != api_address.lower():
        return "the order signer address has to be the address of the API KEY"
    if sig_type == 0:
        if maker != signer:
            return INVALID_SIGNATURE
        return EOA_MAKER_REFUSED if refuse_eoa_makers else ""
    wallet = {1: proxy_wallet, 2: safe_wallet}.get(sig_type)
    if wallet is None or maker != wallet(signer).lower():
        return INVALID_SIGNATURE
    return ""


def funder_of(address: str, signature_type: int) -> str:
    """The wallet the venue reads balances of for an API key's address and signature type (the
    CLOB's balance-allowance takes `signature_type`)."""
    from common.wallets import deposit_wallets, proxy_wallet, safe_wallet

    if signature_type == 1:
        return proxy_wallet(address)
    if signature_type == 2:
        return safe_wallet(address)
    if signature_type == 3:
        return deposit_wallets(address)[0]
    return address


def recover_clob_auth(
    address: str, timestamp: str, nonce: int, signature: str, chain_id: int = CHAIN_ID
) -> str:
    from eth_account import Account  # imported here: it takes ~0.5 s to load
    from eth_account.messages import encode_typed_data

    typed = {
        "primaryType": "ClobAuth",
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
            ],
            "ClobAuth": [
                {"name": "address", "type": "address"},
                {"name": "timestamp", "type": "string"},
                {"name": "nonce", "type": "uint256"},
                {"name": "message", "type": "string"},
            ],
        },
        "domain": {"name": "ClobAuthDomain", "version": "1", "chainId": chain_id},
        "message": {
            "address": address,
            "timestamp": str(timestamp),
            "nonce": int(nonce),
            "message": CLOB_AUTH_MESSAGE,
        },
    }
    return Account.recover_message(encode_typed_data(full_message=typed), signature=signature)


def check_l1(headers: dict[str, str], now_s: float | None = None) -> tuple[str, int]:
    """Validate L1 headers; return (address, nonce) or raise AuthError."""
    try:
        address = headers["poly_address"]
        sig = headers["poly_signature"]
        ts = headers["poly_timestamp"]
        nonce = int(headers.get("poly_nonce", "0"))
        now = time.time() if now_s is None else now_s
        if abs(now - int(ts)) > MAX_CLOCK_SKEW_S:
            raise AuthError("Invalid L1 Request headers")
        if recover_clob_auth(address, ts, nonce, sig).lower() != address.lower():
            raise AuthError("Invalid L1 Request headers")
    except AuthError:
        raise
    except Exception as exc:
        raise AuthError("Invalid L1 Request headers") from exc
    return address, nonce


@dataclass(frozen=True)
class ApiKey:
    api_key: str
    secret: str
    passphrase: str
    address: str

    def __repr__(self) -> str:  # secrets never printed
        return f"ApiKey(api_key={self.api_key!r}, address={self.address!r})"


def derive_api_key(server_secret: bytes, address: str, nonce: int) -> ApiKey:
    """Deterministic credentials per (address, nonce), like the venue's derive endpoint."""
    d = hmac.new(server_secret, f"{address.lower()}:{nonce}".encode(), hashlib.sha256).digest()
    e = hashlib.sha256(d + b"secret").digest()
    p = hashlib.sha256(d + b"pass").digest()
    return ApiKey(
        str(uuid.UUID(bytes=d[:16], version=4)),
        base64.urlsafe_b64encode(e).decode(),
        p.hex(),
        address,
    )


def hmac_signature(secret: str, timestamp: str, method: str, path: str, body: str | None) -> str:
    message = str(timestamp) + method + path
    if body:
        message += body.replace("'", '"')
    digest = hmac.new(base64.urlsafe_b64decode(secret), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()


def check_l2(
    headers: dict[str, str],
    keys: dict[str, ApiKey],
    method: str,
    path: str,
    body: str | None,
    now_s: float | None = None,
) -> ApiKey:
    """Validate L2 headers against issued keys; `path` is the client's path (no /clob prefix)."""
    key = keys.get(headers.get("poly_api_key", ""))
    if key is None or headers.get("poly_passphrase") != key.passphrase:
        raise AuthError("Unauthorized/Invalid api key")
    if headers.get("poly_address", "").lower() != key.address.lower():
        raise AuthError("Unauthorized/Invalid api key")
    ts = headers.get("poly_timestamp", "")
    now = time.time() if now_s is None else now_s
    try:
        if abs(now - int(ts)) > MAX_CLOCK_SKEW_S:
            raise AuthError("Unauthorized/Invalid api key")
    except ValueError as exc:
        raise AuthError("Unauthorized/Invalid api key") from exc
    want = hmac_signature(key.secret, ts, method, path, body)
    if not hmac.compare_digest(want, headers.get("poly_signature", "")):
        raise AuthError("Unauthorized/Invalid api key")
    return key
