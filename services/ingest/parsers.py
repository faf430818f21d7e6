"""Venue frame parsers: raw frame text/bytes + receive time -> schema messages (or small venue events).

Pure functions, no I/O and no clock: the live feed clients, the backtest and the benchmark all call
them on the same raw frames. Frames are parsed by the venue's rules (PROTOCOLS.md), never by the
shape of one sample: unknown fields are ignored, optional fields may be missing, decimals may come
as strings or numbers, a Polymarket frame may be an object or an array of objects. Anything that
cannot be understood raises `ParseError` naming the problem; callers count it and move on.

API (all return a list, possibly empty):
- `parse_binance(frame, ts_recv_ns)` -> BtcTrade | BtcQuote | ServerShutdown | VenueNotice
- `parse_clob(frame, ts_recv_ns)` -> BookSnapshot (best FIRST) | BookDelta | TickSizeChange |
  LastTrade | BestBidAsk | MarketResolvedRaw | NewMarket | Pong | VenueNotice
- `parse_rtds(frame, ts_recv_ns)` -> PriceFeedTick | Pong | VenueNotice
- `parse_gamma(doc_text, ts_recv_ns, slug=None)` -> MarketInfo (role "current"; the caller sets it)
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

import msgspec
from msgspec import Struct

from common.schema import (
    BookSnapshot,
    BtcQuote,
    BtcTrade,
    MarketInfo,
    PriceFeedTick,
    Side,
)

MS = 1_000_000
S = 1_000_000_000
MAX_MS = 4_102_444_800_000  # 2100-01-01: anything later is garbage (and would not fit the bus)
INT64_MAX = 2**63 - 1

_decode_json = msgspec.json.Decoder().decode


class ParseError(ValueError):
    """A frame that does not follow the venue's format (external fault: count, log, skip)."""


# --- venue events that are not bus messages ------------------------------------------------------
class ServerShutdown(Struct, frozen=True):
    """Binance `serverShutdown`: the server will close this connection soon; reconnect now."""

    ts_exchange_ns: int
    ts_recv_ns: int


class VenueNotice(Struct, frozen=True):
    """A frame understood but carrying no market data (subscription answers, unknown events).

    `known` is False for event types we do not know: callers count and log those."""

    what: str
    known: bool = True


class LevelChange(Struct, frozen=True, array_like=True):
    """One entry of a `price_change`: `side` BUY (bid) / SELL (ask), `price`, and `size` the new
    total at that price (0 removes the level)."""

    side: Side
    price: float
    size: float


class BookDelta(Struct, frozen=True):
    """A `price_change` frame's changes for one asset, in frame order, with the venue's stated
    best bid/ask. Ingest folds it into its book (`BookSet.on_delta`) and publishes the whole book
    (`BookSnapshot`): a delta never goes on the bus."""

    asset_id: str
    changes: list[LevelChange]
    best_bid: float | None
    best_ask: float | None
    ts_exchange_ns: int
    ts_recv_ns: int
    market: str = ""


class Pong(Struct, frozen=True):
    ts_recv_ns: int


class TickSizeChange(Struct, frozen=True):
    asset_id: str
    market: str
    old_tick_size: float
    new_tick_size: float
    ts_exchange_ns: int
    ts_recv_ns: int


class LastTrade(Struct, frozen=True):
    asset_id: str
    market: str
    price: float
    size: float
    side: str
    ts_exchange_ns: int
    ts_recv_ns: int


class BestBidAsk(Struct, frozen=True):
    """Venue's own top of book (`custom_feature_enabled`); None when the side is empty."""

    asset_id: str
    market: str
    best_bid: float | None
    best_ask: float | None
    ts_exchange_ns: int
    ts_recv_ns: int


class MarketResolvedRaw(Struct, frozen=True):
    market: str  # condition id
    winning_asset_id: str
    winning_outcome: str
    ts_exchange_ns: int
    ts_recv_ns: int


class NewMarket(Struct, frozen=True):
    market: str
    slug: str
    asset_ids: list[str]
    ts_recv_ns: int


# --- scalar helpers --------------------------------------------------------------------------------
def _num(v: Any, what: str) -> float:
    """A finite, non-negative number from a JSON number or decimal string."""
    if type(v) is str:  # the venues' usual form: checked first, the rest as before
        try:
            x = float(v)
        except ValueError:
            raise ParseError(f"{what}: not a decimal: {v[:40]!r}") from None
        if x >= 0.0 and x != math.inf:  # NaN fails the first test
            return x
        raise ParseError(f"{what}: out of range: {v!r}")
    if isinstance(v, bool):
        raise ParseError(f"{what}: expected a number, got a boolean")
    if isinstance(v, int | float):
        x = float(v)
    elif isinstance(v, str):
        try:
            x = float(v.strip())
        except ValueError:
            raise ParseError(f"{what}: not a decimal: {v[:40]!r}") from None
    else:
        raise ParseError(f"{what}: expected a number, got {type(v).__name__}")
    if not math.isfinite(x) or x < 0.0:
        raise ParseError(f"{what}: out of range: {v!r}")
    return x


def _opt_num(v: Any, what: str) -> float | None:
    if v is None or v == "":
        return None
    return _num(v, what)


def _ms_to_ns(v: Any, what: str) -> int:
    """Venue milliseconds (int, float or string) -> ns; missing -> 0."""
    if v is None or v == "":
        return 0
    if isinstance(v, bool):
        raise ParseError(f"{what}: expected milliseconds, got a boolean")
    if isinstance(v, int):
        ms = v
    elif isinstance(v, float | str):
        try:
            ms = int(float(v)) if isinstance(v, float) or "." in v else int(v)
        except ValueError:
            raise ParseError(f"{what}: not a timestamp: {str(v)[:40]!r}") from None
    else:
        raise ParseError(f"{what}: expected milliseconds, got {type(v).__name__}")
    if not 0 <= ms <= MAX_MS:
        raise ParseError(f"{what}: timestamp out of range: {ms}")
    return ms * MS


def _int(v: Any, default: int = 0) -> int:
    if isinstance(v, bool) or v is None:
        return default
    try:
        n = int(v)
    except (TypeError, ValueError, OverflowError):
        return default
    return n if -INT64_MAX <= n <= INT64_MAX else default


def _str(v: Any) -> str:
    return v if isinstance(v, str) else ("" if v is None else str(v))


def _text(frame: str | bytes | bytearray | memoryview) -> str | bytes:
    if isinstance(frame, bytearray | memoryview):
        return bytes(frame)
    return frame


def _load(frame: str | bytes | bytearray | memoryview) -> Any:
    try:
        return _decode_json(_text(frame))
    except msgspec.DecodeError as e:
        raise ParseError(f"not JSON: {e}") from None
    except UnicodeError as e:  # e.g. a lone surrogate in a str frame: not encodable as UTF-8
        raise ParseError(f"not UTF-8 text: {e.reason} at {e.start}") from None
    except RecursionError:  # hostile nesting: refuse it, never let it take the process down
        raise ParseError("JSON nested too deeply") from None


def _is_plain(frame: str | bytes | bytearray | memoryview, word: str) -> bool:
    f = _text(frame)
    if isinstance(f, bytes):
        return f.strip() == word.encode()
    return f.strip() == word


# --- Binance ---------------------------------------------------------------------------------------
def parse_binance(frame: str | bytes, ts_recv_ns: int) -> list[Any]:
    """One Binance spot frame (raw or combined-stream wrapper) -> BtcTrade / BtcQuote / events."""
    obj = _load(frame)
    if isinstance(obj, list):  # not sent by Binance today; tolerate it anyway
        out: list[Any] = []
        for item in obj:
            out.extend(_binance_event(item, ts_recv_ns))
        return out
    return _binance_event(obj, ts_recv_ns)


def symbol_asset(symbol: str) -> str:
    """A Binance symbol's asset against USDT: "ETHUSDT" -> "eth" (another quote: the symbol
    lower-cased, which no configured asset matches)."""
    s = symbol.lower()
    return s[:-4] if s.endswith("usdt") and len(s) > 4 else s


def _binance_event(obj: Any, ts_recv_ns: int) -> list[Any]:
    if not isinstance(obj, dict):
        raise ParseError(f"binance: expected a JSON object, got {type(obj).__name__}")
    if "data" in obj and "stream" in obj:  # combined stream wrapper
        obj = obj["data"]
        if not isinstance(obj, dict):
            raise ParseError("binance: combined-stream 'data' is not an object")
    if "result" in obj and "id" in obj:  # answer to SUBSCRIBE / LIST_SUBSCRIPTIONS
        return [VenueNotice("binance_response")]
    if "code" in obj and "msg" in obj:
        return [VenueNotice(f"binance_error:{obj.get('code')}:{_str(obj.get('msg'))[:80]}")]
    ev = obj.get("e")
    if ev == "aggTrade" or ev == "trade":
        try:
            p, q = obj["p"], obj["q"]
        except KeyError as e:
            raise ParseError(f"binance {ev}: missing field {e.args[0]!r}") from None
        ts = _ms_to_ns(obj.get("T"), "T") or _ms_to_ns(obj.get("E"), "E")
        return [
            BtcTrade(
                price=_num(p, f"{ev}.p"),
                size=_num(q, f"{ev}.q"),
                ts_exchange_ns=ts,
                ts_recv_ns=ts_recv_ns,
                trade_id=_int(obj.get("a" if ev == "aggTrade" else "t")),
                buyer_is_maker=bool(obj.get("m", False)),
                symbol=(sym := _str(obj.get("s")).upper() or "BTCUSDT"),
                asset=symbol_asset(sym),
            )
        ]
    if ev == "serverShutdown":
        return [ServerShutdown(_ms_to_ns(obj.get("E"), "E"), ts_recv_ns)]
    if ev is None and "b" in obj and "a" in obj and "u" in obj:  # bookTicker has no "e"
        try:
            return [
                BtcQuote(
                    bid=_num(obj["b"], "bookTicker.b"),
                    bid_size=_num(obj["B"], "bookTicker.B"),
                    ask=_num(obj["a"], "bookTicker.a"),
                    ask_size=_num(obj["A"], "bookTicker.A"),
                    ts_recv_ns=ts_recv_ns,
                    update_id=_int(obj.get("u")),
                    # only the futures/old form carries times; spot has none
                    ts_exchange_ns=_ms_to_ns(obj.get("E") or obj.get("T"), "E"),
                    symbol=(sym := _str(obj.get("s")).upper() or "BTCUSDT"),
                    asset=symbol_asset(sym),
                )
            ]
        except KeyError as e:
            raise ParseError(f"binance bookTicker: missing field {e.args[0]!r}") from None
    return [VenueNotice(f"binance:{ev}", known=False)]


# --- Polymarket CLOB market channel ---------------------------------------------------------------
def _levels(raw: Any, what: str) -> list[tuple[float, float]]:
    """Book side -> [(price, size)] with zero sizes dropped, best FIRST is NOT applied here."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ParseError(f"{what}: expected an array of levels, got {type(raw).__name__}")
    out: list[tuple[float, float]] = []
    for lv in raw:
        if isinstance(lv, dict):
            p, s = lv.get("price"), lv.get("size")
        elif isinstance(lv, list | tuple) and len(lv) >= 2:
            p, s = lv[0], lv[1]
        else:
            # e.g. a capture tool's "... 93 more ..." placeholder: not a level, skip it
            continue
        if p is None or s is None:
            raise ParseError(f"{what}: level without price or size")
        size = _num(s, f"{what}.size")
        if size > 0.0:
            out.append((_num(p, f"{what}.price"), size))
    return out


def parse_clob(frame: str | bytes, ts_recv_ns: int) -> list[Any]:
    """One market-channel frame (object, array of objects, PONG, or plain notice) -> events."""
    f = _text(frame)
    head = f.lstrip()[:1] if isinstance(f, str) else f.lstrip()[:1].decode("latin-1")
    if head not in ("{", "["):
        if _is_plain(f, "PONG"):
            return [Pong(ts_recv_ns)]
        word = f.strip() if isinstance(f, str) else f.strip().decode("utf-8", "replace")
        if word == "NO NEW ASSETS":
            return [VenueNotice("no_new_assets")]
        if not word:
            return [VenueNotice("empty")]
        raise ParseError(f"clob: unexpected text frame {word[:60]!r}")
    if (b'"price_changes"' if isinstance(f, bytes) else '"price_changes"') in f:
        try:  # the busiest frame, decoded straight into its shape; anything else: the general path
            pc = _decode_price_change(f)
        except (msgspec.DecodeError, RecursionError, UnicodeError):  # the general path names it
            pc = None
        if pc is not None and pc.event_type in (None, "price_change"):
            return _typed_price_change(pc, ts_recv_ns)
    obj = _load(f)
    if isinstance(obj, list):
        out: list[Any] = []
        for item in obj:
            out.extend(_clob_event(item, ts_recv_ns))
        return out
    return _clob_event(obj, ts_recv_ns)


class _PriceChangeEntry(Struct):
    """One entry of the current `price_change` form as the venue sends it (decimal strings)."""

    price: str
    size: str
    side: str
    asset_id: str = ""
    best_bid: str | None | msgspec.UnsetType = msgspec.UNSET
    best_ask: str | None | msgspec.UnsetType = msgspec.UNSET


class _PriceChangeFrame(Struct):
    """The current `price_change` frame (since 2025-09-15, PROTOCOLS.md section 2)."""

    price_changes: list[_PriceChangeEntry]
    event_type: str | None = None
    market: str = ""
    timestamp: Any = None


_decode_price_change = msgspec.json.Decoder(_PriceChangeFrame).decode


def _typed_price_change(pc: _PriceChangeFrame, ts_recv_ns: int) -> list[Any]:
    """`_price_change` for a frame already decoded into its shape: the same events and the same
    `ParseError`s (the checks are `_num`'s and `_price_change`'s)."""
    ts = _ms_to_ns(pc.timestamp, "timestamp")
    per_asset: dict[str, tuple[list[LevelChange], list[float | None]]] = {}
    unset = msgspec.UNSET
    for e in pc.price_changes:
        asset = e.asset_id
        if not asset:
            raise ParseError("price_change: change without asset_id")
        side = e.side.upper()
        if side not in ("BUY", "SELL"):
            raise ParseError(f"price_change: bad side {e.side!r}")
        ch = LevelChange(
            side=side,  # type: ignore[arg-type]
            price=_num(e.price, "price_change.price"),
            size=_num(e.size, "price_change.size"),
        )
        slot = per_asset.get(asset)
        if slot is None:
            slot = per_asset[asset] = ([], [None, None])
        slot[0].append(ch)
        bb, ba = e.best_bid, e.best_ask
        if bb is not unset or ba is not unset:
            slot[1][0] = None if bb is unset else _opt_num(bb, "price_change.best_bid")
            slot[1][1] = None if ba is unset else _opt_num(ba, "price_change.best_ask")
    return [
        BookDelta(
            asset_id=asset,
            changes=changes,
            best_bid=best[0],
            best_ask=best[1],
            ts_exchange_ns=ts,
            ts_recv_ns=ts_recv_ns,
            market=pc.market,
        )
        for asset, (changes, best) in per_asset.items()
    ]


def _clob_event(obj: Any, ts_recv_ns: int) -> list[Any]:
    if not isinstance(obj, dict):
        raise ParseError(f"clob: expected a JSON object, got {type(obj).__name__}")
    et = obj.get("event_type")
    if et is None and "price_changes" in obj:
        et = "price_change"
    ts = _ms_to_ns(obj.get("timestamp"), "timestamp")
    market = _str(obj.get("market"))
    if et == "book":
        asset = _str(obj.get("asset_id"))
        if not asset:
            raise ParseError("clob book: missing asset_id")
        bids = _levels(obj.get("bids", obj.get("buys")), "book.bids")
        asks = _levels(obj.get("asks", obj.get("sells")), "book.asks")
        bids.sort(key=lambda lv: -lv[0])  # best (highest) first; the venue sends it last
        asks.sort(key=lambda lv: lv[0])
        tick = _opt_num(obj.get("tick_size"), "book.tick_size")
        return [
            BookSnapshot(
                asset_id=asset,
                best_bid=bids[0][0] if bids else None,
                best_ask=asks[0][0] if asks else None,
                bids=bids,
                asks=asks,
                ts_exchange_ns=ts,
                ts_recv_ns=ts_recv_ns,
                market=market,
                tick_size=tick if tick else 0.0,  # 0.0: not stated, keep the known one
                hash=_str(obj.get("hash")),
            )
        ]
    if et == "price_change":
        return _price_change(obj, market, ts, ts_recv_ns)
    if et == "tick_size_change":
        asset = _str(obj.get("asset_id"))
        if not asset:
            raise ParseError("clob tick_size_change: missing asset_id")
        new = _num(obj.get("new_tick_size"), "tick_size_change.new_tick_size")
        if new <= 0.0:
            raise ParseError("clob tick_size_change: new_tick_size must be > 0")
        return [
            TickSizeChange(
                asset,
                market,
                _opt_num(obj.get("old_tick_size"), "tick_size_change.old_tick_size") or 0.0,
                new,
                ts,
                ts_recv_ns,
            )
        ]
    if et == "last_trade_price":
        return [
            LastTrade(
                _str(obj.get("asset_id")),
                market,
                _num(obj.get("price"), "last_trade_price.price"),
                _opt_num(obj.get("size"), "last_trade_price.size") or 0.0,
                _str(obj.get("side")),
                ts,
                ts_recv_ns,
            )
        ]
    if et == "best_bid_ask":
        return [
            BestBidAsk(
                _str(obj.get("asset_id")),
                market,
                _opt_num(obj.get("best_bid"), "best_bid_ask.best_bid"),
                _opt_num(obj.get("best_ask"), "best_bid_ask.best_ask"),
                ts,
                ts_recv_ns,
            )
        ]
    if et == "market_resolved":
        return [
            MarketResolvedRaw(
                market or _str(obj.get("condition_id")),
                _str(obj.get("winning_asset_id")),
                _str(obj.get("winning_outcome")),
                ts,
                ts_recv_ns,
            )
        ]
    if et == "new_market":
        ids = obj.get("assets_ids") or obj.get("clob_token_ids") or []
        return [
            NewMarket(
                market or _str(obj.get("condition_id")),
                _str(obj.get("slug")),
                [_str(x) for x in ids] if isinstance(ids, list) else [],
                ts_recv_ns,
            )
        ]
    return [VenueNotice(f"clob:{et}", known=False)]


def _price_change(obj: dict[str, Any], market: str, ts: int, ts_recv_ns: int) -> list[Any]:
    """All three `price_change` forms -> one BookDelta per asset, changes in frame order.

    Current (since 2025-09-15): `price_changes: [{asset_id, price, size, side, best_bid, ...}]`.
    Older: top-level `asset_id` with `changes: [{price, size, side}]`, or flat top-level
    `asset_id, price, size, side`. `size` is the new total at that price; 0 removes it."""
    if "price_changes" in obj:
        entries = obj["price_changes"]
        top_asset = ""
    elif "changes" in obj:
        entries = obj["changes"]
        top_asset = _str(obj.get("asset_id"))
    else:
        entries = [obj]
        top_asset = _str(obj.get("asset_id"))
    if not isinstance(entries, list):
        raise ParseError("price_change: changes is not an array")
    per_asset: dict[str, tuple[list[LevelChange], list[float | None]]] = {}
    for e in entries:
        if not isinstance(e, dict):
            raise ParseError("price_change: change is not an object")
        asset = _str(e.get("asset_id")) or top_asset
        if not asset:
            raise ParseError("price_change: change without asset_id")
        side = _str(e.get("side")).upper()
        if side not in ("BUY", "SELL"):
            raise ParseError(f"price_change: bad side {e.get('side')!r}")
        ch = LevelChange(
            side=side,  # type: ignore[arg-type]
            price=_num(e.get("price"), "price_change.price"),
            size=_num(e.get("size"), "price_change.size"),
        )
        slot = per_asset.get(asset)
        if slot is None:
            slot = per_asset[asset] = ([], [None, None])
        slot[0].append(ch)
        if "best_bid" in e or "best_ask" in e:
            slot[1][0] = _opt_num(e.get("best_bid"), "price_change.best_bid")
            slot[1][1] = _opt_num(e.get("best_ask"), "price_change.best_ask")
    return [
        BookDelta(
            asset_id=asset,
            changes=changes,
            best_bid=best[0],
            best_ask=best[1],
            ts_exchange_ns=ts,
            ts_recv_ns=ts_recv_ns,
            market=market,
        )
        for asset, (changes, best) in per_asset.items()
    ]


# --- RTDS price feed -------------------------------------------------------------------------------
RTDS_SOURCES = {
    "crypto_prices_chainlink": "chainlink",
    "crypto_prices_twap_sixty": "twap60",
    "crypto_prices_twap_thirty": "twap30",
    "crypto_prices": "binance",
}


def parse_rtds(frame: str | bytes, ts_recv_ns: int) -> list[Any]:
    """One RTDS frame -> PriceFeedTick per value (all symbols; callers filter on `symbol`)."""
    f = _text(frame)
    head = f.lstrip()[:1] if isinstance(f, str) else f.lstrip()[:1].decode("latin-1")
    if head not in ("{", "["):
        if _is_plain(f, "PONG"):
            return [Pong(ts_recv_ns)]
        if not f.strip():
            return [VenueNotice("empty")]
        raise ParseError(f"rtds: unexpected text frame {str(f)[:60]!r}")
    obj = _load(f)
    items = obj if isinstance(obj, list) else [obj]
    out: list[Any] = []
    for o in items:
        if not isinstance(o, dict):
            raise ParseError("rtds: expected a JSON object")
        topic = _str(o.get("topic"))
        source = RTDS_SOURCES.get(topic)
        payload = o.get("payload")
        if source is None or not isinstance(payload, dict):
            out.append(VenueNotice(f"rtds:{topic or o.get('type') or '?'}", known=False))
            continue
        symbol = _str(payload.get("symbol")).lower()
        data = payload.get("data")
        if isinstance(data, list):  # subscribe answer: recent history, oldest first
            points = [d for d in data if isinstance(d, dict)]
        else:
            points = [payload]
        for d in points:
            out.append(
                PriceFeedTick(
                    source=source,
                    symbol=symbol,
                    value=_num(d.get("value"), f"{topic}.value"),
                    ts_exchange_ns=_ms_to_ns(d.get("timestamp"), f"{topic}.timestamp"),
                    ts_recv_ns=ts_recv_ns,
                )
            )
    return out


# --- Gamma discovery -------------------------------------------------------------------------------
def _iso_ns(v: Any, what: str) -> int:
    if not isinstance(v, str) or not v:
        raise ParseError(f"gamma: missing {what}")
    try:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise ParseError(f"gamma: {what} is not an ISO time: {v!r}") from None
    if dt.tzinfo is None:
        raise ParseError(f"gamma: {what} has no time zone: {v!r}")
    return int(dt.timestamp()) * S + dt.microsecond * 1000


def _json_list(v: Any, what: str) -> list[str]:
    """`clobTokenIds` / `outcomes` are JSON-encoded strings; tolerate real arrays too."""
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except (ValueError, RecursionError):
            raise ParseError(f"gamma: {what} is not a JSON array: {v[:60]!r}") from None
    if not isinstance(v, list):
        raise ParseError(f"gamma: {what} missing or not an array")
    return [_str(x) for x in v]


def slug_start_s(slug: str) -> int | None:
    tail = slug.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


def parse_gamma(doc: str | bytes | Any, ts_recv_ns: int, slug: str | None = None) -> MarketInfo:
    """A Gamma `/events` or `/markets` answer (list or object; text or decoded) -> MarketInfo.

    `slug` picks the market when the answer holds several. Raises ParseError when the answer
    is empty (not listed yet) or lacks what trading needs (tokens, times)."""
    obj = _load(doc) if isinstance(doc, str | bytes) else doc
    if isinstance(obj, list):
        cands = [o for o in obj if isinstance(o, dict)]
        if slug:
            cands = [o for o in cands if o.get("slug") == slug] or cands
        if not cands:
            raise ParseError(f"gamma: empty answer{f' for {slug}' if slug else ''}")
        obj = cands[0]
    if not isinstance(obj, dict):
        raise ParseError("gamma: expected an object or array")
    event: dict[str, Any] | None = None
    market = obj
    if isinstance(obj.get("markets"), list):  # an event document
        event = obj
        ms = [m for m in obj["markets"] if isinstance(m, dict)]
        if slug:
            ms = [m for m in ms if m.get("slug") == slug] or ms
        if not ms:
            raise ParseError("gamma: event without markets")
        market = ms[0]
    tokens = _json_list(market.get("clobTokenIds"), "clobTokenIds")
    outcomes = _json_list(market.get("outcomes"), "outcomes")
    if len(tokens) != 2 or len(outcomes) != 2:
        raise ParseError(f"gamma: expected 2 tokens and 2 outcomes, got {tokens!r} {outcomes!r}")
    names = [o.strip().lower() for o in outcomes]
    if "up" not in names or "down" not in names:
        raise ParseError(f"gamma: outcomes are not Up/Down: {outcomes!r}")
    up_token, down_token = tokens[names.index("up")], tokens[names.index("down")]
    mslug = _str(market.get("slug") or (event or {}).get("slug") or slug)
    start_raw = market.get("eventStartTime") or (event or {}).get("startTime")
    if start_raw:
        start_ns = _iso_ns(start_raw, "eventStartTime")
    else:
        s = slug_start_s(mslug)
        if s is None:
            raise ParseError("gamma: no eventStartTime and no start in the slug")
        start_ns = s * S
    end_ns = _iso_ns(market.get("endDate") or (event or {}).get("endDate"), "endDate")
    if end_ns <= start_ns:
        raise ParseError(f"gamma: endDate is not after eventStartTime for {mslug}")
    fee = market.get("feeSchedule") if isinstance(market.get("feeSchedule"), dict) else {}
    cmc = (
        market.get("cryptoMarketConfig")
        if isinstance(market.get("cryptoMarketConfig"), dict)
        else {}
    )
    meta = (event or {}).get("eventMetadata") or market.get("eventMetadata")
    if isinstance(meta, str):  # JSON-encoded like clobTokenIds on some answers
        try:
            meta = json.loads(meta)
        except (ValueError, RecursionError):
            meta = None
    ptb = _opt_num(meta.get("priceToBeat"), "priceToBeat") if isinstance(meta, dict) else None
    tick = _opt_num(market.get("orderPriceMinTickSize"), "orderPriceMinTickSize") or 0.01
    return MarketInfo(
        slug=mslug,
        condition_id=_str(market.get("conditionId")),
        up_token_id=up_token,
        down_token_id=down_token,
        window_start_ns=start_ns,
        window_end_ns=end_ns,
        ts_recv_ns=ts_recv_ns,
        question=_str(market.get("question")),
        tick_size=tick,
        min_order_size=_opt_num(market.get("orderMinSize"), "orderMinSize") or 5.0,
        fee_rate=_opt_num(fee.get("rate"), "feeSchedule.rate") or 0.0,
        fee_exponent=_opt_num(fee.get("exponent"), "feeSchedule.exponent") or 1.0,
        fee_taker_only=bool(fee.get("takerOnly", True)),
        fee_rebate_rate=_opt_num(fee.get("rebateRate"), "feeSchedule.rebateRate") or 0.0,
        neg_risk=bool(market.get("negRisk", False)),
        twap_enabled=bool(cmc.get("twapEnabled", False)),
        twap_lookback_s=_int(cmc.get("twapLookbackSeconds")),
        resolution_source=_str(
            market.get("resolutionSource") or (event or {}).get("resolutionSource")
        ),
        price_to_beat=ptb,
        price_to_beat_source="gamma" if ptb is not None else "",
        accepting_orders=bool(market.get("acceptingOrders", True)),
        closed=bool(market.get("closed", False)),
        **_series_of(market, event, mslug),
    )


def _series_of(market: dict[str, Any], event: dict[str, Any] | None, slug: str) -> dict[str, str]:
    """`{"asset", "window"}` of a market when its own documents say: `cryptoMarketConfig`
    (`asset`, `duration`, live_2026/gamma_market_btc_updown_5m_1790617500.json), else a clock
    slug `{asset}-updown-{window}-{start}`; else `{}` (MarketInfo's btc/5m defaults, which the
    discovery that asked for a series replaces)."""
    cmc = market.get("cryptoMarketConfig")
    if isinstance(cmc, dict) and isinstance(cmc.get("asset"), str) and cmc.get("duration"):
        return {"asset": cmc["asset"].lower(), "window": str(cmc["duration"]).lower()}
    parts = slug.split("-")
    if len(parts) == 4 and parts[1] == "updown" and parts[3].isdigit():
        return {"asset": parts[0], "window": parts[2]}
    return {}


# --- REST resolution truth ------------------------------------------------------------------------
class RestResolution(Struct, frozen=True):
    """What one REST source says about a market's resolution.

    `outcome` is "Up" / "Down" once the source says the market is resolved, "" while it does not
    (closed but not yet resolved, prices not final, no winner flagged). `source` is "gamma" or
    "clob_rest"; `condition_id`/`slug` identify the market as the source names it."""

    source: str
    condition_id: str
    slug: str
    outcome: str
    winning_asset_id: str
    ts_recv_ns: int
    detail: str = ""


def _market_obj(doc: str | bytes | Any, what: str, slug: str | None) -> dict[str, Any]:
    obj = _load(doc) if isinstance(doc, str | bytes) else doc
    if isinstance(obj, list):
        cands = [o for o in obj if isinstance(o, dict)]
        if slug:
            cands = [o for o in cands if slug in (o.get("slug"), o.get("market_slug"))] or cands
        if not cands:
            raise ParseError(f"{what}: empty answer{f' for {slug}' if slug else ''}")
        obj = cands[0]
    if not isinstance(obj, dict):
        raise ParseError(f"{what}: expected an object or array")
    if isinstance(obj.get("markets"), list):  # an event document: its market
        ms = [m for m in obj["markets"] if isinstance(m, dict)]
        if slug:
            ms = [m for m in ms if m.get("slug") == slug] or ms
        if not ms:
            raise ParseError(f"{what}: event without markets")
        obj = ms[0]
    return obj


def parse_gamma_resolution(
    doc: str | bytes | Any, ts_recv_ns: int, slug: str | None = None
) -> RestResolution:
    """A Gamma market (`/markets/slug/{slug}`, `/markets?slug=` or an event) -> RestResolution.

    Resolved means all three of `closed: true`, `umaResolutionStatus: "resolved"` and
    `outcomePrices` exactly one "1" and one "0" (PROTOCOLS.md section 7; fixture
    live_2026/gamma_market_btc_updown_5m_1790617500.json: closed, resolved, ["0", "1"] = Down).
    A closed market whose prices are not final yet is not resolved. Raises ParseError when the
    answer is not a market with two Up/Down outcomes."""
    m = _market_obj(doc, "gamma", slug)
    outcomes = _json_list(m.get("outcomes"), "outcomes")
    tokens = _json_list(m.get("clobTokenIds"), "clobTokenIds") if m.get("clobTokenIds") else []
    names = [o.strip().lower() for o in outcomes]
    if sorted(names) != ["down", "up"]:
        raise ParseError(f"gamma: outcomes are not Up/Down: {outcomes!r}")
    raw_prices = m.get("outcomePrices")
    prices = _json_list(raw_prices, "outcomePrices") if raw_prices is not None else []
    closed = m.get("closed") is True
    status = _str(m.get("umaResolutionStatus")).lower()
    outcome, asset, detail = "", "", f"closed={closed} umaResolutionStatus={status or '-'}"
    if closed and status == "resolved" and len(prices) == 2:
        try:
            vals = [float(p) for p in prices]
        except ValueError:
            raise ParseError(f"gamma: outcomePrices not numbers: {prices!r}") from None
        if sorted(vals) == [0.0, 1.0]:
            i = vals.index(1.0)
            outcome = outcomes[i].strip().capitalize()
            asset = tokens[i] if len(tokens) == 2 else ""
        else:
            detail += f" outcomePrices={prices!r} not final"
    return RestResolution(
        source="gamma",
        condition_id=_str(m.get("conditionId")),
        slug=_str(m.get("slug") or slug),
        outcome=outcome,
        winning_asset_id=asset,
        ts_recv_ns=ts_recv_ns,
        detail=detail,
    )


def parse_clob_market_resolution(doc: str | bytes | Any, ts_recv_ns: int) -> RestResolution:
    """CLOB `GET /markets/{condition_id}` -> RestResolution: resolved when exactly one of
    `tokens[]` has `winner: true` (PROTOCOLS.md section 7; fixture
    live_2026/clob_rest_market_btc_updown_15m_resolved.json). Raises ParseError when the answer
    has no two-token list."""
    m = _market_obj(doc, "clob market", None)
    tokens = m.get("tokens")
    if (
        not isinstance(tokens, list)
        or len(tokens) != 2
        or not all(isinstance(t, dict) for t in tokens)
    ):
        raise ParseError("clob market: expected 2 tokens")
    winners = [t for t in tokens if t.get("winner") is True]
    outcome, asset = "", ""
    if len(winners) == 1:
        name = _str(winners[0].get("outcome")).strip().lower()
        if name not in ("up", "down"):
            raise ParseError(f"clob market: winning outcome is not Up/Down: {name!r}")
        outcome, asset = name.capitalize(), _str(winners[0].get("token_id"))
    return RestResolution(
        source="clob_rest",
        condition_id=_str(m.get("condition_id")),
        slug=_str(m.get("market_slug")),
        outcome=outcome,
        winning_asset_id=asset,
        ts_recv_ns=ts_recv_ns,
        detail=f"closed={m.get('closed')} winners={len(winners)}",
    )
