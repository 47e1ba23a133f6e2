"""benchmark/methods/lgd.py: LGD-MC (Song et al. 2023), one step against the softmax-weighted gradient of the
smoothed reward written out with the oracle (x0h = alpha P x_t), and its counted cost.

The smoothed reward itself (log_mean_exp_reward, benchmark/methods/base.py) is checked on its own in
tests/methods/test_base.py; LGD-MC's step by its paper's formula on hand-built Gaussian data in
tests/methods/test_published_steps.py, TFG's LGD-MC special case in tests/methods/test_tfg.py.
"""

import math

import pytest
import torch

from benchmark.diffusion import (Costs, CountingDenoiser, CountingObjective, PerSampleNoise, Sampler, make_schedule,
                                 sample)
from benchmark.diffusion.sampler import ddim_update
from benchmark.methods import Guide, make_method
from benchmark.methods.lgd import LGD


def _one_step(task, index=10):
    """An eta = 0 step with the oracle, where x0h = alpha P x_t and grad_{x_t} f(x0h) = alpha P grad f(x0h)."""
    sched = make_schedule("cosine", 200)
    sampler = Sampler(CountingDenoiser(task.oracle(sched), Costs()), sched, steps=20, eta=0.0)
    step = sampler.steps[index]
    objective = task.objective("quadratic_off")
    x_t = torch.randn(5, 64, generator=torch.Generator().manual_seed(11))
    x0h = step.alpha * task.project(x_t)
    e = (x_t - step.alpha * x0h) / math.sqrt(step.h)
    return sampler, step, objective, x_t, x0h, e


def _smoothed_grad(objective, x, std, draws):
    """grad rt(x) = sum_i softmax_i(r(x + std eps_i)) grad r(x + std eps_i), r the quadratic
    10 - (theta^T x - 3)^2 with grad r(x) = -2 (theta^T x - 3) theta."""
    theta = objective.theta
    points = [x + std * eps for eps in draws]
    w = torch.softmax(torch.stack([objective(p) for p in points]), dim=0)             # [n, B]
    grads = torch.stack([-2 * (p @ theta - 3).unsqueeze(-1) * theta for p in points])  # [n, B, D]
    return (w.unsqueeze(-1) * grads).sum(0)


def test_lgd_one_step_is_the_softmax_weighted_gradient(subspace):
    """LGD-MC: x_{t-1} = DDIM(x0h, e) + zeta alpha P grad rt(x0h), std = sqrt(1 - ab_t), the n draws
    being each chain's next n draws (before the step's own)."""
    sampler, step, objective, x_t, x0h, e = _one_step(subspace)
    seeds = list(range(5))
    stream = PerSampleNoise(seeds, (64,))
    draws = [stream.draw() for _ in range(6)]
    g_t = step.alpha * subspace.project(_smoothed_grad(objective, x0h, math.sqrt(step.h), draws))
    want = ddim_update(x0h, e, step, torch.zeros_like(x_t)) + 0.2 * g_t
    got = make_method("lgd", 0.2, n=6).step(x_t, step, sampler, Guide(objective), PerSampleNoise(seeds, (64,)))
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (got - want).abs().max()
    plain = step.alpha * subspace.project(sum(-2 * ((x0h + math.sqrt(step.h) * z) @ objective.theta - 3)
                                              .unsqueeze(-1) * objective.theta for z in draws) / 6)
    assert (0.2 * (g_t - plain)).abs().max() > 1e-2      # the check can tell smoothing from a plain mean


@pytest.mark.parametrize("n, augment", [(3, 0), (2, 2)])
def test_counted_cost_is_n_objective_gradients_per_step(subspace, n, augment):
    """1U + 1U_b + n |T| objective evaluations and gradients per step (one VJP through the n smoothed draws),
    counted on 2 chains x 10 steps as declared."""
    costs = Costs()
    sched = make_schedule("cosine", 200)
    sampler = Sampler(CountingDenoiser(subspace.oracle(sched), costs), sched, steps=10)
    method = make_method("lgd", 0.2, n=n, augment=augment)
    assert isinstance(method, LGD)
    noise = PerSampleNoise.for_chains(("lgd-costs",), 2, (64,))
    guide = Guide(CountingObjective(subspace.objective("quadratic_off"), costs), augment=subspace.augment)
    sample(sampler, method, noise.draw(), noise, guide)
    g = n * max(augment, 1)
    counted = (costs.denoiser_forwards, costs.denoiser_vjps, costs.objective_evals, costs.objective_grads)
    assert counted == (20, 20, 20 * g, 20 * g) == tuple(2 * c for c in method.costs_per_sample(10))
