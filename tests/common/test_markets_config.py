"""The `markets` key of the strategy config (issue 17): parsed into MarketSpec, bad entries
refused with each one named, per-market overrides applied."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.config import (
    ConfigError,
    MarketSpec,
    StrategyConfig,
    StrategyConfigFiles,
    config_to_dict,
    enabled_markets,
    market_specs,
    strategy_config_for,
    validate_config_patch,
    validate_strategy_config,
)
from common.schema import ControlReply, UpdateConfig
from services.strategy.core import StrategyCore
from tests.conftest import REPO


def test_without_the_key_one_market_btc_5m() -> None:
    (spec,) = market_specs({})
    assert (spec.asset, spec.window, spec.window_s, spec.enabled, spec.key) == (
        "btc",
        "5m",
        300,
        True,
        "btc-5m",
    )
    assert market_specs(StrategyConfig()) == (spec,)
    assert market_specs(validate_strategy_config({})) == (spec,)


def test_entries_with_overrides_and_enabled() -> None:
    doc = {
        "markets": [
            {"asset": "btc", "window": "5m"},
            {"asset": "eth", "window": "15m", "enabled": False, "stake_per_trade_usd": 3},
            {"asset": "sol", "window": "1h", "min_edge_pct": 0.08},
        ]
    }
    cfg = validate_strategy_config(doc)
    specs = market_specs(cfg)
    assert [s.key for s in specs] == ["btc-5m", "eth-15m", "sol-1h"]
    assert [s.window_s for s in specs] == [300, 900, 3600]
    assert [s.key for s in enabled_markets(cfg)] == ["btc-5m", "sol-1h"]
    eth = specs[1]
    assert eth.overrides == {"stake_per_trade_usd": 3} and eth.enabled is False
    eth_cfg = strategy_config_for(cfg, eth)
    assert eth_cfg.stake_per_trade_usd == 3.0 and isinstance(eth_cfg.stake_per_trade_usd, float)
    assert eth_cfg.min_edge_pct == cfg.min_edge_pct
    assert strategy_config_for(cfg, specs[2]).min_edge_pct == 0.08
    assert strategy_config_for(cfg, specs[0]) == cfg
    assert isinstance(eth, MarketSpec)


def test_every_bad_entry_is_named() -> None:
    doc = {
        "markets": [
            {"asset": "ETH", "window": "5m"},
            {"asset": "sol", "window": "2m"},
            {"asset": "xrp", "window": "5m", "stake_per_trade_usd": -1, "bogus": 1},
            {"asset": "btc", "window": "5m", "enabled": "yes"},
            {"asset": "btc", "window": "15m"},
            {"asset": "btc", "window": "15m"},
            "btc-5m",
            {"window": "5m"},
        ]
    }
    with pytest.raises(ConfigError) as e:
        validate_strategy_config(doc, "my.json")
    errors = e.value.errors
    assert e.value.source == "my.json"
    assert "ETH" in errors["markets[0].asset"]
    assert "2m" in errors["markets[1].window"] and "15m" in errors["markets[1].window"]
    assert "markets[2].stake_per_trade_usd" in errors
    assert errors["markets[2].bogus"] == "unknown field"
    assert "markets[3].enabled" in errors
    assert "duplicate" in errors["markets[5]"] and "btc-15m" in errors["markets[5]"]
    assert "expected an object" in errors["markets[6]"]
    assert "None" in errors["markets[7].asset"]
    assert "markets[4]" not in errors and "markets[4].window" not in errors
    with pytest.raises(ConfigError) as e:
        validate_strategy_config({"markets": {"asset": "btc"}})
    assert "markets" in e.value.errors
    with pytest.raises(ConfigError) as e:
        market_specs({"markets": [{"asset": "btc", "window": "5m", "markets": []}]})
    assert "markets[0].markets" in e.value.errors


def test_an_empty_market_list_is_refused_naming_markets() -> None:
    """`"markets": []` would silently stop every market (positions open included): refused,
    in a file, a patch and an operator's update, which changes nothing."""
    with pytest.raises(ConfigError) as e:
        validate_strategy_config({"markets": []})
    assert list(e.value.errors) == ["markets"] and "empty" in e.value.errors["markets"]
    assert market_specs({"markets": []}) == ()  # a list of extra markets may be empty (SIM_MARKETS)
    with pytest.raises(ConfigError) as e:
        validate_config_patch({"markets": []})
    assert "markets" in e.value.errors
    core = StrategyCore(validate_strategy_config({"markets": [{"asset": "eth", "window": "5m"}]}))
    out = core.control(UpdateConfig(request_id="r", config={"markets": []}))
    (reply,) = [m for _, m in out if isinstance(m, ControlReply)]
    # field_errors: observe's POST /api/config answers 422 naming the field
    assert not reply.ok and "markets" in reply.field_errors
    assert list(core.market_states) == ["eth-5m"]


def test_a_patch_may_replace_the_markets_and_is_checked() -> None:
    assert validate_config_patch({"markets": [{"asset": "eth", "window": "5m"}]})
    with pytest.raises(ConfigError) as e:
        validate_config_patch({"markets": [{"asset": "eth", "window": "7m"}]})
    assert "markets[0].window" in e.value.errors


def test_shipped_eight_market_config(tmp_path) -> None:
    """config/markets-8.json: 4 assets x 5m/15m, valid, loadable as POLYEDGE_CONFIG."""
    loaded = StrategyConfigFiles(REPO / "config" / "markets-8.json", data_dir=tmp_path).load()
    keys = [s.key for s in market_specs(loaded.config)]
    assert sorted(keys) == sorted(
        f"{a}-{w}" for a in ("btc", "eth", "sol", "xrp") for w in ("5m", "15m")
    )
    shipped = json.loads((REPO / "config" / "config.json").read_text())
    assert "markets" not in shipped  # the default tree stays the single btc-5m market


# Fields a shipped config in config/ sets differently from config/config.json on purpose, with
# why (file name -> {field: reason}). A file named with POLYEDGE_CONFIG stands alone over the
# built-in defaults (StrategyConfigFiles: it replaces config/config.json, it is not layered on
# it), so a field it leaves out is the built-in value, not config.json's fitted one: it must
# repeat them. An entry here is the only way to differ.
ON_PURPOSE: dict[str, dict[str, str]] = {
    "markets-8.json": {"markets": "its point: BTC, ETH, SOL and XRP, each 5m and 15m"},
}


def shipped_configs() -> list[Path]:
    """Every strategy config shipped in config/ (top level *.json; grafana/ and prometheus/
    hold other tools' files)."""
    return sorted((REPO / "config").glob("*.json"))


@pytest.mark.parametrize("path", shipped_configs(), ids=lambda p: p.name)
def test_every_shipped_config_validates_and_keeps_the_fitted_parameters(
    path: Path, tmp_path: Path
) -> None:
    """Each file loads as POLYEDGE_CONFIG (every field valid) and, in force, equals
    config/config.json's config in force on every field (the fitted model and blend
    parameters above all) except those ON_PURPOSE names with a reason."""
    base = StrategyConfigFiles(REPO / "config" / "config.json", data_dir=tmp_path).load()
    loaded = StrategyConfigFiles(path, data_dir=tmp_path).load()
    why = ON_PURPOSE.get(path.name, {})
    assert all(isinstance(r, str) and r.strip() for r in why.values()), "say why"
    ours, theirs = config_to_dict(loaded.config), config_to_dict(base.config)
    differs = {k: (ours.get(k), theirs.get(k)) for k in ours if ours.get(k) != theirs.get(k)}
    unexplained = {k: v for k, v in differs.items() if k not in why}
    assert not unexplained, (
        f"{path.name} contradicts config/config.json (its value, config.json's) on "
        f"{unexplained}: repeat config.json's value, or add the field to ON_PURPOSE with why"
    )
    stale = sorted(k for k in why if k not in differs)
    assert not stale, f"ON_PURPOSE names {stale} for {path.name} but it no longer differs"
