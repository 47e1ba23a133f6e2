"""benchmark/denoisers/pretrain_images.py: the U-Net pre-training of an image task (reproducible from its seed,
with the evaluator's scores of its unguided samples), its argument checks and the warm-up / cosine learning rate."""

import pytest
import torch

from benchmark.classifiers.pretrain import load_classifier
from benchmark.denoisers.pretrain_images import pretrain_unet, warmup_cosine
from benchmark.tasks import make_task
from benchmark.tasks.digits import MODEL_FILES

TINY = dict(epochs=1, width=4)


@pytest.fixture(scope="module")
def digits():
    return make_task("digits")


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


def test_bad_unet_pretraining_arguments(digits):
    with pytest.raises(ValueError, match="epochs, batch size and width must be >= 1"):
        pretrain_unet(digits, width=0)
    with pytest.raises(ValueError, match=r"pretrain denoiser: epochs, batch size and width must be >= 1 and lr > 0, "
                                         r"got .*'lr': 0.0"):
        pretrain_unet(digits, lr=0.0)


def test_learning_rate_warms_up_then_decays_to_zero():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = warmup_cosine(opt, total_steps=20, warmup=0.1)                          # 2 warm-up steps
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:3] == pytest.approx([1.0, 2.0, 2.0])                                # (step + 1) / 2, then the peak
    assert lrs[11] == pytest.approx(1.0 + torch.cos(torch.tensor(torch.pi * 9 / 18)).item())   # half-way: cosine
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:])) and lrs[-1] < 0.05
    one = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    warmup_cosine(one, total_steps=1)
    assert one.param_groups[0]["lr"] == 1.0                                         # a single step: the full rate
