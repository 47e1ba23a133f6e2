"""benchmark/tasks/mixture/metrics.py: the mixture task's metrics against their exact targets: exact draws score at
their `_exact_n` floors (coverage in closed form), prior draws miss the posterior, a sampler that drops a mode is
caught by coverage and weight_error, off_data counts samples between modes, and the metrics' declared directions."""

from __future__ import annotations

import math

import pytest
import torch

from benchmark.tasks.mixture.metrics import on_data_radius2
from tests.tasks.mixture.test_mixture import F64, task  # noqa: F401 (task: a fixture)
from tests.tasks.mixture.test_objectives import objectives  # noqa: F401 (a fixture)


@pytest.mark.parametrize("name", ["inverse", "tilt"])
def test_exact_draws_score_at_the_floors(objectives, name):
    """Batches of n exact target draws (another stream than the reference's): each metric's mean is its
    `_exact_n` value; prior (data) draws score far worse on the inverse problem."""
    obj = objectives[name]
    n, batches = 64, 48
    x = obj.target.sample(n, torch.Generator().manual_seed(123), shape=(batches,))[0]
    scores = obj.metrics.scores(x)
    ref = obj.metrics.reference(n)
    for metric, values in scores.items():
        se = float(values.std()) / math.sqrt(batches)
        assert abs(float(values.mean()) - ref[metric]) < 4 * se + 1e-3, (metric, float(values.mean()), ref[metric])
    one = obj.calibration(x[0])
    assert set(one) == {m + s for m in ("sw2", "weight_error", "coverage", "ci90_coverage") for s in ("", "_exact_n")}
    # coverage of n exact draws, closed form for well-separated modes: sum_k w_k (1 - (1 - w_k)^n)
    w = obj.target.weights
    assert ref["coverage"] == pytest.approx(float((w * (1 - (1 - w) ** n)).sum()), abs=2e-3)
    assert 0.8 < ref["ci90_coverage"] < 0.9                     # a finite batch's interval is a little short


def test_prior_draws_miss_the_posterior(task, objectives):
    obj = objectives["inverse"]
    x = task.sample_data(256, torch.Generator().manual_seed(5)).double()
    got, ref = obj.calibration(x), obj.metrics.reference(256)
    assert got["sw2"] > 3 * ref["sw2"] and got["weight_error"] > 0.3 and got["ci90_coverage"] < 0.8


@pytest.mark.parametrize("name", ["inverse", "tilt"])
def test_a_sampler_that_drops_a_mode_is_caught_by_coverage(objectives, name):
    """Exact draws with the target's smallest kept mode replaced by draws of its heaviest: coverage falls by
    that mode's weight, weight_error rises by it, far beyond the floors."""
    obj = objectives[name]
    target = obj.target
    kept = [k for k in range(target.K) if target.weights[k] > 0.05]
    drop, keep = min(kept, key=lambda k: target.weights[k]), max(kept, key=lambda k: target.weights[k])
    n = 256
    x, labels = target.sample(n, torch.Generator().manual_seed(7))
    heavy = target.sample(4 * n, torch.Generator().manual_seed(8))
    donors = heavy[0][heavy[1] == keep]
    x[labels == drop] = donors[: int((labels == drop).sum())]
    got, ref = obj.calibration(x), obj.metrics.reference(n)
    w_drop = float(target.weights[drop])
    assert ref["coverage"] > 0.99
    assert got["coverage"] == pytest.approx(1 - w_drop, abs=0.01)
    assert got["coverage"] < ref["coverage"] - 0.05
    assert got["weight_error"] == pytest.approx(w_drop, abs=0.04) and got["weight_error"] > 2 * ref["weight_error"]


def test_off_data_counts_samples_between_modes(task, objectives):
    """25 of 100 data draws moved next to b: off_data 0.25 (at most one of the other 75 off the data by
    chance), and weight_error the total variation with the off-data bin, (sum_k |n_k / n - w*_k| + 0.25) / 2."""
    p, obj = task.mixture, objectives["between"]
    x, labels = p.sample(100, torch.Generator().manual_seed(3))
    b = obj.b.double()
    x[:25] = b + 0.05 * torch.randn(25, 16, dtype=F64, generator=torch.Generator().manual_seed(4))
    metrics = task.sample_metrics(x, obj)
    assert metrics["off_data"].shape == (100,)
    assert float(metrics["off_data"][:25].sum()) == 25 and float(metrics["off_data"][25:].sum()) <= 1
    counts = torch.bincount(labels[25:], minlength=4).double()
    expected = 0.5 * (float((counts / 100 - obj.target.weights).abs().sum()) + 0.25)
    assert metrics["weight_error"] == pytest.approx(expected, abs=0.011)
    assert on_data_radius2(16) == pytest.approx(39.252, abs=1e-3)     # chi2_16 quantile at 0.999


def test_metric_directions_are_declared(task):
    from benchmark.report import aggregate as agg

    declared = agg.declared_directions("mixture")
    assert list(declared)[0] == "off_data" and declared["off_data"] == "lower"
    assert declared["coverage"] == "higher" and declared["ci90_coverage"] == 0.9
    assert {declared[m] for m in ("sw2", "sw2_exact_n", "weight_error", "weight_error_exact_n")} == {"lower"}
