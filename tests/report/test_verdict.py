"""benchmark/report/verdict.py: the gate, selection on tuning seeds, held-out scoring, paired differences,
hypervolume and CI-aware fronts, on hand-made results. The cells made here serve the tests of the ranks across
panels (tests/report/test_summary.py) and of the report in a browser and the scripts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.report import aggregate as agg
from benchmark.report import verdict as vd
from benchmark.results import COLUMNS

SAMPLES = 8
TUNE, EVAL = (0,), (1, 2, 3)
GATE = {"gate": {"sphere": [{"metric": "norm_error", "tolerance": 0.05}]}, "budget": 2, "level": 0.95,
        "bootstrap": 500, "compute_budgets": [15.0, 1000.0]}
HEADER = GATE | {"selection": "gated_max_reward", "seeds": {"tuning": list(TUNE), "evaluation": list(EVAL)}}


def _cell(method, strength, seed, reward, norm_error, steps=10, vjps=0, status="ok", objective="linear",
          chains=None, eta=1.0, cfg=None):
    """The rows of one cell (rounds 0 and 1) as the aggregate holds them, with its cell id; eta and cfg (the
    denoiser record's effective guidance scale) of its sampling grid."""
    tag = ("" if eta == 1.0 else f"-eta{eta:g}") + ("" if cfg is None else f"-cfg{cfg:g}")
    base = {c: None for c in COLUMNS} | {
        "run_id": f"{objective}-{method}-{strength:g}-{steps}-{seed}{tag}", "task": "sphere", "objective": objective,
        "denoiser": "trained", "method": method, "strength": float(strength), "seed": seed, "algorithm": "alg1",
        "linearise": "per_sample", "samples": SAMPLES, "steps": steps, "eta": eta, "schedule": "cosine",
        "checkpoint_info": None if cfg is None else json.dumps({"denoiser": {"cfg": cfg}}),
        "params_json": "{}", "cost_denoiser_forwards": steps * SAMPLES, "cost_denoiser_vjps": vjps * SAMPLES,
        "cost_objective_evals": 0, "cost_objective_grads": 0, "cost_finetune_samples": 0, "wall_seconds": 1.0,
        "peak_memory_mb": 1.0, "status": status, "error": None if status == "ok" else "boom",
        "cell": f"sphere/trained/{objective}/{method}/alg1/v{tag or 'abc'}/s{strength!r}_n{steps}_seed{seed}"}
    if chains is None:
        chains = [reward + 0.01 * i for i in range(SAMPLES)]
    rows = []
    for rnd in (0, 1):
        rows.append(base | {"round": rnd, "metric": "reward_mean", "value": float(np.mean(chains)) if rnd else 0.0,
                            "per_sample": list(map(float, chains)) if rnd else None})
        rows.append(base | {"round": rnd, "metric": "norm_error", "value": norm_error if rnd else 0.0})
    return rows


def _frame(cells) -> pd.DataFrame:
    return agg.label_results(pd.DataFrame([r for c in cells for r in c]))


def _groups(df):
    return {job: job.rpartition("/")[0] + "/" + job.rpartition("_n")[2] for job in df["cell"].map(vd.job_of)}


def write_run(cells, folder: Path) -> Path:
    """The cells' rows as an aggregate Parquet file (with each row's cell id) in `folder`, and the selection
    folder `folder/selected` made on the tuning seeds: what the report and the scripts read. Returns the file."""
    import pyarrow as pa

    from benchmark.results import to_table, write_atomic

    rows = [r for c in cells for r in c]
    write_atomic(to_table(rows).append_column("cell", pa.array([r["cell"] for r in rows], pa.string())),
                 folder / "all.parquet")
    tune = _frame(cells)[lambda d: d["seed"].isin(TUNE)]
    vd.write_selection(vd.select(tune, _groups(tune), HEADER), HEADER, HEADER["seeds"], folder / "selected")
    return folder / "all.parquet"


def _hacked_panel(seeds):
    """none; 'honest' with a better admissible strength 1; 'hacker' whose strength 10 wins on reward by
    leaving the sphere (norm error 2585, the default run's shen), and whose strength 0.1 is admissible."""
    cells = []
    for s in seeds:
        cells += [_cell("none", 0.0, s, 0.0, 0.01),
                  _cell("honest", 0.3, s, 0.3, 0.02, vjps=10), _cell("honest", 1.0, s, 0.6 + 0.01 * s, 0.03, vjps=10),
                  _cell("hacker", 0.1, s, 0.2, 0.02, vjps=10), _cell("hacker", 10.0, s, 2586.0, 2585.0, vjps=10)]
    return cells


def test_a_reward_hacked_setting_is_never_ranked_first():
    df = _frame(_hacked_panel(TUNE + EVAL))
    tune = df[df["seed"].isin(TUNE)]
    (panel,) = vd.select(tune, _groups(tune), HEADER)
    by_method = {g["method"]: g for g in panel["groups"]}
    hacker = by_method["hacker"]
    assert hacker["chosen"].endswith("/s0.1_n10")                         # not the setting of reward 2586
    (bad,) = [c for c in hacker["candidates"] if not c["admissible"]]
    assert bad["strength"] == 10.0 and "norm_error 2.58e+03 > 0.06" in bad["reason"]
    assert by_method["honest"]["chosen"].endswith("/s1.0_n10")
    (v,) = vd.verdict(df, HEADER, [panel])
    assert v["methods"][0]["method"] == "honest" and v["methods"][0]["verdict"] == "best"
    assert all(m["reward"] < 10 for m in v["methods"])
    assert {(e["label"], e["strength"]) for e in v["excluded"]} == {("hacker", 10.0)}


def test_a_panel_without_an_admissible_setting_ranks_nothing_of_that_method():
    df = _frame([_cell("none", 0.0, s, 0.0, 0.01) for s in TUNE + EVAL]
                + [_cell("hacker", 10.0, s, 2586.0, 2585.0) for s in TUNE + EVAL])
    tune = df[df["seed"].isin(TUNE)]
    (panel,) = vd.select(tune, _groups(tune), HEADER)
    assert {g["method"]: g["chosen"] is None for g in panel["groups"]} == {"none": False, "hacker": True}
    (v,) = vd.verdict(df, HEADER, [panel])
    assert [m["method"] for m in v["methods"]] == ["none"]


def test_selection_uses_tuning_seeds_only_and_scores_on_evaluation_seeds():
    """On the tuning seed strength 0.3 is best; on the evaluation seeds 1.0 would be. The chosen setting
    is 0.3, its reported reward comes from the evaluation seeds, and the optimism is the difference."""
    cells = [_cell("none", 0.0, s, 0.0, 0.01) for s in TUNE + EVAL]
    cells += [_cell("m", 0.3, s, 1.0 if s in TUNE else 0.5, 0.01) for s in TUNE + EVAL]
    cells += [_cell("m", 1.0, s, 0.9 if s in TUNE else 0.8, 0.01) for s in TUNE + EVAL]
    df = _frame(cells)
    tune = df[df["seed"].isin(TUNE)]
    (panel,) = vd.select(tune, _groups(tune), HEADER)
    (m,) = [g for g in panel["groups"] if g["method"] == "m"]
    assert m["chosen"].endswith("/s0.3_n10")
    (v,) = vd.verdict(df, HEADER, [panel])
    (row,) = [r for r in v["methods"] if r["method"] == "m"]
    assert row["strength"] == 0.3 and row["seeds"] == 3
    assert row["reward"] == pytest.approx(0.5 + 0.035)                   # the chains' mean on the evaluation seeds
    assert row["optimism"] == pytest.approx(1.035 - 0.535)


def test_paired_difference_and_ties():
    """Chains are paired: a constant offset of 0.001 per chain is a clear win however noisy the chains
    are; an offset that flips sign across chains is a tie."""
    rng = np.random.default_rng(0)
    noise = {s: rng.normal(size=SAMPLES) * 10 for s in TUNE + EVAL}
    cells = [_cell("none", 0.0, s, 0, 0.01, chains=noise[s]) for s in TUNE + EVAL]
    cells += [_cell("a", 1.0, s, 0, 0.01, chains=noise[s] + 0.001) for s in TUNE + EVAL]
    flip = np.where(np.arange(SAMPLES) % 2, 0.5, -0.5)
    cells += [_cell("b", 1.0, s, 0, 0.01, chains=noise[s] + 0.001 + flip) for s in TUNE + EVAL]
    df = _frame(cells)
    tune = df[df["seed"].isin(TUNE)]
    panels = vd.verdict(df, HEADER, vd.select(tune, _groups(tune), HEADER))
    rows = {r["method"]: r for r in panels[0]["methods"]}
    assert rows["a"]["verdict"] == "best"
    assert rows["none"]["verdict"] == "worse" and rows["none"]["unit"] == "chain"
    assert rows["none"]["pairs"] == SAMPLES * len(EVAL)
    assert rows["none"]["diff_hi"] < 0 and rows["none"]["diff"] == pytest.approx(-0.001)
    assert rows["b"]["verdict"] == "tie" and rows["b"]["diff_lo"] < 0 < rows["b"]["diff_hi"]
    s = vd.summary(panels, 0.95, 500)
    ranks = {r["method"]: r["tie_rank"] for r in s["ranks"]}
    assert ranks == {"a": 1, "b": 1, "none": 2}    # b ties with a and with none: only a beats none
    assert {r["method"]: r["mean_rank"] for r in s["ranks"]} == {"a": 1.5, "b": 1.5, "none": 3}   # plain ranks: a and b have equal means
    matrix = {row["method"]: dict(zip(s["order"], row["cells"])) for row in s["matrix"]}
    assert matrix["a"]["none"] == {"win": 1, "tie": 0, "loss": 0}
    assert matrix["a"]["b"] == {"win": 0, "tie": 1, "loss": 0}


def test_equal_compute_table_respects_the_budget():
    cells = []
    for s in TUNE + EVAL:
        cells += [_cell("none", 0.0, s, 0.0, 0.01), _cell("cheap", 1.0, s, 0.5, 0.01, steps=10),
                  _cell("dear", 1.0, s, 0.9, 0.01, steps=50, vjps=50)]
    df = _frame(cells)
    tune = df[df["seed"].isin(TUNE)]
    (v,) = vd.verdict(df, HEADER, vd.select(tune, _groups(tune), HEADER))
    table = {e["method"]: e["budgets"] for e in v["equal_compute"]}
    assert v["budgets"] == [15.0, 1000.0]
    assert table["dear"][0] is None and table["dear"][1]["compute"] == 100.0   # 50 forwards + 50 VJPs
    assert table["cheap"][0]["compute"] == 10.0


def test_hypervolume_by_hand():
    pts = pd.DataFrame({"fidelity": [0.1, 0.2, 0.5], "reward": [1.0, 2.0, 9.0]})
    # reference (f_ref = 0.3, r_ref = 0): the third point is outside; steps of width 0.1 at height 1, 0.1 at 2
    assert vd.hypervolume(pts, 0.3, 0.0) == pytest.approx(0.1 * 1.0 + 0.1 * 2.0)
    assert vd.hypervolume(pts, 0.05, 0.0) == 0.0
    assert vd.hypervolume(pts, 0.3, 5.0) == 0.0


def test_ci_pareto_treats_differences_inside_the_ci_as_ties():
    pts = pd.DataFrame({"fidelity": [1e-6, 1.1e-6, 0.5], "fidelity_ci": [1e-6, 1e-6, 0.01],
                        "reward": [1.0, 1.02, 0.5], "reward_ci": [0.1, 0.1, 0.01]})
    front = vd.ci_pareto(pts)
    assert list(front) == [True, True, False]           # 1e-7 apart in r_off: a tie, both stay on the front


def test_a_checked_in_selection_is_reused_on_other_seeds(tmp_path):
    """protocol.reuse: the selection folder of an earlier run is this run's, with this run's evaluation
    seeds; evaluating on a seed the choice was made on is refused, and so is a folder that is not one."""
    import yaml

    from benchmark.config import ConfigError
    from benchmark.config_checks import check_protocol

    df = _frame(_hacked_panel(TUNE))
    earlier = tmp_path / "earlier"
    chosen = vd.write_selection(vd.select(df, _groups(df), HEADER), HEADER, HEADER["seeds"], earlier)
    again = vd.reuse_selection(earlier, {"tuning": [9], "evaluation": [7, 8]}, tmp_path / "now")
    assert again == chosen
    header, panels = vd.read_selection(tmp_path / "now")
    assert header["seeds"] == {"tuning": list(TUNE), "evaluation": [7, 8]} and header["reused_from"] == str(earlier)
    assert panels == vd.read_selection(earlier)[1]
    with pytest.raises(ValueError, match=r"evaluation seeds \[0\] were among them"):
        vd.reuse_selection(earlier, {"tuning": [9], "evaluation": [0, 7]}, tmp_path / "bad")
    config = yaml.safe_load((Path(__file__).resolve().parents[2] / "config/smoke.yaml").read_text())
    config["protocol"]["reuse"] = str(tmp_path / "nothing")
    with pytest.raises(ConfigError, match="protocol.reuse: .* is not a selection folder"):
        check_protocol(config)


def test_the_report_is_the_same_drawn_by_several_processes(tmp_path):
    """`build_report(workers=N)` draws the drill-down panels' figures in N - 1 forked processes beside the
    verdict's: the page and every figure file are byte for byte those of one process (but its time stamp)."""
    import re

    from benchmark.report import build_report

    write_run(_hacked_panel(TUNE + EVAL), tmp_path)
    pages = {}
    for n in (1, 3):
        out = build_report(tmp_path / "all.parquet", tmp_path / f"r{n}" / "index.html", selected=tmp_path / "selected",
                           figures_dir=tmp_path / f"r{n}" / "figures", workers=n)
        pages[n] = re.sub(r"generated \S+", "", out.read_text(encoding="utf-8"))
        figures = {p.name: p.read_bytes() for p in (tmp_path / f"r{n}" / "figures").iterdir()}
        assert len(figures) >= 4
        pages[n, "figures"] = figures
    assert pages[1] == pages[3] and pages[1, "figures"] == pages[3, "figures"]
    from benchmark.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["report", "--results", str(tmp_path / "all.parquet"), "--out", str(tmp_path / "x.html"), "--workers", "0"])
    assert exc.value.code == 2


def _spec_cells(spec: dict) -> list[list[dict]]:
    """Cells from {objective: {method: (reward, norm_error)}}: one setting per method, the tuning and
    evaluation seeds alike; a norm error above the gate (unguided 0.01 + 0.05) fails it."""
    return [_cell(m, 1.0 if m != "none" else 0.0, s, reward, err, objective=obj)
            for obj, methods in spec.items() for m, (reward, err) in methods.items() for s in TUNE + EVAL]


# ---------------------------------------------------------------------------------------------
# rules pinned by issue 28


def test_a_methods_best_variant_is_chosen_by_its_tuning_reward_not_its_held_out_one():
    """Method 'm' has two admissible variants (10 and 20 steps, two selection groups): the 10-step one is
    better on the tuning seed, the 20-step one on the evaluation seeds. The verdict row and the
    at-equal-compute table both take the 10-step variant: choosing by held-out reward would leak the
    selection into the headline."""
    cells = [_cell("none", 0.0, s, 0.0, 0.01) for s in TUNE + EVAL]
    cells += [_cell("m", 1.0, s, 1.0 if s in TUNE else 0.5, 0.01, steps=10) for s in TUNE + EVAL]
    cells += [_cell("m", 1.0, s, 0.8 if s in TUNE else 0.9, 0.01, steps=20) for s in TUNE + EVAL]
    df = _frame(cells)
    tune = df[df["seed"].isin(TUNE)]
    panels = vd.select(tune, _groups(tune), HEADER)
    assert len([g for g in panels[0]["groups"] if g["method"] == "m"]) == 2
    (v,) = vd.verdict(df, HEADER, panels)
    (row,) = [r for r in v["methods"] if r["method"] == "m"]
    assert row["job"].endswith("_n10") and row["reward"] == pytest.approx(0.535)
    assert row["tuning_reward"] == pytest.approx(1.035)
    (m,) = [e for e in v["equal_compute"] if e["method"] == "m"]
    assert m["budgets"][1]["compute"] == 10.0 and m["budgets"][1]["reward"] == pytest.approx(0.535)   # both fit 1000


@pytest.mark.parametrize("axis", ["eta", "cfg"])
def test_the_gate_compares_with_the_unguided_runs_of_the_same_eta_and_guidance_scale(axis):
    """Two experiments in one panel, one at eta 0 (or guidance scale 1.5) and one at eta 1 (or 7.5), each with its
    own unguided runs, whose norm errors differ (0.5 and 0.01): a setting is gated against the unguided runs of its
    own grid, never the pooled mean (0.255: that would reject 'm' at 0.52 and admit 'n' at 0.2)."""
    a, b = ({"eta": 0.0}, {"eta": 1.0}) if axis == "eta" else ({"cfg": 1.5}, {"cfg": 7.5})
    cells = []
    for s in TUNE:
        cells += [_cell("none", 0.0, s, 0.0, 0.5, **a), _cell("none", 0.0, s, 0.0, 0.01, **b),
                  _cell("m", 1.0, s, 0.3, 0.52, **a), _cell("n", 1.0, s, 0.4, 0.2, **b)]
    df = _frame(cells)
    c = vd.cell_table(df, ["norm_error"])
    rules = vd.gates_for(HEADER, "sphere", "linear", {"norm_error"})
    refs = vd.references(c, rules)
    key_a = (10, a.get("eta", 1.0), a.get("cfg"))
    assert refs[key_a]["norm_error"] == pytest.approx(0.5) and refs[(None, *key_a[1:])] == refs[key_a]
    assert vd.admissibility(c[c["method_name"] == "m"], rules, refs) == (True, "")
    ok, why = vd.admissibility(c[c["method_name"] == "n"], rules, refs)
    assert not ok and why.startswith("norm_error 0.2 > 0.06 (unguided 0.01")
    # a grid without unguided runs is not gated, and says so
    lone = vd.cell_table(_frame([_cell("m", 1.0, 0, 0.3, 9.0, eta=0.5)]), ["norm_error"])
    assert vd.admissibility(lone, rules, refs) == (True, "no unguided reference on its sampling grid (eta, cfg): "
                                                         "not gated")


def test_a_failed_cell_is_inadmissible_because_it_failed_even_with_finite_values():
    """A cell whose status is not ok is rejected for its status, not for a NaN reward: here its reward
    and metrics are finite and within the gate, and the reason names the status and the seed."""
    rules = [{"metric": "norm_error", "tolerance": 0.05, "relative": False, "higher_is_better": False}]
    refs = {(10, None, None): {"norm_error": 0.01, "reward": 0.0}, (None, None, None): {"norm_error": 0.01, "reward": 0.0}}
    setting = pd.DataFrame({"status": ["ok", "diverged"], "seed": [1, 2], "reward": [0.5, 0.6],
                            "norm_error": [0.02, 0.02], "steps": [10, 10]})
    assert vd.admissibility(setting, rules, refs) == (False, "diverged on seed 2")
    assert vd.admissibility(setting.assign(status="ok"), rules, refs) == (True, "")
    # through the selection: a failed tuning cell that reports finite values is excluded as failed
    df = _frame([_cell("none", 0.0, 0, 0.0, 0.01), _cell("m", 1.0, 0, 0.5, 0.02, status="failed")])
    (panel,) = vd.select(df, _groups(df), HEADER)
    (m,) = [g for g in panel["groups"] if g["method"] == "m"]
    assert m["chosen"] is None and m["candidates"][0]["reason"] == "failed on seed 0"


def test_the_first_screen_states_the_rule_shows_the_caveat_and_links_the_full_rules(tmp_path):
    """The report's verdict opens with a three-line summary linking to the full rules; the across-panels
    table states its rule in one sentence, shows each method's panels and failures, and a method that
    heads it from fewer panels carries a visible caveat."""
    import re

    from benchmark.report import build_report

    ok, bad = 0.01, 10.0
    spec = {"linear": {"none": (0.0, ok), "cg": (2.0, ok), "a": (1.0, ok), "tfg": (1.5, ok)},
            "quad0": {"none": (0.0, ok), "a": (1.0, ok), "tfg": (5.0, bad)}}
    write_run(_spec_cells(spec), tmp_path)
    page = build_report(tmp_path / "all.parquet", tmp_path / "index.html",
                        selected=tmp_path / "selected").read_text(encoding="utf-8")
    opening = re.search(r'<p class="note" id="verdict-summary">(.*?)</p>', page, re.S).group(1)
    assert opening.count("<br>") == 2 and 'href="#how-verdict"' in opening and len(opening.split()) < 80
    assert 'id="how-verdict"' in page and "Which method, at which setting" in page
    assert vd.SUMMARY_RULE in page
    table = re.search(r'<table class="sortable" id="across-panels">(.*?)</table>', page, re.S).group(1)
    names = re.findall(r'<tr><td class="text">([^<]*)</td><td>([^<]*)</td><td>(\d+)</td><td>(\d+)</td>', table)
    assert [(n.strip(), panels, failed) for n, _, panels, failed in names] == [
        ("cg †", "1", "0"), ("a", "2", "0"), ("tfg", "2", "1"), ("none", "2", "0")]
    assert "<b>Caveat:</b> cg heads the table but ran on 1 of the 2 panels" in page


