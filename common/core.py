"""The core contract every service core follows, so one runner loop (common/service.py) and one
in-process wiring (common/engine.py) can drive any of them.

A core is transport-free: `core.step(msg, now_ns)` takes one message and the current event time
(ns since the Unix epoch: the receive time in a running service, the message's own time in a
backtest) and returns what the core emits, an `Emitted` list of `(topic, message)` pairs to send,
carrying the log records written meanwhile in `.logs`. `step` dispatches by message type to the
core's `on_<message>` handler (`BookSnapshot` -> `on_book_snapshot(msg, now_ns)`); a type without
a handler is ignored. A handler returns the `(topic, message)` pairs it emits (or None) and writes
log lines with `self.log(...)`, never to a file: the runner writes them to the JSONL streams.
`Timer` is the runner's periodic wake-up (never on the bus): `on_timer` does the time-driven work.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, NamedTuple

import msgspec

from common.schema import Msg, Probe

Out = list[tuple[str, Msg]]


class LogRecord(NamedTuple):
    """One log line a core wrote: stream (common/log.py STREAMS), event name, level, fields."""

    stream: str
    event: str
    level: str
    fields: dict[str, Any]


class Timer(msgspec.Struct, frozen=True):
    """The runner's periodic wake-up at `ts_ns` (ns); internal to a process, never published."""

    ts_ns: int


class Emitted(list[tuple[str, Any]]):
    """What one `step` emitted: the `(topic, message)` pairs in order; `.logs` the log records."""

    __slots__ = ("logs",)

    def __init__(self, out: Iterable[tuple[str, Any]] = (), logs: list[LogRecord] | None = None):
        super().__init__(out)
        self.logs: list[LogRecord] = logs if logs is not None else []


def handler_name(kind: type) -> str:
    """`BookSnapshot` -> `on_book_snapshot`: the handler a message type dispatches to."""
    return "on_" + re.sub(r"(?<!^)(?=[A-Z])", "_", kind.__name__).lower()


class Core:
    """Base of the service cores: `step` with dispatch by message type, and the log buffer.

    Subclasses call `super().__init__()` and define `on_<message>(msg, now_ns) -> Out | None`.
    """

    _dispatch: ClassVar[dict[type, Callable[..., Out | None] | None]]

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls._dispatch = {}

    def __init__(self) -> None:
        self._logs: list[LogRecord] = []

    @classmethod
    def handler(cls, kind: type) -> Callable[..., Out | None] | None:
        """The `on_<message>` function for messages of type `kind` (None: ignored); cached."""
        try:
            return cls._dispatch[kind]
        except KeyError:
            fn = cls._dispatch[kind] = getattr(cls, handler_name(kind), None)
            return fn

    def step(self, msg: Any, now_ns: int) -> Emitted:
        """Handle one message at event time `now_ns` (ns); returns what the core emits."""
        fn = type(self).handler(type(msg))
        out = fn(self, msg, now_ns) if fn is not None else None
        emitted = Emitted(out or ())
        if self._logs:
            emitted.logs = self._logs
            self._logs = []
        return emitted

    def log(self, stream: str, event: str, level: str = "INFO", **fields: Any) -> None:
        """Queue one log line for the runner (or the engine) to write; it goes out with the
        next `step`'s `Emitted.logs` or `take_logs()`."""
        self._logs.append(LogRecord(stream, event, level, fields))

    def take_logs(self) -> list[LogRecord]:
        """The log records written outside `step` (start-up, recovery), now handed over."""
        logs, self._logs = self._logs, []
        return logs


def forward_probe(probe: Probe, hop: str, now_ns: int) -> Probe:
    """The end-to-end probe as it leaves hop `hop` at `now_ns` (hop name and time appended)."""
    return Probe(
        probe_id=probe.probe_id,
        ts_origin_ns=probe.ts_origin_ns,
        hops=[*probe.hops, hop],
        hop_ns=[*probe.hop_ns, now_ns],
    )
