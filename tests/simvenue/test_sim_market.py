"""SimMarket core: determinism, window roll, resolution rule, frame shapes; no sockets."""

from __future__ import annotations

import json

from services.simvenue.market import NS, SimMarket
from services.simvenue.signing import recover_order_signer, verify_order_signature
from tests.simvenue.conftest import fixture_json

T0 = 1_790_617_500 * NS + 3 * NS  # mid-window start


def _run(seed: int, seconds: int, chunk_ms: int, **kw: object) -> list:
    m = SimMarket(seed, 10, T0, **kw)
    out = []
    t = T0
    end = T0 + seconds * NS
    while t < end:
        t = min(t + chunk_ms * 1_000_000, end)
        out.extend(m.advance(t))
    return out


def test_same_seed_same_path_and_books_however_chunked() -> None:
    a = _run(5, 25, 37)
    b = _run(5, 25, 250)
    assert len(a) > 1000
    assert a == b
    c = _run(6, 25, 250)
    assert a != c


def test_book_ticker_rate_does_not_change_btc_path() -> None:
    fast = [f for f in _run(5, 12, 100) if f[1] == "binance:btcusdt@aggTrade"]
    slow = [f for f in _run(5, 12, 100, book_ticker_hz=5.0) if f[1] == "binance:btcusdt@aggTrade"]
    assert fast and fast == slow


def test_rates_are_realistic() -> None:
    frames = _run(3, 20, 500)
    n = {ch: 0 for _, ch, _ in frames}
    for _, ch, _ in frames:
        n[ch] += 1
    assert 3 * 20 < n["binance:btcusdt@aggTrade"] < 12 * 20
    assert 80 * 20 < n["binance:btcusdt@bookTicker"] <= 100 * 20
    pc = sum(1 for _, ch, f in frames if ch.startswith("market:") and '"price_change"' in f)
    assert 35 * 20 < pc < 80 * 20


def test_windows_roll_resolve_by_twap_rule_and_publish_price_to_beat_late() -> None:
    m = SimMarket(11, 10, T0)
    frames = m.advance(T0 + 60 * NS)
    starts = sorted(m.windows)
    assert all(s % 10 == 0 for s in starts)
    resolved = [json.loads(f) for _, ch, f in frames if '"market_resolved"' in f]
    assert len(resolved) >= 4
    for ev in resolved:
        w = m.window_by_condition(ev["market"])
        assert w is not None and w.price_to_beat is not None and w.final_price is not None
        assert w.final_price == m.twap(w.end_s)
        assert w.price_to_beat == m.twap(w.start_s)
        want_up = w.final_price >= w.price_to_beat
        assert ev["winning_outcome"] == ("Up" if want_up else "Down")
        assert ev["winning_asset_id"] == (w.up_token if want_up else w.down_token)
        assert w.ptb_public_ns > w.start_s * NS  # published late
        assert w.slug == f"btc-updown-5m-{w.start_s}"
        assert len(w.up_token) > 70 and w.up_token.isdigit()
    new = [json.loads(f) for _, ch, f in frames if ch == "market"]
    assert new and all(e["event_type"] == "new_market" for e in new)


def test_frames_are_time_ordered_tuples_with_wire_text() -> None:
    frames = _run(2, 5, 100)
    ts = [f[0] for f in frames]
    assert ts == sorted(ts)
    for t, ch, text in frames[:200]:
        assert isinstance(t, int) and isinstance(ch, str)
        json.loads(text)


def test_book_best_level_last_and_take_fills_against_it() -> None:
    m = SimMarket(4, 10, T0)
    m.advance(T0 + 2 * NS)
    w = m.current_window()
    book = json.loads(m.book_event(w, w.up_token, m.t_ns))
    bids = [float(x["price"]) for x in book["bids"]]
    asks = [float(x["price"]) for x in book["asks"]]
    assert bids == sorted(bids) and asks == sorted(asks, reverse=True)
    assert bids[-1] < asks[-1]
    # Buying Down consumes the mirrored Up bids.
    best_up_bid = max(w.up_bids)
    res = m.take(w.down_token, "BUY", 999, 1000, 2_000_000, True, "FAK", m.t_ns)
    assert res.status == "matched" and res.fills[0][0] == 1000 - best_up_bid
    big = m.take(w.up_token, "BUY", 999, 1000, 10**15, True, "FOK", m.t_ns)
    assert big.status == "killed"


def test_fixture_v2_order_signature_verifies_and_tampering_fails() -> None:
    bodies = fixture_json("py_clob_client_local/v2_signed_order_bodies_GENERATED.json")
    for body in bodies.values():
        order = body["order"]
        assert verify_order_signature(order)
        assert recover_order_signer(order) == order["maker"]
        bad = dict(order, takerAmount=str(int(order["takerAmount"]) + 1))
        assert not verify_order_signature(bad)


def test_late_resolution_delays_every_resolution() -> None:
    """The `late_resolution` fault's knob: windows resolve `resolve_delay_ns` later."""
    m = SimMarket(11, 10, T0)
    m.resolve_delay_ns = 25 * NS
    frames = m.advance(T0 + 60 * NS)
    for _, _, f in frames:
        if '"market_resolved"' in f:
            ev = json.loads(f)
            w = m.window_by_condition(ev["market"])
            assert w is not None and int(ev["timestamp"]) * 1_000_000 >= (w.end_s + 25) * NS
    ended = [w for w in m.windows.values() if w.final_price is not None and w.end_s * NS > T0]
    assert ended and all(w.resolved_ns >= (w.end_s + 25) * NS for w in ended)


def test_chainlink_is_binance_minus_a_wandering_basis_late_and_with_gaps() -> None:
    """The settlement source is not Binance (PROTOCOLS.md section 7): Chainlink = Binance - a
    basis that wanders, delivered 1-2 s after its timestamp, with gaps of several seconds."""
    m = SimMarket(4, 300, T0)
    basis: list[float] = []
    delays: list[float] = []
    stamps: list[int] = []
    t = T0
    while t < T0 + 900 * NS:
        t += NS
        for ts, ch, f in m.advance(t):
            if ch == "rtds:crypto_prices_chainlink":
                ev = json.loads(f)["payload"]
                delays.append((ts - ev["timestamp"] * 1_000_000) / NS)
                stamps.append(ev["timestamp"] // 1000)
        basis.append(m.btc_price - m.chainlink[t // NS - 1])
    assert max(basis) - min(basis) > 2.0  # it wanders
    assert all(abs(b) > 0 for b in basis)
    assert 1.0 <= min(delays) and max(delays) <= 2.0 + 1e-9
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False) if b - a > 1]
    assert gaps and max(gaps) >= 3 and m.chainlink_gaps >= 1
    # the settlement values exist through the gaps: resolution never depends on delivery
    assert all(s in m.chainlink for s in range(stamps[0], stamps[-1]))


def test_informed_quoters_sometimes_move_before_binance() -> None:
    """During informed episodes the quoters' view of BTC is nearer where Binance will be than
    where it is: a book that trails Binance is not free money."""
    m = SimMarket(4, 300, T0)
    rows: list[tuple[int, float, float, bool]] = []
    t = T0
    while t < T0 + 900 * NS:
        t += 100_000_000
        m.advance(t)
        rows.append((t, m.log_price, m._quoter_log, t < m._informed_until_ns))
    ahead = 10  # 1 s
    lead = [
        abs(q - rows[i + ahead][1]) < abs(q - p)
        for i, (_, p, q, informed) in enumerate(rows[:-ahead])
        if informed and abs(rows[i + ahead][1] - p) > 1e-4  # BTC moved (1 bp)
    ]
    assert len(lead) > 20 and sum(lead) / len(lead) > 0.6


def test_books_resemble_the_real_recordings() -> None:
    """Spread, top size, depth and ladder length within the ranges of the real recordings
    (services/simvenue/README.md has the full side-by-side table)."""
    from services.simvenue.calibrate import sim_stats

    st = sim_stats(seed=2, windows=1, window_s=120)
    assert 0.6 <= st["spread_1_tick"] <= 0.9  # real 0.76
    assert 100 <= st["top_size_median"] <= 600  # real ~290 shares
    assert 800 <= st["depth5_median"] <= 5000  # real ~2,065 shares within 5 ticks
    assert st["levels_per_side_median"] >= 25  # real ~49 (a full ladder)
    assert 0.5 <= st["top_changes_per_s_median"] <= 6  # real ~2.1
