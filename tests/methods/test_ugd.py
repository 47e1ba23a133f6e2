"""benchmark/methods/ugd.py: Universal Guidance (Bansal et al. 2023), one step with backward guidance against their
Alg. 1 written out with the oracle (x0h = alpha P x_t) and where it starts, strength 0 (forward guidance only)
and its counted cost.

UGD's step by its paper's formula on hand-built Gaussian data is in tests/methods/test_published_steps.py, TFG's
UGD special case (m = 0) in tests/methods/test_tfg.py, its refused options in tests/methods/test_shen.py.
"""

import math

import torch

from benchmark.diffusion import (Costs, CountingDenoiser, CountingObjective, PerSampleNoise, Sampler, make_schedule,
                                 sample)
from benchmark.methods import Guide, make_method
from benchmark.methods.ugd import UGD

Z = 0.3      # the forward-guidance weight w of the one-step check (tests/methods/test_tfg.py's Z)


def _run(task, method, costs=None, n=2, steps=10):
    """x_0 of n chains on quadratic_off with the oracle, costs counted."""
    costs = costs if costs is not None else Costs()
    sched = make_schedule("cosine", 200)
    sampler = Sampler(CountingDenoiser(task.oracle(sched), costs), sched, steps=steps)
    noise = PerSampleNoise.for_chains(("ugd",), n, (64,))
    guide = Guide(CountingObjective(task.objective("quadratic_off"), costs))
    return sample(sampler, method, noise.draw(), noise, guide)


def _one_step(subspace, objective_name):
    """One eta = 0 step (step 8 of 20) on `objective_name` with the oracle: (sampler, step, objective, grad r,
    x_t, alpha, h, x0h = alpha P x_t, e) for 5 chains from a fixed x_t."""
    sched = make_schedule("cosine", 200)
    sampler = Sampler(CountingDenoiser(subspace.oracle(sched), Costs()), sched, steps=20, eta=0.0)
    step = sampler.steps[8]
    objective = subspace.objective(objective_name)
    theta = objective.theta
    grad_r = lambda x: -2 * (x @ theta - 3).unsqueeze(-1) * theta                  # noqa: E731
    x_t = torch.randn(5, 64, generator=torch.Generator().manual_seed(4))
    a, h = step.alpha, step.h
    x0h = a * subspace.project(x_t)
    return sampler, step, objective, grad_r, x_t, a, h, x0h, (x_t - a * x0h) / math.sqrt(h)


def test_ugd_one_step_with_backward_guidance(subspace):
    """One eta = 0 step from a given x_t against Bansal et al.'s Alg. 1 written out with the oracle
    (x0h = alpha P x_t) and the quadratic's grad r(x) = -2 (theta^T x - 3) theta, m = 2 steps."""
    sampler, step, objective, grad_r, x_t, a, h, x0h, e = _one_step(subspace, "quadratic_off")
    g_t = a * subspace.project(grad_r(x0h))
    e_hat = e - Z * math.sqrt(h) * g_t
    x0_hat = (x_t - math.sqrt(h) * e_hat) / a
    D = torch.zeros_like(x0_hat)
    for _ in range(2):
        D = D + 0.05 * grad_r(x0_hat + D)
    e_hat = e_hat - math.sqrt(step.ab_t / h) * D
    x0_final = (x_t - math.sqrt(h) * e_hat) / a
    want = math.sqrt(step.ab_prev) * x0_final + math.sqrt(1 - step.ab_prev) * e_hat
    method = make_method("ugd", Z, backward_steps=2, backward_lr=0.05)
    got = method.step(x_t, step, sampler, Guide(objective), PerSampleNoise(list(range(5)), (64,)))
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)


def test_backward_guidance_starts_from_the_forward_guided_x0(subspace):
    """Backward guidance optimises D from x0^ = x0h(e^), after forward guidance (their code's pred_xstart from the
    guided eps), not from the unguided x0h(e). On quadratic_on (theta in span(A), so g_t moves theta^T x0^) the
    two starts give gradients, and steps, that differ; one eta = 0 step with m = 1 against the formula."""
    sampler, step, objective, grad_r, x_t, a, h, x0h, e = _one_step(subspace, "quadratic_on")
    e_hat = e - Z * math.sqrt(h) * a * subspace.project(grad_r(x0h))

    def step_from(x0_start):
        e_final = e_hat - math.sqrt(step.ab_t / h) * 0.05 * grad_r(x0_start)
        return math.sqrt(step.ab_prev) * (x_t - math.sqrt(h) * e_final) / a + math.sqrt(1 - step.ab_prev) * e_final
    want, unguided_start = step_from((x_t - math.sqrt(h) * e_hat) / a), step_from(x0h)
    got = make_method("ugd", Z, backward_steps=1, backward_lr=0.05).step(
        x_t, step, sampler, Guide(objective), PerSampleNoise(list(range(5)), (64,)))
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)
    assert (want - unguided_start).abs().max() > 1e-3                 # 10x the tolerance above


def test_strength_is_forward_guidance_only(subspace):
    """strength w weighs forward guidance alone: w = 0 with m = 0 is unguided sampling exactly; w = 0 with m = 1
    still takes the backward step (backward_lr) and moves the samples."""
    unguided = _run(subspace, make_method("none"))
    assert torch.equal(_run(subspace, make_method("ugd", 0.0, backward_steps=0)), unguided)
    assert (_run(subspace, make_method("ugd", 0.0, backward_steps=1)) - unguided).abs().max() > 1e-3


def test_counted_cost_is_k_times_forward_and_m_backward_steps(subspace):
    """k (1U + 1U_b + (|T| + m) G) per step: k = 2 repeats, m = 3 backward steps, 2 chains x 10 steps."""
    costs = Costs()
    method = make_method("ugd", 0.1, backward_steps=3, recurrence=2)
    assert isinstance(method, UGD)
    _run(subspace, method, costs)
    counted = (costs.denoiser_forwards, costs.denoiser_vjps, costs.objective_evals, costs.objective_grads)
    assert counted == (40, 40, 160, 160) == tuple(2 * c for c in method.costs_per_sample(10))
