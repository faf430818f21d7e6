"""The suite is hermetic: no test reads or writes the repository's data/ or logs/ (an operator's
bad data/config.json failed the backtest tests), in this process or in the CLI it starts there."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

from common.config import load_settings
from tests.conftest import REPO

OPERATOR_DIRS = (REPO / "data", REPO / "logs")


def _outside(p: Path) -> bool:
    q = p if p.is_absolute() else REPO / p  # a relative path is the repository's (cwd) one
    return not any(q.resolve().is_relative_to(d.resolve()) for d in OPERATOR_DIRS)


def test_settings_in_the_suite_point_outside_the_repository() -> None:
    s = load_settings(dotenv=None, warn=None)
    files = s.strategy_config_files()
    for p in (s.data_dir, s.log_dir, s.database_path, files.overrides_path):
        assert p is not None and _outside(Path(p)), p


def test_a_cli_started_at_the_repository_uses_the_isolated_overrides() -> None:
    """`polyedge backtest` run from the repository root (as the backtest tests do) says which
    config it used: its overrides file is the suite's, not the repository's data/config.json."""
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.commands.cli",
            "backtest",
            "--sim-seed",
            "1",
            "--windows",
            "1",
            "--window-seconds",
            "30",
            "--json",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    used = json.loads(r.stdout)["config"]
    assert used["overrides_path"] and _outside(Path(used["overrides_path"])), used


def test_an_operators_dotenv_is_not_read_by_the_suite(tmp_path: Path) -> None:
    """A process started in a folder holding an operator's `.env` (the repository root, where the
    tests start their services) reads it only when `POLYEDGE_ENV_FILE` allows: the suite sets
    `none`; unset, `./.env` is read as the README says."""
    (tmp_path / ".env").write_text("API_PORT=not-a-port\n")
    code = "from common.config import load_settings; print(load_settings(warn=None).api.port)"
    env = {k: v for k, v in os.environ.items() if k != "API_PORT"}
    env["PYTHONPATH"] = str(REPO)
    run = functools.partial(
        subprocess.run, [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True
    )
    hermetic = run(env=env)
    assert hermetic.returncode == 0, hermetic.stderr
    assert env["POLYEDGE_ENV_FILE"] == "none" and hermetic.stdout.strip() == "8080"
    operator = run(env={k: v for k, v in env.items() if k != "POLYEDGE_ENV_FILE"})
    assert operator.returncode != 0 and "API_PORT" in operator.stderr
    named = run(env={**env, "POLYEDGE_ENV_FILE": str(tmp_path / ".env")})
    assert named.returncode != 0 and "API_PORT" in named.stderr
