"""benchmark/tasks/mixture/objectives.py: the mixture task's objectives (inverse, tilt, between) and their exact
target mixtures, against importance sampling from the prior (draws by torch.distributions, not the task's code);
the inverse problem's posterior multimodal for every task seed; the default targets; parameters that change them."""

from __future__ import annotations

import math

import pytest
import torch

from benchmark.tasks import make_task
from benchmark.tasks.mixture.metrics import modes
from benchmark.tasks.mixture.mixture import GaussianMixture
from benchmark.tasks.mixture.objectives import MixtureBetween, MixtureInverse, MixtureTilt
from tests.tasks.mixture.test_mixture import task  # noqa: F401 (a fixture)


@pytest.fixture(scope="module")
def objectives(task):
    return {name: task.objective(name) for name in task.objectives}


def _prior_draws(p: GaussianMixture, n: int, seed: int) -> list[torch.Tensor]:
    """n draws of each data component by torch.distributions (not GaussianMixture.sample)."""
    torch.manual_seed(seed)
    return [torch.distributions.MultivariateNormal(p.means[k], covariance_matrix=p.covs[k]).sample((n,))
            for k in range(p.K)]


def _importance(task, objective, n=40_000, seed=0):
    """Per data component k, draws x ~ N(mu_k, Sigma_k) weighted by exp(r(x)): the target's weights
    (∝ w_k mean exp(r)), component means and per-coordinate variances, and the weights' effective sample sizes."""
    p = task.mixture
    log_z, means, variances, ess = [], [], [], []
    for x in _prior_draws(p, n, seed):
        log_r = objective(x.float()).double()                     # the reward the methods see (float32)
        w = torch.softmax(log_r, 0)
        log_z.append(torch.logsumexp(log_r, 0) - math.log(n))
        means.append(w @ x)
        variances.append(w @ (x - means[-1]) ** 2)
        ess.append(float(1 / (w ** 2).sum()))
    weights = torch.softmax(torch.log(p.weights) + torch.stack(log_z), 0)
    return weights, torch.stack(means), torch.stack(variances), ess


@pytest.mark.parametrize("name, params", [("inverse", {}), ("tilt", {}), ("between", {}),
                                          ("inverse", {"m": 3, "sigma_y": 0.5}), ("tilt", {"lam": 1.0}),
                                          ("between", {"scale": 0.6})])
def test_target_mixture_matches_importance_sampling(task, name, params):
    obj = task.objective(name, params)
    target = obj.target
    weights, means, variances, ess = _importance(task, obj)
    assert min(e for e, w in zip(ess, target.weights) if w > 0.01) > 500
    assert torch.allclose(weights, target.weights, atol=0.02), (weights, target.weights)
    for k in range(task.mixture.K):
        if target.weights[k] > 0.01:                              # components the target keeps
            var = target.covs[k].diagonal()
            err = (means[k] - target.means[k]).abs() / var.sqrt()
            assert float(err.max()) < 5 / math.sqrt(ess[k]), (k, float(err.max()))
            assert float((variances[k] / var - 1).abs().max()) < 5 * math.sqrt(2 / ess[k]), k


def test_inverse_posterior_is_multimodal_for_every_task_seed():
    """H cannot see mu_0 - mu_{K-1}: the posterior keeps the heaviest and the lightest mode, and the
    measurement rules out the others."""
    for seed in range(4):
        w = make_task("mixture", task_seed=seed).objective("inverse").target.weights
        assert float(w[0]) > 0.05 and float(w[-1]) > 0.05, (seed, w)
        assert float(w[1:-1].sum()) < 0.01, (seed, w)


def test_default_targets(objectives):
    assert objectives["inverse"].target.weights.tolist() == pytest.approx([0.771, 0, 0, 0.229], abs=2e-3)
    assert objectives["tilt"].target.weights.tolist() == pytest.approx([0.097, 0.297, 0.199, 0.407], abs=2e-3)
    assert objectives["between"].target.weights.tolist() == pytest.approx([0.565, 0.435, 0, 0], abs=2e-3)
    assert objectives["between"](objectives["between"].b[None]).item() == 0.0      # the maximiser is b
    assert (modes(objectives["between"].data, objectives["between"].b[None].double()) == -1).all()


def test_objective_parameters_change_the_target(task):
    loose = task.objective("inverse", {"m": 2, "sigma_y": 1.0})
    assert loose.params() == {"m": 2, "sigma_y": 1.0} and loose.H.shape == (2, 16)
    assert task.objective("tilt", {"lam": 1.0}).target.weights[-1] > task.objective("tilt").target.weights[-1]


def test_rewards_in_closed_form(task, objectives):
    """inverse -||y - H x||^2 / (2 sigma_y^2) with H d = 0 for d = mu_0 - mu_{K-1} (H orthonormal rows), tilt
    lam theta^T x with theta the unit vector from mu_0 to mu_{K-1}, between -||x - b||^2 / (2 scale^2) with b the
    midpoint of mu_0 and mu_1."""
    inverse, tilt, between = objectives["inverse"], objectives["tilt"], objectives["between"]
    assert (type(inverse), type(tilt), type(between)) == (MixtureInverse, MixtureTilt, MixtureBetween)
    mu = task.mixture.means.float()
    x = torch.randn(5, 16, generator=torch.Generator().manual_seed(9))
    H, y = inverse.H, inverse.y
    assert torch.allclose(H @ H.T, torch.eye(8), atol=1e-5) and (H @ (mu[0] - mu[-1])).abs().max() < 1e-4
    assert torch.allclose(inverse(x), -((y - x @ H.T) ** 2).sum(-1) / (2 * 0.25 ** 2), rtol=1e-5)
    theta = (mu[-1] - mu[0]) / (mu[-1] - mu[0]).norm()
    assert torch.allclose(tilt(x), 0.5 * x @ theta, atol=1e-5)
    b = (mu[0] + mu[1]) / 2
    half = task.objective("between", {"scale": 0.5})
    assert torch.allclose(half(x), -((x - b) ** 2).sum(-1) / (2 * 0.25), rtol=1e-5)
    assert torch.allclose(half(x), 4 * between(x), rtol=1e-5)

