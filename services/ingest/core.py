"""Ingest's transport-free core: turns parsed venue events into bus messages, owns the books, the
market windows (current / next / past, rollover, price to beat and its source), per-feed health
with the stale flag, clock ticks and the end-to-end probe.

Every method takes the time from its caller (`now_ns`) and returns `[(topic, msg)]` to publish;
the runner owns sockets and the wall clock. The same core can be fed a capture for a backtest.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgspec

from common import topics
from common.clock import CLOCK_TICK_INTERVAL_NS
from common.config import MarketSpec, market_specs, scaled_window_s
from common.core import Core, Out, Timer
from common.schema import (
    BookSnapshot,
    BtcQuote,
    BtcTrade,
    ClockTick,
    FeedStatus,
    Heartbeat,
    MarketInfo,
    MarketResolved,
    PriceFeedTick,
    Probe,
    RiskState,
)
from services.ingest.basis import DEFAULT_BOUND_USD, BasisMeter
from services.ingest.book import BookSet
from services.ingest.parsers import (
    BestBidAsk,
    BookDelta,
    MarketResolvedRaw,
    Pong,
    RestResolution,
    ServerShutdown,
    TickSizeChange,
    VenueNotice,
)

S = 1_000_000_000
PROBE_INTERVAL_NS = 1_000_000_000
STATUS_INTERVAL_NS = 1_000_000_000  # FeedStatus per feed at least this often
REPUBLISH_INTERVAL_NS = 1_000_000_000  # books and market info again, for late subscribers
# a settlement-feed value this old at the window start is still the one in force: Chainlink ticks
# ~1/s, 1-2 s late and sometimes seconds apart (PROTOCOLS.md 5, 7); a gap around the start must
# not push the price to beat to another source
PTB_MATCH_NS = 15 * S
HISTORY_NS = 15 * 60 * S  # price history kept for price-to-beat lookups
FEEDS = ("binance", "clob", "gamma", "price_feed")
CLOCK_SLUG_WINDOWS = ("5m", "15m")  # slugs built from the clock; other windows found on Gamma
PTB_FEED_ORDER = ("twap60", "twap30", "chainlink", "binance")  # after gamma, best first
PTB_SETTLE_NS = 30 * S
# a window strategy still names as awaiting this long after its resolution went out was missed
RESEND_RESOLVED_NS = 5 * S  # after this long past the start, the price-to-beat source is frozen


@dataclass
class FeedHealth:
    """Liveness of one feed, as published on md.status.<feed>."""

    name: str
    stale_after_ns: int
    enabled: bool = True
    connected: bool = False
    last_msg_ns: int = 0  # any frame, keep-alives included
    last_data_ns: int = 0  # a frame that carried data: what staleness is judged by
    reconnects: int = 0
    parse_errors: int = 0
    unknown_events: int = 0
    messages: int = 0
    detail: str = ""
    _last_flags: tuple[bool, bool, int] | None = None
    _next_status_ns: int = 0

    def seen(self, now_ns: int, data: bool = False) -> None:
        """A frame arrived; `data` when it carried data (not a PONG, notice or garbage)."""
        self.last_msg_ns = now_ns
        self.messages += 1
        if data:
            self.last_data_ns = now_ns

    def stale(self, now_ns: int) -> bool:
        """By the age of the last DATA message: a socket answering only keep-alives is stale."""
        return (
            not self.enabled
            or not self.connected
            or self.last_data_ns == 0
            or now_ns - self.last_data_ns > self.stale_after_ns
        )

    def status(self, now_ns: int) -> FeedStatus:
        return FeedStatus(
            feed=self.name,
            connected=self.connected,
            stale=self.stale(now_ns),
            ts_ns=now_ns,
            last_msg_age_ms=(now_ns - self.last_msg_ns) / 1e6 if self.last_msg_ns else -1.0,
            last_data_age_ms=(now_ns - self.last_data_ns) / 1e6 if self.last_data_ns else -1.0,
            reconnects=self.reconnects,
            parse_errors=self.parse_errors,
            detail=self.detail if self.enabled else (self.detail or "disabled"),
        )


@dataclass
class Window:
    """One discovered market window and what ingest has published about it."""

    info: MarketInfo
    role: str = ""
    published: MarketInfo | None = None
    resolved: bool = False
    released: bool = False
    outcome: str = ""  # "Up" | "Down" once resolved
    resolved_by: dict[str, str] = field(default_factory=dict)  # source -> outcome it stated
    poll_due_ns: int = 0  # next REST resolution poll (ingest's resolution poller)
    polls: int = 0
    adopted: bool = False  # learnt from a held position, not from discovery (`adopt`)
    resolution: MarketResolved | None = None  # what was published, said again if still held
    resent_ns: int = 0  # when `resolution` was last published
    feed_ptb: tuple[float, str, int] | None = None  # (price at start, source, rank) from a feed


@dataclass
class _History:
    points: deque[tuple[int, float]] = field(default_factory=deque)

    def add(self, ts_ns: int, value: float) -> None:
        if self.points and ts_ns < self.points[-1][0]:
            return  # out of order: keep the history monotonic for the lookup
        self.points.append((ts_ns, value))
        while self.points and ts_ns - self.points[0][0] > HISTORY_NS:
            self.points.popleft()

    def at(self, t_ns: int) -> float | None:
        """Value in force at `t_ns`: the last point at or before it, once a later point proves
        nothing else came in between; None when the history does not cover `t_ns`."""
        if not self.points or self.points[-1][0] < t_ns:
            return None
        best: float | None = None
        for ts, v in reversed(self.points):
            if ts <= t_ns:
                if t_ns - ts <= PTB_MATCH_NS:
                    best = v
                break
        return best


class VenueEvents(NamedTuple):
    """What one venue frame parsed into (services/ingest/parsers.py), as `step`'s input: `feed`
    is "binance", "clob" or "price_feed"; a Gamma market document is stepped as `MarketInfo`."""

    feed: str
    events: list[Any]


class IngestCore(Core):
    """Parsed venue events and the runner's `Timer` in; md.* and probe messages out."""

    def __init__(
        self,
        stale_after_ms: int = 3000,
        gamma_stale_after_ms: int = 30_000,
        release_grace_ns: int = 0,
        price_feed_enabled: bool = True,
        price_feed_stale_after_ms: int = 0,
        basis_bound_usd: float = DEFAULT_BOUND_USD,
    ) -> None:
        super().__init__()
        self._next_tick = 0
        self._next_probe = 0
        self._probe_id = 0
        self._next_republish = 0
        self.books = BookSet()
        self.windows: dict[str, Window] = {}
        self.release_grace_ns = release_grace_ns
        stale_ns = stale_after_ms * 1_000_000
        self.health: dict[str, FeedHealth] = {
            "binance": FeedHealth("binance", stale_ns),
            "clob": FeedHealth("clob", stale_ns),
            "gamma": FeedHealth("gamma", gamma_stale_after_ms * 1_000_000),
            # the price feed's own cadence: ~1 tick/s with gaps of several seconds (PROTOCOLS.md
            # sections 5, 7), so its data is stale only past its own bound (0: the common one)
            "price_feed": FeedHealth(
                "price_feed",
                max(stale_ns, price_feed_stale_after_ms * 1_000_000),
                enabled=price_feed_enabled,
            ),
        }
        self._hist: dict[tuple[str, str], _History] = {}  # (source, asset) -> values
        self.last_trade: BtcTrade | None = None  # BTC's
        self.last_trades: dict[str, BtcTrade] = {}  # asset -> its last trade
        self.counts: dict[str, int] = {}
        self.alerts: list[tuple[str, str, dict[str, Any]]] = []  # (event, level, fields)
        self.basis_bound_usd = basis_bound_usd
        self.bases: dict[str, BasisMeter] = {}  # asset -> its Binance vs Chainlink meter
        self.now_ns = 0
        self.specs: dict[str, MarketSpec] = {}  # series key -> spec (enabled ones)
        self.window_s: dict[str, int] = {}  # series key -> its window length here, seconds
        self.assets: set[str] = set()
        # Slugs of ended windows where the bot holds a position awaiting resolution: the union of
        # what strategy last said on risk.state (`on_risk_state`) and execution in its heartbeat
        # (`on_heartbeat`), by who said it in `held_by`; and the Gamma look-ups of those ingest
        # does not know: slug -> (next look-up ns, look-ups so far)
        self.held: set[str] = set()
        self.held_by: dict[str, set[str]] = {"strategy": set(), "execution": set()}
        self.lookups: dict[str, tuple[int, int]] = {}
        self.set_markets(market_specs({}))

    # ------------------------------------------------------------------ markets (issue 17)
    def set_markets(self, specs: Iterable[MarketSpec], five_minutes_s: int = 300) -> Out:
        """The markets to follow (the config's `markets`; disabled ones are left out), each
        window `scaled_window_s(spec, five_minutes_s)` long. A series newly named is discovered
        on the next look; one no longer named gets no new window, but the windows already
        known keep their books and resolution until they end and resolve as usual (strategy
        may still hold a position there and exits it). Returns nothing to publish."""
        specs = [m for m in specs if m.enabled]
        self.specs = {m.key: m for m in specs}
        self.window_s = {m.key: scaled_window_s(m, five_minutes_s) for m in specs}
        self.assets = {m.asset for m in specs}
        return []

    def basis_of(self, asset: str) -> BasisMeter:
        b = self.bases.get(asset)
        if b is None:
            b = self.bases[asset] = BasisMeter(self.basis_bound_usd)
        return b

    @property
    def basis(self) -> BasisMeter:
        """BTC's basis meter (the single-market view)."""
        return self.basis_of("btc")

    # ------------------------------------------------------------------ feed health
    def feed(self, name: str) -> FeedHealth:
        return self.health[name]

    def _count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def on_venue_events(self, msg: VenueEvents, now_ns: int) -> Out:
        """One frame's events, received at `now_ns`, folded by the feed's own method."""
        if msg.feed == "clob":
            return self.on_clob(msg.events, now_ns)
        if msg.feed == "binance":
            return self.on_binance(msg.events, now_ns)
        if msg.feed == "price_feed":
            return self.on_price_feed(msg.events, now_ns)
        raise ValueError(f"unknown feed {msg.feed!r}; expected binance, clob or price_feed")

    # ------------------------------------------------------------------ Binance
    def on_binance(self, events: list[Any], now_ns: int) -> Out:
        """Trades and quotes of every configured asset (`asset` from the symbol, parsers.py) on
        `md.<asset>.trade` / `md.<asset>.quote`; another symbol is counted and dropped."""
        out: Out = []
        for ev in events:
            if isinstance(ev, BtcTrade):
                if ev.asset not in self.assets:
                    self._count("binance_other_symbol")
                    continue
                if ev.asset == "btc":
                    self.last_trade = ev
                self.last_trades[ev.asset] = ev
                self._history("binance", ev.asset).add(ev.ts_exchange_ns, ev.price)
                self.basis_of(ev.asset).on_binance(ev.ts_exchange_ns, ev.price)
                out.append((topics.trade_topic(ev.asset), ev))
            elif isinstance(ev, BtcQuote):
                if ev.asset not in self.assets:
                    self._count("binance_other_symbol")
                    continue
                out.append((topics.quote_topic(ev.asset), ev))
            elif isinstance(ev, ServerShutdown):
                self._count("binance_server_shutdown")
            elif isinstance(ev, VenueNotice) and not ev.known:
                self.health["binance"].unknown_events += 1
        self.health["binance"].seen(now_ns, data=bool(out))
        return out

    # ------------------------------------------------------------------ price feed (RTDS)
    def on_price_feed(self, events: list[Any], now_ns: int) -> Out:
        out: Out = []
        for ev in events:
            if isinstance(ev, PriceFeedTick):
                asset = feed_asset(ev.symbol)
                if asset not in self.assets:
                    continue
                if ev.source == "binance":  # RTDS relays Binance: not a resolution source
                    out.append((topics.PRICE_FEED_PREFIX + ev.source, ev))
                    continue
                self._history(ev.source, asset).add(ev.ts_exchange_ns, ev.value)
                out.append((topics.PRICE_FEED_PREFIX + ev.source, ev))
                if ev.source == "chainlink":
                    meter = self.basis_of(asset)
                    warned = meter.warn
                    meter.on_chainlink(ev.ts_exchange_ns, ev.ts_recv_ns, ev.value)
                    if meter.warn != warned:
                        st = meter.state(now_ns, asset)
                        self.alerts.append(
                            (
                                "basis_beyond_bound" if st.warn else "basis_within_bound",
                                "WARNING" if st.warn else "INFO",
                                {
                                    "asset": asset,
                                    "basis_mean_usd": st.basis_mean_usd,
                                    "basis_sd_usd": st.basis_sd_usd,
                                    "bound_usd": st.bound_usd,
                                },
                            )
                        )
            elif isinstance(ev, VenueNotice) and not ev.known:
                self.health["price_feed"].unknown_events += 1
        self.health["price_feed"].seen(now_ns, data=bool(out))
        return out

    def _history(self, source: str, asset: str = "btc") -> _History:
        h = self._hist.get((source, asset))
        if h is None:
            h = self._hist[(source, asset)] = _History()
        return h

    # ------------------------------------------------------------------ CLOB market channel
    def on_clob(self, events: list[Any], now_ns: int) -> Out:
        self.health["clob"].seen(now_ns, data=any(is_clob_data(ev) for ev in events))
        out: Out = []
        for ev in events:
            snap: BookSnapshot | None = None
            if isinstance(ev, BookDelta):
                snap = self.books.on_delta(ev, now_ns)
            elif isinstance(ev, BookSnapshot):
                snap = self.books.on_snapshot(ev)
            elif isinstance(ev, TickSizeChange):
                snap = self.books.on_tick_size(ev.asset_id, ev.new_tick_size, now_ns)
            elif isinstance(ev, BestBidAsk):
                snap = self.books.on_best(ev.asset_id, ev.best_bid, ev.best_ask, now_ns)
            elif isinstance(ev, MarketResolvedRaw):
                out.extend(self._on_resolved(ev, now_ns))
            elif isinstance(ev, Pong):
                pass
            elif isinstance(ev, VenueNotice) and not ev.known:
                self.health["clob"].unknown_events += 1
            if snap is not None:
                out.append((topics.book_topic(snap.asset_id), snap))
        return out

    def _on_resolved(self, ev: MarketResolvedRaw, now_ns: int) -> Out:
        for w in self.windows.values():
            if w.info.condition_id != ev.market:
                continue
            if ev.winning_asset_id and ev.winning_asset_id == w.info.up_token_id:
                outcome = "Up"
            elif ev.winning_asset_id and ev.winning_asset_id == w.info.down_token_id:
                outcome = "Down"
            elif ev.winning_outcome.lower() in ("up", "down"):
                outcome = ev.winning_outcome.capitalize()
            else:
                self._count("resolved_unknown_outcome")
                return []
            return self._resolve(w, outcome, "clob", ev.ts_exchange_ns or now_ns, now_ns)
        return []

    def on_rest_resolution(self, rr: RestResolution, now_ns: int) -> Out:
        """A REST source's answer about a market (Gamma market or CLOB `tokens[].winner`,
        PROTOCOLS.md section 7). Publishes `MarketResolved` if it is the first source to say
        resolved; a later source is checked against the first (see `_resolve`)."""
        w = self._window_of(rr.slug, rr.condition_id)
        if w is None:
            self._count("rest_resolution_unknown_market")
            return []
        self._count(f"rest_resolution_polls_{rr.source}")
        if not rr.outcome:
            return []
        return self._resolve(w, rr.outcome, rr.source, now_ns, now_ns)

    def _window_of(self, slug: str, condition_id: str) -> Window | None:
        w = self.windows.get(slug) if slug else None
        if w is None and condition_id:
            w = next(
                (x for x in self.windows.values() if x.info.condition_id == condition_id), None
            )
        return w

    def _resolve(self, w: Window, outcome: str, source: str, ts_ns: int, now_ns: int) -> Out:
        """The first source to say resolved publishes; every later one is checked against it and
        a disagreement is an error record (`alerts`), never a second `MarketResolved`."""
        if source in w.resolved_by:
            return []  # this source already spoke (the venue repeats itself)
        w.resolved_by[source] = outcome
        if w.resolved:
            if outcome != w.outcome:
                self._count("resolution_disagreements")
                self.alerts.append(
                    (
                        "resolution_disagreement",
                        "ERROR",
                        {
                            "slug": w.info.slug,
                            "condition_id": w.info.condition_id,
                            "published": w.outcome,
                            "published_source": next(iter(w.resolved_by)),
                            "source": source,
                            "stated": outcome,
                        },
                    )
                )
            else:
                self._count(f"resolution_confirmed_by_{source}")
            return []
        w.resolved = True
        w.outcome = outcome
        self._count(f"resolved_by_{source}")
        winner = w.info.up_token_id if outcome == "Up" else w.info.down_token_id
        w.resolution = MarketResolved(
            slug=w.info.slug,
            winning_outcome=outcome,  # type: ignore[arg-type]
            ts_ns=ts_ns,
            winning_asset_id=winner,
            condition_id=w.info.condition_id,
            source=source,
        )
        w.resent_ns = now_ns
        return [(topics.RESOLVED, w.resolution)]

    # ------------------------------------------------------------------ held positions
    # Why risk.state and execution's heartbeat: strategy owns its positions and execution owns the
    # ledger's (DESIGN.md, ownership of state). Strategy publishes `RiskState.awaiting_resolution`,
    # every ended window where it holds a position not settled, on start and at least once a
    # second, and keeps them across its own restarts; execution's heartbeat (every second, from
    # its start) names in `detail["unsettled"]` the ended windows its ledger holds positions in
    # that it has not settled (services/execution/core.py `unsettled`). Both can miss a
    # resolution while down or restarting, each on its own (PUB/SUB drops what nobody reads).
    # Ingest owns resolution, so it listens on the one bus (topics.SUBSCRIPTIONS["ingest"]) and
    # resolves those windows too, rather than reading their stores. Discovery alone finds only
    # the current and next windows: without this, a window that ended while ingest was down (or
    # restarting) would never be resolved and its position never settled (capital at risk
    # stuck), and one that resolved while execution was down never settled in its ledger (its
    # winnings never redeemed).
    def on_risk_state(self, msg: RiskState, now_ns: int) -> Out:
        """Strategy's risk state: its `awaiting_resolution` slugs are windows ingest must
        resolve (`hold`)."""
        return self.hold("strategy", msg.awaiting_resolution, now_ns)

    def on_heartbeat(self, msg: Heartbeat, now_ns: int) -> Out:
        """Execution's heartbeat: the slugs of its `detail["unsettled"]` (a mapping slug ->
        details, or a list of slugs) are windows ingest must resolve (`hold`). Another
        service's heartbeat, or one without that field (an older execution), changes nothing."""
        if msg.service != "execution" or "unsettled" not in msg.detail:
            return []
        unsettled = msg.detail["unsettled"]
        if not isinstance(unsettled, dict | list):
            self._count("bad_unsettled_field")
            return []
        return self.hold("execution", [s for s in unsettled if isinstance(s, str)], now_ns)

    def hold(self, who: str, slugs: Iterable[str], now_ns: int) -> Out:
        """`who` ("strategy" or "execution") holds positions not settled in the windows `slugs`
        (its whole list: a slug it no longer names is no longer held by it). The union of both
        is `held`: a slug ingest does not know is looked up on Gamma (`lookups_due`, `adopt`); a
        held window resolved `RESEND_RESOLVED_NS` ago or more was missed by its holder (it was
        down or restarting): its `MarketResolved` goes out again, the same message (settling is
        idempotent by slug in strategy and execution), at most once per `RESEND_RESOLVED_NS`."""
        self.held_by[who] = set(slugs)
        held = set().union(*self.held_by.values())
        if held != self.held:
            self.held = held
            for slug in [s for s in self.lookups if s not in held]:
                del self.lookups[slug]
        out: Out = []
        for slug in sorted(self.held_by[who]):
            w = self.windows.get(slug)
            if w is None or w.resolution is None or now_ns - w.resent_ns < RESEND_RESOLVED_NS:
                continue
            w.resent_ns = now_ns
            self._count("resolution_resent")
            self._count(f"resolution_resent_for_{who}")
            out.append((topics.RESOLVED, w.resolution))
        return out

    def lookups_due(self, now_ns: int) -> list[str]:
        """Held slugs ingest knows no window of, whose Gamma look-up is due at `now_ns`."""
        return [
            s
            for s in sorted(self.held)
            if s not in self.windows and self.lookups.get(s, (0, 0))[0] <= now_ns
        ]

    def lookup_failed(self, slug: str, now_ns: int, base_ms: int, max_ms: int) -> None:
        """A look-up of a held slug found nothing: the next one after a delay doubling from
        `base_ms` up to `max_ms` (milliseconds), as the resolution polls back off."""
        tries = self.lookups.get(slug, (0, 0))[1] + 1
        self.lookups[slug] = (
            now_ns + min(max_ms, base_ms * 2 ** min(tries, 20)) * 1_000_000,
            tries,
        )
        self._count("held_lookup_misses")

    def adopt(self, info: MarketInfo, now_ns: int) -> Window:
        """A held window's market document (Gamma, by slug): kept for resolution only, its books
        not followed and nothing published until it resolves (`on_rest_resolution`). A window
        known already is returned as it is."""
        w = self.windows.get(info.slug)
        if w is None:
            w = self.windows[info.slug] = Window(info, role="past", released=True, adopted=True)
            self.lookups.pop(info.slug, None)
            self._count("held_windows_adopted")
        return w

    def awaiting_resolution(self, now_ns: int) -> list[Window]:
        """Windows that ended and that no source has called resolved yet."""
        return [
            w for w in self.windows.values() if w.info.window_end_ns <= now_ns and not w.resolved
        ]

    def drain_alerts(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(event, level, fields) records for the runner's logs: resolution disagreements
        (ERROR), the basis going beyond its bound (WARNING) and back."""
        out, self.alerts = self.alerts, []
        return out

    # ------------------------------------------------------------------ Gamma discovery
    def on_market_info(self, info: MarketInfo, now_ns: int) -> Out:
        """A market document from discovery (role is decided here, by the clock, per series:
        `info.asset`/`info.window`). A market of a series not configured is dropped."""
        self.health["gamma"].seen(now_ns, data=True)
        if self.specs and info.series not in self.specs:
            self._count("gamma_unconfigured_series")
            return []
        w = self.windows.get(info.slug)
        if w is None:
            self.windows[info.slug] = w = Window(info)
        else:
            w.info = info
        if not w.released:
            for token in (info.up_token_id, info.down_token_id):
                self.books.follow(token, info.tick_size)
        return self._roll(now_ns, force=True, only=info.series)

    def window_length_ns(self, series: str = "btc-5m") -> int | None:
        """From the series' latest discovered market's own times (never a hard-coded 300 s)."""
        ws = [w for w in self.windows.values() if w.info.series == series]
        if not ws:
            return None
        w = max(ws, key=lambda w: w.info.window_start_ns)
        return w.info.window_end_ns - w.info.window_start_ns

    def current(self, now_ns: int, series: str = "") -> MarketInfo | None:
        """The market whose window holds `now_ns` (of `series`; "": of any)."""
        for w in self.windows.values():
            if series and w.info.series != series:
                continue
            if w.info.window_start_ns <= now_ns < w.info.window_end_ns and not w.released:
                return w.info
        return None

    def wanted(self, now_ns: int, default_window_s: int = 0) -> dict[str, MarketSpec]:
        """Slug -> series for every market discovery should look up by slug: the current and
        next window of each configured series whose slugs carry the clock
        (`{asset}-updown-{5m|15m}-{start}`, start a multiple of the window length, PROTOCOLS.md
        section 3). The length is the series' latest market's own, else its configured one
        (`default_window_s` stands for a 5-minute window when given: the sim's shrunk time)."""
        out: dict[str, MarketSpec] = {}
        for key, spec in self.specs.items():
            if spec.window not in CLOCK_SLUG_WINDOWS:
                continue
            cur = self.current(now_ns, key)
            if cur is not None:
                start_s, end_s = cur.window_start_ns // S, cur.window_end_ns // S
            else:
                fallback = (
                    scaled_window_s(spec, default_window_s)
                    if default_window_s
                    else self.window_s[key]
                )
                length = (self.window_length_ns(key) or fallback * S) // S
                start_s = now_ns // S // length * length
                end_s = start_s + length
            for start in (start_s, end_s):
                out[f"{spec.asset}-updown-{spec.window}-{start}"] = spec
        return out

    def wanted_slugs(self, now_ns: int, default_window_s: int = 0) -> list[str]:
        """The slugs of `wanted`, in order."""
        return list(self.wanted(now_ns, default_window_s))

    def searched_series(self) -> list[MarketSpec]:
        """Configured series whose slugs cannot be built from the clock (1h, 4h, 1d): found
        through Gamma's event list (tag `up-or-down`), never guessed."""
        return [m for m in self.specs.values() if m.window not in CLOCK_SLUG_WINDOWS]

    def needs(self, spec: MarketSpec, info: MarketInfo, now_ns: int) -> bool:
        """Whether a searched series' market is one to follow: not ended, and starting before
        the series' next window would (the current and the next)."""
        if info.window_end_ns <= now_ns:
            return False
        length = info.window_end_ns - info.window_start_ns
        return info.window_start_ns <= now_ns + length

    def wanted_assets(self) -> set[str]:
        return set(self.books.books)

    def price_to_beat(self, w: Window, now_ns: int) -> tuple[float | None, str]:
        """Gamma's `priceToBeat`, else the TWAP feed at window start, else Chainlink, else
        Binance. Feed values arrive late (TWAP ~1.5 s), so a better-ranked source replaces a
        worse one for a while after the start; then the choice is frozen."""
        info = w.info
        if info.price_to_beat is not None:
            return info.price_to_beat, "gamma"
        start = info.window_start_ns
        settled = now_ns - start > PTB_SETTLE_NS
        if now_ns >= start and not settled and (w.feed_ptb is None or w.feed_ptb[2] > 0):
            for rank, source in enumerate(PTB_FEED_ORDER):
                if w.feed_ptb is not None and rank >= w.feed_ptb[2]:
                    break
                h = self._hist.get((source, info.asset))
                v = h.at(start) if h is not None else None
                if v is not None:
                    label = "twap" if source.startswith("twap") else source
                    w.feed_ptb = (v, label, rank)
                    break
        if w.feed_ptb is None:
            return None, ""
        return w.feed_ptb[0], w.feed_ptb[1]

    def _roll(self, now_ns: int, force: bool = False, only: str | None = None) -> Out:
        """Assign roles by the clock, series by series; release old tokens, publish what
        changed (`force`: every market again, of the series `only` when given: a Gamma answer
        republishes its own series, not all eight)."""
        out: Out = []
        by_series: dict[str, list[Window]] = {}
        for w in self.windows.values():
            if not w.released:
                by_series.setdefault(w.info.series, []).append(w)
        for key, live in by_series.items():
            out.extend(self._roll_series(live, now_ns, force and (only is None or key == only)))
        # forget long-gone windows so the dict stays small, but never one where strategy or
        # execution still holds a position (`held`): unresolved, it must be polled on; resolved, forgetting it
        # would have it looked up and resolved again while strategy's news is in flight
        for slug in [
            s
            for s, w in self.windows.items()
            if w.released and now_ns - w.info.window_end_ns > HISTORY_NS and s not in self.held
        ]:
            del self.windows[slug]
        return out

    def _roll_series(self, live: list[Window], now_ns: int, force: bool) -> Out:
        out: Out = []
        cur = next(
            (w for w in live if w.info.window_start_ns <= now_ns < w.info.window_end_ns), None
        )
        upcoming = sorted(
            (w for w in live if w.info.window_start_ns > now_ns),
            key=lambda w: w.info.window_start_ns,
        )
        for w in live:
            if w is cur:
                role = "current"
            elif upcoming and w is upcoming[0]:
                role = "next"
            elif w.info.window_end_ns <= now_ns:
                role = "past"
            else:
                role = "next"  # further ahead than next: still listed, still subscribed
            ptb, src = self.price_to_beat(w, now_ns)
            msg = _with(w.info, role, ptb, src, now_ns)
            changed = w.published is None or _differs(w.published, msg)
            if changed or force:
                w.role = role
                w.published = msg
                out.append((topics.MARKET, msg))
            # the old market's tokens go once it resolved (a real one took 54 s: PROTOCOLS.md
            # section 7), or after `release_grace_ns` when set (0: never before resolution)
            if role == "past" and (
                w.resolved
                or (
                    self.release_grace_ns > 0
                    and now_ns >= w.info.window_end_ns + self.release_grace_ns
                )
            ):
                w.released = True
                for token in (w.info.up_token_id, w.info.down_token_id):
                    self.books.release(token)
        return out

    # ------------------------------------------------------------------ timer
    def on_timer(self, msg: Timer, now_ns: int) -> Out:
        """Clock ticks, probes, rolls, book republishing and feed status, due at `now_ns`."""
        self.now_ns = now_ns
        out: Out = []
        if now_ns >= self._next_tick:
            out.append((topics.CLOCK, ClockTick(ts_ns=now_ns)))
            self._next_tick = now_ns + CLOCK_TICK_INTERVAL_NS
        if now_ns >= self._next_probe:
            self._probe_id += 1
            out.append(
                (
                    topics.PROBE_PREFIX + "ingest",
                    Probe(
                        probe_id=self._probe_id,
                        ts_origin_ns=now_ns,
                        hops=["ingest"],
                        hop_ns=[now_ns],
                    ),
                )
            )
            self._next_probe = now_ns + PROBE_INTERVAL_NS
        republish = now_ns >= self._next_republish
        if republish:
            self._next_republish = now_ns + REPUBLISH_INTERVAL_NS
        out.extend(self._roll(now_ns, force=republish))
        if republish:
            for asset, meter in self.bases.items():
                if meter.samples:
                    out.append((topics.BASIS, meter.state(now_ns, asset)))
        if republish:
            for b in self.books.books.values():
                if b.in_sync:  # same book_seq: the same state again, for late subscribers
                    out.append((topics.book_topic(b.asset_id), b.snapshot()))
        for h in self.health.values():
            flags = (h.connected, h.stale(now_ns), h.reconnects)
            if flags != h._last_flags or now_ns >= h._next_status_ns:
                h._last_flags = flags
                h._next_status_ns = now_ns + STATUS_INTERVAL_NS
                out.append((topics.FEED_STATUS_PREFIX + h.name, h.status(now_ns)))
        return out

    def summary(self) -> dict[str, Any]:
        """For the heartbeat detail."""
        return {
            "feeds": {
                n: {
                    "connected": h.connected,
                    "stale": h.stale(self.now_ns),
                    "reconnects": h.reconnects,
                    "parse_errors": h.parse_errors,
                    "unknown": h.unknown_events,
                    "messages": h.messages,
                }
                for n, h in self.health.items()
            },
            "books": len(self.books.books),
            "book_stats": dict(self.books.stats.__dict__),
            "markets": {w.info.slug: w.role for w in self.windows.values() if not w.released},
            "series": sorted(self.specs),
            # ended windows strategy or execution holds a position in: resolved yet (False: still
            # polled), and who holds each
            "held": {s: bool(w and w.resolved) for s in self.held for w in [self.windows.get(s)]},
            "held_by": {who: sorted(slugs) for who, slugs in self.held_by.items()},
            "counts": dict(self.counts),
        }


def feed_asset(symbol: str) -> str:
    """The asset of a price-feed symbol: "eth/usd" (Chainlink), "ethusdt" (RTDS's Binance
    relay), "eth" -> "eth"."""
    sym = symbol.lower()
    return sym.split("/", 1)[0] if "/" in sym else sym.removesuffix("usdt")


def is_clob_data(ev: Any) -> bool:
    """A market-channel event that is data (not a PONG, a subscription answer or garbage)."""
    return not isinstance(ev, _NOT_DATA)


_NOT_DATA = (Pong, VenueNotice)  # a tuple: cheaper to test than a union


def _with(info: MarketInfo, role: str, ptb: float | None, src: str, ts_ns: int) -> MarketInfo:
    return msgspec.structs.replace(
        info, role=role, price_to_beat=ptb, price_to_beat_source=src, ts_recv_ns=ts_ns
    )


def _differs(a: MarketInfo, b: MarketInfo) -> bool:
    """Anything but the stamp changed."""
    return msgspec.structs.replace(a, ts_recv_ns=0) != msgspec.structs.replace(b, ts_recv_ns=0)
