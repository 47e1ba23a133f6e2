"""benchmark/report/build.py: the page the report writes, self-contained, its tables and figures drawing the
numbers checked by hand (tests/report/test_aggregate.py), and the metric notes under its tables."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from benchmark.report import aggregate as agg
from benchmark.report import verdict as vd
from benchmark.report.build import build_report
from benchmark.report.html import fmt_ci
from benchmark.results import COLUMNS, to_table, write_atomic
from benchmark.tasks import TASKS
from tests.report.test_aggregate import ERROR, FAILED, METHODS, ROUNDS, SEEDS, _r_off, _reward, _rows
from tests.report.test_aggregate import results  # noqa: F401  (a fixture)
from tests.report_page import capture_figures, panels, parse_report


T975 = {2: 12.706204736174694, 3: 4.302652729749462}     # n seeds -> t_{0.975, n - 1}


def _by_hand(f, method: str, strength: float, rnd: int = ROUNDS) -> tuple[float, float, int]:
    """(mean, CI half-width, n) of f over the seeds of the ok cells of (method, strength) at round rnd."""
    v = np.array([f(method, strength, s, rnd) for s in SEEDS if (method, strength, s) != FAILED])
    return v.mean(), T975[len(v)] * v.std(ddof=1) / math.sqrt(len(v)), len(v)


GROUPS = [(m, s) for m, (strengths, _, _) in METHODS.items() for s in strengths]


def test_build_report_writes_self_contained_page(results, tmp_path, monkeypatch):
    drawn = capture_figures(monkeypatch)
    models = tmp_path / "models"
    models.mkdir()
    (models / "subspace.json").write_text(json.dumps(
        {"task": "subspace", "heldout_loss": 0.123, "oracle_heldout_loss": 0.1, "n_params": 4242,
         "wall_seconds": 12.5, "peak_memory_mb": 321.0, "losses": [1.0, 0.5]}))
    out = tmp_path / "site" / "index.html"
    figures = tmp_path / "figures"
    assert build_report(results, out, models_dir=models, figures_dir=figures) == out
    html = out.read_text()
    assert "http://" not in html and "https://" not in html
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]
    page = parse_report(html)

    summary = page["summary"]
    assert summary.counts == {"cells": "15", "ok": "14", "diverged": "0", "failed": "1"}
    bad = summary.table("Cells that did not finish ok").records()
    assert [(r["run id"], r["method"], r["status"], r["last round"], r["error"]) for r in bad] == [
        ("naive-1-2", "naive", "failed", "2", ERROR)]
    assert "RuntimeError: bad value &lt;inf&gt; in round 2" in html                    # escaped in the page

    (panel,) = panels(html)
    assert panel.title == "subspace · linear · oracle"
    board = panel.table("Leaderboard (final round)")
    assert board.header[:7] == ["method", "strength", "final round", "reward_mean", "n", "r_off", "n"]
    finals = {g: _by_hand(_reward, *g) for g in GROUPS}
    order = sorted(GROUPS, key=lambda g: -finals[g][0])
    rows = board.records()
    assert [(r["method"], r["strength"]) for r in rows] == [(m, f"{s:g}") for m, s in order]
    for (method, strength), r in zip(order, rows):
        mean, half, n = finals[(method, strength)]
        fid_mean, fid_half, _ = _by_hand(_r_off, method, strength)
        failed = int((method, strength) == FAILED[:2])
        assert (r["reward_mean"], r["n"]) == (fmt_ci(mean, half), str(n)), r
        assert (r["r_off"], r["n.1"]) == (fmt_ci(fid_mean, fid_half), str(n)), r
        assert (r["final round"], r["seeds"], r["ok"], r["diverged"], r["failed"]) == (
            str(ROUNDS), "3", str(3 - failed), "0", str(failed)), r
        assert r["best strength"] == ("★" if strength == max(METHODS[method][0]) else ""), r

    # Per sample per guided round: round 0's unguided costs are not in these numbers.
    costs = {(r["method"], r["strength"]): r for r in panel.table("Compute cost").records()}
    assert set(costs) == {(m, f"{s:g}") for m, s in GROUPS}
    for (method, strength), r in costs.items():
        vjps, wall = METHODS[method][1:]
        cells = "2" if (method, strength) == ("naive", "1") else "3"
        assert r == {"method": method, "strength": strength, "cells": cells,
                     "denoiser forwards": "10", "denoiser VJPs": str(vjps), "objective evals": "2",
                     "objective grads": "1" if vjps else "0", "fine-tuning samples": "0", "wall s / round": f"{wall:g}",
                     "peak memory MB": f"{100 + vjps:g}", "wall × unguided": f"{wall:g}"}
    assert not [p for p in panel.paragraphs if "No unguided method" in p]
    assert "Pareto front (reward_mean vs r_off): gloss at strength 0.5, gloss at strength 1, none at strength 0." \
        in panel.paragraphs

    # The figures shown are the ones saved, and they draw the numbers of the tables.
    titles = ["Convergence: reward_mean per round", "Fidelity: r_off per round (lower is better)",
              "Trade-off across strengths: reward_mean vs r_off"]
    assert [f.alt for f in panel.figures][:3] == titles
    assert all(f.caption.startswith(f.alt + ".") for f in panel.figures)
    assert sorted(f.png for f in panel.figures) == sorted(p.read_bytes() for p in figures.glob("*.png"))
    assert len(drawn) == len(panel.figures) and all(d.title == panel.title for d in drawn)
    drawn = dict(zip((f.alt for f in panel.figures), drawn))
    best = {"none": 0.0, "gloss": 1.0, "naive": 1.0}
    for title, f in zip(titles, (_reward, _r_off)):
        d = drawn[title]
        assert set(d.lines) == {f"{m} (strength {s:g})" for m, s in best.items()}
        for m, s in best.items():
            x, y = d.lines[f"{m} (strength {s:g})"]
            assert list(x) == list(range(ROUNDS + 1))
            assert y == pytest.approx([_by_hand(f, m, s, rnd)[0] for rnd in range(ROUNDS + 1)])
    trade = drawn[titles[2]]
    assert (trade.xlabel, trade.ylabel) == ("final r_off (lower is better)", "final reward_mean (higher is better)")
    for method, (strengths, _, _) in METHODS.items():
        x, y = trade.lines[method]
        assert x == pytest.approx([_by_hand(_r_off, method, s)[0] for s in strengths])
        assert y == pytest.approx([finals[(method, s)][0] for s in strengths])
    (ring,) = [c for c in trade.scatters if c["sizes"] == [140.0]]              # the Pareto front, ringed
    front = [("none", 0.0), ("gloss", 0.5), ("gloss", 1.0)]
    want = np.array([[_by_hand(_r_off, *g)[0], finals[g][0]] for g in front])
    assert ring["offsets"].shape == want.shape and np.allclose(ring["offsets"], want)
    assert sorted(t for t, _ in trade.texts) == sorted(f"{s:g}" for _, s in GROUPS)

    models_table = page["models"].tables[0]
    assert models_table.header == ["entry", "subspace.json"]
    entries = {r["entry"]: r["subspace.json"] for r in models_table.records()}
    assert entries == {"task": "subspace", "heldout_loss": "0.123", "oracle_heldout_loss": "0.1", "n_params": "4242",
                       "wall_seconds": "12.5", "peak_memory_mb": "321"}            # lists are left out
    provenance = dict(page["provenance"].tables[0].rows)
    assert provenance["git commits"] == "abc123" and provenance["SLURM jobs"] == "0"


def test_build_report_survives_single_seed_and_no_fidelity(tmp_path):
    rows = [r for r in _rows() if r["seed"] == 0 and r["metric"] == "reward_mean"]
    path = tmp_path / "one.parquet"
    write_atomic(to_table(rows), path)
    out = tmp_path / "index.html"
    build_report(path, out)
    (panel,) = panels(out.read_text())
    board = panel.table("Leaderboard").records()
    assert len(board) == len(GROUPS)
    assert all(r["reward_mean"] == f"{_reward(r['method'], float(r['strength']), 0, ROUNDS):.4g} (CI n/a)"
               for r in board), board
    assert "r_off" not in panel.table("Leaderboard").header
    assert any(p.endswith("fidelity metric: none measured") for p in panel.paragraphs), panel.paragraphs
    assert [f.alt for f in panel.figures] == ["Convergence: reward_mean per round"]


def test_report_without_galleries_has_no_gallery_section(results, tmp_path):
    out = tmp_path / "index.html"
    build_report(results, out, cells_dir=tmp_path / "nowhere")
    assert "Sample galleries" not in out.read_text()


def test_the_page_says_which_posterior_each_calibration_metric_is_against(tmp_path):
    """subspace's metric notes: the data posterior's metrics and the sampler posterior's, each named once in
    the leaderboard's caption and under the verdict table."""
    from benchmark.report.build import _metric_notes

    notes = _metric_notes("subspace", ["w2", "var_ratio", "w2_sampler", "var_ratio_sampler", "r_off"])
    assert notes == ["w2, var_ratio: " + TASKS["subspace"].metric_notes["w2"],
                     "w2_sampler, var_ratio_sampler: " + TASKS["subspace"].metric_notes["w2_sampler"]]
    assert "data posterior" in notes[0] and "sampler's own output law" in notes[1]
    assert _metric_notes("sphere", ["norm_error"]) == [] and _metric_notes("md_unknown", ["w2"]) == []
    final = {"none": (-40.0, 0.0, 2.2, 1.42, 2.1, 1.55), "smc": (-8.0, 0.0, 0.44, 0.94, 0.41, 1.02)}
    rows = []
    for method, values in final.items():
        for seed in SEEDS:
            base = {c: None for c in COLUMNS} | {
                "run_id": f"{method}-{seed}", "task": "subspace", "objective": "gaussian_inverse", "denoiser": "oracle",
                "method": method, "strength": 0.0 if method == "none" else 1.0, "seed": seed, "algorithm": "alg1",
                "linearise": "per_sample", "samples": 4, "steps": 50, "eta": 1.0, "schedule": "cosine",
                "params_json": "{}", "settings_json": "{}", "cost_denoiser_forwards": 200, "cost_denoiser_vjps": 0,
                "cost_objective_evals": 0, "cost_objective_grads": 0, "cost_finetune_samples": 0,
                "wall_seconds": 1.0, "peak_memory_mb": 1.0, "status": "ok", "error": None,
                "cell": f"subspace/oracle/gaussian_inverse/{method}/alg1/n50_seed{seed}"}
            for rnd in (0, 1):
                vals = final["none"] if rnd == 0 else values
                for metric, value in zip(("reward_mean", "r_off", "w2", "var_ratio", "w2_sampler",
                                          "var_ratio_sampler"), vals):
                    rows.append(base | {"round": rnd, "metric": metric, "value": value + 0.001 * seed})
    import pyarrow as pa

    results = tmp_path / "all.parquet"
    write_atomic(to_table(rows).append_column("cell", pa.array([r["cell"] for r in rows], pa.string())), results)
    header = {"selection": "gated_max_reward", "seeds": {"tuning": [0], "evaluation": [1, 2]}, "budget": 1,
              "level": 0.95, "bootstrap": 200, "compute_budgets": [], "gate": {}}
    tune = agg.label_results(pd.DataFrame(rows))[lambda d: d["seed"] == 0]
    groups = {job: job for job in tune["cell"].map(vd.job_of)}
    vd.write_selection(vd.select(tune, groups, header), header, header["seeds"], tmp_path / "selected")
    html = build_report(results, tmp_path / "index.html", selected=tmp_path / "selected").read_text()
    assert "<th>w2_sampler ↓</th>" in html and "<th>var_ratio →1</th>" in html
    from markupsafe import escape

    for note in notes:   # the leaderboard's caption and the verdict table's
        assert html.count(str(escape(note)) + ".") == 2, note

