"""The Gaussian-smoothed reward of LGD-MC and TFG, checked on its own (not one method against the other).

    rt(x) = log (1/n) sum_i exp r(x + s eps_i)   (log_mean_exp_reward),  grad rt(x) = sum_i w_i grad r(x + s eps_i)
with w = softmax_i r(x + s eps_i). Closed forms: for r(x) = a^T x, log E exp r(x + s eps) = a^T x + s^2 |a|^2 / 2;
for r(x) = -c |x|^2 / 2, grad log E exp r(x + s eps) = -c x / (1 + c s^2). A plain mean of r over the draws
would give a^T x and -c x instead: the checks below tell the two apart by a wide margin.
"""

import math

import pytest
import torch

from benchmark.diffusion import Costs, CountingDenoiser, PerSampleNoise, Sampler, make_schedule
from benchmark.diffusion.sampler import ddim_update
from benchmark.methods import Guide, make_method
from benchmark.methods.base import log_mean_exp_reward


def test_log_mean_exp_with_fixed_draws_by_hand():
    x0 = torch.tensor([[0.5, -1.0], [2.0, 0.0]], dtype=torch.float64)
    draws = [torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64),
             torch.tensor([[-1.0, 2.0], [1.0, 1.0]], dtype=torch.float64),
             torch.tensor([[0.0, -3.0], [-2.0, 0.5]], dtype=torch.float64)]
    calls = []

    def reward(x):                                       # r(x) = x_1 - x_2^2 / 2, one value per row
        calls.append(x.shape[0])
        return x[:, 0] - x[:, 1] ** 2 / 2

    got = log_mean_exp_reward(reward, x0, 0.7, draws)
    for b in range(2):
        values = []
        for eps in draws:
            u, v = (float(x0[b, k] + 0.7 * eps[b, k]) for k in range(2))
            values.append(u - v * v / 2)
        want = math.log(sum(math.exp(r) for r in values) / 3)
        assert float(got[b]) == pytest.approx(want, rel=1e-12)
        assert want > sum(values) / 3 + 0.1               # log-mean-exp is not the mean here
    assert calls == [6]                                   # one call on all n B points
    assert torch.equal(log_mean_exp_reward(reward, x0, 0.7, []), reward(x0))


def test_smoothed_linear_reward_converges_to_its_closed_form():
    """r = a^T x, s |a| = 1: rt -> a^T x + 1/2 as n grows (Monte-Carlo error ~ 1.3 / sqrt(n) = 0.006 at
    n = 50 000); a plain mean would give a^T x, 0.5 lower."""
    g = torch.Generator().manual_seed(0)
    a = torch.tensor([0.6, -0.8, 0.0, 1.0], dtype=torch.float64) / math.sqrt(2)   # |a| = 1
    x0 = torch.randn(3, 4, generator=g, dtype=torch.float64)
    s, n = 1.0, 50_000
    draws = list(torch.randn(n, 3, 4, generator=g, dtype=torch.float64))
    got = log_mean_exp_reward(lambda x: x @ a, x0, s, draws)
    want = x0 @ a + s ** 2 * float(a @ a) / 2
    assert torch.allclose(got, want, atol=0.03), (got, want)


def test_smoothed_quadratic_gradient_converges_to_its_closed_form():
    """r = -c |x|^2 / 2: grad rt(x) -> -c x / (1 + c s^2) (= -x / 2 for c s^2 = 1); a plain mean gives -c x."""
    g = torch.Generator().manual_seed(1)
    c, s, n = 1.0, 1.0, 50_000
    x0 = torch.tensor([[0.3, -0.4], [0.0, 0.5]], dtype=torch.float64, requires_grad=True)
    draws = list(torch.randn(n, 2, 2, generator=g, dtype=torch.float64))
    (grad,) = torch.autograd.grad(log_mean_exp_reward(lambda x: -c * (x * x).sum(-1) / 2, x0, s, draws).sum(), x0)
    assert torch.allclose(grad, -c * x0.detach() / (1 + c * s * s), atol=0.03), grad


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


def test_tfg_one_step_with_smoothing_and_both_guidances(subspace):
    """TFG (rho, mu, gamma > 0, N_iter = 2): Delta_t = rho_t alpha P grad rt(x0h); Delta_0 <- Delta_0 +
    mu_t grad rt(x0h + Delta_0) twice; x_{t-1} = DDIM(x0h + Delta_0, e) + Delta_t / sqrt(a_t), rt smoothed
    at std = gamma sqrt(1 - ab_t) with the chains' next N_s draws, the same draws for every gradient."""
    sampler, step, objective, x_t, x0h, e = _one_step(subspace)
    seeds = list(range(5))
    method = make_method("tfg", 0.3, mu=0.2, gamma=0.5, n_s=4, n_iter=2)
    rho_t, mu_t = method.rho_t(step, sampler), method.mu_t(step, sampler)
    stream = PerSampleNoise(seeds, (64,))
    draws = [stream.draw() for _ in range(4)]
    std = 0.5 * math.sqrt(step.h)
    delta_t = rho_t * step.alpha * subspace.project(_smoothed_grad(objective, x0h, std, draws))
    delta_0 = torch.zeros_like(x0h)
    for _ in range(2):
        delta_0 = delta_0 + mu_t * _smoothed_grad(objective, x0h + delta_0, std, draws)
    want = ddim_update(x0h + delta_0, e, step, torch.zeros_like(x_t)) + delta_t / math.sqrt(step.a_t)
    got = method.step(x_t, step, sampler, Guide(objective), PerSampleNoise(seeds, (64,)))
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (got - want).abs().max()
