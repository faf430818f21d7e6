"""Ingest's venue clients as asyncio tasks: Binance streams, the Polymarket CLOB market channel,
Gamma discovery and the RTDS price feed. Each reconnects with capped, jittered exponential backoff,
replaces sockets that go silent, counts and logs venue garbage, and hands parsed events to the
transport-free `IngestCore`, publishing what it returns. Timers and switches are
`common.config.IngestSettings` (`INGEST_*`), so tests can shrink every timer.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec
import websockets
from websockets.asyncio.client import ClientConnection, connect

from common.clock import now_ns
from common.config import IngestSettings, MarketSpec
from common.core import Emitted
from common.liveness import DataLiveness
from common.schema import BtcQuote, BtcTrade, MarketInfo, PriceFeedTick
from services.ingest.capture import CaptureWriter
from services.ingest.core import IngestCore, VenueEvents, is_clob_data
from services.ingest.parsers import (
    ParseError,
    RestResolution,
    ServerShutdown,
    VenueNotice,
    parse_binance,
    parse_clob,
    parse_clob_market_resolution,
    parse_gamma,
    parse_gamma_resolution,
    parse_rtds,
)

BINANCE_STREAMS = ("btcusdt@aggTrade", "btcusdt@bookTicker")
BINANCE_STREAM_KINDS = ("aggTrade", "bookTicker")
# Binance spot WebSocket Streams limits (developers.binance.com/docs/binance-spot-api-docs/
# web-socket-streams): at most 1,024 streams per connection, and at most 5 incoming messages a
# second (pongs included; beyond: disconnected). Subscription changes are sent at most this
# often, each one SUBSCRIBE/UNSUBSCRIBE carrying every stream that changed.
BINANCE_MAX_STREAMS = 1024
BINANCE_MIN_SEND_INTERVAL_S = 0.5  # 2 messages/s at most, well under 5 with the pongs
RTDS_TOPICS = (
    "crypto_prices_chainlink",
    "crypto_prices_twap_sixty",
    "crypto_prices_twap_thirty",
    "crypto_prices",
)
LOG_EVERY = 100  # after the first 10, log one venue fault in this many


class Backoff:
    """Exponential backoff with jitter, capped; `reset()` after a stable period."""

    def __init__(
        self, base_s: float, cap_s: float, jitter: float = 0.2, rng: random.Random | None = None
    ) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.jitter = jitter
        self.attempt = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        raw = min(self.cap_s, self.base_s * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 30)
        # jitter spreads reconnect storms; never beyond the cap
        return min(self.cap_s, raw * (1.0 + self._rng.uniform(-self.jitter, self.jitter)))

    def bound(self) -> float:
        """Upper bound of the next delay."""
        return min(self.cap_s, self.base_s * (2**self.attempt) * (1.0 + self.jitter))

    def reset(self) -> None:
        self.attempt = 0


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("127.0.0.1", "localhost", "::1")


class FeedContext:
    """What every feed task shares: the core, publishing, logging, capture, options, stop."""

    def __init__(
        self,
        core: IngestCore,
        publish: Callable[[Emitted], None],
        log: Callable[..., None],
        opts: IngestSettings,
        urls: Mapping[str, str],
        default_window_s: int,
        capture: CaptureWriter | None = None,
    ) -> None:
        self.core = core
        self.publish = publish
        self.log = log  # log(event, level="INFO", **fields)
        self.opts = opts
        self.urls = urls
        self.default_window_s = default_window_s
        self.capture = capture
        self.stop = asyncio.Event()
        self._fault_counts: dict[str, int] = {}

    def fault(self, feed: str, event: str, **fields: Any) -> None:
        """An external fault: always counted by the caller, logged without flooding."""
        key = f"{feed}:{event}"
        n = self._fault_counts.get(key, 0) + 1
        self._fault_counts[key] = n
        if n <= 10 or n % LOG_EVERY == 0:
            self.log(event, "WARNING", feed=feed, count=n, **fields)

    def unknown(self, feed: str, events: list[Any]) -> None:
        """Log event types we do not know (the core counts them); never fatal."""
        for ev in events:
            if type(ev) is VenueNotice and not ev.known:
                self.fault(feed, "unknown_event", what=ev.what)

    def take(
        self,
        channel: str,
        feed: str,
        frame: str | bytes,
        parse: Callable[[str | bytes, int], list[Any]],
    ) -> list[Any] | None:
        """One venue frame: capture it, parse it, publish what the core makes of it. None when
        the frame was garbage (counted and logged, never fatal)."""
        ts = now_ns()
        if self.capture is not None:
            self.capture.write(ts, channel, frame)
        try:
            events = parse(frame, ts)
        except ParseError as e:
            h = self.core.feed(feed)
            h.parse_errors += 1
            h.seen(ts)
            self.fault(feed, "parse_error", error=str(e), frame=str(frame)[:200])
            return None
        self.publish(self.core.step(VenueEvents(feed, events), ts))
        self.unknown(feed, events)
        return events

    async def sleep(self, seconds: float) -> bool:
        """Sleep unless stopping; True if stop was requested."""
        if seconds <= 0:
            return self.stop.is_set()
        try:
            await asyncio.wait_for(self.stop.wait(), seconds)
        except TimeoutError:
            return False
        return True

    def ws_connect(self, url: str, **kw: Any) -> Any:
        return connect(
            url,
            open_timeout=10,
            close_timeout=1,
            max_size=8 * 1024 * 1024,
            max_queue=1024,
            compression=None,
            proxy=None if _loopback(url) else True,
            **kw,
        )


# --- shared reconnect loop ----------------------------------------------------------------------
async def _run_socket(
    ctx: FeedContext,
    feed: str,
    url_fn: Callable[[], str | None],
    session: Callable[[ClientConnection], Any],
    **connect_kw: Any,
) -> None:
    """Connect, run `session(ws)` until it returns or the socket dies, back off, repeat.

    `session` returns "planned" for a deliberate reconnect (no backoff)."""
    o = ctx.opts
    h = ctx.core.feed(feed)
    backoff = Backoff(o.backoff_base_ms / 1000, o.backoff_max_ms / 1000)
    first = True
    while not ctx.stop.is_set():
        url = url_fn()
        if url is None:  # nothing to subscribe yet
            h.detail = "waiting for markets"
            if await ctx.sleep(0.1):
                return
            continue
        t0 = time.monotonic()
        reason = "closed"
        try:
            async with ctx.ws_connect(url, **connect_kw) as ws:
                h.connected = True
                h.detail = ""
                if not first:
                    h.reconnects += 1
                first = False
                ctx.log("feed_connected", feed=feed, url=url, reconnects=h.reconnects)
                reason = await _until_stop(ctx, session(ws)) or "closed"
        except websockets.ConnectionClosed as e:
            reason = f"connection closed: {e}"
        except (OSError, TimeoutError, websockets.InvalidURI, websockets.InvalidHandshake) as e:
            reason = f"connect failed: {e!r}"
        finally:
            h.connected = False
        if ctx.stop.is_set():
            return
        if first:
            first = False  # a failed first connect still counts the next one as a reconnect
        if time.monotonic() - t0 >= o.stable_s:
            backoff.reset()
        delay = 0.0 if reason == "planned" else backoff.next()
        h.detail = reason[:200]
        ctx.fault(feed, "feed_disconnected", reason=reason[:300], retry_in_s=round(delay, 3))
        if await ctx.sleep(delay):
            return


async def _until_stop(ctx: FeedContext, coro: Any) -> str | None:
    """Run a socket session until it ends or the service stops (then cancel it)."""
    sess = asyncio.ensure_future(coro)
    stopper = asyncio.ensure_future(ctx.stop.wait())
    try:
        await asyncio.wait({sess, stopper}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        # the service is stopping (its tasks are cancelled): the session goes too and its end
        # is collected here, else its ConnectionClosedError is printed to stderr as "Task
        # exception was never retrieved" on every clean stop
        sess.cancel()
        await asyncio.gather(sess, return_exceptions=True)
        raise
    finally:
        stopper.cancel()
    if sess.done():
        return sess.result()  # re-raises the session's ConnectionClosed etc.
    sess.cancel()
    await asyncio.gather(sess, return_exceptions=True)
    return "stopping"


async def _watchdog(
    ws: ClientConnection, live: DataLiveness, on_dead: Callable[[str], None]
) -> None:
    """Abort a socket whose data stopped (keep-alives or not): the read loop then ends and we
    reconnect."""
    while True:
        await asyncio.sleep(min(0.25, live.silence_s / 4))
        why = live.verdict()
        if why:
            on_dead(why)
            ws.transport.abort()
            return


# --- Binance -----------------------------------------------------------------------------------
def binance_streams(assets: Iterable[str]) -> list[str]:
    """The combined-stream names for `assets` (aggTrade and bookTicker of `<asset>usdt`, lower
    case), sorted. Raises ValueError past Binance's 1,024 streams per connection."""
    out = sorted(f"{a.lower()}usdt@{k}" for a in set(assets) for k in BINANCE_STREAM_KINDS)
    if len(out) > BINANCE_MAX_STREAMS:
        raise ValueError(
            f"{len(out)} Binance streams for {len(set(assets))} assets: one connection takes "
            f"at most {BINANCE_MAX_STREAMS}"
        )
    return out


async def binance_feed(ctx: FeedContext) -> None:
    """Every configured asset's trades and best bid/ask on ONE combined-stream connection; a
    hot reload that adds or drops an asset changes the streams on the open socket (SUBSCRIBE /
    UNSUBSCRIBE, paced under Binance's 5 messages a second)."""
    base = ctx.urls["BINANCE_WS_URL"].rstrip("/")
    core, o = ctx.core, ctx.opts

    def url_fn() -> str | None:
        streams = binance_streams(core.assets)
        return f"{base}/stream?streams={'/'.join(streams)}" if streams else None

    async def session(ws: ClientConnection) -> str:
        live = DataLiveness("binance", o.binance_silence_ms / 1000)
        dead: list[str] = []
        wd = asyncio.create_task(_watchdog(ws, live, dead.append))
        subscribed = set(binance_streams(core.assets))
        sub = asyncio.create_task(_binance_subscriptions(ctx, ws, subscribed))
        opened = time.monotonic()
        try:
            async for frame in ws:
                live.frame()
                events = ctx.take("binance", "binance", frame, parse_binance)
                if events is None:
                    continue
                if any(isinstance(e, BtcTrade | BtcQuote) for e in events):
                    live.data()
                if any(isinstance(e, ServerShutdown) for e in events):
                    ctx.log("binance_server_shutdown", feed="binance")
                    return "planned"
                if time.monotonic() - opened > o.binance_max_conn_s:
                    ctx.log("binance_planned_reconnect", feed="binance")
                    return "planned"
        except websockets.ConnectionClosed:
            if not dead:
                raise
        finally:
            wd.cancel()
            sub.cancel()
        return f"silent: {dead[0]}, replaced" if dead else "closed by venue"

    # The streams are in the URL; only a change of assets is ever sent, paced, so the 5 msg/s
    # client limit is kept with the library's pongs; no client pings: the server pings us.
    await _run_socket(ctx, "binance", url_fn, session, ping_interval=None)


async def _binance_subscriptions(
    ctx: FeedContext, ws: ClientConnection, subscribed: set[str]
) -> None:
    """Follow the configured assets on an open Binance socket: one UNSUBSCRIBE and/or one
    SUBSCRIBE per change, never two messages within BINANCE_MIN_SEND_INTERVAL_S."""
    last_sent = 0.0
    request_id = 0
    try:
        while True:
            await asyncio.sleep(0.1)
            try:
                wanted = set(binance_streams(ctx.core.assets))
            except ValueError as e:
                ctx.fault("binance", "binance_too_many_streams", error=str(e))
                continue
            for method, streams in (
                ("UNSUBSCRIBE", sorted(subscribed - wanted)),
                ("SUBSCRIBE", sorted(wanted - subscribed)),
            ):
                if not streams:
                    continue
                wait = last_sent + BINANCE_MIN_SEND_INTERVAL_S - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                request_id += 1
                await ws.send(_json({"method": method, "params": streams, "id": request_id}))
                last_sent = time.monotonic()
                if method == "SUBSCRIBE":
                    subscribed.update(streams)
                else:
                    subscribed.difference_update(streams)
                ctx.log("binance_" + method.lower(), feed="binance", streams=streams)
    except websockets.ConnectionClosed:
        pass  # the read loop sees it too and reconnects


# --- Polymarket CLOB market channel -------------------------------------------------------------
def clob_subscribe(asset_ids: list[str]) -> str:
    """The market channel's runtime subscribe frame for `asset_ids` (token ids): with
    `custom_feature_enabled` every time, as the first frame has it. The venue applies the flag
    of every subscribe update, before its "duplicate assets" check (Polymarket/py-sdk
    `_internal/streams/clob/market_protocol.py` `build_subscribe_update` always sends it: "CLOB
    applies custom_feature_enabled before its 'duplicate assets' reject, so re-naming any active
    asset toggles the flag in place"; docs.polymarket.com developers/CLOB/websocket/wss-overview
    lists it on subscribe/unsubscribe updates): an update without it could turn off
    best_bid_ask, new_market and market_resolved for the whole socket. Unsubscribe frames carry no flag (as
    py-sdk `build_unsubscribe_update`)."""
    return _json(
        {"operation": "subscribe", "assets_ids": asset_ids, "custom_feature_enabled": True}
    )


async def clob_feed(ctx: FeedContext) -> None:
    base = ctx.urls["POLYMARKET_WS_URL"].rstrip("/")
    url = f"{base}/market"
    core, o = ctx.core, ctx.opts

    def url_fn() -> str | None:
        return url if core.wanted_assets() else None

    async def session(ws: ClientConnection) -> str:
        subscribed = set(core.wanted_assets())
        # after a (re)connect nothing is trusted until the venue's snapshot of each asset
        core.books.unsync()
        await ws.send(
            _json(
                {
                    "assets_ids": sorted(subscribed),
                    "type": "market",
                    "custom_feature_enabled": True,
                }
            )
        )
        ctx.log("clob_subscribed", feed="clob", assets=sorted(subscribed))
        live = DataLiveness("clob", o.clob_silence_ms / 1000, o.clob_pong_timeout_ms / 1000)
        dead: list[str] = []

        async def manage() -> None:
            try:
                await _manage()
            except websockets.ConnectionClosed:
                pass  # the read loop sees it too and reconnects

        async def _manage() -> None:
            next_ping = time.monotonic() + o.clob_ping_ms / 1000
            while True:
                await asyncio.sleep(0.05)
                t = time.monotonic()
                why = live.verdict()
                if why:
                    dead.append(why)
                    ws.transport.abort()
                    return
                if t >= next_ping:
                    await ws.send("PING")
                    next_ping = t + o.clob_ping_ms / 1000
                wanted = core.wanted_assets()
                add, drop = sorted(wanted - subscribed), sorted(subscribed - wanted)
                if add:
                    core.books.unsync(add)
                    await ws.send(clob_subscribe(add))
                    subscribed.update(add)
                    ctx.log("clob_subscribe", feed="clob", assets=add)
                if drop:
                    await ws.send(_json({"operation": "unsubscribe", "assets_ids": drop}))
                    subscribed.difference_update(drop)
                    ctx.log("clob_unsubscribe", feed="clob", assets=drop)
                n = now_ns()
                resync = core.books.needing_resync(n, o.resync_after_ms * 1_000_000)
                if resync:
                    # ask for a fresh snapshot on the open socket: unsubscribe + subscribe
                    core.books.resync_requested(resync, n)
                    await ws.send(_json({"operation": "unsubscribe", "assets_ids": resync}))
                    await ws.send(clob_subscribe(resync))
                    ctx.log("clob_resync", feed="clob", assets=resync)

        mgr = asyncio.create_task(manage())
        try:
            async for frame in ws:
                live.frame()  # any frame (a PONG too) proves the connection is up...
                events = ctx.take("clob", "clob", frame, parse_clob)
                if events and any(is_clob_data(e) for e in events):
                    live.data()  # ...only data proves the feed is
        except websockets.ConnectionClosed:
            if not dead:
                raise
        finally:
            mgr.cancel()
        return f"dead: {dead[0]}, replaced" if dead else "closed by venue"

    await _run_socket(ctx, "clob", url_fn, session, ping_interval=None)


# --- RTDS price feed ----------------------------------------------------------------------------
async def rtds_feed(ctx: FeedContext) -> None:
    url = ctx.urls["PRICE_FEED_WS_URL"]
    o = ctx.opts

    async def session(ws: ClientConnection) -> str:
        await ws.send(
            _json(
                {
                    "action": "subscribe",
                    "subscriptions": [{"topic": t, "type": "*"} for t in RTDS_TOPICS],
                }
            )
        )
        live = DataLiveness("price_feed", o.rtds_silence_ms / 1000)
        dead: list[str] = []
        wd = asyncio.create_task(_watchdog(ws, live, dead.append))

        async def pinger() -> None:
            try:
                while True:
                    await asyncio.sleep(o.rtds_ping_ms / 1000)
                    await ws.send("PING")
            except websockets.ConnectionClosed:
                pass

        pg = asyncio.create_task(pinger())
        try:
            async for frame in ws:
                live.frame()
                events = ctx.take("rtds", "price_feed", frame, parse_rtds)
                if events and any(isinstance(e, PriceFeedTick) for e in events):
                    live.data()  # a PONG answers our PING; only a price tick is data
        except websockets.ConnectionClosed:
            if not dead:
                raise
        finally:
            wd.cancel()
            pg.cancel()
        return f"silent: {dead[0]}, replaced" if dead else "closed by venue"

    await _run_socket(ctx, "price_feed", lambda: url, session, ping_interval=None)


# --- Gamma discovery ----------------------------------------------------------------------------
@dataclass
class _SlugState:
    due: float = 0.0
    backoff: Backoff | None = None
    known: bool = False


async def gamma_discovery(ctx: FeedContext) -> None:
    base = ctx.urls["GAMMA_API_URL"].rstrip("/")
    core, o = ctx.core, ctx.opts
    h = core.feed("gamma")
    state: dict[str, _SlugState] = {}
    async with httpx.AsyncClient(
        timeout=o.gamma_timeout_ms / 1000, trust_env=not _loopback(base)
    ) as client:
        while not ctx.stop.is_set():
            t = time.monotonic()
            n = now_ns()
            wanted = core.wanted(n)
            for slug in list(state):
                if slug not in wanted and slug != SEARCH:
                    del state[slug]
            if core.searched_series():
                st = state.setdefault(SEARCH, _SlugState())
                if t >= st.due:
                    ok = await _gamma_search(ctx, client, base)
                    t = time.monotonic()
                    st.due = t + (o.gamma_refresh_ms if ok else o.gamma_retry_max_ms) / 1000
            for slug, spec in wanted.items():
                st = state.setdefault(slug, _SlugState())
                if t < st.due:
                    continue
                ok, retry = await _gamma_once(ctx, client, base, slug, spec)
                t = time.monotonic()
                if ok:
                    st.known = True
                    st.backoff = None
                    w = core.windows.get(slug)
                    started = w is not None and w.info.window_start_ns <= now_ns()
                    # priceToBeat shows up about a minute late: look more often until it does
                    need_ptb = started and w is not None and w.info.price_to_beat is None
                    st.due = t + (
                        min(2.0, o.gamma_refresh_ms / 1000)
                        if need_ptb
                        else o.gamma_refresh_ms / 1000
                    )
                else:
                    if st.backoff is None:
                        st.backoff = Backoff(
                            min(0.25, o.backoff_base_ms / 1000), o.gamma_retry_max_ms / 1000
                        )
                    st.due = t + (st.backoff.next() if retry else o.gamma_retry_max_ms / 1000)
            if await ctx.sleep(0.05):
                return
    h.connected = False


SEARCH = "?search"  # the state key of the Gamma event-list search
SEARCH_TAG = "up-or-down"  # the tag of every crypto Up/Down event (gamma_event_* fixtures)
SEARCH_LIMIT = 500


async def _gamma_search(ctx: FeedContext, client: httpx.AsyncClient, base: str) -> bool:
    """Find the markets of the series whose slugs are not built from the clock (1h, 4h, 1d):
    Gamma's open events tagged `up-or-down` (`/events?tag_slug=up-or-down&closed=false`),
    each matched to a configured series by its own `cryptoMarketConfig` (asset, duration) or
    `series[].recurrence` and title; the current and next window of each are stepped in as
    discovered markets. False on an error (counted, retried later)."""
    core = ctx.core
    h = core.feed("gamma")
    params = {"tag_slug": SEARCH_TAG, "closed": "false", "limit": str(SEARCH_LIMIT)}
    try:
        r = await client.get(f"{base}/events", params=params)
    except httpx.HTTPError as e:
        h.connected = False
        ctx.fault("gamma", "gamma_transport_error", search=SEARCH_TAG, error=repr(e)[:200])
        return False
    ts = now_ns()
    h.connected = True
    if ctx.capture is not None:
        ctx.capture.write(ts, "gamma", r.text)
    if r.status_code != 200:
        ctx.fault("gamma", "gamma_search_error", status=r.status_code)
        return False
    try:
        docs = msgspec.json.decode(r.content)
    except msgspec.DecodeError as e:
        h.parse_errors += 1
        ctx.fault("gamma", "parse_error", search=SEARCH_TAG, error=str(e)[:200])
        return False
    if not isinstance(docs, list):
        h.parse_errors += 1
        return False
    series = {(m.asset, m.window): m for m in core.searched_series()}
    found = 0
    for doc in docs:
        if not isinstance(doc, dict):
            continue
        key = event_series(doc)
        spec = series.get(key) if key else None
        if spec is None:
            continue
        try:
            info = parse_gamma(doc, ts)
        except ParseError as e:
            h.parse_errors += 1
            ctx.fault("gamma", "parse_error", slug=str(doc.get("slug"))[:100], error=str(e))
            continue
        info = msgspec.structs.replace(info, asset=spec.asset, window=spec.window)
        if core.needs(spec, info, now_ns()):
            found += 1
            ctx.publish(core.step(info, ts))
    h.seen(ts, data=True)
    h.detail = (
        "" if found else f"no open market of {', '.join(sorted(m.key for m in series.values()))}"
    )
    return True


_RECURRENCE = {"hourly": "1h", "daily": "1d"}
_NAMES = {"bitcoin": "btc", "ethereum": "eth", "solana": "sol", "xrp": "xrp"}


def event_series(doc: dict[str, Any]) -> tuple[str, str] | None:
    """(asset, window) of a Gamma Up/Down event from its own fields: a market's
    `cryptoMarketConfig` {asset, duration}, else `series[0].recurrence` with the asset from the
    series slug or the title ("Bitcoin Up or Down ..."); None when it does not say."""
    markets = doc.get("markets") if isinstance(doc.get("markets"), list) else []
    for m in markets:
        cmc = m.get("cryptoMarketConfig") if isinstance(m, dict) else None
        if isinstance(cmc, dict) and cmc.get("asset") and cmc.get("duration"):
            return str(cmc["asset"]).lower(), str(cmc["duration"]).lower()
    ser = doc.get("series")
    first = ser[0] if isinstance(ser, list) and ser and isinstance(ser[0], dict) else {}
    rec = str(first.get("recurrence") or "").lower()
    window = _RECURRENCE.get(rec, rec)
    head = str(first.get("slug") or doc.get("seriesSlug") or doc.get("title") or "").lower()
    word = head.replace(" ", "-").split("-", 1)[0]
    asset = _NAMES.get(word, word)
    return (asset, window) if asset and window else None


async def _gamma_once(
    ctx: FeedContext,
    client: httpx.AsyncClient,
    base: str,
    slug: str,
    spec: MarketSpec | None = None,
) -> tuple[bool, bool]:
    """One lookup of `slug` (of the series `spec`): (found, retry soon)."""
    h = ctx.core.feed("gamma")
    try:
        r = await client.get(f"{base}/events", params={"slug": slug})
    except httpx.HTTPError as e:
        h.connected = False
        h.detail = f"transport: {e!r}"[:200]
        ctx.fault("gamma", "gamma_transport_error", slug=slug, error=repr(e)[:200])
        return False, True
    ts = now_ns()
    h.connected = True
    if ctx.capture is not None:
        ctx.capture.write(ts, "gamma", r.text)
    if r.status_code >= 500:
        ctx.core._count("gamma_5xx")
        h.detail = f"HTTP {r.status_code}"
        ctx.fault("gamma", "gamma_server_error", slug=slug, status=r.status_code)
        return False, True
    if r.status_code == 404:
        h.detail = f"{slug} not listed yet"
        return False, True
    if r.status_code >= 400:
        h.detail = f"HTTP {r.status_code}"
        ctx.fault("gamma", "gamma_client_error", slug=slug, status=r.status_code, body=r.text[:200])
        return False, False
    try:
        info = parse_gamma(r.content, ts, slug)
    except ParseError as e:
        if "empty answer" in str(e):
            ctx.core._count("gamma_empty")
            h.detail = f"{slug} not listed yet"
            h.seen(ts, data=True)  # the API answered: it is alive, the market is not there
            return False, True
        h.parse_errors += 1
        ctx.fault("gamma", "parse_error", slug=slug, error=str(e))
        return False, True
    if info.slug != slug:
        ctx.fault("gamma", "gamma_wrong_slug", slug=slug, got=info.slug)
        return False, True
    if spec is not None:
        info = msgspec.structs.replace(info, asset=spec.asset, window=spec.window)
    h.detail = ""
    ctx.publish(ctx.core.step(info, ts))
    return True, False


# --- resolution from REST ----------------------------------------------------------------------
REST_RESOLUTION_SOURCES = ("gamma", "clob_rest")


async def resolution_poller(ctx: FeedContext) -> None:
    """After a window ends, ask the REST truth until one source says resolved: Gamma
    `/markets/slug/{slug}` (closed, umaResolutionStatus, outcomePrices) and CLOB
    `/markets/{condition_id}` (`tokens[].winner`), PROTOCOLS.md section 7. The market channel's
    `market_resolved` can be missed (rs-clob-client #226), so it is one source among three;
    the core publishes the first and checks the others against it. Per market, polls back off
    from `resolve_poll_base_ms` to `resolve_poll_max_ms`; after resolution the REST sources that
    have not spoken are asked for `resolve_confirm_s` more, so a disagreement is seen."""
    core, o = ctx.core, ctx.opts
    gamma = ctx.urls["GAMMA_API_URL"].rstrip("/")
    clob = ctx.urls["CLOB_API_URL"].rstrip("/")
    rng = random.Random()
    async with httpx.AsyncClient(
        timeout=o.resolve_timeout_ms / 1000, trust_env=not (_loopback(gamma) and _loopback(clob))
    ) as client:
        while not ctx.stop.is_set():
            n = now_ns()
            # windows where strategy holds a position awaiting resolution that discovery never
            # found (ended while ingest was down): their terms from Gamma, then polled as ours
            for slug in core.lookups_due(n):
                info = await _held_lookup(ctx, client, gamma, slug)
                if info is None:
                    core.lookup_failed(
                        slug, now_ns(), o.resolve_poll_base_ms, o.resolve_poll_max_ms
                    )
                else:
                    core.adopt(info, now_ns())
                    ctx.log("held_window_adopted", slug=slug, condition_id=info.condition_id)
            for w in list(core.windows.values()):
                end = w.info.window_end_ns
                if end > n or n < w.poll_due_ns:
                    continue
                todo = [s for s in REST_RESOLUTION_SOURCES if s not in w.resolved_by]
                if not todo or (w.resolved and n > end + o.resolve_confirm_s * 1_000_000_000):
                    continue
                if w.poll_due_ns == 0:  # first look at this market: wait the base delay
                    w.poll_due_ns = end + o.resolve_poll_base_ms * 1_000_000
                    if n < w.poll_due_ns:
                        continue
                results = await asyncio.gather(
                    *(_resolution_once(ctx, client, gamma, clob, w.info, s) for s in todo)
                )
                n = now_ns()
                for rr in results:
                    if rr is not None:
                        ctx.publish(core.step(rr, n))
                w.polls += 1
                delay_ms = min(
                    o.resolve_poll_max_ms, o.resolve_poll_base_ms * 2 ** min(w.polls, 20)
                )
                w.poll_due_ns = n + int(delay_ms * rng.uniform(0.8, 1.0) * 1_000_000)
            for event, level, fields_ in core.drain_alerts():
                ctx.log(event, level, **fields_)
            if await ctx.sleep(0.05):
                return


async def _held_lookup(
    ctx: FeedContext, client: httpx.AsyncClient, gamma: str, slug: str
) -> MarketInfo | None:
    """A held window's market document, `GET {gamma}/markets/slug/{slug}` (the venue keeps closed
    markets there: the resolution poll reads the same document); None when the answer is not
    there or not a market (counted and logged as a resolution fault)."""
    try:
        r = await client.get(f"{gamma}/markets/slug/{slug}")
    except httpx.HTTPError as e:
        ctx.fault("resolution", "held_lookup_transport_error", slug=slug, error=repr(e)[:200])
        return None
    if r.status_code != 200:
        ctx.fault("resolution", "held_lookup_http_error", slug=slug, status=r.status_code)
        return None
    try:
        info = parse_gamma(r.content, now_ns(), slug)
    except ParseError as e:
        ctx.fault("resolution", "held_lookup_parse_error", slug=slug, error=str(e))
        return None
    if info.slug != slug:
        ctx.fault("resolution", "held_lookup_wrong_slug", slug=slug, got=info.slug)
        return None
    return info


async def _resolution_once(
    ctx: FeedContext,
    client: httpx.AsyncClient,
    gamma: str,
    clob: str,
    info: Any,
    source: str,
) -> RestResolution | None:
    """One REST look at one market; None on a transport error, HTTP error or garbage (counted)."""
    if source == "gamma":
        url = f"{gamma}/markets/slug/{info.slug}"
    else:
        if not info.condition_id:
            return None
        url = f"{clob}/markets/{info.condition_id}"
    try:
        r = await client.get(url)
    except httpx.HTTPError as e:
        ctx.core._count(f"resolution_poll_errors_{source}")
        ctx.fault(
            "resolution", "resolution_poll_transport_error", source=source, error=repr(e)[:200]
        )
        return None
    ts = now_ns()
    if ctx.capture is not None:
        ctx.capture.write(ts, f"resolution:{source}", r.text)
    if r.status_code != 200:
        ctx.core._count(f"resolution_poll_errors_{source}")
        if source == "gamma":  # the same API discovery reads: its faults count the same way
            ctx.core._count("gamma_5xx" if r.status_code >= 500 else "gamma_empty")
        ctx.fault("resolution", "resolution_poll_http_error", source=source, status=r.status_code)
        return None
    try:
        if source == "gamma":
            return parse_gamma_resolution(r.content, ts, info.slug)
        return parse_clob_market_resolution(r.content, ts)
    except ParseError as e:
        ctx.core._count(f"resolution_poll_errors_{source}")
        ctx.fault("resolution", "parse_error", source=source, error=str(e))
        return None


def _json(obj: Any) -> str:
    return msgspec.json.encode(obj).decode()
