"""benchmark/objectives/inverse.py: the noisy linear inverse problem y = A x* + sigma_y n and its reward
r(x) = -||y - A x||_2, unsquared and per sample, with each chain restoring its own ground truth (chain i: image
i mod L); checked on a minimal subclass, A x = 2 x."""

import math

import pytest
import torch

from benchmark.objectives.base import objective_kind
from benchmark.objectives.inverse import InverseProblem


class Doubling(InverseProblem):
    name = "doubling"

    def operator(self, x):
        return 2 * x


def _problem(L=3, sigma_y=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    x_star, noise = torch.randn(L, 1, 2, 2, generator=g), torch.randn(L, 1, 2, 2, generator=g)
    return Doubling(x_star, noise, sigma_y, "all"), x_star, noise


def test_observation_and_reward_are_the_unsquared_residual():
    objective, x_star, noise = _problem()
    assert torch.allclose(objective.y, 2 * x_star + 0.1 * noise)
    x = torch.randn(6, 1, 2, 2, generator=torch.Generator().manual_seed(1), requires_grad=True)
    rows = torch.arange(6) % 3
    resid = (objective.y[rows] - 2 * x.detach()).flatten(1)
    r = objective(x)
    assert torch.allclose(r, -resid.norm(dim=-1)) and torch.allclose(objective.residual_norm(x), -r)
    (grad,) = torch.autograd.grad(r.sum(), x)                                  # d/dx -|y - 2x| = 2 (y - 2x) / |.|
    assert torch.allclose(grad.flatten(1), 2 * resid / resid.norm(dim=-1, keepdim=True), atol=1e-6)
    # the truth itself is off by the noise only: r(x*) = -sigma_y |n|
    assert torch.allclose(objective(x_star), -0.1 * noise.flatten(1).norm(dim=-1), atol=1e-6)
    assert objective.optimum == 0.0 and objective_kind(objective) == "inverse"


def test_each_chain_restores_its_own_image():
    objective, x_star, _ = _problem(L=3)
    assert objective.rows(7, "cpu").tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert torch.equal(objective.ground_truth(4, "cpu"), x_star[[0, 1, 2, 0]])
    assert torch.equal(objective.measurement(torch.zeros(4, 1, 2, 2)), objective.y[[0, 1, 2, 0]])
    assert objective.x_shape == (1, 2, 2)
    assert objective.params() == {"image": "all", "sigma_y": 0.1}


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf, True, "0.1"])
def test_sigma_y_must_be_a_finite_number_at_least_zero(bad):
    with pytest.raises(ValueError, match=rf"objective 'doubling': sigma_y must be a finite number >= 0, got "
                                         rf"{bad!r}".replace("(", r"\(").replace(")", r"\)")):
        _problem(sigma_y=bad)
    noiseless, x_star, _ = _problem(sigma_y=0)
    assert torch.equal(noiseless(x_star), torch.zeros(3))
