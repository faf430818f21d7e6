"""Configuration: strategy parameters (shipped defaults in `config/config.json`, the operator's
changes in `<data dir>/config.json`, hot-reloadable) and runtime settings (`.env` at the
repository root, overridden by the process environment).

Both are validated as a whole at load: an unknown key, a wrong type or an out-of-range value
raises `ConfigError` naming every offending field, and services exit non-zero on it.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import re
import sys
import tempfile
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

DEFAULT_CONFIG_PATH = Path("config/config.json")  # shipped defaults, tracked, never written
OVERRIDES_FILE_NAME = "config.json"  # the operator's changes, in the data directory


class ConfigError(Exception):
    """A configuration problem; `errors` maps each offending field to what is wrong with it."""

    def __init__(self, source: str, errors: dict[str, str]) -> None:
        self.source = source
        self.errors = errors
        lines = "; ".join(f"{k}: {v}" for k, v in errors.items())
        super().__init__(f"invalid configuration in {source}: {lines}")

    def to_dict(self) -> dict[str, Any]:
        """`{"source", "errors", "message"}`: how a service reports a refused file (heartbeat)."""
        return {"source": self.source, "errors": dict(self.errors), "message": str(self)}


# --- strategy parameters ---------------------------------------------------------------------
Pct = Annotated[float, Meta(ge=0.0, le=1.0)]
Usd = Annotated[float, Meta(gt=0.0, le=1_000_000.0)]
Seconds = Annotated[int, Meta(ge=0, le=86_400)]


class StrategyConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Strategy, risk and execution parameters. Names are the seed's; all have defaults."""

    stake_per_trade_usd: Usd = 5.0
    max_daily_loss_usd: Usd = 10.0
    max_trades_per_day: Annotated[int, Meta(ge=0, le=10_000)] = 5
    # entries in one market window (an entry that got no fill does not count): re-entering after
    # an exit pays the spread and the fee again
    max_entries_per_window: Annotated[int, Meta(ge=1, le=1000)] = 1
    min_signal_score: Pct = 0.12
    # absolute, in probability points (= USD per share): P(side) - ask - fee must reach it
    # (0.05 = 5 cents a share); not a percentage of the price, whatever the seed's name says
    min_edge_pct: Pct = 0.05
    take_profit_pct: Annotated[float, Meta(gt=0.0, le=10.0)] = 0.25
    stop_loss_pct: Annotated[float, Meta(gt=0.0, le=1.0)] = 0.18
    entry_window_min_sec: Seconds = 45
    min_seconds_before_close: Seconds = 30
    max_consecutive_losses: Annotated[int, Meta(ge=1, le=1000)] = 3
    stale_after_ms: Annotated[int, Meta(ge=100, le=600_000)] = 3000
    # how entries are sent (issue 18): "FOK"/"FAK" (or "taker" = FOK) take the ask at once and pay
    # the taker fee; "maker" rests a post-only BUY limit (GTC, or GTD when the window's entry
    # cut-off is more than 4 minutes away) at or inside the best bid of the side the model
    # favours, never crossing, paying no fee and earning the rebate (services/strategy/quotes.py);
    # "auto" quotes as a maker while more than `auto_taker_within_s` seconds remain before the
    # entry cut-off and the after-fee taker edge is below `auto_taker_edge`, else takes (FOK)
    order_type: Literal["FOK", "FAK", "taker", "maker", "auto"] = "FOK"
    # maker quotes: ticks inside the best bid (0 joins it; never at or above the best ask)
    maker_improve_ticks: Annotated[int, Meta(ge=0, le=10)] = 0
    # cancel/replace the resting quote when the price we would quote now differs from it by at
    # least this (USD per share); at most `max_replaces_per_s` replaces a second per market
    quote_replace_threshold: Annotated[float, Meta(gt=0.0, le=0.5)] = 0.01
    max_replaces_per_s: Annotated[float, Meta(gt=0.0, le=50.0)] = 2.0
    # "auto": take (FOK) when the after-fee taker edge reaches this (USD per share) ...
    auto_taker_edge: Annotated[float, Meta(ge=0.0, le=1.0)] = 0.10
    # ... or when fewer than this many seconds remain before the entry cut-off
    auto_taker_within_s: Seconds = 60
    intent_ttl_ms: Annotated[int, Meta(ge=10, le=60_000)] = 2000
    # after execution rejects an entry, no entry in that market for this many seconds, doubled on
    # each rejection in a row up to `entry_reject_backoff_max_s`; a fill or a config change
    # resets it (0: no backoff). A rejection that cannot succeed in this mode (real trading
    # blocked) halts the market's entries instead (strategy's `real_trading_blocked`)
    entry_reject_backoff_s: Annotated[float, Meta(ge=0.0, le=3600.0)] = 1.0
    entry_reject_backoff_max_s: Annotated[float, Meta(ge=0.0, le=86_400.0)] = 60.0
    max_entry_price: Annotated[float, Meta(gt=0.0, lt=1.0)] = 0.95
    limit_slippage: Annotated[float, Meta(ge=0.0, le=0.5)] = 0.02
    dry_run_latency_ms: Annotated[int, Meta(ge=0, le=10_000)] = 0
    # collateral in the open position plus those awaiting resolution, plus the next stake
    max_capital_at_risk_usd: Usd = 20.0
    # markets holding a position in an open window (or an entry in flight) at once: a global
    # limit over every configured market (issue 17); an override per market has no effect
    max_open_positions: Annotated[int, Meta(ge=1, le=1000)] = 8
    # no entry on a price to beat that is not from the settlement source (Gamma, the TWAP or
    # Chainlink feed): a Binance estimate differs by the basis (PROTOCOLS.md section 7)
    require_settlement_price_to_beat: bool = True
    # no taker entry whose immediate round trip (bought into the asks, sold straight back into
    # the bids, fees both ways) already returns -stop_loss_pct or worse: the stop-loss would sell
    # it at the next book (strategy's `entry_inside_stop_loss`); off for churn-on-purpose runs
    refuse_entry_inside_stop_loss: bool = True
    # signal model (services/signal/model.py)
    vol_halflife_s: Annotated[float, Meta(gt=0.0, le=3600.0)] = 60.0
    vol_floor: Annotated[float, Meta(gt=0.0, le=0.01)] = 3e-5  # log units per sqrt second
    momentum_horizon_s: Annotated[int, Meta(ge=1, le=600)] = 30
    momentum_weight: Annotated[float, Meta(ge=0.0, le=2.0)] = 0.1
    # multiplies the estimated volatility before pricing (fat tails, vol of vol: the log-normal
    # walk with the EWMA sigma is too sure of itself); fitted by `polyedge calibrate --fit`
    vol_scale: Annotated[float, Meta(gt=0.0, le=20.0)] = 1.0
    # the market-aware probability: sigmoid(blend_bias + blend_market_weight * logit(Up mid)
    # + blend_model_weight * logit(model)), fitted by `polyedge calibrate --fit` (model.blend_up).
    # Built in: the model alone (the seed's behaviour, what unit tests assume); the shipped
    # config/config.json carries the values fitted on real data (README "Does it have an edge?")
    blend_market_weight: Annotated[float, Meta(ge=-5.0, le=5.0)] = 0.0
    blend_model_weight: Annotated[float, Meta(ge=-5.0, le=5.0)] = 1.0
    blend_bias: Annotated[float, Meta(ge=-5.0, le=5.0)] = 0.0
    # the markets this tree trades (issue 17): each `{"asset", "window", "enabled"?, <any field
    # above as a per-market override>}`; read through `market_specs`
    markets: list[dict[str, Any]] = msgspec.field(default_factory=lambda: [dict(DEFAULT_MARKET)])


# --- markets (issue 17) ------------------------------------------------------------------------
DEFAULT_MARKET: dict[str, Any] = {"asset": "btc", "window": "5m"}
# Window lengths Polymarket lists for its crypto Up/Down series, in seconds. 5m and 15m slugs are
# built from the clock (`{asset}-updown-{window}-{start}`); the others are found on Gamma.
WINDOWS: dict[str, int] = {"5m": 300, "15m": 900, "1h": 3600, "4h": 14_400, "1d": 86_400}
_ASSET = re.compile(r"^[a-z][a-z0-9]{1,9}$")
_MARKET_KEYS = ("asset", "window", "enabled")


class MarketSpec(Struct, frozen=True, kw_only=True):
    """One configured market series: `asset` (lowercase ticker, "btc"), `window` ("5m", "15m",
    "1h", "4h", "1d"), `window_s` (its length in seconds), `enabled`, and `overrides`
    (strategy parameters for this market only, validated like the top-level ones)."""

    asset: str
    window: str
    window_s: int
    enabled: bool = True
    overrides: dict[str, Any] = {}

    @property
    def key(self) -> str:
        """The series key, `f"{asset}-{window}"` ("eth-15m"): how every message names it."""
        return f"{self.asset}-{self.window}"

    @property
    def binance_symbol(self) -> str:
        """The asset's Binance spot symbol against USDT ("ETHUSDT"), uppercase as in payloads."""
        return binance_symbol(self.asset)

    @property
    def feed_symbol(self) -> str:
        """The settlement feed's symbol ("eth/usd": Chainlink's pair on Polymarket's RTDS)."""
        return f"{self.asset}/usd"


def series_of_slug(slug: str) -> str:
    """The series key of a clock-built slug: `eth-updown-15m-1764000000` -> "eth-15m"; "" when
    the slug is not of that form (markets of longer windows are named by their MarketInfo's
    `asset`/`window`, `MarketInfo.series`)."""
    asset, sep, rest = slug.partition("-updown-")
    if not sep or not asset:
        return ""
    window = rest.split("-", 1)[0]
    return f"{asset}-{window}" if window else ""


def binance_symbol(asset: str) -> str:
    """`btc` -> "BTCUSDT": the Binance spot pair Polymarket's crypto markets are read against."""
    return f"{asset.upper()}USDT"


def market_specs(config: Mapping[str, Any] | StrategyConfig) -> tuple[MarketSpec, ...]:
    """The markets a config names, in its order (disabled ones included, `enabled=False`).

    `config`: a config document (`{"markets": [...], ...}`) or a StrategyConfig. Without a
    `markets` key: one market, btc 5m (an empty list: none; `validate_strategy_config` refuses
    it in a config). Raises ConfigError naming every bad entry as `markets[i]` or
    `markets[i].<field>`: not an object, a missing or malformed asset, an unknown window,
    `enabled` not a boolean, a duplicate series key, an unknown or invalid override (each
    override is checked like the top-level field it overrides)."""
    if isinstance(config, StrategyConfig):
        raw: Any = config.markets
    else:
        raw = config.get("markets", [DEFAULT_MARKET])
    if not isinstance(raw, list | tuple):
        raise ConfigError("markets", {"markets": f"expected a list, got {json_kind(raw)}"})
    errors: dict[str, str] = {}
    out: list[MarketSpec] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(raw):
        at = f"markets[{i}]"
        if not isinstance(entry, dict):
            errors[at] = f"expected an object, got {json_kind(entry)}"
            continue
        asset, window = entry.get("asset"), entry.get("window")
        ok = True
        if not isinstance(asset, str) or not _ASSET.match(asset):
            errors[f"{at}.asset"] = (
                f"expected a lowercase ticker like 'btc' (2-10 letters or digits), got {asset!r}"
            )
            ok = False
        if window not in WINDOWS:
            errors[f"{at}.window"] = f"expected one of {', '.join(WINDOWS)}, got {window!r}"
            ok = False
        enabled = entry.get("enabled", True)
        if not isinstance(enabled, bool):
            errors[f"{at}.enabled"] = f"expected true or false, got {enabled!r}"
            ok = False
        overrides = {k: v for k, v in entry.items() if k not in _MARKET_KEYS}
        if "markets" in overrides:
            errors[f"{at}.markets"] = "a market cannot hold markets"
            overrides.pop("markets")
            ok = False
        try:
            validate_strategy_config(overrides, at)
        except ConfigError as e:
            errors.update({f"{at}.{k}": v for k, v in e.errors.items()})
            ok = False
        if not ok:
            continue
        spec = MarketSpec(
            asset=asset,
            window=window,
            window_s=WINDOWS[window],
            enabled=enabled,
            overrides=overrides,
        )
        if spec.key in seen:
            errors[at] = f"duplicate market {spec.key!r} (also markets[{seen[spec.key]}])"
            continue
        seen[spec.key] = i
        out.append(spec)
    if errors:
        raise ConfigError("markets", errors)
    return tuple(out)


def enabled_markets(config: Mapping[str, Any] | StrategyConfig) -> tuple[MarketSpec, ...]:
    """`market_specs(config)` without the disabled ones."""
    return tuple(m for m in market_specs(config) if m.enabled)


def scaled_window_s(spec: MarketSpec, five_minutes_s: int = 300) -> int:
    """A series' window length in seconds in a tree where a 5-minute window lasts
    `five_minutes_s` (300 live; `SIM_WINDOW_SECONDS` shrinks time on the simulated venue, and
    every series shrinks with it: 15m is three 5m windows). At least 2 s."""
    return max(2, round(spec.window_s * five_minutes_s / 300))


def strategy_config_for(base: StrategyConfig, spec: MarketSpec) -> StrategyConfig:
    """`base` with `spec.overrides` applied: the parameters one market trades with. Raises
    ConfigError (naming `markets.<key>.<field>`) if an override is invalid, which
    `market_specs` already refuses."""
    if not spec.overrides:
        return base
    try:
        return validate_strategy_config({**config_to_dict(base), **spec.overrides}, "markets")
    except ConfigError as e:
        raise ConfigError(e.source, {f"{spec.key}.{k}": v for k, v in e.errors.items()}) from None


def json_kind(value: Any) -> str:
    """What a decoded JSON value is, in JSON's terms for an error message ("null", "an array",
    "a string", ...), never a Python type name ("NoneType", "list")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def validate_strategy_config(doc: Any, source: str = "config") -> StrategyConfig:
    """Validate a whole config document; raise ConfigError listing EVERY bad field."""
    if not isinstance(doc, dict):
        raise ConfigError(source, {"$": f"expected a JSON object, got {json_kind(doc)}"})
    errors: dict[str, str] = {}
    known = set(StrategyConfig.__struct_fields__)
    for key, value in doc.items():
        if key not in known:
            errors[str(key)] = "unknown field"
            continue
        if key == "markets":  # entry by entry, each bad one named (below)
            continue
        try:  # each field alone, so one bad field does not hide the next
            msgspec.convert({key: value}, StrategyConfig, strict=True)
        except msgspec.ValidationError as e:
            msg = str(e).split(" - at ")[0]
            if msg.startswith("Expected `int`") and isinstance(value, float):
                msg = f"must be a whole number (an int), got {value!r}"
            errors[key] = msg
    if doc.get("markets") == []:
        # a typo or a bad edit must not silently stop every market (with positions open): to
        # stop trading, use the emergency stop or `"enabled": false` on each market
        errors["markets"] = (
            "empty: name at least one market (e.g. "
            '[{"asset": "btc", "window": "5m"}]), or null for the default btc 5m; to stop '
            'trading use the emergency stop or "enabled": false'
        )
    elif "markets" in doc:
        try:
            market_specs(doc)
        except ConfigError as e:
            errors.update(e.errors)
    if errors:
        raise ConfigError(source, errors)
    return msgspec.convert(doc, StrategyConfig, strict=True)


def load_strategy_config(
    path: str | os.PathLike[str] | None = None, *, data_dir: str | os.PathLike[str] | None = None
) -> StrategyConfig:
    """The effective strategy config.

    With `path`: that file alone over the built-in defaults (no operator overrides). Without:
    the shipped defaults (`config/config.json`) with the operator's overrides from the data
    directory (`data_dir`, default `./data`) merged on top (`StrategyConfigFiles`). A service
    uses `Settings.strategy_config_files()`, which honours `POLYEDGE_CONFIG`. Raises ConfigError
    naming the file and every bad field, or the file when it is missing.
    """
    if path is not None:
        return StrategyConfigFiles(path, use_overrides=False).load().config
    return StrategyConfigFiles(data_dir=data_dir).load().config


def apply_config_sets(config: StrategyConfig, sets: list[str]) -> StrategyConfig:
    """`config` with the command line's `--set key=value` items over it (`value` JSON, else the
    text as a string), validated whole. Raises ConfigError (source `--set`) naming an item
    without `=`, a key given twice (both items: which one was meant? as a key named twice in a
    JSON object, BREAKER2 finding 10) and every bad field."""
    doc = config_to_dict(config)
    given: dict[str, str] = {}
    errors: dict[str, str] = {}
    for item in sets:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            errors[item] = "expected key=value"
            continue
        if key in given:
            errors[key] = f"given twice (--set {given[key]} and --set {item.strip()}); keep one"
            continue
        given[key] = item.strip()
        try:
            doc[key] = json.loads(raw)
        except json.JSONDecodeError:
            doc[key] = raw
    if errors:
        raise ConfigError("--set", errors)
    return validate_strategy_config(doc, "--set")


def config_hash(cfg: StrategyConfig | dict[str, Any]) -> str:
    """A short content hash of a whole config (sha256 of its canonical JSON, 12 hex digits): two
    reports with the same hash ran with the same parameters."""
    doc = config_to_dict(cfg) if isinstance(cfg, StrategyConfig) else cfg
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(raw).hexdigest()[:12]


def config_diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[Any]]:
    """`{field: [old, new]}` for every field whose value differs (sorted by field name)."""
    return {
        k: [old.get(k), new.get(k)] for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)
    }


def validate_config_patch(patch: Any, source: str = "config patch") -> dict[str, Any]:
    """Check a JSON merge patch (RFC 7396) for the flat strategy config: an object whose keys are
    config fields and whose values are each valid for their field, or null (= back to the
    shipped default). Returns the patch; raises ConfigError naming every bad field."""
    if not isinstance(patch, dict):
        raise ConfigError(source, {"$": f"expected a JSON object, got {json_kind(patch)}"})
    known = set(StrategyConfig.__struct_fields__)
    errors = {str(k): "unknown field" for k, v in patch.items() if v is None and k not in known}
    try:
        validate_strategy_config({k: v for k, v in patch.items() if v is not None}, source)
    except ConfigError as e:
        errors.update(e.errors)
    if errors:
        raise ConfigError(source, errors)
    return patch


def merge_config_patch(
    current: dict[str, Any], patch: dict[str, Any], defaults: dict[str, Any]
) -> dict[str, Any]:
    """RFC 7396 JSON merge patch on the flat config: a member in `patch` replaces the current
    value, a null member removes the operator's value (the field goes back to `defaults`), an
    absent member leaves the field as it is. `{}` changes nothing."""
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            if key in defaults:
                merged[key] = defaults[key]
            else:
                merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def overrides_of(config: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The fields of `config` that differ from `defaults`: what the operator changed."""
    return {k: v for k, v in config.items() if defaults.get(k) != v}


def default_overrides_path(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the operator's config changes live: `<data dir>/config.json` (untracked); the data
    directory is `Settings.data_dir` (`POLYEDGE_DATA_DIR`) in a service, else `./data`."""
    base = data_dir or "./data"
    return Path(base) / OVERRIDES_FILE_NAME


@dataclass(frozen=True)
class LoadedConfig:
    """One load of the two layers: `defaults` (built-ins + the shipped file, every field),
    `overrides` (the operator's fields from the data directory) and their merge, `config`."""

    config: StrategyConfig
    defaults: dict[str, Any]
    overrides: dict[str, Any]
    defaults_path: Path
    overrides_path: Path | None

    @property
    def hash(self) -> str:
        return config_hash(self.config)

    def provenance(self, version: int | None = None) -> dict[str, Any]:
        """What a report prints about the config it used: paths, version (None when this is
        not a version the running system applied) and hash."""
        return {
            "path": str(self.defaults_path),
            "overrides_path": str(self.overrides_path) if self.overrides_path else None,
            "overrides": dict(self.overrides),
            "version": version,
            "hash": self.hash,
        }


class StrategyConfigFiles:
    """The strategy config's two files, loaded as one and watched for edits.

    - defaults: `defaults_path` (`Settings.config_path`, i.e. `POLYEDGE_CONFIG`) or
      `config/config.json`, tracked in git; the running system never writes it.
    - overrides: `<data_dir>/config.json` (`POLYEDGE_DATA_DIR`), only the fields the operator changed (through
      `POST /api/config` or by hand); strategy rewrites it atomically on every applied change.

    The effective config is built-ins <- defaults file <- overrides file (each layer may be
    partial), so an edit of either file never resets a field the other one sets.
    """

    def __init__(
        self,
        defaults_path: str | os.PathLike[str] | None = None,
        overrides_path: str | os.PathLike[str] | None = None,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        use_overrides: bool = True,
        named_by: str = "POLYEDGE_CONFIG",
    ) -> None:
        self.explicit = bool(defaults_path)
        self.named_by = named_by  # what named `defaults_path`, for the missing-file error
        self.defaults_path = Path(defaults_path or DEFAULT_CONFIG_PATH)
        self.overrides_path: Path | None = (
            Path(overrides_path or default_overrides_path(data_dir)) if use_overrides else None
        )
        self._mtimes = self._stamp()

    def _stamp(self) -> tuple[float, float]:
        def mtime(p: Path | None) -> float:
            try:
                return p.stat().st_mtime if p is not None else 0.0
            except OSError:
                return 0.0

        return mtime(self.defaults_path), mtime(self.overrides_path)

    def changed(self) -> bool:
        """True once for every change of either file's mtime since the last look."""
        stamp = self._stamp()
        if stamp == self._mtimes:
            return False
        self._mtimes = stamp
        return True

    def load(self) -> LoadedConfig:
        """Read and validate both layers. ConfigError names the file and every bad field, and
        the defaults file when it is missing (the shipped `config/config.json` as well as a
        file named by POLYEDGE_CONFIG): the built-in defaults are never used in its place (they
        trade the unfitted model alone, BREAKER2 finding 1). A missing overrides file is fine
        (no operator changes)."""
        p = self.defaults_path
        if not p.exists():
            raise ConfigError(str(p.absolute()), {"$": self.missing_reason()})
        defaults = validate_strategy_config(read_config_file(p), str(p))
        defaults_doc = config_to_dict(defaults)
        overrides: dict[str, Any] = {}
        o = self.overrides_path
        if o is not None and o.exists():
            doc = read_config_file(o)
            validate_strategy_config(doc, str(o))  # every field on its own, named
            overrides = dict(doc)
        config = validate_strategy_config({**defaults_doc, **overrides}, str(o or p))
        return LoadedConfig(config, defaults_doc, overrides, p, o)

    def missing_reason(self) -> str:
        """What to say when the defaults file is not there: how to get it back."""
        if self.explicit:
            return f"file not found (named by {self.named_by})"
        return (
            f"file not found: the shipped strategy config {DEFAULT_CONFIG_PATH} is missing "
            f"(restore it with `git checkout {DEFAULT_CONFIG_PATH}`, run from the repository "
            "root, or name another file with POLYEDGE_CONFIG); the built-in defaults are never "
            "used in its place"
        )

    def write_overrides(self, overrides: dict[str, Any]) -> None:
        """Replace the overrides file atomically (never the defaults file); the write is not
        reported as an edit by `changed()`."""
        if self.overrides_path is None:
            raise ValueError("no overrides file for this config")
        write_json_atomically(self.overrides_path, overrides)
        self._mtimes = self._stamp()


def write_json_atomically(path: Path, doc: dict[str, Any]) -> None:
    """Replace a JSON file in one rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class DuplicateKeyError(ValueError):
    """A JSON object names the same key twice (`key`). JSON parsers keep the last value silently
    (RFC 8259 section 4: names SHOULD be unique, and behaviour with duplicates is unpredictable),
    so a config with a repeated field is refused instead of guessing which one the operator
    meant."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"key {key!r} appears twice in one JSON object")


def unique_json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`json.loads(..., object_pairs_hook=unique_json_object)`: each object as a dict, raising
    DuplicateKeyError for the first key an object names twice (at any depth)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(key)
        out[key] = value
    return out


# what a config source says about a field named twice (file and API alike)
DUPLICATE_KEY = "named twice; a JSON object's keys must be unique (keep one)"


def read_config_file(p: Path) -> Any:
    """The JSON document in a config file; ConfigError (naming the file) when it is not one, or
    names a key twice in one object (naming the key)."""
    try:
        return json.loads(p.read_text(encoding="utf-8"), object_pairs_hook=unique_json_object)
    except DuplicateKeyError as e:
        raise ConfigError(str(p), {e.key: DUPLICATE_KEY}) from None
    except json.JSONDecodeError as e:
        raise ConfigError(str(p), {"$": f"not valid JSON: {e}"}) from None
    except UnicodeDecodeError as e:  # a config file is UTF-8 JSON; anything else is refused
        raise ConfigError(str(p), {"$": f"not UTF-8 text: {e}"}) from None
    except RecursionError:
        raise ConfigError(str(p), {"$": "JSON nested too deeply"}) from None
    except OSError as e:  # a directory, no permission, ...
        raise ConfigError(str(p), {"$": f"cannot read: {e.strerror or e}"}) from None


def config_to_dict(cfg: StrategyConfig) -> dict[str, Any]:
    """The config as a plain JSON object (every field)."""
    return msgspec.to_builtins(cfg)


def config_choices() -> dict[str, list[Any]]:
    """The fields of StrategyConfig that take one of a fixed set of values, with those values in
    declared order (e.g. `{"order_type": ["FOK", "FAK"]}`), read from the struct's `Literal`s."""
    hints = typing.get_type_hints(StrategyConfig)
    return {
        name: list(typing.get_args(hint))
        for name, hint in hints.items()
        if typing.get_origin(hint) is Literal
    }


# --- runtime settings ------------------------------------------------------------------------
# Every runtime setting is a field of one of the frozen structs below; its environment variable is
# the field's encoded name (`rename`), its default the field's default, its meaning the field's
# `description`. `load_settings` reads `.env`, then the environment (which wins), once, into
# `Settings`; nothing else in the tree reads the environment. README's configuration table is
# generated from these structs (`polyedge settings --markdown`) and a test keeps it current.
class Secret:
    """A secret string that never shows itself in a repr, str, log line or exception."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


LIVE_URLS = {
    "BINANCE_WS_URL": "wss://stream.binance.com:9443",
    "POLYMARKET_WS_URL": "wss://ws-subscriptions-clob.polymarket.com/ws",
    "GAMMA_API_URL": "https://gamma-api.polymarket.com",
    "CLOB_API_URL": "https://clob.polymarket.com",
    "PRICE_FEED_WS_URL": "wss://ws-live-data.polymarket.com",
    "POLYGON_RPC_URL": "https://polygon-rpc.com",
    # polymarket-client 0.14 `environments.py` PRODUCTION relayer_url
    "RELAYER_URL": "https://relayer-v2.polymarket.com",
}


def sim_urls(port: int, host: str = "127.0.0.1") -> dict[str, str]:
    """Where the simulated venue serves each venue on its one port."""
    return {
        "BINANCE_WS_URL": f"ws://{host}:{port}",
        "POLYMARKET_WS_URL": f"ws://{host}:{port}/ws",
        "GAMMA_API_URL": f"http://{host}:{port}/gamma",
        "CLOB_API_URL": f"http://{host}:{port}/clob",
        "PRICE_FEED_WS_URL": f"ws://{host}:{port}/rtds",
        "POLYGON_RPC_URL": f"http://{host}:{port}/rpc",
        "RELAYER_URL": f"http://{host}:{port}/relayer",
    }


def _doc(
    description: str,
    *,
    default: str | None = None,
    expect: str | None = None,
    case: str = "",
    **constraints: Any,
) -> Meta:
    """Field metadata: the README's `meaning`, an optional `default` shown instead of the field's
    own, `expect` (the error text for a bad value) and `case` ("upper"/"lower": normalised)."""
    extra = {k: v for k, v in (("default", default), ("expect", expect), ("case", case)) if v}
    return Meta(description=description, extra=extra, **constraints)


_URL = r"^(wss?|https?)://[^\s]+$"
_URL_EXPECT = "a ws(s):// or http(s):// URL"
_VENUE_DEFAULT = "the real venue's (the simulated venue's with `POLYEDGE_VENUE=sim`)"
_ENDPOINT = r"^(ipc|tcp)://[^\s]+$"
_ENDPOINT_EXPECT = "an ipc:// or tcp:// endpoint"
Ms = Annotated[int, Meta(ge=0, le=86_400_000)]
Sec = Annotated[int, Meta(ge=0, le=86_400 * 7)]


def _prefixed(prefix: str) -> Callable[[str], str]:
    """A struct's `rename`: field `clob_ping_ms` is variable `<PREFIX>CLOB_PING_MS`."""
    return lambda field: prefix + field.upper()


class VenueUrls(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, rename="upper"):
    """Venue endpoints; unset means the real venue's, or the simulated venue's when
    `POLYEDGE_VENUE=sim` (see `Settings.urls`)."""

    binance_ws_url: (
        Annotated[
            str,
            _doc("Binance spot streams", default=_VENUE_DEFAULT, expect=_URL_EXPECT, pattern=_URL),
        ]
        | None
    ) = None
    polymarket_ws_url: (
        Annotated[
            str,
            _doc(
                "Polymarket CLOB WebSocket (market and user channels)",
                default=_VENUE_DEFAULT,
                expect=_URL_EXPECT,
                pattern=_URL,
            ),
        ]
        | None
    ) = None
    gamma_api_url: (
        Annotated[
            str,
            _doc(
                "Polymarket Gamma REST (market discovery)",
                default=_VENUE_DEFAULT,
                expect=_URL_EXPECT,
                pattern=_URL,
            ),
        ]
        | None
    ) = None
    clob_api_url: (
        Annotated[
            str,
            _doc(
                "Polymarket CLOB REST (orders, books)",
                default=_VENUE_DEFAULT,
                expect=_URL_EXPECT,
                pattern=_URL,
            ),
        ]
        | None
    ) = None
    price_feed_ws_url: (
        Annotated[
            str,
            _doc(
                "Polymarket RTDS price feed (Chainlink, TWAP)",
                default=_VENUE_DEFAULT,
                expect=_URL_EXPECT,
                pattern=_URL,
            ),
        ]
        | None
    ) = None
    polygon_rpc_url: (
        Annotated[
            str,
            _doc(
                "Polygon JSON-RPC (redemption of winning tokens from an EOA wallet)",
                default=_VENUE_DEFAULT,
                expect=_URL_EXPECT,
                pattern=_URL,
            ),
        ]
        | None
    ) = None
    relayer_url: (
        Annotated[
            str,
            _doc(
                "Polymarket's relayer (gasless redemption and approvals of proxy, Safe and deposit "
                "wallets)",
                default=_VENUE_DEFAULT,
                expect=_URL_EXPECT,
                pattern=_URL,
            ),
        ]
        | None
    ) = None


_BUS_DEFAULT = "`ipc://` under `POLYEDGE_DATA_DIR/run/`"


class BusSettings(
    Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, rename=_prefixed("POLYEDGE_BUS_")
):
    """Bus endpoints; a `tcp://` address spreads the services over hosts."""

    ingest: (
        Annotated[
            str,
            _doc(
                "ingest's PUB stream (`md.*`)",
                default=_BUS_DEFAULT,
                expect=_ENDPOINT_EXPECT,
                pattern=_ENDPOINT,
            ),
        ]
        | None
    ) = None
    signal: (
        Annotated[
            str,
            _doc(
                "signal's PUB stream (`sig.*`)",
                default=_BUS_DEFAULT,
                expect=_ENDPOINT_EXPECT,
                pattern=_ENDPOINT,
            ),
        ]
        | None
    ) = None
    strategy: (
        Annotated[
            str,
            _doc(
                "strategy's PUB stream (`strat.*`, `risk.*`)",
                default=_BUS_DEFAULT,
                expect=_ENDPOINT_EXPECT,
                pattern=_ENDPOINT,
            ),
        ]
        | None
    ) = None
    execution: (
        Annotated[
            str,
            _doc(
                "execution's PUB stream (`exec.*`)",
                default=_BUS_DEFAULT,
                expect=_ENDPOINT_EXPECT,
                pattern=_ENDPOINT,
            ),
        ]
        | None
    ) = None
    orders: (
        Annotated[
            str,
            _doc(
                "order intents, strategy -> execution (PUSH/PULL)",
                default=_BUS_DEFAULT,
                expect=_ENDPOINT_EXPECT,
                pattern=_ENDPOINT,
            ),
        ]
        | None
    ) = None
    control: (
        Annotated[
            str,
            _doc(
                "control commands, observe -> strategy (PUSH/PULL)",
                default=_BUS_DEFAULT,
                expect=_ENDPOINT_EXPECT,
                pattern=_ENDPOINT,
            ),
        ]
        | None
    ) = None


# The API's addresses that only this host reaches: any other `API_HOST` needs `API_TOKEN`.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class ObserveSettings(
    Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, rename=_prefixed("API_")
):
    """observe's API and dashboard."""

    host: Annotated[str, _doc("the API and dashboard listen here")] = "127.0.0.1"
    port: Annotated[int, _doc("the API and dashboard port", ge=1, le=65535)] = 8080
    token: Annotated[
        Secret | None,
        _doc(
            "Bearer token for POSTs and the WebSocket; required when `API_HOST` is not loopback; "
            "never shown"
        ),
    ] = None
    allowed_hosts: Annotated[
        tuple[str, ...],
        _doc(
            "comma-separated `Host` names the API answers (`*`: any); `API_HOST` is added",
            default="localhost names",
        ),
    ] = ()
    cors_origins: Annotated[
        tuple[str, ...], _doc("comma-separated origins allowed by CORS", default="none (closed)")
    ] = ()
    max_body_bytes: Annotated[
        int, _doc("largest request body accepted", ge=1024, le=16 * 1024 * 1024)
    ] = 64 * 1024


class AlertSettings(
    Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, rename=_prefixed("ALERT_")
):
    """observe's operator alerts (`services/observe/alerts.py`)."""

    urls: Annotated[
        Secret | None,
        _doc(
            "apprise URLs for operator alerts, comma- or space-separated (`tgram://`, `discord://`, "
            "`slack://`, `mailto://`, `json://host/path` webhooks, ...); secret (never logged)",
            expect="apprise URLs (scheme://...)",
        ),
    ] = None
    feed_stale_s: Annotated[
        int,
        _doc(
            "a feed trading needs that stays stale or down this long is an alert", ge=1, le=86_400
        ),
    ] = 30


class SimSettings(
    Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, rename=_prefixed("SIM_")
):
    """The simulated venue (`POLYEDGE_VENUE=sim`, `polyedge sim`)."""

    port: Annotated[
        int,
        _doc(
            "the simulated venue's one port (also where the services look for it)", ge=1, le=65535
        ),
    ] = 8765
    seed: Annotated[int, _doc("seed of the simulated market", ge=0, le=2**63 - 1)] = 1
    window_seconds: Annotated[int, _doc("length of a simulated window", ge=2, le=86_400)] = 300
    # > 0: a tree with no bookTicker or no book updates cannot trade (`polyedge sim
    # --book-ticker-hz 0` still runs a quote-less venue for a test)
    book_ticker_hz: Annotated[
        float, _doc("Binance bookTicker frames per second", gt=0.0, le=100_000.0)
    ] = 100.0
    clob_hz: Annotated[
        float, _doc("Polymarket book updates per second (both tokens)", gt=0.0, le=100_000.0)
    ] = 60.0
    markets: Annotated[
        tuple[str, ...],
        _doc(
            "comma-separated series the venue lists besides the config's `markets` "
            "(`eth-15m,sol-1h`)",
            default="none",
            case="lower",
        ),
    ] = ()


class IngestSettings(
    Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, rename=_prefixed("INGEST_")
):
    """ingest's feed clients: timers and switches (tests shrink every timer)."""

    capture: Annotated[
        bool, _doc("record every venue frame under `POLYEDGE_DATA_DIR/captures`")
    ] = False
    capture_rotate_s: Annotated[Sec, _doc("start a new capture file this often")] = 3600
    capture_max_mb: Annotated[
        int, _doc("start a new capture file past this size", ge=1, le=1_000_000)
    ] = 256
    stale_after_ms: Annotated[
        Ms, _doc("market data older than this is stale; 0: the strategy config's `stale_after_ms`")
    ] = 0
    price_feed: Annotated[bool, _doc("subscribe the RTDS price feed (Chainlink, TWAP)")] = True
    window_seconds: Annotated[
        Sec, _doc("first guess of the window length; 0: 300 live, `SIM_WINDOW_SECONDS` sim")
    ] = 0
    backoff_base_ms: Annotated[Ms, _doc("first reconnect delay (doubles, jittered)")] = 500
    backoff_max_ms: Annotated[Ms, _doc("longest reconnect delay")] = 30_000
    stable_s: Annotated[Sec, _doc("a connection up this long resets the backoff")] = 30
    binance_silence_ms: Annotated[
        Ms, _doc("no Binance trade or quote for this long: the socket is dead")
    ] = 10_000
    binance_max_conn_s: Annotated[
        Sec, _doc("planned Binance reconnect, before the venue's 24 h cut")
    ] = 23 * 3600 + 1800
    clob_ping_ms: Annotated[Ms, _doc("CLOB WebSocket PING interval")] = 10_000
    clob_pong_timeout_ms: Annotated[
        Ms, _doc("no CLOB frame at all (not even PONG) for this long: reconnect")
    ] = 30_000
    clob_silence_ms: Annotated[
        Ms, _doc("no CLOB book data for this long (PONGs or not): reconnect")
    ] = 10_000
    rtds_ping_ms: Annotated[Ms, _doc("RTDS PING interval")] = 5_000
    rtds_silence_ms: Annotated[
        Ms, _doc("no RTDS price tick for this long (PONGs or not): reconnect")
    ] = 15_000
    gamma_refresh_ms: Annotated[Ms, _doc("Gamma market discovery interval")] = 5_000
    gamma_retry_max_ms: Annotated[Ms, _doc("longest Gamma retry delay after an error")] = 5_000
    gamma_timeout_ms: Annotated[Ms, _doc("Gamma request timeout")] = 5_000
    resync_after_ms: Annotated[
        Ms, _doc("wait this long for the venue's own book snapshot before asking REST")
    ] = 1_000
    release_grace_s: Annotated[
        Sec, _doc("a past market's tokens are kept at most this long unresolved; 0: until resolved")
    ] = 0
    resolve_poll_base_ms: Annotated[
        Ms, _doc("first REST resolution poll this long after a market's end")
    ] = 1_000
    resolve_poll_max_ms: Annotated[Ms, _doc("backoff cap between polls of one market")] = 30_000
    resolve_confirm_s: Annotated[
        Sec, _doc("after resolution, keep asking the other REST source this long")
    ] = 300
    resolve_timeout_ms: Annotated[Ms, _doc("resolution REST request timeout")] = 5_000
    basis_warn_usd: Annotated[
        int,
        _doc(
            "a mean Binance - Chainlink basis beyond this many USD is logged as a warning",
            ge=0,
            le=1_000_000,
        ),
    ] = 50


class ExecutionSettings(
    Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, rename=_prefixed("EXEC_")
):
    """execution's live-venue timers."""

    order_timeout_ms: Annotated[
        int,
        _doc(
            "a venue call unanswered this long is 'outcome unknown' (looked up, never re-sent)",
            ge=1,
            le=600_000,
        ),
    ] = 5000
    reconcile_grace_ms: Annotated[
        int,
        _doc(
            "an order sent this recently that the venue does not show yet is still 'unknown', "
            "not 'missing'",
            ge=1,
            le=600_000,
        ),
    ] = 10_000


_SETTINGS_NAMES = {
    "venue": "POLYEDGE_VENUE",
    "data_dir": "POLYEDGE_DATA_DIR",
    "config_path": "POLYEDGE_CONFIG",
}
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class Settings(
    Struct,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    rename=lambda n: _SETTINGS_NAMES.get(n, n.upper()),
):
    """Every runtime setting of every service, from `load_settings`. The fields of the nested
    structs are service settings (`settings.ingest.clob_ping_ms` is `INGEST_CLOB_PING_MS`)."""

    venue: Annotated[
        Literal["live", "sim"],
        _doc("`sim` runs everything against the simulated venue", case="lower"),
    ] = "live"
    dry_run: Annotated[bool, _doc("paper trading (first switch for real orders)")] = True
    enable_real_trading: Annotated[bool, _doc("second switch for real orders")] = False
    private_key: Annotated[
        Secret | None,
        _doc(
            "third switch: the wallet key (64 hex digits); never logged, stored or shown",
            expect="64 hex digits (optionally 0x-prefixed)",
        ),
    ] = None
    signature_type: Annotated[
        int,
        _doc(
            "0 EOA (the key's address holds the funds), 1 email/Magic proxy, 2 browser-wallet Safe, "
            "3 deposit wallet",
            expect="0, 1, 2 or 3",
            ge=0,
            le=3,
        ),
    ] = 0
    funder: (
        Annotated[
            str,
            _doc(
                "the wallet that holds pUSD and the tokens (0x + 40 hex digits); required for "
                "`SIGNATURE_TYPE` 1-3; with 0 only the key's own address (refused otherwise)",
                expect="an address: 0x and 40 hex digits",
                pattern=r"^0x[0-9a-fA-F]{40}$",
            ),
        ]
        | None
    ) = None
    relayer_api_key: Annotated[
        Secret | None,
        _doc(
            "relayer API key (polymarket.com settings) for gasless redemption and approvals of "
            "`SIGNATURE_TYPE` 1-3; never logged, stored or shown"
        ),
    ] = None
    relayer_api_key_address: (
        Annotated[
            str,
            _doc(
                "the address the relayer API key belongs to (0x + 40 hex digits)",
                expect="an address: 0x and 40 hex digits",
                pattern=r"^0x[0-9a-fA-F]{40}$",
            ),
        ]
        | None
    ) = None
    database_url: (
        Annotated[
            str,
            _doc(
                "the SQLite database (`sqlite:<path>`): ledger, positions, day P&L, halts, "
                "config history",
                default="`sqlite:<POLYEDGE_DATA_DIR>/trader.db`",
                expect="sqlite:<path>",
                pattern=r"^sqlite:.+$",
            ),
        ]
        | None
    ) = None
    log_level: Annotated[
        LogLevel, _doc("DEBUG, INFO, WARNING, ERROR or CRITICAL", case="upper")
    ] = "INFO"
    log_dir: Annotated[Path, _doc("the seven JSONL streams", default="`./logs`")] = Path("./logs")
    data_dir: Annotated[
        Path,
        _doc(
            "the tree's state: the database (`trader.db`, unless `DATABASE_URL`), the operator's "
            "`config.json`, bus sockets and locks (`run/`), captures",
            default="`./data`",
        ),
    ] = Path("./data")
    config_path: Annotated[
        Path | None,
        _doc(
            "the shipped strategy parameters (never written; the operator's changes go to "
            "`POLYEDGE_DATA_DIR/config.json`)",
            default="`config/config.json`",
        ),
    ] = None
    venues: VenueUrls = VenueUrls()
    bus: BusSettings = BusSettings()
    api: ObserveSettings = ObserveSettings()
    alerts: AlertSettings = AlertSettings()
    sim: SimSettings = SimSettings()
    ingest: IngestSettings = IngestSettings()
    execution: ExecutionSettings = ExecutionSettings()

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def database_path(self) -> Path:
        """The SQLite file: `DATABASE_URL`'s path, else `trader.db` in the data directory
        (`./data/trader.db` with the default data directory)."""
        if self.database_url is None:
            return self.data_dir / "trader.db"
        return Path(self.database_url.removeprefix("sqlite:"))

    @property
    def urls(self) -> dict[str, str]:
        """Venue URL by variable name: the one set, else the venue's default for `venue`."""
        base = sim_urls(self.sim.port) if self.venue == "sim" else dict(LIVE_URLS)
        for name, f in zip(
            VenueUrls.__struct_encode_fields__, VenueUrls.__struct_fields__, strict=True
        ):
            value = getattr(self.venues, f)
            if value is not None:
                base[name] = value.rstrip("/")
        return base

    def strategy_config_files(self) -> StrategyConfigFiles:
        """The strategy config's two files as these settings name them: the shipped defaults
        (`POLYEDGE_CONFIG` or `config/config.json`) and the operator's overrides in the data
        directory."""
        return StrategyConfigFiles(self.config_path, data_dir=self.data_dir)

    def bus_endpoint(self, name: str) -> str:
        """Endpoint of a bus stream (`ingest`, ..., `orders`, `control`): `POLYEDGE_BUS_<NAME>`
        or `ipc://` under data/run/. ValueError for a stream that does not exist."""
        if name not in BusSettings.__struct_fields__:
            raise ValueError(f"no bus stream {name!r}; known: {BusSettings.__struct_fields__}")
        override = getattr(self.bus, name)
        if override:
            return override
        return f"ipc://{self.run_dir.resolve()}/{name}.sock"


SETTINGS_GROUPS: tuple[type[Struct], ...] = (
    Settings,
    VenueUrls,
    BusSettings,
    ObserveSettings,
    AlertSettings,
    SimSettings,
    IngestSettings,
    ExecutionSettings,
)
_NESTED: dict[str, type[Struct]] = {  # Settings field -> its struct
    f.name: f.type.cls
    for f in msgspec.inspect.type_info(Settings).fields  # type: ignore[attr-defined]
    if isinstance(f.type, msgspec.inspect.StructType)
}
# Read by the test and benchmark harnesses, never by a service: known, so never reported.
TOOL_KEYS = {
    "POLYEDGE_ROOT": "root of an isolated tree (tests, `polyedge bench`)",
    "POLYEDGE_ENV_FILE": "the `.env` file to read (default `./.env`; `none`: no file; the tests set it)",
    "POLYEDGE_KEEP_CHAOS_DIR": "keep the chaos tests' temporary tree (tests)",
    "OBSERVE_SCREENSHOT_DIR": "keep the dashboard tests' screenshots here (tests)",
}
# A key with one of these prefixes in the environment is ours: unknown ones are reported. Every
# key in `.env` is ours.
SETTING_PREFIXES = (
    "POLYEDGE_",
    "INGEST_",
    "SIGNAL_",
    "STRATEGY_",
    "EXEC_",
    "OBSERVE_",
    "API_",
    "ALERT_",
    "SIM_",
    "LOG_",
)


class SettingSpec(Struct, frozen=True):
    """One environment variable: its name, Python field, default and documentation."""

    name: str
    group: type[Struct]
    field: str
    kind: Any  # msgspec.inspect type of the value (Metadata and Optional unwrapped)
    default: Any
    description: str
    default_doc: str | None
    expect: str | None
    case: str


def _unwrap(t: Any) -> tuple[Any, dict[str, Any], str]:
    """(innermost non-None type, merged `extra`, description) of an inspected field type."""
    extra: dict[str, Any] = {}
    desc = ""
    while True:
        if isinstance(t, msgspec.inspect.Metadata):
            extra.update(t.extra or {})
            desc = (t.extra_json_schema or {}).get("description", desc)
            t = t.type
        elif isinstance(t, msgspec.inspect.UnionType):
            rest = [x for x in t.types if not isinstance(x, msgspec.inspect.NoneType)]
            if len(rest) != 1:
                raise TypeError(f"setting type {t} is not X or X | None")
            t = rest[0]
        else:
            return t, extra, desc


def setting_specs() -> list[SettingSpec]:
    """Every runtime setting, in README order (shared settings first, then by service)."""
    out: list[SettingSpec] = []
    for group in SETTINGS_GROUPS:
        for f in msgspec.inspect.type_info(group).fields:  # type: ignore[attr-defined]
            if group is Settings and f.name in _NESTED:
                continue
            kind, extra, desc = _unwrap(f.type)
            out.append(
                SettingSpec(
                    f.encode_name,
                    group,
                    f.name,
                    kind,
                    f.default,
                    desc,
                    extra.get("default"),
                    extra.get("expect"),
                    extra.get("case", ""),
                )
            )
    return out


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_PRIVATE_KEY = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")


def _parse(spec: SettingSpec, raw: str) -> Any:
    """A raw string as the setting's Python value; ValueError(what was expected) when not."""
    k = spec.kind
    v = raw.strip()
    if spec.case == "upper":
        v = v.upper()
    elif spec.case == "lower":
        v = v.lower()
    if isinstance(k, msgspec.inspect.BoolType):
        if v.lower() in _TRUE:
            return True
        if v.lower() in _FALSE:
            return False
        raise ValueError("expected true or false")
    if isinstance(k, msgspec.inspect.IntType):
        try:
            return int(v)
        except ValueError:
            raise ValueError("expected a whole number") from None
    if isinstance(k, msgspec.inspect.FloatType):
        try:
            x = float(v)
        except ValueError:
            raise ValueError("expected a number") from None
        if not math.isfinite(x):
            raise ValueError("expected a finite number")
        return x
    if isinstance(k, msgspec.inspect.VarTupleType):
        return tuple(p.strip() for p in v.split(",") if p.strip())
    if isinstance(k, msgspec.inspect.CustomType) and k.cls is Path:
        return Path(v)
    if isinstance(k, msgspec.inspect.CustomType) and k.cls is Secret:
        if spec.name == "PRIVATE_KEY" and not _PRIVATE_KEY.match(v):
            raise ValueError(f"expected {spec.expect}")
        if spec.name == "ALERT_URLS":
            bad = [u for u in alert_url_list(Secret(v)) if "://" not in u]
            if bad:  # never echo a URL: it usually holds a token
                raise ValueError(f"expected {spec.expect}, {len(bad)} without a scheme")
        return Secret(v)
    if isinstance(k, msgspec.inspect.LiteralType):
        if v not in k.values:
            raise ValueError("expected one of " + ", ".join(map(str, k.values)))
        return v
    return v


def _check(spec: SettingSpec, value: Any) -> str | None:
    """The constraint error of one value (msgspec checks `Meta` constraints on conversion)."""
    try:
        msgspec.convert({spec.name: value}, spec.group, strict=True)
    except msgspec.ValidationError as e:
        if spec.expect:
            return f"expected {spec.expect}"
        msg = str(e).split(" - at ")[0]  # e.g. "Expected `int` >= 1"
        for typ, words in (("int", "a whole number"), ("float", "a number"), ("str", "text")):
            msg = msg.replace(f"Expected `{typ}`", f"expected {words}")
        return msg
    return None


def parse_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; `#` comments, blank lines, `export ` and matching quotes are allowed.
    An inline comment follows python-dotenv's rule (the `.env` format most tools read): in an
    unquoted value a `#` after whitespace starts a comment (`LOG_DIR=/tmp/x # logs` is
    `/tmp/x`; `API_TOKEN=a#b` is `a#b`); a quoted value is the text between its quotes, with
    only whitespace or a comment after them. {} when the file does not exist (`load_settings`
    decides whether that is an error). ConfigError naming the file and line for a line that is
    not KEY=VALUE or a quote left open, and naming the key for a key set twice."""
    out: dict[str, str] = {}
    first: dict[str, int] = {}
    if not path.exists():
        return out
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(str(path), {"$": f"cannot read as UTF-8 text: {e}"}) from None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.replace("_", "").isalnum():
            raise ConfigError(f"{path}:{n}", {"line": f"expected KEY=VALUE, got {raw!r}"})
        if key in first:  # which one was meant? refused rather than the last silently winning
            raise ConfigError(
                f"{path}:{n}", {key: f"set twice (lines {first[key]} and {n}); keep one"}
            )
        first[key] = n
        value = value.strip()
        if value[:1] in ("'", '"'):
            end = value.find(value[0], 1)
            rest = value[end + 1 :].strip() if end > 0 else ""
            if end < 0 or (rest and not rest.startswith("#")):
                raise ConfigError(
                    f"{path}:{n}",
                    {key: f"a quoted value must end with its quote, then only a comment: {raw!r}"},
                )
            value = value[1:end]
        else:
            value = _INLINE_COMMENT.sub("", value)
        out[key] = value
    return out


_INLINE_COMMENT = re.compile(r"\s+#.*$")  # python-dotenv: ` #` ends an unquoted value


def unknown_settings(
    dotenv_keys: Iterable[str], environ_keys: Iterable[str], dotenv: Path | None = None
) -> list[str]:
    """A warning for every key in `.env`, and every `SETTING_PREFIXES` key in the environment,
    that is not a setting: the key, where it was, and a known setting only when it is a near miss
    (difflib ratio >= 0.8, e.g. INGEST_STABLE_SEC -> INGEST_STABLE_S)."""
    known = [s.name for s in setting_specs()]
    ok = set(known) | set(TOOL_KEYS)
    found: dict[str, str] = {}
    for key in environ_keys:
        if key.startswith(SETTING_PREFIXES) and key not in ok:
            found[key] = "the environment"
    for key in dotenv_keys:
        if key not in ok:
            found[key] = str(dotenv or ".env")
    out = []
    for key, where in sorted(found.items()):
        prefix = next((p for p in SETTING_PREFIXES if key.startswith(p)), "")
        same = [k for k in known if prefix and k.startswith(prefix)]  # INGEST_X: an INGEST_ one
        # only a real near-miss (a typo) is suggested: FOO_BAR has no neighbour worth naming
        closest = difflib.get_close_matches(key, same or known, n=1, cutoff=0.8)
        hint = f" (did you mean {closest[0]}?)" if closest else ""
        out.append(f"unknown setting {key} in {where}, ignored{hint}")
    return out


def under_supervisord(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process was started by supervisord, which sets SUPERVISOR_ENABLED=1 in its
    programs' environment (not a setting: read here as the one reader of the environment)."""
    env = os.environ if environ is None else environ
    return bool(env.get("SUPERVISOR_ENABLED"))


def supervisor_server_url(environ: Mapping[str, str] | None = None) -> str | None:
    """The URL of the supervisord that started this process, or None when it named none (not
    under supervisord, or a supervisord with no server). supervisord sets
    `SUPERVISOR_SERVER_URL` in every program's environment: "The URL passed in the environment
    to the subprocess process as SUPERVISOR_SERVER_URL ... If this is set to AUTO, or is unset,
    supervisor will automatically construct a server URL, giving preference to a server that
    listens on UNIX domain sockets" (supervisord.org/configuration.html, `[program:x]`
    `serverurl`; supervisor 4.3 `process.py` `Subprocess._spawn_as_child`). It is where
    supervisord.conf really put the socket, whatever `POLYEDGE_DATA_DIR` says (not a setting:
    read here as the one reader of the environment)."""
    env = os.environ if environ is None else environ
    return env.get("SUPERVISOR_SERVER_URL") or None


def _warn_stderr(message: str) -> None:
    sys.stderr.write(f"polyedge: warning: {message}\n")
    sys.stderr.flush()


def dotenv_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """The `.env` file settings are read from: `POLYEDGE_ENV_FILE` if set (`none` or empty: no
    file), else `.env` in the working directory. The test suite sets `none`, so an operator's
    `.env` at the repository root never changes what is tested."""
    value = (os.environ if environ is None else environ).get("POLYEDGE_ENV_FILE")
    if value is None:
        return Path(".env")
    return None if value.strip().lower() in ("", "none") else Path(value)


_DEFAULT_DOTENV = Path(".env")


def settings_source(dotenv: Path | None) -> str:
    """Where runtime settings were read, for an error: the environment and the `.env` file
    actually read (`dotenv_path()`: `POLYEDGE_ENV_FILE` may name another), e.g.
    "the environment and /tmp/x.env"; the environment alone when there is no such file."""
    if dotenv is not None and dotenv.exists():
        return f"the environment and {dotenv}"
    return "the environment"


def load_settings(
    environ: Mapping[str, str] | None = None,
    dotenv: Path | None = _DEFAULT_DOTENV,
    warn: Callable[[str], None] | None = _warn_stderr,
) -> Settings:
    """Every runtime setting, read once: the `.env` file (`dotenv`; by default `dotenv_path()`:
    `./.env`, the repository root under supervisord, unless `POLYEDGE_ENV_FILE` names another or
    `none`), then `environ` (default: the process environment), which wins. An empty value means
    the default.

    Raises ConfigError naming every bad variable with what was expected (a secret's value is never
    echoed), a named `.env` file that does not exist, and a key the file sets twice. Calls `warn` with one message per unknown key (see `unknown_settings`)."""
    process = os.environ if environ is None else environ
    from_env = dotenv is _DEFAULT_DOTENV and "POLYEDGE_ENV_FILE" in process
    named = dotenv is not _DEFAULT_DOTENV or from_env
    if dotenv is _DEFAULT_DOTENV:
        dotenv = dotenv_path(process)
    if dotenv is not None and named and not dotenv.exists():
        # a named file (POLYEDGE_ENV_FILE, or the caller's) that is missing is a typo, never "no
        # settings": only the default ./.env may be absent
        raise ConfigError(
            str(dotenv),
            {"POLYEDGE_ENV_FILE" if from_env else "$": f"{str(dotenv)!r} does not exist"},
        )
    from_file = parse_dotenv(dotenv) if dotenv else {}
    env = {**from_file, **process}
    if warn is not None:
        for message in unknown_settings(from_file, process, dotenv):
            warn(message)
    errors: dict[str, str] = {}
    values: dict[type[Struct], dict[str, Any]] = {g: {} for g in SETTINGS_GROUPS}
    for spec in setting_specs():
        raw = env.get(spec.name, "")
        if not raw.strip():
            continue
        shown = (
            ""
            if isinstance(spec.kind, msgspec.inspect.CustomType) and spec.kind.cls is Secret
            else f", got {raw.strip()!r}"
        )
        try:
            value = _parse(spec, raw)
        except ValueError as e:
            errors[spec.name] = f"expected {spec.expect}{shown}" if spec.expect else f"{e}{shown}"
            continue
        problem = _check(spec, value)
        if problem:
            errors[spec.name] = f"{problem}{shown}"
            continue
        values[spec.group][spec.field] = value
    top = values[Settings]
    if top.get("signature_type", 0) != 0 and top.get("funder") is None and "FUNDER" not in errors:
        errors["SIGNATURE_TYPE"] = (
            f"{top['signature_type']} needs FUNDER, the wallet that holds pUSD and the tokens"
        )
    key, funder = top.get("private_key"), top.get("funder")
    if top.get("signature_type", 0) == 0 and key is not None and funder and "FUNDER" not in errors:
        from eth_account import Account  # only when a key is set: the services without one
        # never load it

        own = Account.from_key(key.reveal()).address
        if funder.lower() != own.lower():
            errors["FUNDER"] = (
                f"{funder} is not the key's own address, which holds the funds with "
                "SIGNATURE_TYPE=0 (EOA): set the SIGNATURE_TYPE of that wallet, or remove FUNDER"
            )
    errors.update(_cross_field_errors(values, errors))
    if errors:
        raise ConfigError(settings_source(dotenv), errors)
    nested = {f: group(**values[group]) for f, group in _NESTED.items()}
    return Settings(**values[Settings], **nested)


def _cross_field_errors(
    values: dict[type[Struct], dict[str, Any]], errors: dict[str, str]
) -> dict[str, str]:
    """Settings valid alone but not together: {variable: problem} (the simulated venue on the
    API's port, a first backoff above the cap, a non-loopback `API_HOST` without `API_TOKEN`:
    every service refuses these, so none trades without the API's emergency stop). `values` are the parsed
    settings by group (a missing one is its default); a variable in `errors` already has its own
    error and is not compared."""
    out: dict[str, str] = {}

    def value(group: type[Struct], field: str, name: str) -> Any:
        if name in errors:
            return None
        return values[group].get(field, getattr(group(), field))  # else the default

    sim_port, api_port = (
        value(SimSettings, "port", "SIM_PORT"),
        value(ObserveSettings, "port", "API_PORT"),
    )
    if sim_port is not None and sim_port == api_port:
        out["SIM_PORT"] = (
            f"{sim_port} is also API_PORT (the dashboard's port): the simulated venue and observe "
            "cannot listen on the same port; give one of them another"
        )
    host = value(ObserveSettings, "host", "API_HOST")
    token = value(ObserveSettings, "token", "API_TOKEN")
    if host is not None and host not in LOOPBACK_HOSTS and token is None:
        if "API_TOKEN" not in errors:
            out["API_HOST"] = (
                f"{host} is not loopback and API_TOKEN is not set: refusing to expose the API "
                "(emergency stop, config, force exit) without a token; set API_TOKEN or "
                "API_HOST=127.0.0.1"
            )
    base = value(IngestSettings, "backoff_base_ms", "INGEST_BACKOFF_BASE_MS")
    cap = value(IngestSettings, "backoff_max_ms", "INGEST_BACKOFF_MAX_MS")
    if base is not None and cap is not None and base > cap:
        out["INGEST_BACKOFF_BASE_MS"] = (
            f"{base} is above INGEST_BACKOFF_MAX_MS ({cap}): the first reconnect delay cannot "
            "exceed the longest"
        )
    return out


def _markdown_default(spec: SettingSpec) -> str:
    if spec.default_doc is not None:
        return spec.default_doc
    d = spec.default
    if d is None:
        return "(unset)"
    if isinstance(d, bool):
        return f"`{str(d).lower()}`"
    return f"`{d}`"


def settings_markdown() -> str:
    """README's configuration table: every variable, its default and meaning, by group."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for spec in setting_specs():
        desc = spec.description.replace("|", "\\|")
        rows.append(f"| `{spec.name}` | {_markdown_default(spec)} | {desc} |")
    return "\n".join(rows) + "\n"


def settings_document(settings: Settings) -> dict[str, Any]:
    """The effective settings by variable name (venue URLs and bus endpoints resolved, secrets
    shown as `***`), as `polyedge settings` prints them."""
    out: dict[str, Any] = {}
    urls = settings.urls
    for spec in setting_specs():
        if spec.group is VenueUrls:
            out[spec.name] = urls[spec.name]
            continue
        if spec.group is BusSettings:
            out[spec.name] = settings.bus_endpoint(spec.field)
            continue
        if spec.name == "POLYEDGE_CONFIG":
            out[spec.name] = str(settings.config_path or DEFAULT_CONFIG_PATH)
            continue
        if spec.name == "DATABASE_URL":
            out[spec.name] = f"sqlite:{settings.database_path}"
            continue
        holder = (
            settings
            if spec.group is Settings
            else getattr(settings, next(f for f, g in _NESTED.items() if g is spec.group))
        )
        v = getattr(holder, spec.field)
        if isinstance(v, Secret):
            v = "***"
        elif isinstance(v, Path):
            v = str(v)
        elif isinstance(v, tuple):
            v = list(v)
        out[spec.name] = v
    return out


def alert_url_list(urls: Secret | None) -> list[str]:
    """The apprise URLs in `ALERT_URLS` (comma- or whitespace-separated), in order."""
    if urls is None:
        return []
    return [u for u in urls.reveal().replace(",", " ").split() if u]


def trading_book(settings: Settings) -> tuple[str, str]:
    """The book a tree's ledger, positions, day counters and halts belong to: (venue, mode) with
    venue `sim` | `live` (POLYEDGE_VENUE) and mode `real` only when all three switches let real
    orders go (DRY_RUN=false, ENABLE_REAL_TRADING=true, PRIVATE_KEY set), else `paper`.
    Switching either starts (or resumes) another book: nothing carries over."""
    real = (
        not settings.dry_run and settings.enable_real_trading and settings.private_key is not None
    )
    return settings.venue, ("real" if real else "paper")
