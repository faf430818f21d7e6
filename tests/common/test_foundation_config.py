"""Configuration: every kind of bad value is refused with its field named, at load and at start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.config import (
    ConfigError,
    Secret,
    StrategyConfig,
    StrategyConfigFiles,
    config_diff,
    config_hash,
    config_to_dict,
    load_settings,
    load_strategy_config,
    merge_config_patch,
    validate_config_patch,
    validate_strategy_config,
)
from tests.conftest import REPO


def test_shipped_config_is_valid_and_matches_the_seed_defaults() -> None:
    shipped = load_strategy_config(REPO / "config" / "config.json")
    # the model's parameters ship as fitted on real data (`polyedge calibrate --fit`, README
    # "Does it have an edge?"); the built-ins keep the seed's model alone (unit tests' world)
    fitted = {
        "vol_halflife_s",
        "vol_scale",
        "momentum_horizon_s",
        "momentum_weight",
        "blend_market_weight",
        "blend_model_weight",
        "blend_bias",
    }
    built_in = config_to_dict(StrategyConfig())
    assert {k: v for k, v in config_to_dict(shipped).items() if k not in fitted} == {
        k: v for k, v in built_in.items() if k not in fitted
    }
    # the blend's fit chose the market itself (bias 0, market weight 1, model weight 0): its
    # bias is then the built-in 0
    assert all(config_to_dict(shipped)[k] != built_in[k] for k in fitted - {"blend_bias"})
    seed = {
        "stake_per_trade_usd": 5.0,
        "max_daily_loss_usd": 10.0,
        "max_trades_per_day": 5,
        "min_signal_score": 0.12,
        "min_edge_pct": 0.05,
        "take_profit_pct": 0.25,
        "stop_loss_pct": 0.18,
        "entry_window_min_sec": 45,
        "min_seconds_before_close": 30,
    }
    for k, v in seed.items():
        assert getattr(StrategyConfig(), k) == v, k


@pytest.mark.parametrize(
    ("doc", "field", "words"),
    [
        ({"stake_pre_trade_usd": 5}, "stake_pre_trade_usd", "unknown field"),
        ({"max_trades_per_day": "5"}, "max_trades_per_day", "Expected `int`, got `str`"),
        ({"max_trades_per_day": 2.5}, "max_trades_per_day", "must be a whole number"),
        ({"max_trades_per_day": 2.0}, "max_trades_per_day", "must be a whole number"),
        ({"min_signal_score": 1.5}, "min_signal_score", "<= 1.0"),
        ({"stake_per_trade_usd": -5}, "stake_per_trade_usd", "> 0.0"),
        ({"stop_loss_pct": 0}, "stop_loss_pct", "> 0.0"),
        ({"order_type": "GTC"}, "order_type", "Invalid enum value 'GTC'"),
        ({"entry_window_min_sec": None}, "entry_window_min_sec", "got `null`"),
        ({"take_profit_pct": True}, "take_profit_pct", "got `bool`"),
    ],
)
def test_each_kind_of_bad_value_names_its_field(doc: dict, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as e:
        validate_strategy_config(doc)
    assert list(e.value.errors) == [field]
    assert words in e.value.errors[field]
    assert field in str(e.value)


def test_every_bad_field_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as e:
        validate_strategy_config({"min_edge_pct": -1, "bogus": 1, "max_daily_loss_usd": "x"})
    assert set(e.value.errors) == {"min_edge_pct", "bogus", "max_daily_loss_usd"}


def test_not_an_object_and_not_json(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected a JSON object"):
        validate_strategy_config([1, 2])
    p = tmp_path / "c.json"
    p.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_strategy_config(p)


def test_merge_patch_sets_keeps_and_resets_fields() -> None:
    """RFC 7396 on the flat config: a member sets, null goes back to the default, absent keeps."""
    defaults = config_to_dict(StrategyConfig())
    current = {**defaults, "stake_per_trade_usd": 3.0, "max_trades_per_day": 7}
    merged = merge_config_patch(
        current, {"min_edge_pct": 0.1, "max_trades_per_day": None}, defaults
    )
    assert merged == {**defaults, "stake_per_trade_usd": 3.0, "min_edge_pct": 0.1}
    assert merge_config_patch(current, {}, defaults) == current
    assert config_diff(current, merged) == {
        "max_trades_per_day": [7, defaults["max_trades_per_day"]],
        "min_edge_pct": [defaults["min_edge_pct"], 0.1],
    }
    with pytest.raises(ConfigError) as e:
        validate_config_patch({"bogus": None, "min_edge_pct": 2, "stake_per_trade_usd": None})
    assert set(e.value.errors) == {"bogus", "min_edge_pct"}
    with pytest.raises(ConfigError, match="expected a JSON object"):
        validate_config_patch([("min_edge_pct", 0.1)])


def test_overrides_merge_onto_the_shipped_defaults_and_never_write_them(tmp_path: Path) -> None:
    defaults = tmp_path / "config.json"
    defaults.write_text(json.dumps({"stake_per_trade_usd": 4.0, "max_trades_per_day": 9}))
    before = defaults.read_bytes()
    files = StrategyConfigFiles(defaults, tmp_path / "data" / "config.json")
    first = files.load()
    assert first.overrides == {} and first.config.stake_per_trade_usd == 4.0
    assert first.defaults["min_edge_pct"] == StrategyConfig().min_edge_pct  # built-in below
    files.write_overrides({"min_edge_pct": 0.2})
    assert not files.changed()  # our own write is not an edit
    loaded = files.load()
    assert loaded.config.min_edge_pct == 0.2 and loaded.config.stake_per_trade_usd == 4.0
    assert loaded.config.max_trades_per_day == 9
    assert defaults.read_bytes() == before
    # a hand edit of the overrides file with one field keeps the defaults file's fields
    (tmp_path / "data" / "config.json").write_text('{"max_trades_per_day": 2}')
    os.utime(tmp_path / "data" / "config.json", (1, 1))
    assert files.changed()
    edited = files.load()
    assert edited.config.max_trades_per_day == 2 and edited.config.stake_per_trade_usd == 4.0
    assert edited.config.min_edge_pct == StrategyConfig().min_edge_pct
    assert edited.provenance(3) == {
        "path": str(defaults),
        "overrides_path": str(tmp_path / "data" / "config.json"),
        "overrides": {"max_trades_per_day": 2},
        "version": 3,
        "hash": config_hash(edited.config),
    }
    (tmp_path / "data" / "config.json").write_text('{"max_trades_per_day": "two"}')
    with pytest.raises(ConfigError) as e:
        files.load()
    assert "max_trades_per_day" in e.value.errors and "data/config.json" in str(e.value)


def test_a_config_file_naming_a_field_twice_is_refused_naming_it(tmp_path: Path) -> None:
    """JSON parsers keep the last of two equal keys silently (RFC 8259 section 4 leaves it
    unpredictable); a config file with a field named twice is refused, like any bad file."""
    defaults = tmp_path / "config.json"
    defaults.write_text('{"stake_per_trade_usd": 4.0}')
    (tmp_path / "data").mkdir()
    overrides = tmp_path / "data" / "config.json"
    overrides.write_text('{"stake_per_trade_usd": 5, "stake_per_trade_usd": 6}')
    files = StrategyConfigFiles(defaults, overrides)
    with pytest.raises(ConfigError) as e:
        files.load()
    assert e.value.source == str(overrides)
    assert list(e.value.errors) == ["stake_per_trade_usd"] and "twice" in str(e.value)
    # in the shipped-defaults layer and inside a market entry alike
    overrides.write_text("{}")
    defaults.write_text('{"markets": [{"asset": "btc", "window": "5m", "asset": "eth"}]}')
    with pytest.raises(ConfigError) as e:
        files.load()
    assert e.value.source == str(defaults) and list(e.value.errors) == ["asset"]
    defaults.write_text('{"markets": [{"asset": "btc", "window": "5m"}]}')
    assert files.load().config.stake_per_trade_usd == StrategyConfig().stake_per_trade_usd


def test_settings_env_overrides_dotenv_and_bad_values_are_named(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("# comment\nexport DRY_RUN=false\nAPI_PORT='9000'\nLOG_LEVEL=debug\n")
    s = load_settings({"API_PORT": "9100"}, dotenv)
    assert (s.dry_run, s.api.port, s.log_level) == (False, 9100, "DEBUG")
    assert s.urls["GAMMA_API_URL"].startswith("https://gamma-api.polymarket.com")
    sim = load_settings({"POLYEDGE_VENUE": "sim", "SIM_PORT": "9999"}, None)
    assert sim.urls["CLOB_API_URL"] == "http://127.0.0.1:9999/clob"
    with pytest.raises(ConfigError) as e:
        load_settings(
            {
                "DRY_RUN": "maybe",
                "API_PORT": "80000",
                "SIM_SEED": "x",
                "POLYEDGE_VENUE": "paper",
                "BINANCE_WS_URL": "ftp://x",
            },
            None,
        )
    assert set(e.value.errors) == {
        "DRY_RUN",
        "API_PORT",
        "SIM_SEED",
        "POLYEDGE_VENUE",
        "BINANCE_WS_URL",
    }
    dotenv.write_text("JUST A LINE\n")
    with pytest.raises(ConfigError, match=r"\.env:1"):
        load_settings({}, dotenv)


def test_private_key_never_shows() -> None:
    key = "0x" + "ab" * 32
    s = load_settings({"PRIVATE_KEY": key}, None)
    assert s.private_key is not None and s.private_key.reveal() == key
    assert key not in repr(s) and key not in str(s.private_key) and "***" in repr(s)
    with pytest.raises(ConfigError) as e:
        load_settings({"PRIVATE_KEY": "0x1234notakey"}, None)
    assert "PRIVATE_KEY" in str(e.value) and "1234notakey" not in str(e.value)
    assert repr(Secret("hunter2")) == "Secret('***')"


def _run_service(name: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", f"services.{name}"],
        cwd=REPO,
        timeout=60,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )


def test_service_refuses_to_start_on_a_bad_config_file(tmp_path: Path, iso_env: dict) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"max_trades_per_day": -1}))
    r = _run_service("strategy", {"POLYEDGE_CONFIG": str(bad)})
    assert r.returncode == 2
    assert "max_trades_per_day" in r.stderr and str(bad) in r.stderr


@pytest.mark.parametrize("name", ["ingest", "signal", "strategy", "execution", "observe"])
def test_service_refuses_to_start_on_a_bad_env_value(name: str, iso_env: dict) -> None:
    r = _run_service(name, {"DRY_RUN": "perhaps"})
    assert r.returncode == 2
    assert "DRY_RUN" in r.stderr and "perhaps" in r.stderr


def test_readme_documents_every_strategy_key_with_its_default() -> None:
    """The README's strategy table lists every key the dashboard's editor shows, with the
    default the code has (the editor shows `config_to_dict`, i.e. every StrategyConfig field)."""
    import re

    rows = re.findall(r"^\| `(\w+)` \| `?([^|`]+?)`? \|", (REPO / "README.md").read_text(), re.M)
    documented = {k: v.strip() for k, v in rows}
    defaults = msgspec_defaults()
    missing = sorted(set(defaults) - set(documented))
    assert not missing, f"README's strategy table lacks {missing}"
    for key, default in defaults.items():
        doc = documented[key]
        if isinstance(default, bool):
            value: object = doc.lower() == "true"
        elif isinstance(default, int | float):
            value = type(default)(float(doc))
        elif isinstance(default, list | dict):
            value = json.loads(doc)
        else:
            value = doc
        assert value == default, f"README says {key} defaults to {doc}, the code says {default}"


def msgspec_defaults() -> dict[str, object]:
    from common.config import config_to_dict

    return config_to_dict(StrategyConfig())


def test_fixed_choice_fields_are_listed_for_the_editor() -> None:
    from common.config import config_choices

    assert config_choices() == {"order_type": ["FOK", "FAK", "taker", "maker", "auto"]}
