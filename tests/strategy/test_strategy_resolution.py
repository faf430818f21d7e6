"""A `market_resolved` that never arrives (issue 14): ingest keeps the ended market's tokens and
takes the resolution from REST (Gamma market, CLOB `tokens[].winner`, PROTOCOLS.md section 7);
strategy parks the ended window's position as "awaiting resolution" (capital at risk, not an
entry block) and settles it from whichever source spoke first.

Worked example from the issue: paper position Up 9.43 @ 0.53 in btc-updown-5m-1790617500, no
`market_resolved` frame, Gamma (fixtures/live_2026/gamma_market_btc_updown_5m_1790617500.json)
says closed, resolved, outcomePrices ["0", "1"]: Down won, the Up position settles at 0, and
entries resume."""

from __future__ import annotations

import copy
import json
from typing import Any

import msgspec

from common.config import StrategyConfig
from common.core import Timer
from common.schema import (
    BookSnapshot,
    BtcTrade,
    ClockTick,
    Decision,
    MarketInfo,
    MarketResolved,
    OrderFilled,
    RiskState,
    SignalScore,
)
from services.ingest.core import IngestCore
from services.ingest.parsers import (
    ParseError,
    parse_clob,
    parse_clob_market_resolution,
    parse_gamma,
    parse_gamma_resolution,
)
from services.strategy.core import StrategyCore
from tests.conftest import FIXTURES

NS = 1_000_000_000
GAMMA = FIXTURES / "live_2026" / "gamma_market_btc_updown_5m_1790617500.json"
CLOB = FIXTURES / "live_2026" / "clob_rest_market_btc_updown_15m_resolved.json"
START = 1790617500 * NS
END = START + 300 * NS


def open_market(start_s: int = 1790617500) -> MarketInfo:
    """The fixture's market as discovery saw it while it was open (same tokens and times)."""
    info = parse_gamma(GAMMA.read_text(), START - 60 * NS)
    shift = (start_s - 1790617500) * NS
    tag = "" if not shift else f"-{start_s}"
    return msgspec.structs.replace(
        info,
        slug=f"btc-updown-5m-{start_s}",
        condition_id=info.condition_id + tag,
        up_token_id=info.up_token_id + tag,
        down_token_id=info.down_token_id + tag,
        window_start_ns=info.window_start_ns + shift,
        window_end_ns=info.window_end_ns + shift,
        closed=False,
        accepting_orders=True,
        tick_size=0.01,
    )


def of(out: list[tuple[str, Any]], kind: type) -> list[Any]:
    return [m for _, m in out if isinstance(m, kind)]


def clob_answer(info: MarketInfo, winner: str) -> dict[str, Any]:
    """The CLOB market fixture's shape, for this market's tokens, with `winner` flagged."""
    doc = json.loads(CLOB.read_text())
    doc = copy.deepcopy(doc)
    doc["condition_id"] = info.condition_id
    doc["market_slug"] = info.slug
    doc["tokens"][0].update(token_id=info.up_token_id, winner=winner == "Up")
    doc["tokens"][1].update(token_id=info.down_token_id, winner=winner == "Down")
    return doc


def test_rest_parsers_read_the_resolved_fixtures() -> None:
    g = parse_gamma_resolution(GAMMA.read_text(), 1, "btc-updown-5m-1790617500")
    assert (g.source, g.outcome) == ("gamma", "Down")
    assert g.winning_asset_id.startswith("1406019198")  # clobTokenIds[1] is Down
    c = parse_clob_market_resolution(CLOB.read_text(), 1)
    assert (c.source, c.outcome, c.slug) == ("clob_rest", "Up", "btc-updown-15m-1790616600")
    # closed but prices not final, or not yet resolved by UMA: not resolved
    doc = json.loads(GAMMA.read_text())
    doc["outcomePrices"] = '["0.51", "0.49"]'
    assert parse_gamma_resolution(doc, 1).outcome == ""
    doc = json.loads(GAMMA.read_text())
    doc["umaResolutionStatus"] = "proposed"
    assert parse_gamma_resolution(doc, 1).outcome == ""
    doc = json.loads(CLOB.read_text())
    doc["tokens"][0]["winner"] = False
    assert parse_clob_market_resolution(doc, 1).outcome == ""
    for bad in ("[]", '{"tokens": 3}', '{"outcomes": "[\\"Yes\\", \\"No\\"]"}'):
        try:
            parse_clob_market_resolution(bad, 1) if "tokens" in bad else parse_gamma_resolution(
                bad, 1
            )
        except ParseError as e:
            assert str(e)
        else:
            raise AssertionError(f"{bad} was accepted")


def test_ingest_keeps_tokens_until_rest_resolves_and_checks_later_sources() -> None:
    ingest = IngestCore()
    info = open_market()
    ingest.step(info, START + NS)
    # a real 5-minute market resolved 54 s after its end; nothing has been said 2 minutes after
    out = []
    for t in range(0, 121, 10):
        out += ingest.step(Timer(END + t * NS), END + t * NS)
    assert not of(out, MarketResolved)
    assert {info.up_token_id, info.down_token_id} <= ingest.wanted_assets()
    assert [w.info.slug for w in ingest.awaiting_resolution(END + 120 * NS)] == [info.slug]
    # the CLOB REST answer says nothing yet (no winner flagged): still unresolved
    rr = parse_clob_market_resolution(clob_answer(info, ""), END + 121 * NS)
    assert ingest.on_rest_resolution(rr, END + 121 * NS) == []
    # Gamma says resolved, Down: the first source publishes, with its name
    rr = parse_gamma_resolution(GAMMA.read_text(), END + 122 * NS, info.slug)
    (res,) = of(ingest.on_rest_resolution(rr, END + 122 * NS), MarketResolved)
    assert (res.slug, res.winning_outcome, res.source) == (info.slug, "Down", "gamma")
    assert res.winning_asset_id == info.down_token_id
    ingest.step(Timer(END + 123 * NS), END + 123 * NS)
    assert not ({info.up_token_id, info.down_token_id} & ingest.wanted_assets())
    # a later source that disagrees is an error record, never a second publication
    rr = parse_clob_market_resolution(clob_answer(info, "Up"), END + 124 * NS)
    assert ingest.on_rest_resolution(rr, END + 124 * NS) == []
    ((event, level, fields),) = ingest.drain_alerts()
    assert (event, level) == ("resolution_disagreement", "ERROR")
    assert (fields["published"], fields["published_source"]) == ("Down", "gamma")
    assert (fields["source"], fields["stated"]) == ("clob_rest", "Up")
    assert ingest.counts["resolution_disagreements"] == 1
    # the market channel's late frame agrees: counted as a confirmation, not published
    frame = json.dumps(
        {
            "event_type": "market_resolved",
            "market": info.condition_id,
            "winning_asset_id": info.down_token_id,
            "winning_outcome": "Down",
            "timestamp": str((END + 125 * NS) // 1_000_000),
        }
    )
    assert not of(ingest.on_clob(parse_clob(frame, END + 125 * NS), END + 125 * NS), MarketResolved)
    assert ingest.counts["resolution_confirmed_by_clob"] == 1 and not ingest.drain_alerts()


def book(asset: str, bid: float, ask: float, ts: int) -> BookSnapshot:
    return BookSnapshot(
        asset_id=asset,
        best_bid=bid,
        best_ask=ask,
        bids=[(bid, 500.0)],
        asks=[(ask, 500.0)],
        ts_exchange_ns=ts,
        ts_recv_ns=ts,
    )


def strong_signal(core: StrategyCore, m: MarketInfo, t: int) -> Decision:
    core.step(BtcTrade(price=85_000, size=1, ts_exchange_ns=t, ts_recv_ns=t), 0)
    core.step(book(m.up_token_id, 0.43, 0.45, t), 0)
    core.step(book(m.down_token_id, 0.53, 0.55, t), 0)
    s = SignalScore(
        slug=m.slug, p_up=0.75, side="Up", score=0.5, edge_up=0.2, edge_down=0.0, ts_ns=t
    )
    (d,) = of(core.step(s, 0), Decision)
    return d


def test_worked_example_position_awaits_resolution_settles_at_zero_and_entries_resume() -> None:
    first = open_market()
    later = open_market(1790618400)  # the window ten minutes after the first one ended
    # a day's loss limit with room for both positions lost (an entry whose worst case, with the
    # awaiting position lost too, passes max_daily_loss_usd is refused: daily_loss_headroom)
    cfg = StrategyConfig(max_daily_loss_usd=20.0)
    strategy = StrategyCore(cfg)
    strategy.step(first, 0)
    fee = round(9.43 * 0.07 * 0.53 * 0.47, 5)
    strategy.step(
        OrderFilled(
            client_order_id="pe-1790617500-1-1e",
            asset_id=first.up_token_id,
            side="BUY",
            price=0.53,
            size=9.43,
            fee=fee,
            ts_fill_ns=START + 100 * NS,
            slug=first.slug,
            outcome="Up",
        ),
        0,
    )
    cost = 9.43 * 0.53 + fee
    # the window ends; no market_resolved frame ever comes
    for t in range(0, 601, 60):
        strategy.step(ClockTick(ts_ns=END + t * NS), 0)
    strategy.step(later, 0)
    risk = strategy.risk_state()
    assert risk.awaiting_resolution == [first.slug] and abs(risk.capital_at_risk - cost) < 1e-9
    pos = strategy.position_state()
    assert pos.open and pos.awaiting_resolution and pos.slug == first.slug
    # restart: the awaiting position is kept
    strategy = StrategyCore(cfg, strategy.persistent())
    strategy.step(first, 0)
    strategy.step(later, 0)
    # ten minutes later a strong signal enters (today: skipped as position_open, forever)
    d = strong_signal(strategy, later, later.window_start_ns + 100 * NS)
    assert (d.action, d.reason) == ("enter", "signal"), d
    # Gamma says Down: ingest publishes from REST and the Up position settles at 0
    ingest = IngestCore()
    ingest.step(first, START + NS)
    rr = parse_gamma_resolution(GAMMA.read_text(), END + 700 * NS, first.slug)
    (res,) = of(ingest.on_rest_resolution(rr, END + 700 * NS), MarketResolved)
    out = strategy.step(res, 0)
    (settle,) = [d for d in of(out, Decision) if d.action == "settle"]
    assert (settle.slug, settle.reason, settle.side) == (first.slug, "lost", "Up")
    assert abs(settle.details["pnl"] + cost) < 1e-9  # paid 9.43 * 0.53 + fee, got 0
    assert abs(strategy.daily_pnl + cost) < 1e-9
    risk = of(out, RiskState)[-1]
    assert risk.awaiting_resolution == [] and not risk.halted


def test_awaiting_position_still_counts_against_exposure_and_daily_loss() -> None:
    first, later = open_market(), open_market(1790618400)
    strategy = StrategyCore(StrategyConfig(max_capital_at_risk_usd=9.0))
    strategy.step(first, 0)
    strategy.step(
        OrderFilled(
            client_order_id="pe-1790617500-1-1e",
            asset_id=first.up_token_id,
            side="BUY",
            price=0.53,
            size=9.43,
            fee=0.16,
            ts_fill_ns=START + 100 * NS,
            slug=first.slug,
            outcome="Up",
        ),
        0,
    )
    strategy.step(ClockTick(ts_ns=END + NS), 0)
    strategy.step(later, 0)
    d = strong_signal(strategy, later, later.window_start_ns + 100 * NS)
    assert d.reason == "capital_at_risk" and d.details["awaiting_resolution"] == [first.slug]
    # daily loss: a realised loss past the limit halts, awaiting position or not
    strategy = StrategyCore(StrategyConfig(), {"day": "2026-09-28", "daily_pnl": -10.0})
    strategy.step(later, 0)
    d = strong_signal(strategy, later, later.window_start_ns + 100 * NS)
    assert d.reason.startswith("halted:") and "daily_loss_limit" in d.reason
