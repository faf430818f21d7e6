"""Shared harness for the chaos tests: one real supervisord tree on the simulated venue (isolated
temp dir, short windows, a permissive strategy config), a background recorder of the bus, and
readers for the ledger, strategy's persisted state, the observe API and the venue's control API.

Everything here observes the system from the outside, the way an operator would: through the
bus, SQLite (read-only), HTTP and supervisorctl. Nothing reaches into a service's memory.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from common import topics
from common.bus import Subscriber
from common.schema import Envelope, Msg, Probe
from tests.conftest import Supervised, free_port, short_tmpdir, wait_for

SERVICES = ("execution", "strategy", "signal", "ingest", "observe")
HOT_PATH = ["ingest", "signal", "strategy", "execution"]
API_TOKEN = "chaos-token-0123456789"

# Entries on every signal, early in the window, held to resolution: a position is open for most
# of every window, and one entry per window makes a double order easy to see in the ledger.
HOLD_CONFIG: dict[str, Any] = {
    "min_signal_score": 0.0,
    "min_edge_pct": 0.0,
    "entry_window_min_sec": 0,
    "min_seconds_before_close": 10,
    "max_trades_per_day": 10_000,
    "max_daily_loss_usd": 1_000_000.0,
    "max_consecutive_losses": 1000,
    "take_profit_pct": 10.0,
    "stop_loss_pct": 1.0,
    # the faults are the subject, not the entry rules: an entry may come again in the same
    # window after an exit (the product's default is one a window)
    "max_entries_per_window": 1000,
}


def ns() -> int:
    return time.time_ns()


@dataclass
class Seen:
    t_ns: int  # when the test process received it
    topic: str
    env: Envelope

    @property
    def msg(self) -> Msg:
        return self.env.msg


@dataclass
class BusRecorder:
    """Subscribes to every publisher from a thread and keeps what it saw, in arrival order."""

    endpoints: list[str]
    prefixes: tuple[str, ...]
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop_flag: threading.Event = field(default_factory=threading.Event)
    stats: dict[str, Any] = field(default_factory=dict)

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="bus-recorder", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        sub = Subscriber(self.endpoints, self.prefixes)
        try:
            while not self.stop_flag.is_set():
                if not sub.sock.poll(100):
                    continue
                items = sub.drain()
                t = ns()
                with self.lock:
                    self.seen.extend(Seen(t, topic, env) for topic, env in items)
                    self.stats = {k: v for k, v in sub.stats.items()}
        finally:
            sub.close()

    def close(self) -> None:
        self.stop_flag.set()
        self.thread.join(5)

    def since(self, t_ns: int, prefix: str = "") -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.t_ns >= t_ns and s.topic.startswith(prefix)]

    def first(
        self, prefix: str, pred: Callable[[Msg], bool], after_ns: int = 0, timeout: float = 10.0
    ) -> Seen:
        def find() -> Seen | None:
            for s in self.since(after_ns, prefix):
                if pred(s.msg):
                    return s
            return None

        return wait_for(find, timeout, 0.02, what=f"a {prefix} message matching the condition")


class Tree:
    """A running supervisord tree on the simulated venue, and ways to look at it."""

    def __init__(self, root: Path, env: dict[str, str], sup: Supervised) -> None:
        self.root = root
        self.env = env
        self.sup = sup
        self.api = f"http://127.0.0.1:{env['API_PORT']}"
        self.sim = f"http://127.0.0.1:{env['SIM_PORT']}"
        self.db_path = root / "data" / "trader.db"
        self.run_dir = root / "data" / "run"
        self.window_s = 300  # the simulated venue's window length (running_tree sets it)
        self.recorder = BusRecorder(
            [self.endpoint(s) for s in ("ingest", "signal", "strategy", "execution")],
            ("exec.", "strat.", "risk.", "sys.", "md.status.", "md.market", "md.resolved"),
        )

    # --- bus ----------------------------------------------------------------------------------
    def endpoint(self, service: str) -> str:
        return f"ipc://{self.run_dir.resolve()}/{service}.sock"

    def probe_through(self, after_ns: int, timeout: float = 10.0) -> Seen:
        """The first probe that left ingest after `after_ns` and came out of execution."""
        return self.recorder.first(
            topics.PROBE_PREFIX + "execution",
            lambda m: isinstance(m, Probe) and m.ts_origin_ns > after_ns and m.hops == HOT_PATH,
            after_ns,
            timeout,
        )

    # --- HTTP ---------------------------------------------------------------------------------
    def get(self, path: str, timeout: float = 5.0) -> httpx.Response:
        return httpx.get(self.api + path, timeout=timeout)

    def post(self, path: str, body: Any = None, token: str | None = API_TOKEN) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.post(self.api + path, json=body, headers=headers, timeout=10)

    def status(self) -> dict[str, Any]:
        r = self.get("/api/status")
        r.raise_for_status()
        return r.json()

    def sim_state(self) -> dict[str, Any]:
        return httpx.get(self.sim + "/sim/state", timeout=5).json()

    def fault(self, name: str, channel: str = "all", **kw: Any) -> dict[str, Any]:
        r = httpx.post(
            self.sim + "/sim/fault", json={"name": name, "channel": channel, **kw}, timeout=5
        )
        assert r.status_code == 200, r.text
        return r.json()

    def clear_faults(self) -> None:
        httpx.post(self.sim + "/sim/fault/clear", timeout=5)

    # --- SQLite (read-only; a fresh connection each time so no snapshot is held) --------------
    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        con = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def strategy_state(self) -> dict[str, Any]:
        rows = self.query("SELECT value FROM strategy_state WHERE key LIKE 'core:%'")
        return json.loads(rows[0][0]) if rows else {}

    def position(self) -> dict[str, Any] | None:
        return self.strategy_state().get("position")

    def wait_position(self, min_left_s: float, timeout: float = 40.0) -> dict[str, Any]:
        """An open position (strategy's persisted state) with at least `min_left_s` to run."""

        def ready() -> dict[str, Any] | None:
            p = self.position()
            if p and p.get("size", 0) > 0 and (p["window_end_ns"] - ns()) / 1e9 >= min_left_s:
                return p
            return None

        return wait_for(ready, timeout, 0.1, what=f"a position open with >= {min_left_s}s left")

    # --- processes ----------------------------------------------------------------------------
    def pids(self) -> dict[str, int]:
        return {s: self.sup.pid(s) for s in SERVICES}

    def kill9(self, service: str) -> tuple[int, int]:
        """SIGKILL a service; returns (old pid, kill time ns)."""
        pid = self.sup.pid(service)
        assert pid > 0, f"{service} has no pid"
        t = ns()
        os.kill(pid, signal.SIGKILL)
        return pid, t

    def wait_restarted(self, service: str, old_pid: int, timeout: float = 15.0) -> int:
        def back() -> int:
            st = self.sup.status()
            if st.get(service) != "RUNNING":
                return 0
            pid = self.sup.pid(service)
            return pid if pid not in (0, old_pid) else 0

        return wait_for(back, timeout, 0.05, what=f"{service} RUNNING again with a new pid")

    def all_running(self) -> dict[str, str]:
        st = self.sup.status()
        assert all(st.get(s) == "RUNNING" for s in SERVICES), st
        return st

    def errors_log(self) -> list[dict[str, Any]]:
        p = self.root / "logs" / "errors.jsonl"
        if not p.exists():
            return []
        return [json.loads(ln) for ln in p.read_text().splitlines() if ln.strip()]

    # --- ledger invariants --------------------------------------------------------------------
    def ledger_problems(self) -> list[str]:
        """What is wrong with the order/fill ledger: double entries, lost or orphan fills."""
        problems: list[str] = []
        # a filled order whose fills do not add up to its filled size lost (or doubled) a fill
        for coid, status, filled, fsum, n in self.query(
            "SELECT o.client_order_id, o.status, o.filled_size, COALESCE(SUM(f.size), 0), "
            "COUNT(f.id) FROM orders o LEFT JOIN fills f ON f.client_order_id = o.client_order_id "
            "GROUP BY o.client_order_id"
        ):
            if abs(filled - fsum) > 1e-6:
                problems.append(f"order {coid} ({status}) filled {filled} but fills sum {fsum}")
            if status == "filled" and n == 0:
                problems.append(f"order {coid} is filled but has no fill row")
        for (coid,) in self.query(
            "SELECT DISTINCT client_order_id FROM fills WHERE client_order_id NOT IN "
            "(SELECT client_order_id FROM orders)"
        ):
            problems.append(f"fill for unknown order {coid}")
        # one open position at a time: walking fills and settlements in time order, a new entry
        # may only come once the previous position was exited or settled, or its window ended
        # (it then waits for resolution aside and the next window may trade)
        events = [
            (ts, 0, asset, side, coid, slug)
            for ts, asset, side, coid, slug in self.query(
                "SELECT ts_fill_ns, asset_id, side, client_order_id, slug FROM fills"
                " ORDER BY ts_fill_ns, id"
            )
        ] + [
            (ts, 1, asset, "SETTLE", "", slug)
            for ts, asset, slug in self.query("SELECT ts_ns, asset_id, slug FROM settlements")
        ]
        window_ns = self.window_s * 1_000_000_000
        holding: dict[str, tuple[str, str]] = {}  # asset -> (entry client order id, slug)
        entered: set[str] = set()
        for ts, _order, asset, side, coid, slug in sorted(events):
            if side == "BUY":
                if coid in entered:
                    continue  # several fill rows of one order are one entry
                entered.add(coid)
                still_open = {
                    a: held
                    for a, held in holding.items()
                    if _window_start_ns(held[1]) + window_ns > ts
                }
                if still_open:
                    problems.append(f"entry {coid} while {still_open} was still open")
                holding[asset] = (coid, slug)
            else:
                holding.pop(asset, None)
        return problems

    def settled_assets(self) -> set[str]:
        return {a for (a,) in self.query("SELECT asset_id FROM settlements")}


def _window_start_ns(slug: str) -> int:
    """A market's window start from its slug (`btc-updown-5m-<start unix seconds>`)."""
    tail = slug.rsplit("-", 1)[-1]
    return int(tail) * 1_000_000_000 if tail.isdigit() else 0


def _sim_up(base: str) -> bool:
    try:
        return httpx.get(base + "/sim/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _api_up(base: str) -> bool:
    """observe's API answers (200 healthy or 503 with its problems): uvicorn is listening."""
    try:
        return httpx.get(base + "/health", timeout=2).status_code in (200, 503)
    except httpx.HTTPError:
        return False


@contextmanager
def running_tree(
    config: dict[str, Any],
    window_s: int = 20,
    extra_env: dict[str, str] | None = None,
    sim_port: int | None = None,
) -> Iterator[Tree]:
    """Start the real tree on the simulated venue in a temp dir; tear it down afterwards."""
    root = short_tmpdir()
    env = {
        "POLYEDGE_DATA_DIR": str(root / "data"),
        "LOG_DIR": str(root / "logs"),
        "DATABASE_URL": f"sqlite:{root / 'data' / 'trader.db'}",
        "API_PORT": str(free_port()),
        "SIM_PORT": str(sim_port or free_port()),
        "POLYEDGE_ROOT": str(root),
    }
    (root / "data" / "run").mkdir(parents=True)
    (root / "logs").mkdir()
    cfg = root / "strategy.json"
    cfg.write_text(json.dumps(config))
    sup = Supervised(
        env,
        {
            "POLYEDGE_VENUE": "sim",
            "SIM_WINDOW_SECONDS": str(window_s),
            "POLYEDGE_CONFIG": str(cfg),
            "API_TOKEN": API_TOKEN,
            "SIM_SEED": "7",
            **(extra_env or {}),
        },
    )
    tree = Tree(root, env, sup)
    tree.window_s = window_s
    sup.start()
    try:
        sup.wait_running(SERVICES, 30)
        # supervisord calls simvenue RUNNING at once (startsecs=0); its port opens seconds later
        # on a loaded machine, and the tests talk to it before anything else does
        wait_for(lambda: _sim_up(tree.sim), 60, what="simvenue answering /sim/health")
        tree.recorder.start()
        # the whole hot path is up when a probe makes it from ingest through execution
        tree.probe_through(0, 30)
        # supervisord calls observe RUNNING after startsecs; its API listens a little later
        wait_for(lambda: _api_up(tree.api), 30, what="observe's API answering /health")
        yield tree
    finally:
        try:
            tree.recorder.close()
        except Exception:  # noqa: BLE001 - never started
            pass
        try:
            sup.stop()
        finally:
            if not os.environ.get("POLYEDGE_KEEP_CHAOS_DIR"):
                shutil.rmtree(root, ignore_errors=True)
