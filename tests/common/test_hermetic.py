"""The suite is hermetic: no test reads or writes the repository's data/ or logs/ (an operator's
bad data/config.json failed the backtest tests), in this process or in the CLI it starts there."""

from __future__ import annotations

import json
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
