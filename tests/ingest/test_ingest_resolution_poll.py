"""Ingest's REST resolution poller over real HTTP (a local server answering Gamma's
`/markets/slug/{slug}` and CLOB's `/markets/{condition_id}` from the live_2026 fixtures): it polls
after the window ends with backoff until a source says resolved, publishes that source's
`MarketResolved`, and logs a later source's disagreement as an error record."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from common import topics
from common.config import IngestSettings
from common.core import Timer
from common.schema import Heartbeat, MarketInfo, MarketResolved, RiskState
from services.ingest.core import RESEND_RESOLVED_NS, IngestCore
from services.ingest.feeds import FeedContext, resolution_poller
from services.ingest.parsers import parse_gamma, parse_gamma_resolution
from tests.conftest import FIXTURES

NS = 1_000_000_000
GAMMA = FIXTURES / "live_2026" / "gamma_market_btc_updown_5m_1790617500.json"
CLOB = FIXTURES / "live_2026" / "clob_rest_market_btc_updown_15m_resolved.json"


class Venue:
    """Gamma says "closed, not resolved" for the first `gamma_pending` asks, then the fixture
    (resolved Down); CLOB answers 503 until `clob_winner` is set, then that winner."""

    def __init__(self, info: MarketInfo, gamma_pending: int) -> None:
        self.info = info
        self.gamma_pending = gamma_pending
        self.clob_winner = ""
        self.asks: list[tuple[str, float]] = []

    async def gamma(self, request: Request) -> Response:
        self.asks.append(("gamma", time.monotonic()))
        if request.path_params["slug"] != self.info.slug:
            return JSONResponse({"error": "not found"}, 404)
        doc = json.loads(GAMMA.read_text())
        doc["slug"] = self.info.slug
        if len(self.asks_of("gamma")) <= self.gamma_pending:
            doc.update(umaResolutionStatus="", outcomePrices='["0.4", "0.6"]')
        return JSONResponse(doc)

    async def clob(self, request: Request) -> Response:
        self.asks.append(("clob", time.monotonic()))
        if not self.clob_winner:
            return JSONResponse({"error": "service not ready"}, 503)
        doc = json.loads(CLOB.read_text())
        doc["condition_id"] = request.path_params["cid"]
        doc["tokens"][0].update(token_id=self.info.up_token_id, winner=self.clob_winner == "Up")
        doc["tokens"][1].update(token_id=self.info.down_token_id, winner=self.clob_winner == "Down")
        return JSONResponse(doc)

    def asks_of(self, source: str) -> list[float]:
        return [t for s, t in self.asks if s == source]


async def _until(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def test_poller_backs_off_until_gamma_resolves_then_checks_clob() -> None:
    async def main() -> None:
        now = time.time_ns()
        base = parse_gamma(GAMMA.read_text(), now)
        # a window that ended just now, with the fixture's tokens
        info = msgspec.structs.replace(
            base,
            window_start_ns=now - 300 * NS,
            window_end_ns=now,
            closed=False,
            accepting_orders=True,
        )
        venue = Venue(info, gamma_pending=3)
        app = Starlette(
            routes=[
                Route("/gamma/markets/slug/{slug}", venue.gamma),
                Route("/clob/markets/{cid}", venue.clob),
            ]
        )
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        srv = asyncio.create_task(server.serve(sockets=[sock]))
        await _until(lambda: server.started, 10, "local venue")
        core = IngestCore()
        core.step(info, now)
        published: list[Any] = []
        logged: list[tuple[str, str, dict[str, Any]]] = []
        ctx = FeedContext(
            core,
            lambda out: published.extend(m for _, m in out),
            lambda e, level="INFO", **f: logged.append((e, level, f)),
            IngestSettings(resolve_poll_base_ms=100, resolve_poll_max_ms=400),
            {
                "GAMMA_API_URL": f"http://127.0.0.1:{port}/gamma",
                "CLOB_API_URL": f"http://127.0.0.1:{port}/clob",
            },
            300,
        )
        task = asyncio.create_task(resolution_poller(ctx))
        try:
            await _until(
                lambda: any(isinstance(m, MarketResolved) for m in published), 15, "resolution"
            )
            (res,) = [m for m in published if isinstance(m, MarketResolved)]
            assert (res.slug, res.winning_outcome, res.source) == (info.slug, "Down", "gamma")
            asks = venue.asks_of("gamma")
            assert len(asks) == 4  # three "not yet", then resolved
            gaps = [b - a for a, b in zip(asks, asks[1:], strict=False)]
            assert gaps[0] < gaps[-1] and max(gaps) <= 0.4 + 0.2, gaps  # backoff, capped
            # the CLOB source is still asked (to check the first); it disagrees: an error record
            venue.clob_winner = "Up"
            await _until(
                lambda: any(e == "resolution_disagreement" for e, _, _ in logged),
                10,
                "disagreement record",
            )
            (rec,) = [(lv, f) for e, lv, f in logged if e == "resolution_disagreement"]
            assert rec[0] == "ERROR" and rec[1]["stated"] == "Up" and rec[1]["published"] == "Down"
            assert core.windows[info.slug].resolved_by == {"gamma": "Down", "clob_rest": "Up"}
            assert [m for m in published if isinstance(m, MarketResolved)] == [res]
        finally:
            ctx.stop.set()
            await asyncio.wait_for(task, 5)
            server.should_exit = True
            await asyncio.wait_for(srv, 5)

    asyncio.run(main())


def test_a_held_window_discovery_never_found_is_looked_up_and_resolved() -> None:
    """Breaker finding 2: a position whose window ended while ingest was down. Discovery after
    the restart knows only the current/next windows; strategy's risk state names the ended
    window it still awaits, so ingest learns its terms from Gamma (backing off while Gamma has
    nothing) and resolves it like its own windows."""

    async def main() -> None:
        info = parse_gamma(GAMMA.read_text(), time.time_ns())  # ended, resolved Down
        venue = Venue(info, gamma_pending=0)
        missing = {"left": 2}  # Gamma has nothing for the first two asks (404)

        async def gamma(request: Request) -> Response:
            if missing["left"] > 0:
                missing["left"] -= 1
                venue.asks.append(("gamma", time.monotonic()))
                return JSONResponse({"error": "not found"}, 404)
            return await venue.gamma(request)

        app = Starlette(
            routes=[
                Route("/gamma/markets/slug/{slug}", gamma),
                Route("/clob/markets/{cid}", venue.clob),
            ]
        )
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        srv = asyncio.create_task(server.serve(sockets=[sock]))
        await _until(lambda: server.started, 10, "local venue")
        core = IngestCore()
        assert info.slug not in core.windows
        published: list[Any] = []
        logged: list[tuple[str, str, dict[str, Any]]] = []
        ctx = FeedContext(
            core,
            lambda out: published.extend(m for _, m in out),
            lambda e, level="INFO", **f: logged.append((e, level, f)),
            IngestSettings(resolve_poll_base_ms=100, resolve_poll_max_ms=400),
            {
                "GAMMA_API_URL": f"http://127.0.0.1:{port}/gamma",
                "CLOB_API_URL": f"http://127.0.0.1:{port}/clob",
            },
            300,
        )
        task = asyncio.create_task(resolution_poller(ctx))
        try:
            core.step(
                RiskState(ts_ns=time.time_ns(), halted=False, awaiting_resolution=[info.slug]),
                time.time_ns(),
            )
            await _until(
                lambda: any(isinstance(m, MarketResolved) for m in published), 15, "resolution"
            )
            (res,) = [m for m in published if isinstance(m, MarketResolved)]
            assert (res.slug, res.winning_outcome, res.source) == (info.slug, "Down", "gamma")
            assert res.winning_asset_id == info.down_token_id
            assert res.condition_id == info.condition_id
            asks = venue.asks_of("gamma")
            assert len(asks) >= 4  # two misses, the look-up, the resolution poll
            assert asks[1] - asks[0] >= 0.1 * 0.8 * 2 - 0.02  # the misses back off
            assert core.windows[info.slug].adopted
            assert any(e == "held_window_adopted" for e, _, _ in logged)
            # nothing else was published for it: no market info, no books
            assert all(isinstance(m, MarketResolved) for m in published)
        finally:
            ctx.stop.set()
            await asyncio.wait_for(task, 5)
            server.should_exit = True
            await asyncio.wait_for(srv, 5)

    asyncio.run(main())


def test_held_windows_are_kept_until_resolved_and_lookups_follow_strategy() -> None:
    """A released, unresolved window strategy still holds is not forgotten after HISTORY_NS; a
    slug strategy no longer names stops being looked up."""
    now = time.time_ns()
    info = parse_gamma(GAMMA.read_text(), now)
    core = IngestCore()
    core.step(RiskState(ts_ns=now, halted=False, awaiting_resolution=[info.slug, "x-1"]), now)
    assert core.lookups_due(now) == sorted([info.slug, "x-1"])
    core.lookup_failed("x-1", now, 100, 400)
    assert core.lookups_due(now) == [info.slug]
    assert core.lookups_due(now + 400 * 1_000_000) == sorted([info.slug, "x-1"])
    core.adopt(info, now)
    assert core.lookups_due(now) == []
    late = info.window_end_ns + 3600 * NS
    core.step(Timer(late), late)
    assert info.slug in core.windows  # held and unresolved: kept
    core.step(RiskState(ts_ns=late, halted=False, awaiting_resolution=[]), late)
    assert core.lookups == {} and core.held == set()
    core.step(Timer(late + NS), late + NS)
    assert info.slug not in core.windows  # no longer held: forgotten as before


def test_a_resolution_strategy_missed_is_said_again_while_it_still_awaits_it() -> None:
    """Strategy restarting when `md.resolved` went out (PUB/SUB drops it) still names the window
    as awaiting: ingest says the same resolution again, at most every RESEND_RESOLVED_NS."""
    now = time.time_ns()
    info = parse_gamma(GAMMA.read_text(), now)
    core = IngestCore()
    core.adopt(info, now)
    rr = parse_gamma_resolution(GAMMA.read_text(), now, info.slug)
    ((_, first),) = core.step(rr, now)
    held = RiskState(ts_ns=now, halted=False, awaiting_resolution=[info.slug])
    assert core.step(held, now + NS) == []  # in flight: not yet
    again = core.step(held, now + RESEND_RESOLVED_NS)
    assert again == [(topics.RESOLVED, first)]
    assert core.step(held, now + RESEND_RESOLVED_NS + NS) == []  # spaced
    done = RiskState(ts_ns=now, halted=False, awaiting_resolution=[])
    assert core.step(done, now + 3 * RESEND_RESOLVED_NS) == []


def test_a_resolution_execution_missed_is_said_again_while_its_heartbeat_names_it() -> None:
    """Execution down when `md.resolved` went out, strategy settled (it names nothing): execution's
    heartbeat names the window in `unsettled`, so ingest says the same resolution again, at most
    every RESEND_RESOLVED_NS, until execution no longer names it. Another service's heartbeat,
    or execution's without the field, changes nothing."""
    now = time.time_ns()
    info = parse_gamma(GAMMA.read_text(), now)
    core = IngestCore()
    core.adopt(info, now)
    rr = parse_gamma_resolution(GAMMA.read_text(), now, info.slug)
    ((_, first),) = core.step(rr, now)
    settled = RiskState(ts_ns=now, halted=False, awaiting_resolution=[])
    assert core.step(settled, now + RESEND_RESOLVED_NS) == []

    def hb(service: str, detail: dict[str, Any]) -> Heartbeat:
        return Heartbeat(service=service, state="running", pid=1, started_ns=now, ts_ns=now,
                         detail=detail)  # fmt: skip

    unsettled = {info.slug: {"end_ns": 0, "since_ns": now, "positions": 1, "shares": 5.0}}
    assert core.step(hb("strategy", {"unsettled": unsettled}), now + RESEND_RESOLVED_NS) == []
    assert core.step(hb("execution", {"positions": 1}), now + RESEND_RESOLVED_NS) == []
    assert core.held == set()
    again = core.step(hb("execution", {"unsettled": unsettled}), now + RESEND_RESOLVED_NS)
    assert again == [(topics.RESOLVED, first)]
    assert core.held == {info.slug} and core.summary()["held_by"]["execution"] == [info.slug]
    assert core.step(settled, now + RESEND_RESOLVED_NS + NS) == []  # strategy's word: no drop
    assert core.held == {info.slug}
    assert (
        core.step(hb("execution", {"unsettled": unsettled}), now + 2 * NS + RESEND_RESOLVED_NS)
        == []
    )
    late = now + 2 * RESEND_RESOLVED_NS
    assert core.step(hb("execution", {"unsettled": [info.slug]}), late) == [
        (topics.RESOLVED, first)
    ]
    # kept past HISTORY_NS while execution names it, forgotten once it does not
    later = info.window_end_ns + 3600 * NS
    core.step(Timer(later), later)
    assert info.slug in core.windows
    assert core.step(hb("execution", {"unsettled": {}}), later) == []
    assert core.held == set()
    core.step(Timer(later + NS), later + NS)
    assert info.slug not in core.windows


def test_a_window_only_execution_holds_is_looked_up_when_ingest_does_not_know_it() -> None:
    """Ingest restarted after execution missed a resolution: the slug its heartbeat names is
    unknown, so it is looked up on Gamma (`lookups_due`) like one strategy holds."""
    now = time.time_ns()
    core = IngestCore()
    beat = Heartbeat(service="execution", state="running", pid=1, started_ns=now, ts_ns=now,
                     detail={"unsettled": {"btc-updown-5m-1": {"end_ns": 0}}})  # fmt: skip
    assert core.step(beat, now) == []
    assert core.lookups_due(now) == ["btc-updown-5m-1"]
