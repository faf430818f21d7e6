"""Capture of every raw venue frame with its receive time, for replay and backtest.

Files are gzip JSONL under `<data_dir>/captures/`: one `{"ts_recv_ns", "channel", "frame"}`
object a line, where `channel` is `binance`, `clob`, `rtds` or `gamma` and `frame` is the frame's
text exactly as received. A file rotates after `rotate_s` seconds or `max_bytes` of raw frames and
is flushed about once a second, so a crash loses at most that second. `read_capture` reads one back
(a truncated last block, from a crash, ends the iteration instead of raising; a file that is
not a capture raises ValueError).
"""

from __future__ import annotations

import gzip
import os
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import msgspec

from common.clock import now_ns


class CaptureLine(msgspec.Struct, frozen=True):
    ts_recv_ns: int
    channel: str
    frame: str


_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(CaptureLine)


class CaptureWriter:
    def __init__(
        self,
        directory: str | os.PathLike[str],
        rotate_s: float = 3600.0,
        max_bytes: int = 256 * 1024 * 1024,
        flush_s: float = 1.0,
    ) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rotate_s = rotate_s
        self.max_bytes = max_bytes
        self.flush_s = flush_s
        self._f: gzip.GzipFile | None = None
        self.path: Path | None = None
        self._opened = 0.0
        self._bytes = 0
        self._last_flush = 0.0
        self.frames = 0
        self.files: list[Path] = []

    def _open(self) -> None:
        ts = now_ns()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(ts / 1e9))
        self.path = self.dir / f"ingest-{stamp}-{ts % 1_000_000_000:09d}-{os.getpid()}.jsonl.gz"
        self._f = gzip.open(self.path, "ab", compresslevel=5)  # noqa: SIM115 - closed on rotate
        self._opened = time.monotonic()
        self._bytes = 0
        self.files.append(self.path)

    def write(self, ts_recv_ns: int, channel: str, frame: str | bytes) -> None:
        if isinstance(frame, bytes | bytearray | memoryview):
            frame = bytes(frame).decode("utf-8", "replace")
        if self._f is None:
            self._open()
        line = _enc.encode(CaptureLine(ts_recv_ns, channel, frame)) + b"\n"
        assert self._f is not None
        self._f.write(line)
        self._bytes += len(line)
        self.frames += 1
        t = time.monotonic()
        if self._bytes >= self.max_bytes or t - self._opened >= self.rotate_s:
            self.rotate()
        elif t - self._last_flush >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        if self._f is not None:
            self._f.flush()  # Z_SYNC_FLUSH: everything so far is readable by a reader now
            self._last_flush = time.monotonic()

    def rotate(self) -> None:
        self.close()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def read_capture(path: str | os.PathLike[str]) -> Iterator[tuple[int, str, str]]:
    """(ts_recv_ns, channel, frame) of every line of one capture file, in file order.

    A capture cut by a crash ends the iteration quietly: the writer flushes whole lines, so a
    crash leaves a gzip stream that ends early (EOFError) or a last line without its newline.
    Anything else raises ValueError naming the file (and line): not gzip, a corrupt deflate
    stream, or a complete line that is not a `{"ts_recv_ns", "channel", "frame"}` object.
    """
    with gzip.open(path, "rb") as f:
        try:
            for n, raw in enumerate(f, 1):
                if raw.strip():
                    try:
                        line = _dec.decode(raw)
                    except msgspec.DecodeError as e:
                        if not raw.endswith(b"\n"):
                            return  # the last line, cut by a crash mid-write
                        raise ValueError(f"{path}:{n}: not a capture line: {e}") from None
                    yield line.ts_recv_ns, line.channel, line.frame
        except EOFError:
            return  # the stream ends early: a crash before the gzip trailer
        except (zlib.error, gzip.BadGzipFile) as e:
            raise ValueError(f"{path}: not a gzip capture: {e}") from None


def capture_files(directory: str | os.PathLike[str]) -> list[Path]:
    """Capture files of a directory, oldest first."""
    return sorted(Path(directory).glob("ingest-*.jsonl.gz"))
