"""JSONL logging into the seven streams under LOG_DIR: one JSON object a line with at least
`ts`, `service`, `event`. Every process appends (O_APPEND keeps whole lines intact); files roll
over to `<stream>.<YYYY-MM-DD>.jsonl` at the UTC day boundary."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO, Any

import msgspec

from common.clock import iso_utc, now_ns, utc_day

STREAMS = ("ingestion", "signal", "strategy", "execution", "risk", "latency", "errors")
LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


def _default(obj: Any) -> Any:
    return repr(obj)  # Secrets, paths, exceptions: their repr (a Secret's hides the value)


_encoder = msgspec.json.Encoder(enc_hook=_default)


class JsonlLog:
    """One service's writer into the shared streams."""

    def __init__(self, log_dir: str | os.PathLike[str], service: str, level: str = "INFO") -> None:
        self.dir = Path(log_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.service = service
        self.min_level = LEVELS.get(level.upper(), 20)
        self._files: dict[str, tuple[str, IO[bytes]]] = {}

    def _file(self, stream: str, day: str) -> IO[bytes]:
        cur = self._files.get(stream)
        if cur is not None and cur[0] == day:
            return cur[1]
        path = self.dir / f"{stream}.jsonl"
        if cur is not None:
            cur[1].close()
        # roll yesterday's file aside once; another process may already have done it
        if path.exists() and utc_day(int(path.stat().st_mtime * 1e9)) != day:
            rolled = self.dir / f"{stream}.{utc_day(int(path.stat().st_mtime * 1e9))}.jsonl"
            if not rolled.exists():
                try:
                    os.replace(path, rolled)
                except OSError:
                    pass
        f = open(path, "ab", buffering=0)  # noqa: SIM115 - kept open for the process's life
        self._files[stream] = (day, f)
        return f

    def write(self, stream: str, event: str, level: str = "INFO", **fields: Any) -> None:
        if stream not in STREAMS:
            raise ValueError(f"unknown log stream {stream!r}; expected one of {STREAMS}")
        lv = LEVELS.get(level, 20)
        if lv < self.min_level:
            return
        ts = now_ns()
        rec = {
            "ts": iso_utc(ts),
            "ts_ns": ts,
            "service": self.service,
            "level": level,
            "event": event,
        }
        rec.update(fields)
        line = _encoder.encode(rec) + b"\n"
        self._file(stream, utc_day(ts)).write(line)
        if lv >= 40 and stream != "errors":
            self._file("errors", utc_day(ts)).write(line)
        if lv >= 30:
            sys.stderr.write(line.decode())

    def error(self, event: str, **fields: Any) -> None:
        self.write("errors", event, "ERROR", **fields)

    def close(self) -> None:
        for _, f in self._files.values():
            f.close()
        self._files.clear()
