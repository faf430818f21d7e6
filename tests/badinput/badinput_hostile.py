"""Hostile-size frames for the parser fuzz tests, each parsed in a child process of its own (run
as `python -m tests.badinput.badinput_hostile VENUE CASE`): deep nesting can exhaust the C stack
inside the JSON decoder and kill the process outright, which must not take the test run with it,
and a child has the interpreter's default recursion limit, as the ingest process does.

Prints one line: `ok N` (N messages, all valid on the bus), `refused <ParseError text>`, or
`escaped <exception type>: <text>` (exit status 3)."""

from __future__ import annotations

import json
import sys

from common import schema
from services.ingest import parsers as P

TS = 1_790_000_000_123_456_789


def cases() -> dict[str, str]:
    return {
        "deep_arrays": "[" * 100_000 + "]" * 100_000,  # nesting far past any recursion limit
        "deep_objects": '{"a":' * 50_000 + "1" + "}" * 50_000,
        "deep_event": '{"event_type":"book","bids":' + "[" * 100_000 + "]" * 100_000 + "}",
        "megabyte_string": json.dumps({"e": "trade", "x": "y" * 1_000_000}),
        "many_levels": json.dumps(
            {
                "event_type": "book",
                "asset_id": "1",
                "market": "m",
                "timestamp": "1",
                "bids": [{"price": "0.5", "size": "1"}] * 200_000,
                "asks": [],
            }
        ),
    }


PARSERS = {
    "binance": P.parse_binance,
    "clob": P.parse_clob,
    "rtds": P.parse_rtds,
    "gamma": lambda frame, ts: [P.parse_gamma(frame, ts)],
}


def main(venue: str, case: str) -> int:
    try:
        out = PARSERS[venue](cases()[case], TS)
    except P.ParseError as e:
        print(f"refused {str(e)[:200]}")
        return 0
    except Exception as e:  # noqa: BLE001 - the point: report whatever escapes
        print(f"escaped {type(e).__name__}: {str(e)[:200]}")
        return 3
    for m in out:
        if isinstance(m, schema.Msg):
            schema.decode(schema.encode(m))  # valid on our own bus
    print(f"ok {len(out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2]))
