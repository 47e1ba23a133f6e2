"""Figure helpers: the robust axis limits that keep a run-away strength from flattening a plot."""

import math

import pandas as pd

from benchmark.report.figures import method_palette, robust_limits, tradeoff_figure


def test_robust_limits_only_when_an_outlier_exists():
    assert robust_limits([1.0, 2.0, 3.0, 4.0, 5.0]) is None
    lo, hi = robust_limits([1.0, 2.0, 3.0, 4.0, 5.0, -1e10])
    assert -20 < lo < 1 and hi == 5.0
    assert robust_limits([math.nan, 1.0, 2.0]) is None          # too few finite values to judge


def test_tradeoff_figure_draws_off_scale_points_at_the_edge():
    pts = pd.DataFrame({"method": ["a"] * 5 + ["none"], "strength": [0.1, 0.3, 1, 3, 10, 0.0],
                        "fidelity": [0.1, 0.2, 0.3, 0.4, 9.0, 0.05], "reward": [1, 2, 3, 4, -1e10, 0.5],
                        "pareto": [False, False, False, True, False, True]})
    png = tradeoff_figure(pts, "r_off", "reward_mean", method_palette(["a", "none"]))
    assert len(png) > 1000


def test_method_variants_with_different_parameters_are_not_averaged_as_seeds():
    """Two FreeDoM cells at the same strength, one with Polyak's step: two labels, not one."""
    import json

    from benchmark.report.aggregate import variant_labels

    def row(params, seed):
        return {"task": "t", "objective": "o", "denoiser": "d", "method": "freedom", "algorithm": "alg1",
                "linearise": "per_sample", "steps": 50, "eta": 1.0, "seed": seed,
                "params_json": json.dumps({"strength": 0.3, "polyak": params, "recurrence": 1})}
    df = pd.DataFrame([row(False, 0), row(False, 1), row(True, 0)])
    assert list(variant_labels(df)) == ["freedom polyak=False", "freedom polyak=False", "freedom polyak=True"]
    same = pd.DataFrame([row(False, 0), row(False, 1)])
    assert list(variant_labels(same)) == ["freedom", "freedom"]
