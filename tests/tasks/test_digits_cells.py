"""Classifier guidance's contract on digits, and digits cells end to end through the CLI."""

import json
import math
import re
import shutil

import pandas as pd
import pytest
import torch
from PIL import Image

from benchmark.cell import Cell, CellSpec, run_cell
from benchmark.cli import main
from benchmark.denoisers import load_checkpoint
from benchmark.diffusion import Costs, CountingDenoiser, CountingObjective, PerSampleNoise, Sampler, derive_seed, sample
from benchmark.methods import METHODS, Guide, make_method
from benchmark.objectives import builtin_objectives
from benchmark.tasks import make_task
from benchmark.tasks.digits import MODEL_FILES


@pytest.fixture(scope="module")
def loaded(digits_models):
    return make_task("digits", models_dir=digits_models)


def _cg(loaded, digits_models, n, chain_offset=0, target=None, steps=10, strength=2.0):
    """(samples, costs, sampler) of classifier guidance on `label`; chain i targets class i mod 10
    (or `target` for every chain) and draws from chain i's own noise stream."""
    costs = Costs()
    model, schedule, _ = load_checkpoint(digits_models / MODEL_FILES["denoiser"])
    sampler = Sampler(CountingDenoiser(model, costs), schedule, steps=steps)
    params = {} if target is None else {"target": target}
    objective = CountingObjective(loaded.objective("label", params), costs)
    noise = PerSampleNoise([derive_seed("cg", i + chain_offset) for i in range(n)], (1, 8, 8))
    guide = Guide(objective, noisy_log_prob=objective.noisy_log_prob)
    before = costs.snapshot()
    x = sample(sampler, make_method("cg", strength), noise.draw(), noise, guide)
    return x, costs - before, sampler


def test_cg_batch_of_four_equals_four_batches_of_one(loaded, digits_models):
    x4, _, _ = _cg(loaded, digits_models, 4)
    x1 = torch.cat([_cg(loaded, digits_models, 1, chain_offset=i, target=i)[0] for i in range(4)])
    assert torch.allclose(x4, x1, atol=1e-4, rtol=1e-4)                      # conv kernels round per batch size


def test_cg_is_deterministic_and_guides(loaded, digits_models):
    a, _, _ = _cg(loaded, digits_models, 3)
    b, _, _ = _cg(loaded, digits_models, 3)
    assert torch.equal(a, b)
    unguided, _, _ = _cg(loaded, digits_models, 3, strength=0.0)
    assert not torch.equal(a, unguided)


def test_cg_counted_cost_per_step_is_1U_0Ub_1eval_1grad(loaded, digits_models):
    n = 3
    _, spent, sampler = _cg(loaded, digits_models, n)
    S = len(sampler.steps)
    got = (spent.denoiser_forwards, spent.denoiser_vjps, spent.objective_evals, spent.objective_grads)
    assert got == (S * n, 0, S * n, S * n)


def test_cg_update_is_dhariwal_nichol(loaded, digits_models):
    """e' = e - s sqrt(1 - ab_t) grad_{x_t} log p(c | x_t, t), checked on one step."""
    model, schedule, _ = load_checkpoint(digits_models / MODEL_FILES["denoiser"])
    sampler = Sampler(CountingDenoiser(model, Costs()), schedule, steps=10)
    objective = loaded.objective("label")
    step = sampler.steps[3]
    x_t = torch.randn(2, 1, 8, 8)
    x = x_t.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(objective.noisy_log_prob(x, step.t).sum(), x)
    e = sampler.eps(x_t, step)
    guide = Guide(objective, noisy_log_prob=objective.noisy_log_prob)
    got = make_method("cg", 1.5).guided_eps(x_t, step, sampler, guide)
    assert torch.allclose(got, e - 1.5 * (1 - step.ab_t) ** 0.5 * grad, atol=1e-6)


def test_cg_without_a_noise_conditional_classifier_is_refused(loaded, digits_models, subspace):
    model, schedule, _ = load_checkpoint(digits_models / MODEL_FILES["denoiser"])
    sampler = Sampler(CountingDenoiser(model, Costs()), schedule, steps=5)
    noise = PerSampleNoise([0], (1, 8, 8))
    with pytest.raises(ValueError, match="method 'cg' needs an objective with a noise-conditional classifier"):
        sample(sampler, make_method("cg", 1.0), noise.draw(), noise, Guide(loaded.objective("reward")))
    spec = dict(task="digits", method="cg", strength=1.0, denoiser="trained", rounds=0, samples=2,
                checkpoint=str(digits_models / MODEL_FILES["denoiser"]), models_dir=str(digits_models))
    with pytest.raises(ValueError, match="objective 'inpaint' of task 'digits' has none"):
        Cell(CellSpec.of(objective="inpaint", **spec))
    with pytest.raises(ValueError, match="objective 'quadratic_off' of task 'subspace' has none"):
        Cell(CellSpec.of(task="subspace", objective="quadratic_off", method="cg", strength=1.0, rounds=0, samples=2))


def test_cg_refuses_a_noisy_classifier_of_another_schedule(digits_models, tmp_path):
    from benchmark.denoisers import pretrain_unet, save_checkpoint
    model, schedule, report = pretrain_unet(make_task("digits"), T=40, epochs=1, width=4)
    save_checkpoint(tmp_path / "d40.safetensors", model, schedule, report)
    spec = CellSpec.of(task="digits", objective="label", method="cg", strength=1.0, denoiser="trained", rounds=0,
                    samples=2, checkpoint=str(tmp_path / "d40.safetensors"), models_dir=str(digits_models))
    with pytest.raises(ValueError, match="trained on schedule 'cosine' with T=50, the denoiser samples with "
                                         "'cosine', T=40"):
        Cell(spec)


# --- cells through the CLI ---------------------------------------------------------------------------

def _args(digits_models, objective, method, strength, out, *extra):
    return ["run", "--task", "digits", "--objective", objective, "--method", method, "--strength", str(strength),
            "--rounds", "1", "--samples", "4", "--steps", "4", "--denoiser", "trained",
            "--checkpoint", str(digits_models / MODEL_FILES["denoiser"]), "--models-dir", str(digits_models),
            "--out", str(out), *extra]


@pytest.mark.parametrize("objective, method, strength, extra, metrics", [
    ("label", "cg", 2.0, ["--objective-param", "target=3"],
     {"eval_accuracy", "guide_accuracy", "fd", "diversity", "digit_confidence"}),
    ("inpaint", "dps", 0.5, ["--objective-param", "mask=lower_half", "--param", "normalise=none"],
     {"psnr", "ssim", "meas_error", "digit_confidence"}),
    ("superres", "freedom", 0.5, [], {"psnr", "ssim", "meas_error", "digit_confidence"}),
    ("reward", "gloss", 0.5, ["--rounds", "2"], {"fd", "diversity", "digit_confidence"}),
])
def test_a_digits_cell_through_the_cli(digits_models, tmp_path, objective, method, strength, extra, metrics):
    out = tmp_path / "cells" / f"{objective}.parquet"
    assert main(_args(digits_models, objective, method, strength, out, *extra)) == 0
    df = pd.read_parquet(out)
    assert (df.status == "ok").all() and (df.task == "digits").all()
    assert metrics | {"reward_mean"} <= set(df.metric)
    assert sorted(df["round"].unique()) == list(range(3 if "--rounds" in extra else 2))
    params = json.loads(df.settings_json.iloc[0])["objective_params"]
    defaults = {"label": {"target": 3}, "inpaint": {"image": "all", "sigma_y": 0.05, "mask": "lower_half"},
                "superres": {"image": "all", "sigma_y": 0.05}, "reward": {"head": 0}}
    assert params == defaults[objective]
    gallery = out.with_suffix(".png")
    assert Image.open(gallery).format == "PNG"                                # the report's contract
    assert sorted(p.name for p in out.parent.iterdir()) == sorted([out.name, gallery.name])


def test_objective_params_change_the_run_id(digits_models, tmp_path):
    base = dict(task="digits", objective="label", method="none", denoiser="trained", rounds=0, samples=2,
                checkpoint=str(digits_models / MODEL_FILES["denoiser"]), models_dir=str(digits_models))
    a, b = CellSpec.of(**base), CellSpec.of(**base, objective_params={"target": 1})
    assert Cell(a).run_id() != Cell(b).run_id()
    elsewhere = shutil.copytree(digits_models, tmp_path / "elsewhere")  # where models lie is not identity,
    moved = CellSpec.of(**base | {"models_dir": str(elsewhere), "checkpoint": str(elsewhere / MODEL_FILES["denoiser"])})
    assert Cell(a).run_id() == Cell(moved).run_id()  # what they hold is (tests/test_cell.py)


def test_subspace_cells_write_no_gallery(tmp_path):
    out = tmp_path / "s.parquet"
    assert main(["run", "--task", "subspace", "--objective", "quadratic_on", "--method", "none", "--rounds", "0",
                 "--samples", "2", "--steps", "3", "--out", str(out)]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["s.parquet"]


@pytest.mark.parametrize("change, message", [
    (("--models-dir", "MISSING"), r"MISSING/digits_classifier.safetensors does not exist; make it with "
                                  r"`python -m benchmark pretrain --task digits --network classifier"),
    (("--objective-param", "targte=1"), r"objective 'label' of task 'digits' has no parameter\(s\) \['targte'\]; "
                                        r"allowed: \['target'\]"),
    (("--objective-param", "target=12"), r"target must be an integer class 0..9 or 'all', got 12"),
    (("--denoiser", "oracle"), r"task 'digits' has no exact \(oracle\) denoiser"),
])
def test_digits_cli_errors_exit_2_and_write_nothing(digits_models, tmp_path, capsys, change, message):
    out = tmp_path / "c.parquet"
    args = _args(digits_models, "label", "none", 0.0, out)
    flag, value = change
    if flag == "--models-dir":
        args[args.index(flag) + 1] = str(tmp_path / value)
    elif flag == "--denoiser":  # the oracle takes no checkpoint
        i = args.index("--checkpoint")
        args[args.index(flag) + 1] = value
        del args[i:i + 2]
    elif flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    assert main(args) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists() and not out.with_suffix(".png").exists()


def test_digits_without_a_models_folder_names_the_option(digits_models, tmp_path, capsys):
    args = _args(digits_models, "label", "none", 0.0, tmp_path / "c.parquet")
    i = args.index("--models-dir")
    assert main(args[:i] + args[i + 2:]) == 2
    assert "task 'digits' needs --models-dir" in capsys.readouterr().err


#: Methods run at strength 0 in the test below: unguided sampling, best-of-N, whose default proposal
#: (unguided) has no strength, and SVDD, whose default selection (argmax) has none. Inference-compute references
#: (bon, smc) may keep the chain's own sample.
AT_STRENGTH_ZERO, REFERENCES = {"none", "bon", "svdd"}, {"bon", "smc"}


@pytest.mark.parametrize("objective", ["label", "inpaint", "superres", "reward"])
def test_every_method_runs_on_every_digits_objective(digits_models, objective):
    """One tiny cell per registered method: image-shaped samples pass through every method's step, to
    finite metrics; round 0 (the unguided batch, drawn from the same noise) is the same for every method;
    every guidance method's round 1 differs from unguided sampling's, best-of-N's reward is at least
    unguided sampling's (the chain's own draw is one of its candidates), and each spent at least one
    denoiser forward per sample and step."""
    samples, steps, runs = 2, 2, {}
    cls = builtin_objectives("digits")[objective]
    for name in sorted(METHODS):
        if make_method(name, 0.0 if name in AT_STRENGTH_ZERO else 0.1).skip(cls)[0]:
            continue   # what the method says it cannot guide (cg off label, the posterior samplers off inpaint/superres)
        rows = run_cell(CellSpec.of(task="digits", objective=objective, method=name,
                                 strength=0.0 if name in AT_STRENGTH_ZERO else 0.1, denoiser="trained", rounds=1,
                                 samples=samples, steps=steps, checkpoint=str(digits_models / MODEL_FILES["denoiser"]),
                                 models_dir=str(digits_models)))
        assert {r["status"] for r in rows} == {"ok"}, (name, rows[-1]["error"])
        runs[name] = rows

    def values(rows, rnd):
        return {r["metric"]: r["value"] for r in rows if r["round"] == rnd}

    unguided = [values(runs["none"], k) for k in (0, 1)]
    assert "reward_mean" in unguided[1]
    for name, rows in runs.items():
        v0, v1 = values(rows, 0), values(rows, 1)
        assert v0 == pytest.approx(unguided[0], abs=1e-6), name
        assert set(v1) == set(unguided[1]), name
        assert all(math.isfinite(v) for v in v1.values()), (name, v1)
        if name == "bon":
            assert v1["reward_mean"] >= unguided[1]["reward_mean"] - 1e-6
        elif name not in REFERENCES | {"none"}:
            assert v1["reward_mean"] != pytest.approx(unguided[1]["reward_mean"], abs=1e-6), name
        guided_round = next(r for r in rows if r["round"] == 1)
        forwards = guided_round["cost_denoiser_forwards"] / samples
        assert forwards == steps if name == "none" else forwards >= steps, (name, forwards)


def test_pretrain_cli_for_each_digits_network(tmp_path, capsys):
    for kind in ("evaluator", "classifier", "noisy_classifier"):
        out = tmp_path / MODEL_FILES[kind]
        schedule = ["--T", "20"] if kind == "noisy_classifier" else []  # only it is noise-conditional
        assert main(["pretrain", "--task", "digits", "--network", kind, "--epochs", "1", "--width", "4",
                     *schedule, "--out", str(out), "--report", str(tmp_path / f"{kind}.json")]) == 0
        assert json.loads((tmp_path / f"{kind}.json").read_text())["network"] == kind
    capsys.readouterr()
    assert main(["pretrain", "--task", "digits", "--network", "classifier", "--T", "20", "--out",
                 str(tmp_path / "z")]) == 2  # a setting the network does not declare is refused, not ignored
    assert ("network 'classifier' of task 'digits' takes no ['T']; allowed: ['seed', 'epochs', 'batch_size', "
            "'lr', 'width']") in capsys.readouterr().err
    out = tmp_path / MODEL_FILES["denoiser"]
    assert main(["pretrain", "--task", "digits", "--epochs", "1", "--width", "4", "--T", "20", "--out", str(out),
                 "--need", f"evaluator={tmp_path / MODEL_FILES['evaluator']}", "--quality-samples", "8",
                 "--quality-steps", "4", "--report", str(tmp_path / "d.json")]) == 0
    report = json.loads((tmp_path / "d.json").read_text())
    assert report["arch"] == "UNet" and "unguided_fd" in report and "heldout_loss" in report
    capsys.readouterr()
    assert main(["pretrain", "--task", "subspace", "--network", "classifier", "--out", str(tmp_path / "x")]) == 2
    assert "task 'subspace' has no 'classifier' to pre-train; allowed: ['denoiser']" in capsys.readouterr().err
    assert main(["pretrain", "--task", "digits", "--out", str(tmp_path / "y"), "--need",
                 f"evaluator={tmp_path / MODEL_FILES['classifier']}"]) == 2
    assert "is a 'classifier' checkpoint; expected 'evaluator'" in capsys.readouterr().err
