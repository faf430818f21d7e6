"""Alerts: the rules (halts, emergency stops, unknown order outcomes, failed redemptions, service
restarts, the day's P&L, stale feeds) on plain messages, the rate limit, and delivery through
apprise to a real local webhook receiver (an HTTP server in the test) from the sender's thread."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from common.schema import FeedStatus, Heartbeat, PositionRedeemed, RiskState
from services.observe.alerts import Alert, AlertRules, Alerts, AlertSender, RateLimit
from services.observe.state import ObserveCore
from tests.conftest import wait_for

NS = 1_000_000_000


class WebhookReceiver:
    """A real HTTP server on a free loopback port keeping every POSTed JSON body (with the
    monotonic time it arrived): the stand-in for Slack/Discord/a webhook relay."""

    def __init__(self) -> None:
        self.received: list[tuple[float, dict[str, Any]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                try:
                    doc = json.loads(body)
                except ValueError:
                    doc = {"raw": body.decode(errors="replace")}
                outer.received.append((time.monotonic(), doc))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"json://127.0.0.1:{self.port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = WebhookReceiver()
    yield r
    r.close()


def risk(**kw: Any) -> RiskState:
    base: dict[str, Any] = {"ts_ns": 1, "halted": False, "day": "2026-11-30"}
    base.update(kw)
    return RiskState(**base)


def hb(service: str, pid: int, **detail: Any) -> Heartbeat:
    return Heartbeat(
        service=service, state="running", pid=pid, started_ns=1, ts_ns=2, detail=detail
    )


def test_halts_and_emergency_stop_alert_once_each_and_clearing_says_so() -> None:
    rules = AlertRules()
    assert rules.on_message(risk(), 0) == []
    a = rules.on_message(risk(halted=True, emergency_stop=True, reasons=["emergency_stop"]), 0)
    assert [x.kind for x in a] == ["emergency_stop"] and a[0].severity == "critical"
    # the same state again (strategy republishes it) is no new alert
    assert (
        rules.on_message(risk(halted=True, emergency_stop=True, reasons=["emergency_stop"]), 0)
        == []
    )
    a = rules.on_message(
        risk(halted=True, emergency_stop=True, reasons=["emergency_stop", "daily_loss_limit"]), 0
    )
    assert [(x.kind, x.key) for x in a] == [("halt", "daily_loss_limit")]
    a = rules.on_message(risk(), 0)
    assert [x.kind for x in a] == ["halt_cleared"]


def test_a_market_halt_alerts_once_per_reason_and_its_resumption_says_so() -> None:
    rules = AlertRules()
    eth_halted = {"halted": True, "reasons": ["operator"], "daily_pnl": -1.5, "trades_today": 2}
    btc_ok = {"halted": False, "reasons": [], "daily_pnl": 0.5, "trades_today": 1}
    assert rules.on_message(risk(markets={"btc-5m": btc_ok}), 0) == []
    a = rules.on_message(risk(markets={"btc-5m": btc_ok, "eth-15m": eth_halted}), 0)
    assert [(x.kind, x.key, x.severity) for x in a] == [
        ("market_halt", "eth-15m:operator", "warning")
    ]
    assert a[0].title == "eth-15m halted: operator" and "-1.50 USD" in a[0].body
    assert rules.on_message(risk(markets={"btc-5m": btc_ok, "eth-15m": eth_halted}), 0) == []
    # a second reason for the same market is a new alert; the global state is untouched
    both = eth_halted | {"reasons": ["operator", "daily_loss_limit"]}
    a = rules.on_message(risk(markets={"btc-5m": btc_ok, "eth-15m": both}), 0)
    assert [x.key for x in a] == ["eth-15m:daily_loss_limit"]
    a = rules.on_message(
        risk(markets={"btc-5m": btc_ok, "eth-15m": eth_halted | {"halted": False}}), 0
    )
    assert [(x.kind, x.key) for x in a] == [("market_halt_cleared", "eth-15m")]


def test_day_roll_sends_the_finished_days_pnl_summary() -> None:
    rules = AlertRules()
    rules.on_message(risk(day="2026-11-29", daily_pnl=-3.25, trades_today=4, wins_today=1), 0)
    a = rules.on_message(risk(day="2026-11-30"), 0)
    assert [x.kind for x in a] == ["daily_pnl"]
    assert "-3.25" in a[0].title and "4 trades" in a[0].body and a[0].fields["day"] == "2026-11-29"


def test_restarts_unknown_outcomes_and_failed_redemptions_from_heartbeats() -> None:
    rules = AlertRules()
    assert rules.on_message(hb("execution", 10, unknown=0), 0) == []
    assert rules.on_message(hb("execution", 10, unknown=0), 0) == []
    a = rules.on_message(hb("execution", 10, unknown=2), 0)
    assert [(x.kind, x.stream) for x in a] == [("order_outcome_unknown", "errors")]
    a = rules.on_message(hb("execution", 10, unknown=2, venue={"redemptions_failed": 1}), 0)
    assert [x.kind for x in a] == ["redemption_failed"]
    # a restart: counters start again from 0, the restart is the alert, not the counters
    a = rules.on_message(hb("execution", 11, unknown=0), 0)
    assert [(x.kind, x.key) for x in a] == [("service_restart", "execution")]
    a = rules.on_message(hb("execution", 11, unknown=1), 0)
    assert [x.kind for x in a] == ["order_outcome_unknown"]


def test_a_failed_redemption_alerts_and_a_retried_one_warns() -> None:
    rules = AlertRules()

    def red(state: str, detail: str = "") -> PositionRedeemed:
        return PositionRedeemed(
            condition_id="0xc",
            slug="btc-updown-5m-1",
            state=state,
            shares=10.0,
            cash_expected=10.0,
            ts_ns=1,
            detail=detail,
        )

    assert rules.on_message(red("requested"), 0) == []
    assert rules.on_message(red("awaiting"), 0) == []  # not sent yet, nothing failed
    a = rules.on_message(red("awaiting", "relayer 503"), 0)
    assert [(x.kind, x.severity) for x in a] == [("redemption_retrying", "warning")]
    a = rules.on_message(red("failed", "reverted"), 0)
    assert [(x.kind, x.severity, x.stream) for x in a] == [
        ("redemption_failed", "critical", "errors")
    ]
    assert "reverted" in a[0].body


def test_a_feed_stale_beyond_the_bound_alerts_once_then_recovers() -> None:
    core = ObserveCore(0, 1)
    rules = AlertRules(feed_stale_after_s=5)
    t0 = 1_000 * NS
    core.handle("md.feed", FeedStatus(feed="binance", connected=False, stale=True, ts_ns=t0), t0)
    assert [a for a in rules.check(core, t0) if a.key == "binance"] == []
    assert [a for a in rules.check(core, t0 + 4 * NS) if a.key == "binance"] == []
    a = [a for a in rules.check(core, t0 + 5 * NS) if a.key == "binance"]
    assert [x.kind for x in a] == ["feed_stale"] and "binance" in a[0].title
    assert [a for a in rules.check(core, t0 + 9 * NS) if a.key == "binance"] == []
    t1 = t0 + 10 * NS
    core.handle("md.feed", FeedStatus(feed="binance", connected=True, stale=False, ts_ns=t1), t1)
    core.feed_last_ns["binance"] = t1
    a = [a for a in rules.check(core, t1) if a.key == "binance"]
    assert [x.kind for x in a] == ["feed_recovered"]


def test_rate_limit_drops_repeats_and_bursts() -> None:
    lim = RateLimit(burst=3, refill_per_s=1.0, repeat_after_s=60)
    a = Alert("halt", "critical", "t", "b", key="x")
    assert lim.allow(a, 0.0) == ""
    assert lim.allow(a, 1.0) == "repeat"
    assert lim.allow(a, 61.0) == ""
    others = [Alert("feed_stale", "critical", "t", "b", key=str(i)) for i in range(5)]
    verdicts = [lim.allow(x, 61.0) for x in others]
    assert verdicts[:2] == ["", ""] and verdicts[2:] == ["rate"] * 3
    assert lim.allow(others[4], 62.5) == ""  # a token came back after a second


def test_alerts_reach_a_webhook_from_the_sender_thread_and_are_logged(receiver) -> None:
    lines: list[tuple[str, str, dict[str, Any]]] = []
    sender = AlertSender([receiver.url])
    alerts = Alerts(AlertRules(), sender, lambda s, e, lvl="INFO", **f: lines.append((s, e, f)))
    t0 = time.monotonic()
    alerts.on_message(risk(halted=True, emergency_stop=True, reasons=["emergency_stop"]), 0)
    assert time.monotonic() - t0 < 0.05  # submitting never waits for the network
    got = wait_for(lambda: receiver.received, 5, what="the webhook to receive the alert")
    assert "EMERGENCY STOP" in got[0][1]["title"] and got[0][1]["type"] == "failure"
    assert lines[0][0] == "risk" and lines[0][1] == "alert"
    assert lines[0][2]["kind"] == "emergency_stop" and lines[0][2]["delivery"] == "queued"
    wait_for(lambda: sender.sent == 1, 5, what="the sender to count the delivery")
    sender.close()


def test_a_dead_webhook_is_an_error_line_not_a_stall() -> None:
    lines: list[tuple[str, str, dict[str, Any]]] = []
    # a closed port: apprise fails fast; the failure is logged on the owner's thread
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sender = AlertSender([f"json://127.0.0.1:{port}/hook"])
    alerts = Alerts(AlertRules(), sender, lambda s, e, lvl="INFO", **f: lines.append((s, e, f)))
    alerts.raise_(Alert("halt", "critical", "t", "b"))
    core = ObserveCore(0, 1)

    def failed() -> bool:
        alerts.tick(core, time.time_ns())
        return any(e == "alert_delivery_failed" for _, e, _ in lines)

    wait_for(failed, 10, what="the failed delivery in errors.jsonl")
    assert alerts.metrics()["alerts_failed"] == 1
    sender.close()


def test_an_alert_url_apprise_cannot_use_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="nosuchscheme://") as e:
        AlertSender(["nosuchscheme://secret-token@host"])
    assert "secret-token" not in str(e.value)


@pytest.mark.whole_system
def test_emergency_stop_and_a_restart_reach_a_local_webhook_on_the_whole_tree(receiver) -> None:
    from tests.chaos.chaos_harness import HOLD_CONFIG, running_tree

    with running_tree(HOLD_CONFIG, extra_env={"ALERT_URLS": receiver.url}) as tree:
        t0 = time.monotonic()
        r = tree.post("/api/emergency-stop", {"reason": "alert test"})
        assert r.status_code == 200, r.text

        def estop() -> float | None:
            for t, doc in receiver.received:
                if "EMERGENCY STOP" in doc.get("title", ""):
                    return t
            return None

        try:
            t_alert = wait_for(estop, 10, what="the emergency-stop alert at the webhook")
        except AssertionError as e:
            titles = [d.get("title") for _, d in receiver.received]
            raise AssertionError(
                f"{e}; received {titles}; {tree.sup.log_tail('observe')}"
            ) from None
        assert t_alert - t0 <= 2.0, f"alert {t_alert - t0:.2f} s after the emergency stop"
        print(f"\nemergency stop -> webhook: {t_alert - t0:.3f} s")
        risk_lines = [
            json.loads(ln) for ln in (tree.root / "logs" / "risk.jsonl").read_text().splitlines()
        ]
        assert any(
            ln["event"] == "alert" and ln.get("kind") == "emergency_stop" for ln in risk_lines
        )

        # observe must know signal's running pid before the kill, or a new pid is no restart
        old_pid = tree.sup.pid("signal")
        wait_for(
            lambda: tree.get("/health").json()["services"]["signal"].get("pid") == old_pid,
            20,
            what="observe to hear signal's heartbeat",
        )
        old_pid, _ = tree.kill9("signal")
        tree.wait_restarted("signal", old_pid)
        try:
            wait_for(
                lambda: any("signal restarted" in d.get("title", "") for _, d in receiver.received),
                20,
                what="the restart alert at the webhook",
            )
        except AssertionError as e:
            titles = [d.get("title") for _, d in receiver.received]
            raise AssertionError(f"{e}; received {titles}") from None
        # a program stopped past the grace pages, and its return is said once
        t_stop = time.monotonic()
        tree.sup.ctl("stop", "execution", check=True)

        def said(text: str) -> float | None:
            return next((t for t, d in receiver.received if text in d.get("title", "")), None)

        try:
            t_down = wait_for(lambda: said("execution DOWN"), 40, what="the service-down alert")
            assert t_down - t_stop >= 14.5, f"paged {t_down - t_stop:.1f} s after the stop"
            tree.sup.ctl("start", "execution", check=True)
            wait_for(lambda: said("execution running again"), 30, what="the running-again alert")
        except AssertionError as e:
            titles = [d.get("title") for _, d in receiver.received]
            raise AssertionError(f"{e}; received {titles}") from None
        print(f"execution stopped -> webhook: {t_down - t_stop:.1f} s")
        assert said("execution restarted") is None  # the return is said once, not twice


def test_stop_clear_stop_within_the_window_delivers_all_three_and_ends_on_stop(receiver) -> None:
    """New-user test (BREAKER4 finding 2): de-duplication per alert kind suppressed the second
    STOP of stop -> clear -> stop within 60 s, so the last message said "trading resumed" while
    the emergency stop was set. A change of state is always delivered."""
    lines: list[tuple[str, str, dict[str, Any]]] = []
    sender = AlertSender([receiver.url])
    alerts = Alerts(AlertRules(), sender, lambda s, e, lvl="INFO", **f: lines.append((s, e, f)))
    stopped = risk(halted=True, emergency_stop=True, reasons=["emergency_stop"])
    for msg in (risk(), stopped, risk(), stopped):
        alerts.on_message(msg, 0)
    got = wait_for(lambda: len(receiver.received) >= 3 and receiver.received, 5, what="3 alerts")
    titles = [doc["title"] for _, doc in got]
    assert len(titles) == 3, titles
    assert "EMERGENCY STOP" in titles[0] and "resumed" in titles[1]
    assert "EMERGENCY STOP" in titles[2], titles
    assert [f["delivery"] for _, e, f in lines if e == "alert"] == ["queued"] * 3
    # the same state again (an identical alert about the same subject) is collapsed
    again = alerts.rules.on_message(risk(), 0)  # a real clear ...
    alerts.raise_(again[0])
    alerts.raise_(again[0])  # ... and the same clear once more
    wait_for(lambda: len(receiver.received) >= 4, 5, what="the clear")
    assert [f["delivery"] for _, e, f in lines if e == "alert"][-2:] == [
        "queued",
        "suppressed_repeat",
    ]
    wait_for(lambda: sender.sent == 4, 5, what="the sender to count 4 deliveries")
    # the repeated clear was never handed to the sender: four deliveries in all
    assert (
        sender.queue.empty()
        and len(receiver.received) == 4
        and "resumed" in receiver.received[-1][1]["title"]
    )
    sender.close()


def test_repeats_collapse_only_while_the_subject_stays_in_the_same_state() -> None:
    lim = RateLimit(burst=10, refill_per_s=1.0, repeat_after_s=60)
    stop = Alert("emergency_stop", "critical", "STOP", "", key="emergency_stop", subject="halt")
    clear = Alert("halt_cleared", "info", "resumed", "", subject="halt")
    assert [lim.allow(a, t) for t, a in enumerate([stop, stop])] == ["", "repeat"]
    assert [lim.allow(a, 2 + t) for t, a in enumerate([clear, clear, stop])] == ["", "repeat", ""]
    assert lim.allow(stop, 4 + 61) == ""  # the window has passed: said again


def test_a_state_change_the_rate_holds_back_is_sent_later_never_lost(receiver) -> None:
    lines: list[tuple[str, str, dict[str, Any]]] = []
    sender = AlertSender([receiver.url])
    limit = RateLimit(burst=1, refill_per_s=1.0, repeat_after_s=60)
    alerts = Alerts(
        AlertRules(), sender, lambda s, e, lvl="INFO", **f: lines.append((s, e, f)), limit
    )
    stop = Alert("emergency_stop", "critical", "STOP", "", key="emergency_stop", subject="halt")
    clear = Alert("halt_cleared", "info", "resumed", "", subject="halt")
    alerts.raise_(stop)
    alerts.raise_(clear)  # no token left: held back, not dropped
    assert "halt" in alerts.deferred and lines[-1][2]["delivery"] == "deferred_rate"
    core = ObserveCore(0, 1)

    def both() -> bool:
        alerts.tick(core, time.time_ns())
        return len(receiver.received) == 2

    wait_for(both, 5, what="the held-back clear to go once a token is back")
    assert [d["title"] for _, d in receiver.received] == ["polyedge: STOP", "polyedge: resumed"]
    assert lines[-1][1] == "alert_delivery" and lines[-1][2]["delivery"] == "queued"
    assert alerts.deferred == {}
    sender.close()


def _tree_at(c: ObserveCore, t: int, **states: str) -> None:
    """supervisord's view of the tree at `t` (each program RUNNING unless `states` says),
    a fresh heartbeat from every running service, and every feed flowing."""
    from tests.observe.test_observe_health import beat, feeds_ok, supervise

    supervise(c, t, **states)
    for name in ("ingest", "signal", "strategy", "execution"):
        if states.get(name, "RUNNING") == "RUNNING":
            beat(c, name, t)
    feeds_ok(c, t)


def _titles(receiver: WebhookReceiver) -> list[str]:
    return [d["title"] for _, d in receiver.received]


def test_a_program_stopped_past_the_grace_alerts_and_its_return_too(receiver) -> None:
    """New-user test (BREAKER4 finding 3): execution stopped for 50 s, /health 503 all along,
    and no alert until it came back. A program down past the grace pages; a short restart
    does not."""
    from tests.observe.test_observe_health import NOW, S, healthy

    lines: list[tuple[str, str, dict[str, Any]]] = []
    sender = AlertSender([receiver.url])
    alerts = Alerts(
        AlertRules(service_down_after_s=15),
        sender,
        lambda s, e, lvl="INFO", **f: lines.append((s, e, f)),
    )
    c = healthy()
    alerts.tick(c, NOW)
    # a restart that takes 5 s: no page
    for dt in (1, 3, 5):
        _tree_at(c, NOW + dt * S, strategy="STARTING")
        alerts.tick(c, NOW + dt * S)
    _tree_at(c, NOW + 6 * S)
    alerts.tick(c, NOW + 6 * S)
    # execution stopped for good
    for dt in range(10, 40, 2):
        _tree_at(c, NOW + dt * S, execution="STOPPED")
        alerts.tick(c, NOW + dt * S)
    got = wait_for(lambda: receiver.received, 5, what="the service-down alert at the webhook")
    assert _titles(receiver) == ["polyedge: execution DOWN for 16 s"], _titles(receiver)
    assert got[0][1]["type"] == "failure" and "execution STOPPED" in got[0][1]["message"]
    down = [f for s, e, f in lines if e == "alert" and f["kind"] == "service_down"]
    assert len(down) == 1 and down[0]["service"] == "execution"
    _tree_at(c, NOW + 40 * S)
    alerts.tick(c, NOW + 40 * S)
    wait_for(lambda: len(receiver.received) == 2, 5, what="the running-again alert")
    assert _titles(receiver)[1] == "polyedge: execution running again"
    assert "after 30 s down" in receiver.received[1][1]["message"]
    sender.close()


def test_an_unmanaged_position_alerts_and_its_end_too(receiver) -> None:
    """New-user test (BREAKER4 finding 3): strategy stopped while a position was open, /health
    said "trading unmanaged" and nothing was sent."""
    from tests.observe.test_observe_health import NOW, S, healthy, hold

    sender = AlertSender([receiver.url])
    alerts = Alerts(AlertRules(), sender, lambda s, e, lvl="INFO", **f: None)
    c = healthy()
    hold(c, "eth-updown-15m-9", "Down", 14.28, 5.7)
    alerts.tick(c, NOW)
    for dt in range(1, 14):
        _tree_at(c, NOW + dt * S, strategy="STOPPED")
        alerts.tick(c, NOW + dt * S)
    got = wait_for(lambda: receiver.received, 5, what="the unmanaged alert at the webhook")
    assert _titles(receiver) == ["polyedge: TRADING UNMANAGED"], _titles(receiver)
    assert got[0][1]["type"] == "failure"
    assert (
        "Down position of 14.28 shares in eth-updown-15m-9 is open and strategy STOPPED"
        in got[0][1]["message"]
    )
    _tree_at(c, NOW + 14 * S)  # back before the service-down grace: only the end of unmanaged
    alerts.tick(c, NOW + 14 * S)
    wait_for(lambda: len(receiver.received) == 2, 5, what="the managed-again alert")
    assert _titles(receiver)[1] == "polyedge: trading managed again"
    assert "strategy and execution are alive again" in receiver.received[1][1]["message"]
    sender.close()


def test_a_service_reported_down_comes_back_with_one_message_not_two() -> None:
    rules = AlertRules()
    assert rules.on_message(hb("execution", 10), 0) == []
    rules.down_alerted.add("execution")  # what check() records when it sent "execution DOWN"
    # its new pid is said by check()'s "running again", not a second "restarted"
    assert rules.on_message(hb("execution", 11), 0) == []
    rules.down_alerted.clear()
    assert [a.kind for a in rules.on_message(hb("execution", 12), 0)] == ["service_restart"]
