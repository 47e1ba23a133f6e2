"""The digits networks: shapes, reproducible pre-training, reports, and safe checkpoints."""

import pytest
import torch
from safetensors.torch import load_file

from benchmark.classifiers import (EvaluatorCNN, GuideCNN, NoisyClassifier, load_classifier, pretrain_classifier,
                                   save_classifier)
from benchmark.denoisers import UNet, load_checkpoint, pretrain_unet, save_checkpoint
from benchmark.diffusion import make_schedule
from benchmark.tasks import make_task
from benchmark.tasks.digits import MODEL_FILES

TINY = dict(epochs=1, width=4)


@pytest.fixture(scope="module")
def digits():
    return make_task("digits")


def test_network_shapes():
    x, t = torch.randn(5, 1, 8, 8), torch.tensor([1, 10, 50, 100, 200])
    unet = UNet(200, channels=8)
    assert unet(x, t).shape == unet.velocity(x, t).shape == (5, 1, 8, 8)
    guide, evaluator = GuideCNN(channels=8).eval(), EvaluatorCNN(channels=8).eval()
    assert guide(x).shape == evaluator(x).shape == (5, 10)
    assert guide.features(x).shape == (5, 128) and evaluator.features(x).shape == (5, 64)
    assert NoisyClassifier(200, channels=8)(x, t).shape == (5, 10)


def test_unet_is_a_v_parametrised_eps_model():
    """eps = sqrt(1 - ab) x + sqrt(ab) v, so Tweedie gives x0h = sqrt(ab) x - sqrt(1 - ab) v."""
    unet = UNet(50, channels=4)
    torch.nn.init.normal_(unet.out[-1].weight)                               # not the zero start
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([5, 25, 40])
    with torch.no_grad():
        e, v = unet(x, t), unet.velocity(x, t)
    ab = make_schedule("cosine", 50).ab[t].float().view(-1, 1, 1, 1)
    x0h = (x - (1 - ab).sqrt() * e) / ab.sqrt()
    assert torch.allclose(x0h, ab.sqrt() * x - (1 - ab).sqrt() * v, atol=1e-4)


@pytest.mark.parametrize("kind", ["classifier", "noisy_classifier", "evaluator"])
def test_classifier_pretraining_is_reproducible_and_reported(digits, kind):
    a, report = pretrain_classifier(digits, kind, seed=0, T=50, **TINY)
    b, report_b = pretrain_classifier(digits, kind, seed=0, T=50, **TINY)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    c, _ = pretrain_classifier(digits, kind, seed=1, T=50, **TINY)
    assert any(not torch.equal(va, vc) for va, vc in zip(a.state_dict().values(), c.state_dict().values()))
    assert report["test_loss"] == report_b["test_loss"]
    assert report["n_params"] > 0 and report["wall_seconds"] > 0 and 0 <= report["test_accuracy"] <= 1
    assert report["trained_on"] == ("train+validation" if kind == "evaluator" else "train")
    assert ("validation_accuracy" in report) == (kind != "evaluator")
    if kind == "noisy_classifier":
        assert (report["schedule"], report["T"]) == ("cosine", 50)
        assert set(report["validation_accuracy_by_noise"]) == {"0.1", "0.3", "0.5", "0.7", "0.9"}


def test_denoiser_pretraining_is_reproducible_and_scores_samples(digits, digits_models):
    evaluator, _ = load_classifier(digits_models / MODEL_FILES["evaluator"], "evaluator")
    kw = dict(T=50, seed=0, evaluator=evaluator, quality_samples=12, quality_steps=5, **TINY)
    a, schedule, report = pretrain_unet(digits, **kw)
    b, _, report_b = pretrain_unet(digits, **kw)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert report["heldout_loss"] == report_b["heldout_loss"] and schedule.T == 50
    assert report["unguided_fd"] == report_b["unguided_fd"] >= 0
    assert {"real_fd_floor", "unguided_digit_confidence", "real_digit_confidence", "n_params",
            "wall_seconds"} <= set(report)
    assert len(report["unguided_class_fractions"]) == 10 and report["quality_samples"] == 12
    _, _, plain = pretrain_unet(digits, T=50, seed=0, **TINY)
    assert "unguided_fd" not in plain


def test_bad_pretraining_arguments(digits):
    with pytest.raises(ValueError, match="unknown classifier network 'guide'; allowed: "
                                         "\\['classifier', 'noisy_classifier', 'evaluator'\\]"):
        pretrain_classifier(digits, "guide")
    with pytest.raises(ValueError, match="epochs, batch size and width must be >= 1"):
        pretrain_classifier(digits, "classifier", epochs=0)
    with pytest.raises(ValueError, match="epochs, batch size and width must be >= 1"):
        pretrain_unet(digits, width=0)


def test_checkpoints_round_trip_safely_and_know_their_kind(digits_models, tmp_path):
    for kind in ("classifier", "noisy_classifier", "evaluator"):
        path = digits_models / MODEL_FILES[kind]
        model, report = load_classifier(path, kind)
        assert set(load_file(str(path))) == set(model.state_dict())          # plain tensors, no pickle
        copy = tmp_path / f"{kind}.safetensors"
        save_classifier(copy, model, kind, report)
        again, report2 = load_classifier(copy, kind)
        assert report2 == report
        x = torch.randn(2, 1, 8, 8)
        with torch.no_grad():
            out = model(x, torch.tensor([3, 40])) if kind == "noisy_classifier" else model(x)
            out2 = again(x, torch.tensor([3, 40])) if kind == "noisy_classifier" else again(x)
        assert torch.equal(out, out2)
    unet, schedule, report = load_checkpoint(digits_models / MODEL_FILES["denoiser"])
    assert isinstance(unet, UNet) and schedule.T == 50 and report["task"] == "digits"
    save_checkpoint(tmp_path / "d.safetensors", unet, schedule, report)
    again, _, _ = load_checkpoint(tmp_path / "d.safetensors")
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([1, 50])
    with torch.no_grad():
        assert torch.equal(unet(x, t), again(x, t))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(ValueError, match="is a 'classifier' checkpoint; expected 'denoiser'"):
        load_checkpoint(digits_models / MODEL_FILES["classifier"])
    with pytest.raises(ValueError, match="is a 'denoiser' checkpoint; expected 'evaluator'"):
        load_classifier(digits_models / MODEL_FILES["denoiser"], "evaluator")
    with pytest.raises(ValueError, match="is a 'classifier' checkpoint; expected 'evaluator'"):
        load_classifier(digits_models / MODEL_FILES["classifier"], "evaluator")
    with pytest.raises(FileNotFoundError, match="--network evaluator"):
        load_classifier(tmp_path / "missing.safetensors", "evaluator")
    with pytest.raises(ValueError, match=r"cannot save a GuideCNN as a 'evaluator' checkpoint; allowed: \['EvaluatorCNN'\]"):
        save_classifier(tmp_path / "x.safetensors", GuideCNN(channels=4), "evaluator", {})


def test_a_network_of_another_task_seed_is_refused(digits_models, tmp_path):
    import shutil
    for name in MODEL_FILES.values():
        shutil.copy(digits_models / name, tmp_path / name)
    task = make_task("digits", task_seed=3, models_dir=tmp_path)
    with pytest.raises(ValueError, match="was trained on task 'digits' \\(task_seed 0\\), not 'digits' \\(3\\)"):
        task.objective("label")
