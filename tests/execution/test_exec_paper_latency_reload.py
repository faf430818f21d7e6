"""The paper execution process for real: `dry_run_latency_ms` changed while it runs (strategy
writes the overrides file after `POST /api/config`) applies to the next paper order without a
restart (BREAKER2 finding 5: the value was read once at start, so fills kept the old latency)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from common import topics
from common.bus import Publisher
from common.config import load_settings
from common.schema import BookSnapshot, OrderFilled, OrderIntent
from tests.conftest import REPO, wait_for
from tests.execution.test_exec_live import Exec

NS = 1_000_000_000
MS = 1_000_000
TOKEN = "TOKEN-UP"
SLUG = "btc-updown-5m-reload"


@pytest.fixture
def paper(iso_env: dict[str, str]) -> Iterator[tuple[Exec, Publisher, Path]]:
    root = Path(iso_env["POLYEDGE_ROOT"])
    cfg = root / "strategy.json"
    doc = json.loads((REPO / "config" / "config.json").read_text())
    doc["dry_run_latency_ms"] = 1500
    cfg.write_text(json.dumps(doc))
    env = {**iso_env, "POLYEDGE_VENUE": "sim", "POLYEDGE_CONFIG": str(cfg)}
    ex = Exec(env)
    s = load_settings(environ=ex.env, dotenv=None)
    md = Publisher(s.bus_endpoint("ingest"))  # the test plays ingest
    ex.start()
    try:
        yield ex, md, cfg
    finally:
        ex.close()
        md.close()


def _book(md: Publisher) -> None:
    t = time.time_ns()
    md.send(
        topics.book_topic(TOKEN),
        BookSnapshot(
            asset_id=TOKEN,
            best_bid=0.49,
            best_ask=0.51,
            bids=[(0.49, 500.0)],
            asks=[(0.51, 500.0)],
            ts_exchange_ns=t,
            ts_recv_ns=t,
        ),
    )


def _paper_fill_delay_ns(ex: Exec, md: Publisher, coid: str) -> int:
    """Send one paper FOK buy and return its fill's time minus the intent's time (ns)."""
    t = time.time_ns()
    ex.send(
        OrderIntent(
            client_order_id=coid,
            slug=SLUG,
            asset_id=TOKEN,
            outcome="Up",
            side="BUY",
            order_type="FOK",
            limit_price=0.55,
            size=5.0,
            expires_ns=t + 30 * NS,
            ts_intent_ns=t,
        )
    )

    def filled() -> OrderFilled | None:
        _book(md)  # fresh books while the paper latency runs
        ex.poll()
        return next(
            (
                m
                for topic, m in ex.seen
                if topic == topics.FILL and getattr(m, "client_order_id", "") == coid
            ),
            None,
        )

    f = wait_for(filled, 20, what=f"the paper fill of {coid}")
    return f.ts_fill_ns - t


def test_dry_run_latency_change_applies_without_restart(
    paper: tuple[Exec, Publisher, Path],
) -> None:
    ex, md, _cfg = paper
    s = load_settings(environ=ex.env, dotenv=None)
    wait_for(lambda: _exec_has_book(ex, md), 15, what="execution holding the test's book")
    pid = ex.proc.pid if ex.proc else 0

    slow = _paper_fill_delay_ns(ex, md, "reload-1")
    assert slow >= 1500 * MS, f"the configured 1500 ms was not applied at start ({slow / MS} ms)"

    # what strategy does with an accepted POST /api/config {"dry_run_latency_ms": 0}
    s.strategy_config_files().write_overrides({"dry_run_latency_ms": 0})
    log = s.log_dir / "execution.jsonl"

    def reloaded() -> bool:
        if not log.exists():
            return False
        recs = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        return any(
            r.get("event") == "config_reloaded" and r.get("dry_run_latency_ms") == 0 for r in recs
        )

    # the next paper orders are sent until one fills sooner than 1500 ms after its intent: with
    # the latency read once at start, every one took >= 1500 ms and this timed out
    n = iter(range(2, 100))
    delays: list[int] = []

    def fast_fill() -> bool:
        delays.append(_paper_fill_delay_ns(ex, md, f"reload-{next(n)}"))
        return delays[-1] < 1500 * MS

    wait_for(fast_fill, 25, what="a paper fill under 1500 ms after the change")
    assert reloaded(), "execution did not log config_reloaded with dry_run_latency_ms 0"
    assert ex.proc is not None and ex.proc.pid == pid and ex.proc.poll() is None  # no restart
    hb = ex.wait(
        lambda m: (
            m[0] == topics.HEARTBEAT_PREFIX + "execution"
            and m[1].detail.get("dry_run_latency_ms") == 0
        ),
        10,
        "a heartbeat saying dry_run_latency_ms 0",
    )
    assert hb[1].pid == pid


def _exec_has_book(ex: Exec, md: Publisher) -> bool:
    """Publish the book; True once execution's heartbeat counts it (the test's ingest is joined)."""
    _book(md)
    ex.poll()
    return any(
        t.startswith(topics.HEARTBEAT_PREFIX) and m.detail.get("books", 0) >= 1 for t, m in ex.seen
    )
