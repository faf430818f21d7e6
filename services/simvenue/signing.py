"""What the simulated CLOB checks, mirroring py-clob-client-v2's own signing/ and headers/:
V2 order EIP-712 signatures, L1 ClobAuth headers, L2 HMAC headers, and API-key derivation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass

from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data

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
        "domain": {"name": "Polymarket CTF Exchange", "version": "2", "chainId": chain_id,
                   "verifyingContract": exchange},
        "message": {
            "salt": int(order["salt"]), "maker": order["maker"], "signer": order["signer"],
            "tokenId": int(order["tokenId"]), "makerAmount": int(order["makerAmount"]),
            "takerAmount": int(order["takerAmount"]), "side": side_int,
            "signatureType": int(order["signatureType"]), "timestamp": int(order["timestamp"]),
            "metadata": _b32(order["metadata"]), "builder": _b32(order["builder"]),
        },
    }


def recover_order_signer(order: dict, exchange: str = EXCHANGE_V2, chain_id: int = CHAIN_ID) -> str:
    """Address that signed a V2 order body (`order` as posted: side "BUY"/"SELL")."""
    signable = encode_typed_data(full_message=_order_typed_data(order, exchange, chain_id))
    return Account.recover_message(signable, signature=order["signature"])


def order_hash(order: dict, neg_risk: bool = False, chain_id: int = CHAIN_ID) -> str:
    """The EIP-712 digest of the order, which the venue uses as its order id."""
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


def recover_clob_auth(address: str, timestamp: str, nonce: int, signature: str,
                      chain_id: int = CHAIN_ID) -> str:
    typed = {
        "primaryType": "ClobAuth",
        "types": {
            "EIP712Domain": [{"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                             {"name": "chainId", "type": "uint256"}],
            "ClobAuth": [{"name": "address", "type": "address"},
                         {"name": "timestamp", "type": "string"},
                         {"name": "nonce", "type": "uint256"},
                         {"name": "message", "type": "string"}],
        },
        "domain": {"name": "ClobAuthDomain", "version": "1", "chainId": chain_id},
        "message": {"address": address, "timestamp": str(timestamp), "nonce": int(nonce),
                    "message": CLOB_AUTH_MESSAGE},
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
    return ApiKey(str(uuid.UUID(bytes=d[:16], version=4)),
                  base64.urlsafe_b64encode(e).decode(), p.hex(), address)


def hmac_signature(secret: str, timestamp: str, method: str, path: str, body: str | None) -> str:
    message = str(timestamp) + method + path
    if body:
        message += body.replace("'", '"')
    digest = hmac.new(base64.urlsafe_b64decode(secret), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()


def check_l2(headers: dict[str, str], keys: dict[str, ApiKey], method: str, path: str,
             body: str | None, now_s: float | None = None) -> ApiKey:
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
