"""Settlement-source pricing (issue 15): the signal prices in Chainlink's units. The TWAP's fixed
part comes from the Chainlink ticks that exist (the latest, undelivered seconds bridged with
Binance minus the measured basis), the spot input is Binance minus the basis, the basis's
uncertainty is in the variance, and a settlement feed that stops is said so, with the
uncertainty growing. The basis comes from ingest's own meter (md.basis), fed the same ticks."""

from __future__ import annotations

import pytest

from common.config import StrategyConfig
from common.schema import BtcTrade, ClockTick, MarketInfo, Msg, PriceFeedTick, SignalScore
from services.ingest.basis import BasisMeter
from services.signal.core import SETTLEMENT_STALE_S, SignalCore
from services.signal.model import fair_up

NS = 1_000_000_000
MS = 1_000_000
START = 1_790_000_100  # unix seconds
END = START + 300
PTB = 85_000.0


def _market() -> MarketInfo:
    return MarketInfo(
        slug=f"btc-updown-5m-{START}",
        condition_id="0xc",
        up_token_id="U",
        down_token_id="D",
        window_start_ns=START * NS,
        window_end_ns=END * NS,
        ts_recv_ns=(START - 60) * NS,
        twap_enabled=True,
        twap_lookback_s=60,
        price_to_beat=PTB,
        price_to_beat_source="gamma",
    )


def _score(
    chainlink: float,
    binance: float,
    seconds_left: float,
    lag_s: float = 1.4,
    chainlink_stops_s: float | None = None,
) -> SignalScore:
    """Flat Chainlink and Binance prices from 10 minutes before the window, Chainlink ticks once a
    second arriving `lag_s` late (none after `chainlink_stops_s` before the end), md.basis from
    ingest's BasisMeter each second as ingest publishes it; the score `seconds_left` before the
    end. The model alone (built-in config, no momentum) so the numbers are the model's."""
    core = SignalCore(StrategyConfig(momentum_weight=0.0))
    meter = BasisMeter()
    now_ns = int((END - seconds_left) * NS)
    events: list[tuple[int, int, Msg | str]] = [(_market().ts_recv_ns, 0, _market())]
    for sec in range(START - 600, END + 1):
        t = sec * NS
        events.append(
            (
                t + 50 * MS,
                1,
                BtcTrade(price=binance, size=0.01, ts_exchange_ns=t, ts_recv_ns=t + 50 * MS),
            )
        )
        if chainlink_stops_s is None or sec < END - chainlink_stops_s:
            recv = t + int(lag_s * NS)
            events.append(
                (
                    recv,
                    2,
                    PriceFeedTick(
                        source="chainlink",
                        symbol="btc/usd",
                        value=chainlink,
                        ts_exchange_ns=t,
                        ts_recv_ns=recv,
                    ),
                )
            )
        events.append((t + 900 * MS, 3, "basis"))  # ingest republishes md.basis each second
    for recv, _, msg in sorted(events, key=lambda e: (e[0], e[1])):
        if recv > now_ns:
            break
        if msg == "basis":
            if meter.samples:
                core.step(meter.state(recv), recv)
            continue
        if isinstance(msg, BtcTrade):
            meter.on_binance(msg.ts_exchange_ns, msg.price)
        elif isinstance(msg, PriceFeedTick):
            meter.on_chainlink(msg.ts_exchange_ns, msg.ts_recv_ns, msg.value)
        core.step(msg, recv)
    out = core.step(ClockTick(ts_ns=now_ns), now_ns)
    assert out, "no score"
    s = out[0][1]
    assert isinstance(s, SignalScore)
    return s


def test_worked_example_prices_the_settlement_source_not_binance() -> None:
    """Issue 15's worked example: price to beat 85,000, Chainlink flat at 85,000, Binance flat at
    85,010, 60 s TWAP, 29.6 s left. Chainlink will settle at 85,000: a tie, p_up ~ 0.5. Pricing
    Binance (the average and the spot from Binance) gave 0.9943 and would buy Up up to ~0.93."""
    s = _score(chainlink=85_000.0, binance=85_010.0, seconds_left=29.6)
    assert s.p_up == pytest.approx(0.5, abs=0.05)
    assert s.inputs["basis_usd"] == pytest.approx(10.0)
    assert s.inputs["settlement_spot"] == pytest.approx(85_000.0)
    assert s.inputs["known_twap_avg"] == pytest.approx(85_000.0)
    # the second(s) Chainlink has not delivered yet were bridged, not the whole average replaced
    assert 1 <= s.inputs["bridged_s"] <= 2
    assert s.inputs["settlement_feed_down"] == 0.0
    # what Binance-units pricing says at the same sigma: the bug the issue describes
    binance_units = fair_up(85_010.0, PTB, s.inputs["sigma"], 29.6, 60, known_avg=85_010.0)
    assert binance_units.p_up > 0.99


@pytest.mark.parametrize("basis", [-20.0, -4.0, 0.0, 10.0, 17.2, 40.0])
@pytest.mark.parametrize("lag_s", [0.2, 1.4, 3.0, 6.0])
@pytest.mark.parametrize("seconds_left", [120.0, 29.6, 5.0])
def test_basis_and_lag_sweep(basis: float, lag_s: float, seconds_left: float) -> None:
    """Whatever the basis (Binance - Chainlink) and Chainlink's delivery lag, a Chainlink tie is
    ~0.5, and Chainlink $5 above the price to beat favours Up, $5 below favours Down."""
    tie = _score(PTB, PTB + basis, seconds_left, lag_s)
    assert tie.p_up == pytest.approx(0.5, abs=0.05), tie.inputs
    above = _score(PTB + 5, PTB + 5 + basis, seconds_left, lag_s)
    below = _score(PTB - 5, PTB - 5 + basis, seconds_left, lag_s)
    assert above.p_up > 0.55 and below.p_up < 0.45
    assert above.inputs["basis_usd"] == pytest.approx(basis)


def test_settlement_feed_down_is_said_and_widens_the_uncertainty() -> None:
    """Chainlink stops 90 s before the end: the score says the feed is down, keeps the last
    measured basis, and its uncertainty grows with the feed's age (p moves toward 0.5)."""
    up = _score(PTB + 5, PTB + 15, 29.6)
    down = _score(PTB + 5, PTB + 15, 29.6, chainlink_stops_s=90)
    assert up.inputs["settlement_feed_down"] == 0.0
    assert down.inputs["settlement_feed_down"] == 1.0
    assert down.inputs["settlement_feed_age_s"] > SETTLEMENT_STALE_S
    assert down.inputs["basis_usd"] == pytest.approx(10.0)  # the last measured basis, kept
    assert down.inputs["basis_sd_usd"] > up.inputs["basis_sd_usd"] + 5
    assert down.inputs["std_log"] > up.inputs["std_log"]
    assert 0.5 < down.p_up < up.p_up
    # the TWAP's fixed part: 30 s after Chainlink stopped are bridged from Binance - basis
    assert down.inputs["bridged_s"] == pytest.approx(31, abs=1)
    assert down.inputs["known_twap_avg"] == pytest.approx(PTB + 5)
