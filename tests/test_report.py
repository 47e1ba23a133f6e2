"""The HTML report: its numbers checked by hand, and the page it writes."""

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

SAMPLES = 4
ROUNDS = 3
SEEDS = (0, 1, 2)
# method -> (strengths, denoiser VJPs per sample per round, wall seconds per round)
METHODS = {"none": ((0.0,), 0, 1.0), "gloss": ((0.5, 1.0), 10, 3.0), "naive": ((0.5, 1.0), 0, 2.0)}
FAILED = ("naive", 1.0, 2)
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
                    if failed and rnd == 2:  # as run_cell records an exception: one NaN row, zero cost
                        zero = {k: 0 for k in base if k.startswith("cost_")}
                        cell.append(base | zero | {"round": rnd, "metric": "reward_mean", "value": math.nan,
                                                   "wall_seconds": 0.0})
                        break
                    for metric, f in (("reward_mean", _reward), ("r_off", _r_off)):
                        cell.append(base | {"round": rnd, "metric": metric, "value": f(method, strength, seed, rnd)})
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
    assert agg.t_quantile(2) == pytest.approx(4.302652729749462, rel=1e-9)
    assert agg.t_quantile(10) == pytest.approx(2.2281388519649385, rel=1e-9)
    assert agg.t_quantile(1000) == pytest.approx(1.9623390808264078, rel=1e-6)
    assert math.isnan(agg.t_quantile(0))


def test_fallback_t_quantile_without_scipy(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_scipy(name, *args, **kwargs):
        if name == "scipy" or name.startswith("scipy."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_scipy)
    assert agg.t_quantile(2) == pytest.approx(4.302652729749462, rel=1e-9)
    assert agg.t_quantile(40) == pytest.approx(2.0210753903062737, rel=1e-4)
    assert agg.t_quantile(5, level=0.9) == pytest.approx(2.015048372669157, rel=2e-2)


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


def test_build_report_writes_self_contained_page(results, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "subspace.json").write_text(json.dumps(
        {"task": "subspace", "heldout_loss": 0.123, "oracle_heldout_loss": 0.1, "n_params": 4242,
         "wall_seconds": 12.5, "peak_memory_mb": 321.0, "losses": [1.0, 0.5]}))
    out = tmp_path / "site" / "index.html"
    figures = tmp_path / "figures"
    assert build_report(results, out, models_dir=models, figures_dir=figures) == out
    html = out.read_text()
    assert '<img src="data:image/png;base64,' in html
    assert "http://" not in html and "https://" not in html
    for method in METHODS:
        assert method in html
    assert "RuntimeError: bad value &lt;inf&gt; in round 2" in html  # listed, and escaped
    assert "Pre-trained models" in html and "4242" in html and "0.123" in html
    assert "CI n/a" not in html  # every group has at least two finite seeds
    assert len(list(figures.glob("*.png"))) == 3
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


def test_build_report_survives_single_seed_and_no_fidelity(tmp_path):
    rows = [r for r in _rows() if r["seed"] == 0 and r["metric"] == "reward_mean"]
    path = tmp_path / "one.parquet"
    write_atomic(to_table(rows), path)
    out = tmp_path / "index.html"
    build_report(path, out)
    html = out.read_text()
    assert "CI n/a" in html
    assert "none measured" in html


def test_variants_are_never_averaged_as_seeds(tmp_path):
    """Algorithm 1 and 2 (or two step counts) of one method are separate rows of the leaderboard."""
    rows = [r for r in _rows() if r["method"] == "gloss" and r["strength"] == 1.0]
    alg2 = [r | {"run_id": r["run_id"] + "-alg2", "algorithm": "alg2", "value": r["value"] + 100} for r in rows]
    fewer = [r | {"run_id": r["run_id"] + "-n5", "steps": 5} for r in rows]
    path = tmp_path / "variants.parquet"
    write_atomic(to_table(rows + alg2 + fewer), path)
    board = agg.leaderboard(agg.load_results(path), fidelity="r_off").set_index("method")
    assert set(board.index) == {"gloss n=10", "gloss +alg2 n=10", "gloss n=5"}
    assert (board["seeds"] == len(SEEDS)).all()
    assert board.loc["gloss +alg2 n=10", "reward"] == pytest.approx(board.loc["gloss n=10", "reward"] + 100)


def _image_cell(method: str, strength: float, seed: int, objective: str, objective_params: dict) -> list[dict]:
    """A digits cell's rows: rounds 0 (unguided) and 1, with the metrics of `objective`."""
    base = _base("none" if method == "none" else "gloss", strength, seed) | {
        "run_id": f"digits-{objective}-{json.dumps(objective_params, sort_keys=True)}-{method}-{strength:g}-{seed}",
        "task": "digits", "objective": objective, "denoiser": "trained", "method": method, "steps": 50,
        "params_json": json.dumps({"objective_params": objective_params})}
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


def test_report_embeds_the_lowest_seeds_gallery_per_method_and_strength(image_results, tmp_path):
    import base64

    from benchmark.report.galleries import find_galleries

    results, pngs = image_results
    found = find_galleries(results.parent / "cells")
    assert len(found) == len(pngs) + 1  # the stale cell's gallery is found, not shown (not in the results)
    out = tmp_path / "index.html"
    build_report(results, out)  # galleries from the `cells` folder beside the results file
    html = out.read_text()
    shown = {run_id for run_id, data in pngs.items() if base64.b64encode(data).decode() in html}
    assert shown == {r for r in pngs if r.endswith("-0")}  # seed 0 of each (objective, method, strength)
    assert len(shown) == 6
    assert html.count("<h3>Sample galleries</h3>") == 2
    assert "<b>dps</b>, strength 0.3 (seed 0)" in html
    none_at = html.index("<b>none</b>, strength 0 (seed 0)")
    assert none_at < html.index("<b>dps</b>, strength 0.3 (seed 0)")  # the unguided baseline first
    for stray in ("digits/trained/exp/stray.png", "digits/trained/old/label/dps/alg1/s9.0_n50_seed0.png"):
        assert base64.b64encode((results.parent / "cells" / stray).read_bytes()).decode() not in html
    assert "fidelity metric: <b>1-ssim</b>" in html and "fidelity metric: <b>fd</b>" in html
    assert "eval_accuracy ↑" in html and "meas_error ↓" in html
    assert "http://" not in html and "https://" not in html


def test_report_without_galleries_has_no_gallery_section(results, tmp_path):
    out = tmp_path / "index.html"
    build_report(results, out, cells_dir=tmp_path / "nowhere")
    assert "Sample galleries" not in out.read_text()


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
