"""Plays a capture (raw venue frames with receive times) back through the venue's sockets.

Capture format: JSON Lines, one frame per line, an object with
  - a receive time: `ts_recv_ns` (or `recv_ns`, `ts_ns`; `recv_ms`/`ts_ms` in ms),
  - a source: `channel` (or `source`, `venue`, `stream`), mapped by substring:
    "binance" -> Binance sockets, "rtds"/"chainlink"/"price" -> RTDS, "user" -> skipped,
    anything with "market"/"clob"/"polymarket" -> market channel,
  - the frame: `frame` (or `raw`, `text`) as the exact text received, or `data` as JSON.
Lines that don't fit are counted and skipped. A gzip file is read as ingest's capture
(`INGEST_CAPTURE=1`, `data/captures/*.jsonl.gz`) by ingest's own reader. Frames keep their
relative spacing divided by speed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# a capture file's format, read with ingest's reader (the one `polyedge backtest` uses too)
from services.ingest.capture import read_capture

GZIP_MAGIC = b"\x1f\x8b"

NS = 1_000_000_000


def _kind(src: str) -> str | None:
    s = src.lower()
    if "binance" in s:
        return "binance"
    if "user" in s:
        return None
    if "rtds" in s or "chainlink" in s or "price" in s or "twap" in s:
        return "rtds"
    if "market" in s or "clob" in s or "polymarket" in s:
        return "market"
    return None


@dataclass
class Replay:
    frames: list[tuple[int, str, str]]  # (capture ts ns, kind, text)
    speed: float = 1.0
    skipped: int = 0
    started_wall_ns: int | None = None
    pos: int = 0
    stats: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path, speed: float = 1.0) -> Replay:
        """The frames of a capture file, in capture-time order: ingest's gzip capture, or JSON
        lines in any of the layouts of the module docstring.

        Raises ValueError naming the file when it is not a capture: a gzip file that is not
        ingest's capture (services/ingest/capture.py `read_capture`), or a file without one
        frame for a replayed channel; OSError when it can't be read.
        """
        if speed <= 0:
            raise ValueError("speed must be > 0")
        with open(path, "rb") as fh:
            gzipped = fh.read(2) == GZIP_MAGIC
        frames: list[tuple[int, str, str]] = []
        skipped = 0
        lines = read_capture(path) if gzipped else cls._json_lines(path)
        for rec in lines:
            if rec is None:
                skipped += 1
                continue
            ts, src, text = rec
            kind = _kind(src)
            if kind is None:
                skipped += 1
                continue
            frames.append((ts, kind, text))
        if not frames:
            raise ValueError(
                f"{path}: not a capture (no frame of a replayed channel: binance, market, price "
                f"feed; {skipped} lines skipped)"
            )
        frames.sort(key=lambda f: f[0])
        return cls(frames, speed, skipped)

    @classmethod
    def _json_lines(cls, path: str | Path) -> Iterator[tuple[int, str, str] | None]:
        """(ts ns, source, frame text) of each line, None for a line that doesn't fit (also
        one that is not UTF-8: json.loads raises UnicodeDecodeError, a ValueError)."""
        with open(path, "rb") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                    ts = cls._ts(rec)
                    src = next(
                        str(rec[k]) for k in ("channel", "source", "venue", "stream") if k in rec
                    )
                    text = next((rec[k] for k in ("frame", "raw", "text") if k in rec), None)
                    if text is None:
                        text = json.dumps(rec["data"], separators=(",", ":"))
                    if ts is None or not isinstance(text, str):
                        raise ValueError
                except (ValueError, KeyError, StopIteration, TypeError, OverflowError):
                    yield None
                    continue
                yield ts, src, text

    @staticmethod
    def _ts(rec: dict) -> int | None:
        for k in ("ts_recv_ns", "recv_ns", "ts_ns"):
            if k in rec:
                return int(rec[k])
        for k in ("recv_ms", "ts_ms"):
            if k in rec:
                return int(float(rec[k]) * 1_000_000)
        return None

    @property
    def done(self) -> bool:
        return self.pos >= len(self.frames)

    def due(self, wall_ns: int) -> list[tuple[str, str]]:
        """Frames whose scaled capture time has come, given the wall clock."""
        if not self.frames:
            return []
        if self.started_wall_ns is None:
            self.started_wall_ns = wall_ns
        t0 = self.frames[0][0]
        horizon = t0 + int((wall_ns - self.started_wall_ns) * self.speed)
        out = []
        while self.pos < len(self.frames) and self.frames[self.pos][0] <= horizon:
            _, kind, text = self.frames[self.pos]
            out.append((kind, text))
            self.pos += 1
        return out

    @staticmethod
    def asset_ids(text: str) -> set[str]:
        """Asset ids a market-channel frame is about (for subscription filtering)."""
        try:
            obj = json.loads(text)
        except ValueError:
            return set()
        items = obj if isinstance(obj, list) else [obj]
        ids: set[str] = set()
        for it in items:
            if not isinstance(it, dict):
                continue
            if "asset_id" in it:
                ids.add(str(it["asset_id"]))
            for pc in it.get("price_changes") or []:
                if isinstance(pc, dict) and "asset_id" in pc:
                    ids.add(str(pc["asset_id"]))
            for a in it.get("assets_ids") or []:
                ids.add(str(a))
        return ids
