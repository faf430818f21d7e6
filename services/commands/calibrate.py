"""`polyedge calibrate`: the fair-value model (and the market, and their blend) scored against
real outcomes, deterministic.

    polyedge calibrate --markets MARKETS.csv (--prices PATH | --quotes QUOTES.jsonl | both)
                       [--json] [--config FILE] [--set key=value ...]
                       [--fit [--split-day YYYY-MM-DD]]

Inputs (formats of the shared real-data README, also in this repository's README):
- MARKETS.csv: `slug,start_ts,end_ts,price_to_beat,winner,settlement,twap_lookback_s` (unix
  seconds; `price_to_beat` empty = the price path's value at `start_ts`; `winner` Up|Down;
  `settlement` spot|twap; `twap_lookback_s` the TWAP's lookback, 0 for spot).
- a price path (the settlement source's stand-in): a Binance kline file (zip of one csv, or the
  csv; no header; open_time in ms or us, close in column 5) or a CSV `ts_ms,price` (a header line
  is allowed). A kline's close is taken as the price from the end of its second.
- QUOTES.jsonl: `{"slug","ts_ms","btc","up_bid","up_ask"}` a line: BTC and the Up token's best
  bid/ask at one instant of a market.

With a path, every market is evaluated at `HORIZONS_S` seconds before its end, the volatility and
momentum from the path before that instant (fed through the signal's own `BtcFeatures`, as live).
With quotes, at the quotes' instants (`btc` the price; volatility from the path when one is given,
else the model's prior `VOL_PRIOR`), also scoring the market (the Up mid) and the blend. Pricing is
`services.signal.model.market_aware_up`, the live signal's code.

`--fit` splits the markets by UTC day (markets of days before `--split-day` train, the rest test;
default: the day boundary nearest to half the markets), fits on the training markets what the
inputs can identify - with a path the volatility half-life, scale and the momentum horizon and
weight (maximum likelihood); with quotes the blend, which stays the market's own mid unless a
departure passes a stated test on the training markets (`fit_blend`) - and reports on the test
markets. Nothing reads the clock or a random source: the same input gives the same
output.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
import zipfile
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from common.config import (
    ConfigError,
    StrategyConfig,
    StrategyConfigFiles,
    apply_config_sets,
)
from services.signal.model import (
    P_MAX,
    P_MIN,
    RETURN_HORIZONS_S,
    VOL_PRIOR,
    BtcFeatures,
    market_aware_up,
)

HORIZONS_S = (240, 180, 120, 60, 30, 10)
RELIABILITY_BINS = 10
PRICE_MAX_AGE_MS = 5_000  # a path point older than this at an instant is "no price there"
VOL_HALFLIFE_GRID_S = (30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
MARKET_COLUMNS = ("slug", "start_ts", "end_ts", "price_to_beat", "winner", "settlement")


class InputError(Exception):
    """An input file that cannot be used; the message names the file, the line and the problem."""


# --------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class CalMarket:
    """One resolved market: window in unix seconds, price to beat (None = take the path's value
    at the start), `up` the official outcome, `lookback_s` the TWAP lookback (0 = spot)."""

    slug: str
    start_s: int
    end_s: int
    price_to_beat: float | None
    up: bool
    lookback_s: int

    @property
    def day(self) -> str:
        return datetime.fromtimestamp(self.start_s, UTC).strftime("%Y-%m-%d")


@dataclass(frozen=True)
class Quote:
    """The market at one instant: BTC price and the Up token's best bid and ask."""

    slug: str
    ts_ms: int
    btc: float
    up_bid: float
    up_ask: float

    @property
    def mid(self) -> float:
        return (self.up_bid + self.up_ask) / 2.0


def read_markets(path: Path) -> list[CalMarket]:
    """MARKETS.csv -> markets sorted by start. Raises InputError naming the file, line and field."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read: {e}") from None
    rows = csv.DictReader(io.StringIO(text))
    missing = [c for c in MARKET_COLUMNS if c not in (rows.fieldnames or [])]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)} in the header")
    out: list[CalMarket] = []
    for n, r in enumerate(rows, 2):

        def cell(col: str, kind: type, r: dict = r, n: int = n) -> Any:
            raw = (r.get(col) or "").strip()
            try:
                return kind(raw)
            except (TypeError, ValueError):
                what = "a whole number" if kind is int else "a number"
                raise InputError(
                    f"{path}:{n}: column {col}: expected {what}, got {raw!r}"
                ) from None

        start, end = cell("start_ts", int), cell("end_ts", int)
        ptb = cell("price_to_beat", float) if (r["price_to_beat"] or "").strip() else None
        winner = (r["winner"] or "").strip()
        settlement = (r["settlement"] or "").strip()
        lookback = cell("twap_lookback_s", int) if (r.get("twap_lookback_s") or "").strip() else 0
        if ptb is not None and not math.isfinite(ptb):
            raise InputError(f"{path}:{n}: column price_to_beat: expected a number, got {ptb}")
        if winner not in ("Up", "Down"):
            raise InputError(f"{path}:{n}: winner must be Up or Down, got {winner!r}")
        if settlement not in ("spot", "twap"):
            raise InputError(f"{path}:{n}: settlement must be spot or twap, got {settlement!r}")
        if end <= start:
            raise InputError(f"{path}:{n}: end_ts {end} is not after start_ts {start}")
        if ptb is not None and not ptb > 0:
            raise InputError(f"{path}:{n}: price_to_beat must be > 0, got {ptb}")
        if lookback < 0 or (settlement == "twap" and lookback == 0):
            raise InputError(f"{path}:{n}: twap_lookback_s must be > 0 for twap, got {lookback}")
        out.append(
            CalMarket(
                slug=r["slug"],
                start_s=start,
                end_s=end,
                price_to_beat=ptb,
                up=winner == "Up",
                lookback_s=lookback if settlement == "twap" else 0,
            )
        )
    if not out:
        raise InputError(f"{path}: no markets")
    return sorted(out, key=lambda m: (m.start_s, m.slug))


class PricePath:
    """A price path: `ts_ms` ascending and the price from then on."""

    def __init__(self, ts_ms: list[int], px: list[float]) -> None:
        self.ts_ms = ts_ms
        self.px = px

    def at(self, t_ms: int) -> float | None:
        """The price in force at `t_ms` (the last point at or before it, at most
        `PRICE_MAX_AGE_MS` old), None when the path has none."""
        i = bisect_right(self.ts_ms, t_ms)
        if not i or t_ms - self.ts_ms[i - 1] > PRICE_MAX_AGE_MS:
            return None
        return self.px[i - 1]

    def average(self, from_s: int, to_s: int) -> float | None:
        """Mean of the values in force at each whole second from_s..to_s (inclusive): the fixed
        part of a TWAP. None when a second has no value."""
        vals = [self.at(s * 1000) for s in range(from_s, to_s + 1)]
        if not vals or any(v is None for v in vals):
            return None
        return sum(vals) / len(vals)  # type: ignore[arg-type]


def read_prices(path: Path) -> PricePath:
    """A Binance kline file (zip or csv) or a `ts_ms,price` CSV -> PricePath. Raises InputError."""
    try:
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as z:
                names = [n for n in z.namelist() if n.endswith(".csv")]
                if len(names) != 1:
                    raise InputError(f"{path}: expected one .csv inside, found {names}")
                text = z.read(names[0]).decode("utf-8")
        else:
            text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, zipfile.BadZipFile) as e:
        raise InputError(f"{path}: cannot read: {e}") from None
    pts: list[tuple[int, float]] = []
    for n, line in enumerate(text.splitlines(), 1):
        cells = line.strip().split(",")
        if not cells[0]:
            continue
        if n == 1 and not cells[0].strip().isdigit():
            continue  # a header line
        try:
            if len(cells) >= 6:  # Binance kline: open_time, open, high, low, close, ...
                t = int(cells[0])
                t_ms = t // 1000 if t > 10**14 else t  # microseconds since 2025, ms before
                t_ms += 1000  # the close is known at the end of the kline's second
                price = float(cells[4])
            elif len(cells) == 2:
                t_ms, price = int(cells[0]), float(cells[1])
            else:
                raise ValueError(f"expected 2 (ts_ms,price) or 12 (kline) columns: {line!r}")
        except ValueError as e:
            raise InputError(f"{path}:{n}: {e}") from None
        if not price > 0 or not math.isfinite(price):
            raise InputError(f"{path}:{n}: price must be a positive number, got {price}")
        pts.append((t_ms, price))
    if not pts:
        raise InputError(f"{path}: no prices")
    return PricePath([t for t, _ in pts], [p for _, p in pts])


def read_price_paths(paths: list[Path]) -> PricePath:
    """Several path files (or folders of them) as one path, in time order."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(x for x in p.iterdir() if x.suffix in (".zip", ".csv"))
        else:
            files.append(p)
    if not files:
        raise InputError(f"no price files in {', '.join(map(str, paths))}")
    pts: list[tuple[int, float]] = []
    for f in files:
        one = read_prices(f)
        pts += zip(one.ts_ms, one.px, strict=True)
    pts.sort(key=lambda x: x[0])
    return PricePath([t for t, _ in pts], [p for _, p in pts])


def read_quotes(path: Path, markets: dict[str, CalMarket]) -> list[Quote]:
    """QUOTES.jsonl -> quotes of known markets, in time order. Raises InputError naming the line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read: {e}") from None
    out: list[Quote] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            q = msgspec.json.decode(line, type=Quote)
        except msgspec.DecodeError as e:
            raise InputError(f"{path}:{n}: {e}") from None
        if not (0.0 <= q.up_bid <= q.up_ask <= 1.0) or not q.btc > 0:
            raise InputError(f"{path}:{n}: need 0 <= up_bid <= up_ask <= 1 and btc > 0: {line}")
        if q.slug in markets:
            out.append(q)
    if not out:
        raise InputError(f"{path}: no quote belongs to a market of the markets file")
    return sorted(out, key=lambda q: (q.ts_ms, q.slug))


# --------------------------------------------------------------------------- evaluation
@dataclass
class Point:
    """One evaluation: what the model saw at an instant of a market, and the outcome."""

    market: CalMarket
    t_ms: int
    seconds_left: int  # tau rounded to whole seconds: the report's bucket
    tau_s: float  # seconds before the end, exact
    price: float
    price_to_beat: float
    known_avg: float | None
    sigma: float  # estimated (unscaled) volatility, log units per sqrt second
    momentum: dict[int, float] = field(default_factory=dict)  # horizon s -> z-score
    p_market: float | None = None


def path_features(
    path: PricePath, instants_ms: list[int], halflife_s: float, floor: float
) -> dict[int, tuple[float, dict[int, float]]]:
    """Stream the path once through the signal's `BtcFeatures` and read sigma and the momentum
    at every horizon just before each instant (only what was known then)."""
    feats = BtcFeatures(halflife_s, floor)
    out: dict[int, tuple[float, dict[int, float]]] = {}
    wanted = sorted(set(instants_ms))
    i, n = 0, len(path.ts_ms)
    for t in wanted:
        while i < n and path.ts_ms[i] <= t:
            feats.on_trade(path.ts_ms[i] * 1_000_000, path.px[i])
            i += 1
        if feats.last_price is None:
            continue
        out[t] = (feats.sigma, {h: feats.momentum(h) for h in RETURN_HORIZONS_S})
    return out


def build_points(
    markets: list[CalMarket],
    path: PricePath | None,
    quotes: list[Quote] | None,
    cfg: StrategyConfig,
) -> tuple[list[Point], dict[str, int]]:
    """The evaluation points and the count of markets or points skipped, by reason."""
    skipped: dict[str, int] = {}

    def skip(reason: str) -> None:
        skipped[reason] = skipped.get(reason, 0) + 1

    by_slug = {m.slug: m for m in markets}
    raw: list[tuple[CalMarket, int, float, float | None]] = []  # market, t_ms, price, p_market
    if quotes is not None:
        for q in quotes:
            raw.append((by_slug[q.slug], q.ts_ms, q.btc, q.mid))
    else:
        assert path is not None
        for m in markets:
            for h in HORIZONS_S:
                t_ms = (m.end_s - h) * 1000
                if t_ms < m.start_s * 1000:
                    continue
                price = path.at(t_ms)
                if price is None:
                    skip("no_price_at_instant")
                    continue
                raw.append((m, t_ms, price, None))
    feats = (
        path_features(path, [t for _, t, _, _ in raw], cfg.vol_halflife_s, cfg.vol_floor)
        if path is not None
        else {}
    )
    points: list[Point] = []
    for m, t_ms, price, p_market in raw:
        ptb = m.price_to_beat
        if ptb is None and path is not None:
            ptb = path.at(m.start_s * 1000)
        if ptb is None:
            skip("no_price_to_beat")
            continue
        tau = m.end_s - t_ms / 1000.0
        if tau <= 0:
            skip("quote_after_end")
            continue
        known = None
        if m.lookback_s and tau < m.lookback_s and path is not None:
            known = path.average(m.end_s - m.lookback_s + 1, int(t_ms // 1000))
        if path is not None:
            if t_ms not in feats:
                skip("no_path_before_instant")
                continue
            sigma, mom = feats[t_ms]
        else:
            sigma, mom = max(cfg.vol_floor, VOL_PRIOR), {}
        points.append(Point(m, t_ms, round(tau), tau, price, ptb, known, sigma, mom, p_market))
    return points, skipped


def probabilities(p: Point, cfg: StrategyConfig) -> tuple[float, float]:
    """(model, blend) probabilities of Up at a point, by the live signal's pricing code."""
    fair, blend = market_aware_up(
        cfg,
        price=p.price,
        price_to_beat=p.price_to_beat,
        sigma=p.sigma,
        tau_s=p.tau_s,
        lookback_s=p.market.lookback_s,
        known_avg=p.known_avg,
        momentum=p.momentum.get(cfg.momentum_horizon_s, 0.0),
        p_market=p.p_market,
    )
    return fair.p_up, blend


def _clip(p: float) -> float:
    return min(P_MAX, max(P_MIN, p))


def brier(ps: list[float], ys: list[int]) -> float:
    return sum((p - y) ** 2 for p, y in zip(ps, ys, strict=True)) / len(ps)


def log_loss(ps: list[float], ys: list[int]) -> float:
    return -sum(
        math.log(_clip(p)) if y else math.log(1.0 - _clip(p)) for p, y in zip(ps, ys, strict=True)
    ) / len(ps)


def reliability(ps: list[float], ys: list[int], bins: int = RELIABILITY_BINS) -> list[dict]:
    """Calibration table: per probability bin, count, mean predicted, observed frequency of Up."""
    rows = []
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, p in enumerate(ps) if lo <= p < hi or (b == bins - 1 and p == 1.0)]
        if not idx:
            continue
        rows.append(
            {
                "lo": lo,
                "hi": hi,
                "n": len(idx),
                "mean_p": _r(sum(ps[i] for i in idx) / len(idx)),
                "freq_up": _r(sum(ys[i] for i in idx) / len(idx)),
            }
        )
    return rows


def _r(x: float) -> float:
    return round(x, 6)


def report(
    points: list[Point], cfg: StrategyConfig, skipped: dict[str, int] | None = None
) -> dict[str, Any]:
    """The JSON report: overall and per seconds-left Brier and log loss of the model; with
    quotes also the market's mid and the blend, at the same points. InputError without points."""
    if not points:
        why = ", ".join(f"{k}: {v}" for k, v in (skipped or {}).items()) or "none built"
        raise InputError(f"no evaluation points (skipped {why}): do the inputs cover the markets?")
    with_market = all(p.p_market is not None for p in points)
    ys = [int(p.market.up) for p in points]
    model, blend = zip(*(probabilities(p, cfg) for p in points), strict=True)
    market = [p.p_market or 0.0 for p in points]
    doc: dict[str, Any] = {
        "markets": len({p.market.slug for p in points}),
        "brier": _r(brier(list(model), ys)),
        "log_loss": _r(log_loss(list(model), ys)),
    }
    if with_market:
        doc["brier_market"] = _r(brier(market, ys))
        doc["brier_blend"] = _r(brier(list(blend), ys))
        doc["log_loss_market"] = _r(log_loss(market, ys))
        doc["log_loss_blend"] = _r(log_loss(list(blend), ys))
    rows = []
    for s in sorted({p.seconds_left for p in points}, reverse=True):
        idx = [i for i, p in enumerate(points) if p.seconds_left == s]
        y = [ys[i] for i in idx]
        row: dict[str, Any] = {
            "seconds_left": s,
            "n": len(idx),
            "brier": _r(brier([model[i] for i in idx], y)),
            "log_loss": _r(log_loss([model[i] for i in idx], y)),
        }
        if with_market:
            row["brier_market"] = _r(brier([market[i] for i in idx], y))
            row["brier_blend"] = _r(brier([blend[i] for i in idx], y))
            row["log_loss_market"] = _r(log_loss([market[i] for i in idx], y))
            row["log_loss_blend"] = _r(log_loss([blend[i] for i in idx], y))
        rows.append(row)
    doc["points"] = rows
    doc["reliability"] = reliability(list(model), ys)
    if with_market:
        doc["reliability_blend"] = reliability(list(blend), ys)
    return doc


# --------------------------------------------------------------------------- fitting
def split_day(markets: list[CalMarket], day: str | None) -> str:
    """The first test day: `day`, else the day boundary putting closest to half the markets
    before it (ties: more training). Raises InputError when no split leaves both sides."""
    days = sorted({m.day for m in markets})
    if day is not None:
        try:
            ok = len(day) == 10 and datetime.strptime(day, "%Y-%m-%d").strftime("%Y-%m-%d") == day
        except ValueError:
            ok = False
        if not ok:
            raise InputError(f"--split-day {day!r}: not a date (YYYY-MM-DD)")
    if day is None:
        if len(days) < 2:
            raise InputError(f"--fit needs markets of at least two UTC days, got {days}")
        half = len(markets) / 2
        day = min(
            days[1:], key=lambda d: (abs(sum(m.day < d for m in markets) - half), -days.index(d))
        )
    if not days[0] < day <= days[-1]:
        raise InputError(f"--split-day {day} leaves no training or no test day ({days})")
    return day


def _mean_log_loss(points: list[Point], cfg: StrategyConfig, which: int) -> float:
    ys = [int(p.market.up) for p in points]
    return log_loss([probabilities(p, cfg)[which] for p in points], ys)


BLEND_MARKET = (0.0, 1.0, 0.0)  # bias, market weight, model weight: the blend IS the market
# the departures from the market a fit may choose, each with the parameters it frees (bias,
# market weight, model weight); the others stay at BLEND_MARKET
BLEND_FORMS: tuple[tuple[str, tuple[bool, bool, bool]], ...] = (
    ("model", (False, False, True)),  # the market's log-odds plus the model's
    ("recalibrate", (True, True, False)),  # the market's log-odds rescaled; the model unused
    ("both", (True, True, True)),
)
# departure rule, stated before any test day was scored: a form's likelihood-ratio test against
# the market at 1 % family-wise (Bonferroni over the forms), each market counting once
BLEND_ALPHA = 0.01
BLEND_MIN_MARKETS = 10  # fewer training markets with quotes: no test possible, the market stays
BLEND_FOLDS = 20  # cross-validation folds: contiguous blocks of markets in time (one each if fewer)


@dataclass(frozen=True)
class BlendChoice:
    """What `fit_blend` chose: `form` "market" (the blend is the market's mid: no edge) or a
    `BLEND_FORMS` name; `weights` (bias, market weight, model weight); `markets`/`points`
    trained on; `candidates` per form its likelihood-ratio statistic, degrees of freedom and
    p-value against the market, and its cross-validated log loss (nats per point) and gain over
    the market's; `reason` one sentence on why."""

    form: str
    weights: tuple[float, float, float]
    markets: int
    points: int
    candidates: dict[str, dict[str, float]]
    reason: str


def _blend_fit_one(
    xs: Any, ys: Any, ws: Any, free: tuple[bool, bool, bool]
) -> tuple[tuple[float, float, float], float]:
    """Weighted logistic regression y ~ sigmoid(b + wm * x_market + wp * x_model) over the
    `free` parameters (the others fixed at BLEND_MARKET; each within +-5). `xs` (n, 3) rows (1,
    x_market, x_model), `ys` (n,) 0/1, `ws` (n,) weights, numpy arrays. Returns (the weights,
    the weighted log-likelihood at them)."""
    import numpy as np
    from scipy.optimize import minimize

    prior = np.array(BLEND_MARKET)
    mask = np.array(free)

    def f(sub: Any) -> tuple[float, Any]:
        theta = prior.copy()
        theta[mask] = sub
        z = xs @ theta
        nll = float(np.sum(ws * (np.logaddexp(0.0, z) - ys * z)))
        grad = xs.T @ (ws * (1.0 / (1.0 + np.exp(-z)) - ys))
        return nll, grad[mask]

    r = minimize(
        f, prior[mask].copy(), jac=True, method="L-BFGS-B", bounds=[(-5.0, 5.0)] * int(mask.sum())
    )
    theta = prior.copy()
    theta[mask] = r.x
    return (float(theta[0]), float(theta[1]), float(theta[2])), -float(r.fun)


def fit_blend(points: list[Point], cfg: StrategyConfig) -> BlendChoice:
    """Model selection for the blend on training `points` (all with the market's mid), starting
    from the market itself (`BLEND_MARKET`: the strategy then has no edge over the book).

    A market's points share one outcome, so each market counts once: its points' log-likelihoods
    are weighted 1 / (its number of points). Per form of `BLEND_FORMS`, the weighted maximum
    likelihood fit and the likelihood-ratio statistic 2 (ll_form - ll_market), chi-squared with
    as many degrees of freedom as the form frees under "the market is right" (conservative with
    the weighting when the mids are calibrated: later quotes know more than earlier ones). A form
    is eligible when its p-value is below `BLEND_ALPHA` / (number of forms) and it also predicts
    better than the market out of fold (cross-validation over whole markets, contiguous blocks in
    time, at most `BLEND_FOLDS`). The blend departs from the market only to the eligible form
    with the lowest cross-validated log loss; with fewer than `BLEND_MIN_MARKETS` markets it does
    not depart. Deterministic (no random source)."""
    import numpy as np
    from scipy.stats import chi2

    from services.signal.model import logit

    order = sorted({(p.market.start_s, p.market.slug) for p in points})
    index = {s: i for i, (_, s) in enumerate(order)}
    m_count, n = len(order), len(points)
    xs = np.array(
        [[1.0, logit(p.p_market or 0.5), logit(probabilities(p, cfg)[0])] for p in points]
    )
    ys = np.array([float(p.market.up) for p in points])
    market_of = np.array([index[p.market.slug] for p in points])
    ws = 1.0 / np.bincount(market_of, minlength=m_count)[market_of]

    def losses(theta: Any, idx: Any) -> Any:
        q = np.clip(1.0 / (1.0 + np.exp(-(xs[idx] @ np.array(theta)))), P_MIN, P_MAX)
        return -(ys[idx] * np.log(q) + (1.0 - ys[idx]) * np.log(1.0 - q))

    every = np.arange(n)
    base = losses(BLEND_MARKET, every)
    ll_market = -float(np.sum(ws * base))
    if m_count < BLEND_MIN_MARKETS:
        return BlendChoice(
            "market",
            BLEND_MARKET,
            m_count,
            n,
            {},
            f"{m_count} training markets with quotes (< {BLEND_MIN_MARKETS}): no test possible",
        )
    k = min(m_count, BLEND_FOLDS)
    fold = market_of * k // m_count
    level = BLEND_ALPHA / len(BLEND_FORMS)
    candidates: dict[str, dict[str, float]] = {}
    fits: dict[str, tuple[float, float, float]] = {}
    eligible: list[tuple[float, str]] = []
    for form, free in BLEND_FORMS:
        theta, ll = _blend_fit_one(xs, ys, ws, free)
        fits[form] = theta
        lr = max(0.0, 2.0 * (ll - ll_market))
        df = sum(free)
        p_value = float(chi2.sf(lr, df))
        cv = np.empty(n)
        for f in range(k):
            tr, te = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
            cv[te] = losses(_blend_fit_one(xs[tr], ys[tr], ws[tr], free)[0], te)
        gain = float(np.mean(base - cv))
        candidates[form] = {
            "lr": round(lr, 4),
            "df": df,
            "p_value": round(p_value, 6),
            "cv_log_loss": _r(float(np.mean(cv))),
            "cv_gain": _r(gain),
        }
        if p_value < level and gain > 0:
            eligible.append((round(float(np.mean(cv)), 9), form))
    candidates["market"] = {"cv_log_loss": _r(float(np.mean(base)))}
    if not eligible:
        return BlendChoice(
            "market",
            BLEND_MARKET,
            m_count,
            n,
            candidates,
            f"no form beats the market (likelihood ratio at {BLEND_ALPHA:g} over"
            f" {len(BLEND_FORMS)} forms, and out of fold): the blend is the market, no edge",
        )
    form = min(eligible)[1]
    c = candidates[form]
    return BlendChoice(
        form,
        fits[form],
        m_count,
        n,
        candidates,
        f"{form} beats the market: p {c['p_value']} < {level:.4g}, out-of-fold gain"
        f" {c['cv_gain']} nats a point",
    )


def fit(
    markets: list[CalMarket],
    path: PricePath | None,
    quotes: list[Quote] | None,
    cfg: StrategyConfig,
    first_test_day: str,
) -> tuple[StrategyConfig, dict[str, Any]]:
    """Fit on markets before `first_test_day`: with a path the volatility half-life (grid
    `VOL_HALFLIFE_GRID_S`), scale and the momentum horizon (grid `RETURN_HORIZONS_S`) and weight,
    by minimum log loss of the model; with quotes the blend (`fit_blend`: the market itself unless
    a logistic regression on the market's and the model's log-odds passes its test). Returns the
    fitted config and what was fitted."""
    from scipy.optimize import minimize

    train_markets = [m for m in markets if m.day < first_test_day]
    fitted: dict[str, Any] = {}
    if path is not None:
        best: tuple[float, StrategyConfig] | None = None
        for halflife in VOL_HALFLIFE_GRID_S:
            c0 = msgspec.structs.replace(cfg, vol_halflife_s=halflife)
            pts, _ = build_points(train_markets, path, None, c0)
            for horizon in RETURN_HORIZONS_S:
                c1 = msgspec.structs.replace(c0, momentum_horizon_s=horizon)

                def loss(x: Any, c1: StrategyConfig = c1, pts: list[Point] = pts) -> float:
                    c = msgspec.structs.replace(
                        c1, vol_scale=float(math.exp(x[0])), momentum_weight=float(x[1])
                    )
                    return _mean_log_loss(pts, c, 0)

                r = minimize(
                    loss,
                    [0.0, 0.05],
                    method="L-BFGS-B",
                    bounds=[(math.log(0.2), math.log(20.0)), (0.0, 2.0)],
                )
                c = msgspec.structs.replace(
                    c1, vol_scale=float(math.exp(r.x[0])), momentum_weight=float(r.x[1])
                )
                if best is None or r.fun < best[0]:
                    best = (float(r.fun), c)
        assert best is not None
        cfg = best[1]
        fitted.update(
            vol_halflife_s=cfg.vol_halflife_s,
            vol_scale=_r(cfg.vol_scale),
            momentum_horizon_s=cfg.momentum_horizon_s,
            momentum_weight=_r(cfg.momentum_weight),
            train_log_loss_model=_r(best[0]),
        )
        cfg = msgspec.structs.replace(
            cfg, vol_scale=fitted["vol_scale"], momentum_weight=fitted["momentum_weight"]
        )
    if quotes is not None:
        train_slugs = {m.slug for m in train_markets}
        pts, _ = build_points(markets, path, [q for q in quotes if q.slug in train_slugs], cfg)
        if not pts:
            raise InputError(f"--fit: no quotes of markets before {first_test_day} to fit on")
        chosen = fit_blend(pts, cfg)
        cfg = msgspec.structs.replace(
            cfg,
            blend_bias=_r(chosen.weights[0]),
            blend_market_weight=_r(chosen.weights[1]),
            blend_model_weight=_r(chosen.weights[2]),
        )
        fitted.update(
            blend_bias=cfg.blend_bias,
            blend_market_weight=cfg.blend_market_weight,
            blend_model_weight=cfg.blend_model_weight,
            blend_selected=chosen.form,
            blend_reason=chosen.reason,
            blend_candidates=chosen.candidates,
            train_quoted_markets=chosen.markets,
            train_points=chosen.points,
        )
    return cfg, fitted


# --------------------------------------------------------------------------- command
def _config(args: argparse.Namespace) -> StrategyConfig:
    if args.config:
        files = StrategyConfigFiles(args.config, use_overrides=False, named_by="--config")
        cfg = files.load().config
    else:  # the shipped defaults alone: a calibration must not depend on an operator's edits
        cfg = StrategyConfigFiles(use_overrides=False).load().config
    if args.set:
        cfg = apply_config_sets(cfg, args.set)
    return cfg


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The report for parsed arguments (InputError / ConfigError on bad input)."""
    cfg = _config(args)
    markets = read_markets(Path(args.markets))
    path = read_price_paths([Path(p) for p in args.prices]) if args.prices else None
    quotes = read_quotes(Path(args.quotes), {m.slug: m for m in markets}) if args.quotes else None
    if not args.fit:
        points, skipped = build_points(markets, path, quotes, cfg)
        doc = report(points, cfg, skipped)
        doc["skipped"] = skipped
        return doc
    day = split_day(markets, args.split_day)
    fitted_cfg, fitted = fit(markets, path, quotes, cfg, day)
    test_markets = [m for m in markets if m.day >= day]
    test_slugs = {m.slug for m in test_markets}
    test_quotes = [q for q in quotes if q.slug in test_slugs] if quotes is not None else None
    points, skipped = build_points(test_markets, path, test_quotes, fitted_cfg)
    doc = report(points, fitted_cfg, skipped)
    doc["skipped"] = skipped
    # the same test points scored with the config before the fit (its own features: a fitted
    # half-life changes the volatility estimate)
    before, _ = build_points(test_markets, path, test_quotes, cfg)
    doc["before_fit"] = {
        k: v for k, v in report(before, cfg).items() if k not in ("reliability", "markets")
    }
    doc["fit"] = {
        "split_day": day,
        "train_markets": sum(m.day < day for m in markets),
        "test_markets": len(test_markets),
        "fitted": fitted,
    }
    return doc


def _cellf(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def _print_text(doc: dict[str, Any]) -> None:
    w = sys.stdout.write
    if "fit" in doc:
        f = doc["fit"]
        w(
            f"fit on {f['train_markets']} markets before {f['split_day']}, "
            f"scored on {f['test_markets']} later ones\n"
        )
        for k, v in f["fitted"].items():
            if k != "blend_candidates":
                w(f"  {k} = {v}\n")
        for form, c in f["fitted"].get("blend_candidates", {}).items():
            w(f"    {form:<12} " + "  ".join(f"{k} {v}" for k, v in c.items()) + "\n")
    w(f"markets {doc['markets']}  brier {doc['brier']}  log loss {doc['log_loss']}")
    if "brier_market" in doc:
        w(f"  (market {doc['brier_market']}, blend {doc['brier_blend']})")
    # the market and blend columns only when there were quotes to score them on (no `nan`)
    quoted = any("brier_market" in r for r in doc["points"])
    w(
        "\n seconds_left      n   brier_model"
        + ("  brier_market  brier_blend" if quoted else "")
        + "  logloss_model\n"
    )
    for r in doc["points"]:
        market = (
            f" {_cellf(r.get('brier_market')):>13} {_cellf(r.get('brier_blend')):>12}"
            if quoted
            else ""
        )
        w(
            f" {r['seconds_left']:>12} {r['n']:>6} {r['brier']:>13.4f}{market}"
            f" {r['log_loss']:>14.4f}\n"
        )
    if doc.get("skipped"):
        w(f"skipped: {doc['skipped']}\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="polyedge calibrate", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    ap.add_argument("--markets", required=True, help="markets CSV (calibration format)")
    ap.add_argument(
        "--prices",
        action="append",
        help="price path: Binance kline zip/csv or ts_ms,price CSV, or a folder (repeatable)",
    )
    ap.add_argument("--quotes", help="quotes JSONL: {slug, ts_ms, btc, up_bid, up_ask}")
    ap.add_argument("--json", action="store_true", help="print the JSON report")
    ap.add_argument("--config", help="strategy config file (default: the shipped defaults)")
    ap.add_argument("--set", action="append", help="override one config field, key=value")
    ap.add_argument("--fit", action="store_true", help="fit on earlier days, report on later")
    ap.add_argument("--split-day", help="first test day (YYYY-MM-DD) for --fit")
    args = ap.parse_args(argv)
    if not args.prices and not args.quotes:
        ap.error("give --prices PATH, --quotes QUOTES.jsonl, or both")
    try:
        doc = run(args)
    except (InputError, ConfigError) as e:
        print(f"polyedge calibrate: {e}", file=sys.stderr)
        return 2
    if args.json:
        sys.stdout.write(json.dumps(doc, sort_keys=False) + "\n")
    else:
        _print_text(doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
