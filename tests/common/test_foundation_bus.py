"""The bus across real processes: delivery, gaps on HWM overflow, publisher restarts, expiry."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from common.bus import Publisher, Puller, Subscriber
from common.schema import BookSnapshot, BtcTrade, LazyBookSnapshot, OrderIntent
from tests.conftest import REPO, free_port, short_tmpdir, wait_for

PEER = [sys.executable, str(Path(__file__).with_name("bus_peer.py"))]


class Peer:
    def __init__(self, *args: str) -> None:
        self.p = subprocess.Popen(
            [*PEER, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={"PYTHONPATH": str(REPO)},
        )

    def line(self) -> str:
        out = self.p.stdout.readline().strip()  # type: ignore[union-attr]
        assert out, f"peer exited early with {self.p.wait(10)}"
        return out

    def go(self) -> None:
        self.p.stdin.write("\n")  # type: ignore[union-attr]
        self.p.stdin.flush()  # type: ignore[union-attr]

    def close(self) -> None:
        try:
            self.go()
        except BrokenPipeError:
            pass
        self.p.wait(10)


@pytest.fixture(params=["ipc", "tcp"])
def endpoint(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "ipc":
        d = short_tmpdir()
        yield f"ipc://{d}/run/test.sock"
    else:
        yield f"tcp://127.0.0.1:{free_port()}"


def _connected(sub: Subscriber, peer: Peer, expected: int) -> list[BtcTrade]:
    """PUB/SUB joins late; the peer publishes once told, after our SUBSCRIBE has propagated."""
    sub.recv(timeout_ms=200)
    peer.go()
    got: list[BtcTrade] = []
    wait_for(
        lambda: got.extend(e.msg for _, e in sub.drain()) or len(got) >= expected,
        10,
        what=f"{expected} messages",
    )
    return got


def test_delivery_across_processes_keeps_order_and_seq(endpoint: str) -> None:
    peer = Peer("pub", endpoint, "500")
    try:
        assert peer.line().startswith("ready")
        sub = Subscriber(endpoint, ["md.btc."])
        got = _connected(sub, peer, 500)
        assert [t.price for t in got] == [100.0 + i for i in range(500)]
        st = sub.stats["md.btc.trade"]
        assert (st.received, st.gaps, st.lost, st.restarts) == (500, 0, 0, 0)
        assert st.last_seq == 500
    finally:
        peer.close()


def test_slow_subscriber_overflow_is_counted_as_gaps() -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    peer = Peer("pub", endpoint, "200000", "100")
    try:
        peer.line()
        sub = Subscriber(endpoint, [""], hwm=100)
        sub.recv(timeout_ms=200)
        peer.go()
        assert peer.line() == "sent 200000"  # all sent while we were not reading
        received: list[int] = []
        while (item := sub.recv(timeout_ms=500)) is not None:
            received.append(item[1].seq)
        st = sub.stats["md.btc.trade"]
        assert 0 < len(received) < 200_000
        assert st.gaps >= 1 and st.lost >= 1
        # what arrived plus what was counted lost accounts for every seq up to the last seen
        assert st.received + st.lost == st.last_seq - received[0] + 1
    finally:
        peer.close()


def test_publisher_restart_is_a_new_epoch_not_a_gap() -> None:
    endpoint = f"ipc://{short_tmpdir()}/run/restart.sock"
    sub = Subscriber(endpoint, [""])
    epochs = []
    for _ in range(2):
        peer = Peer("pub", endpoint, "50")
        try:
            epochs.append(int(peer.line().split()[1]))
            _connected(sub, peer, 50)
        finally:
            peer.close()
    st = sub.stats["md.btc.trade"]
    assert epochs[1] > epochs[0]
    assert st.epoch == epochs[1]
    assert st.restarts == 1 and st.gaps == 0 and st.lost == 0
    assert st.received == 100


def test_expired_intent_is_dropped_by_the_receiver() -> None:
    endpoint = f"ipc://{short_tmpdir()}/run/orders.sock"
    pull = Puller(endpoint)
    peer = Peer("push", endpoint, "2")
    try:
        assert peer.line() == "pushed True True"
        got: list[OrderIntent] = []
        wait_for(
            lambda: got.extend(e.msg for _, e in pull.drain()) or pull.expired >= 1 and got,
            10,
            what="the fresh intent",
        )
        assert [i.client_order_id for i in got] == ["fresh-1"]
        assert pull.expired == 1
    finally:
        peer.close()
        pull.close()


def test_a_lazy_books_subscriber_decodes_a_books_levels_when_read() -> None:
    """Subscriber(lazy_books=True) (signal's, strategy's, execution's): a BookSnapshot arrives
    as a LazyBookSnapshot with the same fields, whose `whole()` is the book sent; other messages
    arrive as they were sent; seq and gap counting as for any subscriber."""
    endpoint = f"ipc://{short_tmpdir()}/run/lazy.sock"
    pub = Publisher(endpoint)
    lazy, whole = Subscriber(endpoint, ["md."], lazy_books=True), Subscriber(endpoint, ["md."])
    book = BookSnapshot(
        asset_id="a",
        best_bid=0.41,
        best_ask=0.43,
        bids=[(round(0.41 - 0.01 * i, 2), 10.0 + i) for i in range(40)],
        asks=[(round(0.43 + 0.01 * i, 2), 10.0 + i) for i in range(40)],
        ts_exchange_ns=5,
        ts_recv_ns=7,
        market="0xm",
        tick_size=0.01,
        book_seq=3,
        hash="h",
        in_sync=False,
    )
    trade = BtcTrade(price=1.0, size=2.0, ts_exchange_ns=1, ts_recv_ns=2)
    try:
        got: dict[str, list[Any]] = {"lazy": [], "whole": []}

        def drain() -> dict[str, list[Any]]:
            for name, sub in (("lazy", lazy), ("whole", whole)):
                got[name] += [e.msg for _, e in sub.drain()]
            return got

        def connected() -> bool:
            pub.send("md.btc.trade", trade)
            return all(drain().values())

        wait_for(connected, 10, what="both subscribers connected")
        pub.send("md.book.a", book)
        wait_for(lambda: book in drain()["whole"], 10, what="the whole book")
        wait_for(lambda: any(type(m) is LazyBookSnapshot for m in drain()["lazy"]), 10)
        (read,) = [m for m in got["lazy"] if not isinstance(m, BtcTrade)]
        assert isinstance(read, LazyBookSnapshot)
        assert (read.asset_id, read.best_bid, read.best_ask, read.book_seq) == ("a", 0.41, 0.43, 3)
        assert (read.ts_exchange_ns, read.ts_recv_ns, read.in_sync) == (5, 7, False)
        assert read.whole() == book
        assert all(m == trade for m in got["lazy"] if isinstance(m, BtcTrade))
        assert lazy.stats["md.book.a"].received == 1 and lazy.stats["md.book.a"].lost == 0
    finally:
        pub.close()
        lazy.close()
        whole.close()
