"""Strength conventions a reader porting settings needs, one oracle step each (the methods' docstrings
state them with the reference code they come from).

On the subspace task's oracle x0h = alpha P x_t (P = A A^T), so grad_{x_t} f(x0h(x_t)) = alpha P grad f(x0h):
every expected value below is written out from that, never by calling the method under test. eta = 0
(deterministic DDIM), so a step's DDIM part is sqrt(ab_{t-1}) x0h + sqrt(1 - ab_{t-1}) e.
"""

import math

import pytest
import torch

from benchmark.diffusion import Costs, CountingDenoiser, PerSampleNoise, Sampler, make_schedule
from benchmark.methods import Guide, make_method

B, D = 4, 64


@pytest.fixture(scope="module")
def sampler(subspace):
    sched = make_schedule("cosine", 200)
    return Sampler(CountingDenoiser(subspace.oracle(sched), Costs()), sched, steps=20, eta=0.0)


def _x_t(seed=3):
    return 2.0 * torch.randn(B, D, generator=torch.Generator().manual_seed(seed))


def _noise():
    return PerSampleNoise(list(range(B)), (D,))


def _oracle(subspace, x_t, step):
    """(x0h, e, their DDIM(eta = 0) step) written out."""
    x0h = step.alpha * subspace.project(x_t)
    e = (x_t - step.alpha * x0h) / math.sqrt(step.h)
    return x0h, e, math.sqrt(step.ab_prev) * x0h + math.sqrt(1 - step.ab_prev) * e


def _negnorm_grad(objective, x):
    """grad r for r(x) = top - scale ||x - b||."""
    d = x - objective.b
    return -objective.scale * d / torch.linalg.vector_norm(d, dim=-1, keepdim=True)


def _quadratic_grad(objective, x):
    """grad r for r(x) = top - (theta^T x - target)^2."""
    return -2 * (x @ objective.theta - objective.target).unsqueeze(-1) * objective.theta


def _step(method, x_t, step, sampler, objective):
    return method.step(x_t, step, sampler, Guide(objective), _noise())


def _close(a, b):
    assert torch.isfinite(a).all() and torch.isfinite(b).all()
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-4), (a - b).abs().max()


# --- FreeDoM: rho_t = strength sqrt(ab_t) (FreeDoM's code) against TFG's normalised schedule -------

S = 0.4


def test_freedom_step_is_freedoms_code(subspace, sampler):
    """FreeDoM's code: rho = at.sqrt() * rho_scale; xt_next -= rho * grad_{x_t} E, with E = -r (per sample)."""
    objective = subspace.objective("negnorm_random")
    step = sampler.steps[12]
    x_t = _x_t()
    x0h, _, ddim = _oracle(subspace, x_t, step)
    grad_E = -step.alpha * subspace.project(_negnorm_grad(objective, x0h))
    want = ddim - (math.sqrt(step.ab_t) * S) * grad_E
    _close(_step(make_method("freedom", S), x_t, step, sampler, objective), want)


def test_freedom_strength_in_tfg_normalised_units_holds_at_one_step_only(subspace, sampler):
    """TFG's schedule adds rho a_t / mean_grid(a) g_t / sqrt(a_t): rho = S sqrt(ab_t) mean_grid(a) / sqrt(a_t)
    makes tfg equal FreeDoM at strength S at step t; the same rho at another step moves x_{t-1} by
    (rho sqrt(a_t') / mean_grid(a)) / (S sqrt(ab_t')) times FreeDoM's displacement, far from 1 at high noise."""
    objective = subspace.objective("negnorm_random")
    mean_a = sum(s.a_t for s in sampler.steps) / len(sampler.steps)
    here, noisy = sampler.steps[15], sampler.steps[2]
    rho = S * math.sqrt(here.ab_t) * mean_a / math.sqrt(here.a_t)
    tfg = make_method("tfg", rho, mu=0.0, gamma=0.0, n_recur=1, n_iter=0)
    freedom = make_method("freedom", S)
    x_t = _x_t()
    _close(_step(tfg, x_t, here, sampler, objective), _step(freedom, x_t, here, sampler, objective))

    _, _, ddim = _oracle(subspace, x_t, noisy)
    moved_tfg = _step(tfg, x_t, noisy, sampler, objective) - ddim
    moved_freedom = _step(freedom, x_t, noisy, sampler, objective) - ddim
    ratio = (rho * math.sqrt(noisy.a_t) / mean_a) / (S * math.sqrt(noisy.ab_t))
    assert ratio > 2.0                                     # sqrt(ab_t) is small at high noise, a_t is not
    _close(moved_tfg, ratio * moved_freedom)


# --- LGD-MC: TFG's code divides the log-sum-exp gradient by n once more ----------------------------

N = 10


def test_lgd_strength_is_tfg_codes_over_n(subspace, sampler):
    """TFG's lgd.py: x_{t-1} = DDIM(x_t, e) + s grad_{x_t} logsumexp_i r(x0h + sqrt(1 - ab_t) eps_i) / n.
    Ours at strength s / n is it; ours at strength s moves x_{t-1} n times as far."""
    objective = subspace.objective("negnorm_random")
    step = sampler.steps[10]
    x_t = _x_t()
    x0h, _, ddim = _oracle(subspace, x_t, step)
    twin = _noise()                                        # lgd's first n draws of the chains' streams
    points = torch.stack([x0h + math.sqrt(1 - step.ab_t) * twin.draw() for _ in range(N)])   # [n, B, D]
    weights = torch.softmax(objective(points.view(-1, D)).view(N, B), dim=0)                  # d logsumexp
    grad = step.alpha * subspace.project((weights.unsqueeze(-1) * _negnorm_grad(objective, points)).sum(0))
    s = 0.8
    want = ddim + s * grad / N
    _close(_step(make_method("lgd", s / N, n=N), x_t, step, sampler, objective), want)
    _close(_step(make_method("lgd", s, n=N), x_t, step, sampler, objective) - ddim, N * (want - ddim))


# --- UGD: backward guidance from the forward-guided x0^ (Bansal's code) against TFG's from x0h(e) ---

W = 0.3


def _tfg_code_ugd(subspace, x_t, step, grad_r, m=1):
    """TFG's ugd.py written out (their clip_x0 off): forward guidance as Bansal's, backward guidance
    from the unguided x0 with lr = the strength, e^ -= sqrt(ab_t / (1 - ab_t)) (x0_gd - x0)."""
    x0h, e, _ = _oracle(subspace, x_t, step)
    g_t = step.alpha * subspace.project(grad_r(x0h))
    e_hat = e - W * math.sqrt(step.h) * g_t
    x0_gd = x0h.clone()
    for _ in range(m):
        x0_gd = x0_gd + W * grad_r(x0_gd)
    e_hat = e_hat - math.sqrt(step.ab_t / step.h) * (x0_gd - x0h)
    x0_final = (x_t - math.sqrt(step.h) * e_hat) / step.alpha
    return math.sqrt(step.ab_prev) * x0_final + math.sqrt(1 - step.ab_prev) * e_hat, g_t


def test_ugd_equals_tfg_codes_ugd_for_a_linear_reward(subspace, sampler):
    """grad r constant: D* does not depend on where backward guidance starts."""
    theta = subspace.objective("quadratic_off").theta
    linear = lambda x: x @ theta                                             # noqa: E731
    step = sampler.steps[10]
    x_t = _x_t()
    want, _ = _tfg_code_ugd(subspace, x_t, step, lambda x: theta.expand_as(x), m=2)
    ugd = make_method("ugd", W, backward_steps=2, backward_lr=W)
    _close(_step(ugd, x_t, step, sampler, linear), want)


def test_ugd_differs_from_tfg_codes_ugd_by_where_backward_guidance_starts(subspace, sampler):
    """r = c - (theta^T x - b)^2, m = 1: D*_ours - D*_TFG = lr (grad r(x0h(e^)) - grad r(x0h(e)))
    = -2 lr w (1 - ab_t) / sqrt(ab_t) theta theta^T g_t, moving x_{t-1} by
    (sqrt(ab_{t-1}) - sqrt(1 - ab_{t-1}) sqrt(ab_t / (1 - ab_t))) times that."""
    objective = subspace.objective("quadratic_on")
    theta = objective.theta
    step = sampler.steps[6]
    x_t = _x_t()
    tfg_code, g_t = _tfg_code_ugd(subspace, x_t, step, lambda x: _quadratic_grad(objective, x))
    dD = -2 * W * W * step.h / step.alpha * (g_t @ theta).unsqueeze(-1) * theta
    k = math.sqrt(step.ab_prev) - math.sqrt(1 - step.ab_prev) * math.sqrt(step.ab_t / step.h)
    ours = _step(make_method("ugd", W, backward_steps=1, backward_lr=W), x_t, step, sampler, objective)
    assert (k * dD).abs().max() > 1e-2                     # a difference the tolerance cannot hide
    _close(ours - tfg_code, k * dD)
