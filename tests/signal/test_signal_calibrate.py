"""`polyedge calibrate` on small synthetic inputs written here (no third-party data copied):
the JSON shape of the issue, scores checked against hand-computed values, the input formats
(kline zip with microsecond times, `ts_ms,price` CSV, quotes JSONL), bad input named, and a fit
that recovers the truth of a world whose truth is known."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from services.commands import calibrate

HEADER = "slug,start_ts,end_ts,price_to_beat,winner,settlement,twap_lookback_s\n"
DAY = 1_773_273_600  # 2026-03-12T00:00:00Z


def _walk(start_s: int, seconds: int, sigma: float, seed: int) -> list[tuple[int, float]]:
    """A seeded driftless log-normal walk, one price a second (ts_ms, price)."""
    rng = random.Random(seed)
    px, out = 80_000.0, []
    for i in range(seconds):
        px *= math.exp(sigma * rng.gauss(0.0, 1.0))
        out.append(((start_s + i) * 1000, round(px, 2)))
    return out


def _world(
    tmp: Path,
    n_markets: int,
    first_start: int,
    sigma: float = 1e-4,
    seed: int = 7,
    with_ptb: bool = False,
):
    """Markets of 300 s back to back from `first_start` on a walk that starts an hour earlier;
    each winner is what the path itself says (spot settlement, price to beat = the path's value
    at the start, left empty for the command to take from the path unless `with_ptb`)."""
    walk = _walk(first_start - 3600, 3600 + 300 * n_markets + 5, sigma, seed)
    at = dict(walk)
    lines = [HEADER]
    for k in range(n_markets):
        s = first_start + 300 * k
        e = s + 300
        # the value in force at t is the point at or before t: points are every whole second
        up = at[e * 1000] >= at[s * 1000]
        ptb = at[s * 1000] if with_ptb else ""
        lines.append(f"btc-updown-5m-{s},{s},{e},{ptb},{'Up' if up else 'Down'},spot,0\n")
    (tmp / "markets.csv").write_text("".join(lines))
    (tmp / "path.csv").write_text("ts_ms,price\n" + "".join(f"{t},{p}\n" for t, p in walk))
    return tmp / "markets.csv", tmp / "path.csv", walk


def _run(*args: str | Path) -> dict:
    r = subprocess.run(
        [sys.executable, "-m", "services.commands.cli", "calibrate", *map(str, args), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_price_path_report_has_the_issue_shape_and_is_deterministic(tmp_path: Path) -> None:
    markets, path, _ = _world(tmp_path, 12, DAY + 7200)
    doc = _run("--markets", markets, "--prices", path)
    assert doc == _run("--markets", markets, "--prices", path)  # deterministic
    assert doc["markets"] == 12
    assert [p["seconds_left"] for p in doc["points"]] == [240, 180, 120, 60, 30, 10]
    assert all(p["n"] == 12 and set(p) >= {"brier", "log_loss"} for p in doc["points"])
    assert "brier_market" not in doc["points"][0]  # no quotes, no market
    # the overall score is the count-weighted mean of the horizons' scores
    total = sum(p["brier"] * p["n"] for p in doc["points"]) / sum(p["n"] for p in doc["points"])
    assert doc["brier"] == pytest.approx(total, abs=1e-5)
    assert sum(r["n"] for r in doc["reliability"]) == 72
    # 10 s before the end of a walk the model knows far more than at 240 s
    assert doc["points"][-1]["brier"] < doc["points"][0]["brier"]


def test_quotes_score_the_market_and_the_blend_by_hand(tmp_path: Path) -> None:
    markets, path, _ = _world(tmp_path, 6, DAY + 7200, with_ptb=True)
    rows = [r.split(",") for r in markets.read_text().splitlines()[1:]]
    quotes = []
    for slug, _s, end, _p, winner, *_ in rows:
        # a market that is right with 0.8 at 90 s and 0.9 at 30 s: Brier 0.04 and 0.01
        for left, conf in ((90, 0.8), (30, 0.9)):
            mid = conf if winner == "Up" else 1 - conf
            q = {
                "slug": slug,
                "ts_ms": (int(end) - left) * 1000 + 300,
                "btc": 80_000.0,
                "up_bid": round(mid - 0.01, 2),
                "up_ask": round(mid + 0.01, 2),
            }
            quotes.append(json.dumps(q) + "\n")
    (tmp_path / "quotes.jsonl").write_text("".join(quotes))
    market_only = (
        "--set",
        "blend_market_weight=1",
        "--set",
        "blend_model_weight=0",
        "--set",
        "blend_bias=0",
    )
    doc = _run("--markets", markets, "--quotes", tmp_path / "quotes.jsonl", *market_only)
    pts = {p["seconds_left"]: p for p in doc["points"]}
    assert sorted(pts) == [30, 90]  # the quotes' instants, rounded (89.7 s -> 90)
    assert pts[90]["brier_market"] == pytest.approx(0.04) and pts[90]["n"] == 6
    assert pts[30]["brier_market"] == pytest.approx(0.01)
    for p in pts.values():  # the market-only blend is the market
        assert p["brier_blend"] == pytest.approx(p["brier_market"], abs=1e-6)
    both = _run("--markets", markets, "--quotes", tmp_path / "quotes.jsonl", "--prices", path)
    assert both["markets"] == 6 and {p["seconds_left"] for p in both["points"]} == {30, 90}


def test_binance_kline_zip_in_microseconds(tmp_path: Path) -> None:
    rows = [
        f"{(DAY + i) * 1_000_000},1,1,1,{70_000 + i}.5,1,{(DAY + i) * 1_000_000 + 999_999},1,1,1,1,0"
        for i in range(10)
    ]
    with zipfile.ZipFile(tmp_path / "k.zip", "w") as z:
        z.writestr("BTCUSDT-1s.csv", "\n".join(rows) + "\n")
    p = calibrate.read_prices(tmp_path / "k.zip")
    # the close of the kline opening at DAY + 3 is the price from DAY + 4 on
    assert p.at((DAY + 4) * 1000) == 70_003.5
    assert p.at((DAY + 4) * 1000 - 1) == 70_002.5
    assert p.at(DAY * 1000) is None  # nothing known before the first kline closed


def test_bad_input_is_named(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("slug,start_ts,end_ts,winner\nx,1,2,Up\n")
    (tmp_path / "p.csv").write_text("1000,1\n")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.commands.cli",
            "calibrate",
            "--markets",
            str(tmp_path / "m.csv"),
            "--prices",
            str(tmp_path / "p.csv"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "missing column(s) price_to_beat, settlement" in r.stderr
    (tmp_path / "m.csv").write_text(HEADER + "x,1,301,,Maybe,spot,0\n")
    with pytest.raises(calibrate.InputError, match=r"m.csv:2: winner must be Up or Down"):
        calibrate.read_markets(tmp_path / "m.csv")
    r = subprocess.run(
        [sys.executable, "-m", "services.commands.cli", "calibrate", "--markets", "m.csv"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert r.returncode == 2 and "--prices PATH, --quotes QUOTES.jsonl, or both" in r.stderr
    # a bad cell names the file, the line and the column
    for row, col, got in (
        ("x,1,301,abc,Up,spot,0", "price_to_beat", "'abc'"),
        ("x,soon,301,,Up,spot,0", "start_ts", "'soon'"),
        ("x,1,301,nan,Up,spot,0", "price_to_beat", "nan"),
        ("x,1,301,,Up,twap,sixty", "twap_lookback_s", "'sixty'"),
    ):
        (tmp_path / "m.csv").write_text(HEADER + row + "\n")
        with pytest.raises(calibrate.InputError) as e:
            calibrate.read_markets(tmp_path / "m.csv")
        assert f"m.csv:2: column {col}: expected" in str(e.value) and got in str(e.value), row


def test_split_day_must_be_a_date_and_no_quotes_means_no_market_columns(tmp_path: Path) -> None:
    markets, path, _ = _world(tmp_path, 12, DAY + 7200)
    for bad in ("notaday", "2026-13-45", "12-03-2026"):
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "services.commands.cli",
                "calibrate",
                "--markets",
                str(markets),
                "--prices",
                str(path),
                "--fit",
                "--split-day",
                bad,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 2 and f"--split-day {bad!r}: not a date (YYYY-MM-DD)" in r.stderr, (
            r.stderr
        )
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.commands.cli",
            "calibrate",
            "--markets",
            str(markets),
            "--prices",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "nan" not in r.stdout and "brier_market" not in r.stdout, r.stdout
    assert "brier_model" in r.stdout and "logloss_model" in r.stdout


def test_fit_recovers_a_known_world_out_of_sample(tmp_path: Path) -> None:
    """On a pure random walk (constant vol, no momentum) settled on the path itself, the fitted
    volatility scale is near 1 and the momentum weight near 0; scored on the later day."""
    markets, path, _ = _world(tmp_path, 40, DAY - 20 * 300, sigma=1e-4, seed=3)
    doc = _run("--markets", markets, "--prices", path, "--fit", "--set", "vol_floor=1e-6")
    fit = doc["fit"]
    assert fit["split_day"] == "2026-03-12" and fit["train_markets"] == 20
    assert fit["test_markets"] == doc["markets"] == 20
    assert 0.6 < fit["fitted"]["vol_scale"] < 1.6
    assert fit["fitted"]["momentum_weight"] < 0.3


def _blend_world(tmp: Path, informative: bool, seed: int) -> tuple[Path, Path]:
    """Markets of two UTC days (60 train, 40 test) with quotes at 120, 60 and 30 s before the
    end. Per market, A (what the market knows), B and E independent N(0, 1). Informative world:
    Up iff A + B + E > 0, the market's mid P(Up | A) = Phi(A / sqrt 2) (calibrated), the model
    sees B (BTC placed B model-sigmas from the price to beat). Noise world: Up iff A + E > 0, the
    mid Phi(A / sqrt 2) (calibrated too), and the model sees an independent draw: pure noise."""
    rng = random.Random(seed)
    sigma = calibrate.VOL_PRIOR  # the model's volatility without a path (vol_scale=1 below)
    lines, quotes = [HEADER], []
    starts = [DAY - 86_400 + 3600 + 300 * k for k in range(60)]
    starts += [DAY + 3600 + 300 * k for k in range(40)]
    for s in starts:
        a, b, e = rng.gauss(0, 1), rng.gauss(0, 1), rng.gauss(0, 1)
        if informative:
            up, mid, seen = a + b + e > 0, _phi(a / math.sqrt(2)), b
        else:
            up, mid, seen = a + e > 0, _phi(a / math.sqrt(2)), rng.gauss(0, 1)
        lines.append(f"btc-updown-5m-{s},{s},{s + 300},80000,{'Up' if up else 'Down'},spot,0\n")
        mid = min(0.985, max(0.015, round(mid, 3)))
        for left in (120, 60, 30):
            btc = 80_000.0 * math.exp(seen * sigma * math.sqrt(left))
            q = {
                "slug": f"btc-updown-5m-{s}",
                "ts_ms": (s + 300 - left) * 1000,
                "btc": round(btc, 4),
                "up_bid": round(mid - 0.005, 3),
                "up_ask": round(mid + 0.005, 3),
            }
            quotes.append(json.dumps(q) + "\n")
    (tmp / "markets.csv").write_text("".join(lines))
    (tmp / "quotes.jsonl").write_text("".join(quotes))
    return tmp / "markets.csv", tmp / "quotes.jsonl"


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def test_blend_is_the_market_when_the_model_is_noise_and_departs_when_it_informs(
    tmp_path: Path,
) -> None:
    """The selection rule (`fit_blend`, training day only): a model of pure noise leaves the
    blend exactly at the market (weights 0, 1, 0; "no edge"), so out of sample the blend scores
    as the market at every horizon; an informative model is taken in, with a positive weight,
    and beats the market on the later day."""
    args = ("--fit", "--set", "vol_scale=1", "--set", "momentum_weight=0")
    (tmp_path / "noise").mkdir()
    markets, quotes = _blend_world(tmp_path / "noise", informative=False, seed=11)
    doc = _run("--markets", markets, "--quotes", quotes, *args)
    fitted = doc["fit"]["fitted"]
    assert doc["fit"]["split_day"] == "2026-03-12" and fitted["train_quoted_markets"] == 60
    assert fitted["blend_selected"] == "market", fitted["blend_reason"]
    assert (fitted["blend_bias"], fitted["blend_market_weight"], fitted["blend_model_weight"]) == (
        0.0,
        1.0,
        0.0,
    )
    level = calibrate.BLEND_ALPHA / len(calibrate.BLEND_FORMS)
    for form, _ in calibrate.BLEND_FORMS:  # no form passes both tests of the rule
        c = fitted["blend_candidates"][form]
        assert c["p_value"] >= level or c["cv_gain"] <= 0, (form, c)
    assert [p["seconds_left"] for p in doc["points"]] == [120, 60, 30]
    for p in doc["points"]:
        assert p["n"] == 40 and p["brier_blend"] == p["brier_market"]

    (tmp_path / "informed").mkdir()
    markets, quotes = _blend_world(tmp_path / "informed", informative=True, seed=11)
    doc = _run("--markets", markets, "--quotes", quotes, *args)
    fitted = doc["fit"]["fitted"]
    assert fitted["blend_selected"] in ("model", "both"), fitted["blend_reason"]
    assert fitted["blend_model_weight"] > 0.2
    chosen = fitted["blend_candidates"][fitted["blend_selected"]]
    assert chosen["p_value"] < level and chosen["cv_gain"] > 0
    assert doc["brier_blend"] < doc["brier_market"] - 0.02
    for p in doc["points"]:
        assert p["brier_blend"] < p["brier_market"]
