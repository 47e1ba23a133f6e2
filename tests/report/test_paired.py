"""benchmark/report/paired.py: paired statistics of the verdict. Two settings' rewards are matched chain by chain
where both record per-chain rewards with the same chains, else seed by seed; the percentile bootstrap CI of the
mean paired difference."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from benchmark.report import verdict as vd
from benchmark.report.paired import bootstrap_ci, paired_units


def test_bootstrap_ci_covers_the_mean_and_degenerates_on_constants():
    rng = np.random.default_rng(1)
    d = rng.normal(0.3, 1.0, size=400)
    lo, hi = vd.bootstrap_ci(d, 0.95, 2000)
    se = d.std(ddof=1) / math.sqrt(len(d))
    assert lo < d.mean() < hi and hi - lo == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert vd.bootstrap_ci(np.full(5, 0.25), 0.95, 100) == (0.25, 0.25)


def test_units_are_chains_when_both_record_the_same_chains_else_seeds():
    a = pd.DataFrame({"seed": [2, 1, 3], "reward": [2.0, 1.0, 3.0], "chains": [[2.0, 2.5], [1.0, 1.5], [3.0, 3.5]]})
    b = pd.DataFrame({"seed": [1, 2], "reward": [10.0, 20.0], "chains": [[10.0, 10.5], [20.0, 20.5]]})
    x, y, unit = paired_units(a, b)                                      # seeds both have, in order; chain by chain
    assert unit == "chain" and list(x) == [1.0, 1.5, 2.0, 2.5] and list(y) == [10.0, 10.5, 20.0, 20.5]
    b.at[1, "chains"] = [20.0]                                           # another number of chains on seed 2
    x, y, unit = paired_units(a, b)
    assert unit == "seed" and list(x) == [1.0, 2.0] and list(y) == [10.0, 20.0]
    b["chains"] = None                                                   # no per-chain rewards recorded
    assert paired_units(a, b)[2] == "seed"


def test_bootstrap_ci_leaves_out_non_finite_values():
    assert all(math.isnan(v) for v in bootstrap_ci(np.array([math.nan, math.inf]), 0.95, 100))
    assert bootstrap_ci(np.array([0.5, math.nan]), 0.95, 100) == (0.5, 0.5)
    d = np.array([0.0, 1.0, 2.0, 3.0, math.nan])
    assert bootstrap_ci(d, 0.9, 500, seed=3) == bootstrap_ci(d[:4], 0.9, 500, seed=3)
