"""Wallet addresses of a key by signature type: the values below were computed by the official
unified SDK, polymarket-client 0.14 (`polymarket._internal.wallet.derive_*` with its PRODUCTION
derivation config), for the public test key 0x11...11."""

from __future__ import annotations

from eth_account import Account

from common.wallets import deposit_wallets, proxy_wallet, safe_wallet, wallet_type_of

KEY = "0x" + "11" * 32
SIGNER = "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A"
PROXY = "0x6Cd089333445c89b55B7693c6009DCc229613738"
SAFE = "0x75F00B003FBBBA193FABEB06284c3187a4C1232E"
DEPOSIT_BEACON = "0x8154deDBDAAA46c07453E47b5b6C0Ff60B8542b9"
DEPOSIT_UUPS = "0x7a57144fAfde87F5cE4a880D570BAe58eeBC83f2"


def test_exec_wallet_addresses_match_the_official_sdk() -> None:
    assert Account.from_key(KEY).address == SIGNER
    assert proxy_wallet(SIGNER) == PROXY
    assert safe_wallet(SIGNER) == SAFE
    assert deposit_wallets(SIGNER) == (DEPOSIT_BEACON, DEPOSIT_UUPS)


def test_exec_wallet_type_of_a_funder() -> None:
    assert wallet_type_of(SIGNER, SIGNER.lower()) == 0
    assert wallet_type_of(SIGNER, PROXY) == 1
    assert wallet_type_of(SIGNER, SAFE) == 2
    assert wallet_type_of(SIGNER, DEPOSIT_BEACON) == 3 and wallet_type_of(SIGNER, DEPOSIT_UUPS) == 3
    other = Account.create().address
    assert wallet_type_of(SIGNER, proxy_wallet(other)) is None
