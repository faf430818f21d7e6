"""The real process tree under supervisord: start, cross-service flow, tap, kill -9, locks, stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import (
    REPO,
    Supervised,
    http_json,
    offline_env,
    polyedge_cli,
    short_tmpdir,
    tree_env,
    wait_for,
)

pytestmark = pytest.mark.whole_system  # starts a supervisord tree (pyproject markers)

SERVICES = ("execution", "strategy", "signal", "ingest", "observe")


@pytest.fixture(scope="module")
def tree() -> Iterator[tuple[Supervised, dict[str, str]]]:
    from tests.conftest import free_port

    root = short_tmpdir()
    (root / "data" / "run").mkdir(parents=True)
    (root / "logs").mkdir()
    env = {
        "POLYEDGE_DATA_DIR": str(root / "data"),
        "LOG_DIR": str(root / "logs"),
        "DATABASE_URL": f"sqlite:{root / 'data' / 'trader.db'}",
        "API_PORT": str(free_port()),
        "POLYEDGE_ROOT": str(root),
        # no venue is reachable here: point the feeds at a closed local port
        **{
            k: "ws://127.0.0.1:9"
            for k in ("BINANCE_WS_URL", "POLYMARKET_WS_URL", "PRICE_FEED_WS_URL")
        },
        **{k: "http://127.0.0.1:9" for k in ("GAMMA_API_URL", "CLOB_API_URL")},
    }
    sup = Supervised(env)
    t0 = time.monotonic()
    sup.start()
    sup.wait_running(SERVICES, timeout=30)
    sup.started_in = time.monotonic() - t0  # type: ignore[attr-defined]
    yield sup, env
    try:
        sup.stop()
    except Exception:  # noqa: BLE001
        pass


def health(env: dict[str, str]) -> dict:
    code, doc = http_json(f"http://127.0.0.1:{env['API_PORT']}/health")
    assert isinstance(doc, dict), doc
    return doc


def test_all_five_running_and_health_names_them(tree: tuple[Supervised, dict]) -> None:
    sup, env = tree
    assert sup.started_in < 10, f"tree took {sup.started_in:.1f}s to reach RUNNING"

    def all_alive() -> dict | None:
        d = health(env)
        return d if all(v.get("alive") for v in d["services"].values()) else None

    doc = wait_for(all_alive, 15, what="every service alive in /health")
    assert set(doc["services"]) == set(SERVICES)
    for name in SERVICES:
        # no venue is reachable, so ingest says its feeds are down; every other service runs
        expected = ("degraded",) if name == "ingest" else ("running",)
        assert doc["services"][name]["state"] in expected, (name, doc["services"][name])
        assert doc["services"][name]["pid"] == sup.pid(name)
        assert doc["services"][name]["supervisor_state"] == "RUNNING"  # asked of supervisord
    # every service alive, but no feed reachable: not ok, and each feed says why
    assert doc["ok"] is False and doc["supervised"] is True
    why = {
        "binance": "connect failed",
        "price_feed": "connect failed",
        "gamma": "transport",
        "clob": "waiting for markets",  # no market known: nothing to subscribe to
    }
    for feed, words in why.items():
        reason = wait_for(
            lambda f=feed, w=words: w in (r := health(env)["feeds"][f]["reason"]) and r,
            15,
            what=f"feed {feed}'s reason to say {words!r}",
        )
        assert f"feed {feed} {reason}" in health(env)["problems"]


def test_one_message_crosses_all_five(tree: tuple[Supervised, dict]) -> None:
    _, env = tree
    doc = wait_for(
        lambda: (d := health(env))["pipeline"].get("hops") and d,
        15,
        what="a probe to reach observe",
    )
    assert doc["pipeline"]["hops"] == ["ingest", "signal", "strategy", "execution"]
    assert doc["pipeline"]["end_to_end_ms"] < 1000


def _tap(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.commands.cli", "tap", *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_tap_prints_json_lines(tree: tuple[Supervised, dict]) -> None:
    _, env = tree
    r = _tap(env, "--count", "5", "--timeout", "10")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert len(lines) == 5
    for d in lines:
        assert list(d)[:4] == ["topic", "seq", "epoch", "kind"]
    r = _tap(env, "--topic", "md.clock", "--count", "3", "--timeout", "10")
    clocks = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert [d["kind"] for d in clocks] == ["clock"] * 3
    assert [d["seq"] for d in clocks] == list(range(clocks[0]["seq"], clocks[0]["seq"] + 3))
    r = _tap(env, "--stats", "--timeout", "1.5")
    stats = json.loads(r.stdout.splitlines()[-1])
    assert stats["topics"]["md.clock"]["rate_per_s"] >= 5
    assert stats["topics"]["md.clock"]["gaps"] == 0
    r = _tap(env, "--topic", "no.such.topic", "--count", "1", "--timeout", "1")
    assert r.returncode == 1 and "timed out" in r.stderr
    # BREAKER3 finding 9: a topic that matches nothing while the system runs says so (it asked
    # "is the system running?"), naming the topic and the prefixes topics start with
    r = _tap(env, "--topic", "ü", "--count", "1", "--timeout", "2")
    assert r.returncode == 1 and not r.stdout, (r.stdout, r.stderr)
    assert "no message on topic 'ü'" in r.stderr and "system is running" in r.stderr, r.stderr
    assert "is the system running?" not in r.stderr and "md., sig." in r.stderr, r.stderr
    r = _tap(env, "--topic", "sys.heartbeat.strategy", "--count", "1", "--timeout", "10")
    assert r.returncode == 0 and json.loads(r.stdout)["topic"] == "sys.heartbeat.strategy"
    r = _tap(env, "--topic", "md.clock", "--count", "3", "--timeout", "10")
    assert {json.loads(ln)["topic"] for ln in r.stdout.splitlines()} == {"md.clock"}  # no beats
    r = _tap(env, "--count", "zero")
    assert r.returncode == 2 and "expected a whole number" in r.stderr


def test_kill_9_comes_back_and_flow_resumes(tree: tuple[Supervised, dict]) -> None:
    sup, env = tree
    for name in ("strategy", "ingest"):
        old = sup.pid(name)
        probes = health(env)["pipeline"]["probes"]
        os.kill(old, signal.SIGKILL)
        t0 = time.monotonic()
        wait_for(
            lambda n=name, o=old: sup.status().get(n) == "RUNNING" and sup.pid(n) != o,
            20,
            what=f"{name} back RUNNING",
        )
        wait_for(
            lambda p=probes: health(env)["pipeline"]["probes"] > p + 1,
            15,
            what="probes flowing again",
        )
        assert time.monotonic() - t0 < 10


def test_second_instances_are_refused(tree: tuple[Supervised, dict]) -> None:
    sup, env = tree
    r = subprocess.run(
        [sys.executable, "-m", "supervisor.supervisord", "-c", str(sup.conf)],
        env=sup.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode != 0 and "Another program is already listening" in r.stdout + r.stderr
    # the wrapper names the running tree instead: its supervisord pid, config and programs
    r = polyedge_cli(sup, "up")
    sup_pid = int((sup.root / "data" / "run" / "supervisord.pid").read_text())
    assert r.returncode == 3, r.stderr
    assert "already running" in r.stderr and f"supervisord pid {sup_pid}" in r.stderr
    assert str(sup.conf) in r.stderr and "strategy" in r.stderr and "polyedge down" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "services.execution"],
        cwd=REPO,
        timeout=30,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert r.returncode == 3
    assert "another execution" in r.stderr and "already running" in r.stderr


def test_control_socket_is_private(tree: tuple[Supervised, dict]) -> None:
    sup, _ = tree
    mode = (sup.root / "data" / "run" / "supervisor.sock").stat().st_mode & 0o777
    assert mode == 0o700


def test_stop_all_leaves_no_stray_process(tree: tuple[Supervised, dict]) -> None:
    sup, _ = tree
    pids = [sup.pid(n) for n in SERVICES]
    assert all(p > 0 for p in pids)
    sup.ctl("stop", "all")
    assert all(v in ("STOPPED", "EXITED") for v in sup.status().values())

    def gone() -> bool:
        for p in pids:
            try:
                os.kill(p, 0)
                return False
            except ProcessLookupError:
                pass
        return True

    wait_for(gone, 15, what="every service process to exit")


def test_status_right_after_shutdown_is_a_plain_answer(tree: tuple[Supervised, dict]) -> None:
    """supervisord answers every query with Fault 6 SHUTDOWN_STATE until its programs have
    exited (Supervisor/supervisor issue #48); `polyedge status` says "shutting down" instead and
    `polyedge down` finds nothing left to stop."""
    sup, _ = tree
    sup.ctl("start", "all")
    sup.wait_running(SERVICES, 30)
    r = polyedge_cli(sup, "status")
    assert r.returncode == 0 and "RUNNING" in r.stdout and "strategy" in r.stdout, r
    assert sup.ctl("shutdown").returncode == 0
    answers: list[subprocess.CompletedProcess[str]] = []

    def gone() -> bool:
        answers.append(r := polyedge_cli(sup, "status"))
        return "not running" in r.stderr

    wait_for(gone, 30, 0.01, what="the tree to exit")
    # every answer until the tree was gone is a sentence, never a fault
    for r in answers:
        assert r.returncode == 4, r
        assert "Fault" not in r.stdout + r.stderr and "Traceback" not in r.stderr, r
        assert "not running" in r.stderr or "shutting down: supervisord pid" in r.stderr, r
    print(f"status answers during shutdown: {[a.stderr.strip()[10:50] for a in answers]}")
    r = polyedge_cli(sup, "down")
    assert r.returncode == 0 and "nothing to stop" in r.stderr, r.stderr
    assert not (sup.root / "data" / "run" / "supervisord.pid").exists()


def test_down_waits_until_the_tree_is_gone() -> None:
    from tests.conftest import free_port

    root = short_tmpdir()
    (root / "data" / "run").mkdir(parents=True)
    (root / "logs").mkdir()
    env = {
        "POLYEDGE_DATA_DIR": str(root / "data"),
        "LOG_DIR": str(root / "logs"),
        "DATABASE_URL": f"sqlite:{root / 'data' / 'trader.db'}",
        "API_PORT": str(free_port()),
        "POLYEDGE_ROOT": str(root),
        **{
            k: "ws://127.0.0.1:9"
            for k in ("BINANCE_WS_URL", "POLYMARKET_WS_URL", "PRICE_FEED_WS_URL")
        },
        **{k: "http://127.0.0.1:9" for k in ("GAMMA_API_URL", "CLOB_API_URL")},
    }
    sup = Supervised(env)
    r = polyedge_cli(sup, "up")  # the wrapper starts the tree through supervisord itself
    assert r.returncode == 0, r.stderr
    # and says what it started and where the dashboard is
    assert "started supervisord pid" in r.stdout and "strategy" in r.stdout, r.stdout
    assert f"dashboard: http://127.0.0.1:{env['API_PORT']}/" in r.stdout, r.stdout
    try:
        st = sup.wait_running(SERVICES, 30)
        pids = [sup.pid(n) for n in SERVICES]
        assert len(st) == 6
        r = polyedge_cli(sup, "down")
        assert r.returncode == 0 and "stopped in" in r.stderr, r.stderr
        # gone means gone: no supervisord, no program, no socket answering
        assert not (root / "data" / "run" / "supervisord.pid").exists()
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        r = polyedge_cli(sup, "status")
        assert r.returncode == 4 and "not running" in r.stderr, r.stderr
    finally:
        if (root / "data" / "run" / "supervisord.pid").exists():
            sup.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by init) counts as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_kill_9_of_supervisord_stops_every_program() -> None:
    """supervisord killed with -9 cannot stop its programs (Supervisor/supervisor#168); each
    notices its parent is gone and stops, instead of running on as an orphan."""
    from eth_account import Account

    from tests.conftest import free_port

    key = Account.create().key.hex()  # a throwaway key, on the simulated venue only
    root = short_tmpdir()
    env = tree_env(
        root,
        POLYEDGE_VENUE="sim",
        SIM_PORT=str(free_port()),
        SIM_WINDOW_SECONDS="20",
        PRIVATE_KEY=key,
    )
    sup = Supervised(env)
    sup.start()
    pidfile = root / "data" / "run" / "supervisord.pid"
    try:
        sup.wait_running((*SERVICES, "simvenue"), 40)
        pids = {n: sup.pid(n) for n in (*SERVICES, "simvenue")}
        assert all(p > 0 for p in pids.values()), pids

        # the observe process never holds the key, not even in its inherited environment
        # (/proc/<pid>/environ is what the process was started with: os.environ.pop cannot
        # change it; supervisord.conf gives observe PRIVATE_KEY="")
        def environ(pid: int) -> dict[str, str]:
            raw = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
            return dict(kv.decode().split("=", 1) for kv in raw if b"=" in kv)

        assert environ(pids["observe"]).get("PRIVATE_KEY", "") == ""
        assert environ(pids["execution"]).get("PRIVATE_KEY") == key  # the test can see it
        os.kill(int(pidfile.read_text()), signal.SIGKILL)
        try:
            wait_for(
                lambda: not [n for n, p in pids.items() if _alive(p)],
                20,
                what="every program to exit after supervisord was killed",
            )
        except AssertionError as e:
            left = [n for n, p in pids.items() if _alive(p)]
            raise AssertionError(f"{e}; still running: {left}") from None
        errors = root / "logs" / "errors.jsonl"
        if errors.exists():
            assert "supervisor_gone" in errors.read_text()
        # nothing left holding a lock: status says not running and names no service
        r = polyedge_cli(sup, "status")
        assert r.returncode == 4 and "not running" in r.stderr, r.stderr
        assert "without a supervisord" not in r.stderr, r.stderr
    finally:
        for p in list(locals().get("pids", {}).values()):
            if _alive(p):
                os.kill(p, signal.SIGKILL)


def test_status_and_up_name_services_running_without_supervisord() -> None:
    root = short_tmpdir()
    env = tree_env(root)
    sup = Supervised(env)
    # a service process holding its lock on this data directory, with no supervisord
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from common.service import acquire_lock;"
            f"acquire_lock(Path({str(root / 'data' / 'run')!r}), 'strategy');"
            "print('locked', flush=True); time.sleep(120)",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        r = polyedge_cli(sup, "status")
        assert r.returncode == 4 and "not running" in r.stderr, r.stderr
        assert f"strategy pid {holder.pid}" in r.stderr, r.stderr
        r = polyedge_cli(sup, "up")
        assert r.returncode == 3 and f"strategy pid {holder.pid}" in r.stderr, r.stderr
        assert not (root / "data" / "run" / "supervisord.pid").exists()  # nothing started
    finally:
        holder.kill()
        holder.wait()
    # the lock file stays, naming the dead pid: not a running service
    r = polyedge_cli(sup, "status")
    assert "without a supervisord" not in r.stderr, r.stderr


def test_why_not_running_shows_only_the_last_runs_stderr_and_nothing_for_a_stop(
    tmp_path: Path,
) -> None:
    """After a deliberate `supervisorctl stop` the problem text is supervisord's state alone,
    and an exit shows a stderr line only when the log was written in the last run (an old,
    unrelated traceback was shown as the reason)."""
    from common.supervisor import ProgramState, why_not_running

    log = tmp_path / "signal.err.log"
    log.write_text("Traceback: an old crash\n")
    old = time.time() - 3600
    os.utime(log, (old, old))

    def prog(state: str, started_s: float) -> ProgramState:
        return ProgramState(
            name="signal",
            state=state,
            pid=0,
            description="",
            since_s=started_s + 5,
            exit_status=1,
            spawn_error="",
            started_s=started_s,
            stderr_path=str(log),
        )

    tail = log.read_text()
    assert why_not_running(prog("STOPPED", time.time() - 10), tail) == ""
    assert why_not_running(prog("EXITED", time.time() - 10), tail) == ""  # written before start
    log.write_text(tail + "polyedge signal: invalid configuration\n")  # this run's last words
    assert why_not_running(prog("BACKOFF", time.time() - 10), log.read_text()) == (
        "polyedge signal: invalid configuration"
    )


def test_parent_watch_fires_only_for_a_supervisord_parent() -> None:
    """A process that merely inherited supervisord's environment (started by a shell or a test
    under supervisord) is not watched: its parent is not a supervisord."""
    from common.service import ParentWatch

    w = ParentWatch({"SUPERVISOR_ENABLED": "1"})  # our parent is pytest's, not a supervisord
    assert w.parent is None and not w.orphaned()
    assert ParentWatch({}).parent is None


def test_up_refuses_bad_settings_before_starting_anything() -> None:
    """A bad value used to start supervisord anyway (every program then in BACKOFF "Exited too
    quickly") and print the default port as the dashboard; `polyedge up` now loads the settings
    the programs will, and refuses naming the problem."""
    root = short_tmpdir()
    sup = Supervised(offline_env(root, API_PORT="abc", POLYEDGE_VENUE="sim"))
    r = polyedge_cli(sup, "up")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "API_PORT" in r.stderr and "'abc'" in r.stderr, r.stderr
    assert "dashboard" not in r.stdout and "started" not in r.stdout, r.stdout
    assert not (root / "data" / "run" / "supervisord.pid").exists()  # nothing started
    assert polyedge_cli(sup, "status").returncode == 4
    # a strategy config file with a field named twice is refused the same way, naming both
    overrides = root / "data" / "config.json"
    overrides.write_text('{"stake_per_trade_usd": 5, "stake_per_trade_usd": 6}')
    sup = Supervised(offline_env(short_tmpdir(), POLYEDGE_DATA_DIR=str(root / "data")))
    r = polyedge_cli(sup, "up")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert str(overrides) in r.stderr and "stake_per_trade_usd" in r.stderr, r.stderr
    assert "twice" in r.stderr, r.stderr
    assert not (root / "data" / "run" / "supervisord.pid").exists()
    # and a POLYEDGE_ENV_FILE that names no file
    sup = Supervised(offline_env(short_tmpdir(), POLYEDGE_ENV_FILE="/nonexistent/typo.env"))
    r = polyedge_cli(sup, "up")
    assert r.returncode == 2 and "/nonexistent/typo.env" in r.stderr, r.stderr
    # an API on every interface without a token (only observe refused it: the tree traded with
    # no API and no emergency stop, BREAKER2 finding 4a)
    root = short_tmpdir()
    sup = Supervised(offline_env(root, API_HOST="0.0.0.0"))
    sup.env.pop("API_TOKEN", None)
    r = polyedge_cli(sup, "up")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "API_HOST: 0.0.0.0 is not loopback and API_TOKEN is not set" in r.stderr, r.stderr
    assert not (root / "data" / "run" / "supervisord.pid").exists()  # nothing started
    # and programs whose directory has no `config/config.json` (BREAKER2 finding 1: they ran
    # the built-in defaults, the unfitted model): refused, naming the file and how to restore it
    checkout = short_tmpdir()
    sup = Supervised(offline_env(checkout, POLYEDGE_VENUE="sim"))
    sup.conf.write_text(sup.conf.read_text().replace(f"directory={REPO}", f"directory={checkout}"))
    r = polyedge_cli(sup, "up")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert str(checkout / "config" / "config.json") in r.stderr, r.stderr
    assert "git checkout config/config.json" in r.stderr, r.stderr
    assert not (checkout / "data" / "run" / "supervisord.pid").exists()  # nothing started
    # a database that cannot be created (BREAKER2 finding 4b: the tree started, execution said
    # only "sqlite3.OperationalError: unable to open database file")
    root = short_tmpdir()
    sup = Supervised(offline_env(root, DATABASE_URL="sqlite:/proc/polyedge-test.db"))
    r = polyedge_cli(sup, "up")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "DATABASE_URL" in r.stderr and "/proc/polyedge-test.db" in r.stderr, r.stderr
    assert not (root / "data" / "run" / "supervisord.pid").exists()  # nothing started


def _bare_python(root: Path) -> Path:
    """A real `python3` without our packages (a venv made without them): what a system python3
    first on PATH is when polyedge's own venv is not activated."""
    venv = root / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    r = subprocess.run([venv / "bin" / "python3", "-c", "import msgspec"], capture_output=True)
    assert r.returncode != 0  # really without our packages
    return venv / "bin"


def _bare_conf(sup: Supervised) -> None:
    """The repository's `command=python3 -m services.X` as shipped (Supervised pins the test's
    interpreter instead)."""
    text = sup.conf.read_text().replace(f"{sys.executable} -m services.", "python3 -m services.")
    sup.conf.write_text(text)


def test_up_runs_the_programs_on_its_own_interpreter_with_a_bare_python3_first_on_path() -> None:
    """`/venv/bin/polyedge up` with the venv not activated: the programs' `python3` used to be
    the first on PATH (the system's, no msgspec: every program in BACKOFF) while `up` said all
    was well. `up` puts its interpreter's directory first on supervisord's PATH."""
    root = short_tmpdir()
    bare = _bare_python(root)
    sup = Supervised(offline_env(root))
    _bare_conf(sup)
    sup.env["PATH"] = os.pathsep.join([str(bare), os.environ.get("PATH", "")])
    r = polyedge_cli(sup, "up")
    try:
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert f"dashboard: http://127.0.0.1:{sup.env['API_PORT']}/" in r.stdout, r.stdout
        st = sup.status()
        assert all(st[n] == "RUNNING" for n in SERVICES), st
        # each program runs on the interpreter that ran `polyedge up`
        exe = {n: os.path.realpath(f"/proc/{sup.pid(n)}/exe") for n in SERVICES}
        assert set(exe.values()) == {os.path.realpath(sys.executable)}, exe
    finally:
        if (root / "data" / "run" / "supervisord.pid").exists():
            sup.stop()


def test_up_reports_a_program_that_does_not_start() -> None:
    """A program that cannot start (here: its interpreter lacks our packages) goes to BACKOFF;
    `up` says so with the program's last stderr line and, all or nothing, stops the tree it
    started (BREAKER2 finding 4: a tree left up without observe traded with no emergency stop)
    and exits 5, not 3 (3 is "a tree already runs, nothing started": `polyedge up || polyedge
    down` must not stop a healthy tree). `--leave-running` leaves it up for a look."""
    root = short_tmpdir()
    bare = _bare_python(root)
    sup = Supervised(offline_env(root))
    text = sup.conf.read_text().replace(
        f"{sys.executable} -m services.signal", f"{bare / 'python3'} -m services.signal"
    )
    sup.conf.write_text(text)
    pidfile = root / "data" / "run" / "supervisord.pid"
    t0 = time.monotonic()
    r = polyedge_cli(sup, "up")
    try:
        assert r.returncode == 5, (r.stdout, r.stderr)
        assert "did not start" in r.stderr and "signal BACKOFF" in r.stderr, r.stderr
        assert "No module named" in r.stderr, r.stderr
        assert "stopping the tree it started" in r.stderr and "stopped in" in r.stderr, r.stderr
        assert "dashboard" not in r.stdout, r.stdout
        print(f"up reported the failure and stopped after {time.monotonic() - t0:.1f} s")
        assert not pidfile.exists()
        r = polyedge_cli(sup, "status")
        assert r.returncode == 4 and "not running" in r.stderr, r.stderr
        assert "without a supervisord" not in r.stderr, r.stderr  # no program left running

        r = polyedge_cli(sup, "up", "--leave-running")
        assert r.returncode == 5, (r.stdout, r.stderr)
        assert "left running (--leave-running)" in r.stderr, r.stderr
        assert pidfile.exists()
        st = sup.wait_running(("execution", "strategy", "observe"), 30)
        assert st["signal"] != "RUNNING", st
        r = polyedge_cli(sup, "status")
        assert r.returncode == 5, (r.stdout, r.stderr)
        # a second `up` on the running tree: refused, 3, and the tree untouched
        r = polyedge_cli(sup, "up")
        assert r.returncode == 3 and "already running" in r.stderr, r.stderr
        assert sup.status()["strategy"] == "RUNNING"
    finally:
        if pidfile.exists():
            sup.stop()


def test_services_name_a_database_they_cannot_open(iso_env: dict[str, str]) -> None:
    """Each service that opens the database exits 2 naming DATABASE_URL and the path, instead of
    a bare `sqlite3.OperationalError: unable to open database file` traceback."""
    env = {**os.environ, "DATABASE_URL": "sqlite:/proc/polyedge-test.db", "PYTHONPATH": str(REPO)}
    for service in ("execution", "strategy", "observe"):
        r = subprocess.run(
            [sys.executable, "-m", f"services.{service}"], cwd=REPO, env=env,
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert r.returncode == 2, (service, r.stderr[-800:])
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith(f"polyedge {service}: cannot open the database"), r.stderr[-800:]
        assert "DATABASE_URL" in last and "/proc/polyedge-test.db" in last, last
        assert "Traceback" not in r.stderr, r.stderr[-800:]


def test_observe_asks_the_supervisord_that_runs_it_whatever_the_data_dir() -> None:
    """BREAKER2 finding 3: with POLYEDGE_DATA_DIR elsewhere than supervisord.conf's `data/`,
    observe looked for supervisord's socket in POLYEDGE_DATA_DIR/run, found none and called
    itself unsupervised: a stopped service was "running" in /health until its heartbeat aged.
    observe now asks the supervisord named by SUPERVISOR_SERVER_URL (set by supervisord)."""
    root = short_tmpdir()
    state = root / "state"  # the services' data dir; supervisord's socket stays in root/data
    sup = Supervised(offline_env(root, POLYEDGE_DATA_DIR=str(state)))
    sup.start()
    try:
        sup.wait_running(SERVICES, 40)
        port = sup.env["API_PORT"]

        def doc() -> dict:
            _, d = http_json(f"http://127.0.0.1:{port}/health")
            assert isinstance(d, dict), d
            return d

        wait_for(
            lambda: doc()["services"]["signal"]["supervisor_state"] == "RUNNING",
            20,
            what="observe to see supervisord's program states",
        )
        assert doc()["supervised"] is True
        # observe runs on the other data dir, where supervisord's socket is not
        assert (state / "run" / "observe.lock").exists()
        assert not (state / "run" / "supervisor.sock").exists()
        sup.ctl("stop", "signal", check=True)
        d = wait_for(
            lambda: (d := doc())["services"]["signal"]["supervisor_state"] == "STOPPED" and d,
            10,
            what="/health to say signal is STOPPED",
        )
        assert any(p.startswith("signal STOPPED") for p in d["problems"]), d["problems"]
        assert d["ok"] is False
    finally:
        sup.stop()
