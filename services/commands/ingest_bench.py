"""Ingest parse-to-publish micro-benchmark: per-message cost of parse + core + bus send, for each
venue frame type, measured on realistic frames (what `polyedge bench` reports for ingest).

`run(n)` returns `{frame_type: {"n", "mean_us", "p50_us", "p99_us", "msgs_per_s"}}` plus
`"publish_only"` (bus send of an already-built message, the floor under every type).
`python -m services.commands.ingest_bench [N]` prints it as JSON.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

from common.bus import Publisher
from common.schema import BtcTrade, MarketInfo
from services.ingest.core import IngestCore
from services.ingest.parsers import parse_binance, parse_clob, parse_rtds

S = 1_000_000_000
UP = "52114319501245915516055106046884209969926127482827954674443846427813813222426"
DOWN = "71321045679252212594626385532706912750332728571942532289631379312455583992563"
COND = "0x5f65177b394277fd294cd75650044e32ba009a95022d88a0c1d565897d72f8f1"


def _book(asset: str, mid: int) -> str:
    bids = [
        {"price": f"{(mid - i) / 100:.2f}", "size": f"{1000 + 37 * i}.5"} for i in range(12, 0, -1)
    ]
    asks = [
        {"price": f"{(mid + i) / 100:.2f}", "size": f"{900 + 41 * i}.25"} for i in range(12, 0, -1)
    ]
    return json.dumps(
        {
            "market": COND,
            "asset_id": asset,
            "timestamp": "1790877850652",
            "hash": "bc87a529d3",
            "bids": bids,
            "asks": asks,
            "tick_size": "0.01",
            "event_type": "book",
            "last_trade_price": "0.510",
        },
        separators=(",", ":"),
    )


def _price_changes(k: int) -> list[str]:
    out = []
    for i in range(k):
        size = f"{100 + i % 50}.{i % 100:02d}"
        p_up = 40 + i % 5
        out.append(
            json.dumps(
                {
                    "market": COND,
                    "price_changes": [
                        {
                            "asset_id": UP,
                            "price": f"{p_up / 100:.2f}",
                            "size": size,
                            "side": "BUY",
                            "hash": "a1",
                            "best_bid": "0.50",
                            "best_ask": "0.51",
                        },
                        {
                            "asset_id": DOWN,
                            "price": f"{(100 - p_up) / 100:.2f}",
                            "size": size,
                            "side": "SELL",
                            "hash": "b2",
                            "best_bid": "0.49",
                            "best_ask": "0.50",
                        },
                    ],
                    "timestamp": "1790877852045",
                    "event_type": "price_change",
                },
                separators=(",", ":"),
            )
        )
    return out


def frames() -> dict[str, tuple[str, list[str]]]:
    """Frame type -> (feed, frames to cycle through)."""
    agg = [
        json.dumps(
            {
                "stream": "btcusdt@aggTrade",
                "data": {
                    "e": "aggTrade",
                    "E": 1790877850787 + i,
                    "s": "BTCUSDT",
                    "a": 727925158 + i,
                    "p": f"{84740.57 + i * 0.01:.8f}",
                    "q": "0.00331000",
                    "f": 1729111269,
                    "l": 1729111274,
                    "T": 1790877850787 + i,
                    "m": bool(i % 2),
                    "M": True,
                },
            },
            separators=(",", ":"),
        )
        for i in range(64)
    ]
    tick = [
        json.dumps(
            {
                "stream": "btcusdt@bookTicker",
                "data": {
                    "u": 100938337475 + i,
                    "s": "BTCUSDT",
                    "b": f"{84740.57 + i * 0.01:.8f}",
                    "B": "4.91918000",
                    "a": f"{84740.58 + i * 0.01:.8f}",
                    "A": "0.68822000",
                },
            },
            separators=(",", ":"),
        )
        for i in range(64)
    ]
    bba = [
        json.dumps(
            {
                "market": COND,
                "asset_id": UP,
                "best_bid": "0.50",
                "best_ask": "0.51",
                "spread": "0.01",
                "timestamp": "1790877852045",
                "event_type": "best_bid_ask",
            },
            separators=(",", ":"),
        )
    ]
    rtds = [
        json.dumps(
            {
                "connection_id": "x",
                "payload": {
                    "full_accuracy_value": "87459144230786980000",
                    "symbol": "btc/usd",
                    "timestamp": 1790877850000 + 1000 * i,
                    "value": 84740.5 + i,
                },
                "timestamp": 1790877851082 + 1000 * i,
                "topic": "crypto_prices_chainlink",
                "type": "update",
            },
            separators=(",", ":"),
        )
        for i in range(64)
    ]
    return {
        "binance_aggTrade": ("binance", agg),
        "binance_bookTicker": ("binance", tick),
        "clob_price_change": ("clob", _price_changes(64)),
        "clob_book_24_levels": ("clob", [_book(UP, 50), _book(DOWN, 50)]),
        "clob_best_bid_ask": ("clob", bba),
        "rtds_chainlink": ("price_feed", rtds),
    }


def _stats(samples: list[int]) -> dict[str, float]:
    samples.sort()
    n = len(samples)
    mean = sum(samples) / n
    return {
        "n": n,
        "mean_us": round(mean / 1000, 3),
        "p50_us": round(samples[n // 2] / 1000, 3),
        "p99_us": round(samples[min(n - 1, int(n * 0.99))] / 1000, 3),
        "msgs_per_s": round(1e9 / mean) if mean else 0,
    }


def run(n: int = 20_000) -> dict[str, Any]:
    """Time parse -> core -> bus send per frame, `n` frames per type (after a warm-up)."""
    pub = Publisher(f"inproc://ingest-bench-{time.monotonic_ns()}")
    core = IngestCore()
    now = 1790877850 * S
    core.step(
        MarketInfo(
            slug="btc-updown-5m-1790877600",
            condition_id=COND,
            up_token_id=UP,
            down_token_id=DOWN,
            window_start_ns=now - 60 * S,
            window_end_ns=now + 240 * S,
            ts_recv_ns=now,
        ),
        now,
    )
    core.on_clob(parse_clob(_book(UP, 50), now), now)
    core.on_clob(parse_clob(_book(DOWN, 50), now), now)
    handlers: dict[str, tuple[Callable[[Any, int], list[Any]], Callable[..., list[Any]]]] = {
        "binance": (parse_binance, core.on_binance),
        "clob": (parse_clob, core.on_clob),
        "price_feed": (parse_rtds, core.on_price_feed),
    }
    result: dict[str, Any] = {}
    clock = time.perf_counter_ns
    for name, (feed, fr) in frames().items():
        parse, handle = handlers[feed]
        k = len(fr)
        for i in range(min(n, 2000)):  # warm-up
            f = fr[i % k]
            for topic, msg in handle(parse(f, now), now):
                pub.send(topic, msg)
        samples = []
        for i in range(n):
            f = fr[i % k]
            t0 = clock()
            for topic, msg in handle(parse(f, t0), t0):
                pub.send(topic, msg)
            samples.append(clock() - t0)
        result[name] = _stats(samples)
    trade = BtcTrade(price=84740.57, size=0.1, ts_exchange_ns=now, ts_recv_ns=now)
    samples = []
    for _ in range(n):
        t0 = clock()
        pub.send("md.btc.trade", trade)
        samples.append(clock() - t0)
    result["publish_only"] = _stats(samples)
    pub.close()
    return result


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        n = int(args[0]) if args else 20_000
    except ValueError:
        print(
            f"usage: python -m services.commands.ingest_bench [N]; N must be a whole number, got {args[0]!r}",
            file=sys.stderr,
        )
        return 2
    if n <= 0:
        print("N must be > 0", file=sys.stderr)
        return 2
    print(json.dumps({"ingest_parse_to_publish": run(n)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
