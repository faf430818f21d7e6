"""Run the real process tree (the repository's own supervisord.conf) in an isolated directory,
and wait for observable conditions with deadlines. Used by the tests and by `polyedge bench`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def holds(
    cond: Callable[[], object], seconds: float, interval: float = 0.05, what: str = "condition"
) -> None:
    """Poll `cond` for `seconds` (a window derived from the cadence under test); fail the test the
    first time it is falsy or raises. For what must NOT happen over a period (no order placed
    while halted), and for a client that must keep acting on a cadence (heartbeats)."""
    deadline = time.monotonic() + seconds
    while True:
        if not cond():
            raise AssertionError(f"{what} stopped holding before {seconds}s had passed")
        if time.monotonic() >= deadline:
            return
        time.sleep(interval)


def wait_for(
    cond: Callable[[], T], timeout: float = 10.0, interval: float = 0.05, what: str = "condition"
) -> T:
    """Poll `cond` until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = cond()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - the condition may not be observable yet
            last_exc = e
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what}"
        + (f" (last error: {last_exc!r})" if last_exc else "")
    )


def short_tmpdir() -> Path:
    """ipc:// paths must stay under ~107 bytes, so isolated data dirs live under /tmp."""
    return Path(tempfile.mkdtemp(prefix="pe-", dir="/tmp"))


class Supervised:
    """The repository's supervisord.conf, pointed at an isolated data/log dir, run for real."""

    def __init__(self, env: dict[str, str], extra_env: dict[str, str] | None = None) -> None:
        self.root = Path(env["POLYEDGE_ROOT"])
        text = (REPO / "supervisord.conf").read_text()
        text = text.replace("%(here)s/data", str(self.root / "data"))
        text = text.replace("%(here)s/logs", str(self.root / "logs"))
        text = text.replace("%(here)s", str(REPO))
        # the programs run on the interpreter that runs this (a venv's python without the venv
        # on PATH would otherwise start the system python3, without our packages)
        text = text.replace("python3 -m services.", f"{sys.executable} -m services.")
        self.conf = self.root / "supervisord.conf"
        self.conf.write_text(text)
        self.env = {**os.environ, **env, **(extra_env or {})}
        bindir = str(Path(sys.executable).parent)
        self.env["PATH"] = os.pathsep.join([bindir, self.env.get("PATH", "")])
        self.env.pop("PYTEST_CURRENT_TEST", None)

    def ctl(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(self.conf), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=check,
        )

    def start(self) -> None:
        subprocess.run(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(self.conf)],
            env=self.env,
            check=True,
            timeout=30,
            cwd=REPO,
        )

    def status(self) -> dict[str, str]:
        out = self.ctl("status").stdout
        return {ln.split()[0]: ln.split()[1] for ln in out.splitlines() if ln.strip()}

    def pid(self, name: str) -> int:
        return int(self.ctl("pid", name).stdout.strip())

    def wait_running(self, names: tuple[str, ...], timeout: float = 20.0) -> dict[str, str]:
        return wait_for(
            lambda: (st := self.status()) and all(st.get(n) == "RUNNING" for n in names) and st,
            timeout,
            what=f"{names} RUNNING",
        )

    def stop(self) -> None:
        self.ctl("stop", "all")
        self.ctl("shutdown")
        pidfile = self.root / "data" / "run" / "supervisord.pid"
        wait_for(lambda: not pidfile.exists(), 20, what="supervisord to exit")

    def log_tail(self, name: str) -> str:
        out = []
        for suffix in ("out", "err"):
            p = self.root / "logs" / f"{name}.{suffix}.log"
            if p.exists():
                out.append(p.read_text()[-3000:])
        return "\n".join(out)
