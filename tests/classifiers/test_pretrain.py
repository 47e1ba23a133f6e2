"""benchmark/classifiers/pretrain.py: the pre-training of an image task's classifiers (reproducible from the seed,
reported), its argument checks, and their safe checkpoints, which know their kind (the U-Net's among them)."""

import pytest
import torch
from safetensors.torch import load_file

from benchmark.classifiers.networks import GuideCNN
from benchmark.classifiers.pretrain import load_classifier, pretrain_classifier, save_classifier
from benchmark.denoisers import UNet, load_checkpoint, save_checkpoint
from benchmark.tasks.digits import MODEL_FILES
from tests.denoisers.test_pretrain_images import TINY, digits  # noqa: F401 (digits: the module's task, a fixture)


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


def test_bad_pretraining_arguments(digits):
    with pytest.raises(ValueError, match="unknown classifier network 'guide'; allowed: "
                                         "\\['classifier', 'noisy_classifier', 'evaluator'\\]"):
        pretrain_classifier(digits, "guide")
    with pytest.raises(ValueError, match="epochs, batch size and width must be >= 1"):
        pretrain_classifier(digits, "classifier", epochs=0)


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
