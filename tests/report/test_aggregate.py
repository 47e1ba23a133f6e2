"""benchmark/report/aggregate.py: the report's numbers checked by hand on hand-made results. t quantiles and
CIs over seeds, the leaderboard (failed and diverged cells left out and counted), the Pareto front, the cost
table per guided round against the unguided run of the same grid, panels and their fidelity metric. The results
built here (`results`, `df`, `image_results`) serve the page's tests too (tests/report/test_build.py,
test_galleries.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from benchmark.report import aggregate as agg
from benchmark.report import build_report
from benchmark.report.html import fmt_ci
from benchmark.results import COLUMNS, to_table, write_atomic
from tests.report_page import panels

SAMPLES = 4


ROUNDS = 3


SEEDS = (0, 1, 2)


# method -> (strengths, denoiser VJPs per sample per round, wall seconds per round)
METHODS = {"none": ((0.0,), 0, 1.0), "gloss": ((0.5, 1.0), 10, 3.0), "naive": ((0.5, 1.0), 0, 2.0)}


FAILED = ("naive", 1.0, 2)


# Round 0 is the unguided batch of every cell (as run_rounds records it): unguided sampling's costs
# and wall time, unlike the guided rounds' that the cost table reports.
ROUND0 = {"cost_denoiser_forwards": 10 * SAMPLES, "cost_denoiser_vjps": 0, "cost_objective_evals": 0,
          "cost_objective_grads": 0, "cost_finetune_samples": 0, "wall_seconds": 1.0, "peak_memory_mb": 100.0}


ERROR = "RuntimeError: bad value <inf> in round 2"


def _reward(method: str, strength: float, seed: int, rnd: int) -> float:
    gain = {"none": 0.0, "gloss": 1.0, "naive": 0.6}[method]
    return gain * strength * rnd + 0.1 * seed + 0.01 * (seed * seed)


def _r_off(method: str, strength: float, seed: int, rnd: int) -> float:
    return 0.1 + {"none": 0.0, "gloss": 0.2, "naive": 0.5}[method] * strength * rnd + 0.01 * seed


def _base(method: str, strength: float, seed: int) -> dict:
    base = {c: None for c in COLUMNS}
    vjps, wall = METHODS[method][1:]
    return base | {
        "run_id": f"{method}-{strength:g}-{seed}", "task": "subspace", "objective": "linear", "denoiser": "oracle",
        "method": method, "strength": strength, "seed": seed, "algorithm": "alg1", "linearise": "per_sample",
        "samples": SAMPLES, "steps": 10, "eta": 0.0, "schedule": "cosine", "params_json": "{}",
        "cost_denoiser_forwards": 10 * SAMPLES, "cost_denoiser_vjps": vjps * SAMPLES,
        "cost_objective_evals": 2 * SAMPLES, "cost_objective_grads": (1 if vjps else 0) * SAMPLES, "cost_finetune_samples": 0,
        "wall_seconds": wall, "peak_memory_mb": 100.0 + vjps, "status": "ok", "error": None,
        "package_version": "0.1.0", "git_commit": "abc123", "torch_version": "2.13.0", "device": "cpu",
        "hostname": "node1", "started_at": "2025-01-01T00:00:00+00:00", "slurm_job_id": None,
    }


def _rows() -> list[dict]:
    rows = []
    for method, (strengths, _, _) in METHODS.items():
        for strength in strengths:
            for seed in SEEDS:
                base = _base(method, strength, seed)
                cell = []
                failed = (method, strength, seed) == FAILED
                for rnd in range(ROUNDS + 1):
                    costs = ROUND0 if rnd == 0 else {}
                    if failed and rnd == 2:  # as run_cell records an exception: one NaN row, zero cost
                        zero = {k: 0 for k in base if k.startswith("cost_")}
                        cell.append(base | zero | {"round": rnd, "metric": "reward_mean", "value": math.nan,
                                                   "wall_seconds": 0.0})
                        break
                    for metric, f in (("reward_mean", _reward), ("r_off", _r_off)):
                        cell.append(base | costs | {"round": rnd, "metric": metric,
                                                    "value": f(method, strength, seed, rnd)})
                status, error = ("failed", ERROR) if failed else ("ok", None)
                rows += [r | {"status": status, "error": error} for r in cell]
    return rows


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    path = tmp_path_factory.mktemp("results") / "all.parquet"
    write_atomic(to_table(_rows()), path)
    return path


@pytest.fixture(scope="module")
def df(results):
    return agg.load_results(results)


def test_t_quantile_matches_known_values():
    """Two-sided quantiles t_{(1+level)/2, df} from published tables (to their digits) and scipy."""
    assert agg.t_quantile(1) == pytest.approx(12.706204736174694, rel=1e-12)
    assert agg.t_quantile(2) == pytest.approx(4.302652729749462, rel=1e-12)
    assert agg.t_quantile(10) == pytest.approx(2.228138851986274, rel=1e-12)
    assert agg.t_quantile(1000) == pytest.approx(1.9623390808264083, rel=1e-12)
    assert agg.t_quantile(5, level=0.9) == pytest.approx(2.0150483733330233, rel=1e-12)
    assert agg.t_quantile(10, level=0.99) == pytest.approx(3.16927267261695, rel=1e-12)
    assert math.isnan(agg.t_quantile(0))


def test_mean_ci_by_hand():
    values = [1.0, 2.0, 4.0, math.nan]  # the NaN (a failed seed) is left out
    mean, half, n = agg.mean_ci(values)
    v = np.array([1.0, 2.0, 4.0])
    assert n == 3
    assert mean == pytest.approx(7 / 3)
    assert half == pytest.approx(4.302652729749462 * v.std(ddof=1) / math.sqrt(3))
    assert agg.mean_ci([5.0]) == (5.0, pytest.approx(math.nan, nan_ok=True), 1)
    assert agg.mean_ci([math.nan])[2] == 0
    assert fmt_ci(5.0, math.nan) == "5 (CI n/a)"


def test_leaderboard_ci_over_seeds_by_hand(df):
    board = agg.leaderboard(df, "r_off").set_index(["method", "strength"])
    row = board.loc[("gloss", 1.0)]
    finals = np.array([_reward("gloss", 1.0, s, ROUNDS) for s in SEEDS])
    half = 4.302652729749462 * finals.std(ddof=1) / math.sqrt(len(SEEDS))
    assert row["reward"] == pytest.approx(finals.mean())
    assert row["reward_ci"] == pytest.approx(half)
    assert row["reward_n"] == 3 and row["seeds"] == 3 and row["final_round"] == ROUNDS
    fid = np.array([_r_off("gloss", 1.0, s, ROUNDS) for s in SEEDS])
    assert row["fidelity"] == pytest.approx(fid.mean())
    assert row["fidelity_ci"] == pytest.approx(4.302652729749462 * fid.std(ddof=1) / math.sqrt(3))


def test_leaderboard_counts_failed_cell_and_marks_best_strength(df):
    board = agg.leaderboard(df, "r_off")
    assert list(board["reward"]) == sorted(board["reward"], reverse=True)
    row = board.set_index(["method", "strength"]).loc[("naive", 1.0)]
    assert (row["ok"], row["failed"], row["diverged"], row["reward_n"]) == (2, 1, 0, 2)
    ok_finals = [_reward("naive", 1.0, s, ROUNDS) for s in SEEDS if ("naive", 1.0, s) != FAILED]
    assert row["reward"] == pytest.approx(np.mean(ok_finals))
    assert agg.best_strengths(board) == {"none": 0.0, "gloss": 1.0, "naive": 1.0}
    assert board["best"].sum() == 3


def test_a_diverged_cells_finite_values_are_left_out_of_the_means(tmp_path):
    """A cell recorded as diverged keeps its (finite, meaningless) last-round values in the file: the
    leaderboard counts it as diverged and averages the other seeds only."""
    diverged = ("gloss", 0.5, 2)
    rows = [r | ({"status": "diverged", "error": "non-finite samples"}
                 if (r["method"], r["strength"], r["seed"]) == diverged else {}) for r in _rows()]
    board = agg.leaderboard(agg.load_results(_write(tmp_path / "d.parquet", rows)), "r_off")
    row = board.set_index(["method", "strength"]).loc[diverged[:2]]
    assert (row["ok"], row["diverged"], row["reward_n"], row["fidelity_n"]) == (2, 1, 2, 2)
    assert row["reward"] == pytest.approx(np.mean([_reward("gloss", 0.5, s, ROUNDS) for s in (0, 1)]))
    assert row["fidelity"] == pytest.approx(np.mean([_r_off("gloss", 0.5, s, ROUNDS) for s in (0, 1)]))


def test_pareto_front_by_hand():
    pts = pd.DataFrame({"name": list("ABCDEF"),
                        "x": [1.0, 2.0, 2.0, 0.5, 3.0, math.nan],
                        "y": [1.0, 2.0, 1.0, 0.5, 2.0, 5.0]})
    # C is dominated by A and B, E by B (same reward, worse fidelity); F has no fidelity.
    front = agg.pareto_front(pts, "x", "y")
    assert list(pts.loc[front, "name"]) == ["A", "B", "D"]


def test_tradeoff_points_in_strength_order(df):
    pts = agg.tradeoff(agg.leaderboard(df, "r_off"))
    assert len(pts) == 5
    for _, p in pts.groupby("method"):
        assert list(p["strength"]) == sorted(p["strength"])
    # 'none' has the lowest r_off of all, so it is on the front.
    assert pts.set_index("method").loc["none", "pareto"]


def test_cost_table_per_sample_per_guided_round(df):
    costs = agg.cost_table(df).set_index(["method", "strength"])
    gloss = costs.loc[("gloss", 0.5)]
    assert gloss["denoiser_forwards"] == pytest.approx(10)
    assert gloss["denoiser_vjps"] == pytest.approx(10)
    assert gloss["objective_evals"] == pytest.approx(2)
    assert gloss["objective_grads"] == pytest.approx(1)
    assert gloss["wall_seconds_per_round"] == pytest.approx(3.0)
    assert gloss["wall_vs_unguided"] == pytest.approx(3.0)
    assert gloss["peak_memory_mb"] == pytest.approx(110.0)
    assert costs.loc[("naive", 0.5), "denoiser_vjps"] == 0
    assert costs.loc[("none", 0.0), "wall_vs_unguided"] == pytest.approx(1.0)
    # The failed cell (its zero-cost error row included) is left out of costs.
    assert costs.loc[("naive", 1.0), "cells"] == 2
    assert costs.loc[("naive", 1.0), "denoiser_forwards"] == pytest.approx(10)
    # Round 0 (unguided: no VJP, no objective call, wall 1 s) is not a guided round: left out.
    assert costs.loc[("none", 0.0), "objective_evals"] == pytest.approx(2)
    assert costs.loc[("naive", 0.5), "wall_vs_unguided"] == pytest.approx(2.0)


def _grid_variants(rows: list[dict], steps: int, wall: dict[str, float]) -> list[dict]:
    """The cells of `rows` again on a grid of `steps` steps, guided rounds taking wall[method] seconds."""
    return [r | {"run_id": f"{r['run_id']}-n{steps}", "steps": steps}
            | ({"wall_seconds": wall[r["method"]]} if r["round"] >= 1 else {}) for r in rows]


def test_unguided_baseline_is_method_none_whatever_its_variant_tags(tmp_path):
    """Two step counts in one panel label every method with its grid ('none steps=10', 'gloss steps=5'): the
    unguided baseline is still found, and each method is compared with the unguided run on its grid."""
    rows = [r for r in _rows() if r["method"] in ("none", "gloss") and r["strength"] in (0.0, 1.0)]
    path = _write(tmp_path / "grids.parquet", rows + _grid_variants(rows, 5, {"none": 0.5, "gloss": 2.0}))
    df = agg.load_results(path)
    costs = agg.cost_table(df).set_index("method")
    assert set(costs.index) == {"none steps=10", "none steps=5", "gloss steps=10", "gloss steps=5"}
    assert list(agg.is_unguided(costs.index.to_series())) == [m.startswith("none ") for m in costs.index]
    assert costs.loc["gloss steps=10", "wall_vs_unguided"] == pytest.approx(3.0)      # 3 s / 1 s
    assert costs.loc["gloss steps=5", "wall_vs_unguided"] == pytest.approx(4.0)       # 2 s / 0.5 s
    assert costs.loc["none steps=5", "wall_vs_unguided"] == pytest.approx(1.0)
    out = tmp_path / "index.html"
    build_report(path, out)
    (panel,) = panels(out.read_text())
    shown = {r["method"]: r["wall × unguided"] for r in panel.table("Compute cost").records()}
    assert shown == {"gloss steps=10": "3", "gloss steps=5": "4", "none steps=10": "1", "none steps=5": "1"}
    assert not [p for p in panel.paragraphs if "No unguided method" in p]


def test_a_panel_without_unguided_cells_says_so():
    rows = [r for r in _rows() if r["method"] == "gloss"]
    costs = agg.cost_table(pd.DataFrame(rows))
    assert costs["wall_vs_unguided"].isna().all()
    assert not agg.is_unguided(pd.Series(["gloss", "nonex n=5", "naive none=1"])).any()


def test_failed_cell_in_summary(df):
    counts, bad = agg.status_summary(df)
    assert counts == {"cells": 15, "ok": 14, "diverged": 0, "failed": 1}
    assert list(bad["run_id"]) == ["naive-1-2"]
    assert bad.loc[0, "error"] == ERROR
    assert bad.loc[0, "last_round"] == 2


def test_fidelity_metric_is_first_present(df):
    assert agg.fidelity_metric(df) == "r_off"
    assert agg.fidelity_metric(df, ["fd", "r_off"]) == "r_off"
    assert agg.fidelity_metric(df[df["metric"] != "r_off"]) is None


def test_variants_are_never_averaged_as_seeds(tmp_path):
    """Algorithm 1 and 2 (or two step counts) of one method are separate rows of the leaderboard."""
    rows = [r for r in _rows() if r["method"] == "gloss" and r["strength"] == 1.0]
    alg2 = [r | {"run_id": r["run_id"] + "-alg2", "algorithm": "alg2", "value": r["value"] + 100} for r in rows]
    fewer = [r | {"run_id": r["run_id"] + "-n5", "steps": 5} for r in rows]
    path = tmp_path / "variants.parquet"
    write_atomic(to_table(rows + alg2 + fewer), path)
    board = agg.leaderboard(agg.load_results(path), fidelity="r_off").set_index("method")
    assert set(board.index) == {"gloss steps=10", "gloss +alg2 steps=10", "gloss steps=5"}
    assert (board["seeds"] == len(SEEDS)).all()
    assert board.loc["gloss +alg2 steps=10", "reward"] == pytest.approx(board.loc["gloss steps=10", "reward"] + 100)


def _image_cell(method: str, strength: float, seed: int, objective: str, objective_params: dict) -> list[dict]:
    """A digits cell's rows: rounds 0 (unguided) and 1, with the metrics of `objective`."""
    base = _base("none" if method == "none" else "gloss", strength, seed) | {
        "run_id": f"digits-{objective}-{json.dumps(objective_params, sort_keys=True)}-{method}-{strength:g}-{seed}",
        "task": "digits", "objective": objective, "denoiser": "trained", "method": method, "steps": 50,
        "settings_json": json.dumps({"objective_params": objective_params})}
    metrics = {"label": {"reward_mean": -2.0, "fd": 10.0, "eval_accuracy": 0.1, "guide_accuracy": 0.1},
               "inpaint": {"reward_mean": -5.0, "ssim": 0.2, "psnr": 10.0, "meas_error": 5.0}}[objective]
    gain = strength + 0.01 * seed
    rows = []
    for rnd in (0, 1):
        for metric, value in metrics.items():
            if metric in ("reward_mean", "ssim", "psnr", "eval_accuracy", "guide_accuracy"):
                value = value + rnd * gain * (0.1 if metric in ("ssim", "eval_accuracy", "guide_accuracy") else 1)
            rows.append(base | {"round": rnd, "metric": metric, "value": value})
    return rows


def _png(path, shade: int) -> bytes:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (3, 2), shade).save(path, format="PNG")
    return path.read_bytes()


@pytest.fixture
def image_results(tmp_path):
    """An image task's sweep laid out as the workflow writes it: results/cells/<cell>.parquet + .png."""
    from benchmark.results import aggregate

    cells_dir = tmp_path / "results" / "cells"
    pngs, files = {}, []
    for objective, params in (("inpaint", {"sigma_y": 0.05}), ("label", {"target": "all"})):
        for method, strengths in (("none", (0.0,)), ("dps", (0.3, 1.0))):
            for strength in strengths:
                for seed in (1, 0):  # the lowest seed's gallery is shown, whatever the order on disk
                    cell = f"digits/trained/exp/{objective}/{method}/alg1/s{strength}_n50_seed{seed}"
                    rows = _image_cell(method, strength, seed, objective, params)
                    write_atomic(to_table(rows), cells_dir / f"{cell}.parquet")
                    files.append(cells_dir / f"{cell}.parquet")
                    pngs[rows[0]["run_id"]] = _png(cells_dir / f"{cell}.png", shade=len(pngs) * 10)
    # Not galleries of these results: a PNG with no Parquet file, and one of a cell left out of the aggregate.
    _png(cells_dir / "digits/trained/exp/stray.png", 250)
    stale = "digits/trained/old/label/dps/alg1/s9.0_n50_seed0"
    write_atomic(to_table(_image_cell("dps", 9.0, 0, "label", {"target": "all"})), cells_dir / f"{stale}.parquet")
    _png(cells_dir / f"{stale}.png", 251)
    results = tmp_path / "results" / "all.parquet"
    aggregate(files, results)
    return results, pngs


def test_fidelity_of_image_panels(image_results):
    df = agg.load_results(image_results[0])
    by_objective = {key[1]: rows for key, rows in agg.panels(df)}
    assert agg.fidelity_metric(by_objective["label"]) == "fd"
    inpaint = by_objective["inpaint"]
    assert agg.fidelity_metric(inpaint) == "1-ssim"  # derived: lower is better, like every fidelity metric
    board = agg.leaderboard(inpaint, "1-ssim", extra=agg.panel_metrics(inpaint, "1-ssim")).set_index(["method", "strength"])
    ssim = [0.2 + 0.1 * (1.0 + 0.01 * s) for s in (0, 1)]
    assert board.loc[("dps", 1.0), "fidelity"] == pytest.approx(1 - np.mean(ssim))
    assert board.loc[("dps", 1.0), "ssim"] == pytest.approx(np.mean(ssim))
    assert agg.panel_metrics(inpaint, "1-ssim") == ["psnr", "ssim", "meas_error"]
    assert agg.panel_metrics(by_objective["label"], "fd") == ["eval_accuracy", "guide_accuracy"]


def test_objective_settings_are_separate_panels(tmp_path):
    rows = _image_cell("dps", 1.0, 0, "label", {"target": 3}) + _image_cell("dps", 1.0, 0, "label", {"target": "all"})
    path = tmp_path / "targets.parquet"
    write_atomic(to_table(rows), path)
    df = agg.load_results(path)
    assert [key[1] for key, _ in agg.panels(df)] == ["label target=3", "label target=all"]
    one = agg.load_results(_write(tmp_path / "one.parquet", rows[: len(rows) // 2]))
    assert set(one["objective"]) == {"label"}  # a single setting keeps the plain name


def _write(path, rows):
    write_atomic(to_table(rows), path)
    return path

