"""benchmark/classifiers/networks.py: the three classifiers of an image task (the guide, the noise-conditional
classifier, the independent evaluator): their shapes, the guide's smooth input gradient, the evaluator's dropout
and the checkpoint kinds (NETWORKS)."""

import pytest
import torch

from benchmark.classifiers.networks import NETWORKS, EvaluatorCNN, GuideCNN, NoisyClassifier


def test_classifier_shapes():
    x, t = torch.randn(5, 1, 8, 8), torch.tensor([1, 10, 50, 100, 200])
    guide, evaluator = GuideCNN(channels=8).eval(), EvaluatorCNN(channels=8).eval()
    assert guide(x).shape == evaluator(x).shape == (5, 10)
    assert guide.features(x).shape == (5, 128) and evaluator.features(x).shape == (5, 64)
    assert NoisyClassifier(200, channels=8)(x, t).shape == (5, 10)
    rgb = GuideCNN(channels=4, num_classes=3, in_channels=3, size=16)
    assert rgb(torch.randn(2, 3, 16, 16)).shape == (2, 3) and rgb.config["size"] == 16


def test_networks_name_the_checkpoint_kinds():
    assert NETWORKS == {"classifier": GuideCNN, "noisy_classifier": NoisyClassifier, "evaluator": EvaluatorCNN}


def test_guide_input_gradient_is_nonzero_everywhere():
    """SiLU and average pooling: every pixel reaches the logits, also on a blank (all -1) image."""
    torch.manual_seed(0)
    guide = GuideCNN(channels=4).eval()
    x = torch.full((1, 1, 8, 8), -1.0, requires_grad=True)
    (grad,) = torch.autograd.grad(guide(x)[0, 3], x)
    assert bool((grad != 0).all())


def test_evaluator_dropout_acts_in_training_only():
    torch.manual_seed(0)
    evaluator = EvaluatorCNN(channels=4, dropout=0.5)
    x = torch.randn(8, 1, 8, 8)
    evaluator.eval()
    with torch.no_grad():
        assert torch.equal(evaluator(x), evaluator(x))
        assert torch.allclose(evaluator(x), evaluator.head(evaluator.features(x)))
        evaluator.train()
        assert not torch.equal(evaluator(x), evaluator(x))


def test_noisy_classifier_checks_its_schedule_and_reads_t():
    with pytest.raises(ValueError, match=r"unknown schedule 'sigmoid'; allowed: \['cosine', 'linear'\]"):
        NoisyClassifier(50, schedule="sigmoid")
    torch.manual_seed(0)
    noisy = NoisyClassifier(50, channels=16).eval()     # >= 2 channels a GroupNorm group: t's shift survives it
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert not torch.allclose(noisy(x, torch.tensor([1, 1])), noisy(x, torch.tensor([50, 50])))
