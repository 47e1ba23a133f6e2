"""The score network as an axis (benchmark/report/score_axis.py): each denoiser's quality from the
checkpoint its rows name, the methods' held-out results per denoiser, worst score first."""

import json
import math

import pandas as pd

from benchmark.checkpoints import jacobian_summary
from benchmark.report.figures import method_palette
from benchmark.report.score_axis import denoiser_quality, score_axes


def _info(epochs, loss, share):
    return json.dumps({"denoiser": {"epochs": epochs, "heldout_loss": loss, "oracle_heldout_loss": 0.1,
                                    "jacobian.quadratic_off.vjp_share_in_span": share,
                                    "jacobian.quadratic_off.vjp_cosine": share ** 0.5,
                                    "jacobian.quadratic_off.vjp_norm_ratio": 1 / share ** 0.5}})


def _rows(denoiser, info, method, vjps, reward, r_off, seed):
    base = {"task": "subspace", "objective": "quadratic_off", "denoiser": denoiser, "method": method, "seed": seed,
            "status": "ok", "round": 1, "run_id": f"{denoiser}-{method}-{seed}", "checkpoint_info": info,
            "cost_denoiser_vjps": vjps}
    return [base | {"metric": "reward_mean", "value": reward}, base | {"metric": "r_off", "value": r_off},
            base | {"round": 0, "metric": "reward_mean", "value": -99.0}]


def test_denoisers_ordered_by_score_quality_with_each_methods_result():
    rows = []
    for denoiser, info, gain in (("oracle", None, 2.0), ("trained.epochs=10", _info(10, 0.101, 0.6), 1.0),
                                 ("trained.epochs=100", _info(100, 0.10006, 0.9), 1.5)):
        for seed in (1, 2):
            rows += _rows(denoiser, info, "gloss", 20, 3 * gain + seed, 0.01, seed)
            rows += _rows(denoiser, info, "naive", 0, 4.0 + seed, 0.5, seed)
        rows += _rows(denoiser, info, "gloss", 20, 1e6, 0.0, 0)  # a tuning seed: not in the result
    df = pd.DataFrame(rows)
    (axis,) = score_axes(df, [1, 2], method_palette(["gloss", "naive"]))
    assert axis["order"] == ["trained.epochs=10", "trained.epochs=100", "oracle"]  # worst score first
    quality = {q["denoiser"]: q for q in axis["quality"]}
    assert math.isclose(quality["trained.epochs=10"]["eps_excess_pct"], 1.0)
    assert math.isclose(quality["trained.epochs=100"]["eps_excess_pct"], 0.06)
    assert quality["trained.epochs=10"]["share"] == 0.6 and quality["oracle"]["share"] == 1.0
    results = {r["method"]: r for r in axis["results"]}
    assert results["gloss"]["through_denoiser"] and not results["naive"]["through_denoiser"]
    assert results["gloss"]["reward"] == {"trained.epochs=10": 4.5, "trained.epochs=100": 6.0, "oracle": 7.5}
    assert results["naive"]["fidelity"]["oracle"] == 0.5 and axis["fidelity"] == "r_off"
    assert axis["figure"]  # a PNG, base64


def test_one_denoiser_is_no_axis():
    df = pd.DataFrame(_rows("oracle", None, "gloss", 20, 1.0, 0.1, 1))
    assert score_axes(df, [1], method_palette(["gloss"])) == []


def test_the_oracle_is_the_exact_limit_and_a_checkpoint_reads_its_record():
    oracle = pd.DataFrame(_rows("oracle", None, "gloss", 20, 1.0, 0.1, 1))
    assert denoiser_quality(oracle, "quadratic_off") == {"epochs": None, "eps_excess_pct": 0.0, "share": 1.0,
                                                          "cosine": 1.0, "norm_ratio": 1.0}
    report = {"jacobian": {"settings": {"n": 8}, "quadratic_off": {"0.5": {"vjp_share_in_span": 0.2},
                                                                   "mean": {"vjp_share_in_span": 0.3}}}}
    assert jacobian_summary(report) == {"jacobian.quadratic_off.vjp_share_in_span": 0.3}
