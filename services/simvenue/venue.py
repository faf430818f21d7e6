"""The simulated venue's state: the market (or a replay), client sockets and the frames routed to
them, accounts, orders and trades, and the injected faults. The protocol modules (binance,
market_channel, user_channel, price_feed, gamma, clob_rest, control) are thin endpoints over one
`Venue`, found at `request.app.state.venue`; the app is assembled in `server.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

from services.simvenue import matching
from services.simvenue.market import NS, SimMarkets
from services.simvenue.replay import Replay
from services.simvenue.signing import ApiKey

if TYPE_CHECKING:
    from pathlib import Path

    from services.simvenue.matching import SimOrder

SOCKET_KINDS = ("binance", "market", "user", "rtds")
FAULTS = (
    "drop",
    "stall",
    "malformed",
    "unknown",
    "duplicate_delta",
    "out_of_order",
    "tick_size_change",
    "gamma_5xx",
    "gamma_empty",
    "order_reject",
    "order_timeout_placed",
    "slow_ack",
    "withhold_resolved",
    "late_resolution",
    # the real venue's order and account behaviours (issue 13; README.md)
    "delayed",
    "fak_live",
    "trade_failed",
    "not_ready",
    "cancel_only",
    "trading_disabled",
    "refuse_eoa_makers",
    "revoke_approval",
    "set_balance",
    "clock_skew",
    "geoblock",
    "manual_redemption",
    "prefixed_statuses",
    "relayer_down",
    # a test control, not a fault: a taker of the simulated flow trades through a resting order
    "flow_trade",
)
# the heartbeat dead-man switch: the first accepted POST /v1/heartbeats arms a cancel of every
# open order of the API key when no heartbeat follows within ~10 s (PROTOCOLS.md section 4;
# docs.polymarket.com api-reference/trade/send-heartbeat: "If heartbeats are not sent regularly,
# all open orders for the user will be automatically canceled"; py-clob-client-v2
# `post_heartbeat`). There is no disarm.
HEARTBEAT_TIMEOUT_NS = 10 * NS
# the CTF operators of an approved account: the CTF Exchange V2 (sell) and the collateral
# adapter (redeem); lower-case, as rpc.py stores them
NEW_ACCOUNT_OPERATORS = (
    "0xe111180000d2663c0091e4f400237545b87b996b",
    "0xada100db00ca00073811820692005400218fce1f",
)
# numeric fault fields: (field, smallest allowed); `clock_skew`'s seconds may be negative
FAULT_NUMBERS = (
    ("count", 1),
    ("seconds", 0),
    ("after", 0),
    ("usd", 0),
    ("post_only_seconds", 0),
    ("after_s", 0),
    ("fill_after_s", 0),
)


def check_fault(f: object) -> None:
    """Check a `/sim/fault` body before anything is applied: a JSON object with a known `name`,
    numbers where numbers go (count >= 1 and whole; seconds, after, usd >= 0 except clock_skew's
    seconds), and `usd` for `set_balance`. Raises ValueError naming the field and the problem."""
    if not isinstance(f, dict):
        raise ValueError(
            f'fault body must be a JSON object like {{"name": "drop"}}, got {type(f).__name__}'
        )
    if "name" not in f:
        others = f" (got fields {sorted(map(str, f))})" if f else ""
        raise ValueError(
            f"missing field 'name': the fault to apply, one of {', '.join(FAULTS)}{others}"
        )
    name = f["name"]
    if name not in FAULTS:
        raise ValueError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
    for key, lo in FAULT_NUMBERS:
        if f.get(key) is None:
            continue
        v = f[key]
        if (
            isinstance(v, bool)
            or not isinstance(v, (int, float))
            or v != v
            or v in (float("inf"), float("-inf"))
        ):
            raise ValueError(f"field {key!r} must be a number, got {v!r}")
        if key == "count" and not float(v).is_integer():
            raise ValueError(f"field 'count' must be a whole number, got {v!r}")
        if v < lo and not (key == "seconds" and name == "clock_skew"):
            raise ValueError(f"field {key!r} must be >= {lo}, got {v!r}")
    if name == "set_balance" and f.get("usd") is None:
        raise ValueError("fault 'set_balance' needs field 'usd': the new pUSD balance (>= 0)")


QUEUE_MAX = 20_000


@dataclass
class SimOptions:
    """The venue's settings (`polyedge sim` flags): seconds, Hz, pUSD; faults as `/sim/fault` bodies."""

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
    # the series listed: (asset, window label, window seconds); None: one, ("btc", "5m",
    # window_seconds). `polyedge sim` names those of the strategy config (`markets`).
    markets: list[tuple[str, str, int]] | None = None
    # called about once a second: the series the config names now (hot reload); None: fixed
    markets_source: Callable[[], list[tuple[str, str, int]]] | None = None
    # where ended windows' resolutions are kept across restarts (SimMarkets.archive_path);
    # None: in memory only
    archive_path: Path | None = None


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


class Venue:
    """Holds all venue state; the Starlette app is a thin layer of routes over it."""

    def __init__(self, opts: SimOptions, clock: Callable[[], int] = time.time_ns) -> None:
        self.opts = opts
        self.clock = clock
        now = clock()
        self.market = SimMarkets(
            opts.seed,
            list(opts.markets or [("btc", "5m", opts.window_seconds)]),
            now,
            book_ticker_hz=opts.book_ticker_hz,
            clob_update_hz=opts.clob_update_hz,
            archive_path=opts.archive_path,
        )
        self._next_markets_check = now
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
        self.withheld_resolutions = 0  # market_resolved frames not sent (withhold_resolved)
        self.settled: set[str] = set()  # condition ids paid out
        self.refuse_eoa_makers = False
        self.approve_new = True  # new accounts start with the exchange approved  # the venue's rule for new API users (fault)
        self.post_only_until = 0  # ns: after a 425 window, only post-only orders (fault)
        self.time_skew_s = 0.0  # added to /time (fault `clock_skew`)
        self.geoblocked = False
        # REST answers with the venue's prefixed constants (ORDER_STATUS_LIVE, TRADE_STATUS_...)
        self.prefixed_statuses = False
        # redemption: with `manual_redemption` (fault) winning tokens pay only when redeemed
        # through the JSON-RPC endpoint or the relayer; otherwise the venue pays them at
        # resolution
        self.manual_redemption = False
        self.resolved_conditions: dict[str, tuple[str, str]] = {}  # condition -> (win, lose)
        self.nonces: dict[str, int] = {}
        self.receipts: dict[str, dict] = {}
        self.relayer_txs: dict[str, dict] = {}  # relayer transaction id -> its state (relayer.py)
        # trade id -> (wallet, token, pUSD micro moved, token micro moved), until CONFIRMED
        self.trade_effects: dict[str, tuple[str, str, int, int]] = {}
        self.started_ns = now
        self.frames_sent = 0
        self._pump_task: asyncio.Task | None = None
        self._bg: set[asyncio.Task] = set()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Start the market pump (every 10 ms) and the faults scheduled with `after`."""
        self._pump_task = asyncio.create_task(self._pump())
        for f in self.opts.faults:
            after = float(f.get("after", 0) or 0)
            self.spawn(self._delayed_fault(f, after))

    async def stop(self) -> None:
        """Cancel the pump and background tasks, fix the outcome of the window running now from
        the prices so far (`SimMarkets.stop`: written to the archive, so a restarted venue
        resolves it once, that way) and close every client socket."""
        for t in [self._pump_task, *self._bg]:
            if t is not None:
                t.cancel()
        if self.replay is None:
            for rec in self.market.stop(self.clock()):
                print(
                    f"simvenue: stopping during {rec['key']} window {rec['start_s']}: its outcome "
                    f"is fixed from the prices so far ({rec['winner']}, final "
                    f"{rec['final_price']} vs price to beat {rec['price_to_beat']})",
                    flush=True,
                )
        for c in list(self.conns):
            c.put(None)

    def spawn(self, coro: Any) -> None:
        """Run `coro` as a background task that `stop` cancels."""
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
                    for kind, text in self.replay.due(now) if self.conns else ():
                        self._route_replay(kind, text)
                else:
                    self.sync(now)
                    self._check_markets(now)
                self._check_heartbeats(now)
                if self.market.resting:
                    matching.expire_orders(self, now)
                self._settle(now)
            except Exception as exc:  # noqa: BLE001 - a generator bug must not kill the venue
                print(f"simvenue: pump error: {exc!r}", flush=True)
                raise
            await asyncio.sleep(0.01)

    def _check_markets(self, now: int) -> None:
        """About once a second, list the series the config names now and the venue does not
        (a hot reload added them); a series the config dropped stays listed, as on the venue."""
        src = self.opts.markets_source
        if src is None or now < self._next_markets_check:
            return
        self._next_markets_check = now + NS
        try:
            wanted = src()
        except Exception as exc:  # noqa: BLE001 - a bad edit keeps the markets listed
            print(f"simvenue: markets not reloaded: {exc}", flush=True)
            return
        for asset, label, window_s in wanted:
            if self.market.add_series(asset, label, window_s):
                print(f"simvenue: listing {asset}-{label} ({window_s} s windows)", flush=True)

    def sync(self, now: int | None = None) -> None:
        """Advance the market to `now` and route its frames."""
        if self.replay is not None:
            return
        for _ts, channel, frame in self.market.advance(self.clock() if now is None else now):
            self._route(channel, frame)
        if self.market.maker_fills:
            matching.apply_maker_fills(self)

    # ------------------------------------------------------------------ routing
    def stalled(self, kind: str) -> bool:
        """True while a `stall` fault silences the `kind` sockets (no frames, no PONG)."""
        until = self.stall_until.get(kind, 0)
        return until > self.clock()

    def send(self, c: Conn, text: str) -> None:
        """Queue one frame for `c`, applying the stall, duplicate and out-of-order faults."""
        if self.stalled(c.kind):
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
                    self.send(c, f'{{"stream":"{rest}","data":{frame}}}' if c.combined else frame)
        elif kind == "market":
            if not rest:
                for c in self.conns:
                    if c.kind == "market":
                        self.send(c, frame)
                return
            if '"market_resolved"' in frame and self.take_fault("withhold_resolved") is not None:
                # the venue resolves (Gamma and CLOB REST say so) but the frame never comes
                self.withheld_resolutions += 1
                return
            w = self.market.window_by_condition(rest)
            tokens = set(w.tokens) if w is not None else set()
            for c in self.conns:
                if c.kind == "market" and c.subs & tokens:
                    self.send(c, frame)
        elif kind == "rtds":
            for c in self.conns:
                if c.kind == "rtds" and rest in c.subs:
                    flt = c.rtds_filters.get(rest, "")
                    if flt and not any(
                        f'"symbol":"{s.strip()}"' in frame for s in flt.split(",") if s.strip()
                    ):
                        continue
                    self.send(c, frame)

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
                    self.send(c, text)
                else:
                    self.send(c, data)
        elif kind == "market":
            ids = Replay.asset_ids(text)
            for c in self.conns:
                if c.kind == "market" and (not ids or c.subs & ids or not c.subs):
                    self.send(c, text)
        elif kind == "rtds":
            for c in self.conns:
                if c.kind == "rtds":
                    self.send(c, text)

    def user_event(self, api_key: str, market: str, doc: dict) -> None:
        """Send a user-channel event to `api_key`'s sockets subscribed to `market` (or to all)."""
        text = json.dumps(doc, separators=(",", ":"))
        for c in self.conns:
            if c.kind == "user" and c.api_key == api_key and (not c.markets or market in c.markets):
                self.send(c, text)

    # ------------------------------------------------------------------ faults
    def apply_fault(self, f: dict) -> dict:
        """Apply a `/sim/fault` body (name, channel, count, seconds); returns its log entry.

        Raises ValueError naming a missing or unknown fault, an unknown channel, or a bad number
        (see `check_fault`)."""
        check_fault(f)
        name = f["name"]
        channel = f.get("channel") or "all"
        if channel != "all" and channel not in (*SOCKET_KINDS, "gamma", "clob"):
            raise ValueError(f"unknown channel {channel!r}")
        kinds = SOCKET_KINDS if channel == "all" else (channel,)
        count = int(f.get("count", 1) or 1)
        seconds = f.get("seconds")
        now = self.clock()
        entry = {"name": name, "channel": channel, "count": count, "seconds": seconds, "ts_ns": now}
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
            entry["market"] = self.market.force_tick_size_change(now)
            self.sync(now)
        elif name == "flow_trade":
            # one taker of the venue's own flow through resting order `order_id` (a test
            # control: the flow fills a maker quote when the test wants it, by the venue's rules)
            oid = f.get("order_id")
            if not isinstance(oid, str) or not oid:
                raise ValueError("fault 'flow_trade' needs field 'order_id': a resting order's id")
            self.sync(now)
            res = self.market.flow_trade_through(oid, now)
            self.sync(now)
            entry["order_id"] = oid
            entry["traded_shares"] = res.filled_centi / 100
        elif name == "late_resolution":
            # windows that end from now on resolve `seconds` later (REST and market channel)
            self.market.resolve_delay_ns = int(float(seconds if seconds is not None else 60) * NS)
        elif name == "not_ready":  # HTTP 425 for `seconds`, then `post_only_seconds`
            until = now + int(float(seconds if seconds is not None else 90) * NS)
            self.timed["not_ready"] = until
            self.post_only_until = until + int(float(f.get("post_only_seconds", 120)) * NS)
        elif name in ("refuse_eoa_makers", "geoblock", "manual_redemption", "prefixed_statuses"):
            on = bool(f.get("on", True))
            if name == "prefixed_statuses":
                self.prefixed_statuses = on
            elif name == "geoblock":
                self.geoblocked = on
            elif name == "manual_redemption":
                self.manual_redemption = on
            else:
                self.refuse_eoa_makers = on
        elif name == "clock_skew":
            self.time_skew_s = float(seconds or 0)
        elif name in ("revoke_approval", "set_balance"):
            who = [str(f["address"]).lower()] if f.get("address") else None
            if who is None and name == "set_balance":
                self.opts.balance_usd = float(f.get("usd", 0))
            if who is None and name == "revoke_approval":
                self.approve_new = bool(f.get("restore", False))
            for a in who or list(self.accounts):
                acct = self.account(a)
                restore = bool(f.get("restore", False))
                if name == "set_balance":
                    acct["usdc"] = int(float(f.get("usd", 0)) * 1e6)
                elif f.get("operator"):  # one CTF operator approval only
                    op = str(f["operator"]).lower()
                    if restore:
                        acct["operators"].add(op)
                    else:
                        acct["operators"].discard(op)
                else:  # every approval: the pUSD allowance and the CTF operators
                    acct["approved"] = restore
                    acct["operators"] = set(NEW_ACCOUNT_OPERATORS) if restore else set()
        else:  # counted or timed: gamma_5xx, ..., slow_ack, delayed, fak_live, trade_failed
            if seconds is not None and "count" not in f:
                self.timed[name] = now + int(float(seconds) * NS)
            else:
                self.counters[name] = self.counters.get(name, 0) + count
            self.fault_params[name] = dict(f)
        return entry

    def take_fault(self, name: str) -> dict | None:
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
            return [
                '{"event_type": "book", "asset_id": "1", "bids": [',
                "\x00\x01garbage",
                '{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","p":',
            ][i % 3]
        if kind == "binance":
            return json.dumps({"e": "simUnknownEvent", "E": 0, "s": "BTCUSDT", "x": i})
        if kind == "rtds":
            return json.dumps(
                {
                    "topic": "sim_unknown_topic",
                    "type": "update",
                    "timestamp": 0,
                    "payload": {"symbol": "btc/usd"},
                }
            )
        return json.dumps(
            {"event_type": "sim_unknown_event", "market": "0x0", "n": i, "timestamp": "0"}
        )

    # ------------------------------------------------------------------ accounts / orders
    def account(self, address: str) -> dict[str, Any]:
        """The account of `address`: `usdc` and `tokens` in micro-units, opened at `balance_usd`."""
        a = self.accounts.get(address.lower())
        if a is None:
            # an approved new account has every approval a binary market needs: pUSD to the
            # exchange and the CTF operator approvals for selling and redeeming (`polyedge doctor`)
            a = {
                "usdc": int(self.opts.balance_usd * 1e6),
                "tokens": {},
                "approved": self.approve_new,
                "redemptions": [],
                "allowances": {},
                "operators": set(NEW_ACCOUNT_OPERATORS) if self.approve_new else set(),
            }
            self.accounts[address.lower()] = a
        return a

    def _settle(self, now: int) -> None:
        for w in list(self.market.windows.values()):
            if not w.resolved or w.condition_id in self.settled:
                continue
            self.settled.add(w.condition_id)
            win = w.up_token if w.winner == "Up" else w.down_token
            lose = w.down_token if win == w.up_token else w.up_token
            self.resolved_conditions[w.condition_id.lower()] = (win, lose)
            if self.manual_redemption:  # tokens stay until their holder redeems them (rpc.py)
                continue
            for acct in self.accounts.values():
                held = acct["tokens"].pop(win, 0)
                acct["tokens"].pop(w.down_token if win == w.up_token else w.up_token, None)
                acct["usdc"] += held  # micro-shares pay 1 micro-collateral each
            for o in self.orders.values():
                if o.market == w.condition_id and o.status == "LIVE":
                    o.status = "CANCELED"
                    self.market.unrest(o.id)

    def _check_heartbeats(self, now: int) -> None:
        for api_key, last in list(self.heartbeats.items()):
            if now - last > HEARTBEAT_TIMEOUT_NS:
                del self.heartbeats[api_key]
                matching.cancel_orders(
                    self,
                    api_key,
                    [
                        o.id
                        for o in self.orders.values()
                        if o.api_key == api_key and o.status == "LIVE"
                    ],
                    status="CANCELED",
                )


def error_response(status: int, msg: str) -> JSONResponse:
    """The venues' error answer: `{"error": msg}` with HTTP `status`."""
    return JSONResponse({"error": msg}, status_code=status)


async def serve_socket(
    v: Venue, ws: WebSocket, conn: Conn, on_text: Callable[[Venue, Conn, str], Any]
) -> None:
    """Serve one client socket until either side closes it: client text goes to `on_text`,
    queued frames (`conn.put`) go out; a `None` in the queue closes the socket (code 1011)."""
    await ws.accept()
    v.conns.add(conn)

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
                    on_text(v, conn, text)
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
