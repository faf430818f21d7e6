"""Operator alerts: which bus messages and states wake someone up (halts, emergency stops, unknown
order outcomes, failed redemptions, a feed stale beyond a bound, a service restart, a service down
beyond a grace, trading unmanaged, the day's P&L summary), de-duplicated per state and rate-limited, written to `risk.jsonl` / `errors.jsonl`, and sent through apprise
(Telegram, Discord, Slack, e-mail, webhooks: one URL each in `ALERT_URLS`) from a worker thread,
so a slow or dead notification service never holds up observe's bus reader.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from common.schema import Heartbeat, Msg, PositionRedeemed, RiskState

if TYPE_CHECKING:
    from services.observe.state import ObserveCore

NS = 1_000_000_000
Severity = Literal["info", "warning", "critical"]

# execution's heartbeat counters (ExecutionCore.status()) whose increase is an alert:
# counter -> (kind, severity, title). Redemptions also come as exec.redemption messages (below);
# `redemptions_failed` is counted too in case an adapter reports failures only in its heartbeat.
EXECUTION_COUNTERS: dict[str, tuple[str, Severity, str]] = {
    "unknown": ("order_outcome_unknown", "critical", "order outcome unknown"),
    "alerts": ("order_outcome_unresolved", "critical", "order outcome still unresolved"),
    "trades_failed": ("trade_failed", "critical", "a venue trade FAILED (reversed)"),
    "redemptions_failed": ("redemption_failed", "critical", "redemption failed"),
}
REPEAT_AFTER_S = 60.0  # the same state of a subject again within this long is not re-sent
# a service not alive this long is "down" (a normal restart, kill -9 included, takes a few s)
SERVICE_DOWN_AFTER_S = 15.0
# a position open with strategy or execution not alive this long is "trading unmanaged"; the
# same bound as the Prometheus rule PolyedgeTradingUnmanaged (config/prometheus/polyedge-rules.yml)
UNMANAGED_AFTER_S = 10.0
BURST = 10  # at most this many alerts at once, then ...
REFILL_PER_S = 1 / 6  # ... one every 6 s (10 a minute)
QUEUE_SIZE = 256  # alerts waiting for the sender; more are dropped (and counted)


@dataclass(frozen=True)
class Alert:
    """One alert: `kind` names the rule (`emergency_stop`, `halt`, `service_restart`, ...), `key`
    what it is about (a service, a feed, a halt reason), `subject` the thing whose state it
    reports (`halt` for the global halt/stop/resume alerts, `service:<name>`, `feed:<name>`,
    `market:<key>`, `unmanaged`; "" means `<kind>:<key>`): (kind, key) is the state, and only a
    repeat of the state the subject's last delivered alert reported is collapsed (RateLimit).
    `stream` is the JSONL stream it is written to (`risk` or `errors`), `fields` extra facts for
    the log line."""

    kind: str
    severity: Severity
    title: str
    body: str
    key: str = ""
    stream: Literal["risk", "errors"] = "risk"
    fields: dict[str, Any] = field(default_factory=dict)
    subject: str = ""

    @property
    def about(self) -> str:
        """The subject whose state this alert reports (`subject`, else `<kind>:<key>`)."""
        return self.subject or f"{self.kind}:{self.key}"


class AlertRules:
    """Pure rules: bus messages (`on_message`) and observe's state (`check`) in, alerts out.

    Durations are seconds, counted from when `check` first saw the condition; each is an alert
    once it has lasted that long, and its end another:
    `feed_stale_after_s`: a feed trading needs stale or down;
    `service_down_after_s`: a service /health says is not alive (supervisord does not run it,
    or its heartbeat is stale) that supervisord knows or that was heard from;
    `unmanaged_after_s`: /health's `unmanaged` (a position open while strategy or execution is
    not alive). The verdicts are services/observe/health.py's, not a copy of its rules.
    Raises ValueError when a duration is not > 0."""

    def __init__(
        self,
        feed_stale_after_s: float = 30.0,
        service_down_after_s: float = SERVICE_DOWN_AFTER_S,
        unmanaged_after_s: float = UNMANAGED_AFTER_S,
    ) -> None:
        for name, v in (
            ("feed_stale_after_s", feed_stale_after_s),
            ("service_down_after_s", service_down_after_s),
            ("unmanaged_after_s", unmanaged_after_s),
        ):
            if v <= 0:
                raise ValueError(f"{name} must be > 0, got {v}")
        self.feed_stale_after_ns = int(feed_stale_after_s * NS)
        self.service_down_after_ns = int(service_down_after_s * NS)
        self.unmanaged_after_ns = int(unmanaged_after_s * NS)
        self.down_since: dict[str, int] = {}
        self.down_alerted: set[str] = set()
        self.unmanaged_since: int | None = None
        self.unmanaged_alerted = False
        self.risk: RiskState | None = None
        self.pids: dict[str, int] = {}
        self.exec_counts: dict[str, int] | None = None
        self.stale_since: dict[str, int] = {}
        self.stale_alerted: set[str] = set()

    def on_message(self, msg: Msg, now_ns: int) -> list[Alert]:
        if isinstance(msg, RiskState):
            return self._on_risk(msg)
        if isinstance(msg, Heartbeat):
            return self._on_heartbeat(msg)
        if isinstance(msg, PositionRedeemed):
            return self._on_redemption(msg)
        return []

    def _on_redemption(self, msg: PositionRedeemed) -> list[Alert]:
        """exec.redemption: `failed` is an alert; `awaiting` with a reason (a send failed, it is
        retried) a warning; the pUSD of the win stays "awaiting redemption" meanwhile."""
        if msg.state not in ("failed", "awaiting") or (msg.state == "awaiting" and not msg.detail):
            return []
        failed = msg.state == "failed"
        return [
            Alert(
                "redemption_failed" if failed else "redemption_retrying",
                "critical" if failed else "warning",
                f"redemption {msg.state}: {msg.slug or msg.condition_id}",
                f"{msg.cash_expected:.2f} USD expected for {msg.shares:g} shares"
                + (f"; {msg.detail}" if msg.detail else ""),
                key=f"{msg.condition_id}:{msg.state}",
                stream="errors",
                fields={"condition_id": msg.condition_id, "state": msg.state, "tx": msg.tx_hash},
            )
        ]

    @staticmethod
    def _market_reasons(risk: RiskState | None) -> dict[str, list[str]]:
        """Each halted market's own halt reasons (RiskState.markets, issue 17)."""
        out: dict[str, list[str]] = {}
        for key, m in (risk.markets if risk is not None else {}).items():
            if not m.get("halted"):
                continue
            listed = m.get("reasons")
            if isinstance(listed, list) and listed:
                out[key] = [str(r) for r in listed]
            else:
                out[key] = [str(m.get("reason") or "halted")]
        return out

    def _market_halts(self, prev: RiskState | None, msg: RiskState, book: str) -> list[Alert]:
        """One market halted (each new reason) or resumed while the others may trade on."""
        before, now = self._market_reasons(prev), self._market_reasons(msg)
        out: list[Alert] = []
        for key, reasons in now.items():
            for reason in reasons:
                if reason in before.get(key, ()):
                    continue
                m = msg.markets[key]
                out.append(
                    Alert(
                        "market_halt",
                        "warning",
                        f"{key} halted: {reason}{book}",
                        f"new entries in {key} blocked ({', '.join(reasons)}); its P&L today "
                        f"{float(m.get('daily_pnl') or 0.0):+.2f} USD, "
                        f"{int(m.get('trades_today') or 0)} trades; the other markets trade on",
                        key=f"{key}:{reason}",
                        fields={"market": key, "reasons": reasons},
                        subject=f"market:{key}",
                    )
                )
        for key in before:
            if key not in now:
                out.append(
                    Alert(
                        "market_halt_cleared",
                        "info",
                        f"{key} resumed{book}",
                        f"no halt of {key} in force any more (was: {', '.join(before[key])})",
                        key=key,
                        fields={"market": key},
                        subject=f"market:{key}",
                    )
                )
        return out

    def _on_risk(self, msg: RiskState) -> list[Alert]:
        prev, self.risk = self.risk, msg
        out: list[Alert] = []
        book = f" ({msg.venue} {msg.mode})" if msg.venue else ""
        before = set(prev.reasons) if prev is not None else set()
        for reason in msg.reasons:
            if reason in before:
                continue
            estop = reason == "emergency_stop"
            out.append(
                Alert(
                    "emergency_stop" if estop else "halt",
                    "critical",
                    ("EMERGENCY STOP set" if estop else f"trading halted: {reason}") + book,
                    f"new entries blocked ({', '.join(msg.reasons)}); day {msg.day} P&L "
                    f"{msg.daily_pnl:+.2f} USD, {msg.trades_today} trades, loss streak "
                    f"{msg.loss_streak}, capital at risk {msg.capital_at_risk:.2f} USD",
                    key=reason,
                    fields={"reasons": list(msg.reasons), "daily_pnl": msg.daily_pnl},
                    subject="halt",
                )
            )
        out += self._market_halts(prev, msg, book)
        if prev is not None and prev.halted and not msg.halted:
            out.append(
                Alert(
                    "halt_cleared",
                    "info",
                    f"trading resumed{book}",
                    f"no halt in force any more (was: {', '.join(prev.reasons)})",
                    subject="halt",
                )
            )
        if prev is not None and prev.day and msg.day and prev.day != msg.day:
            win = f"{prev.wins_today}/{prev.trades_today}" if prev.trades_today else "0/0"
            out.append(
                Alert(
                    "daily_pnl",
                    "info",
                    f"P&L {prev.day}{book}: {prev.daily_pnl:+.2f} USD",
                    f"day {prev.day}: realised P&L {prev.daily_pnl:+.2f} USD net of fees, "
                    f"{prev.trades_today} trades, {win} won, loss streak {prev.loss_streak}",
                    key=prev.day,
                    fields={
                        "day": prev.day,
                        "daily_pnl": prev.daily_pnl,
                        "trades": prev.trades_today,
                        "wins": prev.wins_today,
                    },
                )
            )
        return out

    def _on_heartbeat(self, msg: Heartbeat) -> list[Alert]:
        out: list[Alert] = []
        prev_pid = self.pids.get(msg.service)
        self.pids[msg.service] = msg.pid
        # a service reported down gets its "running again" alert from `check` instead
        if prev_pid is not None and prev_pid != msg.pid and msg.service not in self.down_alerted:
            out.append(
                Alert(
                    "service_restart",
                    "warning",
                    f"{msg.service} restarted",
                    f"{msg.service} runs as pid {msg.pid} (was {prev_pid}), state {msg.state}",
                    key=msg.service,
                    fields={"service": msg.service, "pid": msg.pid, "previous_pid": prev_pid},
                    subject=f"service:{msg.service}",
                )
            )
        if msg.service == "execution":
            counts = {k: int(v) for k, v in msg.detail.items() if k in EXECUTION_COUNTERS}
            venue = msg.detail.get("venue")
            if isinstance(venue, dict):  # the live adapter counts its own (redemptions, ...)
                for k, v in venue.items():
                    if k in EXECUTION_COUNTERS and isinstance(v, int | float):
                        counts[k] = counts.get(k, 0) + int(v)
            # a restarted execution counts from 0 again: compare within one process only
            before = self.exec_counts if prev_pid in (None, msg.pid) else {}
            if before is not None:
                for k, n in counts.items():
                    if n > before.get(k, 0):
                        kind, severity, title = EXECUTION_COUNTERS[k]
                        out.append(
                            Alert(
                                kind,
                                severity,
                                title,
                                f"execution counts {n} ({n - before.get(k, 0)} new); see "
                                "execution.jsonl and the ledger for the client order ids",
                                key=kind,
                                stream="errors",
                                fields={"counter": k, "count": n},
                            )
                        )
            self.exec_counts = counts
        return out

    def check(self, core: ObserveCore, now_ns: int) -> list[Alert]:
        """From observe's /health verdicts: feeds trading needs stale or down, services down,
        trading unmanaged, each past its bound (one alert each), and their ends."""
        from services.observe.health import feeds_doc, health

        feeds = feeds_doc(core, now_ns)
        doc = health(core, now_ns, feeds)
        return (
            self._check_feeds(feeds, now_ns)
            + self._check_services(doc["services"], now_ns)
            + self._check_unmanaged(doc["unmanaged"], bool(core.open_positions()), now_ns)
        )

    def _check_services(self, services: dict[str, dict[str, Any]], now_ns: int) -> list[Alert]:
        """A service not alive for `service_down_after_s` (the per-service document of
        health.services_doc: `alive`, `reason`, `supervisor_state`, `pid`), and its return. One
        supervisord does not know and observe never heard from is not counted (observe run
        alone, or a tree without that program)."""
        out: list[Alert] = []
        for name, s in services.items():
            if name == "observe":
                continue
            if s["alive"]:
                since = self.down_since.pop(name, None)
                if name in self.down_alerted:
                    self.down_alerted.discard(name)
                    down_s = f" after {(now_ns - since) / NS:.0f} s down" if since else ""
                    out.append(
                        Alert(
                            "service_up",
                            "info",
                            f"{name} running again",
                            f"{name} is alive again (pid {s.get('pid')}){down_s}",
                            key=name,
                            fields={"service": name, "pid": s.get("pid")},
                            subject=f"service:{name}",
                        )
                    )
                continue
            if s["supervisor_state"] is None and s.get("pid") is None:
                continue
            since = self.down_since.setdefault(name, now_ns)
            if now_ns - since >= self.service_down_after_ns and name not in self.down_alerted:
                self.down_alerted.add(name)
                state = s["supervisor_state"] or s["state"]
                out.append(
                    Alert(
                        "service_down",
                        "critical",
                        f"{name} DOWN for {(now_ns - since) / NS:.0f} s",
                        f"{name} {state}: {s['reason']}; see `polyedge status` and "
                        f"logs/{name}.err.log",
                        key=name,
                        stream="errors",
                        fields={"service": name, "state": state, "reason": s["reason"]},
                        subject=f"service:{name}",
                    )
                )
        return out

    def _check_unmanaged(self, unmanaged: str | None, held: bool, now_ns: int) -> list[Alert]:
        """/health's `unmanaged` sentence present for `unmanaged_after_s`, and its end (`held`:
        whether any position is still open, to say why it ended)."""
        if not unmanaged:
            self.unmanaged_since = None
            if not self.unmanaged_alerted:
                return []
            self.unmanaged_alerted = False
            why = "strategy and execution are alive again" if held else "no position is open"
            return [
                Alert(
                    "trading_managed",
                    "info",
                    "trading managed again",
                    f"{why}: exits are managed again",
                    subject="unmanaged",
                )
            ]
        if self.unmanaged_since is None:
            self.unmanaged_since = now_ns
        if self.unmanaged_alerted or now_ns - self.unmanaged_since < self.unmanaged_after_ns:
            return []
        self.unmanaged_alerted = True
        return [
            Alert(
                "trading_unmanaged",
                "critical",
                "TRADING UNMANAGED",
                f"{unmanaged} (for {(now_ns - self.unmanaged_since) / NS:.0f} s); restart the "
                "service or close the position by hand",
                fields={"unmanaged": unmanaged},
                subject="unmanaged",
            )
        ]

    def _check_feeds(self, feeds: dict[str, dict[str, Any]], now_ns: int) -> list[Alert]:
        """Feeds trading needs that have been stale or down for `feed_stale_after_s` (one
        alert each), and their recovery."""
        out: list[Alert] = []
        for feed, doc in feeds.items():
            bad = bool(doc.get("stale")) and bool(doc.get("needed", True))
            if not bad:
                self.stale_since.pop(feed, None)
                if feed in self.stale_alerted:
                    self.stale_alerted.discard(feed)
                    out.append(
                        Alert(
                            "feed_recovered",
                            "info",
                            f"feed {feed} back",
                            "",
                            key=feed,
                            subject=f"feed:{feed}",
                        )
                    )
                continue
            since = self.stale_since.setdefault(feed, now_ns)
            if now_ns - since >= self.feed_stale_after_ns and feed not in self.stale_alerted:
                self.stale_alerted.add(feed)
                out.append(
                    Alert(
                        "feed_stale",
                        "critical",
                        f"feed {feed} stale for {(now_ns - since) / NS:.0f} s",
                        f"{doc.get('reason') or 'stale'}; entries stay blocked while it is",
                        key=feed,
                        stream="errors",
                        fields={"feed": feed, "age_ms": doc.get("age_ms")},
                        subject=f"feed:{feed}",
                    )
                )
        return out


class RateLimit:
    """A token bucket (`burst` at once, `refill_per_s` after) and no repeat of the same state
    within `repeat_after_s`. Times are monotonic seconds.

    De-duplication is per subject (`Alert.about`): an alert is a repeat only when the last alert
    delivered about its subject reported the same state (kind and key) less than
    `repeat_after_s` ago. A change of state is never a repeat, so stop -> clear -> stop within
    the window delivers all three and the last message is the state in force (new-user test:
    per-kind suppression once left "trading resumed" as the last message while stopped)."""

    def __init__(
        self,
        burst: int = BURST,
        refill_per_s: float = REFILL_PER_S,
        repeat_after_s: float = REPEAT_AFTER_S,
    ) -> None:
        self.burst, self.refill_per_s, self.repeat_after_s = burst, refill_per_s, repeat_after_s
        self.tokens = float(burst)
        self.t: float | None = None
        self.last: dict[str, tuple[tuple[str, str], float]] = {}  # subject -> (state, t)

    def allow(self, alert: Alert, t: float | None = None) -> str:
        """ "" when it may go, else why not (`repeat`, `rate`)."""
        t = time.monotonic() if t is None else t
        if self.t is not None:
            self.tokens = min(self.burst, self.tokens + (t - self.t) * self.refill_per_s)
        self.t = t
        if self.is_repeat(alert, t):
            return "repeat"
        if self.tokens < 1:
            return "rate"
        self.tokens -= 1
        self.last[alert.about] = ((alert.kind, alert.key), t)
        return ""

    def is_repeat(self, alert: Alert, t: float) -> bool:
        """Whether the last alert delivered about `alert`'s subject reported the same state
        less than `repeat_after_s` seconds (monotonic `t`) ago."""
        last = self.last.get(alert.about)
        return (
            last is not None
            and last[0] == (alert.kind, alert.key)
            and t - last[1] < self.repeat_after_s
        )


class AlertSender:
    """Sends alerts through apprise on its own daemon thread.

    `urls`: apprise URLs (`json://host:port/path`, `tgram://token/chat`, `mailto://...`, ...);
    raises ValueError naming the scheme of one apprise does not understand (never the whole
    URL: it usually holds a token). `submit` never blocks: a full queue drops the alert and
    returns False. Delivery outcomes are kept in `results` ((alert, ok, error) tuples) for the
    owner to log from its own thread."""

    def __init__(self, urls: list[str], queue_size: int = QUEUE_SIZE) -> None:
        import apprise  # imported here: only observe with ALERT_URLS set pays for it

        self._apprise_mod = apprise
        self.apprise = apprise.Apprise()
        for url in urls:
            if not self.apprise.add(url):
                scheme = url.split("://", 1)[0] if "://" in url else "(no scheme)"
                raise ValueError(f"ALERT_URLS: apprise cannot use a {scheme}:// URL")
        self.queue: queue.Queue[Alert | None] = queue.Queue(maxsize=queue_size)
        self.results: deque[tuple[Alert, bool, str]] = deque(maxlen=1024)
        self.sent = self.failed = self.dropped = 0
        self.thread = threading.Thread(target=self._run, name="alert-sender", daemon=True)
        self.thread.start()

    def submit(self, alert: Alert) -> bool:
        try:
            self.queue.put_nowait(alert)
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def _run(self) -> None:
        types = {
            "info": self._apprise_mod.NotifyType.INFO,
            "warning": self._apprise_mod.NotifyType.WARNING,
            "critical": self._apprise_mod.NotifyType.FAILURE,
        }
        while True:
            alert = self.queue.get()
            if alert is None:
                return
            try:
                ok = bool(
                    self.apprise.notify(
                        body=alert.body or alert.title,
                        title=f"polyedge: {alert.title}",
                        notify_type=types[alert.severity],
                    )
                )
                err = "" if ok else "apprise reported a failed delivery"
            except Exception as e:  # noqa: BLE001 - a notifier bug must not kill the thread
                ok, err = False, f"{type(e).__name__}: {e}"
            if ok:
                self.sent += 1
            else:
                self.failed += 1
            self.results.append((alert, ok, err))

    def close(self, timeout_s: float = 2.0) -> None:
        """Let queued alerts go for up to `timeout_s`, then stop the thread."""
        try:
            self.queue.put(None, timeout=timeout_s)
        except queue.Full:
            return
        self.thread.join(timeout_s)


class Alerts:
    """Rules, rate limit, the JSONL record and the sender together, driven from observe's
    loop: `on_message` for every bus message, `tick` about once a second. `write(stream, event,
    level, **fields)` is the runner's JSONL writer (called on the caller's thread only).

    An alert the rate limit holds back is not lost: the latest one of each subject waits in
    `deferred` (a newer alert about the same subject replaces it) and `tick` sends it once the
    bucket has a token, logged as an `alert_delivery` line; so the last message about a subject
    is always its latest state."""

    def __init__(
        self,
        rules: AlertRules,
        sender: AlertSender | None,
        write: Callable[..., None],
        limit: RateLimit | None = None,
    ) -> None:
        self.rules, self.sender, self.write = rules, sender, write
        self.limit = limit or RateLimit()
        self.raised = self.suppressed = 0
        self.deferred: dict[str, Alert] = {}  # subject -> its latest alert the rate held back

    def on_message(self, msg: Msg, now_ns: int) -> None:
        if isinstance(msg, RiskState | Heartbeat | PositionRedeemed):
            for a in self.rules.on_message(msg, now_ns):
                self.raise_(a)

    def tick(self, core: ObserveCore, now_ns: int) -> None:
        for a in self.rules.check(core, now_ns):
            self.raise_(a)
        self._send_deferred()
        if self.sender is not None:
            while self.sender.results:
                alert, ok, err = self.sender.results.popleft()
                if not ok:
                    self.write(
                        "errors", "alert_delivery_failed", "ERROR", kind=alert.kind, error=err
                    )

    def _send_deferred(self) -> None:
        """Send the alerts the rate held back, oldest subject first, while tokens last."""
        for about, alert in list(self.deferred.items()):
            why = self.limit.allow(alert)
            if why == "rate":
                return
            del self.deferred[about]
            if why:  # the subject's last delivered alert already says this state
                delivery = f"suppressed_{why}"
                self.suppressed += 1
            else:
                sent = self.sender is not None and self.sender.submit(alert)
                delivery = "queued" if sent else "dropped_queue_full"
            self.write(
                alert.stream,
                "alert_delivery",
                "INFO",
                kind=alert.kind,
                key=alert.key,
                title=alert.title,
                delivery=delivery,
                deferred=True,
            )

    def raise_(self, alert: Alert) -> None:
        self.raised += 1
        # a newer state of the subject replaces one still held back by the rate limit
        self.deferred.pop(alert.about, None)
        why = self.limit.allow(alert)
        if self.sender is None:
            delivery = "not_configured"
        elif why == "rate" and len(self.deferred) < QUEUE_SIZE:
            self.deferred[alert.about] = alert
            delivery = "deferred_rate"
        elif why:
            delivery = f"suppressed_{why}"
            self.suppressed += 1
        else:
            delivery = "queued" if self.sender.submit(alert) else "dropped_queue_full"
        level = {"info": "INFO", "warning": "WARNING", "critical": "ERROR"}[alert.severity]
        self.write(
            alert.stream,
            "alert",
            level,
            kind=alert.kind,
            severity=alert.severity,
            title=alert.title,
            body=alert.body,
            key=alert.key,
            delivery=delivery,
            **alert.fields,
        )

    def metrics(self) -> dict[str, float]:
        s = self.sender
        return {
            "alerts_raised": self.raised,
            "alerts_suppressed": self.suppressed,
            "alerts_sent": s.sent if s else 0,
            "alerts_failed": s.failed if s else 0,
            "alerts_dropped": s.dropped if s else 0,
        }
