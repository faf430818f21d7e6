"""Every order the live adapter signs is one the venue accepts: each price of both tick grids, both
sides, the config's stakes, for each wallet type; checked on the signed body itself (amount
decimals and minimums by the venue's rules, the EIP-712 signature, maker/signer per wallet type).
The adapter derives its API credentials from the simulated venue (no other network)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import ROUND_DOWN
from decimal import Decimal as D
from pathlib import Path

import pytest
from eth_account import Account

from common.config import Secret
from common.money import amounts_error
from common.schema import OrderIntent
from services.execution.core import VenueError
from services.execution.live import LiveVenue
from services.simvenue.signing import recover_order_signer
from tests.conftest import free_port
from tests.execution.test_exec_live import Sim

FUNDER = "0x00000000000000000000000000000000000F00d5"  # a wallet the key signs for (types 1-3)
STAKES = (D("1"), D("5"), D("7.77"), D("25"))


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    s = Sim(Path(tmp_path_factory.mktemp("sim")), free_port())
    yield s
    s.stop()


def intent(side: str, limit: D, size: D, tick: D) -> OrderIntent:
    return OrderIntent(
        client_order_id="c",
        slug="s",
        asset_id="71321045679252212594626385532706912750332728571942532289631379312455583992563",
        outcome="Up",
        side=side,  # type: ignore[arg-type]
        order_type="FAK",
        limit_price=float(limit),
        size=float(size),
        expires_ns=0,
        ts_intent_ns=0,
        tick_size=float(tick),
    )


@pytest.mark.parametrize("signature_type", [0, 1, 2, 3])
def test_exec_every_signed_order_meets_the_venue_rules(sim: Sim, signature_type: int) -> None:
    key = Account.create()
    v = LiveVenue(
        sim.base + "/clob",
        Secret(key.key.hex()),
        log=lambda *a, **k: None,
        signature_type=signature_type,
        funder=FUNDER if signature_type else "",
    )
    assert v.start()
    maker = FUNDER if signature_type else key.address
    signed = skipped = 0
    # EOA: every price for the default $5 stake, every 7th for the other stakes; the other wallet
    # types every 11th price (the amounts do not depend on the wallet; the arithmetic over every
    # combination is tests/common/test_money.py). Signing costs ~3 ms an order here.
    step = 1 if signature_type == 0 else 11
    for tick in (D("0.01"), D("0.001")):
        n = int(1 / tick)
        for k in range(1, n):
            limit = tick * k
            for stake in STAKES:
                if k % step or (stake != D("5") and k % 7):
                    continue
                size = (stake / limit).quantize(D("0.01"), rounding=ROUND_DOWN)
                for side in ("BUY", "SELL"):
                    try:
                        so = v.sign(intent(side, limit, size, tick), limit, size)
                    except VenueError as e:
                        assert side == "BUY" and e.code == "below_min_buy_notional", e.reason
                        assert size * limit < 1
                        skipped += 1
                        continue
                    order = json.loads(so.body)["order"]
                    assert order["side"] == side and order["signatureType"] == signature_type
                    mk, tk = int(order["makerAmount"]), int(order["takerAmount"])
                    err = amounts_error(side, mk, tk, marketable=True)  # type: ignore[arg-type]
                    assert err == "", (tick, limit, stake, side, order, err)
                    price = D(mk) / D(tk) if side == "BUY" else D(tk) / D(mk)
                    assert limit - tick < price < limit + tick
                    assert order["maker"].lower() == maker.lower()
                    if signature_type == 3:  # the deposit wallet signs as itself (ERC-7739)
                        assert order["signer"].lower() == FUNDER.lower()
                        assert len(order["signature"].removeprefix("0x")) // 2 > 65
                    else:
                        assert order["signer"].lower() == key.address.lower()
                        assert recover_order_signer(order).lower() == key.address.lower()
                    signed += 1
    assert signed > (2_500 if signature_type == 0 else 200) and skipped > 0
    v.close()


def test_exec_funder_rules_at_construction() -> None:
    k = Secret(Account.create().key.hex())
    with pytest.raises(ValueError, match="FUNDER is required"):
        LiveVenue("http://127.0.0.1:9", k, log=lambda *a, **kw: None, signature_type=2)
    with pytest.raises(ValueError, match="SIGNATURE_TYPE"):
        LiveVenue("http://127.0.0.1:9", k, log=lambda *a, **kw: None, signature_type=4)
