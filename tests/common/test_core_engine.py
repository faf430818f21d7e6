"""The core contract (common/core.py) and the in-process wiring (common/engine.py): dispatch by
message type, log records handed out with what a step emits, routing by the runners' topic
subscriptions in emission order, timers on event time."""

from __future__ import annotations

from typing import Any

import pytest

from common import topics
from common.core import Core, Emitted, LogRecord, Out, Timer, handler_name
from common.engine import Engine, Node
from common.schema import BookSnapshot, ClockTick, MarketResolved, SignalScore


class Recorder(Core):
    """A core that records what reached it and answers a ClockTick with a score."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, int]] = []

    def on_clock_tick(self, msg: ClockTick, now_ns: int) -> Out:
        self.seen.append(("clock", now_ns))
        self.log("signal", "ticked", ts=msg.ts_ns)
        score = SignalScore(
            slug="s", p_up=0.5, side="Up", score=0.0, edge_up=0.0, edge_down=0.0, ts_ns=msg.ts_ns
        )
        return [(topics.SIGNAL, score)]

    def on_signal_score(self, msg: SignalScore, now_ns: int) -> None:
        self.seen.append(("score", now_ns))

    def on_market_resolved(self, msg: MarketResolved, now_ns: int) -> None:
        self.seen.append(("resolved", now_ns))

    def on_timer(self, msg: Timer, now_ns: int) -> None:
        self.seen.append(("timer", msg.ts_ns))


def test_handler_names_follow_the_message_type() -> None:
    assert handler_name(BookSnapshot) == "on_book_snapshot"
    assert handler_name(ClockTick) == "on_clock_tick"
    assert handler_name(Timer) == "on_timer"


def test_step_dispatches_returns_messages_and_log_records() -> None:
    core = Recorder()
    out = core.step(ClockTick(ts_ns=5), 7)
    assert isinstance(out, Emitted)
    assert [t for t, _ in out] == [topics.SIGNAL]
    assert out.logs == [LogRecord("signal", "ticked", "INFO", {"ts": 5})]
    assert core.seen == [("clock", 7)]
    # a type without a handler is ignored, and the logs were handed out once
    book = BookSnapshot("a", None, None, [], [], ts_exchange_ns=1, ts_recv_ns=1)
    empty = core.step(book, 8)
    assert list(empty) == [] and empty.logs == [] and core.take_logs() == []


def test_engine_routes_by_the_runners_subscriptions_in_emission_order() -> None:
    order: list[tuple[str, str]] = []
    signal, strategy, execution = Recorder(), Recorder(), Recorder()
    logs: list[tuple[str, LogRecord]] = []
    eng = Engine(
        [Node("signal", signal), Node("strategy", strategy), Node("execution", execution)],
        tap=lambda topic, msg, now: order.append((topic, type(msg).__name__)),
        on_log=lambda name, rec: logs.append((name, rec)),
    )
    eng.publish(topics.CLOCK, ClockTick(ts_ns=100), 100)
    # md.clock reaches all three (as their runners subscribe), each emits a score; sig.score
    # reaches strategy only, after the clock tick itself (first in, first out)
    assert order == [("md.clock", "ClockTick")] + [("sig.score", "SignalScore")] * 3
    assert strategy.seen == [("clock", 100), ("score", 100), ("score", 100), ("score", 100)]
    assert signal.seen == [("clock", 100)] and execution.seen == [("clock", 100)]
    assert [n for n, _ in logs] == ["signal", "strategy", "execution"]
    eng.publish(topics.RESOLVED, MarketResolved(slug="s", winning_outcome="Up", ts_ns=1), 101)
    assert ("resolved", 101) in execution.seen and ("resolved", 101) in strategy.seen


def test_engine_timers_fire_on_event_time_earliest_first() -> None:
    fast, slow = Recorder(), Recorder()
    fired: list[tuple[str, int]] = []

    class Named(Recorder):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

        def on_timer(self, msg: Timer, now_ns: int) -> None:
            fired.append((self.name, msg.ts_ns))

    fast, slow = Named("fast"), Named("slow")
    eng = Engine(
        [Node("a", fast, timer_ns=10, topics=("x",)), Node("b", slow, timer_ns=25, topics=("x",))]
    )
    eng.advance(1000)  # time starts here
    eng.advance(1030)
    assert fired == [
        ("fast", 1000),
        ("slow", 1000),
        ("fast", 1010),
        ("fast", 1020),
        ("slow", 1025),
        ("fast", 1030),
    ]
    with pytest.raises(ValueError, match="timer period"):
        Node("bad", fast, timer_ns=0)
    with pytest.raises(ValueError, match="share a name"):
        Engine([Node("a", fast), Node("a", slow)])


def test_engine_step_feeds_one_node_and_delivers_what_follows() -> None:
    got: list[Any] = []

    class Source(Core):
        def on_clock_tick(self, msg: ClockTick, now_ns: int) -> Out:
            return [(topics.CLOCK, msg)]

    sink = Recorder()
    eng = Engine(
        [Node("ingest", Source()), Node("signal", sink)], tap=lambda t, m, n: got.append(t)
    )
    eng.step("ingest", ClockTick(ts_ns=3), 3)
    assert got == ["md.clock", "sig.score"] and sink.seen == [("clock", 3)]
