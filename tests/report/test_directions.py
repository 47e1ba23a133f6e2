"""benchmark/report/directions.py: which way each metric is better, read from the declarations. Every metric a
built-in task records is declared (higher, lower or a target value), and the report reads the declarations
(benchmark.tasks.TASKS, a plug-in's too) instead of lists of its own: the panel's fidelity metric and columns,
the front, the gate and the page."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import benchmark.report.directions as directions
from benchmark.metrics import METRIC_DIRECTIONS as MEASURED
from benchmark.report import aggregate as agg
from benchmark.report import build_report
from benchmark.report import verdict as vd
from benchmark.results import COLUMNS, to_table, write_atomic
from benchmark.tasks import TASKS, Task


# ---------------------------------------------------------------------------------------------
# the declarations


def test_the_report_keeps_no_lists_of_directions():
    for name in ("PANEL_METRICS", "FIDELITY_METRICS"):
        assert not hasattr(agg, name), name
    assert not hasattr(vd, "HIGHER_IS_BETTER")


@pytest.mark.parametrize("name", ["subspace", "sphere", "digits", "images"])
def test_builtin_declarations_are_directions(name):
    declared = agg.declared_directions(name)                      # ValueError for a declaration that is not one
    assert declared and declared == TASKS[name].metric_directions
    assert not set(declared) & set(MEASURED)                      # the reward statistics are benchmark.metrics'


def test_subspace_and_sphere_directions():
    sub = agg.declared_directions("subspace")
    assert list(sub) == ["r_off", "w2", "w2_exact_n", "mean_error", "mean_error_exact_n", "var_ratio",
                         "w2_sampler", "w2_sampler_exact_n", "mean_error_sampler", "mean_error_sampler_exact_n",
                         "var_ratio_sampler"]
    assert sub["var_ratio"] == sub["var_ratio_sampler"] == 1.0
    assert {d for m, d in sub.items() if not m.startswith("var_ratio")} == {"lower"}
    assert agg.declared_directions("sphere") == {"norm_error": "lower"}
    assert agg.direction_arrow(sub["var_ratio"]) == "→1" and agg.direction_text(sub["var_ratio"]) == "best near 1"


def test_a_declaration_that_is_not_a_direction_is_refused(monkeypatch):
    class Bad(Task):
        name = "md_bad"
        metric_directions = {"quality": "up"}

    monkeypatch.setitem(TASKS, "md_bad", Bad)
    with pytest.raises(ValueError, match=r"task 'md_bad': metric 'quality' has direction 'up'"):
        agg.declared_directions("md_bad")
    Bad.metric_directions = {"reward_mean": "lower"}
    with pytest.raises(ValueError, match="benchmark.metrics measures it for every task as 'higher'"):
        agg.declared_directions("md_bad")


def test_derived_error_of_a_similarity_is_lower_is_better():
    assert agg.metric_direction("1-ssim", "digits", "inpaint") == "lower"
    assert agg.metric_direction("1-ssim", "sphere") is None                     # sphere declares no ssim
    assert "1-ssim" in agg.fidelity_candidates("digits")
    cands = agg.fidelity_candidates("digits")
    assert cands.index("fd") < cands.index("1-ssim") < cands.index("meas_error")
    assert math.isclose(agg.DERIVED_METRICS["1-ssim"][1](np.float64(0.25)), 0.75)


# ---------------------------------------------------------------------------------------------
# a plug-in task's declarations reach the report


class RingTask(Task):
    """A plug-in task (registered in the tests by name, or named by its import path)."""

    name = "md_ring"
    objectives = ("linear",)
    metric_directions = {"radius_error": "lower", "sharpness": "higher", "balance": 0.5}


SEEDS = (0, 1, 2)


# method, strength -> final (reward, radius_error, sharpness, balance, mystery); round 0 is unguided for all.
FINAL = {("none", 0.0): (0.0, 0.10, 1.0, 0.5, 3.0),
         ("good", 1.0): (1.0, 0.10, 1.2, 0.6, 3.0),       # no worse in either gate metric
         ("blurry", 1.0): (2.0, 0.10, 0.5, 0.5, 3.0),     # sharpness (higher is better) drops
         ("offring", 1.0): (3.0, 0.90, 1.0, 0.5, 3.0)}    # radius_error (lower is better) rises


METRICS = ("reward_mean", "radius_error", "sharpness", "balance", "mystery")


def _rows(task: str) -> list[dict]:
    rows = []
    for (method, strength), final in FINAL.items():
        for seed in SEEDS:
            base = {c: None for c in COLUMNS} | {
                "run_id": f"{method}-{strength:g}-{seed}", "task": task, "objective": "linear", "denoiser": "trained",
                "method": method, "strength": strength, "seed": seed, "algorithm": "alg1", "linearise": "per_sample",
                "samples": 4, "steps": 10, "eta": 1.0, "schedule": "cosine", "params_json": "{}", "settings_json": "{}",
                "cost_denoiser_forwards": 40, "cost_denoiser_vjps": 0 if method == "none" else 40,
                "cost_objective_evals": 0, "cost_objective_grads": 0, "cost_finetune_samples": 0,
                "wall_seconds": 1.0, "peak_memory_mb": 1.0, "status": "ok", "error": None,
                "cell": f"{task}/trained/linear/{method}/alg1/s{strength!r}_n10_seed{seed}"}
            for rnd in (0, 1):
                values = FINAL[("none", 0.0)] if rnd == 0 else final
                for metric, value in zip(METRICS, values):
                    rows.append(base | {"round": rnd, "metric": metric, "value": value + 0.001 * seed})
    return rows


@pytest.fixture
def ring(monkeypatch):
    monkeypatch.setitem(TASKS, "md_ring", RingTask)
    return agg.label_results(pd.DataFrame(_rows("md_ring")))


def test_a_plugin_tasks_directions_reach_the_panel(ring):
    assert agg.metric_direction("radius_error", "md_ring") == "lower"
    assert agg.metric_direction("sharpness", "md_ring") == "higher"
    assert agg.metric_direction("balance", "md_ring") == 0.5
    assert agg.metric_direction("mystery", "md_ring") is None            # declared by nobody: no direction
    assert agg.fidelity_candidates("md_ring") == ["radius_error"]         # only lower-is-better metrics
    assert agg.fidelity_metric(ring) == "radius_error"
    # declared ones in declaration order, then the undeclared one, unranked; never the reward statistics
    assert agg.panel_metrics(ring, "radius_error") == ["sharpness", "balance", "mystery"]


def test_an_undeclared_task_has_no_fidelity_metric_and_no_directions():
    df = agg.label_results(pd.DataFrame(_rows("md_unknown")))
    assert agg.declared_directions("md_unknown") == {}
    assert agg.fidelity_metric(df) is None                                # never guessed from a metric's name
    assert agg.panel_metrics(df) == ["balance", "mystery", "radius_error", "sharpness"]   # by name, unranked
    assert {agg.direction_arrow(agg.metric_direction(m, "md_unknown")) for m in agg.panel_metrics(df)} == {""}


def test_lower_is_ranked_ascending_on_the_front(ring):
    """The fidelity axis (declared lower): of two points with the same reward the lower error dominates."""
    board = agg.leaderboard(ring, "radius_error")
    pts = agg.tradeoff(board).set_index("method")
    assert bool(pts.loc["offring", "pareto"]) and bool(pts.loc["blurry", "pareto"])   # highest rewards
    more = pd.DataFrame({"fidelity": [0.1, 0.9], "reward": [1.0, 1.0]})
    assert list(agg.pareto_front(more, "fidelity", "reward")) == [True, False]
    assert list(board["method"]) == ["offring", "blurry", "good", "none"]           # reward: descending


def test_the_gate_reads_each_metrics_direction(ring):
    """A gate metric declared higher may not drop, one declared lower may not rise, without the config
    saying which way: 'blurry' loses sharpness, 'offring' leaves the ring; 'good' is admissible."""
    protocol = {"gate": {"md_ring": [{"metric": "sharpness", "tolerance": 0.05},
                                     {"metric": "radius_error", "tolerance": 0.05}]}}
    rules = vd.gates_for(protocol, "md_ring", "linear", set(METRICS))
    assert [(r["metric"], r["higher_is_better"]) for r in rules] == [("sharpness", True), ("radius_error", False)]
    cells = vd.cell_table(ring, ["sharpness", "radius_error"])
    refs = vd.references(cells, rules)
    verdicts = {m: vd.admissibility(cells[cells["method"] == m], rules, refs) for m in ("good", "blurry", "offring")}
    assert verdicts["good"] == (True, "")
    assert not verdicts["blurry"][0] and verdicts["blurry"][1].startswith("sharpness 0.501 < 0.951")
    assert not verdicts["offring"][0] and verdicts["offring"][1].startswith("radius_error 0.901 > 0.151")
    # with the schema's filled-in default (false) for a lower metric: the same; a contradiction is an error
    same = vd.gates_for({"gate": {"md_ring": [{"metric": "radius_error", "tolerance": 0.05,
                                              "higher_is_better": False}]}}, "md_ring", "linear", set(METRICS))
    assert same[0]["higher_is_better"] is False
    with pytest.raises(ValueError, match="declares it 'higher' is better"):
        vd.gates_for({"gate": {"md_ring": [{"metric": "sharpness", "tolerance": 0.1, "higher_is_better": False}]}},
                     "md_ring", "linear", set(METRICS))
    # a target metric is gated only the way the config says
    with pytest.raises(ValueError, match="best near 0.5, but a gate compares one way"):
        vd.gates_for({"gate": {"md_ring": [{"metric": "balance", "tolerance": 0.1}]}}, "md_ring", "linear",
                     set(METRICS))
    (up,) = vd.gates_for({"gate": {"md_ring": [{"metric": "balance", "tolerance": 0.1, "higher_is_better": True}]}},
                         "md_ring", "linear", set(METRICS))
    assert up["higher_is_better"] is True
    # undeclared: the config's flag, default lower (the schema's default)
    (low,) = vd.gates_for({"gate": {"md_ring": [{"metric": "mystery", "tolerance": 0.1}]}}, "md_ring", "linear",
                          set(METRICS))
    assert low["higher_is_better"] is False


def test_the_page_shows_the_plugins_directions(ring, tmp_path):
    results = tmp_path / "all.parquet"
    write_atomic(to_table(_rows("md_ring")), results)
    html = build_report(results, tmp_path / "index.html").read_text()
    assert "fidelity metric: <b>radius_error</b>" in html
    assert "Fidelity: radius_error per round (lower is better)" in html
    assert "<th>sharpness ↑</th>" in html and "<th>balance →0.5</th>" in html and "<th>mystery</th>" in html
    assert "↑ higher is better, ↓ lower is better, →0.5 best near 0.5, no arrow: no declared direction" in html
    assert "The fidelity metric of a panel is the first of radius_error that it measures" in html


def test_a_plugin_task_named_by_its_import_path():
    name = f"{__name__}:RingTask"
    assert agg.declared_directions(name) == RingTask.metric_directions
    df = agg.label_results(pd.DataFrame(_rows(name)))
    assert agg.fidelity_metric(df) == "radius_error"


def test_a_plugin_objectives_own_metrics(monkeypatch):
    """An objective that is not the task's own declares its metrics; they join the task's."""
    from benchmark.objectives import OBJECTIVES, Objective

    class Calibrated(Objective):
        tasks = ("md_ring",)
        metric_directions = {"coverage": 0.9, "radius_error": "lower"}

    monkeypatch.setitem(TASKS, "md_ring", RingTask)
    monkeypatch.setitem(OBJECTIVES, "md_calibrated", Calibrated)
    declared = agg.declared_directions("md_ring", "md_calibrated param=1")
    assert list(declared) == ["radius_error", "sharpness", "balance", "coverage"] and declared["coverage"] == 0.9
    assert agg.metric_direction("coverage", "md_ring", "linear") is None        # another objective's: not this one's
    Calibrated.metric_directions = {"sharpness": "lower"}
    with pytest.raises(ValueError, match="'md_ring' declares 'higher', objective 'md_calibrated' declares 'lower'"):
        agg.declared_directions("md_ring", "md_calibrated")


def test_check_direction_names_the_metric_the_bad_direction_and_what_is_allowed():
    for ok in ("higher", "lower", 0.5, 1, -2.0):
        directions.check_direction("m", ok, "task 't'")
    for bad in ("up", True, math.nan, math.inf, None, [1]):
        with pytest.raises(ValueError, match=r"^task 't': metric 'm' has direction "):
            directions.check_direction("m", bad, "task 't'")
    assert [directions.direction_arrow(d) for d in ("higher", "lower", 0.5, None)] == ["↑", "↓", "→0.5", ""]
