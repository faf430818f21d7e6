"""The simulated venue's own control API: `/sim/health`, `/sim/state` (the venue's true state),
and fault injection `/sim/fault`, `/sim/fault/clear`, `/sim/faults` (faults: `venue.FAULTS`).
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from services.simvenue.market import NS
from services.simvenue.venue import FAULTS, SOCKET_KINDS, Venue, error_response


async def sim_health(request: Request) -> Response:
    v: Venue = request.app.state.venue
    kinds = {k: sum(1 for c in v.conns if c.kind == k) for k in SOCKET_KINDS}
    return JSONResponse(
        {
            "ok": True,
            "mode": "replay" if v.replay else "sim",
            "seed": v.opts.seed,
            "window_seconds": v.opts.window_seconds,
            "t_ns": v.clock(),
            "uptime_s": (v.clock() - v.started_ns) / NS,
            "connections": kinds,
            "frames_sent": v.frames_sent,
            "replay_done": v.replay.done if v.replay else None,
        }
    )


async def sim_state(request: Request) -> Response:
    v: Venue = request.app.state.venue
    v.sync()
    st = v.market.state()
    st["mode"] = "replay" if v.replay else "sim"
    st["faults"] = v.fault_log[-50:]
    st["withheld_resolutions"] = v.withheld_resolutions
    st["stall_until_ns"] = v.stall_until
    st["orders"] = [o.state_doc() for o in v.orders.values()]
    # resting user orders in the book: price-time queue position (centi-shares as shares)
    st["resting"] = [
        {
            "id": r.order_id,
            "token": r.token,
            "side": r.side,
            "price": r.price / 1000,
            "remaining": r.remaining / 100,
            "ahead": r.ahead / 100,
        }
        for r in v.market.resting.values()
    ]
    st["accounts"] = {
        a: {
            "usdc": x["usdc"] / 1e6,
            "pusd": x["usdc"] / 1e6,
            "tokens": {t: n / 1e6 for t, n in x["tokens"].items()},
            "approvals": {
                "pusd_ctf_exchange": x["approved"],
                "ctf_operators": sorted(x["operators"]),
            },
            "redemptions": list(x["redemptions"]),
        }
        for a, x in v.accounts.items()
    }
    st["resolved_conditions"] = sorted(v.resolved_conditions)
    st["relayer_transactions"] = list(v.relayer_txs.values())[-50:]
    st["modes"] = {
        "manual_redemption": v.manual_redemption,
        "refuse_eoa_makers": v.refuse_eoa_makers,
        "prefixed_statuses": v.prefixed_statuses,
        "geoblocked": v.geoblocked,
        "clock_skew_s": v.time_skew_s,
        "post_only_until_ns": v.post_only_until,
        "not_ready_until_ns": v.timed.get("not_ready", 0),
    }
    return JSONResponse(st)


async def sim_fault(request: Request) -> Response:
    v: Venue = request.app.state.venue
    try:
        f = json.loads(await request.body())
        entry = v.apply_fault(f)
    except (ValueError, TypeError, AttributeError) as exc:
        return error_response(400, str(exc))
    return JSONResponse({"ok": True, "fault": entry})


async def sim_fault_clear(request: Request) -> Response:
    v: Venue = request.app.state.venue
    v.stall_until.clear()
    v.counters.clear()
    v.timed.clear()
    v.refuse_eoa_makers = v.geoblocked = v.prefixed_statuses = False
    v.time_skew_s = 0.0
    v.post_only_until = 0
    for c in v.conns:
        c.duplicate_left = c.reorder_left = 0
    return JSONResponse({"ok": True})


async def sim_faults(request: Request) -> Response:
    v: Venue = request.app.state.venue
    return JSONResponse(
        {
            "known": list(FAULTS),
            "log": v.fault_log[-50:],
            "counters": v.counters,
            "stall_until_ns": v.stall_until,
        }
    )


MARKET_KNOBS = ("book_ticker_hz", "clob_update_hz", "quoter_noise_sd")


async def sim_market(request: Request) -> Response:
    """GET: the market's event rates (per second) and the quoters' mispricing noise (logit per
    sqrt second); POST any of `{"book_ticker_hz", "clob_update_hz", "quoter_noise_sd"}` (>= 0)
    changes them at once: `polyedge bench --capacity` steps the offered rate this way without
    restarting the tree, and the bench widens the mispricing so entries find an edge often."""
    v: Venue = request.app.state.venue
    if request.method == "POST":
        try:
            doc = json.loads(await request.body())
            if not isinstance(doc, dict) or set(doc) - set(MARKET_KNOBS):
                raise ValueError(f"expected an object with some of {', '.join(MARKET_KNOBS)}")
            rates = {k: float(x) for k, x in doc.items()}
            if any(not 0 <= x <= 1e6 for x in rates.values()):
                raise ValueError("values must be between 0 and 1e6")
        except (ValueError, TypeError) as exc:
            return error_response(400, str(exc))
        for k, x in rates.items():
            setattr(v.market, k, x)
    return JSONResponse(
        {**{k: getattr(v.market, k) for k in MARKET_KNOBS}, "frames_sent": v.frames_sent}
    )


async def root(request: Request) -> Response:
    return PlainTextResponse("polyedge simvenue; see /sim/health\n")


routes = [
    Route("/", root),
    Route("/sim/health", sim_health),
    Route("/sim/state", sim_state),
    Route("/sim/fault", sim_fault, methods=["POST"]),
    Route("/sim/fault/clear", sim_fault_clear, methods=["POST"]),
    Route("/sim/faults", sim_faults),
    Route("/sim/market", sim_market, methods=["GET", "POST"]),
]
