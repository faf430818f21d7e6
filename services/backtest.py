"""`polyedge backtest`: the signal and strategy cores plus a dry-run fill model, wired in one
process on event time, fed either the seeded simulated market or a recorded capture.

    polyedge backtest --sim-seed 1 --windows 50 [--window-seconds 300] [--json] [--record CAP]
    polyedge backtest CAPTURE [--json]

A capture is JSON lines of market-data bus messages as `polyedge tap` prints them (`kind` plus
the message fields; other keys and non-market-data kinds are ignored), or as `--record` writes
them. Nothing reads the wall clock, so the same input gives a byte-identical trade list.
The report has the trades, P&L, win rate, fees, and the Brier score and calibration table of the
model's probability (sampled once a second of event time) against each window's outcome.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import msgspec

from common import topics
from common.config import (
    ConfigError,
    StrategyConfig,
    config_to_dict,
    load_strategy_config,
    validate_strategy_config,
)
from common.schema import (
    BookDelta,
    BookSnapshot,
    BtcTrade,
    ClockTick,
    FeedStatus,
    Fill,
    MarketInfo,
    MarketResolved,
    Message,
    Msg,
    OrderIntent,
    OrderReject,
    PriceFeedTick,
    SignalScore,
    to_dict,
)
from services.execution.fills import OrderTerms, simulate_fill
from services.ingest import parsers
from services.ingest.capture import CaptureLine, capture_files, read_capture
from services.ingest.core import IngestCore
from services.signal.core import SignalCore
from services.strategy.core import StrategyCore

NS = 1_000_000_000
MS = 1_000_000
CLOCK_NS = 100 * MS  # ingest's timer: clock ticks, feed status, republishing
GAMMA_POLL_NS = 5 * NS  # how often the simulated discovery asks Gamma
SIM_EPOCH_S = 1_767_225_600  # 2026-01-01T00:00:00Z: a fixed start keeps runs comparable
MD_KINDS = (
    BtcTrade,
    BookSnapshot,
    BookDelta,
    PriceFeedTick,
    MarketInfo,
    MarketResolved,
    ClockTick,
    FeedStatus,
)
CALIBRATION_BINS = 10


# --------------------------------------------------------------------------- venue frames
Frame = tuple[int, str, str]  # (receive time ns, channel, frame text): ingest's capture line


class IngestReplay:
    """Raw venue frames -> the market-data messages ingest would publish, through ingest's own
    parsers and core (books, market roles, price-to-beat ranking, resolutions, feed status),
    with its 100 ms timer run on event time. Unparseable frames are counted and skipped."""

    def __init__(self) -> None:
        self.core = IngestCore()
        for health in self.core.health.values():
            health.connected = True  # a capture's frames came over open connections
        self.next_tick: int | None = None
        self.errors = 0
        self.frames = 0

    def _timers(self, until_ns: int) -> list[tuple[str, Msg]]:
        out: list[tuple[str, Msg]] = []
        if self.next_tick is None:
            self.next_tick = until_ns
        while self.next_tick <= until_ns:
            out.extend(self.core.on_timer(self.next_tick))
            self.next_tick += CLOCK_NS
        return out

    def feed(self, ts_ns: int, channel: str, text: str) -> list[Msg]:
        out = self._timers(ts_ns)
        self.frames += 1
        kind = channel.split(":", 1)[0]
        core = self.core
        try:
            if kind == "binance":
                out.extend(core.on_binance(parsers.parse_binance(text, ts_ns), ts_ns))
            elif kind in ("clob", "market"):
                out.extend(core.on_clob(parsers.parse_clob(text, ts_ns), ts_ns))
            elif kind == "rtds":
                out.extend(core.on_price_feed(parsers.parse_rtds(text, ts_ns), ts_ns))
            elif kind == "gamma":
                out.extend(core.on_market(parsers.parse_gamma(text, ts_ns), ts_ns))
        except parsers.ParseError:
            self.errors += 1
        return [m for topic, m in out if topic.startswith("md.")]

    def finish(self, ts_ns: int) -> list[Msg]:
        return [m for topic, m in self._timers(ts_ns) if topic.startswith("md.")]


def replay(frames: Iterable[Frame]) -> Iterator[Msg]:
    ingest = IngestReplay()
    last = 0
    for ts, channel, text in frames:
        last = max(last, ts)
        yield from ingest.feed(ts, channel, text)
    yield from ingest.finish(last)


def sim_frames(seed: int, windows: int, window_s: int) -> Iterator[Frame]:
    """The frames ingest would receive from the simulated venue for `windows` windows: the
    Binance aggTrade stream, the market channel, the price feed, and a Gamma event poll of the
    current and next window every few seconds (discovery)."""
    from services.simvenue.gamma import event_doc
    from services.simvenue.market import SimMarket

    start_ns = (SIM_EPOCH_S // window_s) * window_s * NS
    last_start_ns = start_ns + (windows - 1) * window_s * NS
    market = SimMarket(seed, window_s, start_ns, book_ticker_hz=0.0)
    end_ns = last_start_ns + window_s * NS + int((min(54.0, 0.15 * window_s) + 3) * NS)
    next_poll = start_ns
    t = start_ns
    while t <= end_ns:
        for ts, channel, text in market.advance(t):
            if channel.startswith("binance:") and not channel.endswith("@aggTrade"):
                continue  # ingest subscribes aggTrade (and bookTicker, which the cores ignore)
            yield ts, channel, text
        if t >= next_poll:
            next_poll = t + GAMMA_POLL_NS
            for w in (market.current_window(), market.next_window()):
                if w is not None and w.start_s * NS <= last_start_ns:
                    yield t, "gamma", json.dumps(event_doc(market, w, t), separators=(",", ":"))
        t += CLOCK_NS


def read_frames(path: Path) -> Iterator[Frame]:
    """Frames of an ingest capture: a gzip file or directory of them (services/ingest/capture.py)
    or plain JSON lines of `{"ts_recv_ns", "channel", "frame"}`."""
    if path.is_dir():
        for f in capture_files(path):
            yield from read_capture(f)
        return
    if path.suffix == ".gz":
        yield from read_capture(path)
        return
    with path.open("rb") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    c = _frame_decoder.decode(line)
                except msgspec.DecodeError as e:
                    raise ValueError(f"{path}:{n}: not a capture line: {e}") from None
                yield c.ts_recv_ns, c.channel, c.frame


_frame_decoder = msgspec.json.Decoder(CaptureLine)
_msg_decoder = msgspec.json.Decoder()


def capture_kind(path: Path) -> str:
    """ "frames" (raw venue frames, ingest's capture) or "messages" (bus messages, tap output)."""
    if path.is_dir() or path.suffix == ".gz":
        return "frames"
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                try:
                    doc = _msg_decoder.decode(line)
                except msgspec.DecodeError:
                    break
                if isinstance(doc, dict) and "frame" in doc:
                    return "frames"
                if isinstance(doc, dict) and "kind" in doc:
                    return "messages"
                break
    raise ValueError(
        f"{path}: not a capture (expected JSON lines with 'frame' (ingest capture) or 'kind' "
        "(polyedge tap output))"
    )


def capture_messages(path: Path) -> Iterator[Msg]:
    """Market-data messages from a JSON-lines file of bus messages (tap output)."""
    with path.open("rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                doc = _msg_decoder.decode(line)
            except msgspec.DecodeError as e:
                raise ValueError(f"{path}:{n}: not JSON: {e}") from None
            if not isinstance(doc, dict) or "kind" not in doc:
                raise ValueError(f"{path}:{n}: expected a message object with a 'kind' field")
            for k in ("topic", "seq", "epoch"):
                doc.pop(k, None)
            try:
                msg = msgspec.convert(doc, Message)
            except msgspec.ValidationError as e:
                raise ValueError(f"{path}:{n}: {e}") from None
            if isinstance(msg, MD_KINDS):
                yield msg


# --------------------------------------------------------------------------- dry-run fills
@dataclass
class DryRunExecution:
    """Fills intents at once against the current book with execution's own dry-run fill math
    (services/execution/fills.py: tick/size grid, venue minimums, FOK/FAK walk, per-trade fee).
    Our own taking is removed from the book until the venue's next update of those levels."""

    live: dict[str, tuple[dict[float, float], dict[float, float]]] = field(default_factory=dict)

    def on_md(self, msg: Msg) -> None:
        if isinstance(msg, BookSnapshot):
            self.live[msg.asset_id] = (dict(msg.bids), dict(msg.asks))
        elif isinstance(msg, BookDelta):
            bids, asks = self.live.setdefault(msg.asset_id, ({}, {}))
            for ch in msg.changes:
                side = bids if ch.side == "BUY" else asks
                if ch.size <= 0:
                    side.pop(ch.price, None)
                else:
                    side[ch.price] = ch.size

    def on_intent(self, it: OrderIntent, now_ns: int) -> list[Msg]:
        bids, asks = self.live.get(it.asset_id, ({}, {}))
        terms = OrderTerms.of(
            it.side,
            it.order_type,
            str(it.limit_price),
            str(it.size),
            str(it.tick_size),
            str(it.min_order_size),
            str(it.fee_rate),
            str(it.fee_exponent),
        )
        res = simulate_fill(
            terms,
            [(str(p), str(q)) for p, q in bids.items()],
            [(str(p), str(q)) for p, q in asks.items()],
        )
        if not res.trades:
            return [
                OrderReject(
                    client_order_id=it.client_order_id,
                    ts_ns=now_ns,
                    reason=res.reason or res.status,
                    code=res.status,
                )
            ]
        book = asks if it.side == "BUY" else bids
        for t in res.trades:
            price = float(t.price)
            rest = book.get(price, 0.0) - float(t.size)
            if rest <= 1e-9:
                book.pop(price, None)
            else:
                book[price] = rest
        return [
            Fill(
                client_order_id=it.client_order_id,
                asset_id=it.asset_id,
                side=it.side,
                price=round(float(res.avg_price), 6),
                size=float(res.filled),
                fee=float(res.fee),
                ts_fill_ns=now_ns,
                slug=it.slug,
                outcome=it.outcome,
                dry_run=True,
            )
        ]


# --------------------------------------------------------------------------- the run
@dataclass
class Result:
    trades: list[dict[str, Any]]
    fills: list[dict[str, Any]]
    predictions: list[tuple[float, int]]  # (p_up, 1 if Up won)
    windows: int
    signals: int
    decisions: dict[str, int]


def run(messages: Iterable[Msg], config: StrategyConfig) -> Result:
    signal = SignalCore(config)
    strategy = StrategyCore(config, client_prefix="bt")
    execution = DryRunExecution()
    fills: list[dict[str, Any]] = []
    per_second: dict[str, dict[int, float]] = {}  # slug -> second -> last p_up
    outcomes: dict[str, int] = {}
    decisions: dict[str, int] = {}
    signals = 0

    latency_ns = config.dry_run_latency_ms * MS
    in_flight: list[tuple[int, OrderIntent]] = []  # (due time, intent): the simulated latency

    def execute(intent: OrderIntent, now_ns: int) -> None:
        for ev in execution.on_intent(intent, now_ns):
            if isinstance(ev, Fill):
                fills.append(_rounded(to_dict(ev)))
            to_strategy(topics.FILL if isinstance(ev, Fill) else topics.REJECT, ev)

    def to_strategy(topic: str, msg: Msg) -> None:
        for out_topic, out in strategy.handle(topic, msg):
            if isinstance(out, OrderIntent):
                if latency_ns:
                    in_flight.append((strategy.now_ns + latency_ns, out))
                else:
                    execute(out, strategy.now_ns)
            elif out_topic == topics.DECISION:
                key = f"{out.action}:{out.reason.split(':')[0]}"  # type: ignore[attr-defined]
                decisions[key] = decisions.get(key, 0) + 1
        strategy.events.clear()

    for msg in messages:
        while in_flight and in_flight[0][0] <= event_time(msg):
            due, intent = in_flight.pop(0)
            execute(intent, due)  # against the book as it is when the order lands
        execution.on_md(msg)
        if isinstance(msg, MarketResolved):
            outcomes[msg.slug] = 1 if msg.winning_outcome == "Up" else 0
        for topic, out in signal.handle("md", msg):
            if isinstance(out, SignalScore):
                signals += 1
                per_second.setdefault(out.slug, {})[out.ts_ns // NS] = out.p_up
            to_strategy(topic, out)
        to_strategy("md", msg)
    predictions = [
        (p, outcomes[slug])
        for slug, secs in sorted(per_second.items())
        if slug in outcomes
        for _, p in sorted(secs.items())
    ]
    trades = [_rounded(t) for t in strategy.closed_trades]
    return Result(
        trades, fills, predictions, len(outcomes), signals, dict(sorted(decisions.items()))
    )


def event_time(msg: Msg) -> int:
    """The event time a market-data message carries (receive time where there is one)."""
    for name in ("ts_recv_ns", "ts_ns"):
        t = getattr(msg, name, None)
        if t is not None:
            return int(t)
    return 0


def _rounded(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in sorted(d.items())}


def brier(preds: list[tuple[float, int]]) -> float | None:
    if not preds:
        return None
    return sum((p - y) ** 2 for p, y in preds) / len(preds)


def calibration(
    preds: list[tuple[float, int]], bins: int = CALIBRATION_BINS
) -> list[dict[str, Any]]:
    rows = []
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        sel = [(p, y) for p, y in preds if lo <= p < hi or (b == bins - 1 and p == 1.0)]
        rows.append(
            {
                "bin": f"{lo:.1f}-{hi:.1f}",
                "count": len(sel),
                "mean_p": round(sum(p for p, _ in sel) / len(sel), 4) if sel else None,
                "freq_up": round(sum(y for _, y in sel) / len(sel), 4) if sel else None,
            }
        )
    return rows


def summary(res: Result) -> dict[str, Any]:
    pnl = sum(t["pnl"] for t in res.trades)
    fees = sum(f["fee"] for f in res.fills)
    wins = sum(1 for t in res.trades if t["pnl"] > 0)
    b = brier(res.predictions)
    return {
        "windows": res.windows,
        "signals": res.signals,
        "trades": len(res.trades),
        "wins": wins,
        "win_rate": round(wins / len(res.trades), 4) if res.trades else None,
        "pnl_usd": round(pnl, 6),
        "fees_usd": round(fees, 6),
        "brier": round(b, 6) if b is not None else None,
        "brier_baseline_0_5": 0.25,
        "predictions": len(res.predictions),
        "calibration": calibration(res.predictions),
        "decisions": res.decisions,
        "trade_list": res.trades,
        "fills": res.fills,
    }


def print_text(s: dict[str, Any], out: TextIO) -> None:
    w = out.write
    w(f"{'opened (ns)':>20} {'slug':<24} {'side':<5} {'entry':>6} {'how':<11} {'pnl':>9}\n")
    for t in s["trade_list"]:
        w(
            f"{t['opened_ns']:>20} {t['slug']:<24} {t['outcome']:<5} {t['entry_price']:>6.3f} "
            f"{t['how']:<11} {t['pnl']:>9.4f}\n"
        )
    wr = f"{s['win_rate']:.1%}" if s["win_rate"] is not None else "n/a"
    w(f"\nwindows {s['windows']}  trades {s['trades']}  wins {s['wins']}  win rate {wr}\n")
    w(f"P&L {s['pnl_usd']:+.4f} USD  fees paid {s['fees_usd']:.4f} USD\n")
    brier_text = f"{s['brier']:.4f}" if s["brier"] is not None else "n/a"
    w(
        f"Brier score {brier_text} over {s['predictions']} per-second predictions "
        f"(0.25 = always 0.5)\n\ncalibration   count   mean p   freq Up\n"
    )
    for r in s["calibration"]:
        mp = f"{r['mean_p']:.3f}" if r["mean_p"] is not None else "  -  "
        fu = f"{r['freq_up']:.3f}" if r["freq_up"] is not None else "  -  "
        w(f"{r['bin']:<10} {r['count']:>8}   {mp:>6}   {fu:>7}\n")
    w("\ndecisions: " + ", ".join(f"{k} {v}" for k, v in s["decisions"].items()) + "\n")


def _positive(v: str) -> int:
    try:
        n = int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {v!r}") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {n}")
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="polyedge backtest", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "capture",
        nargs="?",
        type=Path,
        help="ingest capture (.jsonl.gz file or directory, or JSON lines of raw frames), "
        "or JSON lines of md.* bus messages (polyedge tap output)",
    )
    ap.add_argument("--sim-seed", type=int, help="run the simulated market with this seed")
    ap.add_argument("--windows", type=_positive, default=10, help="simulated windows (10)")
    ap.add_argument("--window-seconds", type=_positive, default=300, help="window length (300)")
    ap.add_argument(
        "--config",
        type=Path,
        help="strategy config file (default: POLYEDGE_CONFIG or config/config.json)",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value (JSON value), e.g. --set max_trades_per_day=50",
    )
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    ap.add_argument(
        "--record",
        type=Path,
        help="with --sim-seed: also write the venue frames as an ingest capture (.gz: gzip)",
    )
    args = ap.parse_args(argv)
    if (args.capture is None) == (args.sim_seed is None):
        ap.error("give either a CAPTURE file or --sim-seed N")
    if args.capture is not None and not args.capture.exists():
        ap.error(f"capture not found: {args.capture}")
    if args.record is not None and args.sim_seed is None:
        ap.error("--record needs --sim-seed (a capture is already a capture)")
    if args.sim_seed is not None and args.window_seconds < 10:
        ap.error("--window-seconds must be >= 10")
    try:
        config = load_strategy_config(args.config)
        if args.set:
            doc = config_to_dict(config)
            for item in args.set:
                key, sep, raw = item.partition("=")
                if not sep:
                    ap.error(f"--set expects KEY=VALUE, got {item!r}")
                try:
                    doc[key.strip()] = json.loads(raw)
                except json.JSONDecodeError:
                    doc[key.strip()] = raw
            config = validate_strategy_config(doc, "--set")
    except ConfigError as e:
        print(f"polyedge backtest: {e}", file=sys.stderr)
        return 2
    try:
        if args.sim_seed is not None:
            frames = sim_frames(args.sim_seed, args.windows, args.window_seconds)
            if args.record is not None:
                frames = _recording(frames, args.record)
            messages: Iterable[Msg] = replay(frames)
        elif capture_kind(args.capture) == "frames":
            messages = replay(read_frames(args.capture))
        else:
            messages = capture_messages(args.capture)
    except (ValueError, OSError) as e:
        print(f"polyedge backtest: {e}", file=sys.stderr)
        return 2
    try:
        res = run(messages, config)
    except (ValueError, OSError) as e:
        print(f"polyedge backtest: {e}", file=sys.stderr)
        return 2
    s = summary(res)
    if args.json:
        sys.stdout.write(msgspec.json.encode(s).decode() + "\n")
    else:
        print_text(s, sys.stdout)
    return 0


def _recording(frames: Iterable[Frame], path: Path) -> Iterator[Frame]:
    """Pass frames through, writing each as an ingest capture line."""
    enc = msgspec.json.Encoder()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        for ts, channel, text in frames:
            f.write(enc.encode(CaptureLine(ts, channel, text)) + b"\n")
            yield ts, channel, text


if __name__ == "__main__":
    raise SystemExit(main())
