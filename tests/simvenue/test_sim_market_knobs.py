"""`/sim/market`: the simulated venue's event rates and quoters' mispricing noise, read and
changed at run time (what `polyedge bench --capacity` steps the offered rate with)."""

from __future__ import annotations

import time

import httpx

from services.simvenue.market import QUOTER_NOISE_LOGIT
from tests.simvenue.conftest import SimProc, wait_for


def _frames(sim: SimProc) -> int:
    return httpx.get(f"{sim.http}/sim/market", timeout=5).json()["frames_sent"]


def test_rates_change_at_run_time_and_bad_bodies_are_refused(sim: SimProc) -> None:
    doc = httpx.get(f"{sim.http}/sim/market", timeout=5).json()
    assert doc["book_ticker_hz"] == 10 and doc["clob_update_hz"] == 60
    assert doc["quoter_noise_sd"] == QUOTER_NOISE_LOGIT
    r = httpx.post(f"{sim.http}/sim/market", json={"quoter_noise_sd": 0.5}, timeout=5)
    assert r.status_code == 200 and r.json()["quoter_noise_sd"] == 0.5
    for bad in ({"nope": 1}, {"book_ticker_hz": -1}, {"clob_update_hz": "fast"}, [1]):
        r = httpx.post(f"{sim.http}/sim/market", json=bad, timeout=5)
        assert r.status_code == 400, (bad, r.text)
    # frames are generated as clients read them: hold a Binance stream open while measuring
    import asyncio

    from websockets.asyncio.client import connect

    async def rate(hz: float) -> float:
        httpx.post(f"{sim.http}/sim/market", json={"book_ticker_hz": hz}, timeout=5)
        async with connect(f"{sim.ws}/ws/btcusdt@bookTicker") as ws:
            await asyncio.wait_for(ws.recv(), 5)
            n0, t0 = _frames(sim), time.monotonic()
            end = t0 + 2.0
            while time.monotonic() < end:
                await asyncio.wait_for(ws.recv(), 5)
            return (_frames(sim) - n0) / (time.monotonic() - t0)

    slow = asyncio.run(rate(10))
    fast = asyncio.run(rate(400))
    assert fast > 4 * slow, (slow, fast)
    httpx.post(
        f"{sim.http}/sim/market", json={"book_ticker_hz": 10, "quoter_noise_sd": QUOTER_NOISE_LOGIT}
    )
    wait_for(lambda: httpx.get(f"{sim.http}/sim/market").json()["book_ticker_hz"] == 10, 5)
