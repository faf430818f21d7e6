"""Shared test helpers: free ports, an isolated data/log directory, deadline waits, and a real
supervisord process tree built from the repository's own supervisord.conf."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from services.commands.supervise import (  # noqa: F401
    REPO,
    Supervised,
    free_port,
    holds,
    short_tmpdir,
    wait_for,
)

# Real venue messages copied from ../shared/fixtures with their .source.txt notes (tests/fixtures/README.md).
FIXTURES = REPO / "tests" / "fixtures"
T = TypeVar("T")
# The seed's model alone, unscaled: what whole-system tests that need trades run. The shipped
# config's fitted blend follows the market and rarely sees an edge (README "Does it have an
# edge?"); the simulated venue prices its books by its own process (diffusion and jumps).
SEED_MODEL = {
    "blend_market_weight": 0.0,
    "blend_model_weight": 1.0,
    "blend_bias": 0.0,
    "vol_scale": 1.0,
}


def polyedge_cli(
    sup: Supervised, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`polyedge ARGS -c <the tree's supervisord.conf>` run in the isolated tree's environment
    (its stdout and stderr captured as text); raises subprocess.TimeoutExpired after `timeout`
    seconds."""
    return subprocess.run(
        [sys.executable, "-m", "services.commands.cli", *args, "-c", str(sup.conf)],
        cwd=REPO,
        env=sup.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def tree_env(root: Path, **extra: str) -> dict[str, str]:
    """The environment of an isolated tree under `root` (its data dir, logs, database, a free
    API port; `POLYEDGE_ROOT` for the harness), `extra` on top. Makes the directories."""
    (root / "data" / "run").mkdir(parents=True)
    (root / "logs").mkdir()
    return {
        "POLYEDGE_DATA_DIR": str(root / "data"),
        "LOG_DIR": str(root / "logs"),
        "DATABASE_URL": f"sqlite:{root / 'data' / 'trader.db'}",
        "API_PORT": str(free_port()),
        "POLYEDGE_ROOT": str(root),
        **extra,
    }


def offline_env(root: Path, **extra: str) -> dict[str, str]:
    """`tree_env` with every venue feed pointed at a closed local port (unless `extra` names
    it)."""
    feeds = {
        **{
            k: "ws://127.0.0.1:9"
            for k in ("BINANCE_WS_URL", "POLYMARKET_WS_URL", "PRICE_FEED_WS_URL")
        },
        **{k: "http://127.0.0.1:9" for k in ("GAMMA_API_URL", "CLOB_API_URL")},
    }
    return tree_env(root, **{**feeds, **extra})


@pytest.fixture(scope="session", autouse=True)
def hermetic_dirs() -> Iterator[Path]:
    """Every test, and every process a test starts (they inherit this environment), uses a data
    dir, log dir and database of its own under /tmp: never the repository's data/ and logs/,
    where an operator's config overrides (data/config.json), ledger or logs would change what is
    tested (a bad override file failed the backtest tests). Tests that need their own still set
    them (iso_env, the observe harness, chaos trees)."""
    root = short_tmpdir()
    mp = pytest.MonkeyPatch()
    mp.setenv("POLYEDGE_DATA_DIR", str(root / "data"))
    mp.setenv("POLYEDGE_ENV_FILE", "none")  # an operator's ./.env never changes what is tested
    mp.setenv("LOG_DIR", str(root / "logs"))
    mp.setenv("DATABASE_URL", f"sqlite:{root / 'data' / 'trader.db'}")
    (root / "data" / "run").mkdir(parents=True)
    (root / "logs").mkdir()
    try:
        yield root
    finally:
        mp.undo()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def iso_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """An environment with its own data dir, log dir, database and API port."""
    root = short_tmpdir()
    env = {
        "POLYEDGE_DATA_DIR": str(root / "data"),
        "LOG_DIR": str(root / "logs"),
        "DATABASE_URL": f"sqlite:{root / 'data' / 'trader.db'}",
        "API_PORT": str(free_port()),
        "SIM_PORT": str(free_port()),
        "POLYEDGE_ROOT": str(root),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    (root / "data" / "run").mkdir(parents=True)
    (root / "logs").mkdir()
    yield env
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def supervised(iso_env: dict[str, str]) -> Iterator[Supervised]:
    sup = Supervised(iso_env)
    yield sup
    try:
        sup.stop()
    except Exception:  # noqa: BLE001 - already down
        pass


def http_json(
    url: str,
    method: str = "GET",
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[int, Any]:
    import httpx

    r = httpx.request(method, url, json=body, headers=headers, timeout=timeout)
    try:
        return r.status_code, r.json()
    except ValueError:
        return r.status_code, r.text
