"""Test harness for observe: the real observe (and strategy) processes on an isolated data dir,
plus an in-test stand-in for ingest, signal and execution that binds their bus endpoints and
publishes real schema messages (market data, signals, fills, heartbeats) at a steady pace."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from common.bus import Publisher
from common.config import load_settings
from common.schema import (
    BookSnapshot,
    BtcTrade,
    ClockTick,
    FeedStatus,
    Heartbeat,
    MarketInfo,
    Msg,
    SignalScore,
)
from tests.conftest import REPO, free_port, short_tmpdir, wait_for

UP_TOKEN = "71321045679252212594626385532706912750332728571942532289631379312455583992563"
DOWN_TOKEN = "52114319501245915516055106046884209969926127482827954674443846427813813222426"
TOKEN = "test-token-5b1f"


def make_env(root: Path, **extra: str) -> dict[str, str]:
    (root / "data" / "run").mkdir(parents=True, exist_ok=True)
    (root / "logs").mkdir(exist_ok=True)
    cfg = root / "config.json"
    if not cfg.exists():
        shutil.copy(REPO / "config" / "config.json", cfg)
    env = {
        **os.environ,
        "POLYEDGE_DATA_DIR": str(root / "data"),
        "LOG_DIR": str(root / "logs"),
        "DATABASE_URL": f"sqlite:{root / 'data' / 'trader.db'}",
        "API_PORT": str(free_port()),
        "API_HOST": "127.0.0.1",
        "POLYEDGE_CONFIG": str(cfg),  # a copy of the shipped defaults (never written)
        "PYTHONPATH": str(REPO),
        "POLYEDGE_ROOT": str(root),
    }
    env.pop("API_TOKEN", None)
    env.pop("PYTEST_CURRENT_TEST", None)
    env.update(extra)
    return env


class Proc:
    """A service started as `python -m services.<name>` with its output kept in files."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.env = env
        root = Path(env["POLYEDGE_ROOT"])
        self.out_path = root / f"{name}.proc.log"
        self._out = open(self.out_path, "ab")  # noqa: SIM115 - closed in stop()
        self.p = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
            cwd=REPO,
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.out_path.read_text(errors="replace")[-4000:]

    def stop(self) -> int | None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self._out.close()
        return self.p.returncode


class Observe(Proc):
    def __init__(self, env: dict[str, str]) -> None:
        super().__init__("observe", env)
        self.base = f"http://127.0.0.1:{env['API_PORT']}"
        self.token = env.get("API_TOKEN")

    def wait_up(self, timeout: float = 20.0) -> None:
        def up() -> bool:
            if self.p.poll() is not None:
                raise AssertionError(f"observe exited {self.p.returncode}: {self.output()}")
            try:
                return httpx.get(self.base + "/health", timeout=1).status_code in (200, 503)
            except httpx.HTTPError:
                return False

        wait_for(up, timeout, what="observe API up")

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(self.base + path, timeout=10, **kw)

    def post(
        self, path: str, body: Any = None, token: str | None = "default", **kw: Any
    ) -> httpx.Response:
        headers = dict(kw.pop("headers", {}))
        tok = self.token if token == "default" else token
        if tok:
            headers["Authorization"] = f"Bearer {tok}"
        return httpx.post(self.base + path, json=body, headers=headers, timeout=10, **kw)

    def status(self) -> dict[str, Any]:
        return self.get("/api/status").json()


# extra markets the stand-in can play besides BTC 5m (issue 17): series key -> (spot price USD,
# Up bid, the signal's P(Up), the model's own P(Up))
EXTRA_MARKETS: dict[str, tuple[float, float, float, float]] = {
    "eth-15m": (3_500.0, 0.61, 0.66, 0.70),
    "sol-5m": (180.0, 0.33, 0.30, 0.27),
    "xrp-15m": (2.5, 0.47, 0.49, 0.50),
}


def extra_tokens(key: str) -> tuple[str, str]:
    """The (Up, Down) token ids the stand-in uses for an extra market."""
    return f"{key}-UP-TOKEN", f"{key}-DOWN-TOKEN"


class FakeHotPath:
    """Binds ingest/signal/execution endpoints and plays a small live market on them: BTC 5m
    (slug `btc-updown-5m-test`), plus the `extra` markets of EXTRA_MARKETS, each with its own
    window, books, spot trades and signal."""

    def __init__(
        self, env: dict[str, str], window_s: float = 60.0, extra: tuple[str, ...] = ()
    ) -> None:
        settings = load_settings(env, dotenv=None)
        self.pubs = {
            name: Publisher(settings.bus_endpoint(name))
            for name in ("ingest", "signal", "execution")
        }
        self.lock = threading.Lock()
        self.started_ns = time.time_ns()
        self.window_s = window_s
        self.price = 97_000.0
        self.trades_sent = 0
        self.stop_flag = threading.Event()
        self.extra_lag_ms = 0.0
        self.slug = "btc-updown-5m-test"
        unknown = [k for k in extra if k not in EXTRA_MARKETS]
        if unknown:
            raise ValueError(
                f"no stand-in market {unknown}; expected some of {list(EXTRA_MARKETS)}"
            )
        self.extra = extra
        self.paused: set[str] = set()  # extra markets whose trades, books and signal stop
        # the services whose heartbeats the stand-in sends (a test may play one itself)
        self.beating = {"ingest", "signal", "execution"}
        self.thread = threading.Thread(target=self._run, daemon=True)

    def send(self, service: str, topic: str, msg: Msg) -> None:
        with self.lock:  # zmq sockets are not thread-safe; the test thread sends too
            self.pubs[service].send(topic, msg)

    def market(self, now: int) -> MarketInfo:
        start = now - (now - self.started_ns) % int(self.window_s * 1e9)
        return MarketInfo(
            slug=self.slug,
            condition_id="0xcond",
            up_token_id=UP_TOKEN,
            down_token_id=DOWN_TOKEN,
            window_start_ns=start,
            window_end_ns=start + int(self.window_s * 1e9),
            ts_recv_ns=now,
            question="Bitcoin Up or Down?",
            price_to_beat=97_000.0,
            price_to_beat_source="gamma",
        )

    def extra_market(self, key: str, now: int) -> MarketInfo:
        """The current window of extra market `key`: its window is twice BTC's for a 15m
        series (so countdowns differ), its slug built like the venue's."""
        asset, _, window = key.partition("-")
        span = int(self.window_s * 1e9) * (2 if window == "15m" else 1)
        start = now - (now - self.started_ns) % span
        up, down = extra_tokens(key)
        return MarketInfo(
            slug=f"{asset}-updown-{window}-{start // 1_000_000_000}",
            condition_id=f"0xcond-{key}",
            up_token_id=up,
            down_token_id=down,
            window_start_ns=start,
            window_end_ns=start + span,
            ts_recv_ns=now,
            question=f"{asset.upper()} Up or Down?",
            price_to_beat=EXTRA_MARKETS[key][0],
            price_to_beat_source="gamma",
            asset=asset,
            window=window,
        )

    def _play_extra(self, key: str, i: int, now: int) -> None:
        spot0, bid, p_up, p_model = EXTRA_MARKETS[key]
        asset = key.partition("-")[0]
        price = round(spot0 * (1 + 0.001 * ((i // 3) % 5 - 2)), 4)
        self.send(
            "ingest",
            f"md.{asset}.trade",
            BtcTrade(
                price=price,
                size=1.0,
                ts_exchange_ns=now - 3_000_000,
                ts_recv_ns=now,
                trade_id=i,
                symbol=f"{asset.upper()}USDT",
                asset=asset,
            ),
        )
        if i % 5 != 1:
            return
        m = self.extra_market(key, now)
        self.send("ingest", "md.market", m)
        for token, b in ((m.up_token_id, bid), (m.down_token_id, round(0.96 - bid, 2))):
            self.send(
                "ingest",
                f"md.book.{token}",
                BookSnapshot(
                    asset_id=token,
                    best_bid=b,
                    best_ask=round(b + 0.02, 2),
                    bids=[(b, 50.0)],
                    asks=[(round(b + 0.02, 2), 60.0)],
                    ts_exchange_ns=now - 5_000_000,
                    ts_recv_ns=now,
                    market=m.condition_id,
                ),
            )
        side = "Up" if p_up >= 0.5 else "Down"
        self.send(
            "signal",
            "sig.score",
            SignalScore(
                slug=m.slug,
                p_up=p_up,
                side=side,
                score=0.01,
                edge_up=0.01,
                edge_down=-0.03,
                ts_ns=now,
                origin_ts_recv_ns=now - 2_000_000,
                ts_signal_ns=now,
                inputs={"price": price, "p_model": p_model, "up_bid": bid, "up_ask": bid + 0.02},
                market=key,
            ),
        )

    def _run(self) -> None:
        i = 0
        while not self.stop_flag.is_set():
            now = time.time_ns()
            i += 1
            # a deterministic wiggle: the price visibly moves every few ticks
            self.price = 97_000.0 + 40.0 * ((i // 3) % 11 - 5) + 0.5 * i % 7
            lag_ns = int((3 + self.extra_lag_ms) * 1e6)
            self.send("ingest", "md.clock", ClockTick(ts_ns=now))
            self.send(
                "ingest",
                "md.btc.trade",
                BtcTrade(
                    price=round(self.price, 2),
                    size=0.01,
                    ts_exchange_ns=now - lag_ns,
                    ts_recv_ns=now,
                    trade_id=i,
                ),
            )
            self.trades_sent += 1
            for key in self.extra:
                if key not in self.paused:
                    self._play_extra(key, i, now)
            if i % 5 == 1:
                self.send("ingest", "md.market", self.market(now))
                for token, bid in ((UP_TOKEN, 0.52), (DOWN_TOKEN, 0.46)):
                    self.send(
                        "ingest",
                        f"md.book.{token}",
                        BookSnapshot(
                            asset_id=token,
                            best_bid=bid,
                            best_ask=round(bid + 0.02, 2),
                            bids=[(bid, 120.0), (round(bid - 0.01, 2), 300.0)],
                            asks=[(round(bid + 0.02, 2), 90.0), (round(bid + 0.03, 2), 250.0)],
                            ts_exchange_ns=now - 5_000_000,
                            ts_recv_ns=now,
                            market="0xcond",
                        ),
                    )
                for feed in ("binance", "clob"):
                    self.send(
                        "ingest",
                        f"md.status.{feed}",
                        FeedStatus(
                            feed=feed, connected=True, stale=False, ts_ns=now, last_msg_age_ms=5.0
                        ),
                    )
                # a weak signal: below every entry gate, so strategy never tries to trade
                self.send(
                    "signal",
                    "sig.score",
                    SignalScore(
                        slug=self.slug,
                        p_up=0.55,
                        side="Up",
                        score=0.01,
                        edge_up=0.01,
                        edge_down=-0.03,
                        ts_ns=now,
                        origin_ts_recv_ns=now - 2_000_000,
                        ts_signal_ns=now,
                        # as the real signal does: the BTC price and books it priced from
                        inputs={"price": round(self.price, 2), "up_bid": 0.52, "up_ask": 0.54},
                    ),
                )
            if i % 5 == 2:
                for svc in sorted(self.beating):
                    self.send(
                        svc,
                        f"sys.heartbeat.{svc}",
                        Heartbeat(
                            service=svc,
                            state="running",
                            pid=os.getpid(),
                            started_ns=self.started_ns,
                            ts_ns=now,
                        ),
                    )
            self.stop_flag.wait(0.1)

    def start(self) -> FakeHotPath:
        self.thread.start()
        return self

    def close(self) -> None:
        self.stop_flag.set()
        self.thread.join(5)
        for p in self.pubs.values():
            p.close()


def start_stack(
    root: Path | None = None,
    with_strategy: bool = True,
    markets: tuple[str, ...] = (),
    **extra: str,
) -> tuple[dict[str, str], Observe, Proc | None, FakeHotPath]:
    """observe (and strategy) on a fresh data dir with the stand-in hot path playing BTC 5m and
    the extra `markets` (EXTRA_MARKETS keys), which the config then names after btc-5m."""
    root = root or short_tmpdir()
    if markets:
        cfg = json.loads((REPO / "config" / "config.json").read_text())
        cfg["markets"] = [{"asset": "btc", "window": "5m"}] + [
            {"asset": k.partition("-")[0], "window": k.partition("-")[2]} for k in markets
        ]
        root.mkdir(parents=True, exist_ok=True)
        (root / "config.json").write_text(json.dumps(cfg, indent=2))
    env = make_env(root, **extra)
    hot = FakeHotPath(env, extra=markets).start()
    strategy = Proc("strategy", env) if with_strategy else None
    obs = Observe(env)
    obs.wait_up()
    return env, obs, strategy, hot


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
