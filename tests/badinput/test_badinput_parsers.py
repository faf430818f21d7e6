"""Property-based fuzzing (hypothesis) of every venue parser and of the bus decoder with
malformed and hostile input: real fixture frames mutated field by field (wrong types, NaN and
infinite numbers, huge integers, missing and unknown fields, arrays for objects), truncated
frames, deep nesting and plain garbage.

The contract under test: a parser either returns messages that are valid on our own bus (they
survive the schema's encode/decode, so garbage can never reach a subscriber and crash it) and
follow the venue's rules (books best level first), or it raises `ParseError` naming the problem.
Nothing else escapes.
"""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from common import schema
from common.bus import BusError, _Receiver
from services.ingest import parsers as P
from tests.badinput import badinput_hostile as hostile
from tests.conftest import FIXTURES, REPO

TS = 1_790_000_000_123_456_789
FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


def _docs(*rels: str) -> list[Any]:
    out = []
    for rel in rels:
        for path in sorted(FIXTURES.glob(rel)):
            out.append(json.loads(path.read_text()))
    assert out, f"no fixtures match {rels}"
    return out


BINANCE = _docs(
    "binance_docs/spot_*.json", "live_2026/binance_*.json", "nautilus_trader/binance_ws/*.json"
)
CLOB = _docs(
    "live_2026/clob_ws_*.json",
    "polymarket_docs/market_channel_book.json",
    "nautilus_trader/polymarket_rs/ws_market_*.json",
    "nautilus_trader/polymarket_ws_py/book.json",
    "nautilus_trader/polymarket_ws_py/last_trade_price.json",
    "nautilus_trader/polymarket_ws_py/price_change*.json",
    "nautilus_trader/polymarket_ws_py/tick_size_change.json",
)
RTDS = _docs("live_2026/rtds_*.json", "nautilus_trader/polymarket_rs/rtds_*.json")
GAMMA = _docs(
    "live_2026/gamma_*.json",
    "nautilus_trader/polymarket_http_py/event.json",
    "nautilus_trader/polymarket_http_py/market*.json",
    "nautilus_trader/polymarket_rs/gamma_market*.json",
)

# --- hostile values and frames ----------------------------------------------------------------------
HOSTILE_STRINGS = [
    "", " ", "NaN", "nan", "Infinity", "-Infinity", "inf", "-inf", "1e999", "-1e999", "-0", "-1",
    "0x10", " 1 ", "1_000", "1,5", "\u0661\u0662", "null", "true", "[]", "{}", "\x00", "\ud800x",
    "9" * 400, "0." + "0" * 400 + "1", "2026-13-45T99:99:99Z", "BUY", "SELL", "buy",
]  # fmt: skip
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**80), 2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(HOSTILE_STRINGS),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
)
values = st.recursive(
    scalars,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=12,
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _set(doc: Any, path: tuple[Any, ...], fn: Callable[[Any, Any], Any]) -> Any:
    """Apply fn(parent, key) at `path` (fn mutates the parent); the root is replaced instead."""
    if not path:
        return fn(None, None)
    node = doc
    for k in path[:-1]:
        node = node[k]
    fn(node, path[-1])
    return doc


@st.composite
def mutated(draw: st.DrawFn, docs: list[Any]) -> str:
    """A real frame with one to four hostile edits, serialised as the venue would send it."""
    doc = copy.deepcopy(draw(st.sampled_from(docs)))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(_paths(doc)))
        op = draw(st.sampled_from(["replace", "delete", "unknown_field", "wrap", "stringify"]))
        if op == "replace":
            new = draw(values)

            def put(parent: Any, key: Any, new: Any = new) -> Any:
                if parent is None:
                    return new
                parent[key] = new
                return None

            doc = _set(doc, path, put) if path else new
        elif op == "delete" and path:
            doc = _set(doc, path, lambda parent, key: parent.pop(key))
        elif op == "unknown_field":
            target = doc
            for k in path:
                target = target[k]
            if isinstance(target, dict):
                target[draw(st.text(min_size=1, max_size=12))] = draw(values)
        elif op == "wrap":  # an object where the venue may send an array of them, or nesting
            doc = [doc] if not path else _set(doc, path, lambda p, k: p.__setitem__(k, [p[k]]))
        elif op == "stringify" and path:  # numbers as strings and strings as numbers

            def flip(parent: Any, key: Any) -> None:
                v = parent[key]
                if isinstance(v, int | float) and not isinstance(v, bool):
                    parent[key] = str(v)
                elif isinstance(v, str):
                    try:
                        parent[key] = float(v)
                    except ValueError:
                        parent[key] = len(v)

            doc = _set(doc, path, flip)
    return json.dumps(doc, allow_nan=True)  # NaN / Infinity literals are hostile input too


def _truncated(docs: list[Any]) -> st.SearchStrategy[str]:
    texts = [json.dumps(d) for d in docs]
    return st.sampled_from(texts).flatmap(
        lambda t: st.integers(0, max(0, len(t) - 1)).map(lambda n: t[:n])
    )


garbage = st.one_of(
    st.binary(max_size=512),
    st.text(max_size=512),
    st.sampled_from(
        [
            "PONG",
            "PING",
            "NO NEW ASSETS",
            "\ufeff{}",
            b"\xff\xfe\x00{",
            "[]",
            "{}",
            "null",
            '[null, 1, "x"]',
            '{"e": "trade"}',
            '{"event_type": "book"}',
            '{"stream": "btcusdt@trade", "data": null}',
            '{"topic": "crypto_prices", "payload": []}',
        ]
    ),
)

# --- the contract -----------------------------------------------------------------------------------
BINANCE_OUT = (schema.BtcTrade, schema.BtcQuote, P.ServerShutdown, P.VenueNotice)
CLOB_OUT = (
    schema.BookSnapshot,
    P.BookDelta,
    P.TickSizeChange,
    P.LastTrade,
    P.BestBidAsk,
    P.MarketResolvedRaw,
    P.NewMarket,
    P.Pong,
    P.VenueNotice,
)
RTDS_OUT = (schema.PriceFeedTick, P.Pong, P.VenueNotice)


def _finite(*xs: float | None) -> bool:
    return all(x is None or math.isfinite(x) for x in xs)


def check_outputs(out: list[Any], allowed: tuple[type, ...]) -> None:
    assert isinstance(out, list)
    for m in out:
        assert isinstance(m, allowed), f"unexpected output type {type(m).__name__}"
        if isinstance(m, schema.Msg):
            # what a subscriber would decode: NaN, negative or mistyped fields cannot pass
            back = schema.decode(schema.encode(m))
            assert back == m
        if isinstance(m, schema.BookSnapshot):
            bids = [p for p, _ in m.bids]
            asks = [p for p, _ in m.asks]
            assert bids == sorted(bids, reverse=True), "bids must be best (highest) first"
            assert asks == sorted(asks), "asks must be best (lowest) first"
            assert m.best_bid == (bids[0] if bids else None)
            assert m.best_ask == (asks[0] if asks else None)
            assert all(s >= 0 and _finite(p, s) for p, s in [*m.bids, *m.asks])
        if isinstance(m, schema.BtcTrade | schema.PriceFeedTick):
            assert _finite(getattr(m, "price", None), getattr(m, "value", None))
        if isinstance(m, P.BookDelta):
            assert all(_finite(c.price, c.size) for c in m.changes)
        if isinstance(m, P.TickSizeChange):
            assert _finite(m.new_tick_size) and m.new_tick_size > 0, m


def run_parser(
    parse: Callable[[Any, int], list[Any]], frame: Any, allowed: tuple[type, ...]
) -> None:
    try:
        out = parse(frame, TS)
    except P.ParseError as e:
        assert str(e), "a ParseError must say what is wrong"
        return
    check_outputs(out, allowed)


# --- hostile sizes: each in a child process (deep nesting may crash the decoder outright) ---------
@pytest.mark.parametrize("case", sorted(hostile.cases()))
@pytest.mark.parametrize("venue", sorted(hostile.PARSERS))
def test_hostile_sizes_are_parsed_or_refused(venue: str, case: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "tests.badinput.badinput_hostile", venue, case],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if r.returncode < 0:
        pytest.fail(f"{venue} parser killed the process with signal {-r.returncode} on {case}")
    assert r.returncode == 0, f"{venue} parser on {case}: {r.stdout.strip()} {r.stderr[-300:]}"
    assert r.stdout.startswith(("ok ", "refused ")), r.stdout


# --- sanity: the unmutated fixtures parse, so the mutations start from real frames ----------------
@pytest.mark.parametrize(
    ("parse", "docs"), [(P.parse_binance, BINANCE), (P.parse_clob, CLOB), (P.parse_rtds, RTDS)]
)
def test_real_frames_parse_cleanly(parse: Callable[[Any, int], list[Any]], docs: list[Any]) -> None:
    produced = 0
    for d in docs:
        try:
            out = parse(json.dumps(d), TS)
        except P.ParseError:
            continue  # requests and other non-feed fixtures in the same folders
        produced += len(out)
    assert produced > 0


# --- Binance ----------------------------------------------------------------------------------------
@FUZZ
@given(frame=mutated(BINANCE))
def test_binance_mutated_frames(frame: str) -> None:
    run_parser(P.parse_binance, frame, BINANCE_OUT)


@FUZZ
@given(frame=st.one_of(garbage, _truncated(BINANCE)))
@example(frame='{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"NaN","q":"1","T":1,"m":true}')
@example(frame='{"e":"aggTrade","E":1,"s":"BTCUSDT","a":1,"p":"-5","q":"1","T":1e30}')
@example(frame='{"u":1,"s":"BTCUSDT","b":"Infinity","B":"1","a":"1","A":"1"}')
@example(frame='{"e":"trade","s":"\ud800"}')  # lone surrogate: not UTF-8-encodable
def test_binance_garbage(frame: Any) -> None:
    run_parser(P.parse_binance, frame, BINANCE_OUT)


# --- Polymarket market channel ----------------------------------------------------------------------
@FUZZ
@given(frame=mutated(CLOB))
def test_clob_mutated_frames(frame: str) -> None:
    run_parser(P.parse_clob, frame, CLOB_OUT)


@FUZZ
@given(frame=st.one_of(garbage, _truncated(CLOB)))
@example(frame='{"event_type":"book","asset_id":"1","market":"m","timestamp":"1",'
               '"bids":[{"price":"NaN","size":"1"}],"asks":[]}')  # fmt: skip
@example(frame='[{"event_type":"tick_size_change","asset_id":"1","market":"m",'
               '"old_tick_size":"0.01","new_tick_size":"0"}]')  # fmt: skip
@example(frame='{"event_type":"price_change","market":"m","timestamp":"1",'
               '"price_changes":[{"asset_id":"1","price":"0.5","size":"-3","side":"BUY"}]}')  # fmt: skip
@example(frame='[{"event_type":"\udfff"}]')  # lone surrogate: not UTF-8-encodable
@example(frame='{"event_type":"price_change","price_changes":[],"m":"\ud800"}')
def test_clob_garbage(frame: Any) -> None:
    run_parser(P.parse_clob, frame, CLOB_OUT)


# --- RTDS price feed --------------------------------------------------------------------------------
@FUZZ
@given(frame=mutated(RTDS))
def test_rtds_mutated_frames(frame: str) -> None:
    run_parser(P.parse_rtds, frame, RTDS_OUT)


@FUZZ
@given(frame=st.one_of(garbage, _truncated(RTDS)))
@example(frame='{"topic":"\ud800"}')  # lone surrogate: not UTF-8-encodable
def test_rtds_garbage(frame: Any) -> None:
    run_parser(P.parse_rtds, frame, RTDS_OUT)


# --- Gamma REST -------------------------------------------------------------------------------------
def run_gamma(doc: Any) -> None:
    try:
        info = P.parse_gamma(doc, TS)
    except P.ParseError as e:
        assert str(e)
        return
    assert isinstance(info, schema.MarketInfo)
    assert schema.decode(schema.encode(info)) == info
    assert info.window_end_ns > info.window_start_ns, "a window must end after it starts"
    assert info.up_token_id and info.down_token_id and info.up_token_id != info.down_token_id
    assert info.tick_size > 0 and math.isfinite(info.tick_size)


def test_real_gamma_documents_parse() -> None:
    parsed = 0
    for d in GAMMA:
        try:
            P.parse_gamma(json.dumps(d), TS)
            parsed += 1
        except P.ParseError:
            pass
    assert parsed > 0


@FUZZ
@given(doc=mutated(GAMMA))
def test_gamma_mutated_documents(doc: str) -> None:
    run_gamma(doc)


@FUZZ
@given(doc=st.one_of(garbage, _truncated(GAMMA), values))
@example(doc="\ud800x")  # lone surrogate: not UTF-8-encodable
def test_gamma_garbage(doc: Any) -> None:
    run_gamma(doc)


# --- our own bus: anything undecodable is an internal fault (BusError), never a crash elsewhere ----
# what msgpack can carry: 64-bit integers, proper unicode
mp_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(blacklist_categories=["Cs"]), max_size=20),
    st.binary(max_size=20),
)
mp_values = st.recursive(
    mp_scalars,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=12,
)


class _FakeSock:
    def getsockopt(self, _opt: int) -> int:
        return -1


@FUZZ
@given(
    payload=st.one_of(
        st.binary(max_size=256),
        mp_values.map(lambda v: schema.msgspec.msgpack.encode(v)),
        st.builds(
            lambda seq, epoch, kind, body: schema.msgspec.msgpack.encode(
                [seq, epoch, {"kind": kind, **body}]
            ),
            st.integers(-(2**63), 2**63 - 1),
            st.integers(-(2**63), 2**63 - 1),
            st.sampled_from(sorted(schema.KINDS)),
            st.dictionaries(
                st.sampled_from(["price", "size", "ts_ns", "asset_id", "p_up", "bids", "hops"]),
                mp_values,
            ),
        ),
    )
)
def test_bus_payload_is_decoded_or_is_a_bus_error(payload: bytes) -> None:
    recv = _Receiver(_FakeSock(), drop_expired=True)  # type: ignore[arg-type]
    try:
        item = recv._decode([b"md.fuzz", payload])
    except BusError as e:
        assert "undecodable" in str(e)
        return
    if item is not None:
        topic, env = item
        assert topic == "md.fuzz" and isinstance(env.msg, schema.MESSAGE_TYPES)
        assert schema.decode_envelope(schema.encode(env)) == env
