"""The ledger records which side of each trade a fill was and its maker rebate (issue 18): a
maker fill pays no fee and earns feeSchedule.rebateRate x the fee equivalent
(common.money.maker_rebate), and a position's cost is net of it."""

from __future__ import annotations

from pathlib import Path

from common import db, money
from common.schema import OrderFilled, decode, encode
from services.execution.ledger import Ledger

NS = 1_000_000_000
T0 = 1_800_000_000 * NS
SLUG = "btc-updown-5m-1800000000"
CRYPTO = money.FeeSchedule.of("0.07", "1", True, "0.2")


def _fill(coid: str, liquidity: str, size: float = 10.0, price: float = 0.5) -> OrderFilled:
    fee, rebate = money.fill_fee_and_rebate(liquidity, size, price, CRYPTO)  # type: ignore[arg-type]
    return OrderFilled(
        client_order_id=coid,
        asset_id="U",
        side="BUY",
        price=price,
        size=size,
        fee=float(fee),
        ts_fill_ns=T0,
        slug=SLUG,
        outcome="Up",
        trade_id=coid + ":0",
        liquidity=liquidity,  # type: ignore[arg-type]
        rebate_usd=float(rebate),
    )


def test_ledger_records_liquidity_and_rebate_per_fill(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "trader.db", venue="sim")
    led.record_fills("pe-t", [_fill("pe-t", "taker")], T0)
    led.record_fills("pe-m", [_fill("pe-m", "maker")], T0)
    conn = db.connect(tmp_path / "trader.db", readonly=True)
    rows = {
        r["client_order_id"]: (r["liquidity"], r["fee"], r["rebate_usd"])
        for r in conn.execute("SELECT * FROM fills")
    }
    # taker: 10 x 0.07 x 0.25 = 0.175 fee; maker: no fee, 0.2 x 0.175 = 0.035 rebate
    assert rows == {"pe-t": ("taker", 0.175, 0.0), "pe-m": ("maker", 0.0, 0.035)}


def test_position_cost_is_net_of_the_rebate(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "trader.db", venue="sim")
    led.record_fills("pe-m", [_fill("pe-m", "maker", size=20, price=0.4)], T0)
    pos = led.positions(dry_run=True)["U"]
    # 20 x 0.40 = 8.00 paid, rebate 0.2 x 20 x 0.07 x 0.24 = 0.0672: cost 7.9328
    assert abs(pos.cost - 7.9328) < 1e-9 and pos.size == 20


def test_fill_wire_default_is_a_taker_fill() -> None:
    """Old messages (no liquidity/rebate fields) decode as taker fills with no rebate; the
    wire tag is unchanged."""
    old = OrderFilled(
        client_order_id="c", asset_id="U", side="BUY", price=0.5, size=1, fee=0.0175, ts_fill_ns=1
    )
    back = decode(encode(old))
    assert isinstance(back, OrderFilled) and (back.liquidity, back.rebate_usd) == ("taker", 0.0)
    m = decode(encode(_fill("x", "maker")))
    assert isinstance(m, OrderFilled) and m.liquidity == "maker" and m.rebate_usd == 0.035
