"""The execution core with a real SQLite ledger: dry-run fills, ledger rules, latency, settlement,
the three switches, and restart recovery. The venue, where one is needed, is a recording fake."""

from __future__ import annotations

import itertools
import json
from decimal import ROUND_DOWN, ROUND_FLOOR, Decimal
from pathlib import Path

import pytest
from msgspec.structs import replace

from common import money, topics
from common.config import load_settings
from common.core import Timer
from common.schema import (
    BookSnapshot,
    ClockTick,
    MarketInfo,
    MarketResolved,
    OrderIntent,
)
from services.execution.core import (
    UNSETTLED_WARN_NS,
    ExecutionCore,
    SignedOrder,
    VenueResult,
    VenueTrade,
)
from services.execution.ledger import Ledger
from services.execution.switches import (
    BLOCKED_DRY_RUN,
    BLOCKED_ENABLE,
    BLOCKED_KEY,
    TradingMode,
)

T0 = 1_800_000_000_000_000_000
MS = 1_000_000
UP = "111"
DOWN = "222"
DRY = TradingMode(True, False, False)


def book(asks, bids=((0.50, 50.0),), t=T0, asset=UP) -> BookSnapshot:
    return BookSnapshot(
        asset_id=asset,
        best_bid=bids[0][0] if bids else None,
        best_ask=asks[0][0] if asks else None,
        bids=[tuple(b) for b in bids],
        asks=[tuple(a) for a in asks],
        ts_exchange_ns=t,
        ts_recv_ns=t,
    )


def intent(coid="o1", side="BUY", kind="FOK", limit=0.53, size=12.0, t=T0, **kw) -> OrderIntent:
    return OrderIntent(
        client_order_id=coid,
        slug="btc-updown-5m-1",
        asset_id=kw.pop("asset", UP),
        outcome=kw.pop("outcome", "Up"),
        side=side,
        order_type=kind,
        limit_price=limit,
        size=size,
        expires_ns=t + 2000 * MS,
        ts_intent_ns=t - 1 * MS,
        ts_signal_ns=t - 2 * MS,
        origin_ts_recv_ns=t - 5 * MS,
        fee_rate=kw.pop("fee_rate", 0.07),
        **kw,
    )


def market_info(**kw) -> MarketInfo:
    """The market of `intent()`'s slug, its window ended at T0 (ready to resolve)."""
    base = dict(
        slug="btc-updown-5m-1",
        condition_id="c",
        up_token_id=UP,
        down_token_id=DOWN,
        window_start_ns=T0,
        window_end_ns=T0,
        ts_recv_ns=T0,
    )
    return MarketInfo(**{**base, **kw})


def by_topic(out, topic):
    return [m for tp, m in out if tp == topic]


class FakeVenue:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.gates: dict[str, tuple[str, str]] = {}

    def sign(self, it, limit, size):
        self.calls.append("sign")
        return SignedOrder("0xabc" + it.client_order_id, json.dumps({"limit": str(limit)}))

    def post(self, order, it):
        self.calls.append("post")
        return VenueResult("accepted", "matched", trades=[VenueTrade("t1", 0.52, it.size, 0.1)])

    def lookup(self, order_id, it, sent_ns, claimed):
        self.calls.append("lookup")
        return VenueResult("accepted", "matched", trades=[VenueTrade("t1", 0.52, it.size, 0.1)])

    def rest_book(self, asset_id):
        self.calls.append("rest_book")
        return None

    def gate(self, side):
        return self.gates.get(side, ("", ""))

    def trade_states(self, trade_ids):
        return {}

    def before_sell(self, asset_id):
        self.calls.append("before_sell")

    def status(self):
        return {}


@pytest.fixture
def ledger(tmp_path: Path):
    lg = Ledger(tmp_path / "trader.db")
    yield lg
    lg.close()


class Recorded(ExecutionCore):
    """The core keeping every log line it writes as (stream, event, fields), for assertions."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.seen: list = []

    def log(self, stream, event, level="INFO", **fields) -> None:
        super().log(stream, event, level, **fields)
        self.seen.append((stream, event, fields))


def core_of(ledger, mode=DRY, **kw) -> tuple[ExecutionCore, list]:
    c = Recorded(ledger, mode, **kw)
    return c, c.seen


ASKS = [(0.52, 10.0), (0.53, 4.0), (0.55, 100.0)]


def test_exec_dry_run_fill_is_recorded_and_recomputable(ledger) -> None:
    core, _ = core_of(ledger)
    core.step(book(ASKS), 0)
    out = core.step(intent(), T0)
    acks, fills = by_topic(out, topics.ACK), by_topic(out, topics.FILL)
    assert [a.status for a in acks] == ["dry_run"]
    # 12 shares at 0.53 is a $6.36 collateral-sized BUY (as the venue fills it): 10 x 0.52 =
    # 5.20, then 1.16 / 0.53 = 2.18 shares; fees 10*.07*.52*.48 = 0.17472 and
    # 2.18*.07*.53*.47 = 0.0380127 -> 0.03801 (5 decimals, floored)
    assert [(f.price, f.size, f.fee) for f in fills] == [
        (0.52, 10.0, 0.17472),
        (0.53, 2.18, 0.03801),
    ]
    lat = {m.stage: m.ms for m in by_topic(out, topics.LATENCY)}
    assert lat == {"signal_to_order_ack_ms": 2.0, "full_decision_to_fill_ms": 5.0}
    row = ledger.order("o1")
    assert row["status"] == "filled" and row["mode"] == "dry_run"
    assert row["signal_to_order_ack_ms"] == 2.0 and row["full_decision_to_fill_ms"] == 5.0
    # recompute the fill and the fee by hand from the recorded book
    rec = json.loads(row["book_json"])
    left, paid, fee, got = Decimal("6.36"), Decimal(0), Decimal(0), Decimal(0)
    for p, s in rec["levels"]:
        p, s = Decimal(str(p)), Decimal(str(s))
        if p > Decimal("0.53") or left < p / 100:
            break
        take = min(s, (left / p).quantize(Decimal("0.01"), ROUND_DOWN))
        paid += p * take
        got += take
        fee += (take * Decimal("0.07") * p * (1 - p)).quantize(Decimal("0.00001"), ROUND_FLOOR)
        left -= p * take
    assert got == Decimal("12.18") and paid == Decimal("6.3554")
    assert row["avg_price"] * 12.18 == pytest.approx(float(paid), abs=1e-12)
    assert (
        sum(Decimal(str(f["price"])) * Decimal(str(f["size"])) for f in ledger.fills_of("o1"))
        == paid
    )
    assert abs(row["fee"] - float(fee)) < 1e-12
    assert len(ledger.fills_of("o1")) == 2
    # the simulated fill consumed the book: the same order again only finds 1.82 + 100
    out = core.step(intent("o2", limit=0.55, size=5), T0)
    assert [f.price for f in by_topic(out, topics.FILL)] == [0.53, 0.55]


def test_exec_duplicate_intent_is_a_noop(ledger) -> None:
    core, logs = core_of(ledger)
    core.step(book(ASKS), 0)
    assert by_topic(core.step(intent(), T0), topics.FILL)
    assert core.step(intent(), T0 + MS) == []
    assert ledger.conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0] == 1
    assert len(ledger.fills_of("o1")) == 2
    assert any(e == "duplicate_intent_ignored" for _, e, _ in logs)


def test_exec_expired_intent_is_dropped_with_reason(ledger) -> None:
    core, _ = core_of(ledger)
    core.step(book(ASKS), 0)
    out = core.step(intent(), T0 + 2500 * MS)
    (rej,) = by_topic(out, topics.REJECT)
    assert rej.code == "expired" and "500.0 ms" in rej.reason
    assert not by_topic(out, topics.FILL)
    assert ledger.order("o1")["status"] == "expired"


def test_exec_preflight_rejects_thin_book_and_bad_terms(ledger) -> None:
    core, _ = core_of(ledger)
    (rej,) = by_topic(core.step(intent("nobook"), T0), topics.REJECT)
    assert "no book" in rej.reason
    core.step(book(ASKS), 0)
    # a FOK must fill whole: 14 shares at or under 0.53 do not cover 15 (a FAK would take them)
    (rej,) = by_topic(core.step(intent("thin", kind="FOK", size=15), T0), topics.REJECT)
    assert rej.code == "preflight_liquidity" and "14" in rej.reason and "15" in rej.reason
    # a FAK with nothing at all at or under its limit: refused as the venue answers it
    (rej,) = by_topic(core.step(intent("none", kind="FAK", limit=0.51), T0), topics.REJECT)
    assert rej.code == "preflight_liquidity"
    assert rej.reason.startswith("no orders found to match with FAK order")
    (rej,) = by_topic(core.step(intent("tiny", size=1), T0), topics.REJECT)
    assert rej.code == "invalid_order" and "$1 minimum" in rej.reason  # 1 share at 0.53: $0.53
    core.step(
        market_info(accepting_orders=False),
        0,
    )
    (rej,) = by_topic(core.step(intent("closed"), T0), topics.REJECT)
    assert rej.code == "market_closed"
    assert ledger.counts() == {"rejected": 5}


def test_exec_simulated_latency_fills_against_the_later_book(ledger) -> None:
    core, _ = core_of(ledger, dry_run_latency_ms=100)
    core.step(book(ASKS), 0)
    assert core.step(intent(kind="FAK", size=12), T0) == []
    assert core.step(ClockTick(ts_ns=T0 + 50 * MS), 0) == []
    # the 0.52 level shrinks to 3 before the order lands
    core.step(book([(0.52, 3.0), (0.53, 4.0), (0.55, 100.0)], t=T0 + 60 * MS), 0)
    out = core.step(ClockTick(ts_ns=T0 + 100 * MS), 0)
    fills = by_topic(out, topics.FILL)
    assert [(f.price, f.size) for f in fills] == [(0.52, 3.0), (0.53, 4.0)]
    assert all(f.ts_fill_ns == T0 + 100 * MS for f in fills)
    assert ledger.order("o1")["status"] == "partial"
    lat = {m.stage: m.ms for m in by_topic(out, topics.LATENCY)}
    assert lat["full_decision_to_fill_ms"] == 105.0


def test_exec_settlement_at_one_or_zero_and_restart_rebuilds(ledger, tmp_path) -> None:
    core, _ = core_of(ledger)
    core.step(book(ASKS), 0)
    core.step(book([(0.40, 20.0)], asset=DOWN), 0)
    core.step(intent("up1", limit=0.52, size=10), T0)  # 10 @ 0.52 ($5.20), fee 0.17472
    core.step(intent("dn1", asset=DOWN, outcome="Down", limit=0.40, size=5), T0)
    # a restart in between: positions come back from the ledger
    core2, _ = core_of(ledger)
    assert {k: round(p.size, 6) for k, p in core2.positions.items()} == {UP: 10.0, DOWN: 5.0}
    core2.step(book(ASKS), 0)
    core2.step(
        market_info(),
        0,
    )
    out = core2.step(MarketResolved(slug="btc-updown-5m-1", winning_outcome="Up", ts_ns=T0 + 1), 0)
    # paper books the steps live takes, each on exec.redemption: requested, then redeemed
    reds = by_topic(out, topics.REDEMPTION)
    assert [(r.state, r.cash_expected, r.cash_returned) for r in reds] == [
        ("requested", 10.0, 0.0),
        ("confirmed", 10.0, 10.0),
    ]
    assert all(r.condition_id == "c" and r.dry_run and r.shares == 15.0 for r in reds)
    st = {s.asset_id: s for s in by_topic(out, topics.SETTLEMENT)}
    assert st[UP].won and st[UP].payout == 1.0
    assert UP not in core2.books  # the finished window's books are dropped
    assert st[UP].pnl == pytest.approx(10 - 5.2 - 0.17472)
    # 5 * .07 * .4 * .6 = 0.084
    assert not st[DOWN].won and st[DOWN].pnl == pytest.approx(-2.0 - 0.084)
    again = core2.step(
        MarketResolved(slug="btc-updown-5m-1", winning_outcome="Up", ts_ns=T0 + 2), 0
    )
    assert again == []
    assert ledger.conn.execute("SELECT COUNT(*) FROM settlements").fetchone()[0] == 2
    assert core_of(ledger)[0].positions == {}
    # paper books the redemption like live: one row for the market, the winning shares' cash
    (red,) = ledger.redemptions(dry_run=True)
    assert (red["condition_id"], red["state"], red["shares"]) == ("c", "confirmed", 15.0)
    assert red["cash_expected"] == red["cash_returned"] == 10.0
    st = core2.status()
    assert (st["redemptions_open"], st["redeemed_usd"], st["awaiting_redemption_usd"]) == (
        0,
        10.0,
        0,
    )


@pytest.mark.parametrize("live", [False, True])
def test_exec_a_market_held_only_on_its_losing_side_is_not_redeemed(ledger, live) -> None:
    """Redeeming losing tokens pays nothing and from an EOA wallet costs a transaction in gas:
    a new user saw a `redeemPositions` sent (pUSD 0.0) for every losing window (2026-12-01).
    The settlement is booked; no redemption row, message or venue call."""
    venue = FakeVenue()
    venue.redeem = lambda *a: venue.calls.append("redeem") or "0xtx"  # type: ignore[attr-defined]
    core, logs = core_of(ledger, LIVE if live else DRY, venue=venue, clock=lambda: T0)
    core.step(book(ASKS), 0)
    core.step(intent("up1", limit=0.52, size=10), T0)
    core.step(
        market_info(),
        0,
    )
    out = core.step(MarketResolved(slug="btc-updown-5m-1", winning_outcome="Down", ts_ns=T0 + 1), 0)
    (st,) = by_topic(out, topics.SETTLEMENT)
    assert not st.won and st.size == 10.0 and st.dry_run is not live
    assert by_topic(out, topics.REDEMPTION) == []
    assert ledger.redemptions(dry_run=not live) == []
    assert "redeem" not in venue.calls
    assert ("execution", "redemption_skipped_no_payout") in [(s, e) for s, e, _ in logs]


def test_exec_restart_closes_dry_run_intents_never_filled(ledger) -> None:
    core, _ = core_of(ledger, dry_run_latency_ms=1000)
    core.step(book(ASKS), 0)
    core.step(intent(), T0)
    assert ledger.order("o1")["status"] == "intent"
    core2, _ = core_of(ledger)
    (rej,) = by_topic(core2.recover(), topics.REJECT)
    assert rej.code == "restart_not_sent"
    assert ledger.order("o1")["status"] == "rejected"


EXPECTED_TAG = {
    # (DRY_RUN, ENABLE_REAL_TRADING, key set) -> first blocking tag ("" = live)
    (d, e, k): (BLOCKED_DRY_RUN if d else BLOCKED_ENABLE if not e else BLOCKED_KEY if not k else "")
    for d, e, k in itertools.product([True, False], repeat=3)
}


@pytest.mark.parametrize("dry,enable,key", sorted(EXPECTED_TAG))
def test_exec_three_switches_all_combinations(ledger, dry, enable, key) -> None:
    env = {"DRY_RUN": str(dry).lower(), "ENABLE_REAL_TRADING": str(enable).lower()}
    if key:
        env["PRIVATE_KEY"] = "0x" + "ab" * 32
    mode = TradingMode.from_settings(load_settings(env, dotenv=None))
    venue = FakeVenue()
    core, logs = core_of(ledger, mode, venue=venue, clock=lambda: T0)
    core.step(book(ASKS), 0)
    out = core.step(intent(), T0)
    tag = EXPECTED_TAG[(dry, enable, key)]
    assert mode.block_tag == tag and mode.live == (tag == "")
    events = [e for _, e, _ in logs]
    if tag == "":
        assert venue.calls == ["sign", "post"]
        assert by_topic(out, topics.FILL)[0].dry_run is False
        assert not any(e.startswith("REAL_TRADING_BLOCKED") for e in events)
    else:
        assert venue.calls == []  # no venue call at all when blocked
        assert tag in events
        if dry:  # paper fill
            assert by_topic(out, topics.FILL)[0].dry_run is True
        else:
            (rej,) = by_topic(out, topics.REJECT)
            assert rej.code == tag and not by_topic(out, topics.FILL)
            assert ledger.order("o1")["status"] == "blocked"
    assert "ab" * 32 not in json.dumps([list(map(str, x)) for x in logs])


class ScriptedVenue(FakeVenue):
    """Answers posts and lookups from scripts, to drive the unknown-outcome paths."""

    def __init__(self, post_results, lookup_results, rest=None) -> None:
        super().__init__()
        self.post_results = list(post_results)
        self.lookup_results = list(lookup_results)
        self.rest = rest

    def post(self, order, it):
        self.calls.append("post")
        return self.post_results.pop(0)

    def lookup(self, order_id, it, sent_ns, claimed):
        self.calls.append("lookup")
        return self.lookup_results.pop(0)

    def rest_book(self, asset_id):
        self.calls.append("rest_book")
        return self.rest


LIVE = TradingMode(False, True, True)


def test_exec_timeout_is_unknown_then_reconciled_not_resent(ledger) -> None:
    v = ScriptedVenue(
        [VenueResult("unknown", reason="no answer", code="timeout")],
        [
            VenueResult("unknown", code="pending"),
            VenueResult(
                "accepted",
                "matched",
                trades=[VenueTrade("t9", 0.52, 12.0, 0.17)],
                venue_order_id="0xvenue",
            ),
        ],
    )
    core, _ = core_of(ledger, LIVE, venue=v, clock=lambda: T0)
    core.step(book(ASKS), 0)
    assert core.step(intent(), T0) == []  # no ack, no reject: outcome unknown
    assert ledger.order("o1")["status"] == "unknown"
    # no new order while an outcome is unknown
    (rej,) = by_topic(core.step(intent("o2"), T0), topics.REJECT)
    assert rej.code == "reconciling"
    assert core.step(Timer(T0 + 300 * MS), T0 + 300 * MS) == []  # venue does not show it yet
    out = core.step(Timer(T0 + 600 * MS), T0 + 600 * MS)
    assert [f.trade_id for f in by_topic(out, topics.FILL)] == ["t9"]
    assert by_topic(out, topics.ACK)[0].venue_order_id == "0xvenue"
    assert v.calls.count("post") == 1 and v.calls.count("lookup") == 2  # never re-sent
    row = ledger.order("o1")
    assert row["status"] == "filled" and row["venue_order_id"] == "0xvenue"
    assert core.to_reconcile == {}


def test_exec_missing_after_grace_is_not_placed(ledger) -> None:
    v = ScriptedVenue(
        [VenueResult("unknown", code="timeout")], [VenueResult("missing", code="not_placed")]
    )
    core, _ = core_of(ledger, LIVE, venue=v, clock=lambda: T0)
    core.step(book(ASKS), 0)
    core.step(intent(), T0)
    (rej,) = by_topic(core.step(Timer(T0 + 300 * MS), T0 + 300 * MS), topics.REJECT)
    assert rej.code == "not_placed" and ledger.order("o1")["status"] == "rejected"


def test_exec_restart_reconciles_before_taking_orders(ledger) -> None:
    v = ScriptedVenue([VenueResult("unknown", code="timeout")], [])
    core, _ = core_of(ledger, LIVE, venue=v, clock=lambda: T0)
    core.step(book(ASKS), 0)
    core.step(intent(), T0)
    # "restart": a new core over the same ledger finds the order and asks the venue first
    v2 = ScriptedVenue(
        [], [VenueResult("accepted", "matched", trades=[VenueTrade("t1", 0.52, 12.0, 0.1)])]
    )
    core2, _ = core_of(ledger, LIVE, venue=v2, clock=lambda: T0)
    out = core2.recover()
    assert v2.calls == ["lookup"] and by_topic(out, topics.FILL)
    assert ledger.order("o1")["status"] == "filled"


def test_exec_live_preflight_uses_rest_book_when_local_is_stale(ledger) -> None:
    v = ScriptedVenue([], [], rest=([[0.5, 10.0]], [[0.52, 3.0]]))
    core, _ = core_of(ledger, LIVE, venue=v, clock=lambda: T0 + 5000 * MS)
    core.step(book(ASKS), 0)  # plenty of depth, but 5 s old by the intent
    late = intent(t=T0 + 5000 * MS)
    (rej,) = by_topic(core.step(late, T0 + 5000 * MS), topics.REJECT)
    assert v.calls == ["rest_book"] and rej.code == "preflight_liquidity" and "3" in rej.reason


def test_exec_dry_run_sell_needs_the_shares(ledger) -> None:
    core, _ = core_of(ledger)
    core.step(book(ASKS, bids=((0.50, 50.0),)), 0)
    (rej,) = by_topic(core.step(intent("s0", side="SELL", limit=0.45, size=5), T0), topics.REJECT)
    assert rej.code == "insufficient_balance"
    core.step(intent("b1", limit=0.52, size=10), T0)  # 10 @ 0.52 ($5.20)
    out = core.step(intent("s1", side="SELL", limit=0.45, size=4, kind="FAK"), T0)
    (f,) = by_topic(out, topics.FILL)
    assert (f.side, f.price, f.size, f.fee) == ("SELL", 0.5, 4.0, 0.07)  # 4*.07*.25
    assert core.positions[UP].size == pytest.approx(6.0)


def test_exec_stop_loss_fak_bigger_than_the_bids_partly_fills(ledger) -> None:
    """The tester's repro (fixb): 837.54 shares bought at 0.002/0.003, then a stop-loss FAK SELL
    at 0.001 into bids totalling 166.41. The preflight judged it as a FOK and refused it 20 times;
    a FAK is fill-and-kill (docs.polymarket.com concepts/order-lifecycle "Order Types"), so it
    fills the 166.41 and the venue kills the rest. Worked example: tests/common/test_money.py."""
    core, _ = core_of(ledger)
    bids = ((0.003, 40.0), (0.002, 100.0), (0.001, 26.41))
    core.step(book([(0.002, 512.62), (0.003, 1000.0)], bids=bids), 0)
    out = core.step(intent("b1", limit=0.022, size=90.91, tick_size=0.001), T0)
    assert sum(f.size for f in by_topic(out, topics.FILL)) == pytest.approx(837.54)
    sell = intent("s1", side="SELL", kind="FAK", limit=0.001, size=837.54, tick_size=0.001)
    out = core.step(sell, T0)
    assert not by_topic(out, topics.REJECT)
    fills = by_topic(out, topics.FILL)
    assert [(f.price, f.size, f.fee) for f in fills] == [
        (0.003, 40.0, 0.00837),
        (0.002, 100.0, 0.01397),
        (0.001, 26.41, 0.00184),
    ]
    row = ledger.order("s1")
    assert row["status"] == "partial" and "671.13" in row["reason"]
    assert core.positions[UP].size == pytest.approx(837.54 - 166.41)
    # the bids are gone from the (paper) book: the next FAK finds nothing and is refused as the
    # venue refuses it, with the venue's own text, before any fill is tried
    (rej,) = by_topic(
        core.step(replace(sell, client_order_id="s2", size=671.13), T0), topics.REJECT
    )
    assert rej.code == "preflight_liquidity"
    assert rej.reason.startswith(money.ERR_FAK_NOT_FILLED)
    assert core.positions[UP].size == pytest.approx(671.13)


# --- order states (issue 13): non-final answers followed, entries halted, exits continue -------
def test_exec_live_fak_is_followed_until_it_fills(ledger) -> None:
    # a FAK answered `live` may still match (clob-client #317): followed, not taken as killed
    v = ScriptedVenue(
        [VenueResult("accepted", "live", terminal=False, venue_order_id="0xv")],
        [
            VenueResult("accepted", "live", terminal=False, venue_order_id="0xv"),
            VenueResult(
                "accepted",
                "matched",
                trades=[VenueTrade("t5", 0.52, 10.0, 0.17)],
                venue_order_id="0xv",
            ),
        ],
    )
    core, logs = core_of(ledger, LIVE, venue=v, clock=lambda: T0)
    core.step(book(ASKS, bids=((0.50, 50.0),)), 0)
    out = core.step(intent(kind="FAK"), T0)
    assert [a.status for a in by_topic(out, topics.ACK)] == ["live"] and not by_topic(
        out, topics.FILL
    )
    assert "o1" in core.to_reconcile
    # entries wait; an exit goes through (no position here: the venue's answer decides)
    (rej,) = by_topic(core.step(intent("o2"), T0), topics.REJECT)
    assert rej.code == "reconciling"
    v.post_results.append(VenueResult("rejected", reason="not enough balance", code="x"))
    (rej,) = by_topic(core.step(intent("s1", side="SELL", limit=0.45, size=5), T0), topics.REJECT)
    assert rej.code == "x" and v.calls.count("post") == 2  # the exit reached the venue
    assert by_topic(core.step(Timer(T0 + 300 * MS), T0 + 300 * MS), topics.FILL) == []
    out = core.step(Timer(T0 + 1_000 * MS), T0 + 1_000 * MS)
    assert [f.trade_id for f in by_topic(out, topics.FILL)] == ["t5"]
    assert core.to_reconcile == {} and ledger.order("o1")["status"] == "partial"
    assert v.calls.count("lookup") == 2


def test_exec_delayed_then_unmatched_ends_as_killed(ledger) -> None:
    v = ScriptedVenue(
        [VenueResult("accepted", "delayed", terminal=False, venue_order_id="0xd")],
        [VenueResult("accepted", "unmatched", terminal=True, venue_order_id="0xd")],
    )
    core, _ = core_of(ledger, LIVE, venue=v, clock=lambda: T0)
    core.step(book(ASKS), 0)
    out = core.step(intent(kind="FAK"), T0)
    assert [a.status for a in by_topic(out, topics.ACK)] == ["delayed"]
    (rej,) = by_topic(core.step(Timer(T0 + 300 * MS), T0 + 300 * MS), topics.REJECT)
    assert rej.code == "killed" and ledger.order("o1")["status"] == "killed"
    assert core.to_reconcile == {}


def test_exec_unresolved_order_raises_an_alert_and_is_never_resent(ledger) -> None:
    v = ScriptedVenue(
        [VenueResult("unknown", code="timeout")],
        [VenueResult("unknown", code="lookup_failed")] * 40,
    )
    core, logs = core_of(ledger, LIVE, venue=v, clock=lambda: T0)
    core.step(book(ASKS), 0)
    core.step(intent(), T0)
    t = T0
    while t < T0 + 61_000 * MS:
        t += 250 * MS
        core.step(Timer(t), t)
    assert "o1" in core.alerts and core.counts["alerts"] == 1
    assert [e for s, e, f in logs if e == "order_outcome_unresolved"] == [
        "order_outcome_unresolved"
    ]
    events = [
        r["event"]
        for r in ledger.conn.execute("SELECT event FROM order_events WHERE client_order_id='o1'")
    ]
    assert "alert_outcome_unresolved" in events
    assert v.calls.count("post") == 1  # never re-sent
    # the back-off caps lookups at one per 5 s: ~20 over a minute, not 240
    assert 10 <= v.calls.count("lookup") <= 25
    (rej,) = by_topic(core.step(intent("o2", t=t), t), topics.REJECT)
    assert rej.code == "reconciling"


def test_exec_venue_gate_refuses_before_any_venue_call(ledger) -> None:
    v = ScriptedVenue([], [])
    v.gates["BUY"] = ("venue_post_only", "post-only minutes after a restart")
    core, _ = core_of(ledger, LIVE, venue=v, clock=lambda: T0)
    core.step(book(ASKS), 0)
    (rej,) = by_topic(core.step(intent(), T0), topics.REJECT)
    assert rej.code == "venue_post_only" and v.calls == []


def test_exec_failed_trade_is_reversed_in_ledger_and_position(ledger) -> None:
    class Trades(ScriptedVenue):
        def __init__(self, *a) -> None:
            super().__init__(*a)
            self.states: dict[str, str] = {}

        def trade_states(self, ids):
            self.calls.append("trade_states")
            return {i: self.states[i] for i in ids if i in self.states}

    v = Trades(
        [
            VenueResult(
                "accepted",
                "matched",
                trades=[
                    VenueTrade("tA:0", 0.52, 10.0, 0.17472),
                    VenueTrade("tA:1", 0.53, 2.0, 0.035),
                ],
                venue_order_id="0xa",
            ),
        ],
        [],
    )
    core, logs = core_of(ledger, LIVE, venue=v, clock=lambda: T0)
    core.step(book(ASKS), 0)
    core.step(intent(), T0)
    assert ledger.provisional_trades() == {"tA": "o1"}
    assert core.positions[UP].size == pytest.approx(12.0)
    v.states["tA"] = "MINED"
    assert core.step(Timer(T0 + 1_000 * MS), T0 + 1_000 * MS) == []
    v.states["tA"] = "FAILED"
    out = core.step(Timer(T0 + 2_000 * MS), T0 + 2_000 * MS)
    rev = by_topic(out, topics.FILL)
    assert [(f.side, f.size, f.fee, f.reverses_trade_id) for f in rev] == [
        ("SELL", 10.0, 0.0, "tA:0"),
        ("SELL", 2.0, 0.0, "tA:1"),
    ]
    # the reversal returns exactly what the trade cost, fees included
    assert sum(f.price * f.size for f in rev) == pytest.approx(
        0.52 * 10 + 0.17472 + 0.53 * 2 + 0.035
    )
    assert UP not in core.positions and ledger.positions() == {}
    row = ledger.order("o1")
    assert row["status"] == "failed" and row["filled_size"] == 0.0
    assert ledger.provisional_trades() == {}
    assert [e for s, e, f in logs if e == "trade_failed_reversed"] == ["trade_failed_reversed"]
    # a repeated FAILED answer changes nothing
    assert core.step(Timer(T0 + 3_000 * MS), T0 + 3_000 * MS) == []


def test_exec_confirmed_trade_is_final(ledger) -> None:
    class Trades(ScriptedVenue):
        def trade_states(self, ids):
            return dict.fromkeys(ids, "CONFIRMED")

    v = Trades(
        [VenueResult("accepted", "matched", trades=[VenueTrade("tC", 0.52, 10.0, 0.17)])], []
    )
    core, _ = core_of(ledger, LIVE, venue=v, clock=lambda: T0)
    core.step(book(ASKS), 0)
    core.step(intent(size=10.0), T0)
    assert ledger.provisional_trades() == {"tC": "o1"}
    core.step(Timer(T0 + 1_000 * MS), T0 + 1_000 * MS)
    assert ledger.provisional_trades() == {} and core.positions[UP].size == 10.0


def test_exec_names_its_unsettled_ended_windows_until_a_resolution_settles_them(ledger) -> None:
    """Execution's heartbeat (`status()["unsettled"]`) names every window its ledger holds
    positions in that is not live: after a restart (no MarketInfo yet, the end unknown) and once
    the window's end passes; the MarketResolved it missed, said again, settles it once (paper:
    settlement and redemption rows), and it is no longer named. Held past UNSETTLED_WARN_NS, it is
    a heartbeat warning (observe's /health)."""
    slug = "btc-updown-5m-1"
    mk = MarketInfo(
        slug=slug,
        condition_id="c",
        up_token_id=UP,
        down_token_id=DOWN,
        window_start_ns=T0 - 300_000 * MS,
        window_end_ns=T0 + 60_000 * MS,
        ts_recv_ns=T0,
    )
    clock = [T0]
    core, _ = core_of(ledger, clock=lambda: clock[0])
    core.step(book(ASKS), T0)
    core.step(mk, T0)
    core.step(intent("up1", limit=0.52, size=10), T0)
    assert core.status()["unsettled"] == {}  # the window is live
    clock[0] = mk.window_end_ns + 1
    (d,) = core.status()["unsettled"].values()
    assert (d["end_ns"], d["positions"], d["shares"]) == (mk.window_end_ns, 1, 10.0)
    assert "warnings" not in core.status()
    clock[0] = mk.window_end_ns + UNSETTLED_WARN_NS + 1_000 * MS
    (warning,) = core.status()["warnings"]
    assert slug in warning and "not settled" in warning
    # execution restarts (the resolution went out meanwhile): the window is named, end unknown
    clock[0] = restart = mk.window_end_ns + 9_000 * MS
    core2, _ = core_of(ledger, clock=lambda: clock[0])
    assert core2.recover() == []
    un = core2.status()["unsettled"]
    assert list(un) == [slug] and un[slug]["end_ns"] == 0 and un[slug]["since_ns"] == restart
    clock[0] += 1_000 * MS
    assert core2.status()["unsettled"][slug]["since_ns"] == restart  # kept, not reset
    resolved = MarketResolved(
        slug=slug, winning_outcome="Up", ts_ns=T0, winning_asset_id=UP, condition_id="c"
    )
    out = core2.step(resolved, clock[0])
    assert [s.asset_id for s in by_topic(out, topics.SETTLEMENT)] == [UP]
    assert [r.state for r in by_topic(out, topics.REDEMPTION)] == ["requested", "confirmed"]
    assert core2.status()["unsettled"] == {} and core2.positions == {}
    assert core2.step(resolved, clock[0]) == []  # said again: idempotent by slug
    assert ledger.conn.execute("SELECT COUNT(*) FROM settlements").fetchone()[0] == 1
    assert len(ledger.redemptions(dry_run=True)) == 1
