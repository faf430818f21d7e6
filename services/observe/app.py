"""The observe HTTP/WebSocket API (Starlette): module-level endpoints over the observe state
(`request.app.state`), the control round trip to strategy, the /ws/live fan-out (run by the
app's lifespan), and the security middleware."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hmac
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from common import topics
from common.bus import Pusher
from common.clock import now_ns
from common.config import (
    ConfigError,
    DuplicateKeyError,
    config_choices,
    json_kind,
    unique_json_object,
    validate_config_patch,
)
from common.schema import (
    ClearEmergencyStop,
    ControlReply,
    ForceExit,
    Msg,
    TriggerEmergencyStop,
    UpdateConfig,
)
from services.observe import views
from services.observe.latency import CRITICAL_MS, STALE_MS, WARNING_MS
from services.observe.metrics import metrics_text
from services.observe.recorder import TRADE_FILTERS, Recorder
from services.observe.state import ObserveCore

STATIC_DIR = Path(__file__).with_name("static")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
LIVE_INTERVAL_S = 0.2
LIVE_SEND_TIMEOUT_S = 10.0  # a client that cannot take one frame in this long is dropped
MAX_LIVE_CLIENTS = 256
CONTROL_TIMEOUT_S = 3.0
MAX_BODY_BYTES = 64 * 1024
WS_UNAUTHORIZED = 4401
WS_FORBIDDEN = 4403

_json = msgspec.json.Encoder()


def error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


@dataclass
class ApiSettings:
    token: str | None = None
    allowed_hosts: list[str] = field(default_factory=lambda: list(LOCAL_HOSTS))
    cors_origins: list[str] = field(default_factory=list)
    max_body_bytes: int = MAX_BODY_BYTES
    control_timeout_s: float = CONTROL_TIMEOUT_S


# --- control round trip ---------------------------------------------------------------------------
class ControlUnavailable(Exception):
    """Strategy is not connected to the control stream: nothing was sent."""


class ControlTimeout(Exception):
    """The command was sent but strategy did not confirm in time."""


class Control:
    """Commands to strategy over PUSH, matched to the ControlReply with the same request_id."""

    def __init__(self, endpoint: str) -> None:
        # timeout 0 + IMMEDIATE: fails at once when strategy is not there, never blocks the loop
        self.pusher = Pusher(endpoint, timeout_ms=0)
        self.pending: dict[str, asyncio.Future[ControlReply]] = {}
        self.counts = {"ok": 0, "refused": 0, "timeout": 0, "unavailable": 0}

    def resolve(self, reply: ControlReply) -> None:
        fut = self.pending.pop(reply.request_id, None)
        if fut is not None and not fut.done():
            fut.set_result(reply)

    async def request(self, make: Callable[[str], Msg], timeout_s: float) -> ControlReply:
        request_id = uuid.uuid4().hex
        fut: asyncio.Future[ControlReply] = asyncio.get_running_loop().create_future()
        self.pending[request_id] = fut
        try:
            if not self.pusher.send(topics.CONTROL_CMD, make(request_id)):
                self.counts["unavailable"] += 1
                raise ControlUnavailable(request_id)
            try:
                reply = await asyncio.wait_for(fut, timeout_s)
            except TimeoutError:
                self.counts["timeout"] += 1
                raise ControlTimeout(request_id) from None
            self.counts["ok" if reply.ok else "refused"] += 1
            return reply
        finally:
            self.pending.pop(request_id, None)

    def close(self) -> None:
        self.pusher.close()


# --- /ws/live fan-out -------------------------------------------------------------------------------
class Slot:
    """One client's latest-value slot: a new state overwrites one the client has not taken yet."""

    def __init__(self) -> None:
        self.data = ""
        self.ready = asyncio.Event()
        self.dropped = 0

    def put(self, data: str) -> None:
        if self.ready.is_set():
            self.dropped += 1
        self.data = data
        self.ready.set()

    async def take(self) -> str:
        await self.ready.wait()
        self.ready.clear()
        return self.data


class LiveHub:
    """Builds the state document once per tick and hands it to every client's slot."""

    def __init__(self, core: ObserveCore, interval_s: float = LIVE_INTERVAL_S) -> None:
        self.core = core
        self.interval_s = interval_s
        self.slots: set[Slot] = set()
        self.ticks = 0
        self.dropped_clients = 0
        self._task: asyncio.Task[None] | None = None

    def snapshot(self) -> str:
        return _json.encode(views.live(self.core, now_ns())).decode()

    def join(self) -> Slot:
        slot = Slot()
        slot.put(self.snapshot())  # a new client sees the state at once, not 200 ms later
        self.slots.add(slot)
        return slot

    def leave(self, slot: Slot) -> None:
        self.slots.discard(slot)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_t = loop.time()
        while True:
            next_t += self.interval_s
            await asyncio.sleep(max(0.0, next_t - loop.time()))
            if loop.time() - next_t > self.interval_s:
                next_t = loop.time()  # fell behind (suspended): do not burst to catch up
            if self.slots:
                data = self.snapshot()
                for slot in self.slots:
                    slot.put(data)
                self.ticks += 1

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


# --- security middleware ----------------------------------------------------------------------------
def token_ok(expected: str, presented: str | None) -> bool:
    if presented is None:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


def bearer(headers: dict[bytes, bytes]) -> str | None:
    value = headers.get(b"authorization", b"").decode("latin-1")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class TokenAuthMiddleware:
    """With a token configured, every state-changing request and every WebSocket must carry it.

    HTTP: `Authorization: Bearer <token>`. WebSocket: the same header, or `?token=` (browsers
    cannot set headers on a WebSocket); a refused socket is accepted and closed with 4401 so the
    page can tell "wrong token" from "server down"."""

    SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token is None or scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        presented = bearer(headers)
        if scope["type"] == "http":
            if scope["method"] in self.SAFE_METHODS or token_ok(self.token, presented):
                return await self.app(scope, receive, send)
            resp = error(401, "missing or wrong API token: send Authorization: Bearer <API_TOKEN>")
            resp.headers["WWW-Authenticate"] = "Bearer"
            return await resp(scope, receive, send)
        if presented is None:
            from urllib.parse import parse_qs

            qs = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            presented = (qs.get("token") or [None])[0]
        if token_ok(self.token, presented):
            return await self.app(scope, receive, send)
        msg = await receive()
        if msg["type"] != "websocket.connect":
            return None
        await send({"type": "websocket.accept"})
        await send(
            {
                "type": "websocket.close",
                "code": WS_UNAUTHORIZED,
                "reason": "missing or wrong API token",
            }
        )
        return None


class OriginCheckMiddleware:
    """Refuses state-changing requests and WebSockets sent by a page from another origin.

    A browser attaches `Origin` to every POST and WebSocket; a foreign web page open in the
    trader's browser could otherwise clear an emergency stop on a token-less loopback API (a
    "simple" cross-site POST needs no CORS preflight) or read the live state. Clients that send no
    Origin (curl, scripts) are not browsers and pass."""

    def __init__(self, app: ASGIApp, allowed_origins: list[str]) -> None:
        self.app = app
        self.allowed = set(allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket") or (
            kind == "http" and scope["method"] in TokenAuthMiddleware.SAFE_METHODS
        ):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        origin = headers.get(b"origin", b"").decode("latin-1")
        host = headers.get(b"host", b"").decode("latin-1")
        if not origin or origin in (f"http://{host}", f"https://{host}") or origin in self.allowed:
            return await self.app(scope, receive, send)
        if kind == "http":
            return await error(403, f"cross-origin request from {origin} refused")(
                scope, receive, send
            )
        if (await receive())["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": WS_FORBIDDEN, "reason": "cross-origin"})
        return None


class BodyLimitMiddleware:
    """Refuses request bodies over `limit` bytes with 413 before the endpoint sees them."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_big = error(413, f"request body larger than {self.limit} bytes")
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await too_big(scope, receive, send)
        body = bytearray()
        more = True
        while more:  # bodies here are small documents: read them whole, bounded, then replay
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return None
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
            if len(body) > self.limit:
                return await too_big(scope, receive, send)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


# --- endpoints: module level, reading what they serve from request.app.state -------------------
# app.state holds: core (ObserveCore), hub (LiveHub), control (Control | None), recorder
# (Recorder | None), api (ApiSettings), extra_metrics (callable | None); see build_app.


async def index(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


async def health(request: Request) -> JSONResponse:
    doc = views.health(request.app.state.core, now_ns())
    return JSONResponse(doc, status_code=200 if doc["ok"] else 503)


class UnknownMarket(LookupError):
    """An API `market` that is neither a configured or heard market series nor a known slug."""


def resolve_market(core: ObserveCore, name: str | None) -> str:
    """The series key an API `market` names ("eth-15m", or a window's slug); None or "" -> the
    default market. Raises UnknownMarket naming the known markets."""
    key = core.resolve_market(name)
    if key is None:
        raise UnknownMarket(
            f"unknown market {name!r}: expected a series key or a slug of one of "
            f"{core.market_keys()}"
        )
    return key


def repeated_param(request: Request, suffix: str = "") -> JSONResponse | None:
    """A 400 naming the query parameters given more than once (`?market=a&market=b` would
    otherwise silently use the last), None when each is given at most once."""
    names = [k for k, _ in request.query_params.multi_items()]
    repeated = sorted({k for k in names if names.count(k) > 1})
    if not repeated:
        return None
    return error(400, f"query parameter(s) {repeated} given more than once; give each once{suffix}")


def market_query(request: Request) -> str | JSONResponse:
    """The series key of the request's `?market=` (default market without one), or a 400 (a
    repeated parameter) or 404 (an unknown market)."""
    bad = repeated_param(request)
    if bad is not None:
        return bad
    try:
        return resolve_market(request.app.state.core, request.query_params.get("market"))
    except UnknownMarket as e:
        return error(404, str(e))


async def status(request: Request) -> Response:
    key = market_query(request)
    if isinstance(key, JSONResponse):
        return key
    return Response(
        _json.encode(views.status(request.app.state.core, now_ns(), key)),
        media_type="application/json",
    )


async def markets(request: Request) -> Response:
    """Every market: the overview rows (views.markets_doc) and which one is the default."""
    return Response(
        _json.encode(views.markets_doc(request.app.state.core, now_ns())),
        media_type="application/json",
    )


async def history(request: Request) -> Response:
    key = market_query(request)
    if isinstance(key, JSONResponse):
        return key
    return Response(
        _json.encode(views.history(request.app.state.core, key)), media_type="application/json"
    )


async def latency(request: Request) -> JSONResponse:
    core: ObserveCore = request.app.state.core
    return JSONResponse(
        {
            "thresholds_ms": {
                "warning": WARNING_MS,
                "critical": CRITICAL_MS,
                "stale": STALE_MS,
            },
            "stages": core.latency.summary(),
            "pipeline": views.health(core, now_ns())["pipeline"],
        }
    )


async def metrics(request: Request) -> PlainTextResponse:
    state = request.app.state
    extra = state.extra_metrics() if state.extra_metrics else {}
    extra["ws_clients"] = len(state.hub.slots)
    return PlainTextResponse(
        metrics_text(state.core, now_ns(), extra), media_type="text/plain; version=0.0.4"
    )


async def get_config(request: Request) -> JSONResponse:
    """The config in force with its version and hash; the shipped defaults and the operator's
    overrides (the data directory's file), `diff` = each overridden field with its default;
    `history` = the latest versions, each naming the fields it changed."""
    core: ObserveCore = request.app.state.core
    recorder: Recorder | None = request.app.state.recorder
    meta = core.config_meta
    defaults: dict[str, Any] = meta.get("defaults") or {}
    overrides: dict[str, Any] = meta.get("overrides") or {}
    history = (
        await asyncio.to_thread(recorder.config_history, 20, core.book())
        if recorder is not None
        else []
    )
    return JSONResponse(
        {
            "version": core.config_version,
            "source": core.config_source,
            "config": core.config,
            "choices": config_choices(),  # fields with a fixed set of values: a select
            "hash": meta.get("hash", ""),
            "defaults_path": meta.get("defaults_path", ""),
            "overrides_path": meta.get("overrides_path", ""),
            "defaults": defaults,
            "overrides": overrides,
            "diff": {k: {"default": defaults.get(k), "value": v} for k, v in overrides.items()},
            "changed": meta.get("changed", {}),
            "history": history,
        }
    )


class BodyError(ValueError):
    """A request body the API refuses; `status` is the HTTP status to answer (400 or 415)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


EMPTY_BODY = object()  # read_json's answer for a request without a body (not the JSON `null`)


async def read_json(request: Request) -> Any:
    """The request's JSON body, or EMPTY_BODY when it is empty (the JSON `null` is None: a
    caller that accepts no body must not take `null` for it). Raises BodyError: 415 when a body
    is sent without `Content-Type: application/json` (a form or text/plain POST is what a
    cross-site page can send without a CORS preflight), 400 when it is not valid JSON or an
    object in it names a key twice (naming the key)."""
    body = await request.body()
    if not body.strip():
        return EMPTY_BODY
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    # application/json, or a JSON-based type such as application/merge-patch+json (RFC 7396)
    is_json = ctype == "application/json" or (
        ctype.startswith("application/") and ctype.endswith("+json")
    )
    if not is_json:
        raise BodyError(
            f"request body must be sent with Content-Type: application/json, got {ctype or 'none'!r}",
            415,
        )
    try:
        doc = msgspec.json.decode(body)
    except msgspec.DecodeError as e:
        raise BodyError(f"request body is not valid JSON: {e}") from None
    try:  # valid JSON, but a key named twice would silently keep the last value: refused
        json.loads(body, object_pairs_hook=unique_json_object)
    except DuplicateKeyError as e:
        raise BodyError(
            f"request body names {e.key!r} twice; a JSON object's keys must be unique "
            "(nothing was applied)"
        ) from None
    except (ValueError, RecursionError):
        pass  # msgspec accepted it: json's own limits are not the client's problem
    return doc


async def forward(
    request: Request, make: Callable[[str], Msg], what: str, market: str = ""
) -> JSONResponse:
    """Send a command to strategy and answer with its reply (or why there is none); a command
    for one `market` (series key) answers with that market's halt too (`market_risk`)."""
    core: ObserveCore = request.app.state.core
    control: Control | None = request.app.state.control
    api: ApiSettings = request.app.state.api
    if control is None:
        return error(503, "control stream not configured in this process")
    try:
        reply = await control.request(make, api.control_timeout_s)
    except ControlUnavailable:
        return error(
            503,
            f"{what}: strategy is not connected to the control stream "
            "(is it running?); nothing was sent",
        )
    except ControlTimeout as e:
        return error(
            504,
            f"{what}: sent, but strategy did not confirm within "
            f"{api.control_timeout_s:g} s; check /api/status before retrying",
            request_id=str(e),
        )
    if not reply.ok:
        status_code = 422 if reply.field_errors else 409
        return error(
            status_code,
            reply.error or f"{what}: strategy refused",
            field_errors=reply.field_errors,
            request_id=reply.request_id,
        )
    doc: dict[str, Any] = {
        "ok": True,
        "request_id": reply.request_id,
        "state": reply.state,
        "risk": views.risk_doc(core),
        "config_version": core.config_version,
    }
    if market:
        doc["market"] = market
        doc["market_risk"] = views.market_risk_doc(core, market)
    return JSONResponse(doc)


CONTROL_FIELDS = ("reason", "market")  # what a control POST body may hold
# a control's `reason` is copied into strategy's risk state, its logs and every status answer:
# a note for the operator, not a document (a 60 KB one was accepted, BREAKER3 finding 9)
MAX_REASON_CHARS = 500


async def command_of(request: Request) -> tuple[str, str] | JSONResponse:
    """(reason, market) of a control POST: the body `{"reason": "...", "market": "..."}` (both
    optional; `?market=` works too), market a series key or slug resolved to its series key;
    no market (no body, the key omitted, or null) = every market.

    Refused before anything is sent: 400 for a body that is not a JSON object (the body `null`
    too: it is not "no body", BREAKER2 finding 10), a key other
    than `reason`/`market` (a misspelled `mkt` must not act on every market), a `reason` that
    is not a string or is longer than MAX_REASON_CHARS, a `market` that is not a string (or is ""), a query parameter other than
    `market` or given twice, an empty `?market=`, or a body and query naming different
    markets; 404 for an unknown market."""
    try:
        doc = await read_json(request)
    except BodyError as e:
        return error(e.status, str(e))
    doc = {} if doc is EMPTY_BODY else doc
    nothing = "; nothing was sent"
    if not isinstance(doc, dict):
        return error(
            400,
            'body must be a JSON object like {"reason": "...", "market": "eth-15m"}, '
            f"got {json_kind(doc)}{nothing}",
        )
    unknown = sorted(set(doc) - set(CONTROL_FIELDS))
    if unknown:
        return error(
            400, f"unknown field(s) {unknown} in the body; expected {list(CONTROL_FIELDS)}{nothing}"
        )
    reason = doc.get("reason")
    if reason is not None and not isinstance(reason, str):
        return error(400, f"field 'reason' must be a string, got {json_kind(reason)}{nothing}")
    if reason is not None and len(reason) > MAX_REASON_CHARS:
        return error(
            400,
            f"field 'reason' is {len(reason)} characters long; at most {MAX_REASON_CHARS} are "
            f"allowed{nothing}",
        )
    body_market = doc.get("market")
    if body_market is not None and not isinstance(body_market, str):
        return error(
            400,
            "field 'market' must be a string (a series key such as 'eth-15m' or a window's "
            f"slug) or null for every market, got {json_kind(body_market)}{nothing}",
        )
    if body_market == "":
        return error(
            400,
            "field 'market' is empty: name a market (a series key or a slug), or omit the "
            f"field (or send null) for every market{nothing}",
        )
    bad = repeated_param(request, nothing)
    if bad is not None:
        return bad
    unknown = sorted(set(request.query_params) - {"market"})
    if unknown:
        return error(400, f"unknown query parameter(s) {unknown}; expected ['market']{nothing}")
    query_market = request.query_params.get("market")
    if query_market == "":
        return error(
            400,
            "query parameter 'market' is empty: name a market, or leave the parameter out for "
            f"every market{nothing}",
        )
    if body_market and query_market and body_market != query_market:
        return error(
            400,
            f"the body names market {body_market!r} and the query {query_market!r}: "
            f"give one{nothing}",
        )
    name = body_market or query_market or ""
    try:
        market = resolve_market(request.app.state.core, name) if name else ""
    except UnknownMarket as e:
        return error(404, f"{e}{nothing}")
    return reason or "operator", market


def _scope(market: str) -> str:
    return f" of {market}" if market else ""


async def emergency_stop(request: Request) -> JSONResponse:
    cmd = await command_of(request)
    if isinstance(cmd, JSONResponse):
        return cmd
    reason, market = cmd
    return await forward(
        request,
        lambda rid: TriggerEmergencyStop(request_id=rid, reason=reason, market=market),
        "emergency stop" + _scope(market),
        market,
    )


async def emergency_clear(request: Request) -> JSONResponse:
    cmd = await command_of(request)
    if isinstance(cmd, JSONResponse):
        return cmd
    market = cmd[1]
    return await forward(
        request,
        lambda rid: ClearEmergencyStop(request_id=rid, market=market),
        "clear emergency stop" + _scope(market),
        market,
    )


async def force_exit(request: Request) -> JSONResponse:
    cmd = await command_of(request)
    if isinstance(cmd, JSONResponse):
        return cmd
    reason, market = cmd
    return await forward(
        request,
        lambda rid: ForceExit(request_id=rid, reason=reason, market=market),
        "force exit" + _scope(market),
        market,
    )


async def post_config(request: Request) -> JSONResponse:
    try:
        doc = await read_json(request)
    except BodyError as e:
        return error(e.status, str(e))
    if doc is EMPTY_BODY:  # named as such, not as a value of a type
        return error(
            422,
            "invalid config: nothing was applied",
            field_errors={
                "$": 'an empty body; expected a JSON object like {"stake_per_trade_usd": 4} '
                "(the fields to change)"
            },
        )
    bad = repeated_param(request)
    if bad is not None:
        return bad
    raw = request.query_params.get("replace", "false").lower()
    if raw not in ("true", "false", "1", "0"):
        return error(400, f"query parameter 'replace' must be true or false, got {raw!r}")
    replace = raw in ("true", "1")
    try:
        # a JSON merge patch (RFC 7396): only the fields sent change, null = the shipped default
        patch = validate_config_patch(doc, "posted config")
    except ConfigError as e:
        return error(422, "invalid config: nothing was applied", field_errors=e.errors)
    return await forward(
        request,
        lambda rid: UpdateConfig(request_id=rid, config=patch, replace=replace),
        "config update",
    )


def int_param(request: Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise ValueError(f"query parameter {name!r} must be an integer, got {raw!r}") from None
    if not lo <= v <= hi:
        raise ValueError(f"query parameter {name!r} must be between {lo} and {hi}, got {v}")
    return v


# The values a trade row can hold (services/observe/state.py writes them): a filter outside them
# is a typo, answered 400 naming the parameter rather than 200 with nothing found.
TRADE_FILTER_VALUES: dict[str, tuple[str, ...]] = {
    "kind": ("fill", "settlement"),
    "side": ("BUY", "SELL"),  # common.schema.Side
    "outcome": ("Up", "Down"),  # common.schema.Outcome
    "venue": ("live", "sim"),  # Settings.venue (POLYEDGE_VENUE)
    "mode": ("paper", "real"),
}


def trade_filters(raw: dict[str, str]) -> dict[str, str]:
    """Check `/api/trades` filters: {name: value} -> the same with values in their stored spelling.

    kind, side and outcome are matched case-insensitively (`SETTLEMENT` -> `settlement`, `buy`
    -> `BUY`, `down` -> `Down`); venue and mode exactly; day must be a real date `YYYY-MM-DD`. Raises ValueError naming the
    parameter, the value and what is allowed."""
    out = dict(raw)
    for name, allowed in TRADE_FILTER_VALUES.items():
        if name not in raw:
            continue
        value = raw[name]
        if name in ("kind", "side", "outcome"):
            match = [a for a in allowed if a.lower() == value.lower()]
        else:
            match = [a for a in allowed if a == value]
        if not match:
            raise ValueError(
                f"query parameter {name!r} must be one of {list(allowed)}, got {value!r}"
            )
        out[name] = match[0]
    if "day" in raw:
        day = raw["day"]
        try:
            ok = len(day) == 10 and datetime.date.fromisoformat(day).isoformat() == day
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"query parameter 'day' must be a date YYYY-MM-DD (UTC), got {day!r}")
    return out


async def trades(request: Request) -> JSONResponse:
    recorder: Recorder | None = request.app.state.recorder
    if recorder is None:
        return error(503, "recorder not configured in this process")
    known = {*TRADE_FILTERS, "limit", "offset", "since_ns", "until_ns", "dry_run"}
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        return error(400, f"unknown query parameter(s) {unknown}; expected some of {sorted(known)}")
    try:
        limit = int_param(request, "limit", 50, 1, 500)
        offset = int_param(request, "offset", 0, 0, 10**9)
        since = int_param(request, "since_ns", None, 0, 2**63 - 1)
        until = int_param(request, "until_ns", None, 0, 2**63 - 1)
    except ValueError as e:
        return error(400, str(e))
    dry: bool | None = None
    raw_dry = request.query_params.get("dry_run")
    if raw_dry:
        if raw_dry.lower() not in ("true", "false", "1", "0"):
            return error(400, f"query parameter 'dry_run' must be true or false, got {raw_dry!r}")
        dry = raw_dry.lower() in ("true", "1")
    bad = repeated_param(request)
    if bad is not None:
        return bad
    filters = {k: request.query_params[k] for k in TRADE_FILTERS if request.query_params.get(k)}
    try:
        filters = trade_filters(filters)
    except ValueError as e:
        return error(400, str(e))
    if "market" in filters:
        # a series key or a slug, as /api/status takes; a market only the recorded trades name
        # (removed from the config, observe restarted since) is known too; else a 404
        core: ObserveCore = request.app.state.core
        name = filters["market"]
        key = core.resolve_market(name)
        if key is None:
            recorded = await asyncio.to_thread(recorder.trade_markets)
            if name not in recorded:
                known = core.market_keys() + sorted(set(recorded) - set(core.market_keys()))
                return error(
                    404,
                    f"unknown market {name!r}: expected a series key or a slug of one of {known}",
                )
            key = name
        filters["market"] = key
    page = await asyncio.to_thread(
        recorder.trades,
        limit=limit or 50,
        offset=offset or 0,
        since_ns=since,
        until_ns=until,
        dry_run=dry,
        **filters,
    )
    return JSONResponse(page)


async def live(ws: WebSocket) -> None:
    hub: LiveHub = ws.app.state.hub
    if len(hub.slots) >= MAX_LIVE_CLIENTS:
        await ws.accept()
        await ws.close(code=1013, reason="too many live clients")
        return
    await ws.accept()
    slot = hub.join()

    async def sender() -> None:
        while True:
            data = await slot.take()
            await asyncio.wait_for(ws.send_text(data), LIVE_SEND_TIMEOUT_S)

    send_task = asyncio.create_task(sender())
    try:
        # reading is how a disconnect is noticed; anything the client sends is ignored
        recv_task = asyncio.create_task(_drain_client(ws))
        done, _ = await asyncio.wait({send_task, recv_task}, return_when=asyncio.FIRST_COMPLETED)
        for t in (send_task, recv_task):
            t.cancel()
        for t in done:
            if not t.cancelled() and isinstance(t.exception(), TimeoutError):
                hub.dropped_clients += 1
    finally:
        hub.leave(slot)
        send_task.cancel()
        try:
            await ws.close()
        except Exception:  # noqa: BLE001 - already closed by the peer
            pass


routes = [
    Route("/", index),
    Route("/health", health),
    Route("/api/status", status),
    Route("/api/history", history),
    Route("/api/markets", markets),
    Route("/api/config", get_config, methods=["GET"]),
    Route("/api/config", post_config, methods=["POST"]),
    Route("/api/emergency-stop", emergency_stop, methods=["POST"]),
    Route("/api/emergency-stop/clear", emergency_clear, methods=["POST"]),
    Route("/api/force-exit", force_exit, methods=["POST"]),
    Route("/api/trades", trades),
    Route("/api/latency", latency),
    Route("/metrics", metrics),
    WebSocketRoute("/ws/live", live),
    Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
]


# --- the app ----------------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """Run the /ws/live fan-out while the app serves."""
    hub: LiveHub = app.state.hub
    hub.start()
    try:
        yield
    finally:
        hub.stop()


def build_app(
    core: ObserveCore,
    *,
    hub: LiveHub | None = None,
    control: Control | None = None,
    recorder: Recorder | None = None,
    api: ApiSettings | None = None,
    extra_metrics: Callable[[], dict[str, float]] | None = None,
) -> Starlette:
    """The observe API over `core`, with the security middleware `api` asks for. Serve it with
    the lifespan on (it starts the /ws/live fan-out); without a `control` the command endpoints
    answer 503, without a `recorder` /api/trades does."""
    api = api or ApiSettings()
    middleware = [
        Middleware(TrustedHostMiddleware, allowed_hosts=api.allowed_hosts),
        Middleware(BodyLimitMiddleware, limit=api.max_body_bytes),
        Middleware(OriginCheckMiddleware, allowed_origins=api.cors_origins),
    ]
    if api.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=api.cors_origins,
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type"],
            )
        )
    middleware.append(Middleware(TokenAuthMiddleware, token=api.token))
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.core = core
    app.state.hub = hub or LiveHub(core)
    app.state.control = control
    app.state.recorder = recorder
    app.state.api = api
    app.state.extra_metrics = extra_metrics
    return app


async def _drain_client(ws: WebSocket) -> None:
    try:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
    except (WebSocketDisconnect, RuntimeError):
        return
