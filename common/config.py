"""Configuration: strategy parameters (shipped defaults in `config/config.json`, the operator's
changes in `<data dir>/config.json`, hot-reloadable) and runtime settings (`.env` at the
repository root, overridden by the process environment).

Both are validated as a whole at load: an unknown key, a wrong type or an out-of-range value
raises `ConfigError` naming every offending field, and services exit non-zero on it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import typing
from dataclasses import dataclass, field
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
    min_signal_score: Pct = 0.12
    min_edge_pct: Pct = 0.05
    take_profit_pct: Annotated[float, Meta(gt=0.0, le=10.0)] = 0.25
    stop_loss_pct: Annotated[float, Meta(gt=0.0, le=1.0)] = 0.18
    entry_window_min_sec: Seconds = 45
    min_seconds_before_close: Seconds = 30
    max_consecutive_losses: Annotated[int, Meta(ge=1, le=1000)] = 3
    stale_after_ms: Annotated[int, Meta(ge=100, le=600_000)] = 3000
    order_type: Literal["FOK", "FAK"] = "FOK"
    intent_ttl_ms: Annotated[int, Meta(ge=10, le=60_000)] = 2000
    max_entry_price: Annotated[float, Meta(gt=0.0, lt=1.0)] = 0.95
    limit_slippage: Annotated[float, Meta(ge=0.0, le=0.5)] = 0.02
    dry_run_latency_ms: Annotated[int, Meta(ge=0, le=10_000)] = 0
    # collateral in the open position plus those awaiting resolution, plus the next stake
    max_capital_at_risk_usd: Usd = 20.0
    # no entry on a price to beat that is not from the settlement source (Gamma, the TWAP or
    # Chainlink feed): a Binance estimate differs by the basis (PROTOCOLS.md section 7)
    require_settlement_price_to_beat: bool = True
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


def validate_strategy_config(doc: Any, source: str = "config") -> StrategyConfig:
    """Validate a whole config document; raise ConfigError listing EVERY bad field."""
    if not isinstance(doc, dict):
        raise ConfigError(source, {"$": f"expected a JSON object, got {type(doc).__name__}"})
    errors: dict[str, str] = {}
    known = set(StrategyConfig.__struct_fields__)
    for key, value in doc.items():
        if key not in known:
            errors[str(key)] = "unknown field"
            continue
        try:  # each field alone, so one bad field does not hide the next
            msgspec.convert({key: value}, StrategyConfig, strict=True)
        except msgspec.ValidationError as e:
            errors[key] = str(e).split(" - at ")[0]
    if errors:
        raise ConfigError(source, errors)
    return msgspec.convert(doc, StrategyConfig, strict=True)


def load_strategy_config(
    path: str | os.PathLike[str] | None = None, *, data_dir: str | os.PathLike[str] | None = None
) -> StrategyConfig:
    """The effective strategy config.

    With `path`: that file alone over the built-in defaults (no operator overrides). Without:
    the shipped defaults (`POLYEDGE_CONFIG` or `config/config.json`) with the operator's
    overrides from the data directory (`data_dir`, default `POLYEDGE_DATA_DIR` or `./data`)
    merged on top (`StrategyConfigFiles`). Raises ConfigError
    naming the file and every bad field; a missing default file means the built-in defaults.
    """
    if path is not None:
        return StrategyConfigFiles(path, use_overrides=False).load().config
    return StrategyConfigFiles(data_dir=data_dir).load().config


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
        raise ConfigError(source, {"$": f"expected a JSON object, got {type(patch).__name__}"})
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
    """Where the operator's config changes live: `<data dir>/config.json` (untracked)."""
    base = data_dir or os.environ.get("POLYEDGE_DATA_DIR") or "./data"
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

    - defaults: `POLYEDGE_CONFIG` or `config/config.json`, tracked in git; the running system
      never writes it.
    - overrides: `<POLYEDGE_DATA_DIR>/config.json`, only the fields the operator changed (through
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
    ) -> None:
        self.explicit = bool(defaults_path or os.environ.get("POLYEDGE_CONFIG"))
        self.defaults_path = Path(
            defaults_path or os.environ.get("POLYEDGE_CONFIG") or DEFAULT_CONFIG_PATH
        )
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
        """Read and validate both layers. ConfigError names the file and every bad field."""
        p = self.defaults_path
        if p.exists():
            defaults = validate_strategy_config(read_config_file(p), str(p))
        elif self.explicit:
            raise ConfigError(str(p), {"$": "file not found"})
        else:
            defaults = StrategyConfig()
        defaults_doc = config_to_dict(defaults)
        overrides: dict[str, Any] = {}
        o = self.overrides_path
        if o is not None and o.exists():
            doc = read_config_file(o)
            validate_strategy_config(doc, str(o))  # every field on its own, named
            overrides = dict(doc)
        config = validate_strategy_config({**defaults_doc, **overrides}, str(o or p))
        return LoadedConfig(config, defaults_doc, overrides, p, o)

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


def read_config_file(p: Path) -> Any:
    """The JSON document in a config file; ConfigError (naming the file) when it is not one."""
    try:
        return json.loads(p.read_text(encoding="utf-8"))
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
}


def sim_urls(port: int, host: str = "127.0.0.1") -> dict[str, str]:
    """Where the simulated venue serves each venue on its one port."""
    return {
        "BINANCE_WS_URL": f"ws://{host}:{port}",
        "POLYMARKET_WS_URL": f"ws://{host}:{port}/ws",
        "GAMMA_API_URL": f"http://{host}:{port}/gamma",
        "CLOB_API_URL": f"http://{host}:{port}/clob",
        "PRICE_FEED_WS_URL": f"ws://{host}:{port}/rtds",
    }


@dataclass(frozen=True)
class Settings:
    venue: Literal["live", "sim"] = "live"
    dry_run: bool = True
    enable_real_trading: bool = False
    private_key: Secret | None = None
    database_url: str = "sqlite:./data/trader.db"
    log_level: str = "INFO"
    log_dir: Path = Path("./logs")
    data_dir: Path = Path("./data")
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    api_token: Secret | None = None
    sim_port: int = 8765
    sim_seed: int = 1
    sim_window_seconds: int = 300
    urls: dict[str, str] = field(default_factory=lambda: dict(LIVE_URLS))
    # apprise URLs, comma- or space-separated (they usually hold tokens: a Secret)
    alert_urls: Secret | None = None
    alert_feed_stale_s: int = 30  # a needed feed stale this long is an alert

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def database_path(self) -> Path:
        return Path(self.database_url.removeprefix("sqlite:"))

    def bus_endpoint(self, name: str) -> str:
        """Endpoint of a bus stream: `POLYEDGE_BUS_<NAME>` or ipc:// under data/run/."""
        override = os.environ.get(f"POLYEDGE_BUS_{name.upper()}")
        if override:
            return override
        return f"ipc://{self.run_dir.resolve()}/{name}.sock"


def parse_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; `#` comments, blank lines, `export ` and matching quotes are allowed."""
    out: dict[str, str] = {}
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
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key] = value
    return out


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def load_settings(
    environ: dict[str, str] | None = None, dotenv: Path | None = Path(".env")
) -> Settings:
    """Settings from `.env` then the environment (which wins). Raises ConfigError naming fields."""
    env: dict[str, str] = parse_dotenv(dotenv) if dotenv else {}
    env.update(os.environ if environ is None else environ)
    errors: dict[str, str] = {}

    def boolean(name: str, default: bool) -> bool:
        v = env.get(name, "").strip().lower()
        if v == "":
            return default
        if v in _TRUE:
            return True
        if v in _FALSE:
            return False
        errors[name] = f"expected true or false, got {env[name]!r}"
        return default

    def integer(name: str, default: int, lo: int, hi: int) -> int:
        v = env.get(name, "").strip()
        if v == "":
            return default
        try:
            n = int(v)
        except ValueError:
            errors[name] = f"expected an integer, got {v!r}"
            return default
        if not lo <= n <= hi:
            errors[name] = f"must be between {lo} and {hi}, got {n}"
        return n

    def secret(name: str) -> Secret | None:
        v = env.get(name, "").strip()
        return Secret(v) if v else None

    venue = env.get("POLYEDGE_VENUE", "live").strip().lower() or "live"
    if venue not in ("live", "sim"):
        errors["POLYEDGE_VENUE"] = f"expected live or sim, got {venue!r}"
        venue = "live"
    log_level = env.get("LOG_LEVEL", "INFO").strip().upper() or "INFO"
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        errors["LOG_LEVEL"] = f"expected DEBUG, INFO, WARNING, ERROR or CRITICAL, got {log_level!r}"
    database_url = env.get("DATABASE_URL", "").strip() or "sqlite:./data/trader.db"
    if not database_url.startswith("sqlite:") or database_url == "sqlite:":
        errors["DATABASE_URL"] = f"expected sqlite:<path>, got {database_url!r}"
    api_host = env.get("API_HOST", "").strip() or "127.0.0.1"
    sim_port = integer("SIM_PORT", 8765, 1, 65535)
    urls = dict(sim_urls(sim_port) if venue == "sim" else LIVE_URLS)
    for name in urls:
        v = env.get(name, "").strip()
        if v:
            if not v.startswith(("ws://", "wss://", "http://", "https://")):
                errors[name] = f"expected a ws(s):// or http(s):// URL, got {v!r}"
            urls[name] = v.rstrip("/")
    private_key = secret("PRIVATE_KEY")
    if private_key is not None:
        hexpart = private_key.reveal().removeprefix("0x")
        if len(hexpart) != 64 or any(c not in "0123456789abcdefABCDEF" for c in hexpart):
            errors["PRIVATE_KEY"] = (
                "expected 64 hex digits (optionally 0x-prefixed)"  # never echo it
            )
    alert_urls = secret("ALERT_URLS")
    if alert_urls is not None:
        bad = [u for u in alert_url_list(alert_urls) if "://" not in u]
        if bad:  # never echo a URL: it usually holds a token
            errors["ALERT_URLS"] = f"expected apprise URLs (scheme://...), {len(bad)} without a scheme"
    settings = Settings(
        venue=venue,  # type: ignore[arg-type]
        dry_run=boolean("DRY_RUN", True),
        enable_real_trading=boolean("ENABLE_REAL_TRADING", False),
        private_key=private_key,
        database_url=database_url,
        log_level=log_level,
        log_dir=Path(env.get("LOG_DIR", "").strip() or "./logs"),
        data_dir=Path(env.get("POLYEDGE_DATA_DIR", "").strip() or "./data"),
        api_host=api_host,
        api_port=integer("API_PORT", 8080, 1, 65535),
        api_token=secret("API_TOKEN"),
        sim_port=sim_port,
        sim_seed=integer("SIM_SEED", 1, 0, 2**63 - 1),
        sim_window_seconds=integer("SIM_WINDOW_SECONDS", 300, 2, 86_400),
        urls=urls,
        alert_urls=alert_urls,
        alert_feed_stale_s=integer("ALERT_FEED_STALE_S", 30, 1, 86_400),
    )
    if errors:
        raise ConfigError("environment/.env", errors)
    return settings


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
