"""The ZeroMQ bus: socket factory, two-frame `[topic, payload]` messages, seq/epoch stamping on
send, and gap / publisher-restart / expiry detection on receive.

Market data and events go over PUB/SUB (a slow reader may lose data, and notices it as a gap);
order intents and control commands go over PUSH/PULL, and an intent whose `expires_ns` has passed
is dropped by the receiver. An undecodable payload on our own bus is an internal fault: it raises
`BusError` and the service exits for supervisord to restart it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import zmq

from common import schema
from common.schema import Envelope, Msg

SNDHWM = 100_000
RCVHWM = 100_000
SEND_TIMEOUT_MS = 250  # a PUSH whose peer is gone fails fast instead of blocking the hot path

_ctx: zmq.Context | None = None


def context() -> zmq.Context:
    global _ctx
    if _ctx is None or _ctx.closed:
        _ctx = zmq.Context.instance()
    return _ctx


class BusError(Exception):
    """An internal fault on our own bus (undecodable payload, bad frame count)."""


def _prepare_ipc(endpoint: str) -> None:
    if endpoint.startswith("ipc://"):
        Path(endpoint[len("ipc://") :]).parent.mkdir(parents=True, exist_ok=True)


def _socket(kind: int, endpoint: str, bind: bool, sndhwm: int, rcvhwm: int) -> zmq.Socket:
    sock = context().socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, sndhwm)
    sock.setsockopt(zmq.RCVHWM, rcvhwm)
    if bind:
        _prepare_ipc(endpoint)
        sock.bind(endpoint)
    else:
        sock.connect(endpoint)
    return sock


class _Stamper:
    """Per-topic gapless seq and a per-process epoch, stamped on every message sent."""

    def __init__(self, epoch: int | None) -> None:
        self.epoch = epoch if epoch is not None else process_epoch()
        self._seq: dict[str, int] = {}

    def frames(self, topic: str, msg: Msg) -> list[bytes]:
        seq = self._seq.get(topic, 0) + 1
        self._seq[topic] = seq
        return [topic.encode(), schema.encode(Envelope(seq=seq, epoch=self.epoch, msg=msg))]


_EPOCH = time.time_ns()


def process_epoch() -> int:
    """New at every process start (ns since the Unix epoch, so a restart always goes up)."""
    return _EPOCH


class Publisher:
    """PUB socket owned (bound) by a stream's long-lived owner. Never blocks: drops at HWM."""

    def __init__(self, endpoint: str, *, epoch: int | None = None, hwm: int = SNDHWM) -> None:
        self.endpoint = endpoint
        self.sock = _socket(zmq.PUB, endpoint, True, hwm, RCVHWM)
        self._stamp = _Stamper(epoch)
        self.epoch = self._stamp.epoch
        self.sent = 0

    def send(self, topic: str, msg: Msg) -> None:
        self.sock.send_multipart(self._stamp.frames(topic, msg), copy=False)
        self.sent += 1

    def close(self) -> None:
        self.sock.close(0)


@dataclass
class TopicStats:
    epoch: int = 0
    last_seq: int = 0
    received: int = 0
    gaps: int = 0  # number of gap events
    lost: int = 0  # messages missing in those gaps
    restarts: int = 0  # publisher came back with a new epoch
    out_of_order: int = 0


class _Receiver:
    """Decoding, gap detection and counting shared by SUB and PULL."""

    def __init__(self, sock: zmq.Socket, drop_expired: bool, lazy_books: bool = False) -> None:
        self.sock = sock
        # books as `schema.LazyBookSnapshot` (levels decoded when read) for readers that
        # seldom read them
        self._decode_payload = schema.decode_envelope_lazy if lazy_books else schema.decode_envelope
        self.stats: dict[str, TopicStats] = {}
        self.drop_expired = drop_expired
        self.expired = 0

    def fileno(self) -> int:
        return self.sock.getsockopt(zmq.FD)

    def _decode(self, frames: list[bytes]) -> tuple[str, Envelope] | None:
        if len(frames) != 2:
            raise BusError(f"expected 2 frames [topic, payload], got {len(frames)}")
        topic = bytes(frames[0]).decode()
        try:
            env = self._decode_payload(frames[1])
        except schema.DecodeError as e:
            raise BusError(f"undecodable message on topic {topic!r}: {e}") from None
        st = self.stats.get(topic)
        if st is None:
            st = self.stats[topic] = TopicStats(epoch=env.epoch, last_seq=env.seq)
        elif env.epoch != st.epoch:
            st.restarts += 1
            st.epoch, st.last_seq = env.epoch, env.seq
        elif env.seq == st.last_seq + 1:
            st.last_seq = env.seq
        elif env.seq > st.last_seq + 1:
            st.gaps += 1
            st.lost += env.seq - st.last_seq - 1
            st.last_seq = env.seq
        else:
            st.out_of_order += 1
        st.received += 1
        if self.drop_expired:
            expires = getattr(env.msg, "expires_ns", 0)
            if expires and expires < time.time_ns():
                self.expired += 1
                return None
        return topic, env

    def recv(self, timeout_ms: int | None = None) -> tuple[str, Envelope] | None:
        """One message, or None on timeout (or if it was an expired intent)."""
        if timeout_ms is not None and not self.sock.poll(timeout_ms, zmq.POLLIN):
            return None
        return self._decode(self.sock.recv_multipart(copy=True))

    def drain(self, limit: int = 10_000) -> list[tuple[str, Envelope]]:
        """Every message already waiting, without blocking (use after an fd wake-up)."""
        out: list[tuple[str, Envelope]] = []
        for _ in range(limit):
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                break
            item = self._decode(frames)
            if item is not None:
                out.append(item)
        return out

    def totals(self) -> dict[str, int]:
        return {
            "received": sum(s.received for s in self.stats.values()),
            "gaps": sum(s.gaps for s in self.stats.values()),
            "lost": sum(s.lost for s in self.stats.values()),
            "restarts": sum(s.restarts for s in self.stats.values()),
            "expired": self.expired,
        }

    def close(self) -> None:
        self.sock.close(0)


class Subscriber(_Receiver):
    """SUB socket connected to one or more publishers, filtered by topic prefixes. With
    `lazy_books`, a `BookSnapshot` is received as a `schema.LazyBookSnapshot` (its levels
    decoded by `whole()`, when read)."""

    def __init__(
        self,
        endpoints: list[str] | str,
        topics: list[str] | tuple[str, ...] = ("",),
        *,
        hwm: int = RCVHWM,
        lazy_books: bool = False,
    ) -> None:
        sock = context().socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, hwm)
        for t in topics:
            sock.setsockopt(zmq.SUBSCRIBE, t.encode())
        for ep in [endpoints] if isinstance(endpoints, str) else endpoints:
            sock.connect(ep)
        super().__init__(sock, drop_expired=False, lazy_books=lazy_books)
        self.topics: set[str] = set(topics)

    def subscribe(self, topics: list[str] | tuple[str, ...]) -> list[str]:
        """Also take these topic prefixes (a hot reload adding an asset's trades); returns the
        ones that were new."""
        new = [t for t in topics if t not in self.topics]
        for t in new:
            self.sock.setsockopt(zmq.SUBSCRIBE, t.encode())
            self.topics.add(t)
        return new


class Puller(_Receiver):
    """PULL socket bound by the command stream's owner; drops intents past their expiry."""

    def __init__(self, endpoint: str, *, hwm: int = RCVHWM, drop_expired: bool = True) -> None:
        super().__init__(_socket(zmq.PULL, endpoint, True, SNDHWM, hwm), drop_expired)


class Pusher:
    """PUSH socket (connects). IMMEDIATE: no queueing to a peer that is not there."""

    def __init__(
        self, endpoint: str, *, epoch: int | None = None, timeout_ms: int = SEND_TIMEOUT_MS
    ) -> None:
        sock = context().socket(zmq.PUSH)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.setsockopt(zmq.SNDHWM, 1000)
        sock.setsockopt(zmq.SNDTIMEO, timeout_ms)
        sock.connect(endpoint)
        self.sock = sock
        self._stamp = _Stamper(epoch)
        self.failed = 0

    def send(self, topic: str, msg: Msg) -> bool:
        """False when no peer took the message within the send timeout (it was not sent)."""
        try:
            self.sock.send_multipart(self._stamp.frames(topic, msg), copy=False)
            return True
        except zmq.Again:
            self.failed += 1
            return False

    def close(self) -> None:
        self.sock.close(0)
