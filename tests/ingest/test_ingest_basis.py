"""Binance vs settlement basis and Chainlink lag, measured continuously and time-aligned
(issue 14): each Chainlink tick is compared with Binance's trade in force at the tick's own
exchange time (not at its arrival, ~1.5 s later); ingest publishes the meter on `md.basis`, the
dashboard's state document carries it, and a mean basis beyond the bound is a warning."""

from __future__ import annotations

import pytest

from common import topics
from common.core import Timer
from common.schema import BtcTrade, PriceBasis, PriceFeedTick
from services.ingest.basis import BasisMeter
from services.ingest.core import IngestCore
from services.observe import views
from services.observe.state import ObserveCore

S = 1_000_000_000
T0 = 1_800_000_000 * S


def test_basis_is_time_aligned_with_the_tick_not_its_arrival() -> None:
    m = BasisMeter(bound_usd=50)
    m.on_binance(T0, 85_017.0)
    m.on_binance(T0 + 1 * S, 85_100.0)  # a later move Chainlink has not seen yet
    assert m.on_chainlink(T0 + S // 2, T0 + 2 * S, 85_000.0)  # tick stamped between trades
    st = m.state(T0 + 2 * S)
    assert st.basis_usd == pytest.approx(17.0)  # against 85,017 (in force), not 85,100
    assert st.lag_ms == pytest.approx(1500.0)
    assert not st.warn
    # no Binance trade within 2 s before the tick: no sample (counted)
    assert not m.on_chainlink(T0 + 10 * S, T0 + 11 * S, 85_000.0) and m.unaligned == 1


def test_mean_sd_and_warning_beyond_the_bound() -> None:
    m = BasisMeter(bound_usd=20)
    for k in range(600):  # basis alternates 15 / 19: mean 17, sd 2
        t = T0 + k * S
        m.on_binance(t, 85_000.0 + (15 if k % 2 else 19))
        m.on_chainlink(t, t + 1_400_000_000, 85_000.0)
    st = m.state(T0 + 600 * S)
    assert st.basis_mean_usd == pytest.approx(17.0, abs=0.1)
    assert st.basis_sd_usd == pytest.approx(2.0, abs=0.1)
    assert st.lag_mean_ms == pytest.approx(1400.0) and not st.warn
    for k in range(600, 1200):  # the basis wanders to +30: beyond the 20 USD bound
        t = T0 + k * S
        m.on_binance(t, 85_030.0)
        m.on_chainlink(t, t + S, 85_000.0)
    assert m.state(T0).warn
    with pytest.raises(ValueError, match="basis bound"):
        BasisMeter(bound_usd=0)


def test_ingest_publishes_basis_and_observe_shows_it_with_the_warning() -> None:
    core = IngestCore(basis_bound_usd=10)
    observe = ObserveCore(T0, 1)
    published: list[PriceBasis] = []
    logs = []
    for k in range(200):
        t = T0 + k * S
        out = core.on_binance(
            [BtcTrade(price=85_025.0, size=0.1, ts_exchange_ns=t, ts_recv_ns=t + 30_000_000)], t
        )
        tick = PriceFeedTick(
            source="chainlink",
            symbol="btc/usd",
            value=85_000.0,
            ts_exchange_ns=t,
            ts_recv_ns=t + 1_500_000_000,
        )
        out += core.on_price_feed([tick], t + 1_500_000_000)
        out += core.step(Timer(t + 1_600_000_000), t + 1_600_000_000)
        for topic, msg in out:
            if topic == topics.BASIS:
                assert isinstance(msg, PriceBasis)
                published.append(msg)
            logs += observe.handle(topic, msg, t + 1_600_000_000)
    assert len(published) >= 150  # about once a second
    last = published[-1]
    assert last.basis_mean_usd == pytest.approx(25.0) and last.lag_mean_ms == pytest.approx(1500)
    assert last.warn  # 25 USD beyond the 10 USD bound
    ((event, level, fields),) = [a for a in core.drain_alerts() if a[0] == "basis_beyond_bound"]
    assert level == "WARNING" and fields["bound_usd"] == 10
    doc = views.live(observe, T0 + 200 * S)["data"]
    assert doc["basis"]["basis_mean_usd"] == pytest.approx(25.0) and doc["basis"]["warn"]
    assert any(getattr(r, "event", "") == "basis_beyond_bound" for r in logs)
