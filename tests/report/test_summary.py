"""benchmark/report/summary.py: across panels (issue 27). Methods ordered by their mean pairwise win share over
the panels both ran: a gate failure is a loss, a panel a method cannot run is no comparison (and a caveat), ties
inside the paired CI share a place."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.report import verdict as vd
from benchmark.report.summary import panel_standing
from tests.report.test_verdict import EVAL, HEADER, SAMPLES, TUNE, _cell, _frame, _groups, _spec_cells


def _panels(spec: dict) -> list[dict]:
    """Verdict panels of _spec_cells(spec)."""
    df = _frame(_spec_cells(spec))
    tune = df[df["seed"].isin(TUNE)]
    return vd.verdict(df, HEADER, vd.select(tune, _groups(tune), HEADER))


def _by_method(s: dict) -> dict:
    return {r["method"]: r for r in s["ranks"]}


def test_failing_the_gate_ranks_last_and_never_improves_a_method():
    """The default run's shape: 'tfg' is admissible and best on one easy panel and fails the gate on
    three; 'freedom' is admissible everywhere. Averaging over evaluated panels only would put tfg
    first (mean rank 1); ranked last where it failed, it comes after both others."""
    ok, bad = 0.01, 10.0
    spec = {"linear": {"none": (0.0, ok), "tfg": (1.0, ok), "freedom": (0.5, ok)}}
    spec |= {f"quad{i}": {"none": (0.0, ok), "tfg": (5.0, bad), "freedom": (0.5, ok)} for i in range(3)}
    panels = _panels(spec)
    assert [p["ran"] for p in panels] == [["freedom", "none", "tfg"]] * 4
    s = vd.summary(panels, 0.95, 200)
    assert s["order"] == ["freedom", "none", "tfg"]
    r = _by_method(s)
    assert r["tfg"]["panels"] == 4 and r["tfg"]["failed"] == 3 and r["freedom"]["failed"] == 0
    assert r["tfg"]["mean_rank"] == pytest.approx((1 + 3 * 3) / 4)       # last (3rd of 3) on the three it failed
    assert r["tfg"]["tie_rank"] == pytest.approx((1 + 3 * 3) / 4)
    assert r["freedom"]["win_share"] == pytest.approx((3 / 4 + 1) / 2)
    assert r["none"]["win_share"] == pytest.approx((0 + 3 / 4) / 2)
    assert r["tfg"]["win_share"] == pytest.approx((1 / 4 + 1 / 4) / 2)
    matrix = {row["method"]: dict(zip(s["order"], row["cells"])) for row in s["matrix"]}
    assert matrix["tfg"]["freedom"] == {"win": 1, "tie": 0, "loss": 3}
    assert not any(x["caveat"] for x in s["ranks"])


def test_a_panel_a_method_cannot_run_is_no_comparison_and_carries_a_caveat():
    """'cg' runs on one panel of three (capability: no group elsewhere) and wins it: its comparisons use
    that panel alone, it heads the table with a caveat, and nobody counts its absence as a failure."""
    ok = 0.01
    spec = {"linear": {"none": (0.0, ok), "cg": (2.0, ok), "a": (1.0, ok)},
            "quad0": {"none": (0.0, ok), "a": (1.0, ok)}, "quad1": {"none": (0.0, ok), "a": (1.0, ok)}}
    s = vd.summary(_panels(spec), 0.95, 200)
    r = _by_method(s)
    assert s["order"] == ["cg", "a", "none"]
    assert r["cg"]["panels"] == 1 and r["cg"]["failed"] == 0 and r["cg"]["mean_rank"] == 1
    assert r["cg"]["caveat"] == "ran on 1 of the 3 panels the most-run method ran"
    assert r["a"]["caveat"] is None and r["a"]["panels"] == 3 and r["a"]["failed"] == 0
    assert r["a"]["win_share"] == pytest.approx((0 + 1) / 2)
    matrix = {row["method"]: dict(zip(s["order"], row["cells"])) for row in s["matrix"]}
    assert matrix["a"]["cg"] == {"win": 0, "tie": 0, "loss": 1}        # one shared panel, not three
    assert matrix["none"]["a"] == {"win": 0, "tie": 0, "loss": 3}


def test_failures_tie_for_last_and_ties_inside_the_ci_share_a_place():
    """Two methods with no admissible setting tie for last (mean of the last places) and with each other;
    two admissible methods whose paired CI holds 0 tie, and the order between them falls to the mean
    rank, then the name."""
    ok, bad = 0.01, 10.0
    s = vd.summary(_panels({"linear": {"none": (0.0, ok), "c": (1.0, ok), "x": (9.0, bad), "y": (8.0, bad)}}),
                   0.95, 200)
    r = _by_method(s)
    assert s["order"] == ["c", "none", "x", "y"]
    assert r["x"]["mean_rank"] == r["y"]["mean_rank"] == 3.5 and r["x"]["tie_rank"] == r["y"]["tie_rank"] == 3
    assert r["x"]["win_share"] == r["y"]["win_share"] == pytest.approx(0.5 / 3)
    matrix = {row["method"]: dict(zip(s["order"], row["cells"])) for row in s["matrix"]}
    assert matrix["x"]["y"] == {"win": 0, "tie": 1, "loss": 0} and matrix["c"]["x"] == {"win": 1, "tie": 0, "loss": 0}
    # admissible ties: b's chains flip around a's, so the paired CI of b - a holds 0
    flip = np.where(np.arange(SAMPLES) % 2, 0.5, -0.5)
    cells = [_cell("none", 0.0, s_, 0.0, ok) for s_ in TUNE + EVAL]
    cells += [_cell("b", 1.0, s_, 0, ok, chains=1.0 + flip) for s_ in TUNE + EVAL]
    cells += [_cell("a", 1.0, s_, 0, ok, chains=np.full(SAMPLES, 1.0)) for s_ in TUNE + EVAL]
    df = _frame(cells)
    tune = df[df["seed"].isin(TUNE)]
    s = vd.summary(vd.verdict(df, HEADER, vd.select(tune, _groups(tune), HEADER)), 0.95, 200)
    r = _by_method(s)
    assert r["a"]["win_share"] == r["b"]["win_share"] == 0.75 and s["order"] == ["a", "b", "none"]


def test_the_default_runs_summary_ranks_gate_failures_last():
    """The default run's figures (tests/fixtures/default_run_verdict.json: each panel's methods and the
    evaluated ones' per-chain held-out rewards). The mean-rank order of evaluated panels only put cg
    (1 panel) first and tfg (2 of its 4 panels evaluated) third, above freedom (6); now tfg's two gate
    failures rank it last on those panels, and cg heads only with its caveat."""
    import json

    data = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "default_run_verdict.json").read_text())
    panels = []
    for p in data["panels"]:
        settings, methods = [], []
        for m, seeds in p["chains"].items():
            cells = pd.DataFrame({"seed": [int(s) for s in seeds], "chains": list(seeds.values()),
                                  "reward": [float(np.mean(c)) for c in seeds.values()]})
            settings.append({"job": m, "cells": cells})
            methods.append({"method": m, "job": m})
        panels.append({"ran": p["ran"], "methods": methods, "settings": settings})
    s = vd.summary(panels, 0.95, 500)
    r = _by_method(s)
    assert s["panels"] == 6 and s["most_panels"] == 6
    assert (r["tfg"]["panels"], r["tfg"]["failed"]) == (4, 2) and (r["freedom"]["panels"], r["freedom"]["failed"]) == (6, 0)
    assert s["order"].index("freedom") < s["order"].index("tfg")
    assert r["tfg"]["mean_rank"] > r["freedom"]["mean_rank"]
    assert s["order"][0] == "cg" and r["cg"]["caveat"] == "ran on 1 of the 6 panels the most-run method ran"
    assert s["order"] == ["cg", "shen", "freedom", "lgd", "dps", "tfg", "gloss", "smc", "naive", "mpgd", "bon",
                          "ugd", "none"]


def test_a_panels_standing_is_its_evaluated_and_its_failed_methods():
    panel = {"methods": [{"method": "b"}, {"method": "a"}], "ran": ["a", "b", "z", "c"]}
    assert panel_standing(panel) == (["b", "a"], ["c", "z"])
    assert panel_standing({"methods": [{"method": "a"}]}) == (["a"], [])     # no `ran`: none failed
