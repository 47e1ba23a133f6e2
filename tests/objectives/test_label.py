"""benchmark/objectives/label.py: r(x) = log p_phi(c | x) of each chain's target class (chain i: class i mod K with
target "all"), the noise-conditional log p_psi(c | x_t, t) of classifier guidance, counted like the reward, and the
target's check; on tiny stand-in classifiers (no pre-trained networks)."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from benchmark.diffusion.counting import Costs, CountingObjective
from benchmark.objectives.base import objective_kind
from benchmark.objectives.label import Label


class Clean(nn.Module):
    def __init__(self, K):
        super().__init__()
        self.fc = nn.Linear(4, K)

    def forward(self, x):
        return self.fc(x.flatten(1))


class Noisy(Clean):
    config = {"schedule": "cosine", "T": 50}

    def forward(self, x, t):
        return self.fc(x.flatten(1)) * (1 + t.float()[:, None] / 50)


def _label(target="all", K=3):
    torch.manual_seed(0)
    return Label(Clean(K), Noisy(K), target, num_classes=K)


def test_reward_is_the_log_probability_of_each_chains_target():
    objective = _label()
    x = torch.randn(5, 1, 2, 2, generator=torch.Generator().manual_seed(1))
    logp = F.log_softmax(objective.classifier(x), -1)
    assert objective.targets(5, "cpu").tolist() == [0, 1, 2, 0, 1]
    assert torch.allclose(objective(x), logp[torch.arange(5), torch.tensor([0, 1, 2, 0, 1])])
    assert (objective(x) <= 0).all() and objective.optimum == 0.0
    fixed = _label(target=2)
    assert torch.allclose(fixed(x), logp[:, 2]) and fixed.params() == {"target": 2}
    assert objective_kind(objective) == "log_prob"


def test_noisy_log_prob_is_counted_as_an_objective_evaluation():
    objective = _label()
    x = torch.randn(4, 1, 2, 2, generator=torch.Generator().manual_seed(2), requires_grad=True)
    tt = torch.full((4,), 10)
    expected = F.log_softmax(objective.noisy_classifier(x, tt), -1)[torch.arange(4), torch.tensor([0, 1, 2, 0])]
    costs = Costs()
    value = CountingObjective(objective, costs).noisy_log_prob(x, 10)
    assert torch.allclose(value, expected)
    value.sum().backward()
    assert (costs.objective_evals, costs.objective_grads) == (4, 4)
    assert objective.noise_schedule == ("cosine", 50)


@pytest.mark.parametrize("bad", [3, -1, True, "1", 1.0])
def test_target_must_be_a_class_or_all(bad):
    with pytest.raises(ValueError, match=rf"objective 'label': target must be an integer class 0..2 or 'all', got "
                                         rf"{bad!r}"):
        _label(target=bad)
