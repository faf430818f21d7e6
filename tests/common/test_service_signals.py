"""A service told to stop while it is still starting stops (common/service.py).

Seen in a chaos run (tests/chaos/test_chaos_held_resolution.py): after a `kill -9` of ingest,
supervisord's autorestart spawned a new ingest and the test's `supervisorctl stop ingest` sent
it SIGTERM 2 ms later, while it was still setting up. The SIGTERM landed in the runner's
synchronous handler (which only sets `stopping`); the asyncio loop that ingest and observe run
then never looked at it: the process ran on for supervisord's stopwaitsecs (10 s) and was
SIGKILLed, and meanwhile it heard and published a resolution it was meant to miss. A trader's
`polyedge down` right after `up` would see the same 10 s stall and a SIGKILL.

The test runs the real runner in its own process and delivers the SIGTERM before `serve_async`
installs its loop handlers, as supervisord did."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import asyncio, os, signal, sys
from common.service import ServiceRunner

runner = ServiceRunner("observe", "latency", publish=False)
os.kill(os.getpid(), signal.SIGTERM)  # supervisorctl stop, while the service is still starting


async def main() -> int:
    forever = asyncio.create_task(asyncio.sleep(3600), name="forever")
    return await runner.serve_async([], [forever])


sys.exit(asyncio.run(main()))
"""


def test_a_sigterm_during_start_up_stops_the_asyncio_runner(iso_env: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=30,  # before the fix it ran until the task's hour was up
    )
    assert proc.returncode == 0, proc.stderr
    log = Path(iso_env["LOG_DIR"]) / "latency.jsonl"
    events = [json.loads(ln)["event"] for ln in log.read_text().splitlines() if ln.strip()]
    assert events[-1] == "service_stopping", events
