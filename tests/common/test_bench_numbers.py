"""`polyedge bench`'s numbers: percentiles with counts, no ratio from fewer than MIN_SAMPLES
samples, the 2- and 3-hop floors, and process trees started on the bench's own interpreter."""

from __future__ import annotations

import sys
from pathlib import Path

from services.commands.bench import MIN_SAMPLES, TOO_FEW, floor, percentiles, ratio
from services.commands.supervise import Supervised, short_tmpdir


def test_percentiles_carry_counts_and_the_tail() -> None:
    s = [float(i) for i in range(1, 1001)]
    p = percentiles(s)
    assert p == {
        "count": 1000,
        "p50": 500.0,
        "p90": 900.0,
        "p99": 990.0,
        "p99_9": 999.0,
        "max": 1000.0,
    }
    assert percentiles([]) == {"count": 0}


def test_no_ratio_from_too_few_samples() -> None:
    many = percentiles([1.0] * MIN_SAMPLES)
    few = percentiles([1.0] * (MIN_SAMPLES - 1))
    assert ratio(many, many) == 1.0
    assert ratio(few, many) == TOO_FEW and ratio(many, few) == TOO_FEW
    assert ratio(None, many) == TOO_FEW


def test_floors_of_two_and_three_hops(tmp_path: Path) -> None:
    tmp = short_tmpdir()
    two, three = floor(500, 2.2, tmp, hops=2), floor(500, 2.2, tmp, hops=3)
    for f, hops in ((two, 2), (three, 3)):
        assert f["hops"] == hops and f["sent"] == 1100 and f["lost"] == 0
        assert f["count"] == 1100 and 0 < f["p50"] <= f["p99"] <= f["max"]


def test_trees_run_on_the_interpreter_that_starts_them() -> None:
    root = short_tmpdir()
    sup = Supervised({"POLYEDGE_ROOT": str(root)})
    text = sup.conf.read_text()
    assert "=python3 " not in text and " python3 " not in text
    assert text.count(f"{sys.executable} -m services.") == 6
    assert sup.env["PATH"].split(":")[0] == str(Path(sys.executable).parent)
