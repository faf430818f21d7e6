"""Bad configuration files and environment values: the validators (hypothesis, driven by the
config's own declared constraints), every service started with a bad config or a bad env value
(a clear error naming every bad field, exit code 2, no database touched), and bad config files
written under running processes (refused, counted in the log, the running config unchanged)."""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.config import (
    WINDOWS,
    ConfigError,
    StrategyConfig,
    load_settings,
    load_strategy_config,
    parse_dotenv,
    setting_specs,
    validate_strategy_config,
)
from common.service import EXIT_CONFIG
from tests.conftest import REPO, wait_for

FUZZ = settings(max_examples=200, deadline=None, derandomize=True)
FIELDS = {f.name: f.type for f in msgspec.inspect.type_info(StrategyConfig).fields}
SERVICES = ("strategy", "signal", "execution", "ingest", "observe")
# observe only displays the strategy config (it shows "unknown" and keeps serving when the file is
# bad) and drops PRIVATE_KEY unread at start (the API process never holds the key)
CONFIG_USERS = ("strategy", "signal", "execution", "ingest")


# --- values inside and outside each field's declared constraints -------------------------------------
def _bounds(t: Any) -> tuple[float, float, bool, bool]:
    lo = t.gt if t.gt is not None else (t.ge if t.ge is not None else -1e12)
    hi = t.lt if t.lt is not None else (t.le if t.le is not None else 1e12)
    return lo, hi, t.gt is not None, t.lt is not None


# `markets` (issue 17): a list of `{"asset", "window", "enabled"?}` entries, one per series key;
# a bad entry is named `markets[i]` or `markets[i].<field>` (common.config.market_specs)
MARKET_ENTRIES = st.lists(
    st.fixed_dictionaries(
        {
            "asset": st.sampled_from(["btc", "eth", "sol", "xrp"]),
            "window": st.sampled_from(list(WINDOWS)),
        },
        optional={"enabled": st.booleans()},
    ),
    min_size=1,  # an empty list is refused (a typo must not stop every market): a bad value
    max_size=4,
    unique_by=lambda m: (m["asset"], m["window"]),
)
BAD_MARKETS = st.sampled_from(
    ["5", "", None, True, {}, {"v": 1}, [], [1], [{"asset": "B", "window": "5m"}]]
) | st.lists(
    st.sampled_from(
        [{"asset": "btc", "window": "2m"}, {"asset": "btc", "window": "5m", "enabled": 1}]
    ),
    min_size=1,
    max_size=2,
)


def named_field(error_key: str) -> str:
    """The top-level field an error names: `markets[0].asset` -> `markets`."""
    return error_key.split("[", 1)[0] if error_key.startswith("markets[") else error_key


def valid_value(t: Any) -> st.SearchStrategy[Any]:
    if isinstance(t, msgspec.inspect.ListType):
        return MARKET_ENTRIES
    if isinstance(t, msgspec.inspect.BoolType):
        return st.booleans()
    if isinstance(t, msgspec.inspect.LiteralType):
        return st.sampled_from(list(t.values))
    lo, hi, xlo, xhi = _bounds(t)
    if isinstance(t, msgspec.inspect.IntType):
        return st.integers(int(lo) + xlo, int(hi) - xhi)
    return st.floats(lo, hi, exclude_min=xlo, exclude_max=xhi, allow_nan=False)


def invalid_value(t: Any) -> st.SearchStrategy[Any]:
    if isinstance(t, msgspec.inspect.ListType):
        return BAD_MARKETS
    wrong_types = st.sampled_from(["5", "", None, True, False, [], {}, [1], {"v": 1}])
    if isinstance(t, msgspec.inspect.BoolType):  # strict: 0, 1, "true" are not booleans
        return st.sampled_from(["true", "", None, 0, 1, 1.5, [], {}])
    if isinstance(t, msgspec.inspect.LiteralType):
        return wrong_types | st.text(max_size=8).filter(lambda s: s not in t.values)
    lo, hi, xlo, xhi = _bounds(t)
    below = st.just(lo) if xlo else st.floats(max_value=lo, exclude_max=True, allow_nan=False)
    above = st.just(hi) if xhi else st.floats(min_value=hi, exclude_min=True, allow_nan=False)
    out = wrong_types | below | above | st.just(math.nan)
    if isinstance(t, msgspec.inspect.IntType):
        out = out | st.just(1.5) | st.just(float(int(lo) + 0.25))
    return out


@st.composite
def config_docs(draw: st.DrawFn) -> tuple[dict[str, Any], set[str]]:
    """A config document and the set of keys in it that must be named as bad."""
    doc: dict[str, Any] = {}
    bad: set[str] = set()
    for name in draw(st.lists(st.sampled_from(sorted(FIELDS)), unique=True, max_size=8)):
        if draw(st.booleans()):
            doc[name] = draw(invalid_value(FIELDS[name]))
            bad.add(name)
        else:
            doc[name] = draw(valid_value(FIELDS[name]))
    for key in draw(st.lists(st.text(min_size=1, max_size=12), max_size=2)):
        if key not in FIELDS:
            doc[key] = draw(st.integers() | st.text(max_size=5))
            bad.add(key)
    return doc, bad


@FUZZ
@given(case=config_docs())
def test_every_bad_config_field_is_named(case: tuple[dict[str, Any], set[str]]) -> None:
    doc, bad = case
    if not bad:
        cfg = validate_strategy_config(doc)
        for k, v in doc.items():
            assert getattr(cfg, k) == v
        return
    with pytest.raises(ConfigError) as e:
        validate_strategy_config(doc, "fuzz")
    assert {named_field(k) for k in e.value.errors} == bad, (doc, e.value.errors)
    assert all(isinstance(m, str) and m for m in e.value.errors.values())
    assert "fuzz" in str(e.value)


@FUZZ
@given(doc=st.one_of(st.none(), st.integers(), st.text(), st.lists(st.integers())))
def test_a_config_that_is_not_an_object_is_refused(doc: Any) -> None:
    with pytest.raises(ConfigError) as e:
        validate_strategy_config(doc)
    assert "$" in e.value.errors


# --- config files -------------------------------------------------------------------------------------
BAD_FILES: dict[str, bytes] = {
    "truncated": b'{"stake_per_trade_usd": 5',
    "empty": b"",
    "array": b"[]",
    "yaml": b"stake_per_trade_usd: 5\n",
    "comments": b'{\n  // stake\n  "stake_per_trade_usd": 5\n}',
    "latin1": '{"stake_per_trade_usd": 5, "x": "caf\xe9"}'.encode("latin-1"),
    "utf16": '{"stake_per_trade_usd": 5}'.encode("utf-16"),
    "binary": bytes(range(256)),
    "bad_field": b'{"stake_per_trade_usd": -5}',
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_config_file_is_a_config_error(tmp_path: Path, case: str) -> None:
    p = tmp_path / "config.json"
    p.write_bytes(BAD_FILES[case])
    with pytest.raises(ConfigError) as e:
        load_strategy_config(p)
    assert str(p) in str(e.value)


@pytest.mark.parametrize("case", ["missing", "directory"])
def test_unreadable_config_path_is_a_config_error(tmp_path: Path, case: str) -> None:
    p = tmp_path / "nope.json"
    if case == "directory":
        p.mkdir()
    with pytest.raises(ConfigError) as e:
        load_strategy_config(p)
    assert str(p) in str(e.value)


@FUZZ
@given(content=st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_any_config_file_loads_or_is_a_config_error(tmp_path_factory: Any, content: bytes) -> None:
    p = tmp_path_factory.mktemp("cfg") / "config.json"
    p.write_bytes(content)
    try:
        cfg = load_strategy_config(p)
    except ConfigError as e:
        assert e.errors and str(p) in str(e)
        return
    assert isinstance(cfg, StrategyConfig)


# --- .env and environment -----------------------------------------------------------------------------
BAD_ENV: dict[str, str] = {
    "DRY_RUN": "maybe",
    "ENABLE_REAL_TRADING": "yes please",
    "API_PORT": "http",
    "SIM_PORT": "70000",
    "SIM_WINDOW_SECONDS": "1",
    "SIM_SEED": "-5",
    "LOG_LEVEL": "LOUD",
    "DATABASE_URL": "postgres://db/trader",
    "POLYEDGE_VENUE": "paper",
    "BINANCE_WS_URL": "ftp://example.com",
    "PRIVATE_KEY": "0xnot-a-key-deadbeef",
    "INGEST_CLOB_PING_MS": "often",
    "INGEST_PRICE_FEED": "perhaps",
    "INGEST_STALE_AFTER_MS": "-5",
    "EXEC_ORDER_TIMEOUT_MS": "0",
    "EXEC_RECONCILE_GRACE_MS": "10s",
    "API_MAX_BODY_BYTES": "12",
    "SIM_CLOB_HZ": "nan",
    "SIM_BOOK_TICKER_HZ": "fast",
    "GAMMA_API_URL": "gamma-api.polymarket.com",
    "POLYEDGE_BUS_ORDERS": "http://10.0.0.2:7001",
    "SIGNATURE_TYPE": "7",
    "FUNDER": "0x12",
}
# one bad value of each service's own settings: every service refuses them all (one loader)
BAD_SERVICE_ENV = (
    "INGEST_CLOB_PING_MS",
    "EXEC_ORDER_TIMEOUT_MS",
    "API_MAX_BODY_BYTES",
    "SIM_CLOB_HZ",
)


@pytest.mark.parametrize("name", sorted(BAD_ENV))
def test_each_bad_env_value_is_named(name: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_settings({name: BAD_ENV[name]}, dotenv=None)
    assert set(e.value.errors) == {name}
    if name == "PRIVATE_KEY":
        assert BAD_ENV[name] not in str(e.value) and "deadbeef" not in str(e.value)


def test_all_bad_env_values_are_named_at_once() -> None:
    with pytest.raises(ConfigError) as e:
        load_settings(dict(BAD_ENV), dotenv=None)
    assert set(e.value.errors) == set(BAD_ENV)


ENV_NAMES = sorted(spec.name for spec in setting_specs())


@FUZZ
@given(env=st.dictionaries(st.sampled_from(ENV_NAMES), st.text(max_size=70), max_size=6))
def test_any_environment_loads_or_names_its_bad_values(env: dict[str, str]) -> None:
    try:
        load_settings(env, dotenv=None)
    except ConfigError as e:
        assert e.errors and set(e.errors) <= set(env), (env, e.errors)
        key = env.get("PRIVATE_KEY", "").strip()
        others = [v for k, v in env.items() if k != "PRIVATE_KEY"]
        if len(key) >= 8 and not any(key in v for v in others):  # echoed as another value
            assert key not in str(e), "the private key must never be echoed"


@settings(
    max_examples=150, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)  # fmt: skip
@given(content=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_dotenv_parses_or_names_the_line(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / ".env"
    p.write_bytes(content)
    try:
        out = parse_dotenv(p)
    except ConfigError as e:
        assert str(p) in str(e)
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in out.items())


def test_dotenv_inline_comments_as_python_dotenv_reads_them(tmp_path: Path) -> None:
    """`LOG_DIR=/tmp/x # logs` silently made the directory "/tmp/x # logs" and
    `API_TOKEN=secret # mine` the token "secret # mine" (a new user's test, 2026-12-01).
    python-dotenv (`dotenv_values`, the `.env` reader most tools share): in an unquoted value
    whitespace then `#` starts a comment; a quoted value is what its quotes hold."""
    p = tmp_path / ".env"
    p.write_text(
        "LOG_DIR=/tmp/x # logs\n"
        "API_TOKEN=a#b\n"
        'ALERT_WEBHOOK_URL="http://h/p #frag" # the hook\n'
        "SIM_SEED='7'\n"
        "DRY_RUN=true\t# paper\n"
    )
    assert parse_dotenv(p) == {
        "LOG_DIR": "/tmp/x",
        "API_TOKEN": "a#b",
        "ALERT_WEBHOOK_URL": "http://h/p #frag",
        "SIM_SEED": "7",
        "DRY_RUN": "true",
    }
    for bad in ('API_TOKEN="open\n', "API_TOKEN='a' b\n"):
        p.write_text(bad)
        with pytest.raises(ConfigError) as e:
            parse_dotenv(p)
        assert f"{p}:1" in str(e.value) and "quote" in str(e.value), str(e.value)


# --- real processes: a bad start is refused clearly, before anything is written ---------------------
def _start(service: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", f"services.{service}"],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run_all(env: dict[str, str], services: tuple[str, ...]) -> dict[str, tuple[int, str]]:
    procs = {s: _start(s, env) for s in services}
    out = {}
    for s, p in procs.items():
        try:
            _, err = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
            err = "still running after 30s: " + err
        out[s] = (p.returncode, err)
    return out


def test_services_refuse_a_bad_config_file(iso_env: dict[str, str], tmp_path: Path) -> None:
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps({"stake_per_trade_usd": -1, "leverage": 10, "order_type": "GTC"}))
    results = _run_all({"POLYEDGE_CONFIG": str(cfg)}, CONFIG_USERS)
    for service, (code, err) in results.items():
        assert code == EXIT_CONFIG, f"{service} exited {code}: {err[-500:]}"
        for word in ("stake_per_trade_usd", "leverage", "order_type", str(cfg)):
            assert word in err, f"{service} did not name {word}: {err[-500:]}"
        assert "Traceback" not in err, f"{service}: {err[-800:]}"
    assert not Path(iso_env["DATABASE_URL"].removeprefix("sqlite:")).exists(), "database touched"


@pytest.mark.parametrize("name", ["API_PORT", "DRY_RUN", "PRIVATE_KEY", "POLYEDGE_VENUE"])
def test_services_refuse_a_bad_env_value(iso_env: dict[str, str], name: str) -> None:
    services = tuple(s for s in SERVICES if not (name == "PRIVATE_KEY" and s == "observe"))
    results = _run_all({name: BAD_ENV[name]}, services)
    for service, (code, err) in results.items():
        assert code == EXIT_CONFIG, f"{service} exited {code}: {err[-500:]}"
        assert name in err, f"{service} did not name {name}: {err[-500:]}"
        assert "Traceback" not in err, f"{service}: {err[-800:]}"
        if name == "PRIVATE_KEY":
            assert "deadbeef" not in err
    assert not Path(iso_env["DATABASE_URL"].removeprefix("sqlite:")).exists(), "database touched"


def test_services_refuse_bad_service_settings(iso_env: dict[str, str]) -> None:
    """INGEST_*, EXEC_*, API_* and SIM_* values go through the one loader in every service."""
    results = _run_all({k: BAD_ENV[k] for k in BAD_SERVICE_ENV}, (*SERVICES, "simvenue"))
    for service, (code, err) in results.items():
        assert code == EXIT_CONFIG, f"{service} exited {code}: {err[-500:]}"
        for name in BAD_SERVICE_ENV:
            assert name in err and BAD_ENV[name] in err, f"{service} did not name {name}: {err}"
        assert "Traceback" not in err, f"{service}: {err[-800:]}"
    assert not Path(iso_env["DATABASE_URL"].removeprefix("sqlite:")).exists(), "database touched"


# --- a bad config file written under running processes ----------------------------------------------
@pytest.fixture
def running(iso_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"stake_per_trade_usd": 4.0}))
    env = {"POLYEDGE_CONFIG": str(cfg)}
    procs = {s: _start(s, env) for s in ("strategy", "signal")}
    db = Path(iso_env["DATABASE_URL"].removeprefix("sqlite:"))
    logs = Path(iso_env["LOG_DIR"])

    def persisted() -> dict[str, Any] | None:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            row = con.execute("SELECT value FROM strategy_state WHERE key LIKE 'core:%'").fetchone()
        finally:
            con.close()
        return json.loads(row[0]) if row else None

    try:
        wait_for(persisted, 30, 0.1, what="strategy to persist its state")
        wait_for(lambda: (logs / "signal.jsonl").exists(), 30, what="signal to start")
        yield cfg, {"procs": procs, "persisted": persisted, "logs": logs}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()


def _events(logs: Path, stream: str, event: str) -> list[dict[str, Any]]:
    p = logs / f"{stream}.jsonl"
    if not p.exists():
        return []
    return [d for d in map(json.loads, p.read_text().splitlines()) if d.get("event") == event]


@pytest.mark.parametrize("case", ["bad_field", "truncated", "latin1"])
def test_bad_config_written_under_running_services_is_refused(
    running: tuple[Path, dict[str, Any]], case: str
) -> None:
    cfg, ctx = running
    version = ctx["persisted"]()["config_version"]
    before = {
        s: len(_events(ctx["logs"], s2, e))
        for s, (s2, e) in {
            "strategy": ("risk", "config_rejected"),
            "strategy_file": ("risk", "config_file_rejected"),
            "signal": ("signal", "config_reload_rejected"),
        }.items()
    }
    cfg.write_bytes(BAD_FILES[case])
    os.utime(cfg, ns=(os.stat(cfg).st_atime_ns, os.stat(cfg).st_mtime_ns + 1_000_000_000))

    def refused() -> bool:
        strat = len(_events(ctx["logs"], "risk", "config_rejected")) + len(
            _events(ctx["logs"], "risk", "config_file_rejected")
        )
        sig = len(_events(ctx["logs"], "signal", "config_reload_rejected"))
        return strat > before["strategy"] + before["strategy_file"] and sig > before["signal"]

    procs = ctx["procs"]
    wait_for(
        lambda: refused() or any(p.poll() is not None for p in procs.values()),
        15,
        what="strategy and signal to refuse the bad file",
    )
    for name, p in procs.items():
        if p.poll() is not None:
            err = p.stderr.read().strip().splitlines()
            pytest.fail(f"{name} died (exit {p.returncode}) on a {case} config file: {err[-1:]}")
    assert refused()
    assert ctx["persisted"]()["config_version"] == version, "a refused config was applied"
    # and they say so on the bus (their heartbeats), where observe shows it as it happens
    for name in procs:
        err = wait_for(
            lambda n=name: _heartbeat_detail(n).get("config_file_error"),
            10,
            what=f"{name}'s heartbeat to report the refused file",
        )
        assert str(cfg) in err["source"] and err["message"], err

    # control: a good file is picked up, so the refusal above was a real decision
    cfg.write_text(json.dumps({"stake_per_trade_usd": 6.0}))
    os.utime(cfg, ns=(os.stat(cfg).st_atime_ns, os.stat(cfg).st_mtime_ns + 2_000_000_000))
    wait_for(
        lambda: ctx["persisted"]()["config_version"] > version, 15, what="the good file applied"
    )
    for name in procs:
        wait_for(
            lambda n=name: "config_file_error" not in _heartbeat_detail(n),
            10,
            what=f"{name}'s heartbeat to drop the error once the file is good",
        )


def test_ingest_reports_a_refused_config_edit_in_its_heartbeat(
    iso_env: dict[str, str], tmp_path: Path
) -> None:
    """Ingest follows the file's `markets`: a bad edit keeps the markets in force, and it says
    so in its heartbeat as strategy and signal do (observe lists it in /health warnings)."""
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"stake_per_trade_usd": 4.0}))
    p = _start("ingest", {"POLYEDGE_CONFIG": str(cfg), "POLYEDGE_VENUE": "sim"})
    logs = Path(iso_env["LOG_DIR"])
    try:
        wait_for(lambda: _heartbeat_detail("ingest") or p.poll() is not None, 30, what="ingest")
        assert p.poll() is None, p.stderr.read() if p.stderr else ""
        assert "config_file_error" not in _heartbeat_detail("ingest")
        cfg.write_bytes(BAD_FILES["bad_field"])
        os.utime(cfg, ns=(os.stat(cfg).st_atime_ns, os.stat(cfg).st_mtime_ns + 1_000_000_000))
        err = wait_for(
            lambda: _heartbeat_detail("ingest").get("config_file_error"),
            15,
            what="ingest's heartbeat to report the refused file",
        )
        assert str(cfg) in err["source"] and err["message"] and err["errors"], err
        assert _events(logs, "ingestion", "markets_not_reloaded")
        # a good file again: the report goes
        cfg.write_text(json.dumps({"stake_per_trade_usd": 6.0}))
        os.utime(cfg, ns=(os.stat(cfg).st_atime_ns, os.stat(cfg).st_mtime_ns + 2_000_000_000))
        wait_for(
            lambda: "config_file_error" not in _heartbeat_detail("ingest"),
            15,
            what="ingest's heartbeat to drop the error once the file is good",
        )
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()


def _heartbeat_detail(service: str) -> dict[str, Any]:
    """The detail of the next heartbeat `service` publishes (within 3 s)."""
    from common.bus import Subscriber

    sub = Subscriber(load_settings().bus_endpoint(service), [f"sys.heartbeat.{service}"])
    try:
        item = sub.recv(timeout_ms=3000)
        return dict(item[1].msg.detail) if item else {}
    finally:
        sub.close()


# --- the shipped config file missing (BREAKER2 finding 1) -------------------------------------------
def _checkout(tmp_path: Path) -> Path:
    """A directory laid out as the repository is for the services (they run in it): its own
    copy of `config/config.json`, the default strategy config (POLYEDGE_CONFIG unset)."""
    root = tmp_path / "checkout"
    (root / "config").mkdir(parents=True)
    (root / "config" / "config.json").write_text((REPO / "config" / "config.json").read_text())
    return root


def _start_in(service: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    full = {k: v for k, v in os.environ.items() if k != "POLYEDGE_CONFIG"}
    return subprocess.Popen(
        [sys.executable, "-m", f"services.{service}"],
        cwd=cwd,
        env={**full, "PYTHONPATH": str(REPO), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_services_refuse_to_start_without_the_shipped_config(
    iso_env: dict[str, str], tmp_path: Path
) -> None:
    """`config/config.json` missing (POLYEDGE_CONFIG unset) used to mean the built-in defaults
    (the unfitted model alone) with no word: now every service that trades or feeds on it
    refuses to start, naming the file and how to restore it, before touching the database."""
    root = _checkout(tmp_path)
    (root / "config" / "config.json").unlink()
    procs = {s: _start_in(s, root, {"POLYEDGE_VENUE": "sim"}) for s in CONFIG_USERS}
    for service, p in procs.items():
        try:
            _, err = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
            err = "still running after 30s: " + err
        assert p.returncode == EXIT_CONFIG, f"{service} exited {p.returncode}: {err[-500:]}"
        assert str(root / "config" / "config.json") in err, f"{service}: {err[-500:]}"
        assert "git checkout config/config.json" in err, f"{service}: {err[-500:]}"
        assert "Traceback" not in err, f"{service}: {err[-800:]}"
    assert not Path(iso_env["DATABASE_URL"].removeprefix("sqlite:")).exists(), "database touched"


def test_the_shipped_config_removed_under_running_services_keeps_the_last_good_one(
    iso_env: dict[str, str], tmp_path: Path
) -> None:
    """Moving `config/config.json` away from a running tree switched strategy to the built-in
    defaults (a new config version: blend weights market 1/model 0 -> 0/1) with /health ok.
    Now it is handled as a bad edit: the last good config stays in force, the heartbeats (and so
    /health) name the missing file, and putting it back applies no new version."""
    root = _checkout(tmp_path)
    shipped = root / "config" / "config.json"
    procs = {s: _start_in(s, root, {"POLYEDGE_VENUE": "sim"}) for s in ("strategy", "signal")}
    db = Path(iso_env["DATABASE_URL"].removeprefix("sqlite:"))
    logs = Path(iso_env["LOG_DIR"])

    def persisted() -> dict[str, Any] | None:
        if not db.exists():
            return None
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            row = con.execute("SELECT value FROM strategy_state WHERE key LIKE 'core:%'").fetchone()
        except sqlite3.OperationalError:
            return None
        finally:
            con.close()
        return json.loads(row[0]) if row else None

    try:
        wait_for(persisted, 30, 0.1, what="strategy to persist its state")
        wait_for(lambda: (logs / "signal.jsonl").exists(), 30, what="signal to start")
        version = persisted()["config_version"]
        for name in procs:  # the control: no error while the file is there
            assert "config_file_error" not in _heartbeat_detail(name)
        moved = tmp_path / "moved.json"
        shipped.rename(moved)
        for name in procs:
            err = wait_for(
                lambda n=name: _heartbeat_detail(n).get("config_file_error"),
                15,
                what=f"{name}'s heartbeat to report the missing file",
            )
            assert str(shipped) in err["source"], err
            assert "git checkout config/config.json" in json.dumps(err), err
        assert _events(logs, "risk", "config_file_rejected")
        for name, p in procs.items():
            assert p.poll() is None, f"{name} exited {p.returncode}"
        assert persisted()["config_version"] == version, "the built-in defaults were applied"
        moved.rename(shipped)
        for name in procs:
            wait_for(
                lambda n=name: "config_file_error" not in _heartbeat_detail(n),
                15,
                what=f"{name}'s heartbeat to drop the error once the file is back",
            )
        assert persisted()["config_version"] == version, "the same config is not a new version"
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()


# --- the CLI names what named a bad file (BREAKER3 finding 9) ----------------------------------------
def _polyedge(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.commands.cli", *argv],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_errors_name_the_option_and_the_env_file_that_named_the_bad_input(
    iso_env: dict[str, str], tmp_path: Path
) -> None:
    """`--config /nonexistent.json` said "named by POLYEDGE_CONFIG"; a bad value in the file
    POLYEDGE_ENV_FILE names was reported "in environment/.env"; `DRY_RUN=true # paper` was
    refused (an inline comment now ends an unquoted value, as python-dotenv reads it). Each
    now says what it is."""
    missing = tmp_path / "nonexistent.json"
    for cmd in (
        ["backtest", "--sim-seed", "1"],
        ["calibrate", "--markets", "m.csv", "--prices", "p"],
    ):
        r = _polyedge({}, *cmd, "--config", str(missing))
        assert r.returncode == 2, r.stderr
        assert str(missing) in r.stderr and "named by --config" in r.stderr, r.stderr
        assert "POLYEDGE_CONFIG" not in r.stderr, r.stderr
    r = _polyedge({"POLYEDGE_CONFIG": str(missing)}, "backtest", "--sim-seed", "1")
    assert r.returncode == 2 and "named by POLYEDGE_CONFIG" in r.stderr, r.stderr
    env_file = tmp_path / "x.env"
    env_file.write_text("# paper\nDRY_RUN=true # paper\nSIM_SEED=eighty\n")
    r = _polyedge({"POLYEDGE_ENV_FILE": str(env_file)}, "settings")
    assert r.returncode == 2 and not r.stdout, r.stdout
    assert f"invalid configuration in the environment and {env_file}:" in r.stderr, r.stderr
    assert "environment/.env" not in r.stderr
    assert "DRY_RUN" not in r.stderr, r.stderr  # "true # paper" in a file is true
    assert "eighty" in r.stderr.split("SIM_SEED:")[1], r.stderr
    # the same text from the environment is the whole value (no file syntax there): refused
    r = _polyedge({"POLYEDGE_ENV_FILE": "none", "DRY_RUN": "true # paper"}, "settings")
    assert r.returncode == 2 and "invalid configuration in the environment:" in r.stderr
    assert "DRY_RUN" in r.stderr, r.stderr


def test_output_to_a_reader_that_stops_early_ends_quietly() -> None:
    """`polyedge backtest ... | head` printed a BrokenPipeError traceback (a new user's test,
    2026-12-01). The reader here closes before anything is written: exit 141 (128 + SIGPIPE,
    as a Unix tool), nothing on stderr."""
    p = subprocess.Popen(
        [sys.executable, "-m", "services.commands.cli", "settings"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None and p.stderr is not None
    p.stdout.close()
    err = p.stderr.read()
    assert p.wait(timeout=60) == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
