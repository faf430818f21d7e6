"""What every service runner shares: settings, the one-instance lock, the JSONL log, a publisher
with heartbeats, signal handling, and the one loop that feeds a core (common/core.py) its bus
messages and timer: blocking poll for the hot path, an asyncio variant for services that also hold
sockets or HTTP; both drain every waiting message on each wake-up (STYLE rule 11). Cores stay
transport-free; runners are thin over this."""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NoReturn

import zmq

from common.bus import BusError, Publisher, _Receiver
from common.clock import mono_ns, now_ns
from common.config import ConfigError, Settings, load_settings, under_supervisord
from common.core import Core, Emitted, LogRecord, Timer
from common.log import JsonlLog
from common.schema import Envelope, Heartbeat, Msg

HEARTBEAT_INTERVAL_NS = 1_000_000_000
EXIT_CONFIG = 2
EXIT_LOCKED = 3
EXIT_INTERNAL = 70


def fail(service: str, message: str, code: int) -> NoReturn:
    sys.stderr.write(f"polyedge {service}: {message}\n")
    sys.stderr.flush()
    raise SystemExit(code)


def acquire_lock(run_dir: Path, name: str) -> int:
    """Hold `run_dir/<name>.lock` for the process's life; a second instance fails clearly."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / f"{name}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        fail(
            name,
            f"another {name} (pid {other}) is already running on data directory "
            f"{run_dir.parent.resolve()} (lock {path}); stop it first",
            EXIT_LOCKED,
        )
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def lock_holders(run_dir: Path) -> list[tuple[str, int]]:
    """The services running on a data directory, by the locks they hold (`acquire_lock`):
    [(name, pid)] sorted by name, for every `run_dir/<name>.lock` some process holds. A lock
    nobody holds (its process gone) is not listed, whatever pid it still names; pid 0 when a
    held lock names none."""
    out: list[tuple[str, int]] = []
    for path in sorted(run_dir.glob("*.lock")):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                raw = os.pread(fd, 32, 0).decode(errors="replace").strip()
                out.append((path.stem, int(raw) if raw.isdigit() else 0))
        finally:
            os.close(fd)
    return out


def service_settings(service: str) -> Settings:
    """A service's settings (`.env`, then the environment), read once at start: unknown keys are
    reported on stderr (supervisord keeps it in `logs/<program>.err.log`) naming the closest
    known one; a bad value exits EXIT_CONFIG with every bad variable named."""

    def warn(message: str) -> None:
        sys.stderr.write(f"polyedge {service}: warning: {message}\n")
        sys.stderr.flush()

    try:
        return load_settings(warn=warn)
    except ConfigError as e:
        fail(service, str(e), EXIT_CONFIG)


class ParentWatch:
    """Notices that the supervisor a process was started by is gone.

    Under supervisord (which sets SUPERVISOR_ENABLED=1 in its programs' environment) the parent
    pid at start is supervisord's; when supervisord dies without stopping its programs
    (`kill -9`, OOM), the kernel reparents them (to 1, or to the nearest subreaper), so
    `os.getppid()` changes. An orphaned service must stop: nothing restarts it, `supervisorctl`
    no longer sees it, and a new tree's copy would fail on its lock. supervisord cannot do this
    for us: "if supervisord is kill -9ed ... the subprocesses it spawned are still running ...
    adopted by the init system" (Supervisor/supervisor#168 and PR #199, PR_SET_PDEATHSIG never
    merged). Outside supervisord (a test, a shell) it never fires, so `python -m services.X` in a
    terminal is unaffected."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        ppid = os.getppid()
        self.parent: int | None = None
        self.born_orphan = False
        if under_supervisord(environ):
            if _is_supervisord(ppid):
                self.parent = ppid
            elif ppid == 1:
                # a slow start (imports under load) outlived supervisord: already adopted by init
                self.parent, self.born_orphan = ppid, True
            # else: started by something else that inherited supervisord's environment (a
            # test run under supervisord, a shell in a program): not ours to watch

    def orphaned(self) -> bool:
        """True once the parent at start is no longer our parent, or was not a supervisord to
        begin with (supervised processes only)."""
        return self.parent is not None and (self.born_orphan or os.getppid() != self.parent)


def _is_supervisord(pid: int) -> bool:
    """Whether process `pid` runs supervisord (`supervisord` or `python -m supervisor.supervisord`,
    by /proc/<pid>/cmdline); True where /proc cannot tell (not Linux), so nothing stops wrongly."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        # `supervisord ...`, `python /usr/bin/supervisord ...`, `python -m supervisor.supervisord`
        return any(
            a.rsplit(b"/", 1)[-1] == b"supervisord" or a == b"supervisor.supervisord"
            for a in argv[:3]
        )
    except OSError:
        return not os.path.isdir("/proc/self")


class ServiceRunner:
    """A service process around one core: settings, lock, log, publisher, heartbeats, and the
    loop that feeds the core (`serve`, blocking, for the hot path; `serve_async` for services
    that also hold sockets or HTTP). Subclasses set `self.core`, wire their receivers and
    override `send`/`commit`/`on_message` only where their streams differ."""

    core: Core | None = None

    def __init__(self, name: str, log_stream: str, publish: bool = True) -> None:
        self.name = name
        self.settings: Settings = service_settings(name)
        self._lock_fd = acquire_lock(self.settings.run_dir, name)
        self.log = JsonlLog(self.settings.log_dir, name, self.settings.log_level)
        self.stream = log_stream
        self.started_ns = now_ns()
        self.pub = Publisher(self.settings.bus_endpoint(name)) if publish else None
        self.receivers: list[_Receiver] = []
        self.stopping = False
        self._next_hb = 0
        self.parent_watch = ParentWatch()
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.stopping = True

    def state(self) -> tuple[str, dict[str, Any]]:
        """(state, detail) for the heartbeat: the core's `status()` when it has one."""
        status = getattr(self.core, "status", None)
        return "running", (status() if status is not None else {})

    def heartbeat(self) -> None:
        if self.pub is None:
            return
        state, detail = self.state()
        bus: dict[str, int] = {}
        for r in self.receivers:
            for k, v in r.totals().items():
                bus[k] = bus.get(k, 0) + v
        detail = {**detail, "bus": bus}
        self.pub.send(
            f"sys.heartbeat.{self.name}",
            Heartbeat(
                service=self.name,
                state=state,
                pid=os.getpid(),
                started_ns=self.started_ns,
                ts_ns=now_ns(),
                detail=detail,
            ),
        )

    # ------------------------------------------------------------------ the core's output
    def send(self, topic: str, msg: Msg) -> None:
        """Where one emitted message goes: the service's PUB socket (runners with other
        streams, like strategy's orders PUSH, override this)."""
        assert self.pub is not None, f"{self.name} has no publisher"
        self.pub.send(topic, msg)

    def commit(self) -> None:
        """Called after each step, before its messages go out (strategy persists its state
        here, so nothing it announced is forgotten by a crash)."""

    def write_logs(self, logs: Iterable[LogRecord]) -> None:
        """The one way a core's log records reach the JSONL streams."""
        for rec in logs:
            self.log.write(rec.stream, rec.event, rec.level, **rec.fields)

    def deliver(self, emitted: Emitted) -> None:
        """Write what a step logged, commit, then send what it emitted."""
        if emitted.logs:
            self.write_logs(emitted.logs)
        self.commit()
        for topic, msg in emitted:
            self.send(topic, msg)

    def step(self, msg: Any, now: int) -> None:
        """Run one message through the core at time `now` (ns) and deliver the result."""
        assert self.core is not None
        self.deliver(self.core.step(msg, now))

    def on_message(self, topic: str, env: Envelope) -> None:
        """One bus message: to the core, stamped with its receive time."""
        self.step(env.msg, now_ns())

    def on_timer(self, now: int) -> None:
        if self.core is not None:
            self.step(Timer(now), now)

    # ------------------------------------------------------------------ the loops
    def serve(self, receivers: list[_Receiver], timer_ms: int = 100) -> int:
        """The blocking loop of the hot path: poll, drain every ready socket into the core, run
        the timer every `timer_ms`, heartbeat every second; until SIGTERM/SIGINT. Returns the
        exit code (EXIT_INTERNAL on a fault on our own bus)."""
        self.receivers = list(receivers)
        poller = zmq.Poller()
        for r in receivers:
            poller.register(r.sock, zmq.POLLIN)
        self.log.write(self.stream, "service_started", pid=os.getpid(), venue=self.settings.venue)
        next_timer = 0
        try:
            while not self.stopping:
                try:
                    ready = dict(poller.poll(timer_ms))
                except zmq.ZMQError as e:
                    if e.errno == 4:  # EINTR from our own signal handler
                        continue
                    raise
                for r in receivers:
                    if r.sock in ready:
                        for topic, env in r.drain():
                            self.on_message(topic, env)
                t = mono_ns()
                if t >= next_timer:
                    self.on_timer(now_ns())
                    next_timer = t + timer_ms * 1_000_000
                if t >= self._next_hb:
                    if self._orphaned():
                        break
                    self.heartbeat()
                    self._next_hb = t + HEARTBEAT_INTERVAL_NS
        except BusError as e:
            self.log.error("bus_internal_fault", error=str(e))
            return EXIT_INTERNAL
        finally:
            self.log.write(self.stream, "service_stopping", pid=os.getpid())
            self.close(receivers)
        return 0

    async def serve_async(
        self,
        receivers: list[_Receiver],
        tasks: list[asyncio.Task[Any]],
        timer_ms: int | None = None,
        **started: Any,
    ) -> int:
        """The asyncio variant, for services that also hold sockets or HTTP (ingest, observe):
        each receiver's fd is registered with the loop and drained on every wake-up (STYLE rule
        11), the timer runs every `timer_ms` (None: no timer), heartbeats every second. It stops
        on SIGTERM/SIGINT or when any of `tasks` ends; a task that raised, or a fault on our own
        bus, gives EXIT_INTERNAL. `started` goes into the service_started log line."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        fault: list[str] = []
        self.receivers = list(receivers)

        def on_signal() -> None:
            self.stopping = True
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        if self.stopping:
            # a SIGTERM between __init__ (whose handler only sets `stopping`) and here: stop now
            # (supervisorctl stop of a process just spawned was ignored for stopwaitsecs, then
            # SIGKILLed; seen when supervisord's autorestart raced a `stop` after a kill -9)
            stop.set()

        def readable(r: _Receiver) -> None:
            try:
                for topic, env in r.drain():
                    self.on_message(topic, env)
                if r.sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                    loop.call_soon(readable, r)  # drain hit its limit; the fd will not fire again
            except BusError as e:
                fault.append(f"bus: {e}")
                stop.set()

        for r in receivers:
            loop.add_reader(r.fileno(), readable, r)
            loop.call_soon(readable, r)  # the fd is edge-triggered: drain what came before
        for t in tasks:
            t.add_done_callback(lambda _t: stop.set())
        self.log.write(self.stream, "service_started", pid=os.getpid(), **started)
        code = 0
        try:
            period = (timer_ms or 1000) / 1000
            next_hb = 0
            while not stop.is_set():
                t = mono_ns()
                if timer_ms is not None:
                    self.on_timer(now_ns())
                if t >= next_hb:
                    if self._orphaned():
                        break
                    self.heartbeat()
                    next_hb = t + HEARTBEAT_INTERVAL_NS
                try:
                    await asyncio.wait_for(stop.wait(), period)
                except TimeoutError:
                    pass
        except BusError as e:
            fault.append(f"bus: {e}")
        finally:
            for r in receivers:
                loop.remove_reader(r.fileno())
            for t in tasks:
                if t.done() and not t.cancelled() and t.exception() is not None:
                    fault.append(f"task {t.get_name()} crashed: {t.exception()!r}")
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if fault:
                self.log.error("internal_fault", error=fault[0])
                code = EXIT_INTERNAL
            self.log.write(self.stream, "service_stopping", pid=os.getpid(), code=code)
            self.close(receivers)
        return code

    def _orphaned(self) -> bool:
        """Checked every heartbeat (1 s): the supervisor is gone, log it and stop cleanly."""
        if not self.parent_watch.orphaned():
            return False
        self.log.error(
            "supervisor_gone",
            parent_was=self.parent_watch.parent,
            parent_now=os.getppid(),
            action="stopping: an orphaned service is restarted by no one and blocks a new tree",
        )
        return True

    def close(self, receivers: list[_Receiver]) -> None:
        for r in receivers:
            r.close()
        if self.pub is not None:
            self.pub.close()
