"""The simulated venue's one-port server: Binance, Polymarket market/user channels, Gamma, CLOB
REST, RTDS price feed and the `/sim/*` fault and state API, over a `SimMarket` or a replay.

Endpoints are listed in services/simvenue/README.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from services.simvenue import gamma
from services.simvenue.market import BINANCE_STREAMS, MS, NS, RTDS_TOPICS, SimMarket, Window
from services.simvenue.replay import Replay
from services.simvenue.signing import (
    COLLATERAL,
    EXCHANGE_V2,
    ApiKey,
    AuthError,
    check_l1,
    check_l2,
    derive_api_key,
    order_hash,
    verify_order_signature,
)

SOCKET_KINDS = ("binance", "market", "user", "rtds")
FAULTS = ("drop", "stall", "malformed", "unknown", "duplicate_delta", "out_of_order",
          "tick_size_change", "gamma_5xx", "gamma_empty", "order_reject",
          "order_timeout_placed", "slow_ack")
HEARTBEAT_TIMEOUT_NS = 10 * NS
QUEUE_MAX = 20_000
MAX_UINT = str(2**256 - 1)
FOK_KILLED = "order couldn't be fully filled. FOK orders are fully filled or killed."
FAK_NO_MATCH = ("no orders found to match with FAK order. FAK orders are partially filled or "
                "killed if no match is found.")
NOT_ENOUGH_BALANCE = "not enough balance / allowance"


@dataclass
class SimOptions:
    host: str = "127.0.0.1"
    port: int = 8765
    seed: int = 1
    window_seconds: int = 300
    book_ticker_hz: float = 100.0
    clob_update_hz: float = 60.0
    replay: str | None = None
    speed: float = 1.0
    faults: list[dict] = field(default_factory=list)
    mine_seconds: float = 2.0
    confirm_seconds: float = 6.0
    balance_usd: float = 1000.0
    ping_interval: float = 20.0


@dataclass(eq=False)
class Conn:
    """One client socket: a bounded outbound queue, its subscriptions and per-socket faults."""

    kind: str
    ws: WebSocket
    q: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    subs: set[str] = field(default_factory=set)
    combined: bool = False
    api_key: str | None = None
    markets: set[str] = field(default_factory=set)
    rtds_filters: dict[str, str] = field(default_factory=dict)
    duplicate_left: int = 0
    reorder_left: int = 0
    held: str | None = None
    dropped: int = 0

    def put(self, text: str | None) -> None:
        try:
            self.q.put_nowait(text)
        except asyncio.QueueFull:
            self.dropped += 1  # a slow reader loses data, as on the real venues


@dataclass
class SimOrder:
    id: str
    api_key: str
    maker: str
    token: str
    market: str
    outcome: str
    side: str
    price: str
    original_centi: int
    order_type: str
    created_s: int
    expiration: str
    matched_centi: int = 0
    status: str = "LIVE"
    trades: list[str] = field(default_factory=list)

    def doc(self) -> dict:
        return {
            "id": self.id, "status": self.status, "owner": self.api_key,
            "maker_address": self.maker, "market": self.market, "asset_id": self.token,
            "side": self.side, "original_size": _centi(self.original_centi),
            "size_matched": _centi(self.matched_centi), "price": self.price,
            "outcome": self.outcome, "created_at": self.created_s,
            "expiration": self.expiration, "order_type": self.order_type,
            "associate_trades": list(self.trades),
        }


def _centi(c: int) -> str:
    s = f"{c / 100:.2f}".rstrip("0").rstrip(".")
    return s or "0"


def _err(status: int, msg: str) -> JSONResponse:
    return JSONResponse({"error": msg}, status_code=status)


def _lower_headers(request: Request | WebSocket) -> dict[str, str]:
    return {k.lower(): v for k, v in request.headers.items()}


class Venue:
    """Holds all venue state; the Starlette app is a thin layer of routes over it."""

    def __init__(self, opts: SimOptions, clock: Callable[[], int] = time.time_ns) -> None:
        self.opts = opts
        self.clock = clock
        now = clock()
        self.market = SimMarket(opts.seed, opts.window_seconds, now,
                                book_ticker_hz=opts.book_ticker_hz,
                                clob_update_hz=opts.clob_update_hz)
        self.replay = Replay.load(opts.replay, opts.speed) if opts.replay else None
        self.server_secret = f"simvenue:{opts.seed}".encode()
        self.conns: set[Conn] = set()
        self.keys: dict[str, ApiKey] = {}
        self.accounts: dict[str, dict[str, Any]] = {}
        self.orders: dict[str, SimOrder] = {}
        self.trades: dict[str, dict] = {}
        self.heartbeats: dict[str, int] = {}
        self.stall_until: dict[str, int] = {}
        self.counters: dict[str, int] = {}
        self.timed: dict[str, int] = {}  # fault name -> active-until ns
        self.fault_params: dict[str, dict] = {}
        self.fault_log: list[dict] = []
        self.settled: set[int] = set()
        self.started_ns = now
        self.frames_sent = 0
        self._pump_task: asyncio.Task | None = None
        self._bg: set[asyncio.Task] = set()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._pump_task = asyncio.create_task(self._pump())
        for f in self.opts.faults:
            after = float(f.get("after", 0) or 0)
            self._spawn(self._delayed_fault(f, after))

    async def stop(self) -> None:
        for t in [self._pump_task, *self._bg]:
            if t is not None:
                t.cancel()
        for c in list(self.conns):
            c.put(None)

    def _spawn(self, coro: Any) -> None:
        t = asyncio.create_task(coro)
        self._bg.add(t)
        t.add_done_callback(self._bg.discard)

    async def _delayed_fault(self, f: dict, after: float) -> None:
        if after > 0:
            await asyncio.sleep(after)
        self.apply_fault(f)

    async def _pump(self) -> None:
        while True:
            now = self.clock()
            try:
                if self.replay is not None:
                    # Playback starts with the first client, so nothing is sent to nobody.
                    for kind, text in (self.replay.due(now) if self.conns else ()):
                        self._route_replay(kind, text)
                else:
                    self.sync(now)
                self._check_heartbeats(now)
                self._settle(now)
            except Exception as exc:  # noqa: BLE001 - a generator bug must not kill the venue
                print(f"simvenue: pump error: {exc!r}", flush=True)
                raise
            await asyncio.sleep(0.01)

    def sync(self, now: int | None = None) -> None:
        """Advance the market to `now` and route its frames."""
        if self.replay is not None:
            return
        for _ts, channel, frame in self.market.advance(self.clock() if now is None else now):
            self._route(channel, frame)

    # ------------------------------------------------------------------ routing
    def _stalled(self, kind: str) -> bool:
        until = self.stall_until.get(kind, 0)
        return until > self.clock()

    def _send(self, c: Conn, text: str) -> None:
        if self._stalled(c.kind):
            return
        if c.kind == "market" and '"event_type":"price_change"' in text:
            if c.duplicate_left > 0:
                c.duplicate_left -= 1
                c.put(text)
            elif c.reorder_left > 0:
                if c.held is None:
                    c.held = text
                    return
                c.reorder_left -= 1
                c.put(text)
                text, c.held = c.held, None
        c.put(text)
        self.frames_sent += 1

    def _route(self, channel: str, frame: str) -> None:
        kind, _, rest = channel.partition(":")
        if kind == "binance":
            for c in self.conns:
                if c.kind == "binance" and rest in c.subs:
                    self._send(c, f'{{"stream":"{rest}","data":{frame}}}' if c.combined else frame)
        elif kind == "market":
            if not rest:
                for c in self.conns:
                    if c.kind == "market":
                        self._send(c, frame)
                return
            w = self.market.window_by_condition(rest)
            tokens = set(w.tokens) if w is not None else set()
            for c in self.conns:
                if c.kind == "market" and c.subs & tokens:
                    self._send(c, frame)
        elif kind == "rtds":
            for c in self.conns:
                if c.kind == "rtds" and rest in c.subs:
                    flt = c.rtds_filters.get(rest, "")
                    if flt and not any(f'"symbol":"{s.strip()}"' in frame
                                       for s in flt.split(",") if s.strip()):
                        continue
                    self._send(c, frame)

    def _route_replay(self, kind: str, text: str) -> None:
        if kind == "binance":
            stream, data = None, text
            with contextlib.suppress(Exception):
                obj = json.loads(text)
                if isinstance(obj, dict) and "stream" in obj and "data" in obj:
                    stream, data = obj["stream"], json.dumps(obj["data"], separators=(",", ":"))
            for c in self.conns:
                if c.kind != "binance" or (stream is not None and stream not in c.subs):
                    continue
                if c.combined and stream is not None:
                    self._send(c, text)
                else:
                    self._send(c, data)
        elif kind == "market":
            ids = Replay.asset_ids(text)
            for c in self.conns:
                if c.kind == "market" and (not ids or c.subs & ids or not c.subs):
                    self._send(c, text)
        elif kind == "rtds":
            for c in self.conns:
                if c.kind == "rtds":
                    self._send(c, text)

    def _user_event(self, api_key: str, market: str, doc: dict) -> None:
        text = json.dumps(doc, separators=(",", ":"))
        for c in self.conns:
            if c.kind == "user" and c.api_key == api_key and (not c.markets or market in c.markets):
                self._send(c, text)

    # ------------------------------------------------------------------ faults
    def apply_fault(self, f: dict) -> dict:
        name = f.get("name")
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
        channel = f.get("channel") or "all"
        if channel != "all" and channel not in (*SOCKET_KINDS, "gamma", "clob"):
            raise ValueError(f"unknown channel {channel!r}")
        kinds = SOCKET_KINDS if channel == "all" else (channel,)
        count = int(f.get("count", 1) or 1)
        seconds = f.get("seconds")
        now = self.clock()
        entry = {"name": name, "channel": channel, "count": count, "seconds": seconds,
                 "ts_ns": now}
        self.fault_log.append(entry)
        if name == "drop":
            for c in list(self.conns):
                if c.kind in kinds:
                    c.put(None)
        elif name == "stall":
            until = now + int(float(seconds if seconds is not None else 10) * NS)
            for k in kinds:
                self.stall_until[k] = until
        elif name in ("malformed", "unknown"):
            for c in list(self.conns):
                if c.kind in kinds:
                    for i in range(count):
                        c.put(self._bad_frame(name, c.kind, i))
        elif name == "duplicate_delta":
            for c in self.conns:
                if c.kind == "market":
                    c.duplicate_left += count
        elif name == "out_of_order":
            for c in self.conns:
                if c.kind == "market":
                    c.reorder_left += count
        elif name == "tick_size_change":
            self.sync(now)
            self.market.force_tick_size_change(now)
            self.sync(now)
        else:  # gamma_5xx, gamma_empty, order_reject, order_timeout_placed, slow_ack
            if seconds is not None and "count" not in f:
                self.timed[name] = now + int(float(seconds) * NS)
            else:
                self.counters[name] = self.counters.get(name, 0) + count
            self.fault_params[name] = dict(f)
        return entry

    def _take_fault(self, name: str) -> dict | None:
        """Consume one use of a counted fault (or report a timed one); None when inactive."""
        if self.counters.get(name, 0) > 0:
            self.counters[name] -= 1
            return self.fault_params.get(name, {})
        if self.timed.get(name, 0) > self.clock():
            return self.fault_params.get(name, {})
        return None

    @staticmethod
    def _bad_frame(name: str, kind: str, i: int) -> str:
        if name == "malformed":
            return ['{"event_type": "book", "asset_id": "1", "bids": [', '\x00\x01garbage',
                    '{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","p":'][i % 3]
        if kind == "binance":
            return json.dumps({"e": "simUnknownEvent", "E": 0, "s": "BTCUSDT", "x": i})
        if kind == "rtds":
            return json.dumps({"topic": "sim_unknown_topic", "type": "update", "timestamp": 0,
                               "payload": {"symbol": "btc/usd"}})
        return json.dumps({"event_type": "sim_unknown_event", "market": "0x0", "n": i,
                           "timestamp": "0"})

    # ------------------------------------------------------------------ accounts / orders
    def account(self, address: str) -> dict[str, Any]:
        a = self.accounts.get(address.lower())
        if a is None:
            a = {"usdc": int(self.opts.balance_usd * 1e6), "tokens": {}}
            self.accounts[address.lower()] = a
        return a

    def _settle(self, now: int) -> None:
        for w in list(self.market.windows.values()):
            if not w.resolved or w.start_s in self.settled:
                continue
            self.settled.add(w.start_s)
            win = w.up_token if w.winner == "Up" else w.down_token
            for acct in self.accounts.values():
                held = acct["tokens"].pop(win, 0)
                acct["tokens"].pop(w.down_token if win == w.up_token else w.up_token, None)
                acct["usdc"] += held  # micro-shares pay 1 micro-collateral each
            for o in self.orders.values():
                if o.market == w.condition_id and o.status == "LIVE":
                    o.status = "CANCELED"

    def _check_heartbeats(self, now: int) -> None:
        for api_key, last in list(self.heartbeats.items()):
            if now - last > HEARTBEAT_TIMEOUT_NS:
                del self.heartbeats[api_key]
                self.cancel_orders(api_key, [o.id for o in self.orders.values()
                                             if o.api_key == api_key and o.status == "LIVE"],
                                   status="CANCELED")

    def cancel_orders(self, api_key: str, ids: list[str], status: str = "CANCELED") -> dict:
        canceled, not_canceled = [], {}
        for oid in ids:
            o = self.orders.get(oid)
            if o is None or o.api_key != api_key:
                not_canceled[oid] = "order not found"
            elif o.status != "LIVE":
                not_canceled[oid] = "already canceled or matched"
            else:
                o.status = status
                canceled.append(oid)
                self._order_event(o, "CANCELLATION")
        return {"canceled": canceled, "not_canceled": not_canceled}

    def _order_event(self, o: SimOrder, typ: str, status: str | None = None) -> None:
        now = self.clock()
        self._user_event(o.api_key, o.market, {
            "asset_id": o.token, "associate_trades": list(o.trades) or None,
            "created_at": str(o.created_s), "event_type": "order", "expiration": o.expiration,
            "id": o.id, "maker_address": o.maker, "market": o.market, "order_owner": o.api_key,
            "order_type": o.order_type, "original_size": _centi(o.original_centi),
            "outcome": o.outcome, "owner": o.api_key, "price": o.price, "side": o.side,
            "size_matched": _centi(o.matched_centi), "status": status or o.status,
            "timestamp": str(now // MS), "type": typ})

    def _trade_event(self, tid: str) -> None:
        t = self.trades[tid]
        doc = dict(t)
        doc["event_type"] = "trade"
        doc["type"] = "TRADE"
        doc["timestamp"] = str(self.clock() // MS)
        self._user_event(t["owner"], t["market"], doc)

    async def _advance_trade(self, tid: str) -> None:
        await asyncio.sleep(self.opts.mine_seconds)
        self.trades[tid]["status"] = "MINED"
        self.trades[tid]["last_update"] = str(self.clock() // NS)
        self._trade_event(tid)
        await asyncio.sleep(max(0.0, self.opts.confirm_seconds - self.opts.mine_seconds))
        self.trades[tid]["status"] = "CONFIRMED"
        self.trades[tid]["last_update"] = str(self.clock() // NS)
        self._trade_event(tid)

    def place_order(self, key: ApiKey, body: dict) -> tuple[int, dict]:
        """Validate and execute a POST /order body; returns (HTTP status, JSON answer)."""
        try:
            order = body["order"]
            order_type = str(body.get("orderType", "GTC")).upper()
            owner = body.get("owner")
            maker_amt = int(order["makerAmount"])
            taker_amt = int(order["takerAmount"])
            side = order["side"]
            side = {"0": "BUY", "1": "SELL", 0: "BUY", 1: "SELL"}.get(side, side)
            token = str(order["tokenId"])
            for k in ("salt", "maker", "signer", "signatureType", "timestamp", "metadata",
                      "builder", "signature"):
                order[k]  # noqa: B018 - presence check
        except (KeyError, TypeError, ValueError):
            return 400, {"error": "Invalid order payload"}
        if side not in ("BUY", "SELL") or order_type not in ("GTC", "GTD", "FOK", "FAK"):
            return 400, {"error": "Invalid order payload"}
        if owner != key.api_key:
            return 400, {"error": "the order owner has to be the owner of the API KEY"}
        if not verify_order_signature(order):
            return 400, {"error": "invalid signature"}
        if str(order["signer"]).lower() != key.address.lower():
            return 400, {"error": "the order signer address has to be the address of the API KEY"}
        if maker_amt <= 0 or taker_amt <= 0:
            return 400, {"error": "Invalid order payload"}
        if self._take_fault("order_reject") is not None:
            return 400, {"error": NOT_ENOUGH_BALANCE}
        now = self.clock()
        self.sync(now)
        w = self.market.window_by_token(token)
        if w is None:
            return 400, {"error": "Invalid order payload: unknown token id"}
        if now >= w.end_s * NS:
            return 400, {"error": "the market is closed, orders are not accepted"}
        oid = order_hash(order)  # the real venue's order id is the signed order's EIP-712 hash
        if oid in self.orders:
            return 400, {"error": "order already exists"}
        buy = side == "BUY"
        price_num, price_den = (maker_amt, taker_amt) if buy else (taker_amt, maker_amt)
        price = price_num / price_den
        tick = w.tick / 1000
        if order_type in ("GTC", "GTD"):
            on_grid = abs(round(price / tick) * tick - price) < 1e-9
            if not on_grid or not (tick <= price <= 1 - tick):
                return 400, {"error": f"order {oid} is invalid. Price ({price:g}) breaks minimum "
                                      f"tick size rule: {tick:g}"}
        acct = self.account(key.address)
        if buy and acct["usdc"] < maker_amt:
            return 400, {"error": NOT_ENOUGH_BALANCE}
        if not buy and acct["tokens"].get(token, 0) < maker_amt:
            return 400, {"error": NOT_ENOUGH_BALANCE}
        marketable_buy = buy and order_type in ("FOK", "FAK")
        if marketable_buy and maker_amt < 1_000_000:
            return 400, {"error": f"invalid amount for a marketable BUY order "
                                  f"(${maker_amt / 1e6:g}), min size: $1"}
        shares_centi = (taker_amt if buy else maker_amt) // 10_000
        if order_type in ("GTC", "GTD") and shares_centi < 500:
            return 400, {"error": f"Size ({shares_centi / 100:g}) lower than the minimum: 5"}
        res = self.market.take(token, side, price_num, price_den,
                               maker_amt if (marketable_buy or not buy) else taker_amt,
                               marketable_buy, order_type, now)
        price_str = f"{price:.4f}".rstrip("0").rstrip(".")
        o = SimOrder(oid, key.api_key, order["maker"], token, w.condition_id,
                     w.outcome_of(token), side, price_str,
                     shares_centi if not marketable_buy else res.filled_centi or shares_centi,
                     order_type, now // NS, str(order.get("expiration", "0")))
        if res.status == "killed" or (res.status == "unmatched" and order_type == "FOK"):
            self.orders[oid] = o
            o.status = "CANCELED"
            self._order_event(o, "CANCELLATION", status="CANCELED_" + FOK_KILLED)
            return 400, {"error": FOK_KILLED}
        if res.status == "unmatched" and order_type == "FAK":
            return 400, {"error": FAK_NO_MATCH}
        self.orders[oid] = o
        answer: dict[str, Any] = {"success": True, "orderID": oid, "errorMsg": "",
                                  "transactionsHashes": [], "tradeIDs": []}
        if res.status == "matched":
            fee_micro = 0
            shares_micro = res.filled_centi * 10_000
            for p, c in res.fills:
                fee_micro += round(c / 100 * 0.07 * (p / 1000) * (1 - p / 1000), 5) * 1e6
            fee_micro = int(round(fee_micro))
            if buy:
                acct["usdc"] -= res.cost_micro + fee_micro
                acct["tokens"][token] = acct["tokens"].get(token, 0) + shares_micro
            else:
                acct["tokens"][token] = acct["tokens"].get(token, 0) - shares_micro
                acct["usdc"] += res.cost_micro - fee_micro
            o.matched_centi = res.filled_centi
            avg = res.cost_micro / shares_micro if shares_micro else 0
            tid = str(uuid.uuid5(uuid.NAMESPACE_OID, oid + ":trade"))
            tx = "0x" + uuid.uuid5(uuid.NAMESPACE_OID, oid + ":tx").hex * 2
            o.trades.append(tid)
            self.trades[tid] = {
                "id": tid, "taker_order_id": oid, "market": w.condition_id, "asset_id": token,
                "side": side, "size": _centi(res.filled_centi), "fee_rate_bps": "1000",
                "price": f"{avg:.4f}".rstrip("0").rstrip("."), "status": "MATCHED",
                "match_time": str(now // NS), "last_update": str(now // NS),
                "outcome": w.outcome_of(token), "bucket_index": 0, "owner": key.api_key,
                "trade_owner": key.api_key, "maker_address": order["maker"],
                "transaction_hash": tx, "trader_side": "TAKER",
                "maker_orders": [{
                    "order_id": "0x" + uuid.uuid5(uuid.NAMESPACE_OID, f"{oid}:{p}").hex * 2,
                    "owner": "00000000-0000-4000-8000-00000000beef",
                    "maker_address": "0x000000000000000000000000000000000000bEEF",
                    "matched_amount": _centi(c), "price": f"{p / 1000:g}",
                    "fee_rate_bps": "0", "asset_id": token, "outcome": w.outcome_of(token),
                    "side": "SELL" if buy else "BUY"} for p, c in res.fills],
            }
            rest = o.original_centi - o.matched_centi
            o.status = "MATCHED" if (rest <= 0 or order_type in ("FOK", "FAK")) else "LIVE"
            self._order_event(o, "PLACEMENT")
            self._trade_event(tid)
            self._spawn(self._advance_trade(tid))
            if order_type == "FAK" and rest > 0 and not marketable_buy:
                self._order_event(o, "CANCELLATION", status="CANCELED")
            answer.update({
                "status": "matched",
                "makingAmount": f"{(res.cost_micro if buy else shares_micro) / 1e6:g}",
                "takingAmount": f"{(shares_micro if buy else res.cost_micro) / 1e6:g}",
                "transactionsHashes": [tx], "tradeIDs": [tid]})
        else:
            o.status = "LIVE"
            self._order_event(o, "PLACEMENT")
            answer.update({"status": "live", "makingAmount": "", "takingAmount": ""})
        self.sync(now)
        return 200, answer


def build_app(venue: Venue) -> Starlette:
    v = venue

    # ---------------------------------------------------------------- websockets
    async def serve_socket(ws: WebSocket, conn: Conn, on_text: Callable[[Conn, str], Any],
                           on_open: Callable[[Conn], Any] | None = None) -> None:
        await ws.accept()
        v.conns.add(conn)
        if on_open is not None:
            on_open(conn)

        async def reader() -> None:
            try:
                while True:
                    msg = await ws.receive()
                    if msg["type"] == "websocket.disconnect":
                        break
                    text = msg.get("text")
                    if text is None and msg.get("bytes") is not None:
                        text = msg["bytes"].decode("utf-8", "replace")
                    if text is not None:
                        on_text(conn, text)
            except Exception:  # noqa: BLE001 - client went away
                pass
            conn.put(None)

        rt = asyncio.create_task(reader())
        try:
            while True:
                item = await conn.q.get()
                if item is None:
                    break
                await ws.send_text(item)
        except Exception:  # noqa: BLE001 - client went away mid-send
            pass
        finally:
            v.conns.discard(conn)
            rt.cancel()
            with contextlib.suppress(Exception):
                await ws.close(code=1011)

    def binance_text(c: Conn, text: str) -> None:
        try:
            req = json.loads(text)
            method, rid = req.get("method"), req.get("id")
        except Exception:  # noqa: BLE001
            c.put(json.dumps({"error": {"code": 3, "msg": "Invalid JSON"}, "id": None}))
            return
        params = req.get("params") or []
        if method == "SUBSCRIBE":
            c.subs.update(p for p in params if p in BINANCE_STREAMS)
            c.put(json.dumps({"result": None, "id": rid}))
        elif method == "UNSUBSCRIBE":
            c.subs.difference_update(params)
            c.put(json.dumps({"result": None, "id": rid}))
        elif method == "LIST_SUBSCRIPTIONS":
            c.put(json.dumps({"result": sorted(c.subs), "id": rid}))
        else:
            c.put(json.dumps({"error": {"code": 2, "msg": f"Invalid request: unknown method {method}"},
                              "id": rid}))

    async def binance_raw(ws: WebSocket) -> None:
        stream = ws.path_params.get("stream", "")
        conn = Conn("binance", ws)
        conn.subs.update(s for s in stream.split("/") if s)
        await serve_socket(ws, conn, binance_text)

    async def binance_combined(ws: WebSocket) -> None:
        conn = Conn("binance", ws, combined=True)
        conn.subs.update(s for s in ws.query_params.get("streams", "").split("/") if s)
        await serve_socket(ws, conn, binance_text)

    def market_books(c: Conn, tokens: list[str]) -> None:
        v.sync()
        books = []
        for t in tokens:
            w = v.market.window_by_token(t)
            if w is not None:
                books.append(json.loads(v.market.book_event(w, t, v.clock())))
        if books and v.replay is None:
            v._send(c, json.dumps(books, separators=(",", ":")))

    def market_text(c: Conn, text: str) -> None:
        if text.strip() == "PING":
            if not v._stalled("market"):
                c.put("PONG")
            return
        try:
            req = json.loads(text)
        except Exception:  # noqa: BLE001
            c.put("INVALID OPERATION")
            return
        if not isinstance(req, dict):
            c.put("INVALID OPERATION")
            return
        ids = [str(a) for a in (req.get("assets_ids") or req.get("asset_ids") or [])]
        op = req.get("operation")
        if op == "unsubscribe":
            c.subs.difference_update(ids)
            return
        new = [a for a in ids if a not in c.subs]
        if op == "subscribe" or req.get("type", "").lower() == "market":
            c.subs.update(ids)
            if not new:
                c.put("NO NEW ASSETS")
                return
            market_books(c, new)
            return
        c.put("INVALID OPERATION")

    async def market_ws(ws: WebSocket) -> None:
        await serve_socket(ws, Conn("market", ws), market_text)

    def user_text(c: Conn, text: str) -> None:
        if text.strip() == "PING":
            if not v._stalled("user"):
                c.put("PONG")
            return
        try:
            req = json.loads(text)
            auth = req.get("auth") or {}
            key = v.keys.get(auth.get("apiKey", ""))
            if key is None or auth.get("secret") != key.secret or \
                    auth.get("passphrase") != key.passphrase:
                raise AuthError("invalid auth")
        except Exception:  # noqa: BLE001 - bad JSON or bad credentials end the socket
            c.put(json.dumps({"error": "Unauthorized/Invalid api key"}))
            c.put(None)
            return
        c.api_key = key.api_key
        c.markets = {str(m) for m in req.get("markets") or []}

    async def user_ws(ws: WebSocket) -> None:
        await serve_socket(ws, Conn("user", ws), user_text)

    def rtds_text(c: Conn, text: str) -> None:
        if text.strip() == "PING":
            if not v._stalled("rtds"):
                c.put("PONG")
            return
        try:
            req = json.loads(text)
            subs = req.get("subscriptions") or []
            action = req.get("action")
        except Exception:  # noqa: BLE001
            return
        for s in subs:
            topic = s.get("topic")
            if topic not in RTDS_TOPICS:
                continue
            if action == "unsubscribe":
                c.subs.discard(topic)
                c.rtds_filters.pop(topic, None)
            else:
                c.subs.add(topic)
                flt = s.get("filters") or ""
                c.rtds_filters[topic] = flt if isinstance(flt, str) else ",".join(flt)

    async def rtds_ws(ws: WebSocket) -> None:
        await serve_socket(ws, Conn("rtds", ws), rtds_text)

    # ---------------------------------------------------------------- gamma
    def gamma_fault(list_form: bool) -> Response | None:
        if v._take_fault("gamma_5xx") is not None:
            return _err(503, "Service Unavailable")
        if v._take_fault("gamma_empty") is not None:
            return JSONResponse([] if list_form else {}, status_code=200 if list_form else 404)
        return None

    def gamma_windows(request: Request) -> list[Window]:
        v.sync()
        now = v.clock()
        slugs = request.query_params.getlist("slug")
        closed = request.query_params.get("closed")
        out = []
        for w in sorted(v.market.windows.values(), key=lambda x: x.start_s):
            is_closed = gamma.is_closed(w, now)
            if slugs and w.slug not in slugs:
                continue
            if closed == "true" and not is_closed:
                continue
            if closed != "true" and is_closed:
                continue  # closed markets are omitted unless closed=true
            out.append(w)
        return out

    async def gamma_events(request: Request) -> Response:
        return gamma_fault(True) or JSONResponse(
            [gamma.event_doc(v.market, w, v.clock()) for w in gamma_windows(request)])

    async def gamma_markets(request: Request) -> Response:
        return gamma_fault(True) or JSONResponse(
            [gamma.market_doc(v.market, w, v.clock()) for w in gamma_windows(request)])

    async def gamma_event_slug(request: Request) -> Response:
        bad = gamma_fault(False)
        if bad is not None:
            return bad
        v.sync()
        w = v.market.window_by_slug(request.path_params["slug"])
        if w is None:
            return _err(404, "event not found")
        return JSONResponse(gamma.event_doc(v.market, w, v.clock()))

    async def gamma_market_slug(request: Request) -> Response:
        bad = gamma_fault(False)
        if bad is not None:
            return bad
        v.sync()
        w = v.market.window_by_slug(request.path_params["slug"])
        if w is None:
            return _err(404, "market not found")
        return JSONResponse(gamma.market_doc(v.market, w, v.clock()))

    # ---------------------------------------------------------------- clob
    def token_window(request: Request) -> tuple[str, Window | None]:
        v.sync()
        token = request.query_params.get("token_id", "")
        return token, v.market.window_by_token(token)

    async def clob_ok(request: Request) -> Response:
        return JSONResponse("OK")

    async def clob_time(request: Request) -> Response:
        return JSONResponse(v.clock() // NS)

    async def clob_version(request: Request) -> Response:
        return JSONResponse({"version": 2})

    async def clob_book(request: Request) -> Response:
        token, w = token_window(request)
        if not token:
            return _err(400, "Invalid token id")
        if w is None:
            return _err(404, "No orderbook exists for the requested token id")
        return JSONResponse(v.market.rest_book(w, token, v.clock()))

    async def clob_tick_size(request: Request) -> Response:
        token, w = token_window(request)
        if w is None:
            return _err(404, "No orderbook exists for the requested token id")
        return JSONResponse({"minimum_tick_size": w.tick / 1000})

    async def clob_neg_risk(request: Request) -> Response:
        token, w = token_window(request)
        if w is None:
            return _err(404, "No orderbook exists for the requested token id")
        return JSONResponse({"neg_risk": False})

    async def clob_fee_rate(request: Request) -> Response:
        token, w = token_window(request)
        if w is None:
            return _err(404, "No orderbook exists for the requested token id")
        return JSONResponse({"base_fee": 1000})

    async def clob_price(request: Request) -> Response:
        token, w = token_window(request)
        if w is None:
            return _err(404, "No orderbook exists for the requested token id")
        bb, ba = w.best(token)
        # As on the venue: side=BUY answers the best bid, side=SELL the best ask.
        p = bb if request.query_params.get("side", "BUY").upper() == "BUY" else ba
        return JSONResponse({"price": f"{(p or 0) / 1000:g}"})

    async def clob_midpoint(request: Request) -> Response:
        token, w = token_window(request)
        if w is None:
            return _err(404, "No orderbook exists for the requested token id")
        bb, ba = w.best(token)
        return JSONResponse({"mid": f"{((bb or 0) + (ba or 1000)) / 2000:g}"})

    async def clob_spread(request: Request) -> Response:
        token, w = token_window(request)
        if w is None:
            return _err(404, "No orderbook exists for the requested token id")
        bb, ba = w.best(token)
        return JSONResponse({"spread": f"{((ba or 1000) - (bb or 0)) / 1000:g}"})

    async def clob_last_trade(request: Request) -> Response:
        token, w = token_window(request)
        if w is None:
            return _err(404, "No orderbook exists for the requested token id")
        return JSONResponse({"price": f"{w.last_trade.get(token, 500) / 1000:g}", "side": "BUY"})

    async def clob_books(request: Request) -> Response:
        v.sync()
        try:
            items = json.loads(await request.body())
        except Exception:  # noqa: BLE001
            return _err(400, "Invalid payload")
        out = []
        for it in items:
            w = v.market.window_by_token(str(it.get("token_id")))
            if w is not None:
                out.append(v.market.rest_book(w, str(it["token_id"]), v.clock()))
        return JSONResponse(out)

    async def clob_markets_by_token(request: Request) -> Response:
        v.sync()
        w = v.market.window_by_token(request.path_params["token"])
        if w is None:
            return _err(404, "market not found")
        return JSONResponse({"condition_id": w.condition_id, "primary_token_id": w.up_token,
                             "secondary_token_id": w.down_token})

    async def clob_market_info(request: Request) -> Response:
        w = v.market.window_by_condition(request.path_params["cid"])
        if w is None:
            return _err(404, "market not found")
        return JSONResponse(gamma.clob_market_info(w))

    async def clob_market(request: Request) -> Response:
        w = v.market.window_by_condition(request.path_params["cid"])
        if w is None:
            return _err(404, "market not found")
        return JSONResponse(gamma.clob_market_doc(w, v.clock()))

    def issue_key(request: Request) -> ApiKey | Response:
        try:
            address, nonce = check_l1(_lower_headers(request))
        except AuthError as exc:
            return _err(401, str(exc))
        key = derive_api_key(v.server_secret, address, nonce)
        v.keys[key.api_key] = key
        return key

    async def create_api_key(request: Request) -> Response:
        key = issue_key(request)
        if isinstance(key, Response):
            return key
        return JSONResponse({"apiKey": key.api_key, "secret": key.secret,
                             "passphrase": key.passphrase})

    async def l2(request: Request) -> tuple[ApiKey | None, str, Response | None]:
        body = (await request.body()).decode()
        path = request.url.path.removeprefix("/clob")
        try:
            key = check_l2(_lower_headers(request), v.keys, request.method, path, body or None)
        except AuthError as exc:
            return None, body, _err(401, str(exc))
        return key, body, None

    async def get_api_keys(request: Request) -> Response:
        key, _, bad = await l2(request)
        if bad is not None:
            return bad
        return JSONResponse({"apiKeys": [k.api_key for k in v.keys.values()
                                         if k.address == key.address]})

    async def post_order(request: Request) -> Response:
        key, body, bad = await l2(request)
        if bad is not None:
            return bad
        slow = v._take_fault("slow_ack")
        if slow is not None:
            await asyncio.sleep(float(slow.get("seconds") or 2.0))
        try:
            payload = json.loads(body)
        except Exception:  # noqa: BLE001
            return _err(400, "Invalid order payload")
        late = v._take_fault("order_timeout_placed")
        status, answer = v.place_order(key, payload)
        if late is not None:
            # The order is in the book/ledger already; only the answer is late.
            await asyncio.sleep(float(late.get("seconds") or 15.0))
        return JSONResponse(answer, status_code=status)

    async def post_orders(request: Request) -> Response:
        key, body, bad = await l2(request)
        if bad is not None:
            return bad
        try:
            payloads = json.loads(body)
        except Exception:  # noqa: BLE001
            return _err(400, "Invalid order payload")
        out = []
        for p in payloads:
            status, answer = v.place_order(key, p)
            if status != 200:
                answer = {"success": False, "orderID": "", "errorMsg": answer.get("error", "")}
            out.append(answer)
        return JSONResponse(out)

    async def cancel_order(request: Request) -> Response:
        key, body, bad = await l2(request)
        if bad is not None:
            return bad
        try:
            oid = json.loads(body)["orderID"]
        except Exception:  # noqa: BLE001
            return _err(400, "Invalid order payload")
        return JSONResponse(v.cancel_orders(key.api_key, [oid]))

    async def cancel_orders(request: Request) -> Response:
        key, body, bad = await l2(request)
        if bad is not None:
            return bad
        try:
            ids = [str(i) for i in json.loads(body)]
        except Exception:  # noqa: BLE001
            return _err(400, "Invalid order payload")
        return JSONResponse(v.cancel_orders(key.api_key, ids))

    async def cancel_all(request: Request) -> Response:
        key, _, bad = await l2(request)
        if bad is not None:
            return bad
        return JSONResponse(v.cancel_orders(key.api_key, [
            o.id for o in v.orders.values() if o.api_key == key.api_key and o.status == "LIVE"]))

    async def cancel_market_orders(request: Request) -> Response:
        key, body, bad = await l2(request)
        if bad is not None:
            return bad
        try:
            q = json.loads(body or "{}")
        except Exception:  # noqa: BLE001
            return _err(400, "Invalid payload")
        ids = [o.id for o in v.orders.values() if o.api_key == key.api_key and o.status == "LIVE"
               and (not q.get("market") or o.market == q["market"])
               and (not q.get("asset_id") or o.token == q["asset_id"])]
        return JSONResponse(v.cancel_orders(key.api_key, ids))

    async def get_order(request: Request) -> Response:
        key, _, bad = await l2(request)
        if bad is not None:
            return bad
        o = v.orders.get(request.path_params["oid"])
        if o is None or o.api_key != key.api_key:
            return JSONResponse(None)
        return JSONResponse(o.doc())

    def page(items: list) -> dict:
        return {"data": items, "next_cursor": "LTE=", "limit": 500, "count": len(items)}

    async def get_orders(request: Request) -> Response:
        key, _, bad = await l2(request)
        if bad is not None:
            return bad
        qp = request.query_params
        items = [o.doc() for o in v.orders.values() if o.api_key == key.api_key
                 and o.status == "LIVE"
                 and (not qp.get("id") or o.id == qp["id"])
                 and (not qp.get("market") or o.market == qp["market"])
                 and (not qp.get("asset_id") or o.token == qp["asset_id"])]
        return JSONResponse(page(items))

    async def get_trades(request: Request) -> Response:
        key, _, bad = await l2(request)
        if bad is not None:
            return bad
        qp = request.query_params
        items = [t for t in v.trades.values() if t["owner"] == key.api_key
                 and (not qp.get("id") or t["id"] == qp["id"])
                 and (not qp.get("market") or t["market"] == qp["market"])
                 and (not qp.get("asset_id") or t["asset_id"] == qp["asset_id"])]
        return JSONResponse(page(items))

    async def heartbeat(request: Request) -> Response:
        key, body, bad = await l2(request)
        if bad is not None:
            return bad
        # The first accepted heartbeat arms cancel-all-on-silence for this key; no disarm.
        v.heartbeats[key.api_key] = v.clock()
        try:
            hb = json.loads(body or "{}").get("heartbeat_id") or str(uuid.uuid4())
        except Exception:  # noqa: BLE001
            hb = str(uuid.uuid4())
        return JSONResponse({"heartbeat_id": hb})

    async def balance_allowance(request: Request) -> Response:
        key, _, bad = await l2(request)
        if bad is not None:
            return bad
        acct = v.account(key.address)
        if request.query_params.get("asset_type", "COLLATERAL").upper() == "CONDITIONAL":
            bal = acct["tokens"].get(request.query_params.get("token_id", ""), 0)
        else:
            bal = acct["usdc"]
        return JSONResponse({"balance": str(bal), "allowances": {EXCHANGE_V2: MAX_UINT},
                             "collateral": COLLATERAL})

    # ---------------------------------------------------------------- sim control
    async def sim_health(request: Request) -> Response:
        kinds = {k: sum(1 for c in v.conns if c.kind == k) for k in SOCKET_KINDS}
        return JSONResponse({
            "ok": True, "mode": "replay" if v.replay else "sim", "seed": v.opts.seed,
            "window_seconds": v.opts.window_seconds, "t_ns": v.clock(),
            "uptime_s": (v.clock() - v.started_ns) / NS, "connections": kinds,
            "frames_sent": v.frames_sent,
            "replay_done": v.replay.done if v.replay else None})

    async def sim_state(request: Request) -> Response:
        v.sync()
        st = v.market.state()
        st["mode"] = "replay" if v.replay else "sim"
        st["faults"] = v.fault_log[-50:]
        st["stall_until_ns"] = v.stall_until
        st["orders"] = [o.doc() for o in v.orders.values()]
        st["accounts"] = {a: {"usdc": x["usdc"] / 1e6,
                              "tokens": {t: n / 1e6 for t, n in x["tokens"].items()}}
                          for a, x in v.accounts.items()}
        return JSONResponse(st)

    async def sim_fault(request: Request) -> Response:
        try:
            f = json.loads(await request.body())
            entry = v.apply_fault(f)
        except (ValueError, TypeError, AttributeError) as exc:
            return _err(400, str(exc))
        return JSONResponse({"ok": True, "fault": entry})

    async def sim_fault_clear(request: Request) -> Response:
        v.stall_until.clear()
        v.counters.clear()
        v.timed.clear()
        for c in v.conns:
            c.duplicate_left = c.reorder_left = 0
        return JSONResponse({"ok": True})

    async def sim_faults(request: Request) -> Response:
        return JSONResponse({"known": list(FAULTS), "log": v.fault_log[-50:],
                             "counters": v.counters, "stall_until_ns": v.stall_until})

    async def root(request: Request) -> Response:
        return PlainTextResponse("polyedge simvenue; see /sim/health\n")

    routes = [
        Route("/", root),
        Route("/sim/health", sim_health),
        Route("/sim/state", sim_state),
        Route("/sim/fault", sim_fault, methods=["POST"]),
        Route("/sim/fault/clear", sim_fault_clear, methods=["POST"]),
        Route("/sim/faults", sim_faults),
        # Polymarket sockets before Binance's catch-all /ws/<stream>.
        WebSocketRoute("/ws/market", market_ws),
        WebSocketRoute("/ws/user", user_ws),
        WebSocketRoute("/ws", binance_raw),
        WebSocketRoute("/ws/{stream:path}", binance_raw),
        WebSocketRoute("/stream", binance_combined),
        WebSocketRoute("/rtds", rtds_ws),
        Route("/gamma/events", gamma_events),
        Route("/gamma/events/slug/{slug}", gamma_event_slug),
        Route("/gamma/markets", gamma_markets),
        Route("/gamma/markets/slug/{slug}", gamma_market_slug),
        Route("/clob/", clob_ok),
        Route("/clob/ok", clob_ok),
        Route("/clob/time", clob_time),
        Route("/clob/version", clob_version),
        Route("/clob/book", clob_book),
        Route("/clob/books", clob_books, methods=["POST"]),
        Route("/clob/tick-size", clob_tick_size),
        Route("/clob/neg-risk", clob_neg_risk),
        Route("/clob/fee-rate", clob_fee_rate),
        Route("/clob/price", clob_price),
        Route("/clob/midpoint", clob_midpoint),
        Route("/clob/spread", clob_spread),
        Route("/clob/last-trade-price", clob_last_trade),
        Route("/clob/markets-by-token/{token}", clob_markets_by_token),
        Route("/clob/clob-markets/{cid}", clob_market_info),
        Route("/clob/markets/{cid}", clob_market),
        Route("/clob/auth/api-key", create_api_key, methods=["POST"]),
        Route("/clob/auth/derive-api-key", create_api_key, methods=["GET"]),
        Route("/clob/auth/api-keys", get_api_keys),
        Route("/clob/order", post_order, methods=["POST"]),
        Route("/clob/order", cancel_order, methods=["DELETE"]),
        Route("/clob/orders", post_orders, methods=["POST"]),
        Route("/clob/orders", cancel_orders, methods=["DELETE"]),
        Route("/clob/cancel-all", cancel_all, methods=["DELETE"]),
        Route("/clob/cancel-market-orders", cancel_market_orders, methods=["DELETE"]),
        Route("/clob/data/order/{oid}", get_order),
        Route("/clob/data/orders", get_orders),
        Route("/clob/data/trades", get_trades),
        Route("/clob/v1/heartbeats", heartbeat, methods=["POST"]),
        Route("/clob/balance-allowance", balance_allowance),
        Route("/clob/balance-allowance/update", balance_allowance),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):  # type: ignore[no-untyped-def]
        await v.start()
        try:
            yield
        finally:
            await v.stop()

    return Starlette(routes=routes, lifespan=lifespan)
