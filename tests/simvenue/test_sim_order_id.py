"""The simulated venue names an order by its EIP-712 hash, as the real venue and the SDK do."""

from __future__ import annotations

from eth_account import Account
from py_clob_client_v2.client import order_to_json_v2
from py_clob_client_v2.config import get_contract_config
from py_clob_client_v2.order_utils.exchange_order_builder_v2 import ExchangeOrderBuilderV2
from py_clob_client_v2.order_utils.model.order_data_v2 import OrderDataV2
from py_clob_client_v2.signer import Signer

from services.simvenue.signing import order_hash, verify_order_signature


def test_order_id_is_the_sdk_order_hash() -> None:
    acct = Account.create()
    builder = ExchangeOrderBuilderV2(
        get_contract_config(137).exchange_v2, 137, Signer(acct.key.hex(), 137)
    )
    signed = builder.build_signed_order(
        OrderDataV2(
            maker=acct.address,
            tokenId="123",
            makerAmount="5000000",
            takerAmount="10000000",
            side=0,
            signer=acct.address,
            signatureType=0,
        )
    )
    body = order_to_json_v2(signed, "key", "FOK", False, False)
    assert verify_order_signature(body["order"])
    sdk_hash = builder.build_order_hash(builder.build_order_typed_data(signed))
    assert order_hash(body["order"]).lower() == sdk_hash.lower()
    tampered = {**body["order"], "makerAmount": "5000001"}
    assert order_hash(tampered) != order_hash(body["order"])
