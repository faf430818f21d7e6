"""Reading the supervisord tree from outside: program states, a stopped program's last words, and
who the running supervisord is, over supervisord's own XML-RPC socket (the one `supervisorctl`
uses). Observe uses it so /health knows a program is in BACKOFF; `polyedge up|down|status` use it
to name a running tree and to wait out a shutdown.

Supervisor behaviours relied on (supervisor 4.x, `supervisor/rpcinterface.py`, `process.py`):
- every program started by supervisord gets `SUPERVISOR_SERVER_URL` in its environment;
- while supervisord shuts down (after `supervisorctl shutdown`, until its programs have exited),
  every RPC except a few answers Fault 6 `SHUTDOWN_STATE` (Supervisor/supervisor issue #48): that
  is the "XML-RPC fault" `supervisorctl status` prints in that window.
"""

from __future__ import annotations

import http.client
import os
import socket
import time
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUNNING = "RUNNING"
SHUTDOWN_STATE_FAULT = 6  # supervisor.xmlrpc.Faults.SHUTDOWN_STATE
BAD_NAME_FAULT = 10  # supervisor.xmlrpc.Faults.BAD_NAME
DEFAULT_TIMEOUT_S = 2.0


class TreeNotRunning(Exception):
    """No supervisord answers on the socket (no socket file, or nobody listening)."""


class TreeShuttingDown(Exception):
    """supervisord answers but is shutting down: it is stopping its programs and refuses queries
    (Fault 6 SHUTDOWN_STATE) until they have exited and it exits itself."""


class SupervisorError(Exception):
    """supervisord answered with an unexpected fault or garbage."""


@dataclass(frozen=True, slots=True)
class ProgramState:
    """One program as supervisord sees it (`supervisor.getAllProcessInfo`).

    `state` is supervisord's state name (STOPPED, STARTING, RUNNING, BACKOFF, STOPPING, EXITED,
    FATAL, UNKNOWN); `description` its one-line summary ("pid 12, uptime 0:01:02", "Exited too
    quickly (process log may have details)"); `pid` 0 when not running; `since_s` unix seconds of
    the last state change; `exit_status` of the last exit; `spawn_error` why a spawn failed."""

    name: str
    state: str
    pid: int
    description: str
    since_s: float
    exit_status: int
    spawn_error: str
    started_s: float = 0.0  # unix seconds of the last start (0: never started)
    stderr_path: str = ""  # the program's stderr log file ("" when supervisord has none)

    @property
    def running(self) -> bool:
        return self.state == RUNNING


@dataclass(frozen=True, slots=True)
class TreeIdentity:
    """The supervisord that answers on a socket: pid, identifier, state and command line."""

    pid: int
    identifier: str
    state: str
    command: str  # from /proc/<pid>/cmdline, "" when unreadable
    cwd: str  # from /proc/<pid>/cwd, "" when unreadable

    def describe(self) -> str:
        where = f" in {self.cwd}" if self.cwd else ""
        cmd = f" (`{self.command}`{where})" if self.command else where
        return f"supervisord pid {self.pid} [{self.identifier}]{cmd}"


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class _UnixTransport(xmlrpc.client.Transport):
    """XML-RPC over a unix socket with a timeout (supervisor's own transport has none)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__()
        self.path = path
        self.timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        return _UnixHTTPConnection(self.path, self.timeout)


def socket_path(server_url: str) -> Path:
    """The socket file of a `unix://` server URL; ValueError for anything else."""
    if not server_url.startswith("unix://"):
        raise ValueError(f"expected a unix:// supervisord URL, got {server_url!r}")
    return Path(server_url.removeprefix("unix://"))


class SupervisorClient:
    """Queries one supervisord over its unix socket. Each call opens a fresh connection, so a
    supervisord that restarted in between is no problem; every call is bounded by `timeout_s`.

    Raises TreeNotRunning, TreeShuttingDown or SupervisorError (never a bare socket error)."""

    def __init__(self, server_url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.server_url = server_url
        self.path = socket_path(server_url)
        self.timeout_s = timeout_s

    def _call(self, method: str, *args: Any) -> Any:
        proxy = xmlrpc.client.ServerProxy(
            "http://localhost/RPC2", transport=_UnixTransport(str(self.path), self.timeout_s)
        )
        try:
            return getattr(proxy, method)(*args)
        except xmlrpc.client.Fault as e:
            if e.faultCode == SHUTDOWN_STATE_FAULT:
                raise TreeShuttingDown(self.server_url) from None
            raise SupervisorError(f"{method}: fault {e.faultCode} {e.faultString}") from None
        except (FileNotFoundError, ConnectionRefusedError):
            raise TreeNotRunning(self.server_url) from None
        except (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError) as e:
            raise SupervisorError(f"{method}: {e!r}") from None

    def programs(self) -> dict[str, ProgramState]:
        """Every program's state, by name."""
        out: dict[str, ProgramState] = {}
        for info in self._call("supervisor.getAllProcessInfo"):
            out[info["name"]] = ProgramState(
                name=info["name"],
                state=info["statename"],
                pid=int(info.get("pid") or 0),
                description=str(info.get("description", "")),
                since_s=float(info.get("start") or 0)
                if info["statename"] == RUNNING
                else float(info.get("stop") or info.get("start") or 0),
                exit_status=int(info.get("exitstatus") or 0),
                spawn_error=str(info.get("spawnerr") or ""),
                started_s=float(info.get("start") or 0),
                stderr_path=str(info.get("stderr_logfile") or ""),
            )
        return out

    def stderr_tail(self, name: str, nbytes: int = 4000) -> str:
        """The end of a program's stderr log (where a service says why it refused to start)."""
        text, _offset, _overflow = self._call("supervisor.tailProcessStderrLog", name, 0, nbytes)
        return str(text)

    def identity(self) -> TreeIdentity:
        """Who answers on this socket."""
        pid = int(self._call("supervisor.getPID"))
        ident = str(self._call("supervisor.getIdentification"))
        state = str(self._call("supervisor.getState")["statename"])
        command = cwd = ""
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            command = " ".join(p.decode(errors="replace") for p in raw.split(b"\0") if p)
            cwd = str(Path(f"/proc/{pid}/cwd").resolve())
        except OSError:
            pass
        return TreeIdentity(pid=pid, identifier=ident, state=state, command=command, cwd=cwd)

    def shutdown(self) -> None:
        """Ask supervisord to stop every program and exit (returns before they have stopped)."""
        self._call("supervisor.shutdown")

    def wait_gone(self, timeout_s: float, poll_s: float = 0.1) -> bool:
        """Wait until nothing answers on the socket any more; False at the deadline."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                self._call("supervisor.getPID")
            except TreeNotRunning:
                return True
            except (TreeShuttingDown, SupervisorError):
                pass
            time.sleep(poll_s)
        return False


def why_not_running(p: ProgramState, stderr: str) -> str:
    """The stderr line that says why `p` is not running, from its last run only; "" for a
    deliberate stop (STOPPED: supervisord's state is the whole story) and when the stderr log
    was last written before the last start (the line is an old, unrelated run's)."""
    if p.state == "STOPPED":
        return ""
    if p.stderr_path and p.started_s:
        try:
            if os.stat(p.stderr_path).st_mtime < p.started_s - 1.0:  # supervisord: 1 s stamps
                return ""
        except OSError:
            pass
    return last_words(stderr)


def last_words(stderr: str, limit: int = 300) -> str:
    """The last non-empty line a program wrote to stderr, e.g. its `polyedge strategy: invalid
    configuration in ...` message; "" when there is none."""
    for line in reversed(stderr.splitlines()):
        line = line.strip()
        if line:
            return line[:limit]
    return ""
