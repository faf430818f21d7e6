"""The cores wired in one process by the same topics their runners subscribe to
(`common.topics.SUBSCRIPTIONS`), on event time: how the backtest runs the real ingest, signal,
strategy and execution cores without sockets.

Each message a core emits is delivered, in emission order (first in, first out), to every core
subscribed to its topic, as the bus would: a market-data message reaches strategy before the
score signal computed from it. Each core's `Timer` fires on event time at its own period.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from common.core import Core, LogRecord, Timer
from common.topics import SUBSCRIPTIONS

Tap = Callable[[str, Any, int], None]  # (topic, message, event time ns)
_UNKNOWN = object()  # a message type a core's dispatch table has not seen yet


@dataclass(eq=False)
class Node:
    """One core in the engine: its service name, the core, the topic prefixes it takes in (by
    default its runner's, `SUBSCRIPTIONS[name]`) and its timer period in ns (None: no timer)."""

    name: str
    core: Core
    timer_ns: int | None = None
    topics: tuple[str, ...] = ()
    next_timer_ns: int | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if not self.topics:
            self.topics = SUBSCRIPTIONS.get(self.name, ())
        if self.timer_ns is not None and self.timer_ns <= 0:
            raise ValueError(f"{self.name}: timer period must be > 0 ns, got {self.timer_ns}")


class Engine:
    """Routes what the cores emit to the cores subscribed to it.

    `tap(topic, msg, now_ns)` sees every message emitted (as `polyedge tap` would on the bus);
    `on_log(service, record)` every log record (default: dropped)."""

    def __init__(
        self,
        nodes: Iterable[Node],
        tap: Tap | None = None,
        on_log: Callable[[str, LogRecord], None] | None = None,
    ) -> None:
        self.nodes = list(nodes)
        names = [n.name for n in self.nodes]
        if len(set(names)) != len(names):
            raise ValueError(f"two nodes share a name: {names}")
        self.by_name = {n.name: n for n in self.nodes}
        self.tap = tap
        self.on_log = on_log
        self.now_ns = 0
        self._routes: dict[str, tuple[Node, ...]] = {}
        self._queue: deque[tuple[str, Any]] = deque()
        self._timed = [n for n in self.nodes if n.timer_ns is not None]
        self._next_due = 0  # the earliest timer due (ns); nothing to fire before it

    def subscribers(self, topic: str) -> tuple[Node, ...]:
        """The nodes a message on `topic` reaches (cached per topic)."""
        subs = self._routes.get(topic)
        if subs is None:
            subs = self._routes[topic] = tuple(n for n in self.nodes if topic.startswith(n.topics))
        return subs

    def step(self, name: str, msg: Any, now_ns: int) -> None:
        """Hand `msg` to node `name` at event time `now_ns` (after the timers due by then), and
        deliver everything that follows from it."""
        self.advance(now_ns)
        self._run(self.by_name[name], msg, now_ns)
        self._drain(now_ns)

    def publish(self, topic: str, msg: Any, now_ns: int) -> None:
        """`msg` as if published on `topic` at `now_ns`, delivered to its subscribers."""
        self.advance(now_ns)
        self._queue.append((topic, msg))
        self._drain(now_ns)

    def advance(self, now_ns: int) -> None:
        """Fire every timer due by `now_ns`, earliest first."""
        if now_ns > self.now_ns:
            self.now_ns = now_ns
        if now_ns < self._next_due:
            return
        timed = self._timed
        while timed:
            first = timed[0]
            for n in timed:
                if n.next_timer_ns is None:
                    n.next_timer_ns = now_ns
                if n.next_timer_ns < first.next_timer_ns:  # type: ignore[operator]
                    first = n
            t = first.next_timer_ns
            assert t is not None and first.timer_ns is not None
            if t > now_ns:
                self._next_due = t
                return
            first.next_timer_ns = t + first.timer_ns
            self._run(first, Timer(t), t)
            self._drain(t)
        self._next_due = 1 << 62

    def _run(self, node: Node, msg: Any, now_ns: int) -> None:
        # the core's own dispatch (Core.handler), without building an Emitted per message
        core = node.core
        fn = core._dispatch.get(type(msg), _UNKNOWN)
        if fn is _UNKNOWN:
            fn = core.handler(type(msg))
        if fn is None:
            return
        out = fn(core, msg, now_ns)
        if core._logs:
            logs = core.take_logs()
            if self.on_log is not None:
                for rec in logs:
                    self.on_log(node.name, rec)
        if out:
            self._queue.extend(out)

    def _drain(self, now_ns: int) -> None:
        queue, tap, routes = self._queue, self.tap, self._routes
        while queue:
            topic, msg = queue.popleft()
            if tap is not None:
                tap(topic, msg, now_ns)
            subs = routes.get(topic)
            if subs is None:
                subs = self.subscribers(topic)
            for node in subs:
                self._run(node, msg, now_ns)
