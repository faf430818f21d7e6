"""What every service runner shares: settings, the one-instance lock, the JSONL log, a publisher
with heartbeats, signal handling, and a blocking poll loop that drains every waiting message on
each wake-up (STYLE rule 11). Cores stay transport-free; runners are thin over this."""

from __future__ import annotations

import fcntl
import os
import signal
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn

import zmq

from common.bus import BusError, Publisher, _Receiver
from common.clock import mono_ns, now_ns
from common.config import ConfigError, Settings, load_settings
from common.log import JsonlLog
from common.schema import Envelope, Heartbeat, Msg, Probe

HEARTBEAT_INTERVAL_NS = 1_000_000_000
EXIT_CONFIG = 2
EXIT_LOCKED = 3
EXIT_INTERNAL = 70

Handler = Callable[[str, Envelope], None]


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


class ServiceRunner:
    """Boilerplate of a service process. Subclasses wire sockets and call `loop`."""

    def __init__(self, name: str, log_stream: str, publish: bool = True) -> None:
        self.name = name
        try:
            self.settings: Settings = load_settings()
        except ConfigError as e:
            fail(name, str(e), EXIT_CONFIG)
        self._lock_fd = acquire_lock(self.settings.run_dir, name)
        self.log = JsonlLog(self.settings.log_dir, name, self.settings.log_level)
        self.stream = log_stream
        self.started_ns = now_ns()
        self.pub = Publisher(self.settings.bus_endpoint(name)) if publish else None
        self.receivers: list[_Receiver] = []
        self.stopping = False
        self._next_hb = 0
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.stopping = True

    def state(self) -> tuple[str, dict[str, Any]]:
        """(state, detail) for the heartbeat; subclasses add their core's status."""
        return "running", {}

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

    def publish_all(self, out: Iterable[tuple[str, Msg]]) -> None:
        assert self.pub is not None
        for topic, msg in out:
            self.pub.send(topic, msg)

    def loop(
        self,
        handlers: dict[_Receiver, Handler],
        on_timer: Callable[[int], None] | None = None,
        timer_ms: int = 100,
    ) -> int:
        """Poll, drain every ready socket, run the timer; until SIGTERM. Returns the exit code."""
        self.receivers = list(handlers)
        poller = zmq.Poller()
        for r in handlers:
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
                for r, handle in handlers.items():
                    if r.sock in ready:
                        for topic, env in r.drain():
                            handle(topic, env)
                t = mono_ns()
                if on_timer is not None and t >= next_timer:
                    on_timer(now_ns())
                    next_timer = t + timer_ms * 1_000_000
                if t >= self._next_hb:
                    self.heartbeat()
                    self._next_hb = t + HEARTBEAT_INTERVAL_NS
        except BusError as e:
            self.log.error("bus_internal_fault", error=str(e))
            return EXIT_INTERNAL
        finally:
            self.log.write(self.stream, "service_stopping", pid=os.getpid())
            for r in handlers:
                r.close()
            if self.pub is not None:
                self.pub.close()
        return 0


def forward_probe(probe: Probe, hop: str) -> Probe:
    """The probe as it leaves this hop (hop name and wall time appended)."""
    return Probe(
        probe_id=probe.probe_id,
        ts_origin_ns=probe.ts_origin_ns,
        hops=[*probe.hops, hop],
        hop_ns=[*probe.hop_ns, now_ns()],
    )
