"""benchmark/objectives/reward.py: r(x) = w^T (phi(x) - mu) / s, a random linear head on standardised features,
scaled by `fit_head` to mean 0 and standard deviation 1 over the training features."""

import torch
from torch import nn

from benchmark.objectives.reward import FeatureReward


class Identity(nn.Module):
    def features(self, x):
        return x


def _training_features():
    g = torch.Generator().manual_seed(0)
    return torch.randn(500, 6, generator=g) * torch.tensor([1.0, 5.0, 0.1, 2.0, 1.0, 3.0]) + 7.0


def test_head_has_unit_reward_variance_on_the_training_features():
    features = _training_features()
    w, mu, s = FeatureReward.fit_head(features, torch.Generator().manual_seed(1))
    assert torch.allclose(mu, features.mean(0)) and torch.allclose(s, features.std(0))
    r = FeatureReward(Identity(), w, mu, s, head=3)
    v = r(features)
    assert v.shape == (500,)
    assert abs(float(v.mean())) < 1e-4 and abs(float(v.std()) - 1) < 1e-4
    assert r.optimum is None and r.params() == {"head": 3}


def test_reward_reads_standardised_features_and_its_gradient_is_w_over_s():
    features = _training_features()
    w, mu, s = FeatureReward.fit_head(features, torch.Generator().manual_seed(1))
    r = FeatureReward(Identity(), w, mu, s)
    x = features[:4].clone().requires_grad_(True)
    assert torch.allclose(r(x), ((x.detach() - mu) / s) @ w)
    (grad,) = torch.autograd.grad(r(x).sum(), x)
    assert torch.allclose(grad, (w / s).expand(4, -1))
    # another generator, another head
    w2, _, _ = FeatureReward.fit_head(features, torch.Generator().manual_seed(2))
    assert not torch.allclose(w, w2)
