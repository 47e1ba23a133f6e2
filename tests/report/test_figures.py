"""Figure helpers: the robust axis limits that keep a run-away strength from flattening a plot."""

import base64
import math

import pandas as pd

from benchmark.report.figures import method_palette, robust_limits, tradeoff_figure
from tests.report_page import PNG_SIGNATURE, capture_figures


def test_robust_limits_only_when_an_outlier_exists():
    assert robust_limits([1.0, 2.0, 3.0, 4.0, 5.0]) is None
    lo, hi = robust_limits([1.0, 2.0, 3.0, 4.0, 5.0, -1e10])
    assert -20 < lo < 1 and hi == 5.0
    assert robust_limits([math.nan, 1.0, 2.0]) is None          # too few finite values to judge


def _points(rewards):
    return pd.DataFrame({"method": ["a"] * 5 + ["none"], "strength": [0.1, 0.3, 1, 3, 10, 0.0],
                         "fidelity": [0.1, 0.2, 0.3, 0.4, 9.0, 0.05], "reward": rewards,
                         "pareto": [False, False, False, True, False, True]})


def test_tradeoff_figure_draws_off_scale_points_at_the_edge(monkeypatch):
    """A run-away strength (reward -1e10) is drawn at the lower edge of the robust limits (quartiles
    0.625 and 2.75 of the six rewards, minus 3 IQR: -5.75) as a triangle, labelled with its value;
    the axis spans the other points, not -1e10."""
    drawn = capture_figures(monkeypatch)
    png = tradeoff_figure(_points([1, 2, 3, 4, -1e10, 0.5]), "r_off", "reward_mean", method_palette(["a", "none"]))
    assert base64.b64decode(png).startswith(PNG_SIGNATURE)
    (d,) = drawn
    edge = -5.75
    x, y = d.lines["a"]
    assert list(x) == [0.1, 0.2, 0.3, 0.4, 9.0] and list(y) == [1, 2, 3, 4, edge]
    assert list(d.lines["none"][1]) == [0.5]
    (triangle,) = [c for c in d.scatters if c["sizes"] == [60.0]]
    assert triangle["offsets"].tolist() == [[9.0, edge]]
    assert ("10 (reward -1e+10)", (9.0, edge)) in d.texts
    assert ("3", (0.4, 4.0)) in d.texts
    assert "triangles: off the scale, value in brackets" in [t for t, _ in d.texts]
    assert -10 < d.ylim[0] <= edge and 4 <= d.ylim[1] < 10
    assert d.xscale == "log"                                   # fidelity spans 0.05 .. 9: > 2 decades
    (ring,) = [c for c in d.scatters if c["sizes"] == [140.0]]
    assert sorted(ring["offsets"].tolist()) == [[0.05, 0.5], [0.4, 4.0]]


def test_tradeoff_figure_without_outliers_draws_every_point_where_it_is(monkeypatch):
    drawn = capture_figures(monkeypatch)
    tradeoff_figure(_points([1, 2, 3, 4, 5, 0.5]), "r_off", "reward_mean", method_palette(["a", "none"]))
    (d,) = drawn
    assert list(d.lines["a"][1]) == [1, 2, 3, 4, 5]
    assert not [c for c in d.scatters if c["sizes"] == [60.0]]
    assert not [t for t, _ in d.texts if "reward" in t or "triangles" in t]


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
