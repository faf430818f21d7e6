"""`polyedge up | down | status`: the supervisord tree with plain answers.

`supervisord -c supervisord.conf` and `supervisorctl -c supervisord.conf ...` stay the stable
interface; these wrap them where supervisor's own answers are unhelpful:
- a second `supervisord` on a running tree only says "Another program is already listening on a
  port ..."; `polyedge up` first asks the socket who is there and names that supervisord;
- `supervisorctl shutdown` returns while supervisord is still stopping its programs, and until it
  exits every query answers Fault 6 SHUTDOWN_STATE (Supervisor/supervisor issue #48), which
  `supervisorctl status` prints as an XML-RPC fault; `polyedge down` waits until the tree is gone,
  and `polyedge status` says "shutting down" in that window.

`polyedge up` also does what a bare `supervisord -c supervisord.conf` cannot:
- it loads every service's settings (`load_settings`, `.env` and the environment, and the strategy
  config files) the way the programs will, from the programs' directory, BEFORE starting
  supervisord, and refuses (exit 2) naming every problem: a bad value otherwise shows only as
  every program in BACKOFF "Exited too quickly";
- the programs run `python3 -m services.X`, found on PATH: it puts this interpreter's directory
  first on the PATH supervisord (and so each program) gets, so a venv's `polyedge up` runs the
  programs in that venv even when the venv is not activated;
- it refuses (exit 2) DRY_RUN=false without ENABLE_REAL_TRADING=true and PRIVATE_KEY, naming the
  missing switch (`doctor.blocked_switches`): execution would block every order, paper too, so
  the tree would trade nothing (a bare supervisord still starts it so);
- it prints, before starting, the global emergency stop when it is set (the tree starts halted)
  and any other book (venue x paper/real) holding open positions or halts, from strategy's
  saved state, read only (`book_notices`);
- it opens the database the programs will (`DATABASE_URL`, by default trader.db in
  `POLYEDGE_DATA_DIR`) and refuses (exit 2) one that cannot be created or opened, naming it;
- it waits until every program has been RUNNING for UP_STABLE_S (or UP_SETTLE_S passed), and
  reports a program in BACKOFF/FATAL or that exited, with its last stderr line, instead of
  claiming success. `up` is all or nothing: a tree missing a program is not left trading (without
  observe there is no API and no emergency stop; without execution or strategy nothing manages
  an open position's exit), so `up` then stops the whole tree it started and exits
  EXIT_PROGRAM_DOWN; `--leave-running` leaves it up for a look instead.

Exit codes (README "Running it"):
  0 EXIT_OK            up: every program started; status: every program running; down: stopped
                       (or nothing was running)
  2 EXIT_USAGE         bad usage (no such config file); up: bad settings, config file or database,
                       or switches that block every order (DRY_RUN=false without the other two),
                       nothing started
  3 EXIT_REFUSED       up: a tree already runs (or is still shutting down) on this config, or
                       service processes still hold their locks: nothing started, the running
                       tree untouched
  4 EXIT_NOT_RUNNING   status: no tree answers (or it is shutting down); down: it did not stop in
                       time or answers oddly; up: supervisord did not start or does not answer
  5 EXIT_PROGRAM_DOWN  up: a program did not start (the tree it started was stopped, or left up
                       with --leave-running); status: the tree runs but a program is not running
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

from common.config import (
    ConfigError,
    Settings,
    dotenv_path,
    load_settings,
    settings_source,
    trading_book,
)
from common.db import DatabaseUnavailable, check_writable
from common.service import lock_holders
from common.supervisor import (
    ProgramState,
    SupervisorClient,
    SupervisorError,
    TreeNotRunning,
    TreeShuttingDown,
    why_not_running,
)
from services.commands.doctor import blocked_switches
from services.strategy.store import book_key, book_summaries

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_NOT_RUNNING = 4
EXIT_PROGRAM_DOWN = 5
DOWN_TIMEOUT_S = 60.0  # longer than the largest stopwaitsecs in supervisord.conf


def _say(msg: str) -> None:
    print(f"polyedge: {msg}", file=sys.stderr)


def _conf(path: str) -> Path:
    p = Path(path)
    if not p.is_file():
        _say(f"no supervisord config at {p.resolve()} (run from the repository root or pass -c)")
        raise SystemExit(EXIT_USAGE)
    return p.resolve()


def _server_url(conf: Path) -> str:
    """The socket `supervisorctl -c conf` would use (its [supervisorctl] serverurl)."""
    from supervisor.options import ClientOptions

    opts = ClientOptions()
    opts.realize(["-c", str(conf)])
    return str(opts.serverurl)


def _pidfile(conf: Path) -> Path | None:
    parser = configparser.RawConfigParser()
    parser.read(conf)
    raw = parser.get("supervisord", "pidfile", fallback="")
    return Path(raw.replace("%(here)s", str(conf.parent))) if raw else None


def _pid_of_shutting_down(conf: Path) -> str:
    """supervisord refuses even getPID while shutting down: its pidfile still names it."""
    pf = _pidfile(conf)
    try:
        return pf.read_text().strip() if pf else "?"
    except OSError:
        return "?"


def _program_lines(client: SupervisorClient) -> tuple[list[str], bool]:
    lines: list[str] = []
    all_up = True
    for p in client.programs().values():
        expected_exit = p.state == "EXITED" and p.exit_status == 0  # simvenue outside sim mode
        all_up = all_up and (p.running or expected_exit)
        lines.append(f"{p.name:<10} {p.state:<9} {p.description}")
    return lines, all_up


def _programs_dir(conf: Path) -> Path:
    """The directory the programs run in (their `directory=`, `%(here)s` being the config's
    directory): where their relative paths (`./.env`, `./data`, `config/config.json`) point."""
    parser = configparser.RawConfigParser()
    parser.read(conf)
    for section in parser.sections():
        if section.startswith("program:"):
            raw = parser.get(section, "directory", fallback="")
            if raw:
                return Path(raw.replace("%(here)s", str(conf.parent))).resolve()
    return conf.parent


def program_settings(conf: Path, warn: bool = True) -> Settings:
    """Every service's settings as its program will load them under `conf`: `load_settings`
    (`.env`, then this environment, which supervisord passes on) and the strategy config files
    they name, read from the programs' directory, and the database they open (created when
    missing, as they would). Raises ConfigError naming every problem (the same a service would
    exit 2 with). Unknown keys are warned about on stderr when `warn`."""
    with contextlib.chdir(_programs_dir(conf)):
        settings = load_settings() if warn else load_settings(warn=None)
        settings.strategy_config_files().load()  # strategy, signal, ingest refuse a bad file
        try:  # execution, strategy and observe cannot run without it
            check_writable(settings.database_path)
        except DatabaseUnavailable as e:
            raise ConfigError(settings_source(dotenv_path()), {"DATABASE_URL": str(e)}) from None
        # the paths as the programs see them (they run in that directory)
        return settings


def book_notices(conf: Path, settings: Settings, now_ns: int | None = None) -> list[str]:
    """What the operator should know before this tree starts, from strategy's saved state
    (read only, `book_summaries`): the global emergency stop when it is set (this tree starts
    halted), and every OTHER book (venue x paper/real) holding open positions, orders in flight
    or halts, which this tree neither manages nor lifts (BREAKER3 finding 2). [] when none."""
    venue, mode = trading_book(settings)
    mine = book_key(venue, mode)
    with contextlib.chdir(_programs_dir(conf)):  # the database path as the programs see it
        stop, books = book_summaries(settings.database_path, now_ns or time.time_ns())
    out = []
    if stop["emergency_stop"]:
        where = stop["book"].removeprefix("core:").replace(":", " ") or "an earlier run"
        out.append(
            f"EMERGENCY STOP is set (reason {stop['reason']!r}, set in the {where} book): this "
            f"tree ({venue} {mode}) starts halted, no new entries in any book, until it is "
            "cleared (dashboard, or POST /api/emergency-stop/clear)"
        )
    for key, book in books.items():
        if key == mine:
            continue
        name = key.removeprefix("core:").replace(":", " ")
        if "error" in book:
            out.append(f"note: the {name} book's saved state could not be read: {book['error']}")
            continue
        held = []
        if book["positions"]:
            held.append("open positions " + ", ".join(book["positions"]))
        if book["pending"]:
            held.append(f"{book['pending']} order(s) in flight")
        if book["halts"]:
            held.append("halts " + ", ".join(book["halts"]))
        if held:
            out.append(
                f"note: this tree trades the {venue} {mode} book; the {name} book, which it "
                f"does not manage, holds {'; '.join(held)} (start the tree in that book to "
                "manage them)"
            )
    return out


def _run_dir(conf: Path) -> Path:
    """Where the services' locks are: the settings' run directory (POLYEDGE_DATA_DIR/run), or
    the config's `data/run` when the settings do not load."""
    try:
        with contextlib.chdir(_programs_dir(conf)):
            return load_settings(warn=None).run_dir.resolve()
    except ConfigError:
        return conf.parent / "data" / "run"


def _orphans(conf: Path) -> str | None:
    """A sentence naming the service processes that hold their locks while no supervisord
    answers (a supervisord killed with -9 leaves them running), or None when there are none."""
    run_dir = _run_dir(conf)
    held = lock_holders(run_dir)
    if not held:
        return None
    names = ", ".join(f"{n} pid {p}" for n, p in held)
    pids = " ".join(str(p) for _, p in held if p)
    return (
        f"service processes still run on {run_dir.parent} without a supervisord: {names} "
        "(their supervisord was killed?); each stops by itself within seconds once it notices "
        f"its supervisor is gone; if they do not: kill {pids}"
    )


def status(conf: Path) -> int:
    client = SupervisorClient(_server_url(conf))
    try:
        ident = client.identity()
        lines, all_up = _program_lines(client)
    except TreeNotRunning:
        _say(f"not running: no supervisord answers on {client.server_url} (config {conf})")
        orphans = _orphans(conf)
        if orphans:
            _say(orphans)
        return EXIT_NOT_RUNNING
    except TreeShuttingDown:
        _say(
            f"shutting down: supervisord pid {_pid_of_shutting_down(conf)} is stopping its "
            "programs and answers no queries until it exits (`polyedge down` waits for it)"
        )
        return EXIT_NOT_RUNNING
    except SupervisorError as e:
        _say(f"supervisord on {client.server_url} answered oddly: {e}")
        return EXIT_NOT_RUNNING
    print(f"{ident.describe()}, {ident.state}, socket {client.path}")
    print("\n".join(lines))
    return EXIT_OK if all_up else EXIT_PROGRAM_DOWN


def down(conf: Path, timeout_s: float = DOWN_TIMEOUT_S) -> int:
    client = SupervisorClient(_server_url(conf))
    t0 = time.monotonic()
    try:
        ident = client.identity()
        client.shutdown()
        what = ident.describe()
        _say(f"stopping {what} and its programs ...")
    except TreeNotRunning:
        _say(f"not running: no supervisord answers on {client.server_url}; nothing to stop")
        return EXIT_OK
    except TreeShuttingDown:
        what = f"supervisord pid {_pid_of_shutting_down(conf)}"
        _say(f"{what} is already shutting down; waiting for it ...")
    except SupervisorError as e:
        _say(f"supervisord on {client.server_url} answered oddly: {e}")
        return EXIT_NOT_RUNNING
    if not client.wait_gone(timeout_s):
        _say(f"{what} still answers after {timeout_s:g} s; see its log (logs/supervisord.log)")
        return EXIT_NOT_RUNNING
    _say(f"stopped in {time.monotonic() - t0:.1f} s")
    return EXIT_OK


def preflight(conf: Path) -> str | None:
    """Why a new supervisord on `conf` would fail because a tree already holds its socket, in
    words that name that tree; None when the socket is free."""
    client = SupervisorClient(_server_url(conf))
    try:
        ident = client.identity()
    except TreeNotRunning:
        return None
    except TreeShuttingDown:
        return (
            f"the previous tree (supervisord pid {_pid_of_shutting_down(conf)}) is still "
            f"shutting down on {client.path}; wait for it (`polyedge down` waits) and retry"
        )
    except SupervisorError as e:
        return f"something answers on {client.path} but not like supervisord ({e})"
    try:
        lines, _ = _program_lines(client)
    except (TreeShuttingDown, SupervisorError):
        lines = []
    programs = "".join(f"\n  {ln}" for ln in lines)
    return (
        f"a Polyedge tree is already running on {client.path}: {ident.describe()}{programs}\n"
        f"stop it first with `polyedge down` (or `supervisorctl -c {conf.name} shutdown`), "
        f"or look at it with `polyedge status`"
    )


UP_WAIT_S = 20.0  # supervisord daemonizes at once; its socket answers within a second or two
UP_SETTLE_S = 60.0  # how long `up` waits for every program to have started (imports under load)
UP_STABLE_S = 3.0  # a program counts as started once RUNNING this long (startsecs is 1)
FAILED_STATES = ("BACKOFF", "FATAL")


def supervisord_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment to start supervisord with: this one, with the directory of the running
    interpreter first on PATH, so the programs' `python3 -m services.X` (supervisord.conf) is
    the interpreter `polyedge` runs on (a venv's, even when the venv is not activated) rather
    than whatever `python3` comes first (the system's, without our packages)."""
    env = dict(os.environ if environ is None else environ)
    bindir = str(Path(sys.executable).parent)
    path = env.get("PATH", "")
    if path.split(os.pathsep)[0] != bindir:
        env["PATH"] = os.pathsep.join([bindir, path]) if path else bindir
    return env


def _failed(p: ProgramState) -> bool:
    return p.state in FAILED_STATES or (p.state == "EXITED" and p.exit_status != 0)


def _started(p: ProgramState, now_s: float) -> bool:
    expected_exit = p.state == "EXITED" and p.exit_status == 0  # simvenue outside sim mode
    return expected_exit or (p.running and now_s - p.started_s >= UP_STABLE_S)


def settle(client: SupervisorClient, timeout_s: float = UP_SETTLE_S) -> list[ProgramState]:
    """Wait until every program has started (RUNNING for UP_STABLE_S, or exited 0 as expected)
    or one has failed (BACKOFF, FATAL, exited non-zero), up to `timeout_s` seconds. Returns the
    programs that failed, or at the deadline those not started; [] when all started. Raises
    the client's errors (TreeNotRunning, ...) when supervisord stops answering."""
    deadline = time.monotonic() + timeout_s
    while True:
        programs = list(client.programs().values())
        failed = [p for p in programs if _failed(p)]
        if failed:
            return failed
        now = time.time()
        late = [p for p in programs if not _started(p, now)]
        if not late or time.monotonic() > deadline:
            return late
        time.sleep(0.2)


def _why(client: SupervisorClient, p: ProgramState) -> str:
    try:
        tail = client.stderr_tail(p.name)
    except SupervisorError:
        tail = ""
    why = why_not_running(p, tail) or p.spawn_error
    where = f" (stderr: {p.stderr_path})" if p.stderr_path else ""
    return f"{p.name} {p.state}: {why or p.description}{where}"


def up(conf: Path, leave_running: bool = False) -> int:
    """Start the tree on `conf` unless one runs; all or nothing unless `leave_running` (see the
    module docstring). Returns one of the EXIT_* codes."""
    reason = preflight(conf) or _orphans(conf)
    if reason is not None:
        _say(reason)
        return EXIT_REFUSED
    try:  # a bad setting would only show as every program in BACKOFF "Exited too quickly"
        settings = program_settings(conf)
    except ConfigError as e:
        _say(f"not starting: {e}")
        return EXIT_USAGE
    blocked = blocked_switches(settings)
    if blocked is not None:  # a tree that trades nothing, paper included (BREAKER3 finding 7)
        _say(
            f"not starting: {blocked} (a bare `supervisord -c {conf.name}` starts it anyway, "
            "every order blocked)"
        )
        return EXIT_USAGE
    for notice in book_notices(conf, settings):
        _say(notice)
    env = supervisord_env()
    if not (Path(sys.executable).parent / "python3").exists():
        _say(
            f"warning: no python3 next to {sys.executable}: the programs run the first python3 "
            "on PATH, which may lack our packages"
        )
    # the stable interface itself, in this interpreter (the one the package is installed in);
    # supervisord daemonizes (nodaemon=false) and this returns once it has
    r = subprocess.run([sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)], env=env)
    if r.returncode != 0:
        _say(f"supervisord -c {conf} exited {r.returncode}; see logs/supervisord.log")
        return EXIT_NOT_RUNNING
    client = SupervisorClient(_server_url(conf))
    deadline = time.monotonic() + UP_WAIT_S
    while True:
        try:
            ident = client.identity()
            break
        except (TreeNotRunning, TreeShuttingDown, SupervisorError):
            if time.monotonic() > deadline:
                _say(
                    f"supervisord started but does not answer on {client.server_url} after "
                    f"{UP_WAIT_S:g} s; see logs/supervisord.log"
                )
                return EXIT_NOT_RUNNING
            time.sleep(0.2)
    try:
        bad = settle(client)
        lines, _ = _program_lines(client)
        reasons = [_why(client, p) for p in bad]
    except (TreeNotRunning, TreeShuttingDown, SupervisorError) as e:
        _say(f"supervisord pid {ident.pid} stopped answering while its programs started: {e!r}")
        return EXIT_NOT_RUNNING
    print(f"started {ident.describe()}, socket {client.path}")
    print("\n".join(lines))
    if bad:
        names = {p.name for p in bad}
        without = (
            "no API, dashboard or emergency stop"
            if "observe" in names
            else "a tree missing a program must not trade"
        )
        _say(f"{len(bad)} program(s) did not start:\n  " + "\n  ".join(reasons))
        if leave_running:
            _say(
                f"the tree is left running (--leave-running) with {without}: what runs can "
                "trade; `polyedge down` stops it"
            )
            return EXIT_PROGRAM_DOWN
        _say(f"stopping the tree it started ({without}); the logs stay in logs/ ...")
        code = down(conf)
        if code != EXIT_OK:
            _say("the tree did NOT stop: run `polyedge down`; what runs can trade")
        return EXIT_PROGRAM_DOWN
    print(
        f"dashboard: {_dashboard_url(settings)}  "
        "(`polyedge status` to look again, `polyedge down` to stop)"
    )
    return EXIT_OK


def _dashboard_url(settings: Settings) -> str:
    api = settings.api
    host = "127.0.0.1" if api.host in ("0.0.0.0", "::", "") else api.host
    host = f"[{host}]" if ":" in host else host  # an IPv6 address (RFC 3986 section 3.2.2)
    return f"http://{host}:{api.port}/"


def main(cmd: str, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"polyedge {cmd}", description=__doc__.split("\n")[0])
    parser.add_argument(
        "-c", "--configuration", default="supervisord.conf", help="supervisord config file"
    )
    if cmd == "up":
        parser.add_argument(
            "--leave-running",
            action="store_true",
            help="when a program does not start, leave the rest of the tree running for a look "
            "(it can trade; without observe there is no emergency stop) instead of stopping it",
        )
    args = parser.parse_args(argv)
    conf = _conf(args.configuration)
    if cmd == "up":
        return up(conf, leave_running=args.leave_running)
    return {"down": down, "status": status}[cmd](conf)
