"""Fixtures for the simulated-venue tests: a real `python -m services.simvenue` process on a free
port, with short windows and a reduced bookTicker rate to stay light on a shared box."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from services.commands.supervise import wait_for  # noqa: F401 - the suite's one deadline wait, re-exported

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"


@dataclass
class SimProc:
    proc: subprocess.Popen
    port: int

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def state(self) -> dict:
        return httpx.get(f"{self.http}/sim/state", timeout=5).json()

    def fault(self, **kw: object) -> dict:
        r = httpx.post(f"{self.http}/sim/fault", json=kw, timeout=5)
        assert r.status_code == 200, r.text
        return r.json()


def start_sim(*extra: str) -> SimProc:
    cmd = [
        sys.executable,
        "-m",
        "services.simvenue",
        "--port",
        "0",
        "--book-ticker-hz",
        "10",
        "--mine-seconds",
        "0.2",
        "--confirm-seconds",
        "0.4",
        *extra,
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 30
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("simvenue listening on http://"):
            return SimProc(proc, int(line.rsplit(":", 1)[1]))
    proc.kill()
    raise AssertionError(f"simvenue did not start: {proc.stdout.read()}")


def stop_sim(sim: SimProc) -> None:
    sim.proc.terminate()
    try:
        sim.proc.wait(10)
    except subprocess.TimeoutExpired:
        sim.proc.kill()
        sim.proc.wait(5)


@pytest.fixture(scope="module")
def sim() -> Iterator[SimProc]:
    s = start_sim("--window-seconds", "6", "--seed", "7")
    try:
        yield s
    finally:
        stop_sim(s)


def fixture_json(rel: str) -> object:
    return json.loads((FIXTURES / rel).read_text())


def assert_same_shape(got: dict, want: dict, ignore: tuple[str, ...] = ()) -> None:
    """Same keys and same JSON types (recursively on nested objects)."""
    gk = set(got) - set(ignore)
    wk = set(want) - set(ignore)
    assert gk == wk, f"keys differ: extra={gk - wk} missing={wk - gk}"
    for k in wk:
        g, w = got[k], want[k]
        if isinstance(w, bool) or isinstance(g, bool):
            assert isinstance(g, bool) == isinstance(w, bool), k
        elif isinstance(w, (int, float)) and not isinstance(w, bool):
            assert isinstance(g, (int, float)), f"{k}: {g!r} vs {w!r}"
        elif w is None:
            continue
        else:
            assert type(g) is type(w), f"{k}: {type(g)} vs {type(w)}"
        if isinstance(w, dict) and isinstance(g, dict):
            assert_same_shape(g, w)
