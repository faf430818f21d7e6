"""Plays a capture (raw venue frames with receive times) back through the venue's sockets.

Capture format: JSON Lines, one frame per line, an object with
  - a receive time: `ts_recv_ns` (or `recv_ns`, `ts_ns`; `recv_ms`/`ts_ms` in ms),
  - a source: `channel` (or `source`, `venue`, `stream`), mapped by substring:
    "binance" -> Binance sockets, "rtds"/"chainlink"/"price" -> RTDS, "user" -> skipped,
    anything with "market"/"clob"/"polymarket" -> market channel,
  - the frame: `frame` (or `raw`, `text`) as the exact text received, or `data` as JSON.
Lines that don't fit are counted and skipped. Frames keep their relative spacing divided by speed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

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
    def load(cls, path: str, speed: float = 1.0) -> Replay:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        frames: list[tuple[int, str, str]] = []
        skipped = 0
        with open(path, encoding="utf-8") as fh:
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
                    kind = _kind(src)
                    text = next((rec[k] for k in ("frame", "raw", "text") if k in rec), None)
                    if text is None:
                        text = json.dumps(rec["data"], separators=(",", ":"))
                    if kind is None or ts is None or not isinstance(text, str):
                        raise ValueError
                except (ValueError, KeyError, StopIteration, TypeError):
                    skipped += 1
                    continue
                frames.append((ts, kind, text))
        frames.sort(key=lambda f: f[0])
        return cls(frames, speed, skipped)

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
