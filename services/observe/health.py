"""What is alive, what is down, and why: the documents behind /health, the dashboard's service
chips, feed rows and banners.

A service is alive when supervisord runs it (state RUNNING, when observe runs under supervisord)
AND its heartbeat is fresh AND that heartbeat comes from the process supervisord runs. A feed
needed for trading is healthy when ingest says it is connected and not stale and observe has
heard from it lately. `ok` is true only when every service is alive and every needed feed is
healthy; each thing that is not is named with its reason in `problems`. Trading is unmanaged
when a position is open and strategy or execution is not alive: nothing would manage its exit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from common.supervisor import ProgramState
from services.observe.latency import stage_thresholds

if TYPE_CHECKING:
    from services.observe.state import ObserveCore

SERVICES = ("ingest", "signal", "strategy", "execution", "observe")
FEEDS = ("binance", "clob", "gamma", "price_feed")
MANAGERS = ("strategy", "execution")  # with a position open, both must be alive
HEARTBEAT_STALE_NS = 3_000_000_000  # services beat every second: three missed is not alive
FEED_STALE_MS = 3000.0  # a data feed silent this long is stale (strategy's default too)
SUPERVISOR_STALE_NS = 5_000_000_000  # observe polls supervisord every second
MARKET_DATA_FEEDS = ("binance", "clob")  # the "live" dot: BTC trades and books arriving
# execution's ledger holding a window unsettled this long after strategy settled it (no longer in
# risk.state's awaiting_resolution) is a disagreement worth a warning; ingest says a missed
# resolution again every 5 s while execution's heartbeat names the window, so it is short-lived
DISAGREE_NS = 30_000_000_000


@dataclass
class Supervision:
    """supervisord's view of the programs, as observe's runner last read it.

    `supervised` is False when observe does not run under supervisord (no socket to ask);
    `reasons` holds, for a program that is not running, the last line it wrote to stderr."""

    supervised: bool = False
    programs: dict[str, ProgramState] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    ts_ns: int = 0
    error: str = ""

    def current(self, now_ns: int) -> dict[str, ProgramState]:
        """The programs, or {} when the last successful read is too old to trust."""
        if not self.supervised or now_ns - self.ts_ns > SUPERVISOR_STALE_NS:
            return {}
        return self.programs


def _age_ms(now_ns: int, ts_ns: int) -> float | None:
    return round((now_ns - ts_ns) / 1e6, 1) if ts_ns else None


def _program_reason(p: ProgramState, last_words: str) -> str:
    why = p.description or p.state
    if p.spawn_error and p.spawn_error != p.description:
        why += f"; {p.spawn_error}"
    if last_words:
        why += f"; last stderr line: {last_words}"
    return why


def services_doc(core: ObserveCore, now_ns: int) -> dict[str, dict[str, Any]]:
    """Each service: its heartbeat state, supervisord's state, `alive`, and `reason` when not.

    Shape per service: {state, supervisor_state, alive, reason, pid, age_ms, started_ns, detail};
    `state` is what the service says in its heartbeat (running/halted/degraded) or "unknown",
    `supervisor_state` supervisord's (RUNNING, BACKOFF, ...) or None when not supervised."""
    sup = core.supervision
    programs = sup.current(now_ns)
    names = list(SERVICES)
    if core.venue == "sim" and "simvenue" in programs:
        names.append("simvenue")  # the venue itself: without it nothing trades offline
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        prog = programs.get(name)
        doc: dict[str, Any] = {
            "supervisor_state": prog.state if prog else None,
            "reason": "",
        }
        if name == "observe":
            doc.update(
                state="running", pid=core.pid, age_ms=0.0, started_ns=core.started_ns, alive=True
            )
            out[name] = doc
            continue
        hb = core.heartbeats.get(name)
        if hb is not None:
            doc.update(
                state=hb.state,
                pid=hb.pid,
                age_ms=round((now_ns - hb.ts_ns) / 1e6, 1),
                started_ns=hb.started_ns,
                detail=hb.detail,
            )
        elif name == "simvenue" and prog is not None:  # no heartbeat: supervisord's word
            doc.update(state=prog.state.lower(), pid=prog.pid, age_ms=None, started_ns=None)
        else:
            doc.update(state="unknown", pid=None, age_ms=None, started_ns=None)
        if prog is not None and not prog.running:
            doc["reason"] = _program_reason(prog, sup.reasons.get(name, ""))
        elif name == "simvenue":
            pass  # no heartbeat of its own: supervisord's RUNNING is all there is
        elif hb is None:
            doc["reason"] = "no heartbeat heard yet"
        elif now_ns - hb.ts_ns >= HEARTBEAT_STALE_NS:
            doc["reason"] = (
                f"last heartbeat {(now_ns - hb.ts_ns) / 1e9:.1f} s ago "
                f"(bound {HEARTBEAT_STALE_NS / 1e9:g} s)"
            )
        elif prog is not None and prog.pid and prog.pid != hb.pid and sup.ts_ns > hb.ts_ns:
            doc["reason"] = (
                f"restarted: supervisord runs pid {prog.pid}, last heartbeat was from pid {hb.pid}"
            )
        doc["alive"] = not doc["reason"]
        out[name] = doc
    return out


def feeds_doc(
    core: ObserveCore, now_ns: int, latency: dict[str, dict[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """Each feed: connected, stale, age of the last message, lag p50 with the bounds it is
    judged by (the latency table's), `needed` for trading, and `reason` when it is not ok.
    `latency` is a `LatencyStats.summary()` to take the lag from (the live document passes its
    cached one: sorting every window five times a second would cost the bus reader)."""
    out: dict[str, dict[str, Any]] = {}
    stale_ms = float(core.config.get("stale_after_ms", FEED_STALE_MS))
    ingest_down = _ingest_down(core, now_ns)
    for feed in FEEDS:
        last = core.feed_last_ns.get(feed, 0)
        age = _age_ms(now_ns, last)
        fs = core.feed_status.get(feed)
        doc: dict[str, Any] = {"age_ms": age, "last_ns": last or None}
        if fs is not None:
            doc.update(
                connected=fs.connected,
                reported_stale=fs.stale,
                reconnects=fs.reconnects,
                parse_errors=fs.parse_errors,
                detail=fs.detail,
            )
        else:
            doc.update(connected=None, detail="")
        disabled = fs is not None and fs.detail.startswith("disabled")
        # gamma is polled, so only its explicit status says it is stale
        silent = feed != "gamma" and (age is None or age > stale_ms)
        doc["stale"] = bool((fs is not None and (fs.stale or not fs.connected)) or silent)
        doc["disabled"] = disabled
        doc["needed"] = not disabled  # an operator may run without the price feed, nothing else
        stage = f"feed_lag_{feed}_ms"
        if latency is not None:
            p50 = latency.get(stage, {}).get("p50")
        else:
            window = core.latency.samples.get(stage)
            p50 = sorted(window)[len(window) // 2] if window else None
        doc["lag_ms"] = round(p50, 1) if p50 is not None else None
        warning, critical, stale = stage_thresholds(stage)
        doc["lag_thresholds"] = {"warning": warning, "critical": critical, "stale": stale}
        if disabled:
            doc["reason"] = ""
        elif fs is None and last == 0:
            doc["reason"] = "no data yet"
        elif fs is not None and not fs.connected:
            doc["reason"] = f"down: {fs.detail or 'disconnected'}"
        elif doc["stale"]:
            heard = f"last message {age / 1000:.1f} s ago" if age is not None else "no message"
            doc["reason"] = f"stale: {heard}" + (f" ({fs.detail})" if fs and fs.detail else "")
        else:
            doc["reason"] = ""
        if ingest_down and not disabled:
            # ingest reports the feeds: with it down, the last status heard is not the truth
            doc.update(connected=None, stale=True, unknown=True, reason=f"unknown: {ingest_down}")
        out[feed] = doc
    return out


def _ingest_down(core: ObserveCore, now_ns: int) -> str:
    """Why ingest is known to be down: supervisord does not run it ("" otherwise; a silent
    ingest's feeds go stale by their own age)."""
    prog = core.supervision.current(now_ns).get("ingest")
    if prog is not None and not prog.running:
        return f"ingest {prog.state}"
    return ""


def data_flow(feeds: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Whether market data is flowing (BTC trades and books): the dashboard's "live" dot."""
    bad = [f"{f}: {feeds[f]['reason']}" for f in MARKET_DATA_FEEDS if feeds[f]["reason"]]
    return {"ok": not bad, "reason": "; ".join(bad)}


def _config_errors(core: ObserveCore) -> list[dict[str, Any]]:
    out = []
    """Each service running on its last good config because it refused an edit of the config
    files, as its heartbeat's `config_file_error` says (strategy, signal; ingest for the
    markets it follows)."""
    for name in ("strategy", "signal", "ingest"):
        hb = core.heartbeats.get(name)
        err = hb.detail.get("config_file_error") if hb is not None else None
        if isinstance(err, dict):
            out.append(
                {
                    "service": name,
                    "path": str(err.get("source", "")),
                    "error": "; ".join(f"{k}: {v}" for k, v in (err.get("errors") or {}).items())
                    or str(err.get("message", "")),
                    "ts_ns": err.get("ts_ns"),
                }
            )
    return out


def settlement_disagreements(core: ObserveCore, now_ns: int) -> list[str]:
    """Windows execution's ledger holds unsettled (its heartbeat's `unsettled`: slug ->
    `{"since_ns", "positions", "shares", ...}`, services/execution/core.py) that strategy no
    longer awaits (settled on its side, risk.state's `awaiting_resolution`), for more than
    `DISAGREE_NS`: a sentence each. Execution's own warning of a window held unsettled long
    after its end comes in its heartbeat's `warnings`."""
    hb = core.heartbeats.get("execution")
    if hb is None or core.risk is None:
        return []
    unsettled = hb.detail.get("unsettled")
    if not isinstance(unsettled, dict):
        return []
    out: list[str] = []
    for slug, d in sorted(unsettled.items()):
        if slug in core.risk.awaiting_resolution or not isinstance(d, dict):
            continue
        age = now_ns - int(d.get("since_ns") or now_ns)
        if age > DISAGREE_NS:
            out.append(
                f"execution's ledger holds {d.get('positions', '?')} position(s) in {slug} not"
                f" settled for {age / 1e9:.0f} s while strategy settled it: its resolution is"
                " asked of ingest again"
            )
    return out


def health(
    core: ObserveCore, now_ns: int, feeds: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The /health document: `ok`, `problems` (what makes it not ok, each with its reason),
    `warnings` (worth knowing, not failing: a refused config file edit, supervisord not asked
    yet; a supervisord that stopped answering is a problem), `unmanaged` (a sentence when a position is open and strategy or execution is
    not alive, else None), `services`, `feeds`, `config_errors` and the probe `pipeline`."""
    services = services_doc(core, now_ns)
    feeds = feeds if feeds is not None else feeds_doc(core, now_ns)
    problems: list[str] = []
    for name, s in services.items():
        if not s["alive"]:
            state = s["supervisor_state"] or s["state"]
            problems.append(f"{name} {state}: {s['reason']}")
    for name, f in feeds.items():
        if f["needed"] and f["reason"]:
            problems.append(f"feed {name} {f['reason']}")
    warnings: list[str] = []
    config_errors = _config_errors(core)
    for e in config_errors:
        warnings.append(
            f"{e['service']} refused {e['path']} (runs on its last good config): {e['error']}"
        )
    for name, hb in core.heartbeats.items():  # a service's own warnings (strategy: config)
        for w in (hb.detail.get("warnings") or []) if hb is not None else []:
            warnings.append(f"{name}: {w}")
    warnings += settlement_disagreements(core, now_ns)
    sup = core.supervision
    if sup.supervised and not sup.current(now_ns):
        if sup.error or sup.ts_ns:
            # a supervised tree whose supervisord is gone (kill -9) or stuck: nothing restarts a
            # program that stops, and `polyedge status`/`up` cannot see the programs: not ok
            problems.append(
                f"supervisord not answering: {sup.error or 'no answer for more than 5 s'}"
                " (nothing restarts a program that stops)"
            )
        else:
            warnings.append("supervisord not answering: no answer yet")
    unmanaged = None
    held = core.open_positions()  # of every market
    down = [n for n in MANAGERS if not services[n]["alive"]]
    if held and down:
        who = ", ".join(
            f"{n} {services[n]['supervisor_state'] or services[n]['state']}" for n in down
        )
        what = "; ".join(f"{p.outcome} position of {p.size:g} shares in {p.slug}" for p in held)
        verb = "is" if len(held) == 1 else "are"
        unmanaged = f"{what} {verb} open and {who}: nothing manages its exit"
        problems.insert(0, f"trading unmanaged: {unmanaged}")
    pipeline: dict[str, Any] = {"probes": core.probes}
    if core.last_probe is not None:
        pr = core.last_probe
        pipeline.update(
            hops=pr.hops,
            age_ms=round((now_ns - pr.hop_ns[-1]) / 1e6, 1),
            end_to_end_ms=round((pr.hop_ns[-1] - pr.ts_origin_ns) / 1e6, 3),
        )
    return {
        "ok": not problems,
        "problems": problems,
        "warnings": warnings,
        "unmanaged": unmanaged,
        "services": services,
        "feeds": {
            k: {"stale": v["stale"], "needed": v["needed"], "reason": v["reason"]}
            for k, v in feeds.items()
        },
        "config_errors": config_errors,
        "supervised": sup.supervised,
        "pipeline": pipeline,
    }
