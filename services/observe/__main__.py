"""Runner for observe: the asyncio runner loop with the API server and the recorder's flusher as
its tasks; SUB to every publisher (drained on fd wake-ups) into the observe core; record to SQLite
and the JSONL streams, serve the API and the dashboard, push the live state to WebSocket clients."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import msgspec
import uvicorn

from common import topics
from common.bus import Subscriber
from common.clock import now_ns, utc_day
from common.config import (
    LOOPBACK_HOSTS,
    ConfigError,
    StrategyConfigFiles,
    alert_url_list,
    config_to_dict,
    supervisor_server_url,
    under_supervisord,
)
from common.db import DatabaseUnavailable, connect
from common.ledger import ledger_fills, ledger_settlements
from common.schema import ControlReply, Envelope, OrderFilled, PositionSettled
from common.service import EXIT_CONFIG, EXIT_INTERNAL, ServiceRunner, fail
from common.supervisor import (
    SupervisorClient,
    SupervisorError,
    TreeNotRunning,
    TreeShuttingDown,
    why_not_running,
)
from common.topics import PUBLISHERS
from services.observe.alerts import AlertRules, Alerts, AlertSender
from services.observe.app import LOCAL_HOSTS, ApiSettings, Control, LiveHub, build_app
from services.observe.recorder import Recorder
from services.observe.state import ObserveCore, Record, Row, Update

FLUSH_INTERVAL_S = 0.5
ALERT_CHECK_S = 0.5  # feed-age alerts and delivery failures are looked at this often
SUPERVISOR_POLL_S = 1.0  # /health sees a program leave RUNNING within about this long
HISTORY_SEED_NS = 15 * 60 * 1_000_000_000  # the charts' span, rebuilt from the recorder at start
RESERVED_LOG_KEYS = ("stream", "event", "level")
DAY_NS = 86_400 * 1_000_000_000


def read_ledger(
    path: str | os.PathLike[str], since_ns: int, venue: str, dry_run: bool
) -> list[OrderFilled | PositionSettled]:
    """Execution's fills and settlements of one book (`venue`, paper when `dry_run`) with a
    time (fill time, resolution time; ns) from `since_ns` on, read from the ledger at `path`
    through a read-only connection of its own (blocking: run it in a thread). Raises
    sqlite3.Error when the database cannot be read."""
    conn = connect(path, readonly=True)
    try:
        fills: list[OrderFilled | PositionSettled] = [
            *ledger_fills(conn, None, since_ns, venue, dry_run)
        ]
        return fills + ledger_settlements(conn, None, venue, dry_run, since_ns=since_ns)
    finally:
        conn.close()


def api_settings(runner: ServiceRunner) -> ApiSettings:
    """The API's settings from `Settings.api` (`API_*`)."""
    a = runner.settings.api
    hosts = list(a.allowed_hosts) or list(LOCAL_HOSTS)
    if a.host not in LOOPBACK_HOSTS and a.host not in ("0.0.0.0", "::") and "*" not in hosts:
        hosts.append(a.host)  # the name the API is bound to is how people reach it
    return ApiSettings(
        token=a.token.reveal() if a.token else None,
        allowed_hosts=hosts,
        cors_origins=list(a.cors_origins),
        max_body_bytes=a.max_body_bytes,
    )


def supervisor_to_watch(run_dir: Path) -> tuple[str, bool]:
    """(server URL, supervised) of the supervisord observe reports on. Under supervisord, the
    URL it gives its programs (`SUPERVISOR_SERVER_URL`: supervisord.conf's socket, which stays
    in the repository's `data/run/` whatever `POLYEDGE_DATA_DIR` says), and supervised from the
    start, so a supervisord observe cannot reach is a /health problem rather than "not
    supervised". Otherwise (observe run by hand) `run_dir/supervisor.sock`, watched only once
    it exists."""
    url = supervisor_server_url()
    if url is not None:
        return url, True
    return f"unix://{run_dir / 'supervisor.sock'}", under_supervisord()


async def watch_supervisor(
    core: ObserveCore, server_url: str, supervised: bool, runner: ServiceRunner
) -> None:
    """Keep `core.supervision` fresh: supervisord's program states every SUPERVISOR_POLL_S, and
    for a program that is not running the last line it wrote to stderr (why it stopped).
    `server_url` and `supervised` are `supervisor_to_watch`'s: when not supervised, the socket
    is asked only once it exists (without it observe is not supervised and health rests on
    heartbeats alone); when supervised, every failure to ask is kept in `error` (a /health
    problem: the programs' states are unknown, not "running")."""
    sup = core.supervision
    sup.supervised = supervised
    try:
        client: SupervisorClient | None = SupervisorClient(server_url)
    except ValueError as e:  # an inet server URL: SupervisorClient speaks unix sockets only
        client = None
        sup.error = f"cannot ask supervisord at {server_url}: {e}"
    seen: dict[str, tuple[str, float]] = {}
    while client is not None:
        if client.path.exists() or sup.supervised:
            sup.supervised = True
            try:
                programs = await asyncio.to_thread(client.programs)
                for p in programs.values():
                    key = (p.state, p.since_s)
                    if seen.get(p.name, key) != key or (p.name not in seen and not p.running):
                        reason = ""
                        if not p.running:
                            tail = await asyncio.to_thread(client.stderr_tail, p.name)
                            reason = why_not_running(p, tail)
                            sup.reasons[p.name] = reason
                        runner.log.write(
                            "risk",
                            "program_state_changed",
                            "INFO"
                            if p.running or (p.state == "EXITED" and not p.exit_status)
                            else "WARNING",
                            of=p.name,
                            to=p.state,
                            description=p.description,
                            last_stderr_line=reason,
                        )
                    seen[p.name] = key
                sup.programs, sup.ts_ns, sup.error = programs, now_ns(), ""
            except TreeShuttingDown:
                sup.error = "supervisord is shutting down"
            except TreeNotRunning:
                sup.error = f"no supervisord answers on {client.path}"
            except SupervisorError as e:
                sup.error = f"SupervisorError on {client.path}: {e}"
        await asyncio.sleep(SUPERVISOR_POLL_S)


def seed(core: ObserveCore, recorder: Recorder, files: StrategyConfigFiles) -> None:
    """Config and today's figures from what observe recorded before, then the config file."""
    last = recorder.last_config(core.book())
    if last is not None:
        core.seed_config(
            last[0],
            last[1],
            "database (last snapshot seen)",
            recorder.recorded_configs(core.book()),
        )
    else:
        try:
            cfg = files.load().config
            core.seed_config(config_to_dict(cfg), 0, "file (strategy not heard yet)")
        except ConfigError as e:
            core.seed_config({}, 0, f"unknown ({e})")
    today = utc_day(now_ns())
    core.seed_today(recorder.trades_of_day(today), today)
    core.seed_history(*recorder.chart_history(now_ns() - HISTORY_SEED_NS))


async def serve(runner: ServiceRunner, api: ApiSettings) -> int:
    s = runner.settings
    core = ObserveCore(
        runner.started_ns,
        os.getpid(),
        dry_run=s.dry_run,
        venue=s.venue,
        real_trading=s.enable_real_trading,
    )
    try:
        recorder = Recorder(s.database_path)
    except DatabaseUnavailable as e:
        fail("observe", str(e), EXIT_CONFIG)
    except Exception as e:  # noqa: BLE001 - a database we cannot open or migrate is fatal
        runner.log.error("recorder_open_failed", error=str(e), path=str(s.database_path))
        return EXIT_INTERNAL
    seed(core, recorder, s.strategy_config_files())
    try:
        urls = alert_url_list(s.alerts.urls)
        sender = AlertSender(urls) if urls else None
    except ValueError as e:
        recorder.close()
        fail("observe", str(e), EXIT_CONFIG)
    alerts = Alerts(AlertRules(s.alerts.feed_stale_s), sender, runner.log.write)
    # books read lazily: their levels are decoded when a view reads the book, not per message
    sub = Subscriber([s.bus_endpoint(p) for p in PUBLISHERS], lazy_books=True)
    control = Control(s.bus_endpoint(topics.CONTROL))
    hub = LiveHub(core)

    def extra_metrics() -> dict[str, float]:
        bus = sub.totals()
        return {
            "bus_received": bus["received"],
            "bus_gaps": bus["gaps"],
            "bus_lost": bus["lost"],
            "publisher_restarts": bus["restarts"],
            "db_rows_written": recorder.written,
            "db_rows_pending": len(recorder.pending),
            "db_write_failures": recorder.failures,
            "live_dropped_frames": sum(sl.dropped for sl in hub.slots),
            "control_ok": control.counts["ok"],
            "control_timeouts": control.counts["timeout"],
            "trade_events_duplicate": core.duplicates,
            "ledger_replays": core.ledger_replays,
            "ledger_replayed_events": core.ledger_replayed,
            **alerts.metrics(),
        }

    server = uvicorn.Server(
        uvicorn.Config(
            build_app(
                core,
                hub=hub,
                control=control,
                recorder=recorder,
                api=api,
                extra_metrics=extra_metrics,
            ),
            host=s.api.host,
            port=s.api.port,
            log_level="warning",
            lifespan="on",
            access_log=False,
            ws_max_size=64 * 1024,
        )
    )

    def record(out: list[Record]) -> None:
        for rec in out:
            if isinstance(rec, Row):
                recorder.add(rec.table, rec.values)
            elif isinstance(rec, Update):
                recorder.update(rec.table, rec.key, rec.values)
            else:
                fields: dict[str, Any] = {
                    (f"msg_{k}" if k in RESERVED_LOG_KEYS else k): v for k, v in rec.fields.items()
                }
                runner.log.write(rec.stream, rec.event, rec.level, **fields)

    replaying: list[asyncio.Task[None]] = []

    async def replay_ledger() -> None:
        """Fold what execution's ledger holds of today and the bus did not bring, as long as
        the core asks (a new execution process, its first seconds: `ObserveCore.handle`); the
        read runs in a thread (the event loop keeps serving), the fold on the loop."""
        while core.ledger_replay_due:
            core.ledger_replay_due = False
            venue, mode = core.book()
            now = now_ns()
            try:
                events = await asyncio.to_thread(
                    read_ledger, s.database_path, now - now % DAY_NS, venue, mode == "paper"
                )
            except Exception as e:  # noqa: BLE001 - an unreadable ledger must not stop observe
                # asked again by the process's next heartbeat in its first seconds
                runner.log.error("ledger_replay_failed", error=f"{type(e).__name__}: {e}")
                return
            record(core.replay_ledger(events, now_ns()))

    def on_message(topic: str, env: Envelope) -> None:
        now = now_ns()
        record(core.handle(topic, env.msg, now))
        alerts.on_message(env.msg, now)
        if isinstance(env.msg, ControlReply):
            control.resolve(env.msg)
        if core.ledger_replay_due and not (replaying and not replaying[0].done()):
            replaying[:] = [asyncio.get_running_loop().create_task(replay_ledger())]

    async def flusher() -> None:
        failing = False
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            try:
                await asyncio.to_thread(recorder.flush)
                if failing:
                    runner.log.write("errors", "recorder_recovered", pending=len(recorder.pending))
                failing = False
            except Exception as e:  # noqa: BLE001 - disk full / locked: keep rows, retry, say so
                if not failing:
                    runner.log.error(
                        "recorder_write_failed", error=str(e), pending=len(recorder.pending)
                    )
                failing = True

    async def alert_checks() -> None:
        while True:
            await asyncio.sleep(ALERT_CHECK_S)
            alerts.tick(core, now_ns())

    runner.on_message = on_message  # type: ignore[method-assign]
    tasks = [
        asyncio.create_task(server.serve(), name="api"),
        asyncio.create_task(flusher(), name="recorder_flush"),
        asyncio.create_task(alert_checks(), name="alert_checks"),
    ]
    # not one of the runner's tasks: it may end (no supervisord) without stopping observe
    watch_task = asyncio.get_running_loop().create_task(
        watch_supervisor(core, *supervisor_to_watch(s.run_dir), runner)
    )
    try:
        code = await runner.serve_async(
            [sub],
            tasks,
            None,
            api=f"http://{s.api.host}:{s.api.port}",
            db_schema_version=recorder.schema_version,
            auth=api.token is not None,
        )
    finally:
        server.should_exit = True
        watch_task.cancel()
        for t in replaying:
            t.cancel()
        try:
            recorder.flush()
        except Exception as e:  # noqa: BLE001
            runner.log.error(
                "recorder_final_flush_failed", error=str(e), lost=len(recorder.pending)
            )
        recorder.close()
        control.close()
        if sender is not None:
            sender.close()
    if code == 0 and not server.started:
        runner.log.error("api_not_started", host=s.api.host, port=s.api.port)
        return 1
    return code


def main() -> int:
    # The API process must never hold the signing key. supervisord hands every program the same
    # environment, so drop it here before anything else can read or echo it.
    os.environ.pop("PRIVATE_KEY", None)
    runner = ServiceRunner("observe", "latency", publish=False)
    runner.settings = msgspec.structs.replace(runner.settings, private_key=None)
    # a non-loopback API_HOST without API_TOKEN is refused by the settings loader (every
    # service, `polyedge settings` and `polyedge up` alike)
    api = api_settings(runner)
    code = asyncio.run(serve(runner, api))
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
